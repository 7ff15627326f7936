"""The JAX engine of the numerics core: :func:`jax_matmul` (issue 15, first slice).

``simulator.matmul``'s fast path re-expressed in ``jax.numpy`` with 32-bit integer
arithmetic only (int32/uint32 bit patterns, shifts, ``lax.clz``, bitcasts): it needs no
``jax_enable_x64`` and no float arithmetic at all, so it gives the same bits under
``jax.jit`` and ``jax.vmap`` on any device.  It is bit-identical to
``simulator.matmul`` for the rules the classic fused kernel runs
(:attr:`simulator.StepRule.classic_form`: one alignment to the largest exponent per
pass, chained passes, C fused or added after, RZ or RNE into binary32 with
``result_man_bits``, ``zero_exp`` as data) on fp16, bf16, e4m3, e5m2 (e4m3 x e5m2
too) and tf32 inputs, float32 or float16 accumulators, ``split_k`` with its three
reductions.  Everything else raises a ValueError naming what is not yet in the engine.

Every constant comes from the frozen profile data (:func:`simulator.get_profile`,
:class:`simulator.StepRule`, :data:`simulator.FORMATS`), and the roundings of a step
from :func:`simulator.rounding_targets`, the function the Numba kernels' step
parameters are built from.

Numerics of one pass (as ``simulator._kernels.fused_step_rows``), per output element:
E = max of the products' alignment exponents (ea + eb) and the carried term's
(floor(log2|c|) at least its floor; a zero C counts with ``zero_exp`` when the rule has
one); each term truncated toward zero to ``frac_bits`` fractional bits below 2**E, as
an unsigned magnitude, signed again and summed in int32 groups, the groups' positive
and negative parts summed apart in uint32 (bounds checked per rule in ``_config``); the
difference rounded.  Non-finite products (and a non-finite carried
term) decide the result's class as an IEEE sum of them would.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from simulator import FORMATS, Format, RoundingTarget, StepRule, check_split_k, get_profile, rounding_targets

__all__ = ["jax_matmul", "JAX_INPUT_FORMATS"]

#: input formats the JAX engine takes (one format for A and B)
JAX_INPUT_FORMATS = ("fp16", "bf16", "e4m3", "e5m2", "tf32")
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
    fmt: Format
    fmt_b: Format  # B's format (A's, or another FP8 of the same rule)
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


def _not_yet(what: str) -> ValueError:
    return ValueError(f"{what} is not yet in the JAX engine (models.jax_matmul); use simulator.matmul")


def _config(profile, fmt: Format, fmt_b: Format, acc_name: str) -> _Config:
    prof = get_profile(profile)
    rule = prof.rule(fmt.name, fmt_b.name)
    if rule.frac_bits is None or not rule.classic_form:
        raise _not_yet(f"profile {prof.name!r} {fmt.name if fmt == fmt_b else fmt.name + ' x ' + fmt_b.name} (a rule beyond the classic fused kernel: "
                       f"frac_bits={rule.frac_bits}, tree={rule.tree!r}, c_mode={rule.c_mode!r})")
    if fmt.name == "tf32" and rule.operand_rounding != "rz":
        raise _not_yet(f"profile {prof.name!r} tf32 with operand_rounding={rule.operand_rounding!r}")
    if acc_name not in prof.accumulators:
        raise ValueError(f"profile {prof.name!r} supports accumulators {prof.accumulators}, not {acc_name}")
    acc = FORMATS[acc_name]
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
        raise _not_yet(f"profile {prof.name!r} {fmt.name} (a pass of {per_pass} terms at frac_bits="
                       f"{rule.frac_bits} exceeds the uint32 sums)")
    # int32 group sums of signed products: the largest group size dividing the pass
    # length (laid out as in _gemm) whose sum stays below 2**31
    group = max(g for g in range(1, per_pass + 1) if per_pass % g == 0 and g * max_term < 1 << 31)
    pas, out, f32 = rounding_targets(rule, acc)
    nan = prof.nan_fp32 if acc_name == "fp32" else prof.nan_fp16
    nan = (0x7FC00000 if acc_name == "fp32" else 0x7E00) if nan is None else nan
    return _Config(fmt, fmt_b, rule.k, tuple(rule.passes), rule.frac_bits, rule.c_mode == "fused",
                   _SENTINEL if rule.zero_exp is None else rule.zero_exp, rule.zero_exp, pas, out, f32, acc_name,
                   nan, group)


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
def _fp16_to_f32_table():
    """binary32 bits of every binary16 code (exact; NaNs as a quiet NaN)."""
    v = FORMATS["fp16"].decode(FORMATS["fp16"].all_bit_patterns()).astype(np.float32)
    bits = v.view(np.uint32).copy()
    bits[np.isnan(v)] = _QNAN32
    return bits


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


def _f32_to_f16_bits(bits):
    """binary32 bits of binary16 values (or inf/NaN) -> binary16 bits (uint16), exact."""
    neg, mag, unit, fin, zero = _f32_parts(bits)
    n = _bitlen(mag)
    en = unit + n - 1
    f16 = FORMATS["fp16"]
    normal = _shl((en - f16.emin).astype(_U), f16.man_bits) + _shr(mag, n - (f16.man_bits + 1))
    sub = _shr(mag, (f16.emin - f16.man_bits) - unit)
    out = jnp.where(en >= f16.emin, normal, sub)
    out = jnp.where(fin, out, _U(0x7C00))
    out = jnp.where(zero, _U(0), out)
    return (out | jnp.where(neg & ~zero, _U(0x8000), _U(0))).astype(jnp.uint16)


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


def _decode_tf32(x, zero_exp):
    """float32 array -> its tf32 operands (narrowed toward zero: the top 19 bits kept,
    as ``operand_rounding="rz"``) as (sig uint32, exp int32, flags uint8), the fields of
    the table of :func:`_operand_table`, by bit arithmetic."""
    f = FORMATS["tf32"]
    bits = lax.bitcast_convert_type(x, _U) & _U(((1 << f.width) - 1) << f.container_shift)
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


def _decode(x, fmt: Format, zero_exp):
    """Input array -> (sig uint32, exp int32, flags uint8) by table lookup of its codes."""
    if fmt.name == "tf32":
        return _decode_tf32(x, zero_exp)
    sig, e, fl = _operand_table(fmt, zero_exp)
    idx = lax.bitcast_convert_type(x, jnp.dtype(fmt.uint_dtype)).astype(_I)
    return jnp.asarray(sig)[idx], jnp.asarray(e)[idx], jnp.asarray(fl)[idx]


@functools.partial(jax.jit, static_argnums=0)
def _gemm(cfg: _Config, a, b, c_bits):
    """D bits = A @ B + C: a (M, K), b (K, N) input arrays, c_bits (M, N) binary32 bits
    of C; returns (M, N) binary32 bits of D (NaN as 0x7FC00000)."""
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

    ad = lay(_decode(a, cfg.fmt, cfg.zero_exp), False)
    bd = lay(_decode(b, cfg.fmt_b, cfg.zero_exp), True)

    def body(acc, xs):
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
    dt = np.dtype(x.dtype)
    fmt = next((FORMATS[n] for n in JAX_INPUT_FORMATS if n != "tf32" and FORMATS[n].dtype == dt), None)
    if input_format is not None:
        if not isinstance(input_format, str):
            raise TypeError(f"input_format must be a format name such as 'fp16', not {type(input_format).__name__}")
        if input_format not in JAX_INPUT_FORMATS:
            raise _not_yet(f"input_format {input_format!r} (the engine takes {JAX_INPUT_FORMATS})")
        want = FORMATS[input_format]
        if dt != want.dtype:
            raise TypeError(f"input_format={input_format!r} needs {want.dtype} arrays, not {dt}")
        return want
    if dt == np.float32:
        raise TypeError("float32 inputs need input_format='tf32' (the matrix units take tf32, not binary32)")
    if fmt is None:
        raise _not_yet(f"inputs of dtype {dt} (the engine takes float16, bfloat16, float8_e4m3fn, float8_e5m2 "
                       f"and float32 as tf32)")
    return fmt


def _reduce(parts, how: str, f32: RoundingTarget):
    """Sum binary32 bits of partial results by binary32 RNE additions in the order ``how``
    (``simulator.matmul``'s split_k reductions)."""
    p = list(parts)
    if how == "sequential":
        total = p[0]
        for x in p[1:]:
            total = _add_f32(total, x, f32)
        return total
    if how == "butterfly":  # halving strides: p[i] += p[i + S/2], then S/4, ...
        s = len(p) // 2
        while s >= 1:
            p[:s] = [_add_f32(p[i], p[i + s], f32) for i in range(s)]
            s //= 2
        return p[0]
    while len(p) > 1:  # pairwise: neighbours, level by level
        p = [_add_f32(p[i], p[i + 1], f32) for i in range(0, len(p), 2)]
    return p[0]


def jax_matmul(a, b, c=None, *, profile="hopper", input_format=None, split_k=1, split_reduce="sequential"):
    """D = A @ B + C bit for bit as ``simulator.matmul`` (no split_k, scales, precision or
    variant), in ``jax.numpy`` integer arithmetic: jit-able, vmap-able, no x64 needed.

    Args:
        a: (M, K) or (G, M, K) array (JAX or NumPy) of float16, bfloat16, float8_e4m3fn,
            float8_e5m2, or float32 with ``input_format="tf32"`` (narrowed toward zero).
        b: (K, N) or (G, K, N) array of the same dtype, or the other FP8 (e4m3 x e5m2).
        c: (M, N) / (G, M, N) float32 or float16 accumulator, or None (+0, float32);
            its dtype picks the accumulator format.
        profile: a name in :data:`simulator.PROFILES` or a DatapathProfile whose rule for
            the format runs on the classic fused kernel (``StepRule.classic_form``).
        input_format: the format's name; needed only for float32 (``"tf32"``).
        split_k, split_reduce: as ``simulator.matmul``: K cut into ``split_k`` equal
            chunks, each accumulated from zero, the partial results summed by binary32
            RNE additions in the order ``split_reduce`` (``"sequential"``, ``"butterfly"``,
            ``"pairwise"``), then C added the same way (then RNE into float16 for a
            float16 accumulator).
    Returns:
        D as a JAX array of c's dtype (float32 when c is None), NaNs carrying the
        profile's NaN bits.
    Raises:
        TypeError/ValueError for bad arguments; ValueError naming what is not yet in
        the JAX engine (fp32 inputs, FP4/FP6, fnuz FP8, pairwise,
        aligned-C, exact-FMA and grouped rules).
    """
    for name, x in (("a", a), ("b", b)):
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{name} must be a JAX or NumPy array, not {type(x).__name__}")
    if a.ndim not in (2, 3) or b.ndim != a.ndim:
        raise ValueError(f"a and b must both be 2-D (or both 3-D, a batch), not {a.ndim}-D and {b.ndim}-D")
    fmt = _input_format(a, input_format)
    fmt_b = fmt
    if np.dtype(a.dtype) != np.dtype(b.dtype):
        # mixed operands exist only among the formats of at most 8 bits (e4m3 x e5m2)
        fmt_b = _input_format(b, None)
        if fmt.container_bits > 8 or fmt_b.container_bits > 8:
            raise TypeError(f"a and b must have the same dtype, or both be formats of at most 8 bits, "
                            f"not {a.dtype} and {b.dtype}")
    if a.ndim == 3:
        if b.shape[0] != a.shape[0] or (c is not None and (c.ndim != 3 or c.shape[0] != a.shape[0])):
            raise ValueError(f"a, b and c must hold the same number of GEMMs along axis 0, not "
                             f"{a.shape}, {b.shape}{'' if c is None else f' and {c.shape}'}")
        kw = dict(profile=profile, input_format=input_format, split_k=split_k, split_reduce=split_reduce)
        if c is None:
            return jax.vmap(lambda x, y: jax_matmul(x, y, **kw))(a, b)
        return jax.vmap(lambda x, y, z: jax_matmul(x, y, z, **kw))(a, b, c)
    M, Kd = a.shape
    if b.shape[0] != Kd:
        raise ValueError(f"b must have shape ({Kd}, N) to match a's K={Kd}, not {b.shape}")
    N = b.shape[1]
    check_split_k(split_k, split_reduce, Kd)
    if c is None:
        c = jnp.zeros((M, N), jnp.float32)
    if not hasattr(c, "dtype") or np.dtype(c.dtype) not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise TypeError(f"c must be a float32 or float16 array, not {getattr(c, 'dtype', type(c).__name__)}")
    if tuple(c.shape) != (M, N):
        raise ValueError(f"c must have shape {(M, N)}, not {tuple(c.shape)}")
    acc = "fp32" if np.dtype(c.dtype) == np.float32 else "fp16"
    cfg = _config(profile, fmt, fmt_b, acc)
    if acc == "fp32":
        cb = lax.bitcast_convert_type(jnp.asarray(c), _U)
    else:
        cb = jnp.asarray(_fp16_to_f32_table())[lax.bitcast_convert_type(jnp.asarray(c), jnp.uint16).astype(_I)]
    a, b = jnp.asarray(a), jnp.asarray(b)
    if split_k == 1:
        d = _gemm(cfg, a, b, cb)
    else:
        ch = Kd // split_k
        zero = jnp.zeros((M, N), _U)
        parts = [_gemm(cfg, a[:, s * ch:(s + 1) * ch], b[s * ch:(s + 1) * ch], zero) for s in range(split_k)]
        d = _add_f32(_reduce(parts, split_reduce, cfg.f32), cb, cfg.f32)  # the partial sum is never -0
        if acc == "fp16":
            neg, m, u, fin, _ = _f32_parts(d)
            d = jnp.where(fin, _round(neg, m, u, jnp.zeros(d.shape, bool), cfg.out), d)
    nan = (d & 0x7FFFFFFF) > 0x7F800000
    if acc == "fp32":
        return lax.bitcast_convert_type(jnp.where(nan, _U(cfg.nan_bits), d), jnp.float32)
    d16 = jnp.where(nan, jnp.uint16(cfg.nan_bits), _f32_to_f16_bits(d))
    return lax.bitcast_convert_type(d16, jnp.float16)
