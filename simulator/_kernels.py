"""Numba kernels of the numerics core (private).

Kernels take only arrays, integers and named records of them (the namedtuples below,
built once on the Python side from the frozen Format/StepRule data by
:func:`simulator._matmul.step_params`; Numba passes a record's fields as scalars;
the parallel kernels unpack them before their parallel loop).  Values travel as
binary64, which holds every
input, every product of two inputs and every aligned partial sum of the catalogue's
datapaths exactly; rounding is done on the binary64 bit pattern with explicit
``uint64`` arithmetic, masked after every shift.  The scalar primitives here
(:func:`acc_align_exp`, :func:`scale_bits`, :func:`round_bits`) are the only place
where alignment and rounding happen: the fast row kernels below and the cycle-level
PE models call them, so every path makes the same bits.

The slow reference beside these kernels is :mod:`simulator._reference`.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import numba
from numba import njit, prange, types
from numba.extending import intrinsic

# Start Numba's thread pool now.  Numba starts it when it compiles a parallel kernel or
# is asked about threads; a cached kernel that calls a parallel one (fused_gemm calls
# _fused_gemm) runs that one's parallel region with neither having happened when every
# kernel comes from the cache and the GEMM is too small for matmul to ask for threads:
# the region then finds no pool and the process dies (SIGSEGV, seen in a fresh clone's
# second run of `python3 -m simulator`).
numba.get_num_threads()

# alignment exponent of a zero or non-finite operand: far below any real exponent so
# it never becomes the maximum, and sums of two stay far below too
SENTINEL = np.int16(-16000)  # two of them still fit in int16
# lowest alignment exponent used for scaling, so 2**(frac_bits - E) stays finite in
# binary64 when a step has no nonzero finite term (real exponents are >= -300)
E_FLOOR = -600

# ---- named records the kernels take ----------------------------------------------------
Rounding = namedtuple("Rounding", ["man", "emin", "max", "rne", "ovf"])
Rounding.__doc__ = """One rounding target, as :func:`round_bits` takes it: man (int64) mantissa bits,
emin (int64) smallest normal exponent, max (uint64) binary64 bits of the largest finite
value, rne (bool) round to nearest even (else toward zero), ovf (bool) overflow to inf
(else saturate)."""

FusedStep = namedtuple("FusedStep", ["frac", "c_fused", "pas", "out", "f32", "c_zero"])
FusedStep.__doc__ = """A fused step's numerics: frac (int64) fraction bits kept below the alignment
exponent (-1: an exact IEEE step), c_fused (bool) C aligned with the products (c_mode
"fused"; else added after), and three :class:`Rounding` targets: pas (binary32,
between passes and before a c_mode "after" addition), out (into the accumulator) and
f32 (the binary32 round-to-nearest-even addition of c_mode "after"); c_zero (int16) the
alignment exponent of a zero C (c_mode "fused"): :data:`SENTINEL` (no part, the H100's
rule) or the rule's ``zero_exp``."""

FusedOperands = namedtuple("FusedOperands", ["a_val", "a_exp", "b_val", "b_exp", "a_bad", "b_bad", "n_pass",
                                             "pass_len", "p_floor"])
FusedOperands.__doc__ = """Operands in the fused kernels' layout (:func:`simulator._matmul.fused_layout`):
a_val (M, K), b_val (K, N) float32/float64 values; a_exp, b_exp int16 alignment
exponents; a_bad (M, K // 4), b_bad (K // 4,) bool non-finite sweep flags; n_pass,
pass_len (int64) the step's passes and positions per pass; p_floor (int64) the floor
of a nonzero product's alignment exponent (see :func:`fused_gemm`)."""

GeneralOperands = namedtuple("GeneralOperands", ["av", "ae", "bv", "be", "sav", "sae", "sbv", "sbe", "blk",
                                                 "clean"])
GeneralOperands.__doc__ = """Operands of :func:`general_fused_gemm`: av (M, K) float64, ae int16; bv, be
(K, N); block scales sav, sae (M, K // blk), sbv, sbe (K // blk, N) float64 / int16;
blk (int64) 0 for none; clean (M, ceil(K / k_step)) bool, True where step s of row i
holds only finite operands whose products stay below 2**128
(:func:`simulator._matmul.clean_steps`;
(0, 0): no step is known clean)."""

GeneralStep = namedtuple("GeneralStep", ["k_step", "group_k", "zero_set", "c_zero_exp", "frac", "c_mode", "pat",
                                         "n_pass", "sum_fb", "c_fb", "align_rd", "merge_rd", "c_drop", "prod_ovf",
                                         "zero_signed", "pas", "out", "f32"])
GeneralStep.__doc__ = """A step rule with every issue-13 field, as :func:`general_fused_gemm` takes it
(int64 unless said): k_step, group_k; zero_set (bool) whether the rule has a zero_exp;
c_zero_exp a zero C's exponent (SENTINEL: no part); frac; c_mode (C_FUSED, C_AFTER,
C_ALIGNED); pat (int64 array) pass of each position, repeated; n_pass; sum_fb, c_fb,
align_rd, merge_rd (bools), c_drop (-1: never): the aligned-C fields; prod_ovf,
zero_signed (bools); pas, out, f32: :class:`Rounding` targets as in :class:`FusedStep`."""


def rounding(man, emin, max_bits, rne, ovf) -> Rounding:
    """A :class:`Rounding` with explicit-width fields."""
    return Rounding(np.int64(man), np.int64(emin), np.uint64(max_bits), bool(rne), bool(ovf))

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_SIGN = np.uint64(0x8000000000000000)
_MAG = np.uint64(0x7FFFFFFFFFFFFFFF)
_FRAC = np.uint64(0x000FFFFFFFFFFFFF)
_HIDDEN = np.uint64(0x0010000000000000)
_INF = np.uint64(0x7FF0000000000000)
_EXP_ALL = np.uint64(0x7FF)
_U52 = np.uint64(52)


@intrinsic
def as_bits(typingctx, x):
    """The uint64 bit pattern of a binary64 value (a register move, vectorisable)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint64))
    return types.uint64(types.float64), codegen


@intrinsic
def from_bits(typingctx, u):
    """The binary64 value of a uint64 bit pattern (a register move, vectorisable)."""
    if u != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.uint64), codegen


@njit(cache=True)
def pow2(e):
    """2.0**e for an int e in [-1022, 1023], built from its bits."""
    return from_bits(np.uint64(1023 + e) << _U52)


@njit(cache=True)
def round_bits(u, man_bits, emin, max_bits, rne, overflow_inf):
    """Round a binary64 value to a narrower binary format, returning binary64 bits.

    Args:
        u: uint64 bits of the exact value (binary64).
        man_bits: int, mantissa bits of the target (23 for binary32, 10 for binary16).
        emin: int, unbiased exponent of the target's smallest normal number.
        max_bits: uint64 bits (as binary64) of the target's largest finite value.
        rne: True for round to nearest even, False for round toward zero.
        overflow_inf: True: overflow gives inf in both modes; False: IEEE (RZ stops
            at the largest finite value).
    Returns uint64 bits of the rounded value; an exact zero gives +0, inf and NaN
    pass unchanged.
    """
    sign = u & _SIGN
    mag = u & _MAG
    be = np.int64((mag >> _U52) & _EXP_ALL)
    if be == 0x7FF:
        return u
    if mag == _U0:
        return _U0
    drop = np.uint64(52 - man_bits)
    if be >= 1023 + emin:
        if rne:
            half_m1 = (_U1 << (drop - _U1)) - _U1
            mag = mag + half_m1 + ((mag >> drop) & _U1)
        mag = mag & ~((_U1 << drop) - _U1)
    else:
        # below the target's normal range: one quantum is 2**(emin - man_bits)
        sig = (mag & _FRAC) | _HIDDEN if be > 0 else mag
        if be == 0:
            be = 1
        sh = (emin - man_bits) - (be - 1075)
        if sh > 62:
            # sig < 2**53 <= half a quantum: rounds to zero either way
            t = _U0
            rem_gt_half = False
            tie = False
        else:
            ush = np.uint64(sh)
            t = sig >> ush
            rem = sig & ((_U1 << ush) - _U1)
            half = _U1 << (ush - _U1)
            rem_gt_half = rem > half
            tie = rem == half
        if rne and (rem_gt_half or (tie and (t & _U1) == _U1)):
            t = t + _U1
        if t == _U0:
            return _U0
        # normalise t * 2**(emin - man_bits) back into binary64 bits
        n = 0
        x = t
        while x != _U0:
            x = x >> _U1
            n += 1
        mag = (np.uint64(1023 + emin - man_bits + n - 1) << _U52) | ((t << np.uint64(53 - n)) & _FRAC)
    if mag > max_bits:
        mag = _INF if (rne or overflow_inf) else max_bits
    return sign | mag


@njit(cache=True)  # serial: a few ns per element, less than a parallel region's start-up
def encode_values(x, out, man_bits, emin, bias, subnormals, has_zero, smallest_normal, max_finite, over_code,
                  inf_code, nan_code, invalid_neg, zero_invalid, sign_bit, fnuz, shift, rne):
    """Round values to a format and write its codes: the arithmetic of :meth:`Format.encode`.

    Args:
        x: (n,) float64 or float32 values (binary32 is widened exactly).
        out: (n,) uint8/uint16/uint32, the codes (in container position) on return.
        man_bits, emin, bias: the format's fields (int64); subnormals, has_zero (bool);
        smallest_normal, max_finite: float64; over_code, inf_code, nan_code: uint64
        magnitude codes for a finite value past the largest one, for +-inf and for NaN;
        invalid_neg (bool): a negative nonzero value is invalid (NaN) (unsigned formats);
        zero_invalid (bool): zero is invalid (NaN) (formats without zero);
        sign_bit: int64 position of the sign bit (-1: none is written); fnuz (bool): a
        zero result has no sign; shift: int64 container shift; rne (bool): round to
        nearest even, else toward zero.
    The caller has refused NaN inputs for formats without NaN.
    """
    mask = np.uint64((1 << man_bits) - 1)
    for t in range(x.shape[0]):
        v = np.float64(x[t])
        neg = math.copysign(1.0, v) < 0.0  # the sign bit, of NaN and -0 too
        ax = abs(v)
        if ax != ax:
            code = nan_code
        elif ax == np.inf:
            code = inf_code
        else:
            # exponent of the value, floored at emin (binary64 subnormals lie far below any emin)
            e = max(np.int64((as_bits(ax) >> _U52) & _EXP_ALL) - 1023, emin)
            if e > 1000 - man_bits:
                code = over_code  # beyond every format's range (and pow2's below)
            else:
                # power-of-two scalings are exact in binary64: one rounding, to the quantum
                s = ax * pow2(man_bits - e)
                r = np.rint(s) if rne else np.trunc(s)  # rint: ties to even
                m = r * pow2(e - man_bits)
                if not subnormals and m < smallest_normal:
                    m = 0.0
                if not has_zero and m < smallest_normal:
                    m = smallest_normal  # no zero: the smallest value is the floor
                if m > max_finite:
                    code = over_code
                else:
                    em = max(np.int64((as_bits(m) >> _U52) & _EXP_ALL) - 1023, emin)
                    sig = np.uint64(m * pow2(man_bits - em))
                    biased = np.uint64(em + bias) if sig >= np.uint64(1 << man_bits) else np.uint64(0)
                    code = (biased << np.uint64(man_bits)) | (sig & mask)
            if zero_invalid and ax == 0.0:
                code = nan_code
        if neg and invalid_neg and ax != 0.0:
            code = nan_code
        if sign_bit >= 0 and neg and not (fnuz and code == np.uint64(0)):
            code = code | (np.uint64(1) << np.uint64(sign_bit))
        out[t] = code << np.uint64(shift)


@njit(cache=True)
def gather_operands(idx, tv, te, vals, exps):
    """vals.flat[i] = tv[idx.flat[i]], exps.flat[i] = te[idx.flat[i]]: one pass over the
    bit patterns of an input array (1-D views), filling values and alignment exponents."""
    for i in range(idx.shape[0]):
        x = idx[i]
        vals[i] = tv[x]
        exps[i] = te[x]


@njit(cache=True)
def acc_align_exp(u, acc_emin):
    """Alignment exponent (int16) of an accumulator value from its binary64 bits.

    floor(log2|c|), at least ``acc_emin`` (a subnormal accumulator counts with its
    format's smallest normal exponent); :data:`SENTINEL` for zero, inf and NaN, which
    take no part in choosing the alignment exponent.
    """
    be = np.int64((u >> _U52) & _EXP_ALL)
    if be == 0 or be == 0x7FF:
        return SENTINEL
    e = be - 1023
    return np.int16(e if e > acc_emin else acc_emin)


@njit(cache=True)
def scale_bits(e, frac_bits):
    """binary64 bits of 2**(frac_bits - e), the factor that puts 2**(e - frac_bits) at 1."""
    if e < E_FLOOR:
        e = E_FLOOR
    return np.uint64(1023 + frac_bits - e) << _U52


@njit(cache=True)
def unscale_bits(e, frac_bits):
    """binary64 bits of 2**(e - frac_bits), the weight of one unit of an aligned sum."""
    if e < E_FLOOR:
        e = E_FLOOR
    return np.uint64(1023 - frac_bits + e) << _U52


# columns per block: one step's slice of B (16 x 256 values and int16
# exponents) and the block's working rows stay in a 48 KiB L1 data cache
_JB = 512


@njit(cache=True, inline="always")
def _max_exps(a_exp, i, k, b_exp, emax, j0, j1):
    """emax[j-j0] = max(emax, a_exp[i, k+t] + b_exp[k+t, j]) for t < 4, j in [j0, j1)."""
    a0 = a_exp[i, k]
    a1 = a_exp[i, k + 1]
    a2 = a_exp[i, k + 2]
    a3 = a_exp[i, k + 3]
    b0 = b_exp[k, j0:j1]
    b1 = b_exp[k + 1, j0:j1]
    b2 = b_exp[k + 2, j0:j1]
    b3 = b_exp[k + 3, j0:j1]
    # explicit int16: Numba widens small ints to int64, which costs 4x the vector lanes
    for j in range(j1 - j0):
        emax[j] = max(max(emax[j], np.int16(a0 + b0[j])),
                      max(max(np.int16(a1 + b1[j]), np.int16(a2 + b2[j])), np.int16(a3 + b3[j])))


@njit(cache=True, inline="always")
def _add_terms(a_val, i, k, b_val, scale, itot, j0, j1):
    """itot[j-j0] += trunc(a[i, k+t] * b[k+t, j] * scale[j-j0]) for t < 4, j in [j0, j1).

    a_val, b_val and scale share one float dtype (binary32 or binary64) in which
    every product and every scaled product is exact (or below 1, truncating to 0);
    each aligned term is below 2**27 in magnitude, so four of them and sixteen
    sweeps' worth fit the int32 accumulator exactly.  Truncation toward zero is the
    float-to-int conversion itself.
    """
    a0 = a_val[i, k]
    a1 = a_val[i, k + 1]
    a2 = a_val[i, k + 2]
    a3 = a_val[i, k + 3]
    b0 = b_val[k, j0:j1]
    b1 = b_val[k + 1, j0:j1]
    b2 = b_val[k + 2, j0:j1]
    b3 = b_val[k + 3, j0:j1]
    for j in range(j1 - j0):
        sc = scale[j]
        itot[j] = np.int32(itot[j] + np.int32(np.int32(a0 * b0[j] * sc) + np.int32(a1 * b1[j] * sc))
                           + np.int32(np.int32(a2 * b2[j] * sc) + np.int32(a3 * b3[j] * sc)))


@njit(cache=True)
def _add_terms_special(a_val, i, k, b_val, scale, itot, special, j0, j1):
    """As :func:`_add_terms` for a sweep that holds an inf or NaN operand.

    Finite terms go to ``itot``; the products that are not finite (inf, NaN, inf * 0)
    are summed into ``special`` (binary64), which then decides the result's class.
    """
    for t in range(4):
        av = a_val[i, k + t]
        for j in range(j1 - j0):
            x = av * b_val[k + t, j0 + j]
            y = x * scale[j]
            if np.isfinite(y):
                itot[j] += np.int32(y)
            else:
                special[j] += x


@njit(cache=True, inline="always")
def _round_fast(u, man_bits, emin, max_bits, rne):
    """:func:`round_bits` for the common case, branch-free so that sweeps vectorise.

    Returns (bits, slow): the rounded bits, right when ``slow`` is 0; ``slow`` is 1 for
    values outside the target's normal range, overflows, infinities and NaNs.
    """
    drop = np.uint64(52 - man_bits)
    keep = ~((_U1 << drop) - _U1)
    half_m1 = (_U1 << (drop - _U1)) - _U1 if rne else _U0
    lsb_add = _U1 if rne else _U0
    mag = u & _MAG
    r = (mag + half_m1 + (((mag >> drop) & _U1) & lsb_add)) & keep
    be = mag >> _U52
    slow = np.int64((be < np.uint64(1023 + emin)) | (be == _EXP_ALL) | (r > max_bits))
    return (u & _SIGN) | r, slow


@njit(cache=True)
def _round_fixup(src, dst, n, rd):
    """Second pass of :func:`round_block`: :func:`round_bits` where the fast path was not right
    (rd: :class:`Rounding`)."""
    man_bits, emin, max_bits, rne, overflow_inf = rd.man, rd.emin, rd.max, rd.rne, rd.ovf
    for j in range(n):
        r, slow = _round_fast(as_bits(src[j]), man_bits, emin, max_bits, rne)
        if slow:
            dst[j] = from_bits(round_bits(as_bits(src[j]), man_bits, emin, max_bits, rne, overflow_inf))


@njit(cache=True, inline="always")
def carry_emin(p, c_fused, o_emin, p_emin):
    """The floor of the carried term's alignment exponent in pass ``p`` of a step: C
    (pass 0, c_mode "fused") counts with the accumulator's smallest normal exponent,
    a previous pass's binary32 result with binary32's (``acc_align_exp``)."""
    return o_emin if (p == 0 and c_fused) else p_emin


@njit(cache=True, inline="always")
def carry_exp(c, c_emin, zero_exp):
    """Alignment exponent (int64) of the term carried into a pass (:func:`acc_align_exp`
    with floor ``c_emin``); a zero carried term counts with ``zero_exp`` (int64: the
    rule's zero C exponent on a fused C's pass 0, else :data:`SENTINEL`, which is what
    acc_align_exp gives a zero).  A select, not a branch, so the sweep over columns
    vectorises."""
    e = np.int64(acc_align_exp(as_bits(c), c_emin))
    return zero_exp if c == 0.0 else e


@njit(cache=True)
def round_block(src, dst, n, rd):
    """dst[:n] = rounded src[:n] (binary64 arrays, distinct), as :func:`round_bits` to rd
    (:class:`Rounding`).

    One vectorised sweep of :func:`_round_fast`; only if it met values it cannot round
    does :func:`_round_fixup` go over them again.
    """
    man_bits, emin, max_bits, rne = rd.man, rd.emin, rd.max, rd.rne
    slow = 0
    for j in range(n):
        r, sl = _round_fast(as_bits(src[j]), man_bits, emin, max_bits, rne)
        dst[j] = from_bits(r)
        slow += sl
    if slow:
        _round_fixup(src, dst, n, rd)


@njit(cache=True)
def add_c_after(x, c, tmp, out, n, st):
    """The tail of a c_mode "after" step, for j < n: out[j] = x[j] + c[j] by one binary32
    round-to-nearest-even addition, then rounded into the accumulator.  x[j] (the
    products' binary32 result) and c[j] (C) are binary64 values; x and tmp are
    overwritten (scratch; out may alias c).  The sum is exact in binary64 up to one
    rounding, then rounded once more (innocuous: 53 >= 2 * 24 + 2).  The fast path
    calls it on a block of columns, the cycle-level DPU on one value.  st: the
    :class:`FusedStep` (its f32 and out roundings)."""
    for j in range(n):
        tmp[j] = x[j] + c[j]
    round_block(tmp, x, n, st.f32)
    round_block(x, out, n, st.out)


@njit(cache=True)
def _unscale_round(total, itot, emax, dst, n, frac_bits, rd):
    """dst[j] = round((total[j] + itot[j]) * 2**(E_j - frac_bits)) for j < n, to rd
    (:class:`Rounding`).

    The exact value is left in ``total`` (binary64); the rounding is
    :func:`round_block`'s, fused into the same sweep.
    """
    man_bits, emin, max_bits, rne = rd.man, rd.emin, rd.max, rd.rne
    slow = 0
    for j in range(n):
        t = (total[j] + itot[j]) * pow2(max(np.int64(emax[j]), E_FLOOR) - frac_bits)
        total[j] = t
        r, sl = _round_fast(as_bits(t), man_bits, emin, max_bits, rne)
        dst[j] = from_bits(r)
        slow += sl
    if slow:
        _round_fixup(total, dst, n, rd)


@njit(cache=True)
def fused_gemm(ops, st, acc, n_chunks=1):
    """D[g] = A[g] @ B[g] + C[g] for a batch of G GEMMs through chained fused steps.

    One step is ``n_pass`` passes of ``pass_len`` K positions each (the caller lays
    each step's positions out pass by pass and zero-pads; zero terms change nothing).
    Each pass fuses its products with the term carried from the previous pass (C for
    the first when ``c_fused``): alignment exponent E = the largest exponent among
    nonzero terms; each term truncated toward zero to ``frac_bits`` fractional bits
    below 2**E; exact sum; rounded into binary32 (``p_*``) between passes, into the
    accumulator (``o_*``) after the last, or, when C is not fused, into binary32 and
    then one binary32 round-to-nearest-even addition of C.

    Args (``ops``, a :class:`FusedOperands` of batched arrays; ``st``, a :class:`FusedStep`):
        a_val: (G, M, K) input values, float32 or float64 (every product exact in that
            dtype); a_exp: (G, M, K) int16 alignment exponents (:data:`SENTINEL` for
            zero/non-finite); K a multiple of n_pass * pass_len, pass_len of 4.
        b_val: (G, K, N) same dtype; b_exp: (G, K, N) int16.
        a_bad: (G, M, K // 4) bool, True where a sweep of four A values holds inf/NaN;
            b_bad: (G, K // 4) bool, likewise for four rows of B.
        acc: (G, M, N) float64 accumulator, C on entry, D on return (in place).
        p_floor: int, at most the alignment exponent of any nonzero product, and
            such that 2**(frac_bits - p_floor) is finite in a_val's dtype.
        st.pas: binary32 rounding between passes; st.out: rounding into the
            accumulator; st.f32: the binary32 addition of c_mode "after".
        n_chunks: tasks run in parallel (the caller passes Numba's thread count; 1:
            serial, no parallel region, for GEMMs too small to pay for one).
    """
    G, M = ops.a_val.shape[0], ops.a_val.shape[1]
    # GEMMs and rows are independent: split the batch into tasks of whole GEMMs, or of
    # row chunks when there are fewer GEMMs than threads; each task has its own scratch
    per_g = max(1, min(M, -(-n_chunks // G))) if G else 1
    if n_chunks <= 1:
        _fused_tasks(ops, st, acc, per_g, 0, G * per_g)
        return
    # the parallel kernel takes the records' fields (a parallel kernel taking records ran
    # 4x slower, measured) and rebuilds them in each task
    a_val, a_exp, b_val, b_exp, a_bad, b_bad = ops.a_val, ops.a_exp, ops.b_val, ops.b_exp, ops.a_bad, ops.b_bad
    n_pass_, pass_len, p_floor = ops.n_pass, ops.pass_len, ops.p_floor
    frac, c_fused = st.frac, st.c_fused
    p_man, p_emin, p_max, p_rne, p_ovf = st.pas
    o_man, o_emin, o_max, o_rne, o_ovf = st.out
    f_man, f_emin, f_max, f_rne, f_ovf = st.f32
    _fused_gemm(acc, per_g, a_val, a_exp, b_val, b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor, frac, c_fused,
                p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man, f_emin, f_max, f_rne,
                f_ovf, st.c_zero)


@njit(cache=True, parallel=True)
def _fused_gemm(acc, per_g, a_val, a_exp, b_val, b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor, frac, c_fused,
                p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man, f_emin, f_max, f_rne,
                f_ovf, c_zero):
    """:func:`fused_gemm` on the records' fields, one task per prange iteration."""
    for t in prange(a_val.shape[0] * per_g):
        ops_ = FusedOperands(a_val, a_exp, b_val, b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor)
        st_ = FusedStep(frac, c_fused, Rounding(p_man, p_emin, p_max, p_rne, p_ovf),
                        Rounding(o_man, o_emin, o_max, o_rne, o_ovf), Rounding(f_man, f_emin, f_max, f_rne, f_ovf),
                        c_zero)
        _fused_tasks(ops_, st_, acc, per_g, t, t + 1)


@njit(cache=True)
def _fused_tasks(ops, st, acc, per_g, t0, t1):
    """Tasks [t0, t1) of :func:`fused_gemm`: task t is row chunk t % per_g of GEMM t // per_g."""
    M = ops.a_val.shape[1]
    for t in range(t0, t1):
        g, ch = t // per_g, t % per_g
        ops_g = FusedOperands(ops.a_val[g], ops.a_exp[g], ops.b_val[g], ops.b_exp[g], ops.a_bad[g], ops.b_bad[g],
                              ops.n_pass, ops.pass_len, ops.p_floor)
        _fused_rows(ops_g, st, acc[g], ch * M // per_g, (ch + 1) * M // per_g)


@njit(cache=True)
def _fused_rows(ops, st, acc, i0, i1):
    """:func:`fused_gemm` for rows [i0, i1) of A and D."""
    K = ops.a_val.shape[1]
    N = acc.shape[1]
    k_step = ops.n_pass * ops.pass_len
    emax = np.empty(_JB, np.int16)
    scale = np.empty(_JB, ops.a_val.dtype)
    itot = np.empty(_JB, np.int32)
    special = np.zeros(_JB, np.float64)
    total = np.empty(_JB, np.float64)
    carry = np.empty(_JB, np.float64)
    row = np.empty(_JB, np.float64)
    for j0 in range(0, N, _JB):
        j1 = min(j0 + _JB, N)
        for k0 in range(0, K, k_step):
            fused_step_rows(ops, st, acc, i0, i1, k0, j0, j1, emax, scale, itot, special, total, carry, row)


@njit(cache=True)
def fused_step_rows(ops, st, acc, i0, i1, k0, j0, j1, emax, scale, itot, special, total, carry, row):
    """One fused step of rows [i0, i1) over columns [j0, j1): the numerics of every fused datapath.

    The step is the ``n_pass * pass_len`` laid-out K positions from ``k0`` (arrays and
    parameters as :func:`fused_gemm`); ``acc`` (M, N) float64 holds D before the step
    and after it.  emax (int16), scale (a_val's dtype), itot (int32), special
    (float64, zeros), total, carry and row (float64): scratch of at least j1 - j0
    elements.  The fast path calls it for every block of rows and step; the
    cycle-level tensor-core array for every fault-free unit row of a fold.
    """
    a_val, a_exp, b_val, b_exp, a_bad, b_bad = ops.a_val, ops.a_exp, ops.b_val, ops.b_exp, ops.a_bad, ops.b_bad
    n_pass, pass_len, p_floor = ops.n_pass, ops.pass_len, ops.p_floor
    frac_bits, c_fused = st.frac, st.c_fused
    n = j1 - j0
    for i in range(i0, i1):
        for j in range(n):
            row[j] = acc[i, j0 + j]
        for j in range(n):
            carry[j] = row[j] if c_fused else 0.0
        for p in range(n_pass):
            kp = k0 + p * pass_len
            # 1. the alignment exponent: largest exponent among nonzero terms
            # (the products' first, then the carried term's, in the next sweep)
            emax[:n] = SENTINEL
            for k in range(kp, kp + pass_len, 4):
                _max_exps(a_exp, i, k, b_exp, emax, j0, j1)
            # 2. aligned terms, each truncated toward zero, summed exactly.  The carried
            # term is scaled in binary64 by 2**(frac_bits - E) (see scale_bits); products by
            # the same factor, floored at p_floor: below it no product is nonzero, and the
            # factor stays finite in a_val's dtype
            c_emin = carry_emin(p, c_fused, st.out.emin, st.pas.emin)
            # a zero C counts with the rule's zero exponent (pass 0 of a fused C only)
            zero_exp = np.int64(st.c_zero) if (p == 0 and c_fused) else np.int64(SENTINEL)
            for j in range(n):
                c = carry[j]
                e = max(np.int64(emax[j]), carry_exp(c, c_emin, zero_exp))
                emax[j] = e
                total[j] = np.trunc(c * pow2(frac_bits - max(e, E_FLOOR)))
                scale[j] = pow2(frac_bits - max(e, p_floor))
                itot[j] = 0
            any_bad = False
            for k in range(kp, kp + pass_len, 4):
                if a_bad[i, k // 4] or b_bad[k // 4]:
                    any_bad = True
                    _add_terms_special(a_val, i, k, b_val, scale, itot, special, j0, j1)
                else:
                    _add_terms(a_val, i, k, b_val, scale, itot, j0, j1)
                if (k - kp) % 16 == 12 and k + 4 < kp + pass_len:
                    # sixteen terms: empty the int32 sum before it could overflow
                    for j in range(n):
                        total[j] += itot[j]
                        itot[j] = 0
            if any_bad:
                for j in range(n):
                    if not np.isfinite(special[j]):
                        total[j] += special[j]  # inf, -inf or NaN decides the class
                    special[j] = 0.0
            # 3. back to a value (exact: a power-of-two scaling), then rounded
            if p < n_pass - 1:
                _unscale_round(total, itot, emax, carry, n, frac_bits, st.pas)
            elif c_fused:
                _unscale_round(total, itot, emax, row, n, frac_bits, st.out)
            else:
                _unscale_round(total, itot, emax, carry, n, frac_bits, st.pas)
                add_c_after(carry, row, total, row, n, st)
        for j in range(n):
            acc[i, j0 + j] = row[j]


@njit(cache=True)
def round_sum(c, p, man_bits, emin, max_bits, rne, overflow_inf):
    """The exact sum c + p of two binary64 values, rounded once (as :func:`round_bits`).

    c + p in binary64 may itself be rounded; TwoSum recovers the error e exactly
    (s + e == c + p).  The rounding of s differs from that of the exact sum only when
    s sits on one of the target's rounding boundaries (a representable value for
    RZ, a midpoint for RNE) -- those are binary64 numbers, so the exact sum lies
    strictly on e's side of s: the neighbour of s on that side rounds like it.
    Zero results keep IEEE 754 signs.  Returns a binary64 value.
    """
    s = c + p
    u = as_bits(s)
    r = round_bits(u, man_bits, emin, max_bits, rne, overflow_inf)
    if np.isfinite(s):
        bb = s - c
        e = (c - (s - bb)) + (p - bb)
        if e != 0.0:
            mag = u & _MAG
            below = round_bits(((mag - _U1) | (u & _SIGN)), man_bits, emin, max_bits, rne, overflow_inf)
            above = round_bits(((mag + _U1) | (u & _SIGN)), man_bits, emin, max_bits, rne, overflow_inf)
            if below != above:  # s is a boundary: take the side the exact sum is on
                r = above if (e > 0.0) == (s > 0.0) else below
    if r == _U0:
        r = u & _SIGN
    return from_bits(r)


@njit(cache=True)
def fma_gemm(a_val, b_val, acc, out):
    """D = A @ B + C by scalar fused multiply-adds along K, each rounded once.

    a_val (M, K), b_val (K, N), acc (M, N) float64 (in place).  Each product of two
    inputs is exact in binary64; :func:`round_sum` rounds ``c + product`` exactly
    once into the accumulator (``out``, a :class:`Rounding`: RNE or RZ).
    """
    o_man, o_emin, o_max, o_rne, o_ovf = out.man, out.emin, out.max, out.rne, out.ovf
    M, K = a_val.shape
    N = acc.shape[1]
    for i in range(M):
        for k in range(K):
            av = a_val[i, k]
            for j in range(N):
                acc[i, j] = round_sum(acc[i, j], av * b_val[k, j], o_man, o_emin, o_max, o_rne, o_ovf)


@njit(cache=True)
def _fma_rows4(a32, i, b32, acc32, K4):
    """Rows i..i+3 of fma_gemm_f32 over K positions [0, K4), four at a time."""
    N = acc32.shape[1]
    r0 = acc32[i]
    r1 = acc32[i + 1]
    r2 = acc32[i + 2]
    r3 = acc32[i + 3]
    for k in range(0, K4, 4):
        b0 = b32[k]
        b1 = b32[k + 1]
        b2 = b32[k + 2]
        b3 = b32[k + 3]
        a00, a01, a02, a03 = a32[i, k], a32[i, k + 1], a32[i, k + 2], a32[i, k + 3]
        a10, a11, a12, a13 = a32[i + 1, k], a32[i + 1, k + 1], a32[i + 1, k + 2], a32[i + 1, k + 3]
        a20, a21, a22, a23 = a32[i + 2, k], a32[i + 2, k + 1], a32[i + 2, k + 2], a32[i + 2, k + 3]
        a30, a31, a32_, a33 = a32[i + 3, k], a32[i + 3, k + 1], a32[i + 3, k + 2], a32[i + 3, k + 3]
        for j in range(N):
            x0 = b0[j]
            x1 = b1[j]
            x2 = b2[j]
            x3 = b3[j]
            r0[j] = (((r0[j] + a00 * x0) + a01 * x1) + a02 * x2) + a03 * x3
            r1[j] = (((r1[j] + a10 * x0) + a11 * x1) + a12 * x2) + a13 * x3
            r2[j] = (((r2[j] + a20 * x0) + a21 * x1) + a22 * x2) + a23 * x3
            r3[j] = (((r3[j] + a30 * x0) + a31 * x1) + a32_ * x2) + a33 * x3


@njit(cache=True)
def _fma_block(a32, b32, acc32, i0):
    """Rows [i0, i0 + 4) (or to M) of one GEMM of :func:`fma_gemm_f32`, every K position in order."""
    M, K = a32.shape
    N = acc32.shape[1]
    K4 = K - K % 4
    i1 = min(i0 + 4, M)
    if i1 - i0 == 4:
        _fma_rows4(a32, i0, b32, acc32, K4)
    else:
        for i in range(i0, i1):
            r = acc32[i]
            for k in range(0, K4, 4):
                a0 = a32[i, k]
                a1 = a32[i, k + 1]
                a2 = a32[i, k + 2]
                a3 = a32[i, k + 3]
                b0 = b32[k]
                b1 = b32[k + 1]
                b2 = b32[k + 2]
                b3 = b32[k + 3]
                for j in range(N):
                    r[j] = (((r[j] + a0 * b0[j]) + a1 * b1[j]) + a2 * b2[j]) + a3 * b3[j]
    for i in range(i0, i1):
        r = acc32[i]
        for k in range(K4, K):
            a0 = a32[i, k]
            b0 = b32[k]
            for j in range(N):
                r[j] = r[j] + a0 * b0[j]


@njit(cache=True)
def fma_gemm_f32(a32, b32, acc32, n_threads=1):
    """As :func:`fma_gemm` in binary32 for a batch, valid only when every product is exact in binary32.

    a32 (G, M, K), b32 (G, K, N), acc32 (G, M, N) float32 (in place).  The caller
    checks the exactness condition (all nonzero products within [2**-126, 2**127));
    then ``fl(fl(a*b) + c) == fma(a, b, c)``.  Four K positions are applied to an
    element per load and store, in K order, so every element sees the same sequence of
    roundings as a one-at-a-time loop; four rows share each load of B.  Blocks of four
    rows of every GEMM are independent tasks: run in parallel when ``n_threads`` > 1,
    serially (no parallel region) otherwise.
    """
    G, M = a32.shape[0], a32.shape[1]
    nq = (M + 3) // 4
    if n_threads <= 1:
        for t in range(G * nq):
            g = t // nq
            _fma_block(a32[g], b32[g], acc32[g], 4 * (t % nq))
    else:
        _fma_gemm_f32(a32, b32, acc32, nq)


@njit(cache=True, parallel=True)
def _fma_gemm_f32(a32, b32, acc32, nq):
    """:func:`fma_gemm_f32`'s tasks in parallel."""
    for t in prange(a32.shape[0] * nq):
        g = t // nq
        _fma_block(a32[g], b32[g], acc32[g], 4 * (t % nq))


# ---------------------------------------------------------------------------- issue 13: the general step
# c_mode codes of general_fused_gemm
C_FUSED, C_AFTER, C_ALIGNED = 0, 1, 2
_TWO128 = float.fromhex("0x1p128")
# binary64 bits of binary32's largest finite value, (2 - 2**-23) * 2**127
_F32_MAX = np.uint64(0x47EFFFFFE0000000)
_TINY32 = np.float32(float.fromhex("0x1p-126"))


@njit(cache=True, inline="always")
def _shr_nonneg(x, s, rd):
    """x * 2**-s for int64 x and s >= 0, rounded down (``rd``) or toward zero; branch-free."""
    sh = min(s, 63)
    m = abs(x) >> sh
    return (x >> sh) if rd else (-m if x < 0 else m)


# columns per block of the general step: fewer, longer sweeps (128 columns ran 1.6x
# slower, measured); a clean step's scratch stays in the L1 data cache
_GJB = 512
# rows per task of the general fast path (at most): they share one step's slice of B
_GIB = 16


@njit(cache=True)
def general_scratch(k_step, n_pass, n):
    """Scratch of :func:`general_step_cols` for ``n`` columns: (tv (k_step, n) float64,
    te (k_step, n) int64, pe (n_pass, n) int16, ps (n_pass, n) int64, vec (3 + n_pass, n)
    float64, ivec (2, n) int64)."""
    return (np.empty((k_step, n), np.float64), np.empty((k_step, n), np.int64),
            np.empty((max(n_pass, 1), n), np.int16), np.empty((max(n_pass, 1), n), np.int64),
            np.empty((3 + max(n_pass, 1), n), np.float64), np.empty((2, n), np.int64))


@njit(cache=True, inline="always")
def _term_row(direct, av, bv, i, kk, j0, j1, tvt):
    """(x, row): the terms of position kk for columns [j0, j1) are x * row[j - j0] --
    A's value and B's row for a clean step (``direct``), else 1.0 and the scratch's
    row ``tvt`` (the exact product already; times 1.0 leaves it as it is)."""
    if direct:
        return av[i, kk], bv[kk, j0:j1]
    return 1.0, tvt[:j1 - j0]


@njit(cache=True, inline="always")
def _next_of_pass(pat, p, t, nt):
    """The first position from t on (below nt) in pass p (``pat``: the pass of each
    position, repeated); nt if none."""
    L = pat.shape[0]
    while t < nt and pat[t % L] != p:
        t += 1
    return t


@njit(cache=True, inline="always")
def _max_term_exps(dst, direct, ae, be, i, kk, j0, j1, tet):
    """dst[j - j0] = max(dst, the exponent of position kk's term) for columns [j0, j1):
    ae[i, kk] + be[kk, j] for a clean step (``direct``), else the scratch's ``tet``.
    Exponents fit int16 (two :data:`SENTINEL` do): an int16 ``dst`` keeps the sweep in
    int16 lanes (Numba widens small ints to int64 unless told, 4x the lanes)."""
    if direct:
        ex = ae[i, kk]
        ber = be[kk, j0:j1]
        for j in range(j1 - j0):
            dst[j] = max(dst[j], np.int16(ex + ber[j]))
    else:
        for j in range(j1 - j0):
            dst[j] = max(dst[j], tet[j])


@njit(cache=True)
def nonzero_floor(v, e):
    """(the smallest exponent e[x] (int16) among nonzero finite values v[x], the smallest
    nonzero finite |v[x]|) over 1-D arrays v (float64) and e; (32767, inf) when there is
    none."""
    em = np.int64(32767)
    vm = np.inf
    for x in range(v.shape[0]):
        a = abs(v[x])
        live = a != 0.0 and a < np.inf
        em = min(em, np.int64(e[x]) if live else np.int64(32767))
        vm = min(vm, a if live else np.inf)
    return em, vm


@njit(cache=True)
def clean_steps_into(av, bv, k_step, out):
    """out[i, s] = True where step s of row i (K positions [s * k_step, (s + 1) * k_step))
    meets only finite operand values whose products stay below 2**128 in magnitude
    (:class:`GeneralOperands`' ``clean``).  av (M, K), bv (K, N) float64; out (M,
    ceil(K / k_step)) bool.  Magnitudes compared as bit patterns (uint64 lanes; inf and
    NaN above every finite one); the slow reference is
    :func:`simulator._matmul.clean_steps_reference`."""
    M, K = av.shape
    N = bv.shape[1]
    ns = out.shape[1]
    col = np.empty(N, np.uint64)
    mb = np.empty(ns, np.float64)
    for s in range(ns):
        # largest |b| of the step's rows: column by column (a sweep that vectorises), then across
        col[:] = _U0
        for k in range(s * k_step, min((s + 1) * k_step, K)):
            row = bv[k]
            for j in range(N):
                col[j] = max(col[j], as_bits(row[j]) & _MAG)
        m = _U0
        for j in range(N):
            m = max(m, col[j])
        mb[s] = from_bits(m) if m < _INF else np.inf  # NaN counts as inf: never clean
    for i in range(M):
        for s in range(ns):
            m = _U0
            for k in range(s * k_step, min((s + 1) * k_step, K)):
                m = max(m, as_bits(av[i, k]) & _MAG)
            ma = from_bits(m) if m < _INF else np.inf
            out[i, s] = ma * mb[s] < _TWO128  # False for inf * 0 (NaN) as well


@njit(cache=True, inline="always")
def _aligned_with_c(sp, ep, c, c_exp, frac_bits, sum_fb, c_fb, align_rd, c_drop):
    """Step 3's end for c_mode "aligned", one column: the products' aligned sum sp
    (int64, units of 2**(ep - frac_bits), ep their exponent) and C (binary64 value c,
    alignment exponent c_exp) re-aligned to E = max(ep, c_exp) (``sum_fb`` and ``c_fb``
    fraction bits, rounded down when ``align_rd``, else toward zero; C dropped when more
    than ``c_drop`` >= 0 below E) and added exactly.  Returns (the exact sum, binary64;
    its unit's exponent, int64)."""
    E = max(ep, c_exp)
    Ec = max(E, E_FLOOR)
    s31 = _shr_nonneg(sp << (sum_fb - frac_bits), E - ep, align_rd)
    cs = c * pow2(c_fb - Ec)
    sc = np.int64(np.floor(cs) if align_rd else np.trunc(cs))
    sc = np.int64(0) if (c_drop >= 0 and c_exp < E - c_drop) else sc
    return float(s31 + (sc << (sum_fb - c_fb))) * pow2(Ec - sum_fb), Ec - sum_fb


@njit(cache=True, inline="always")
def _four(x0, x1, x2, x3, v0, v1, v2, v3, sc, narrow):
    """The sum (int64) of four terms x_t * v_t aligned by sc and truncated toward zero;
    ``narrow``: binary32 terms, summed in int32 (the caller knows they fit)."""
    if narrow:
        return np.int64((np.int32(x0 * v0 * sc) + np.int32(x1 * v1 * sc))
                        + (np.int32(x2 * v2 * sc) + np.int32(x3 * v3 * sc)))
    return ((np.int64(x0 * v0 * sc) + np.int64(x1 * v1 * sc))
            + (np.int64(x2 * v2 * sc) + np.int64(x3 * v3 * sc)))


@njit(cache=True, inline="always")
def _add_four(ps, psc, pe, p_floor, frac_bits, x0, x1, x2, x3, u0, u1, u2, u3, nc, first, narrow):
    """ps[j] (+)= the four terms x_t * u_t[j] aligned by psc[j] and truncated toward
    zero, j < nc (:func:`_aligned_clean_cols`); ``first``: psc[j] set from pe[j] first
    and ps[j] set, not added to; ``narrow``: binary32 terms, summed in int32 lanes."""
    for j in range(nc):
        if first:
            psc[j] = pow2(frac_bits - max(np.int64(pe[j]), p_floor))
        four = _four(x0, x1, x2, x3, u0[j], u1[j], u2[j], u3[j], psc[j], narrow)
        ps[j] = four if first else ps[j] + four


@njit(cache=True, inline="always")
def _add_four_pair(ps, psc, pe, ps2, psc2, pe2, p_floor, frac_bits, x0, x1, x2, x3, y0, y1, y2, y3, u0, u1, u2, u3,
                   nc, first, narrow):
    """:func:`_add_four` for two rows (A's values x_t and y_t) in one sweep: each value
    of B's rows loaded once for both."""
    for j in range(nc):
        if first:
            psc[j] = pow2(frac_bits - max(np.int64(pe[j]), p_floor))
            psc2[j] = pow2(frac_bits - max(np.int64(pe2[j]), p_floor))
        v0, v1, v2, v3 = u0[j], u1[j], u2[j], u3[j]
        f1 = _four(x0, x1, x2, x3, v0, v1, v2, v3, psc[j], narrow)
        f2 = _four(y0, y1, y2, y3, v0, v1, v2, v3, psc2[j], narrow)
        ps[j] = f1 if first else ps[j] + f1
        ps2[j] = f2 if first else ps2[j] + f2


@njit(cache=True, inline="always")
def _exp4(e, a0, a1, a2, a3, b0, b1, b2, b3):
    """max(e, a_t + b_t for t < 4) in int16 (two :data:`SENTINEL` fit; explicit int16:
    Numba widens small ints to int64, which costs 4x the vector lanes)."""
    return max(max(e, np.int16(a0 + b0)), max(max(np.int16(a1 + b1), np.int16(a2 + b2)), np.int16(a3 + b3)))


@njit(cache=True)
def _aligned_clean_pair(av, ae, bv, be, p_floor, i, j0, j1, k0, k1, c, c2, g, pe, pe2, psc, psc2, ps, ps2, xs):
    """:func:`_aligned_clean_cols` for rows i and i + 1 (c, c2: their C and results),
    both clean: the exponent and term sweeps take both rows, each value of B's rows
    loaded once for the two (and half the sweeps' set-up).  pe2, psc2, ps2: the second
    row's scratch."""
    nc = j1 - j0
    nt = k1 - k0
    if nt % 4:
        _aligned_clean_cols(av, ae, bv, be, p_floor, i, j0, j1, k0, k1, c, g, pe, psc, ps, xs)
        _aligned_clean_cols(av, ae, bv, be, p_floor, i + 1, j0, j1, k0, k1, c2, g, pe, psc, ps, xs)
        return
    frac_bits = g.frac
    pe[:nc] = SENTINEL
    pe2[:nc] = SENTINEL
    for t in range(0, nt, 4):
        kk = k0 + t
        a0, a1, a2, a3 = ae[i, kk], ae[i, kk + 1], ae[i, kk + 2], ae[i, kk + 3]
        d0, d1, d2, d3 = ae[i + 1, kk], ae[i + 1, kk + 1], ae[i + 1, kk + 2], ae[i + 1, kk + 3]
        b0 = be[kk, j0:j1]
        b1 = be[kk + 1, j0:j1]
        b2 = be[kk + 2, j0:j1]
        b3 = be[kk + 3, j0:j1]
        for j in range(nc):
            w0, w1, w2, w3 = b0[j], b1[j], b2[j], b3[j]
            pe[j] = _exp4(pe[j], a0, a1, a2, a3, w0, w1, w2, w3)
            pe2[j] = _exp4(pe2[j], d0, d1, d2, d3, w0, w1, w2, w3)
    narrow = psc.itemsize == 4
    for t in range(0, nt, 4):
        kk = k0 + t
        x0, x1, x2, x3 = av[i, kk], av[i, kk + 1], av[i, kk + 2], av[i, kk + 3]
        y0, y1, y2, y3 = av[i + 1, kk], av[i + 1, kk + 1], av[i + 1, kk + 2], av[i + 1, kk + 3]
        u0 = bv[kk, j0:j1]
        u1 = bv[kk + 1, j0:j1]
        u2 = bv[kk + 2, j0:j1]
        u3 = bv[kk + 3, j0:j1]
        if t == 0 and narrow:
            _add_four_pair(ps, psc, pe, ps2, psc2, pe2, p_floor, frac_bits, x0, x1, x2, x3, y0, y1, y2, y3, u0, u1,
                           u2, u3, nc, True, True)
        elif t == 0:
            _add_four_pair(ps, psc, pe, ps2, psc2, pe2, p_floor, frac_bits, x0, x1, x2, x3, y0, y1, y2, y3, u0, u1,
                           u2, u3, nc, True, False)
        elif narrow:
            _add_four_pair(ps, psc, pe, ps2, psc2, pe2, p_floor, frac_bits, x0, x1, x2, x3, y0, y1, y2, y3, u0, u1,
                           u2, u3, nc, False, True)
        else:
            _add_four_pair(ps, psc, pe, ps2, psc2, pe2, p_floor, frac_bits, x0, x1, x2, x3, y0, y1, y2, y3, u0, u1,
                           u2, u3, nc, False, False)
    _aligned_round(c, ps, pe, xs, nc, g)
    _aligned_round(c2, ps2, pe2, xs, nc, g)


@njit(cache=True)
def _aligned_clean_cols(av, ae, bv, be, p_floor, i, j0, j1, k0, k1, c, g, pe, psc, ps, xs):
    """:func:`general_step_cols` for a clean step (:class:`GeneralOperands`' ``clean``; no
    block scales, no groups) of a single-pass c_mode "aligned" rule, in five sweeps
    instead of the stages' seventeen: the same scalar arithmetic
    (:func:`_aligned_with_c`, :func:`_round_fast`, :func:`round_bits`), the stages fused.
    A clean step has no non-finite term and no product past 2**128, so a non-finite C
    alone decides a column's class: the result is C.

    av (M, K), bv (K, N): operand values, binary64, or binary32 (with psc) where every
    product is a normal binary32 number and every aligned term below 2**(31 - 2) (the
    caller checks: :func:`simulator._matmul.narrow_floor`); ae, be int16 exponents;
    p_floor (int64) at most the exponent of any nonzero product, 2**(frac - p_floor)
    finite in psc's dtype (a step whose E lies below it has only zero products).
    pe (int16), psc (av's dtype), ps (int64), xs (float64): scratch of at least
    j1 - j0 columns."""
    frac_bits = g.frac
    nc = j1 - j0
    nt = k1 - k0
    # 1. the products' alignment exponent: four positions per sweep (int16 lanes)
    pe[:nc] = SENTINEL
    t = 0
    while t + 4 <= nt:
        _max_exps(ae, i, k0 + t, be, pe, j0, j1)
        t += 4
    for t in range(t, nt):
        _max_term_exps(pe, True, ae, be, i, k0 + t, j0, j1, pe)
    # 2. every term aligned to it and truncated toward zero, summed exactly (int64; four
    # binary32 terms in int32 lanes); the first sweep also sets the scale
    narrow = psc.itemsize == 4
    t = 0
    if nt < 4:
        for j in range(nc):
            psc[j] = pow2(frac_bits - max(np.int64(pe[j]), p_floor))
            ps[j] = 0
    while t + 4 <= nt:
        kk = k0 + t
        x0, x1, x2, x3 = av[i, kk], av[i, kk + 1], av[i, kk + 2], av[i, kk + 3]
        u0 = bv[kk, j0:j1]
        u1 = bv[kk + 1, j0:j1]
        u2 = bv[kk + 2, j0:j1]
        u3 = bv[kk + 3, j0:j1]
        # (literal flags: each call's sweep compiles without the others' branches)
        if t == 0 and narrow:
            _add_four(ps, psc, pe, p_floor, frac_bits, x0, x1, x2, x3, u0, u1, u2, u3, nc, True, True)
        elif t == 0:
            _add_four(ps, psc, pe, p_floor, frac_bits, x0, x1, x2, x3, u0, u1, u2, u3, nc, True, False)
        elif narrow:
            _add_four(ps, psc, pe, p_floor, frac_bits, x0, x1, x2, x3, u0, u1, u2, u3, nc, False, True)
        else:
            _add_four(ps, psc, pe, p_floor, frac_bits, x0, x1, x2, x3, u0, u1, u2, u3, nc, False, False)
        t += 4
    for t in range(t, nt):
        x = av[i, k0 + t]
        u = bv[k0 + t, j0:j1]
        for j in range(nc):
            ps[j] += np.int64(x * u[j] * psc[j])
    _aligned_round(c, ps, pe, xs, nc, g)


@njit(cache=True, inline="always")
def _aligned_round(c, ps, pe, xs, nc, g):
    """Steps 3-4 of :func:`_aligned_clean_cols` (:func:`_aligned_final`), the common
    fields as literals (the sweep compiles without the other cases' selects); rounding
    into IEEE binary32 to nearest even is the binary32 conversion itself."""
    frac_bits, sum_fb, c_fb, align_rd, c_drop = g.frac, g.sum_fb, g.c_fb, g.align_rd, g.c_drop
    o_man, o_emin, o_max, o_rne, o_ovf = g.out.man, g.out.emin, g.out.max, g.out.rne, g.out.ovf
    zero_signed = g.zero_signed
    c_zero_exp = g.c_zero_exp
    f32_out = o_man == 23 and o_emin == -126 and o_max == _F32_MAX and o_rne
    if align_rd and c_drop < 0 and zero_signed and f32_out:
        _aligned_final(c, ps, pe, xs, nc, frac_bits, sum_fb, c_fb, True, np.int64(-1), o_man, o_emin, o_max, o_rne,
                       o_ovf, c_zero_exp, True, True)
    else:
        _aligned_final(c, ps, pe, xs, nc, frac_bits, sum_fb, c_fb, align_rd, c_drop, o_man, o_emin, o_max, o_rne,
                       o_ovf, c_zero_exp, zero_signed, False)


@njit(cache=True, inline="always")
def _aligned_final(c, ps, pe, xs, nc, frac_bits, sum_fb, c_fb, align_rd, c_drop, o_man, o_emin, o_max, o_rne, o_ovf,
                   c_zero_exp, zero_signed, f32_out):
    """Steps 3-4 of :func:`_aligned_clean_cols` for columns j < nc: C (c[j], in place)
    re-aligned and added to the products' sum (ps[j], exponent pe[j]) by
    :func:`_aligned_with_c`, rounded into the accumulator (:class:`Rounding` fields
    o_*): by :func:`_round_fast`, and :func:`round_bits` for the values it cannot round;
    or, ``f32_out`` (the target is IEEE binary32, to nearest even), by the binary32
    conversion, which rounds every finite binary64 value as round_bits does (overflow to
    inf), a zero keeping its sign (zero_signed is True with it).  A non-finite C is the
    result (a clean step has no other IEEE class to sort out; xs holds it there, which
    the second pass leaves alone).  xs: scratch."""
    slow = 0
    for j in range(nc):
        cj = c[j]
        fin = np.isfinite(cj)
        x, _ = _aligned_with_c(ps[j], np.int64(pe[j]), cj, c_align_exp(cj, o_emin, c_zero_exp), frac_bits,
                               sum_fb, c_fb, align_rd, c_drop)
        if f32_out:
            rv = np.float64(np.float32(x))
            c[j] = rv if fin else cj
        else:
            x = x if fin else cj
            xs[j] = x
            r, sl = _round_fast(as_bits(x), o_man, o_emin, o_max, o_rne)
            rv = from_bits(r)
            rv = -0.0 if (zero_signed and rv == 0.0 and x < 0.0) else rv
            c[j] = rv if fin else cj
            slow += sl if fin else 0
    if slow:
        for j in range(nc):
            x = xs[j]
            r, sl = _round_fast(as_bits(x), o_man, o_emin, o_max, o_rne)
            if sl and np.isfinite(x):
                rv = from_bits(round_bits(as_bits(x), o_man, o_emin, o_max, o_rne, o_ovf))
                c[j] = -0.0 if (zero_signed and rv == 0.0 and x < 0.0) else rv


@njit(cache=True)
def general_step_cols(ops, i, j0, j1, k0, k1, c, g, tv, te, pe, ps, vec, ivec):
    """One step of row i over K positions [k0, k1) for columns [j0, j1), any rule: the
    numerics of every issue-13 fused datapath (every field of :class:`GeneralStep`):
    :func:`general_sum_cols`, then :func:`general_round_cols` (the cycle-level unit
    runs the two halves itself, with its ``sum`` register between them).

    ops (a :class:`GeneralOperands`): av (M, K), bv (K, N) operand values (binary64);
    ae, be int16 alignment exponents (a zero operand's is the rule's ``zero_exp``, else
    :data:`SENTINEL`); sav/sae (M, K // blk), sbv/sbe (K // blk, N): scale values and
    exponents (``blk`` 0: no scales).  c (j1 - j0,) float64: C on entry, the step's
    result on return.  g: the :class:`GeneralStep`.  tv, te, pe, ps, vec, ivec: scratch
    of at least j1 - j0 columns (:func:`general_scratch`).  Every term is exact in
    binary64 (products of at most 53 significant bits, FP4 group sums of a few bits),
    and every aligned term and sum below 2**53.  The fast path calls it on blocks of
    columns, the cycle-level unit on one column.
    """
    if (g.c_mode == C_ALIGNED and g.n_pass == 1 and g.group_k == 1 and ops.blk == 0 and i < ops.clean.shape[0]
            and ops.clean[i, k0 // g.k_step]):
        _aligned_clean_cols(ops.av, ops.ae, ops.bv, ops.be, np.int64(E_FLOOR), i, j0, j1, k0, k1, c, g, pe[0],
                            vec[3], ps[0], vec[1])
        return
    n_big = general_sum_cols(ops, i, j0, j1, k0, k1, c, g, tv, te, pe, ps, vec, ivec)
    general_round_cols(c, j1 - j0, (k1 - k0 + g.group_k - 1) // g.group_k, n_big, g, tv, vec)


@njit(cache=True, inline="always")
def general_sum_cols(ops, i, j0, j1, k0, k1, c, g, tv, te, pe, ps, vec, ivec):
    """Steps 1-3 of :func:`general_step_cols` (same arguments; c is read, not written):
    the terms, their IEEE classes and their exact aligned sum with C.  Leaves, per
    column j < j1 - j0: vec[1, j] the exact sum (binary64: an integer times
    2**ivec[1, j]), ivec[1, j] its unit's exponent (E - fraction bits), vec[0, j] the
    sum of the non-finite terms; returns the count of finite products past 2**128 (the
    terms stay in tv for :func:`general_round_cols`)."""
    av, ae, bv, be, sav, sae, sbv, sbe, blk = ops.av, ops.ae, ops.bv, ops.be, ops.sav, ops.sae, ops.sbv, ops.sbe, \
        ops.blk
    group_k, zero_set, frac_bits, c_mode, pat, n_pass = g.group_k, g.zero_set, g.frac, g.c_mode, g.pat, g.n_pass
    sum_fb, c_fb, align_rd, merge_rd, c_drop = g.sum_fb, g.c_fb, g.align_rd, g.merge_rd, g.c_drop
    o_emin = g.out.emin
    nc = j1 - j0
    nt = (k1 - k0 + group_k - 1) // group_k
    special = vec[0]
    xs = vec[1]
    emx = ivec[0]
    cex = ivec[1]
    # a clean step (no inf/NaN operand, no product past 2**128: ops.clean) has nothing for
    # step 2 to find, and its terms are plain products: steps 1-3 read them from the
    # operands as they go instead of through the scratch (with 512-column blocks, cdna3
    # fp16 at 512^3 ran 2.4x faster, measured); a term is then x * row[j], x = A's value
    # and row B's, against 1.0 and the scratch's row
    direct = group_k == 1 and blk == 0 and i < ops.clean.shape[0] and ops.clean[i, k0 // g.k_step]
    # 1. the terms: value and alignment exponent of each product (or scaled group)
    for t in range(0 if direct else nt):
        tvt = tv[t]
        tet = te[t]
        if group_k == 1:
            kk = k0 + t
            x = av[i, kk]
            ex = np.int64(ae[i, kk])
            # rows sliced first: indices j from a range need no wraparound check, so the
            # sweeps vectorise
            bvr = bv[kk, j0:j1]
            ber = be[kk, j0:j1]
            if blk > 0:
                q = kk // blk
                x = x * sav[i, q]
                ex += np.int64(sae[i, q])
                sbvr = sbv[q, j0:j1]
                sber = sbe[q, j0:j1]
                for j in range(nc):
                    tvt[j] = x * (bvr[j] * sbvr[j])
                    tet[j] = ex + np.int64(ber[j]) + np.int64(sber[j])
            else:
                for j in range(nc):
                    tvt[j] = x * bvr[j]
                    tet[j] = ex + np.int64(ber[j])
        else:
            # a group of products summed exactly; its exponent is the scales' alone
            g0 = k0 + t * group_k
            g1 = min(g0 + group_k, k1)
            tvt[:nc] = 0.0
            kk = g0
            # four positions per sweep (the group sum is exact, so its order is free)
            while kk + 4 <= g1:
                x0, x1, x2, x3 = av[i, kk], av[i, kk + 1], av[i, kk + 2], av[i, kk + 3]
                b0 = bv[kk, j0:j1]
                b1 = bv[kk + 1, j0:j1]
                b2 = bv[kk + 2, j0:j1]
                b3 = bv[kk + 3, j0:j1]
                for j in range(nc):
                    tvt[j] += (x0 * b0[j] + x1 * b1[j]) + (x2 * b2[j] + x3 * b3[j])
                kk += 4
            for kk in range(kk, g1):
                x = av[i, kk]
                bvr = bv[kk, j0:j1]
                for j in range(nc):
                    tvt[j] += x * bvr[j]
            q = g0 // blk
            x = sav[i, q]
            ex = np.int64(sae[i, q])
            sbvr = sbv[q, j0:j1]
            sber = sbe[q, j0:j1]
            for j in range(nc):
                gs = tvt[j]
                tvt[j] = gs * (x * sbvr[j])
                # a zero group takes part only under a zero_exp rule
                tet[j] = ex + np.int64(sber[j]) if (gs != 0.0 or zero_set) else np.int64(SENTINEL)
    # 2. IEEE classes: the sum of the non-finite terms (and C unless added after)
    for j in range(nc):
        special[j] = 0.0 if (c_mode == C_AFTER or np.isfinite(c[j])) else c[j]
        cex[j] = c_align_exp(c[j], o_emin, g.c_zero_exp)  # for step 3
    n_big = 0  # finite products >= 2**128 (product_overflow "inf")
    for t in range(0 if direct else nt):
        tvt = tv[t]
        for j in range(nc):
            x = tvt[j]
            fin = x - x == 0.0  # finite (inf - inf and NaN - NaN are NaN): a compare that vectorises
            special[j] += 0.0 if fin else x
            n_big += 1 if (fin and abs(x) >= _TWO128) else 0
    # 3. the exponents: of C (above), and the step's E
    if c_mode == C_ALIGNED:
        L = pat.shape[0]
        for p_ in range(n_pass):
            pe[p_, :nc] = SENTINEL
        for t in range(nt):
            _max_term_exps(pe[pat[t % L]], direct, ae, be, i, k0 + t, j0, j1, te[t])
        emx[:nc] = SENTINEL
        for p_ in range(n_pass):
            pet = pe[p_]
            psc = vec[3 + p_]
            for j in range(nc):
                emx[j] = max(emx[j], pet[j])
                psc[j] = pow2(frac_bits - max(pet[j], E_FLOOR))
                ps[p_, j] = 0
        # each pass aligned to its own maximum and truncated toward zero; pass by pass,
        # four of its terms per sweep (integer sums: the order is free)
        for p_ in range(n_pass):
            pst = ps[p_]
            psc = vec[3 + p_]
            t0 = _next_of_pass(pat, p_, 0, nt)
            t1 = _next_of_pass(pat, p_, t0 + 1, nt)
            t2 = _next_of_pass(pat, p_, t1 + 1, nt)
            t3 = _next_of_pass(pat, p_, t2 + 1, nt)
            while t3 < nt:
                x0, u0 = _term_row(direct, av, bv, i, k0 + t0, j0, j1, tv[t0])
                x1, u1 = _term_row(direct, av, bv, i, k0 + t1, j0, j1, tv[t1])
                x2, u2 = _term_row(direct, av, bv, i, k0 + t2, j0, j1, tv[t2])
                x3, u3 = _term_row(direct, av, bv, i, k0 + t3, j0, j1, tv[t3])
                for j in range(nc):
                    sc_ = psc[j]
                    pst[j] += ((np.int64(x0 * u0[j] * sc_) + np.int64(x1 * u1[j] * sc_))
                               + (np.int64(x2 * u2[j] * sc_) + np.int64(x3 * u3[j] * sc_)))
                t0 = _next_of_pass(pat, p_, t3 + 1, nt)
                t1 = _next_of_pass(pat, p_, t0 + 1, nt)
                t2 = _next_of_pass(pat, p_, t1 + 1, nt)
                t3 = _next_of_pass(pat, p_, t2 + 1, nt)
            while t0 < nt:
                x, u = _term_row(direct, av, bv, i, k0 + t0, j0, j1, tv[t0])
                for j in range(nc):
                    pst[j] += np.int64(x * u[j] * psc[j])
                t0 = _next_of_pass(pat, p_, t0 + 1, nt)
        # the passes re-aligned to the largest (merge_rounding), then the products' sum
        # and C re-aligned to E = max(Ep, Ec) (align_rounding) and added exactly
        sp = ps[0]
        if n_pass > 1:
            # pass by pass, each a sweep over the columns (an inner loop over the passes
            # would keep the sweep from vectorising)
            pe0 = pe[0]
            for j in range(nc):
                sp[j] = _shr_nonneg(sp[j], emx[j] - pe0[j], merge_rd)
            for p_ in range(1, n_pass):
                psp = ps[p_]
                pep = pe[p_]
                for j in range(nc):
                    sp[j] += _shr_nonneg(psp[j], emx[j] - pep[j], merge_rd)
        for j in range(nc):
            xs[j], cex[j] = _aligned_with_c(sp[j], np.int64(emx[j]), c[j], cex[j], frac_bits, sum_fb, c_fb,
                                            align_rd, c_drop)
    else:
        for j in range(nc):
            emx[j] = cex[j] if c_mode == C_FUSED else np.int64(SENTINEL)
        for t in range(nt):
            _max_term_exps(emx, direct, ae, be, i, k0 + t, j0, j1, te[t])
        # every term aligned to E and truncated toward zero, summed exactly (in binary64:
        # every partial sum is an integer below 2**53)
        psc = vec[3]
        for j in range(nc):
            psc[j] = pow2(frac_bits - max(emx[j], E_FLOOR))
            xs[j] = np.trunc(c[j] * psc[j]) if c_mode == C_FUSED else 0.0
        t0 = 0
        while t0 + 4 <= nt:  # four terms per sweep
            x0, u0 = _term_row(direct, av, bv, i, k0 + t0, j0, j1, tv[t0])
            x1, u1 = _term_row(direct, av, bv, i, k0 + t0 + 1, j0, j1, tv[t0 + 1])
            x2, u2 = _term_row(direct, av, bv, i, k0 + t0 + 2, j0, j1, tv[t0 + 2])
            x3, u3 = _term_row(direct, av, bv, i, k0 + t0 + 3, j0, j1, tv[t0 + 3])
            for j in range(nc):
                sc_ = psc[j]
                xs[j] += ((np.trunc(x0 * u0[j] * sc_) + np.trunc(x1 * u1[j] * sc_))
                          + (np.trunc(x2 * u2[j] * sc_) + np.trunc(x3 * u3[j] * sc_)))
            t0 += 4
        for t in range(t0, nt):
            x, u = _term_row(direct, av, bv, i, k0 + t, j0, j1, tv[t])
            for j in range(nc):
                xs[j] += np.trunc(x * u[j] * psc[j])
        for j in range(nc):
            cex[j] = max(emx[j], E_FLOOR) - frac_bits
            xs[j] = xs[j] * pow2(cex[j])
    return n_big


@njit(cache=True, inline="always")
def general_round_cols(c, nc, nt, n_big, g, tv, vec):
    """Step 4 of :func:`general_step_cols` for columns j < nc: the exact sum
    :func:`general_sum_cols` left in vec[1] rounded (C added after for c_mode
    "after"), and the results the IEEE classes decide (vec[0], n_big and the terms in
    tv); c (nc,) float64: C on entry, the step's result on return."""
    c_mode = g.c_mode
    p_man, p_emin, p_max, p_rne = g.pas.man, g.pas.emin, g.pas.max, g.pas.rne
    o_ovf = g.out.ovf
    special = vec[0]
    xs = vec[1]
    n_bad = 0
    for j in range(nc):
        n_bad += 0 if np.isfinite(special[j]) else 1
    # 4. rounding, and the results the IEEE classes decide
    if c_mode == C_AFTER:
        for j in range(nc):
            x = from_bits(round_bits(as_bits(xs[j]), p_man, p_emin, p_max, p_rne, o_ovf))
            xs[j] = from_bits(round_bits(as_bits(x + c[j]), 23, -126, g.f32.max, True, o_ovf))
    if n_bad == 0 and not (g.prod_ovf and n_big):
        # nothing for the IEEE classes to decide (nearly always): rounded straight into c
        round_block(xs, c, nc, g.out)
        if g.zero_signed:
            _keep_zero_sign(c, xs, nc)
        return
    rounded = vec[2]
    round_block(xs, rounded, nc, g.out)
    if g.zero_signed:
        _keep_zero_sign(rounded, xs, nc)
    if g.prod_ovf and n_big:
        for j in range(nc):
            pinf = False
            ninf = False
            for t in range(nt):
                x = tv[t, j]
                if np.isfinite(x) and abs(x) >= _TWO128:
                    if x > 0:
                        pinf = True
                    else:
                        ninf = True
            if pinf or ninf:
                rounded[j] = np.nan if (pinf and ninf) else (np.inf if pinf else -np.inf)
    if n_bad:
        for j in range(nc):
            if not np.isfinite(special[j]):
                rounded[j] = special[j] + c[j] if c_mode == C_AFTER else special[j]  # NaN or +-inf
    for j in range(nc):
        c[j] = rounded[j]


@njit(cache=True, inline="always")
def _keep_zero_sign(rounded, xs, n):
    """IEEE: a nonzero sum xs[j] that rounds to zero keeps its sign (j < n)."""
    for j in range(n):
        rounded[j] = -0.0 if (rounded[j] == 0.0 and xs[j] < 0.0) else rounded[j]


@njit(cache=True, inline="always")
def c_align_exp(c, c_emin, c_zero_exp):
    """Alignment exponent of C (binary64 value): as :func:`acc_align_exp` (branch-free,
    so that sweeps vectorise), a zero C counting with ``c_zero_exp`` (SENTINEL: no part)."""
    be = np.int64((as_bits(c) >> _U52) & _EXP_ALL)
    e = max(be - 1023, np.int64(c_emin))
    e = np.int64(SENTINEL) if (be == 0 or be == 0x7FF) else e
    return np.int64(c_zero_exp) if c == 0.0 else e


@njit(cache=True)
def general_fused_gemm(ops, acc, g, av32=None, bv32=None, p_floor=0):
    """D = A @ B + C through chained steps of ``k_step`` K positions, any rule.

    ops: a :class:`GeneralOperands` (av (M, K) float64, ae (M, K) int16; bv, be (K, N);
    block scales); acc (M, N) float64: C on entry, D on return.  g: a
    :class:`GeneralStep`.  Each step is :func:`general_step_cols` over blocks of columns.
    av32 (M, K), bv32 (K, N): the operand values in binary32 where the clean steps of a
    single-pass aligned-C rule may run on them (:func:`_aligned_clean_cols`' conditions,
    p_floor (int64) its floor), else None: binary64 throughout (the same bits).
    """
    if av32 is None or bv32 is None:
        av32_, bv32_ = np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    else:
        av32_, bv32_ = av32, bv32
    # the parallel kernel takes the records' fields (a parallel kernel taking records ran
    # 4x slower, measured) and rebuilds them in each task
    av, ae, bv, be, sav, sae, sbv, sbe, blk, clean = ops.av, ops.ae, ops.bv, ops.be, ops.sav, ops.sae, ops.sbv, \
        ops.sbe, ops.blk, ops.clean
    (k_step, group_k, zero_set, c_zero_exp, frac, c_mode, pat, n_pass, sum_fb, c_fb, align_rd, merge_rd, c_drop,
     prod_ovf, zero_signed) = (g.k_step, g.group_k, g.zero_set, g.c_zero_exp, g.frac, g.c_mode, g.pat, g.n_pass,
                               g.sum_fb, g.c_fb, g.align_rd, g.merge_rd, g.c_drop, g.prod_ovf, g.zero_signed)
    p_man, p_emin, p_max, p_rne, p_ovf = g.pas
    o_man, o_emin, o_max, o_rne, o_ovf = g.out
    f_man, f_emin, f_max, f_rne, f_ovf = g.f32
    _general_fused_gemm(acc, av, ae, bv, be, sav, sae, sbv, sbe, blk, clean, k_step, group_k, zero_set, c_zero_exp,
                        frac, c_mode, pat, n_pass, sum_fb, c_fb, align_rd, merge_rd, c_drop, prod_ovf, zero_signed,
                        p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man, f_emin, f_max,
                        f_rne, f_ovf, av32_, bv32_, np.int64(p_floor))


@njit(cache=True, parallel=True)
def _general_fused_gemm(acc, av, ae, bv, be, sav, sae, sbv, sbe, blk, clean, k_step, group_k, zero_set, c_zero_exp,
                        frac, c_mode, pat, n_pass, sum_fb, c_fb, align_rd, merge_rd, c_drop, prod_ovf, zero_signed,
                        p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man, f_emin, f_max,
                        f_rne, f_ovf, av32, bv32, p_floor):
    """:func:`general_fused_gemm` on the records' fields."""
    M, K = av.shape
    N = bv.shape[1]
    # clean steps of a single-pass aligned-C rule run fused (_aligned_clean_*), in binary32
    # where the caller passed the operands so
    fused = c_mode == C_ALIGNED and n_pass == 1 and group_k == 1 and blk == 0 and clean.shape[0] == M and M > 0
    narrow = fused and av32.shape[0] == M
    per = min(_GIB, max(1, M // 8))  # rows per task: at least eight tasks when M allows
    n_ch = (M + per - 1) // per
    for ch in prange(n_ch):
        ops_ = GeneralOperands(av, ae, bv, be, sav, sae, sbv, sbe, blk, clean)
        g_ = GeneralStep(k_step, group_k, zero_set, c_zero_exp, frac, c_mode, pat, n_pass, sum_fb, c_fb, align_rd,
                         merge_rd, c_drop, prod_ovf, zero_signed, Rounding(p_man, p_emin, p_max, p_rne, p_ovf),
                         Rounding(o_man, o_emin, o_max, o_rne, o_ovf), Rounding(f_man, f_emin, f_max, f_rne, f_ovf))
        nt = (k_step + group_k - 1) // group_k
        tv = np.empty((nt, _GJB), np.float64)
        te = np.empty((nt, _GJB), np.int64)
        pe = np.empty((max(n_pass, 1), _GJB), np.int16)
        ps = np.empty((max(n_pass, 1), _GJB), np.int64)
        vec = np.empty((3 + max(n_pass, 1), _GJB), np.float64)
        ivec = np.empty((2, _GJB), np.int64)
        psc32 = np.empty((2, _GJB), np.float32)
        pe2 = np.empty((2, _GJB), np.int16)
        ps2 = np.empty((2, _GJB), np.int64)
        # rows innermost: one step's slice of B (k_step x _GJB) stays in the L1 cache
        # for every row of the chunk, instead of the whole of B streaming by every row
        for j0 in range(0, N, _GJB):
            j1 = min(j0 + _GJB, N)
            for k0 in range(0, K, k_step):
                k1 = min(k0 + k_step, K)
                i = ch * per
                i_end = min((ch + 1) * per, M)
                while i < i_end:
                    s_ = k0 // k_step
                    if fused and clean[i, s_] and i + 1 < i_end and clean[i + 1, s_]:
                        # two clean rows: one pass over the step's B rows for both
                        if narrow:
                            _aligned_clean_pair(av32, ae, bv32, be, p_floor, i, j0, j1, k0, k1, acc[i, j0:j1],
                                                acc[i + 1, j0:j1], g_, pe2[0], pe2[1], psc32[0], psc32[1], ps2[0],
                                                ps2[1], vec[1])
                        else:
                            _aligned_clean_pair(av, ae, bv, be, np.int64(E_FLOOR), i, j0, j1, k0, k1, acc[i, j0:j1],
                                                acc[i + 1, j0:j1], g_, pe2[0], pe2[1], vec[2], vec[3], ps2[0], ps2[1],
                                                vec[1])
                        i += 2
                        continue
                    if narrow and clean[i, s_]:
                        _aligned_clean_cols(av32, ae, bv32, be, p_floor, i, j0, j1, k0, k1, acc[i, j0:j1], g_, pe[0],
                                            psc32[0], ps[0], vec[1])
                    else:
                        general_step_cols(ops_, i, j0, j1, k0, k1, acc[i, j0:j1], g_, tv, te, pe, ps, vec, ivec)
                    i += 1


@njit(cache=True)
def pairwise_step_cols(a32, b32, i, k0, k_step, j0, j1, c, buf, flush_nodes, flush_acc):
    """One pairwise-tree step (AMD CDNA1/2) of row i over K positions [k0, k0 + k_step),
    columns [j0, j1): the numerics of every pairwise datapath, IEEE binary32 round to
    nearest even.

    a32 (M, K), b32 (K, N) float32; c (j1 - j0,) float32: C on entry, D on return; buf
    (k_step, >= j1 - j0) float32 scratch.  Leaves fl32(a * b), an exact -0 product made
    +0 (``fmaf(a, b, +0)``; positions past K are zero products); a balanced tree of
    binary32 additions (neighbours first, k_step a power of two); then C + tree.
    flush_nodes: leaves and nodes below 2**-126 become signed zeros; flush_acc: likewise
    the result.  The fast path calls it on blocks of columns, the cycle-level unit on
    one column.
    """
    n = j1 - j0
    pairwise_leaves(a32, b32, i, k0, k_step, j0, j1, buf, flush_nodes)
    w = 1
    while w < k_step:
        pairwise_level(buf, k_step, w, n, flush_nodes)
        w *= 2
    pairwise_add_c(c, buf, n, flush_acc)


@njit(cache=True)
def pairwise_leaves(a32, b32, i, k0, k_step, j0, j1, buf, flush_nodes):
    """The tree's leaves (:func:`pairwise_step_cols`): buf[t, j - j0] = the binary32
    product of position k0 + t (an exact -0 made +0, positions past K zero), flushed
    when ``flush_nodes``."""
    K = a32.shape[1]
    n = j1 - j0
    zero = np.float32(0.0)
    for t in range(k_step):
        kk = k0 + t
        bt = buf[t]
        if kk >= K:
            bt[:n] = zero
            continue
        x = a32[i, kk]
        brow = b32[kk, j0:j1]
        if x == zero:
            for j in range(n):
                bt[j] = x * brow[j] + zero
        else:
            for j in range(n):
                y = brow[j]
                p = x * y
                bt[j] = p + zero if y == zero else p
        if flush_nodes:
            _flush_tiny(bt, n)


@njit(cache=True)
def pairwise_level(buf, k_step, w, n, flush_nodes):
    """One level of the tree (:func:`pairwise_step_cols`): the node at buf[t] (t a
    multiple of 2w) becomes buf[t] + buf[t + w] (binary32 RNE), flushed when
    ``flush_nodes``; columns j < n."""
    for t in range(0, k_step, 2 * w):
        bt = buf[t]
        bw = buf[t + w]
        for j in range(n):
            bt[j] = bt[j] + bw[j]
        if flush_nodes:
            _flush_tiny(bt, n)


@njit(cache=True)
def pairwise_add_c(c, buf, n, flush_acc):
    """The tree's root added to C (c (n,) float32, in place), flushed when ``flush_acc``."""
    b0 = buf[0]
    for j in range(n):
        c[j] = c[j] + b0[j]
    if flush_acc:
        _flush_tiny(c, n)


@njit(cache=True, inline="always")
def _flush_tiny(x, n):
    """x[j] below 2**-126 in magnitude -> a zero of its sign, for j < n (binary32)."""
    zero = np.float32(0.0)
    for j in range(n):
        v = x[j]
        x[j] = v * zero if abs(v) < _TINY32 else v


@njit(cache=True, parallel=True)
def pairwise_gemm(a32, b32, acc32, k_step, flush_nodes, flush_acc):
    """D = A @ B + C by pairwise binary32 trees (AMD CDNA1/2), IEEE round to nearest even.

    a32 (M, K), b32 (K, N), acc32 (M, N) float32, C on entry, D on return.  Each step
    of ``k_step`` (a power of two) positions is :func:`pairwise_step_cols` over blocks
    of columns (a last partial step padded with zero products).
    """
    M, K = a32.shape
    N = b32.shape[1]
    for i in prange(M):
        buf = np.empty((k_step, _JB), np.float32)
        for j0 in range(0, N, _JB):
            j1 = min(j0 + _JB, N)
            c = acc32[i, j0:j1]
            for k0 in range(0, K, k_step):
                pairwise_step_cols(a32, b32, i, k0, k_step, j0, j1, c, buf, flush_nodes, flush_acc)
