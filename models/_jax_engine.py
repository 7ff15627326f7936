"""The JAX engine of the numerics core: :func:`jax_matmul` (issue 15).

``simulator.matmul``'s fast path re-expressed in ``jax.numpy`` with 32-bit integer
arithmetic only (int32/uint32 bit patterns, shifts, ``lax.clz``, bitcasts; 64-bit sums
as two uint32 words): it needs no ``jax_enable_x64`` and no float arithmetic at all, so
it gives the same bits under ``jax.jit`` and ``jax.vmap`` on any device.  It is
bit-identical to ``simulator.matmul`` on every profile x input format x accumulator of
the catalogue, block scales and ``precision`` splits included.  One engine per kind of
rule, as the Numba path has one kernel per kind (``_config`` picks it from the rule's
fields, never from a profile's name):

* ``"classic"`` (:attr:`simulator.StepRule.classic_form`, ``simulator._kernels.
  fused_step_rows``): per pass, E = max of the products' alignment exponents and the
  carried term's; each term truncated toward zero to ``frac_bits`` bits below 2**E,
  summed in int32 groups and uint32 halves; passes chained; C fused or added after;
  power-of-two (ue8m0) block scales folded into the operands' exponents;
* ``"general"`` (the general fused step with scales of significands, ue4m3, and FP4 in
  exact groups of ``group_k``: ``general_sum_cols``): 64-bit sums by 16-bit limbs;
* ``"aligned"`` (CDNA3, ``c_mode="aligned"``): passes aligned to their own maxima and
  merged, then re-aligned with C, product overflow, signed zero results;
* ``"fma"`` (``frac_bits=None``: an IEEE fused multiply-add per K position, binary32
  inputs' 48-bit products in two words) and ``"pairwise"`` (CDNA1/2 binary32 trees,
  subnormal flushing).

Every constant comes from the frozen profile data (:func:`simulator.get_profile`,
:class:`simulator.StepRule`, :data:`simulator.FORMATS`, :func:`simulator.scale_table`,
:data:`simulator.PRECISION_TERMS`), and the roundings of a step from
:func:`simulator.rounding_targets`, the function the Numba kernels' step parameters are
built from.  Non-finite terms decide a result's class as an IEEE sum of them would.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from simulator import (FORMATS, PRECISION_TERMS, Format, RoundingTarget, check_scale_support, check_scales, check_split_k,
                       get_profile, rounding_targets, scale_table)

__all__ = ["jax_matmul", "JAX_INPUT_FORMATS"]

#: input formats the JAX engine takes (A and B of one format, or two formats of at most 8
#: bits that one rule covers)
JAX_INPUT_FORMATS = ("fp16", "bf16", "e4m3", "e5m2", "tf32", "e4m3fnuz", "e5m2fnuz", "e2m1", "e2m3", "e3m2", "fp32")
# formats XLA cannot compute on (no CPU code for 6-bit floats): NumPy arrays of them are
# taken as their codes (uint8) on the host; inside a trace they must come as uint8 codes
_HOST_ONLY = ("e2m3", "e3m2")
# alignment exponent of a term that takes no part (zero, inf, NaN): far below any real
# exponent; two of them and a zero_exp still fit int32 with room
_SENTINEL = -16000
_F32 = FORMATS["fp32"]
_U = jnp.uint32
_I = jnp.int32
# operand flags (uint8 table): sign, zero, inf, NaN
_NEG, _ZERO, _INF, _NAN = 1, 2, 4, 8
_CPU_COLS = 128  # output columns per independent loop on the CPU (see _gemm)
_QNAN32 = 0x7FC00000  # a NaN's bits between steps (its payload never reaches D)


@dataclass(frozen=True)
class _Config:
    """Everything static about one GEMM: hashable, the jit cache key."""
    kind: str  # "classic" (the classic fused step), "fma" (k=1, frac_bits None), "pairwise"
    fmt: Format
    fmt_b: Format  # B's format (A's, or another of at most 8 bits of the same rule)
    k: int
    passes: tuple
    frac: int
    c_fused: bool
    c_zero: int  # alignment exponent of a zero fused C (_SENTINEL: no part)
    zero_exp: int | None  # a zero operand's alignment exponent (None: no part)
    pas: RoundingTarget
    out: RoundingTarget
    f32: RoundingTarget
    acc: str
    nan_bits: int
    group: int  # products summed per int32 partial sum
    tf32_rne: bool = False  # float32 operands narrowed to tf32 to nearest even (else toward zero)
    scale_fmt: Format | None = None  # block scales folded into the operands' exponents (power-of-two)
    flush: frozenset = frozenset()  # pairwise: StepRule.flush
    # c_mode "aligned" (CDNA3): StepRule's fields of that name
    sum_fb: int = 0
    c_fb: int = 0
    align_rd: bool = True
    merge_rd: bool = True
    c_drop: int = -1  # -1: never dropped
    prod_ovf: bool = False
    zero_signed: bool = False


def _not_yet(what: str) -> ValueError:
    return ValueError(f"{what} is not yet in the JAX engine (models.jax_matmul); use simulator.matmul")


def _config(profile, fmt: Format, fmt_b: Format, acc_name: str, variant=None, scale_fmt=None) -> _Config:
    prof = get_profile(profile)
    rule = prof.rule(fmt.name, fmt_b.name, variant=variant)
    what = f"profile {prof.name!r} {fmt.name if fmt == fmt_b else fmt.name + ' x ' + fmt_b.name}"
    if variant is not None:
        what += f" variant {variant!r}"
    if acc_name not in prof.accumulators:
        raise ValueError(f"profile {prof.name!r} supports accumulators {prof.accumulators}, not {acc_name}")
    acc = FORMATS[acc_name]
    pas, out, f32 = rounding_targets(rule, acc)
    nan = prof.nan_fp32 if acc_name == "fp32" else prof.nan_fp16
    nan = (0x7FC00000 if acc_name == "fp32" else 0x7E00) if nan is None else nan
    zero = _SENTINEL if rule.zero_exp is None else rule.zero_exp
    base = dict(fmt=fmt, fmt_b=fmt_b, k=rule.k, passes=tuple(rule.passes), c_fused=rule.c_mode == "fused",
                c_zero=zero, zero_exp=rule.zero_exp, pas=pas, out=out, f32=f32, acc=acc_name, nan_bits=nan,
                tf32_rne=rule.operand_rounding == "rne")
    general = (rule.frac_bits is not None and rule.tree == "fused" and rule.c_mode == "fused" and max(rule.passes) == 0
               and not rule.flush and rule.product_overflow == "none"
               and (rule.group_k > 1 or (scale_fmt is not None and scale_fmt.man_bits)))
    if general:
        # the terms of the general fused step with block scales: a product of four
        # significands (or a group's exact sum times two) in uint32, aligned sums in 64 bits
        ms = 0 if scale_fmt is None else scale_fmt.man_bits
        if rule.group_k > 1:
            span = (fmt.emax - fmt.emin) + (fmt_b.emax - fmt_b.emin)
            gbits = (rule.group_k * ((1 << (fmt.man_bits + 1)) - 1) * ((1 << (fmt_b.man_bits + 1)) - 1) << span)
            ok = (gbits.bit_length() + 2 * (ms + 1) <= 32 and gbits < 1 << 31 and scale_fmt is not None
                  and not (fmt.has_inf or fmt.has_nan or fmt_b.has_inf or fmt_b.has_nan))
        else:
            ok = (fmt.man_bits + 1) + (fmt_b.man_bits + 1) + 2 * (ms + 1) <= 32
        if not ok or rule.frac_bits + 8 + rule.k.bit_length() > 62:
            raise _not_yet(f"{what} with {getattr(scale_fmt, 'name', 'no')} block scales (terms past the engine's "
                           f"32-bit products)")
        return _Config(kind="general", frac=rule.frac_bits, group=rule.group_k, scale_fmt=scale_fmt,
                       zero_signed=rule.zero_result == "signed", **base)
    if scale_fmt is not None and not rule.classic_form:
        raise _not_yet(f"{what} with {scale_fmt.name} block scales (scales are taken on rules of the classic fused "
                       f"kernel and on the general fused step)")
    if rule.frac_bits is None or rule.tree == "pairwise":
        # binary32 products and sums: every product of two significands of at most 12 bits
        # is below 2**24 (an fp32 input's product is not)
        kind = "fma" if rule.frac_bits is None else "pairwise"
        if max(fmt.man_bits, fmt_b.man_bits) > 11 and kind == "pairwise":
            raise _not_yet(f"{what} (products of {fmt.man_bits + 1}-bit significands in a pairwise tree)")
        return _Config(kind=kind, frac=0, group=1, flush=rule.flush, **base)
    if rule.c_mode == "aligned" and rule.tree == "fused" and rule.group_k == 1 and not rule.flush:
        # every pass's terms below 2**(frac + 2) once aligned, summed in int32; the passes
        # merged in int32; the sum with C (below 2**(sum_fb + 7)) in two 32-bit words
        n_pass = max(rule.passes) + 1
        per_pass = max(sum(1 for t in range(rule.k) if rule.passes[t % len(rule.passes)] == p)
                       for p in range(n_pass))
        lsh = rule.frac_bits - fmt.man_bits - fmt_b.man_bits
        up, cup = rule.sum_frac_bits - rule.frac_bits, rule.sum_frac_bits - rule.c_frac_bits
        if lsh < 0 or n_pass * per_pass << (rule.frac_bits + 2) >= 1 << 31 or not 0 <= up <= 31 \
                or not 0 <= cup <= 31 or rule.c_frac_bits > 29:
            raise _not_yet(f"{what} (c_mode='aligned' with {per_pass} terms per pass at frac_bits="
                           f"{rule.frac_bits}, sum_frac_bits={rule.sum_frac_bits}: past the engine's 32-bit sums)")
        return _Config(kind="aligned", frac=rule.frac_bits, group=per_pass, sum_fb=rule.sum_frac_bits,
                       c_fb=rule.c_frac_bits, align_rd=rule.align_rounding == "rd",
                       merge_rd=rule.merge_rounding == "rd", c_drop=-1 if rule.c_drop is None else rule.c_drop,
                       prod_ovf=rule.product_overflow == "inf", zero_signed=rule.zero_result == "signed", **base)
    if not rule.classic_form:
        raise _not_yet(f"{what} (a rule beyond the classic fused kernel: frac_bits={rule.frac_bits}, "
                       f"c_mode={rule.c_mode!r}, group_k={rule.group_k}, pass_merge={rule.pass_merge!r})")
    # int32/uint32 headroom: a pass sums its products' magnitudes (each below
    # max_sig_a * max_sig_b * 2**(frac - man_a - man_b) after alignment) and the carried term's (below
    # 2**(frac + 1)) in uint32; positives and negatives apart, so each sum must stay
    # below 2**32 (hopper fp16, frac 25, 16 products: < 2**31 + 2**26)
    n_pass = max(rule.passes) + 1
    per_pass = max(sum(1 for t in range(rule.k) if rule.passes[t % len(rule.passes)] == p) for p in range(n_pass))
    lsh = rule.frac_bits - fmt.man_bits - fmt_b.man_bits
    max_term = ((1 << (fmt.man_bits + 1)) - 1) * ((1 << (fmt_b.man_bits + 1)) - 1) << max(0, lsh)
    bound = per_pass * max_term + (1 << (rule.frac_bits + 1))
    if bound >= 1 << 32 or lsh < 0:
        raise _not_yet(f"{what} (a pass of {per_pass} terms at frac_bits={rule.frac_bits} exceeds the uint32 sums)")
    # int32 group sums of signed products: the largest group size dividing the pass
    # length (laid out as in _gemm) whose sum stays below 2**31
    group = max(g for g in range(1, per_pass + 1) if per_pass % g == 0 and g * max_term < 1 << 31)
    return _Config(kind="classic", frac=rule.frac_bits, group=group, scale_fmt=scale_fmt, **base)


@functools.lru_cache(maxsize=None)
def _operand_table(fmt: Format, zero_exp):
    """(significand uint32, alignment exponent int32, flags uint8) of every code of a
    format of at most 16 bits (index: the code): value = +-sig * 2**(exp - man_bits) for
    a nonzero finite code, exp floored at the format's emin; a zero's exp is ``zero_exp``
    (None: _SENTINEL), inf's and NaN's _SENTINEL, their significand 0."""
    codes = fmt.all_bit_patterns()
    v = fmt.decode(codes)
    sign, exp, _ = fmt.fields(codes)
    fin = np.isfinite(v)
    e = np.maximum(exp - fmt.bias, fmt.emin)
    sig = np.where(fin, np.ldexp(np.abs(np.where(fin, v, 0.0)), (fmt.man_bits - e).astype(np.int32)), 0.0)
    assert np.all(sig == np.floor(sig)) and sig.max() < 2 ** 24
    zero = v == 0
    e = np.where(zero, _SENTINEL if zero_exp is None else zero_exp, np.where(fin, e, _SENTINEL))
    flags = (np.where(np.signbit(v), _NEG, 0) | np.where(zero, _ZERO, 0) | np.where(np.isinf(v), _INF, 0)
             | np.where(np.isnan(v), _NAN, 0))
    return sig.astype(np.uint32), e.astype(np.int32), flags.astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _widening_table(fmt: Format):
    """binary32 bits of every code of a format of at most 16 bits (exact; NaNs as a
    quiet NaN)."""
    v = fmt.decode(fmt.all_bit_patterns()).astype(np.float32)
    bits = v.view(np.uint32).copy()
    bits[np.isnan(v)] = _QNAN32
    return bits


def _f32_bits(x):
    """binary32 bits (uint32) of a float32 array, or the exact binary32 widening of an
    array of a narrower catalogue format's dtype (by table: no float conversion, which
    XLA's CPU backend would flush to zero for subnormals)."""
    dt = np.dtype(x.dtype)
    if dt == np.float32:
        return lax.bitcast_convert_type(x, _U)
    fmt = next((f for f in FORMATS.values() if f.dtype == dt and f.container_bits <= 16), None)
    if fmt is None:
        raise TypeError(f"arrays must be float32 or of a catalogue format's dtype, not {dt}")
    idx = lax.bitcast_convert_type(x, jnp.dtype(fmt.uint_dtype)).astype(_I)
    return jnp.asarray(_widening_table(fmt))[idx]


# ---- 32-bit integer primitives -------------------------------------------------------
def _bitlen(x):
    """Bit length of uint32 x (0 for 0), int32."""
    return 32 - lax.clz(x).astype(_I)


def _shl(x, s):
    """x << s for s in [0, 31] (clipped), uint32."""
    return lax.shift_left(x, jnp.clip(s, 0, 31).astype(_U))


def _shr(x, s):
    """x >> s (logical), s >= 32 giving 0, uint32."""
    return jnp.where(s >= 32, _U(0), lax.shift_right_logical(x, jnp.clip(s, 0, 31).astype(_U)))


def _f32_parts(bits):
    """binary32 bits -> (neg, magnitude uint32, unit exponent int32, finite, zero):
    value = +-mag * 2**unit."""
    be = ((bits >> 23) & 0xFF).astype(_I)
    mag = (bits & 0x7FFFFF) | jnp.where(be > 0, _U(0x800000), _U(0))
    return (bits >> 31) == 1, mag, jnp.maximum(be, 1) - 150, be != 255, (bits & 0x7FFFFFFF) == 0


def _round(neg, mag, w, sticky, t: RoundingTarget):
    """Round +-(mag + sticky * eps) * 2**w (mag uint32, w int32; sticky: the true value
    lies strictly above mag, set only when mag has at least man + 3 bits) to target
    ``t`` as ``simulator._kernels.round_bits`` does; binary32 bits (uint32) of the
    result (every target's values are binary32 values).  A zero result is +0."""
    n = _bitlen(mag)
    e = w + n - 1
    q = jnp.maximum(e, t.emin) - t.man_bits
    drop = q - w
    exact = _shl(mag, -drop)
    tr = _shr(mag, drop)
    d = jnp.clip(drop, 1, 32)
    mask = jnp.where(d >= 32, _U(0xFFFFFFFF), _shl(_U(1), d) - 1)
    rem = mag & mask
    half = _shl(_U(1), d - 1)
    if t.rne:
        up = (drop > 0) & (drop <= 32) & ((rem > half) | ((rem == half) & (sticky | ((tr & 1) == 1))))
        tr = tr + up.astype(_U)
    tt = jnp.where(drop <= 0, exact, tr)
    carry = tt == _shl(_U(1), jnp.full_like(q, t.man_bits + 1))
    tt = jnp.where(carry, tt >> 1, tt)
    q = jnp.where(carry, q + 1, q)
    nt = _bitlen(tt)
    en = q + nt - 1
    over = (tt != 0) & (en > t.emax)
    bits = jnp.where(en >= _F32.emin, _shl((en - _F32.emin).astype(_U), 23) + _shl(tt, 24 - nt),
                     _shl(tt, q - (_F32.emin - _F32.man_bits)))
    if t.rne or t.overflow_inf:
        big = _U(0x7F800000)
    else:  # RZ saturating: the largest finite value of the target
        big = _U(((t.emax - _F32.emin + 1) << 23) | (((1 << t.man_bits) - 1) << (23 - t.man_bits)))
    bits = jnp.where(over, big, bits)
    return jnp.where(tt == 0, _U(0), bits | jnp.where(neg, _U(0x80000000), _U(0)))


def _classify(bits, has_nan, has_pinf, has_ninf):
    """Override rounded bits with the class an IEEE sum of the non-finite terms gives."""
    nan = has_nan | (has_pinf & has_ninf)
    bits = jnp.where(has_pinf, _U(0x7F800000), jnp.where(has_ninf, _U(0xFF800000), bits))
    return jnp.where(nan, _U(_QNAN32), bits)


def _add_f32(x, c, f32: RoundingTarget):
    """One binary32 round-to-nearest-even addition x + c of binary32 bits (x never -0),
    as ``simulator._kernels.add_c_after``'s first half (zero results +0)."""
    xa, ca = x & 0x7FFFFFFF, c & 0x7FFFFFFF
    swap = ca > xa  # L: the larger magnitude
    big, small = jnp.where(swap, c, x), jnp.where(swap, x, c)
    bneg, bm, bu, bfin, _ = _f32_parts(big)
    sneg, sm, su, sfin, _ = _f32_parts(small)
    d = bu - su
    ml, ms_full = bm << 3, sm << 3  # three guard bits (guard, round, sticky)
    ms = _shr(ms_full, d)
    sticky = (ms_full & jnp.where(d >= 31, _U(0xFFFFFFFF), _shl(_U(1), d) - 1)) != 0
    same = bneg == sneg
    m = jnp.where(same, ml + ms, ml - ms - sticky.astype(_U))
    r = _round(bneg, m, bu - 3, sticky, f32)
    xneg, _, _, xfin, _ = _f32_parts(x)
    cneg, _, _, cfin, _ = _f32_parts(c)
    xnan, cnan = ~xfin & ((x & 0x7FFFFF) != 0), ~cfin & ((c & 0x7FFFFF) != 0)
    xinf, cinf = ~xfin & ~xnan, ~cfin & ~cnan
    return _classify(r, xnan | cnan, (xinf & ~xneg) | (cinf & ~cneg), (xinf & xneg) | (cinf & cneg))


def _to_format_bits(bits, fmt: Format):
    """binary32 bits of values of ``fmt`` (finite ones exactly representable; +-inf for a
    format with infinities) -> the format's codes (uint32), by field arithmetic, signed
    zeros kept (NaN: the caller's)."""
    neg, mag, unit, fin, zero = _f32_parts(bits)
    n = _bitlen(mag)
    en = unit + n - 1  # the value's exponent
    man_mask = _U((1 << fmt.man_bits) - 1)
    lead = fmt.man_bits - (n - 1)  # shift putting the leading one at bit man_bits
    normal = _shl((en - fmt.emin + 1).astype(_U), fmt.man_bits) | (jnp.where(lead >= 0, _shl(mag, lead),
                                                                             _shr(mag, -lead)) & man_mask)
    sub = _shr(mag, (fmt.emin - fmt.man_bits) - unit)
    out = jnp.where(zero, _U(0), jnp.where(en >= fmt.emin, normal, sub))
    out = jnp.where(fin, out, _U(((1 << fmt.exp_bits) - 1) << fmt.man_bits))
    return out | jnp.where(neg, _U(1 << (fmt.width - 1)), _U(0))


def _add_ieee(x, y, f32: RoundingTarget):
    """One IEEE binary32 round-to-nearest-even addition x + y of binary32 bits, signed
    zeros included (-0 + -0 = -0; a nonzero exact sum of two binary32 values never
    rounds to zero)."""
    both = ((x | y) & 0x7FFFFFFF) == 0
    return jnp.where(both, x & y, _add_f32(x, y, f32))


def _norm24(m, u):
    """(mag, unit) with mag < 2**24 -> the same value with mag in [2**23, 2**24); a zero
    magnitude gets a unit far below every real one."""
    sh = 24 - _bitlen(m)
    return _shl(m, sh), jnp.where(m == 0, _I(-(1 << 20)), u - sh)


def _add_exact(xn, xm, xu, yn, ym, yu, t: RoundingTarget):
    """The exact sum of +-xm * 2**xu and +-ym * 2**yu (magnitudes uint32 below 2**24,
    units int32, any exponents) rounded once to ``t``, as ``simulator._kernels.round_sum``:
    three guard bits and a sticky bit below the larger term's 24 bits.  Returns (bits,
    the exact sum is nonzero, its sign); a zero result is +0 here (see :func:`_zero_sign`)."""
    xm, xu = _norm24(xm, xu)
    ym, yu = _norm24(ym, yu)
    swap = (yu > xu) | ((yu == xu) & (ym > xm))
    bn, bm, bu = jnp.where(swap, yn, xn), jnp.where(swap, ym, xm), jnp.where(swap, yu, xu)
    sn, sm, su = jnp.where(swap, xn, yn), jnp.where(swap, xm, ym), jnp.where(swap, xu, yu)
    d = bu - su
    ms_full = sm << 3
    ms = _shr(ms_full, d)
    sticky = (ms_full & jnp.where(d >= 31, _U(0xFFFFFFFF), _shl(_U(1), d) - 1)) != 0
    m = jnp.where(bn == sn, (bm << 3) + ms, (bm << 3) - ms - sticky.astype(_U))
    return _round(bn, m, bu - 3, sticky, t), (m != 0) | sticky, bn


def _zero_sign(r, nonzero, neg, zneg):
    """IEEE signs of a rounded sum r (+0 when zero): a nonzero exact sum that rounded to
    zero keeps its sign ``neg``; an exact zero is -0 only where ``zneg`` (every term -0)."""
    zsign = jnp.where(nonzero, neg, zneg)
    return jnp.where(r == 0, jnp.where(zsign, _U(0x80000000), _U(0)), r)


# ---- 64-bit integers as two uint32 words (hi, lo), two's complement --------------------
def _w_from_i32(x):
    """int32 -> (hi, lo)."""
    return jnp.where(x < 0, _U(0xFFFFFFFF), _U(0)), lax.bitcast_convert_type(x, _U)


def _w_add(a, b):
    lo = a[1] + b[1]
    return a[0] + b[0] + (lo < a[1]).astype(_U), lo


def _w_shl(a, s):
    """a << s for s in [0, 31] (int32 array or int)."""
    s = jnp.asarray(s, _I)
    return _shl(a[0], s) | _shr(a[1], 32 - s), _shl(a[1], s)


def _w_mag(a):
    """(neg, (hi, lo) magnitude) of a two's-complement pair."""
    neg = (a[0] >> 31) == 1
    lo = ~a[1] + 1
    hi = ~a[0] + (lo == 0).astype(_U)
    return neg, (jnp.where(neg, hi, a[0]), jnp.where(neg, lo, a[1]))


def _w_bitlen(m):
    return jnp.where(m[0] != 0, 32 + _bitlen(m[0]), _bitlen(m[1]))


def _w_shr_sticky(m, s):
    """Magnitude m >> s (s >= 0, logical) and whether a one bit fell off."""
    s = jnp.minimum(s, 64)
    hi, lo = m
    out_hi = _shr(hi, s)
    out_lo = jnp.where(s >= 32, _shr(hi, s - 32), _shr(lo, s) | _shl(hi, 32 - s) * (s > 0))
    lo_mask = jnp.where(s >= 32, _U(0xFFFFFFFF), _shl(_U(1), s) - 1)
    hi_mask = jnp.where(s >= 64, _U(0xFFFFFFFF), jnp.where(s > 32, _shl(_U(1), s - 32) - 1, _U(0)))
    sticky = ((lo & lo_mask) != 0) | ((hi & hi_mask) != 0)
    return (out_hi, out_lo), sticky


def _round_w(neg, m, w, t: RoundingTarget, sticky=False):
    """Round +-m * 2**w (m a (hi, lo) magnitude below 2**64; ``sticky``: the true value
    lies strictly above m, set only when m has at least 34 bits) to ``t`` (:func:`_round`):
    m cut to its top 32 bits and a sticky bit first."""
    sh = jnp.maximum(_w_bitlen(m) - 32, 0)
    (_, m32), cut = _w_shr_sticky(m, sh)
    return _round(neg, m32, w + sh, cut | sticky, t)


def _w_shl_any(m, s):
    """m << s for s in [0, 63]."""
    return jax.tree.map(lambda x, y: jnp.where(s >= 32, x, y), (_shl(m[1], s - 32), jnp.zeros_like(m[1])),
                        _w_shl(m, jnp.minimum(s, 31)))


def _w_mul24(x, y):
    """Exact product of two uint32 below 2**24 as (hi, lo), by 12-bit halves."""
    x1, x0, y1, y0 = x >> 12, x & 0xFFF, y >> 12, y & 0xFFF
    mid = x1 * y0 + x0 * y1  # below 2**25
    return _w_add(_w_add((_U(0) * x, x0 * y0), (mid >> 20, mid << 12)), ((x1 * y1) >> 8, (x1 * y1) << 24))


def _add_exact_w(xn, xm, xu, yn, ym, yu, t: RoundingTarget):
    """As :func:`_add_exact` for magnitudes (hi, lo) below 2**62: each normalised to its
    top bit at bit 61, the smaller shifted to the larger's with a sticky bit."""
    def norm(m, u):
        sh = 62 - _w_bitlen(m)
        return _w_shl_any(m, jnp.minimum(sh, 63)), jnp.where(sh >= 62, _I(-(1 << 20)), u - sh)

    xm, xu = norm(xm, xu)
    ym, yu = norm(ym, yu)
    ygt = (ym[0] > xm[0]) | ((ym[0] == xm[0]) & (ym[1] > xm[1]))
    swap = (yu > xu) | ((yu == xu) & ygt)
    pick = functools.partial(jax.tree.map, lambda p, q: jnp.where(swap, p, q))
    bn, bm, bu = pick((yn, ym, yu), (xn, xm, xu))
    sn, sm, su = pick((xn, xm, xu), (yn, ym, yu))
    ms, sticky = _w_shr_sticky(sm, bu - su)
    lo = bm[1] - ms[1] - sticky.astype(_U)
    borrow = (bm[1] < ms[1]) | ((bm[1] == ms[1]) & sticky)
    diff = (bm[0] - ms[0] - borrow.astype(_U), lo)
    m = jax.tree.map(lambda p, q: jnp.where(bn == sn, p, q), _w_add(bm, ms), diff)
    return _round_w(bn, m, bu, t, sticky), (m[0] != 0) | (m[1] != 0) | sticky, bn


# ---- c_mode "aligned" (AMD CDNA3) -----------------------------------------------------
def _aligned_step(cfg: _Config, c, a_step, b_step):
    """One step of a c_mode "aligned" rule (``simulator._kernels.general_sum_cols`` /
    ``general_round_cols``): c (M, N) binary32 bits of C; a_step arrays (n_pass, P, M),
    b_step (n_pass, P, N); returns D's binary32 bits.

    Each pass aligned to its own largest product exponent and truncated toward zero to
    ``frac`` bits (int32 sums); the passes re-aligned to the largest (``merge_rd``); the
    products' sum and C re-aligned to E = max(Ep, exponent of C) with ``sum_fb`` and
    ``c_fb`` bits (``align_rd``), C dropped ``c_drop`` binades below E; their exact sum
    (64 bits) rounded once; IEEE classes and overflowing products decide the rest."""
    n_pass = a_step[0].shape[0]
    lsh = cfg.frac - cfg.fmt.man_bits - cfg.fmt_b.man_bits
    pes, pss = [], []
    nan = jnp.zeros(c.shape, bool)
    pinf, ninf, pbig, nbig = nan, nan, nan, nan
    for p in range(n_pass):
        asig, aexp, afl = (x[p] for x in a_step)
        bsig, bexp, bfl = (x[p] for x in b_step)
        pe = aexp[:, :, None] + bexp[:, None, :]  # (P, M, N)
        pmax = jnp.max(pe, axis=0)
        term = lax.shift_right_logical((asig << lsh)[:, :, None] * bsig[:, None, :],
                                       jnp.minimum(pmax[None] - pe, 31).astype(_U))
        neg = ((afl & _NEG) != 0)[:, :, None] ^ ((bfl & _NEG) != 0)[:, None, :]
        t = lax.bitcast_convert_type(term, _I)
        pss.append(jnp.sum(jnp.where(neg, -t, t), axis=0, dtype=_I))
        pes.append(pmax)
        an, bn = (afl & _NAN) != 0, (bfl & _NAN) != 0
        ai, bi = (afl & _INF) != 0, (bfl & _INF) != 0
        az, bz = (afl & _ZERO) != 0, (bfl & _ZERO) != 0
        pn = an[:, :, None] | bn[:, None, :] | (ai[:, :, None] & bz[:, None, :]) | (az[:, :, None] & bi[:, None, :])
        pi = (ai[:, :, None] | bi[:, None, :]) & ~pn
        nan = nan | jnp.any(pn, axis=0)
        pinf, ninf = pinf | jnp.any(pi & ~neg, axis=0), ninf | jnp.any(pi & neg, axis=0)
        if cfg.prod_ovf:  # finite products of 2**128 or more
            prod = asig[:, :, None] * bsig[:, None, :]
            big = (prod != 0) & ~pn & ~pi & \
                (_bitlen(prod) - 1 + pe - cfg.fmt.man_bits - cfg.fmt_b.man_bits >= _F32.emax + 1)
            pbig, nbig = pbig | jnp.any(big & ~neg, axis=0), nbig | jnp.any(big & neg, axis=0)
    emx = functools.reduce(jnp.maximum, pes)
    sp = _I(0)
    for pe_p, ps_p in zip(pes, pss):
        sh = jnp.minimum(emx - pe_p, 31)
        down = lax.shift_right_arithmetic(ps_p, sh)
        if not cfg.merge_rd:  # toward zero
            down = jnp.where(ps_p < 0, -lax.shift_right_arithmetic(-ps_p, sh), down)
        sp = sp + down
    cneg, cm, cu, cfin, czero = _f32_parts(c)
    cbe = ((c >> 23) & 0xFF).astype(_I)
    c_exp = jnp.where(czero, cfg.c_zero, jnp.where(cfin, jnp.maximum(cbe - _F32.bias, cfg.out.emin), _SENTINEL))
    E = jnp.maximum(emx, c_exp)
    # the products' sum at sum_fb bits below 2**E: sp * 2**(up - d), d = E - Ep >= 0
    up = cfg.sum_fb - cfg.frac
    d = E - emx
    r = jnp.minimum(d - up, 31)
    s_dn = lax.shift_right_arithmetic(sp, jnp.maximum(r, 0))
    if not cfg.align_rd:
        s_dn = jnp.where(sp < 0, -lax.shift_right_arithmetic(-sp, jnp.maximum(r, 0)), s_dn)
    s31 = jax.tree.map(lambda x, y: jnp.where(d >= up, x, y), _w_from_i32(s_dn),
                       _w_shl(_w_from_i32(sp), jnp.clip(up - d, 0, 31)))
    # C at c_fb bits below 2**E (C's magnitude is below 2**(c_exp + 1) <= 2**(E + 1))
    rc = cu + cfg.c_fb - E
    cmag = jnp.where(rc >= 0, _shl(cm, rc), _shr(cm, -rc))
    lost = (rc < 0) & ((cm & jnp.where(-rc >= 32, _U(0xFFFFFFFF), _shl(_U(1), -rc) - 1)) != 0)
    if cfg.align_rd:  # floor: a negative C with bits below the cut goes one further down
        cmag = cmag + (cneg & lost).astype(_U)
    keep = cfin & ~czero
    if cfg.c_drop >= 0:
        keep = keep & ~(c_exp < E - cfg.c_drop)
    sc = lax.bitcast_convert_type(jnp.where(keep, cmag, _U(0)), _I)
    sc = jnp.where(cneg, -sc, sc)
    total = _w_add(s31, _w_shl(_w_from_i32(sc), cfg.sum_fb - cfg.c_fb))
    neg, mag = _w_mag(total)
    bits = _round_w(neg, mag, E - cfg.sum_fb, cfg.out)
    if cfg.zero_signed:  # a nonzero sum that rounds to zero keeps its sign
        bits = jnp.where((bits == 0) & neg, _U(0x80000000), bits)
    if cfg.prod_ovf:
        bits = jnp.where(pbig & nbig, _U(_QNAN32), jnp.where(pbig, _U(0x7F800000), jnp.where(nbig, _U(0xFF800000),
                                                                                              bits)))
    cnan = ~cfin & ((c & 0x7FFFFF) != 0)
    cinf = ~cfin & ~cnan
    return _classify(bits, nan | cnan, pinf | (cinf & ~cneg), ninf | (cinf & cneg))


# ---- one pass of a fused step --------------------------------------------------------
def _pass(cfg: _Config, a, b, carry, c_emin, c_zero, bad):
    """One pass: a = (sig, exp, flags) each (P, M), b each (P, N); carry (M, N) binary32
    bits of the carried term; returns the exact sum as (neg, mag, w) and the class
    flags (has_nan, has_pinf, has_ninf) of its non-finite terms."""
    asig, aexp, afl = a
    bsig, bexp, bfl = b
    pe = aexp[:, :, None] + bexp[:, None, :]  # (P, M, N)
    cneg, cm, cu, cfin, czero = _f32_parts(carry)
    cbe = ((carry >> 23) & 0xFF).astype(_I)
    calign = jnp.where(czero, c_zero, jnp.where(cfin, jnp.maximum(cbe - 127, c_emin), _SENTINEL))
    e = jnp.maximum(jnp.max(pe, axis=0), calign)
    frac = cfg.frac
    # products: sig_a * sig_b < 2**(man_a + man_b + 2) at 2**(ea + eb - man_a - man_b); with
    # A's significands pre-shifted by L = frac - man_a - man_b, a product's magnitude at 2**(pe - frac)
    # is below 2**(frac + 2) <= 2**27; aligned to 2**(E - frac) by a truncating right shift
    # of E - pe >= 0 (31 or more: 0)
    lsh = frac - cfg.fmt.man_bits - cfg.fmt_b.man_bits
    prod = (asig << lsh)[:, :, None] * bsig[:, None, :]
    term = lax.shift_right_logical(prod, jnp.minimum(e[None] - pe, 31).astype(_U))
    # signed terms (two's complement by the sign mask), summed in int32 in groups of
    # cfg.group (each group's sum below 2**31 in magnitude: checked in _config)
    amask = jnp.where((afl & _NEG) != 0, _U(0xFFFFFFFF), _U(0))
    bmask = jnp.where((bfl & _NEG) != 0, _U(0xFFFFFFFF), _U(0))
    nm = amask[:, :, None] ^ bmask[:, None, :]
    signed = lax.bitcast_convert_type((term ^ nm) - nm, _I)
    P = signed.shape[0]
    groups = jnp.sum(signed.reshape((P // cfg.group, cfg.group) + signed.shape[1:]), axis=1, dtype=_I)
    # positives and negatives apart in uint32 (their sums stay below 2**32: _config)
    gabs = lax.bitcast_convert_type(jnp.abs(groups), _U)
    pos_sum = jnp.sum(jnp.where(groups >= 0, gabs, _U(0)), axis=0, dtype=_U)
    neg_sum = jnp.sum(jnp.where(groups < 0, gabs, _U(0)), axis=0, dtype=_U)
    csh = cu + frac - e
    cterm = jnp.where(cfin & ~czero, jnp.where(csh >= 0, _shl(cm, csh), _shr(cm, -csh)), _U(0))
    pos_sum = pos_sum + jnp.where(cneg, _U(0), cterm)
    neg_sum = neg_sum + jnp.where(cneg, cterm, _U(0))
    sneg = neg_sum > pos_sum
    mag = jnp.where(sneg, neg_sum - pos_sum, pos_sum - neg_sum)
    cnan = ~cfin & ((carry & 0x7FFFFF) != 0)
    cinf = ~cfin & ~cnan

    def special(_):
        an, bn = (afl & _NAN) != 0, (bfl & _NAN) != 0
        ai, bi = (afl & _INF) != 0, (bfl & _INF) != 0
        az, bz = (afl & _ZERO) != 0, (bfl & _ZERO) != 0
        pnan = (an[:, :, None] | bn[:, None, :] | (ai[:, :, None] & bz[:, None, :])
                | (az[:, :, None] & bi[:, None, :]))
        pinf = (ai[:, :, None] | bi[:, None, :]) & ~pnan
        neg = (amask[:, :, None] ^ bmask[:, None, :]) != 0  # here: the cond's operands stay (P, M) and (P, N)
        return jnp.any(pnan, axis=0), jnp.any(pinf & ~neg, axis=0), jnp.any(pinf & neg, axis=0)

    def none(_):
        f = jnp.zeros(e.shape, bool)
        return f, f, f

    hn, hp, hm = lax.cond(bad, special, none, None)
    return (sneg, mag, e - frac), (hn | cnan, hp | (cinf & ~cneg), hm | (cinf & cneg))


def _step(cfg: _Config, acc, a_step, b_step):
    """One step: acc (M, N) binary32 bits of C; a_step arrays (n_pass, P, M), b_step
    (n_pass, P, N); returns D's binary32 bits."""
    n_pass = max(cfg.passes) + 1
    carry = acc if cfg.c_fused else jnp.zeros_like(acc)
    for p in range(n_pass):
        a = tuple(x[p] for x in a_step)
        b = tuple(x[p] for x in b_step)
        bad = jnp.any((a[2] & (_INF | _NAN)) != 0) | jnp.any((b[2] & (_INF | _NAN)) != 0)
        first_c = p == 0 and cfg.c_fused
        c_emin = FORMATS[cfg.acc].emin if first_c else _F32.emin
        (sneg, mag, w), cls = _pass(cfg, a, b, carry, c_emin, cfg.c_zero if first_c else _SENTINEL, bad)
        no_sticky = jnp.zeros(mag.shape, bool)
        if p < n_pass - 1:
            carry = _classify(_round(sneg, mag, w, no_sticky, cfg.pas), *cls)
        elif cfg.c_fused:
            return _classify(_round(sneg, mag, w, no_sticky, cfg.out), *cls)
        else:
            x = _classify(_round(sneg, mag, w, no_sticky, cfg.pas), *cls)
            s = _add_f32(x, acc, cfg.f32)
            neg, m, u, fin, _ = _f32_parts(s)
            return jnp.where(fin, _round(neg, m, u, no_sticky, cfg.out), s)


def _target(fmt: Format, rne=True) -> RoundingTarget:
    """A format's range as a rounding target (to nearest even, overflow to inf)."""
    return RoundingTarget(fmt.man_bits, fmt.emin, fmt.emax, rne, True)


def _narrow_rne(bits, fmt: Format):
    """binary32 bits -> binary32 bits of their RNE value in ``fmt`` (same exponent range
    or narrower: tf32, bf16), as ``Format.encode(x, "rne")`` / ml_dtypes' cast: zeros
    (and values that round to zero) keep their sign, overflow gives inf, NaN a quiet NaN."""
    neg, mag, unit, fin, _ = _f32_parts(bits)
    r = _round(neg, mag, unit, jnp.zeros(bits.shape, bool), _target(fmt)) | (bits & _U(0x80000000))
    nan = ~fin & ((bits & 0x7FFFFF) != 0)
    return jnp.where(fin, r, jnp.where(nan, _U(_QNAN32), bits))


def _decode_tf32(x, zero_exp, rne=False, f=FORMATS["tf32"]):
    """float32 array -> its tf32 operands (narrowed toward zero: the top 19 bits kept,
    as ``operand_rounding="rz"``, or to nearest even, ``"rne"``) as (sig uint32, exp
    int32, flags uint8), the fields of the table of :func:`_operand_table`, by bit
    arithmetic."""
    bits = lax.bitcast_convert_type(x, _U)
    if rne and f.width < 32:
        bits = _narrow_rne(bits, f)
    bits = bits & _U(((1 << f.width) - 1) << f.container_shift)
    man = (bits >> f.container_shift) & ((1 << f.man_bits) - 1)
    be = ((bits >> (f.container_shift + f.man_bits)) & ((1 << f.exp_bits) - 1)).astype(_I)
    special = be == (1 << f.exp_bits) - 1
    nan, inf = special & (man != 0), special & (man == 0)
    zero = (be == 0) & (man == 0)
    sig = jnp.where(special, _U(0), jnp.where(be > 0, man | (1 << f.man_bits), man))
    e = jnp.maximum(be - f.bias, f.emin)
    e = jnp.where(zero, _SENTINEL if zero_exp is None else zero_exp, jnp.where(special, _SENTINEL, e))
    flags = (jnp.where((bits >> 31) == 1, _NEG, 0) | jnp.where(zero, _ZERO, 0) | jnp.where(inf, _INF, 0)
             | jnp.where(nan, _NAN, 0))
    return sig, e.astype(_I), flags.astype(jnp.uint8)


def _decode(x, fmt: Format, zero_exp, tf32_rne=False):
    """Input array -> (sig uint32, exp int32, flags uint8) by table lookup of its codes
    (x of the format's dtype, or uint8 codes of a format of at most 8 bits)."""
    if fmt.name in ("tf32", "fp32"):
        return _decode_tf32(x, zero_exp, tf32_rne, fmt)
    sig, e, fl = _operand_table(fmt, zero_exp)
    if x.dtype == jnp.uint8:
        idx = x.astype(_I)
    elif fmt.width == 4:  # FP4: XLA bitcasts a 4-bit float only to a 4-bit integer
        idx = lax.bitcast_convert_type(x, jnp.uint4).astype(_I)
    else:
        idx = lax.bitcast_convert_type(x, jnp.dtype(fmt.uint_dtype)).astype(_I)
    if fmt.width < 8 * fmt.uint_dtype.itemsize:
        idx = idx & ((1 << fmt.width) - 1)  # FP4/FP6 codes: the low bits of their byte
    return jnp.asarray(sig)[idx], jnp.asarray(e)[idx], jnp.asarray(fl)[idx]


def _fold_scales(ops, s, sfmt: Format, axis: int):
    """Power-of-two block scales folded into operands (sig, exp, flags) of A (axis 1: s
    (M, K / block)) or B (axis 0: s (K / block, N)): each exponent plus its block's
    scale's (a zero operand's ``zero_exp`` too), a NaN scale making its block NaN, as
    ``simulator.matmul`` multiplies them in."""
    _, e, nan = _scale_parts(s, sfmt, ops[0].shape[axis] // s.shape[axis], axis)
    sig, exp, fl = ops
    return sig, exp + e, jnp.where(nan, fl | _NAN, fl)


def _flush_inputs(ops, fmt: Format):
    """Operands below the format's smallest normal (subnormals) made +0 (``flush`` "inputs")."""
    sig, exp, fl = ops
    tiny = (sig != 0) & (sig < (1 << fmt.man_bits))
    return (jnp.where(tiny, _U(0), sig), jnp.where(tiny, _I(_SENTINEL), exp),
            jnp.where(tiny, jnp.uint8(_ZERO), fl))


def _operands(cfg: _Config, a, b, sa, sb):
    """Decoded operands of A (M, K) and B (K, N), scales folded in, flushed by the rule."""
    ad = _decode(a, cfg.fmt, cfg.zero_exp, cfg.tf32_rne)
    bd = _decode(b, cfg.fmt_b, cfg.zero_exp, cfg.tf32_rne)
    if sa is not None:
        ad, bd = _fold_scales(ad, sa, cfg.scale_fmt, 1), _fold_scales(bd, sb, cfg.scale_fmt, 0)
    if "inputs" in cfg.flush:
        ad, bd = _flush_inputs(ad, cfg.fmt), _flush_inputs(bd, cfg.fmt_b)
    return ad, bd


def _product(cfg: _Config, a, b):
    """Exact products of operand columns a (sig, exp, flags each (M,)) and rows b (N,):
    (neg, mag uint32 < 2**24, unit int32) each (M, N), and their classes (NaN, inf)."""
    asig, aexp, afl = a
    bsig, bexp, bfl = b
    mag = asig[:, None] * bsig[None, :]
    unit = (aexp - cfg.fmt.man_bits)[:, None] + (bexp - cfg.fmt_b.man_bits)[None, :]
    neg = ((afl & _NEG) != 0)[:, None] ^ ((bfl & _NEG) != 0)[None, :]
    an, bn = (afl & _NAN) != 0, (bfl & _NAN) != 0
    ai, bi = (afl & _INF) != 0, (bfl & _INF) != 0
    az, bz = (afl & _ZERO) != 0, (bfl & _ZERO) != 0
    nan = an[:, None] | bn[None, :] | (ai[:, None] & bz[None, :]) | (az[:, None] & bi[None, :])
    inf = (ai[:, None] | bi[None, :]) & ~nan
    return neg, mag, unit, nan, inf


def _fma_gemm(cfg: _Config, ad, bd, c_bits):
    """An exact (IEEE fused) multiply-add per K position, in K order: D = round(C + a*b)
    once per position into the accumulator (``simulator._kernels.fma_gemm``)."""
    wide = max(cfg.fmt.man_bits, cfg.fmt_b.man_bits) > 11  # binary32 inputs: 48-bit products

    def body(c, xs):
        pn, pm, pu, pnan, pinf = _product(cfg, xs[0], xs[1])
        cn, cm, cu, cfin, cz = _f32_parts(c)
        cm = jnp.where(cfin, cm, _U(0))
        if wide:
            pw = _w_mul24(xs[0][0][:, None], xs[1][0][None, :])
            r, nz, sneg = _add_exact_w(pn, pw, pu, cn, (jnp.zeros_like(cm), cm), cu, cfg.out)
            pzero = (pw[0] == 0) & (pw[1] == 0)
        else:
            r, nz, sneg = _add_exact(pn, pm, pu, cn, cm, cu, cfg.out)
            pzero = pm == 0
        r = _zero_sign(r, nz, sneg, pn & pzero & cn & cz)
        cnan = ~cfin & ((c & 0x7FFFFF) != 0)
        cinf = ~cfin & ~cnan
        return _classify(r, pnan | cnan, (pinf & ~pn) | (cinf & ~cn), (pinf & pn) | (cinf & cn)), None

    d, _ = lax.scan(body, c_bits, (tuple(x.T for x in ad), bd))
    return d


def _flush_tiny(bits):
    """binary32 bits below 2**-126 in magnitude -> a zero of their sign (NaN, inf kept)."""
    return jnp.where((bits & 0x7F800000) == 0, bits & _U(0x80000000), bits)


def _pairwise_gemm(cfg: _Config, ad, bd, c_bits):
    """Pairwise binary32 trees (AMD CDNA1/2, ``simulator._kernels.pairwise_step_cols``):
    per step of k positions, each product rounded to binary32 (an exact zero product
    +0), a balanced tree of binary32 RNE additions (neighbours first), then C + tree;
    subnormal nodes and results flushed as the rule says."""
    k = cfg.k
    Kd = ad[0].shape[1]
    steps = -(-Kd // k)
    if steps == 0:
        return c_bits
    pad = steps * k - Kd
    fills = (_U(0), _I(_SENTINEL), jnp.uint8(_ZERO))
    a_l = tuple(jnp.pad(x, ((0, 0), (0, pad)), constant_values=f).T.reshape(steps, k, -1) for x, f in zip(ad, fills))
    b_l = tuple(jnp.pad(x, ((0, pad), (0, 0)), constant_values=f).reshape(steps, k, -1) for x, f in zip(bd, fills))
    nodes, acc = "nodes" in cfg.flush, "accumulator" in cfg.flush
    no_sticky = jnp.zeros(c_bits.shape, bool)

    def body(c, xs):
        leaves = []
        for t in range(k):
            pn, pm, pu, pnan, pinf = _product(cfg, tuple(x[t] for x in xs[0]), tuple(x[t] for x in xs[1]))
            r = _round(pn, pm, pu, no_sticky, cfg.f32)
            r = jnp.where((r == 0) & (pm != 0) & pn, _U(0x80000000), r)  # a product below binary32 keeps its sign
            r = _classify(r, pnan, pinf & ~pn, pinf & pn)
            leaves.append(_flush_tiny(r) if nodes else r)
        while len(leaves) > 1:
            leaves = [_add_ieee(leaves[i], leaves[i + 1], cfg.f32) for i in range(0, len(leaves), 2)]
            leaves = [_flush_tiny(x) for x in leaves] if nodes else leaves
        d = _add_ieee(c, leaves[0], cfg.f32)
        return (_flush_tiny(d) if acc else d), None

    d, _ = lax.scan(body, c_bits, (a_l, b_l))
    return d


@functools.lru_cache(maxsize=None)
def _scale_table(sfmt: Format):
    """(sig uint32, exp int32, NaN bool) of the 256 codes of a scale format: the value
    sig * 2**(exp - man_bits) of :func:`simulator.scale_table` (a zero scale: sig 0, exp 0)."""
    v, e = scale_table(sfmt)
    fin = np.isfinite(v)
    sig = np.where(fin, np.ldexp(np.where(fin, v, 0.0), (sfmt.man_bits - e.astype(np.int64)).astype(np.int32)), 0)
    assert np.all(sig == np.floor(sig)) and sig.max() < 1 << (sfmt.man_bits + 1)
    return sig.astype(np.uint32), e.astype(np.int32), np.isnan(v)


def _scale_parts(s, sfmt: Format, blk: int, axis: int):
    """Scale codes (M, K / blk) or (K / blk, N) -> per K position (sig, exp, NaN) of
    :func:`_scale_table`."""
    codes = (s if s.dtype == jnp.uint8 else lax.bitcast_convert_type(s, jnp.uint8)).astype(_I)
    return tuple(jnp.repeat(jnp.asarray(t)[codes], blk, axis=axis) for t in _scale_table(sfmt))


def _general_gemm(cfg: _Config, ad, bd, c_bits, sa, sb):
    """The general fused step with block scales (``simulator._kernels.general_sum_cols``,
    c_mode "fused", one pass): per step of k positions, terms of one product times its
    two scales (group_k 1) or of a group's exact sum times them (its exponent the
    scales' alone), each truncated to ``frac`` bits below the largest exponent (C's
    included), summed exactly in 64 bits, rounded once."""
    k, G = cfg.k, cfg.group
    T = k // G
    Kd = ad[0].shape[1]
    steps = -(-Kd // k)
    if steps == 0:
        return c_bits
    blk = Kd // sa.shape[1]
    sad, sbd = _scale_parts(sa, cfg.scale_fmt, blk, 1), _scale_parts(sb, cfg.scale_fmt, blk, 0)
    index = np.arange(steps * k)
    valid = index < Kd  # positions past K (a partial last step) take no part
    index = np.where(valid, index, Kd)

    def lay(arrs, fills, rows_first):
        out = []
        for x, f in zip(arrs, fills):
            xk = x.T if rows_first else x  # (K, rows)
            xk = jnp.concatenate([xk, jnp.full((1, xk.shape[1]), f, xk.dtype)], axis=0)
            out.append(xk[index].reshape(steps, k, xk.shape[1]))
        return tuple(out)

    op_fill, sc_fill = (_U(0), _I(_SENTINEL), jnp.uint8(0)), (_U(0), _I(0), False)
    xs = (lay(ad, op_fill, True), lay(sad, sc_fill, True), lay(bd, op_fill, False), lay(sbd, sc_fill, False),
          valid.reshape(steps, k)[:, ::G])
    fa, fb, ms = cfg.fmt, cfg.fmt_b, cfg.scale_fmt.man_bits

    def body(c, x):
        (asig, aexp, afl), (ssa, sea, sna), (bsig, bexp, bfl), (ssb, seb, snb), gvalid = x
        an, bn = (afl & _NEG) != 0, (bfl & _NEG) != 0
        if G == 1:
            mag = (asig * ssa)[:, :, None] * (bsig * ssb)[:, None, :]  # (T, M, N)
            ua, ub = aexp + sea, bexp + seb
            te = ua[:, :, None] + ub[:, None, :]
            u = te - (fa.man_bits + fb.man_bits + 2 * ms)
            neg = an[:, :, None] ^ bn[:, None, :]
            fnan_a, fnan_b = ((afl & _NAN) != 0) | sna, ((bfl & _NAN) != 0) | snb
            finf_a, finf_b = (afl & _INF) != 0, (bfl & _INF) != 0
            fz_a = ((afl & _ZERO) != 0) | ((ssa == 0) & ~sna)
            fz_b = ((bfl & _ZERO) != 0) | ((ssb == 0) & ~snb)
            nan = (fnan_a[:, :, None] | fnan_b[:, None, :]
                   | ((finf_a[:, :, None] | finf_b[:, None, :]) & (fz_a[:, :, None] | fz_b[:, None, :])))
            inf = (finf_a[:, :, None] | finf_b[:, None, :]) & ~nan
        else:
            # each group's products summed exactly in int32, in units of the smallest product's
            sh_a, sh_b = jnp.maximum(aexp - fa.emin, 0), jnp.maximum(bexp - fb.emin, 0)
            p = _shl(asig[:, :, None] * bsig[:, None, :], sh_a[:, :, None] + sh_b[:, None, :])
            p = lax.bitcast_convert_type(p, _I)
            p = jnp.where(an[:, :, None] ^ bn[:, None, :], -p, p)
            gs = jnp.sum(p.reshape((T, G) + p.shape[1:]), axis=1, dtype=_I)  # (T, M, N)
            # a group's scales: those of its first position (a group lies in one block)
            ssa, sea, sna, ssb, seb, snb = (x[::G] for x in (ssa, sea, sna, ssb, seb, snb))
            neg = gs < 0
            mag = lax.bitcast_convert_type(jnp.abs(gs), _U) * (ssa[:, :, None] * ssb[:, None, :])
            te = sea[:, :, None] + seb[:, None, :]
            u = te + (fa.emin - fa.man_bits + fb.emin - fb.man_bits - 2 * ms)
            take = gvalid[:, None, None] & ((gs != 0) | (cfg.zero_exp is not None))
            te = jnp.where(take, te, _I(_SENTINEL))
            nan = gvalid[:, None, None] & (sna[:, :, None] | snb[:, None, :])
            inf = jnp.zeros_like(nan)
        cneg, cm, cu, cfin, czero = _f32_parts(c)
        cbe = ((c >> 23) & 0xFF).astype(_I)
        c_exp = jnp.where(czero, cfg.c_zero, jnp.where(cfin, jnp.maximum(cbe - _F32.bias, cfg.out.emin), _SENTINEL))
        E = jnp.maximum(jnp.max(te, axis=0), c_exp)
        # every term (and C) truncated toward zero at frac bits below 2**E: (hi, lo) words
        tn = jnp.concatenate([neg, cneg[None]])
        tm = jnp.concatenate([mag, jnp.where(cfin, cm, _U(0))[None]])
        sh = jnp.concatenate([u + cfg.frac - E[None], (cu + cfg.frac - E)[None]])
        w = jax.tree.map(lambda x, y: jnp.where(sh >= 0, x, y), _w_shl_any((jnp.zeros_like(tm), tm),
                                                                          jnp.clip(sh, 0, 63)),
                         (jnp.zeros_like(tm), _shr(tm, -sh)))
        # summed exactly by 16-bit limbs (T + 1 terms below 2**(frac + 8): the limb sums fit
        # uint32), positives and negatives apart
        def limb_sum(sel):
            parts = [jnp.sum(jnp.where(sel, x, _U(0)), axis=0, dtype=_U)
                     for x in (w[1] & 0xFFFF, w[1] >> 16, w[0])]
            return _w_add(_w_add((_U(0) * parts[0], parts[0]), _w_shl((_U(0) * parts[1], parts[1]), 16)),
                          (parts[2], _U(0) * parts[2]))
        pos, negs = limb_sum(~tn), limb_sum(tn)
        lo = ~negs[1] + 1
        total = _w_add(pos, (~negs[0] + (lo == 0).astype(_U), lo))
        neg_s, mag_s = _w_mag(total)
        bits = _round_w(neg_s, mag_s, E - cfg.frac, cfg.out)
        if cfg.zero_signed:
            bits = jnp.where((bits == 0) & neg_s, _U(0x80000000), bits)
        cnan = ~cfin & ((c & 0x7FFFFF) != 0)
        cinf = ~cfin & ~cnan
        return _classify(bits, jnp.any(nan, axis=0) | cnan, jnp.any(inf & ~neg, axis=0) | (cinf & ~cneg),
                         jnp.any(inf & neg, axis=0) | (cinf & cneg)), None

    d, _ = lax.scan(body, c_bits, xs)
    return d


@functools.partial(jax.jit, static_argnums=0)
def _gemm(cfg: _Config, a, b, c_bits, sa=None, sb=None):
    """D bits = A @ B + C: a (M, K), b (K, N) input arrays, c_bits (M, N) binary32 bits
    of C, sa (M, K / block) and sb (K / block, N) scale codes or None; returns (M, N)
    binary32 bits of D (NaN as 0x7FC00000)."""
    if cfg.kind == "general":
        ad, bd = _operands(cfg, a, b, None, None)
        return _general_gemm(cfg, ad, bd, c_bits, sa, sb)
    ad, bd = _operands(cfg, a, b, sa, sb)
    if cfg.kind == "fma":
        return _fma_gemm(cfg, ad, bd, c_bits)
    if cfg.kind == "pairwise":
        if "inputs" in cfg.flush:
            # C below the accumulator's smallest normal is +0 (a zero too)
            small = ((c_bits >> 23) & 0xFF).astype(_I) < FORMATS[cfg.acc].emin + _F32.bias
            c_bits = jnp.where(small, _U(0), c_bits)
        d = _pairwise_gemm(cfg, ad, bd, c_bits)
        if cfg.acc != "fp32":  # binary32 sums throughout, then cast (RNE) into the accumulator
            neg, m, u, fin, _ = _f32_parts(d)
            d = jnp.where(fin, _round(neg, m, u, jnp.zeros(d.shape, bool), cfg.out) | (d & _U(0x80000000)), d)
        return d
    M, Kd = a.shape
    N = b.shape[1]
    k = cfg.k
    steps = -(-Kd // k)
    if steps == 0:
        return c_bits
    n_pass = max(cfg.passes) + 1
    members = [[t for t in range(k) if cfg.passes[t % len(cfg.passes)] == p] for p in range(n_pass)]
    plen = max(len(m) for m in members)
    # K positions laid out (steps, n_pass, plen), -1: padding (a zero that takes no part)
    index = np.full((steps, n_pass, plen), -1, np.int64)
    for p, mem in enumerate(members):
        index[:, p, :len(mem)] = np.arange(steps)[:, None] * k + np.array(mem)[None, :]
    index[index >= Kd] = -1
    pad = (_U(0), _I(_SENTINEL), jnp.uint8(0))

    def lay(arrs, kaxis_first):
        out = []
        for x, fill in zip(arrs, pad):
            xk = x.T if not kaxis_first else x  # (K, rows)
            xk = jnp.concatenate([xk, jnp.full((1, xk.shape[1]), fill, xk.dtype)], axis=0)
            out.append(xk[index.reshape(-1)].reshape(steps, n_pass, plen, xk.shape[1]))
        return tuple(out)

    ad = lay(ad, False)
    bd = lay(bd, True)

    def body(acc, xs):
        if cfg.kind == "aligned":
            return _aligned_step(cfg, acc, xs[0], xs[1]), None
        return _step(cfg, acc, xs[0], xs[1]), None

    # on the CPU, independent column blocks: each block's (P, M, cols) working set stays
    # in cache and XLA runs the blocks' loops side by side (512^3: 3x faster on one core,
    # 5x on two, measured); elsewhere one loop over all columns
    cols = _CPU_COLS if jax.default_backend() == "cpu" else N
    out = []
    for j0 in range(0, N, cols):
        j1 = min(N, j0 + cols)
        acc, _ = lax.scan(body, c_bits[:, j0:j1], (ad, tuple(x[..., j0:j1] for x in bd)))
        out.append(acc)
    return out[0] if len(out) == 1 else jnp.concatenate(out, axis=1)


def _input_format(x, input_format) -> Format:
    """The input format of array x: its dtype's, or ``input_format`` (needed for float32
    (tf32, or fp32) and for uint8 code arrays of a format of at most 8 bits)."""
    dt = np.dtype(x.dtype)
    if input_format is not None:
        if not isinstance(input_format, str):
            raise TypeError(f"input_format must be a format name such as 'fp16', not {type(input_format).__name__}")
        if input_format not in JAX_INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {JAX_INPUT_FORMATS}, not {input_format!r}")
        want = FORMATS[input_format]
        if dt != want.dtype and not (dt == np.uint8 and want.container_bits <= 8):
            codes = " (or uint8 codes)" if want.container_bits <= 8 else ""
            raise TypeError(f"input_format={input_format!r} needs {want.dtype} arrays{codes}, not {dt}")
        return want
    if dt == np.float32:
        raise TypeError("float32 inputs need input_format='tf32' or 'fp32' (the matrix units take tf32, not "
                        "binary32, except where a profile has an fp32 rule or precision splits them)")
    if dt == np.uint8:
        raise TypeError("uint8 inputs are codes: they need input_format naming their format (such as 'e2m3')")
    fmt = next((FORMATS[n] for n in JAX_INPUT_FORMATS if FORMATS[n].dtype == dt and dt != np.float32), None)
    if fmt is None:
        raise TypeError(f"inputs must be "
                        f"{', '.join(str(FORMATS[n].dtype) for n in JAX_INPUT_FORMATS if FORMATS[n].dtype != np.float32)}"
                        f", uint8 codes or float32 (with input_format='tf32' or 'fp32'), not {dt}")
    return fmt


def _host_codes(x, fmt: Format, name: str):
    """A 6-bit-float array -> its uint8 codes (XLA computes no 6-bit floats); others as they are."""
    if fmt.name not in _HOST_ONLY or np.dtype(x.dtype) == np.uint8:
        return x
    if isinstance(x, jax.core.Tracer):
        raise TypeError(f"{name} of dtype {x.dtype} cannot enter a traced computation (XLA computes no 6-bit "
                        f"floats): pass its uint8 codes with input_format={fmt.name!r}")
    return np.asarray(x).view(np.uint8)


def _reduce(parts, how: str, f32: RoundingTarget):
    """Sum binary32 bits of partial results by binary32 RNE additions in the order ``how``
    (``simulator.matmul``'s split_k reductions)."""
    p = list(parts)
    if how == "sequential":
        total = p[0]
        for x in p[1:]:
            total = _add_ieee(total, x, f32)
        return total
    if how == "butterfly":  # halving strides: p[i] += p[i + S/2], then S/4, ...
        s = len(p) // 2
        while s >= 1:
            p[:s] = [_add_ieee(p[i], p[i + s], f32) for i in range(s)]
            s //= 2
        return p[0]
    while len(p) > 1:  # pairwise: neighbours, level by level
        p = [_add_ieee(p[i], p[i + 1], f32) for i in range(0, len(p), 2)]
    return p[0]


def _split_bf16(x, n: int):
    """float32 array -> n bf16 arrays: each the RNE bf16 of what the parts before it left
    (exact binary32 subtractions), as ``simulator.matmul``'s ``precision`` split."""
    bf16 = FORMATS["bf16"]
    rest = lax.bitcast_convert_type(x, _U)
    parts = []
    for _ in range(n):
        p = _narrow_rne(rest, bf16)
        parts.append(lax.bitcast_convert_type((p >> 16).astype(jnp.uint16), jnp.bfloat16))
        rest = _add_ieee(rest, p ^ _U(0x80000000), _target(FORMATS["fp32"]))
    return parts


def _scale_args(scale_a, scale_b, scale_format, M, Kd, N, fmt: Format):
    """Validate block scales as ``simulator.matmul`` does (its own check, on stand-ins of
    their shapes: the arrays may be JAX tracers) -> None or the scale Format."""
    if scale_a is None and scale_b is None and scale_format is None:
        return None
    for name, x in (("scale_a", scale_a), ("scale_b", scale_b)):
        if x is not None:
            if not hasattr(x, "dtype") or not hasattr(x, "shape"):
                raise TypeError(f"{name} must be a JAX or NumPy array, not {type(x).__name__}")
            if np.dtype(x.dtype).itemsize != 1 or np.dtype(x.dtype).kind == "i":
                raise TypeError(f"{name} must be uint8 codes (or float8_e8m0fnu), not {x.dtype}")
    stand_in = [None if x is None else np.broadcast_to(np.uint8(0), x.shape) for x in (scale_a, scale_b)]
    return check_scales(*stand_in, scale_format, M, Kd, N, fmt)[2]


def jax_matmul(a, b, c=None, *, profile="hopper", input_format=None, split_k=1, split_reduce="sequential",
               scale_a=None, scale_b=None, scale_format=None, precision=None, variant=None):
    """D = A @ B + C bit for bit as ``simulator.matmul``, in ``jax.numpy`` integer
    arithmetic: jit-able, vmap-able, no x64 needed.

    Args:
        a: (M, K) or (G, M, K) array (JAX or NumPy) of float16, bfloat16, float8_e4m3fn,
            float8_e5m2, float8_e4m3fnuz, float8_e5m2fnuz, float4_e2m1fn, float6_e2m3fn /
            float6_e3m2fn (NumPy only: XLA computes no 6-bit floats; inside a trace pass
            them as uint8 codes), uint8 codes of a format of at most 8 bits with
            ``input_format`` naming it, or float32 with ``input_format="tf32"`` (narrowed
            by the rule's ``operand_rounding``).
        b: (K, N) or (G, K, N) array of the same dtype, or another format of at most 8
            bits that the rule for a's format also covers (e4m3 x e5m2, e4m3 x e2m1, ...).
        c: (M, N) / (G, M, N) float32 or float16 accumulator, or None (+0, float32);
            its dtype picks the accumulator format.
        profile: a name in :data:`simulator.PROFILES` or a DatapathProfile.
        input_format: the format's name; needed for float32 (``"tf32"``) and uint8 codes.
        split_k, split_reduce: as ``simulator.matmul``: K cut into ``split_k`` equal
            chunks, each accumulated from zero, the partial results summed by binary32
            RNE additions in the order ``split_reduce`` (``"sequential"``, ``"butterfly"``,
            ``"pairwise"``), then C added the same way (then RNE into float16 for a
            float16 accumulator).
        scale_a, scale_b, scale_format: block scales as ``simulator.matmul``: (M, K/block)
            and (K/block, N) uint8 codes of ``"ue8m0"`` (power-of-two scales, on rules of
            the classic fused kernel).
        precision: float32 inputs (``input_format="fp32"``) on a profile with a bf16 rule
            (``"tpu"``): each value split into 1, 2 or 3 bf16 parts (``"x1"``, ``"x3"``,
            ``"x6"``) and the partial GEMMs (:data:`simulator.PRECISION_TERMS`) summed in
            binary32, smallest first, then C, as ``simulator.matmul``.
        variant: an instruction variant of the profile (``"legacy"``: CDNA2's non-_1k bf16).
    Returns:
        D as a JAX array of c's dtype (float32 when c is None), NaNs carrying the
        profile's NaN bits (host-NaN profiles: 0x7FC00000 / 0x7E00).
    Raises:
        TypeError/ValueError for bad arguments; ValueError naming what is not yet in
        the JAX engine: fp32 inputs (unsplit), block scales with significands
        (ue4m3) and grouped FP4 (``group_k``), C re-aligned after the products
        (``c_mode="aligned"``, CDNA3).
    """
    for name, x in (("a", a), ("b", b)):
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{name} must be a JAX or NumPy array, not {type(x).__name__}")
    if a.ndim not in (2, 3) or b.ndim != a.ndim:
        raise ValueError(f"a and b must both be 2-D (or both 3-D, a batch), not {a.ndim}-D and {b.ndim}-D")
    if precision is not None and precision not in PRECISION_TERMS:
        raise ValueError(f"precision must be one of {tuple(PRECISION_TERMS)} or None, not {precision!r}")
    fmt = _input_format(a, input_format)
    fmt_b = fmt
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        # mixed operands exist only among the formats of at most 8 bits (e4m3 x e5m2, f8f6f4)
        fmt_b = _input_format(b, None)
        if fmt.container_bits > 8 or fmt_b.container_bits > 8:
            raise TypeError(f"a and b must have the same dtype, or both be formats of at most 8 bits, "
                            f"not {a.dtype} and {b.dtype}")
    a, b = _host_codes(a, fmt, "a"), _host_codes(b, fmt_b, "b")
    if a.ndim == 3:
        G = a.shape[0]
        if b.shape[0] != G or (c is not None and (c.ndim != 3 or c.shape[0] != G)):
            raise ValueError(f"a, b and c must hold the same number of GEMMs along axis 0, not "
                             f"{a.shape}, {b.shape}{'' if c is None else f' and {c.shape}'}")
        for name, x in (("scale_a", scale_a), ("scale_b", scale_b)):
            if x is not None and (np.ndim(x) != 3 or np.shape(x)[0] != G):
                raise ValueError(f"{name} of a batch must be 3-D with {G} along axis 0, not shape {np.shape(x)}")
        ifa = fmt.name if np.dtype(a.dtype) == np.uint8 else input_format
        kw = dict(profile=profile, input_format=ifa, split_k=split_k, split_reduce=split_reduce,
                  scale_format=scale_format, precision=precision, variant=variant)

        def one(x, y, z, u, v):
            return jax_matmul(x, y, z, scale_a=u, scale_b=v, **kw)
        return jax.vmap(one, in_axes=tuple(None if x is None else 0 for x in (a, b, c, scale_a, scale_b)))(
            a, b, c, scale_a, scale_b)
    M, Kd = a.shape
    if b.shape[0] != Kd:
        raise ValueError(f"b must have shape ({Kd}, N) to match a's K={Kd}, not {b.shape}")
    N = b.shape[1]
    sfmt = _scale_args(scale_a, scale_b, scale_format, M, Kd, N, fmt)
    check_split_k(split_k, split_reduce, Kd)
    if sfmt is not None and split_k > 1 and (Kd // split_k) % (Kd // scale_a.shape[1]):
        raise ValueError(f"split_k must cut K on scale-block boundaries, not {split_k}")
    if c is None:
        c = jnp.zeros((M, N), jnp.float32)
    if not hasattr(c, "dtype") or np.dtype(c.dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise TypeError(f"c must be a float32 or float16 array, not {getattr(c, 'dtype', type(c).__name__)}")
    if tuple(c.shape) != (M, N):
        raise ValueError(f"c must have shape {(M, N)}, not {tuple(c.shape)}")
    acc = "fp32" if np.dtype(c.dtype) == np.float32 else "fp16"
    prof = get_profile(profile)
    fmt_in = fmt  # the inputs' format (fp32 with precision), as simulator.matmul names it
    if precision is not None:
        if fmt.name != "fp32" or fmt_b.name != "fp32" or "bf16" not in prof.rules:
            raise ValueError(f"precision needs float32 inputs with input_format='fp32' and a profile with a bf16 "
                             f"rule, not {fmt.name} x {fmt_b.name} on {prof.name!r}")
        fmt = fmt_b = FORMATS["bf16"]
    if sfmt is not None:  # simulator.matmul's refusal of scales a unit does not apply
        check_scale_support(prof, prof.rule(fmt.name, fmt_b.name, variant=variant), fmt_in, precision)
    elif fmt.name == "fp32" and "fp32" not in prof.rules and "bf16" in prof.rules:
        raise ValueError(f"profile {prof.name!r} takes float32 inputs only split into bf16 parts: "
                         f"precision must be 'x1', 'x3' or 'x6', not None")
    if prof.rule(fmt.name, fmt_b.name, variant=variant).group_k > 1 and sfmt is None:
        raise ValueError(f"profile {prof.name!r} computes {fmt.name} in scaled groups: scale_a and scale_b must be "
                         f"given, not None")
    cfg = _config(prof, fmt, fmt_b, acc, variant, sfmt)
    if acc == "fp32":
        cb = lax.bitcast_convert_type(jnp.asarray(c), _U)
    else:
        cb = _f32_bits(jnp.asarray(c))
    a, b = jnp.asarray(a), jnp.asarray(b)
    sa, sb = (None, None) if sfmt is None else (jnp.asarray(scale_a), jnp.asarray(scale_b))

    def gemm(x, y, acc_bits, u, v):
        if precision is None:
            return _gemm(cfg, x, y, acc_bits, u, v)
        terms = PRECISION_TERMS[precision]
        n = 1 + max(max(t) for t in terms)
        px, py = jnp.stack(_split_bf16(x, n)), jnp.stack(_split_bf16(y, n))
        zero = jnp.zeros(acc_bits.shape, _U)
        # the partial GEMMs as one batch (one compiled loop), summed in order
        ix, iy = (np.array(v) for v in zip(*terms))
        parts = jax.vmap(lambda u, v: _gemm(cfg, u, v, zero))(px[ix], py[iy])
        return _reduce([parts[t] for t in range(len(terms))] + [acc_bits], "sequential", cfg.f32)

    if split_k == 1:
        d = gemm(a, b, cb, sa, sb)
    else:
        ch = Kd // split_k
        zero = jnp.zeros((M, N), _U)
        nb = 0 if sa is None else (ch * sa.shape[1]) // Kd  # scale blocks per chunk
        parts = [gemm(a[:, s * ch:(s + 1) * ch], b[s * ch:(s + 1) * ch], zero,
                      None if sa is None else sa[:, s * nb:(s + 1) * nb], None if sb is None else sb[s * nb:(s + 1) * nb])
                 for s in range(split_k)]
        d = _add_ieee(_reduce(parts, split_reduce, cfg.f32), cb, cfg.f32)
        if acc == "fp16":
            neg, m, u, fin, _ = _f32_parts(d)
            # as a cast: a value that rounds to zero keeps its sign
            d = jnp.where(fin, _round(neg, m, u, jnp.zeros(d.shape, bool), cfg.out) | (d & _U(0x80000000)), d)
    nan = (d & 0x7FFFFFFF) > 0x7F800000
    if acc == "fp32":
        return lax.bitcast_convert_type(jnp.where(nan, _U(cfg.nan_bits), d), jnp.float32)
    d16 = jnp.where(nan, jnp.uint16(cfg.nan_bits), _to_format_bits(d, FORMATS["fp16"]).astype(jnp.uint16))
    return lax.bitcast_convert_type(d16, jnp.float16)
