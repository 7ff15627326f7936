"""Numba kernels of the cycle-level PE arrays (private).

The arrays are stepped *analytically*: in a weight-stationary fold, PE (r, c) handles
input row ``m`` at cycle ``b = R + m + r*S + c`` (preload R cycles, skew S cycles per
row, one per column), so the wavefront can be computed row by row of the input in
any order that keeps each output's K order, without shuffling registers.  A fault
armed at (PE, register, cycle) is turned by :mod:`simulator._schedule` into an *event*:
"apply this bit operation to register X of PE (r, c) for items [i0, i1)"; the kernel
checks, per (fold, item, PE row), whether an event touches it and then runs the slow
staged datapath (every pipeline register materialised as bits) for that PE row.
The slow pure-Python stepper in :mod:`simulator._array_reference` shuffles real
registers cycle by cycle; tests hold the two to each other, bits and cycles.

Arithmetic is the core's: products exact in binary64, alignment through
``acc_align_exp``/``scale_bits``/``unscale_bits`` and every rounding through
``round_bits`` (:mod:`simulator._kernels`).  The one shortcut, binary32 arithmetic for
a fault-free FMA PE, is taken only when every product is exact in binary32, where it
is the same correctly rounded FMA (the core's ``fma_gemm_f32`` condition).

Register encodings (a fault flips bits of these; widths in bits):

* operands ``a``/``w``/``b``: the input format's encoding (``Format.width`` bits);
* ``prod``: sign | 10-bit two's-complement exponent ea+eb (``0x200``: zero product)
  | 2*(man+1)-bit significand product in [0, 4) (exact);
* ``emax``: 10-bit two's complement (``0x200``: no nonzero term);
* ``aligned``: per term, sign-magnitude integer of frac_bits+3 bits;
* ``sum``: 10-bit exponent above a sign-magnitude integer of frac_bits+3+ceil(log2(terms)) bits;
* ``psum``/``acc``: the accumulator format's encoding (binary32 or binary16);
* ``x1``, ``x2``, ...: a multi-pass step's pass result, binary32.

A DPU's ``emax``/``aligned``/``sum`` events carry the pass in their stage column,
``x{p}`` events carry p; ``a``/``w``/``prod`` events name the K position (element).

Non-finite values (inf, NaN) travel on a flag path that is not a fault site: a fault
on a ``prod``/``aligned``/``sum`` register holding one leaves it unchanged.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, prange

from ._kernels import (C_ALIGNED, SENTINEL, FusedOperands, FusedStep, GeneralOperands, Rounding, acc_align_exp,
                       add_c_after, carry_emin, fused_step_rows, general_round_cols, general_scratch,
                       general_step_cols, general_sum_cols, pairwise_add_c, pairwise_leaves, pairwise_level,
                       pairwise_step_cols, round_bits, round_sum, scale_bits, unscale_bits)

# register codes used in events
REG_A, REG_W, REG_PROD, REG_EMAX, REG_ALIGNED, REG_SUM, REG_PSUM, REG_X, REG_SA, REG_SW = range(10)
# event table columns (int64): fold, register, PE row, columns [c0, c1), items [i0, i1),
# element within a vector register, stage (prod stage, or 0/1 = before/after the MAC)
EV_FOLD, EV_REG, EV_R, EV_C0, EV_C1, EV_I0, EV_I1, EV_ELEM, EV_STAGE = range(9)
EV_COLS = 9

EXP_BITS = 10
QNAN32 = 0x7FC00000  # binary32's canonical quiet NaN, what a register holds for any NaN (encode_ieee)
EXP_NONE = 0x200  # the 10-bit code of "no exponent" (SENTINEL)
_EXP_MASK = np.uint64(0x3FF)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_MAG = np.uint64(0x7FFFFFFFFFFFFFFF)

# ---- named records the array kernels take (besides the core's FusedStep, Rounding,
# FusedOperands of simulator._kernels) ----------------------------------------------------
Encoding = namedtuple("Encoding", ["exp_bits", "man_bits", "bias", "fn"])
Encoding.__doc__ = """A binary floating-point encoding (:func:`decode_fp`): exp_bits, man_bits,
bias (int64) and fn (bool: finite-only, the all-ones pattern is the NaN)."""

Geometry = namedtuple("Geometry", ["rows", "cols", "depth", "chunk"])
Geometry.__doc__ = """An array's shape as the kernels take it (int64): rows x cols PEs, depth (cycles
from a scalar PE's multiply to its result; unused by the DPU kernel) and chunk (rows of
M per thread task in the weight-stationary kernels)."""

Events = namedtuple("Events", ["table", "masks", "ptr", "idx", "max_row"])
Events.__doc__ = """The fault events of a GEMM: table (E, EV_COLS) int64 and masks (E, 3) uint64
(and, or, xor), sorted by fold then cycle; ptr, idx (int64) group them: weight-stationary
kernels group by (fold, PE row), the events of fold f on row r being
``idx[ptr[f*R+r]:ptr[f*R+r+1]]`` (table order), and max_row is the largest group;
output-stationary ones by fold, ``table[ptr[f]:ptr[f+1]]`` (idx and max_row unused)."""


def encoding(fmt) -> Encoding:
    """A Format -> its :class:`Encoding` record."""
    return Encoding(np.int64(fmt.exp_bits), np.int64(fmt.man_bits), np.int64(fmt.bias), fmt.specials == "fn")


_F32 = Encoding(np.int64(8), np.int64(23), np.int64(127), False)


# ---- encodings -----------------------------------------------------------------------
@njit(cache=True)
def apply_op(v, am, om, xm):
    """One fault operation on register bits: ((v & am) | om) ^ xm (uint64)."""
    return ((v & am) | om) ^ xm


@njit(cache=True)
def decode_fp(bits, f):
    """Bits of a binary floating-point encoding ``f`` (an :class:`Encoding`; uint64, at
    bit 0) -> float64 (exact).  f.fn: True for finite-only formats (all-ones exponent
    and mantissa is the NaN).
    """
    exp_bits, man_bits, bias, fn = f.exp_bits, f.man_bits, f.bias, f.fn
    mm = (1 << man_bits) - 1
    top = (1 << exp_bits) - 1
    man = np.int64(bits & np.uint64(mm))
    ex = np.int64((bits >> np.uint64(man_bits)) & np.uint64(top))
    neg = ((bits >> np.uint64(exp_bits + man_bits)) & _U1) == _U1
    if ex == top and (not fn or man == mm):
        v = np.inf if (man == 0 and not fn) else np.nan
    elif ex == 0:
        v = math.ldexp(float(man), 1 - bias - man_bits)
    else:
        v = math.ldexp(float(man | (1 << man_bits)), ex - bias - man_bits)
    return -v if neg else v


@njit(cache=True)
def operand_exp(bits, f):
    """Alignment exponent (int64) of an operand encoding (``f`` an :class:`Encoding`):
    SENTINEL for zero/inf/NaN."""
    exp_bits, man_bits, bias, fn = f.exp_bits, f.man_bits, f.bias, f.fn
    mm = (1 << man_bits) - 1
    top = (1 << exp_bits) - 1
    man = np.int64(bits & np.uint64(mm))
    ex = np.int64((bits >> np.uint64(man_bits)) & np.uint64(top))
    if ex == top and (not fn or man == mm):
        return np.int64(SENTINEL)
    if ex == 0:
        if man == 0:
            return np.int64(SENTINEL)
        return np.int64(1 - bias)
    return ex - bias


@njit(cache=True)
def encode_ieee(x, f):
    """float64 exactly representable in an IEEE format ``f`` (an :class:`Encoding`) ->
    its bits (uint64).

    Any NaN becomes the one canonical quiet NaN: sign 0, exponent all ones, only the
    top mantissa bit set (binary32 0x7FC00000, binary16 0x7E00, bfloat16 0x7FC0).
    Neither the sign nor the payload of the NaN is kept: a PE register that receives a
    NaN holds this pattern, as a unit in default-NaN mode writes one (RISC-V's
    canonical NaN, Arm's FPCR.DN=1 default NaN).  The sign of a NaN that the host's
    float arithmetic produced (x86 SSE: inf - inf gives 0xFFC00000) is thus never
    seen by a fault: a stuck bit applied to a NaN gives the same bits on every host,
    in the kernels and in the slow reference stepper (which call this function).
    The scalar-FMA profiles' NaN result (``DatapathProfile.nan_fp32`` of
    ``systolic_fma`` and ``tpu``) is this same pattern; what D holds for a NaN at the
    end of a run is the profile's (``to_output``), not this register content.
    """
    exp_bits, man_bits, bias = f.exp_bits, f.man_bits, f.bias
    top = (1 << exp_bits) - 1
    if x != x:
        return (np.uint64(top) << np.uint64(man_bits)) | (_U1 << np.uint64(man_bits - 1))
    sign = _U1 << np.uint64(exp_bits + man_bits) if math.copysign(1.0, x) < 0 else _U0
    ax = abs(x)
    if ax == np.inf:
        return sign | (np.uint64(top) << np.uint64(man_bits))
    if ax == 0.0:
        return sign
    f, e = math.frexp(ax)  # ax = f * 2**e, f in [0.5, 1)
    ue = e - 1
    if ue >= 1 - bias:
        man = np.uint64(math.ldexp(f, man_bits + 1)) & np.uint64((1 << man_bits) - 1)
        return sign | (np.uint64(ue + bias) << np.uint64(man_bits)) | man
    return sign | np.uint64(math.ldexp(ax, bias - 1 + man_bits))


@njit(cache=True)
def exp_encode(e):
    """Alignment exponent -> 10-bit two's-complement code (EXP_NONE below -511)."""
    if e < -511:
        return np.uint64(EXP_NONE)
    return np.uint64(e & 0x3FF)


@njit(cache=True)
def exp_decode(code):
    code = np.int64(code & _EXP_MASK)
    if code == EXP_NONE:
        return np.int64(SENTINEL)
    return code - 1024 if code >= 512 else code


@njit(cache=True)
def prod_encode(p, e, m2):
    """Exact product p with alignment exponent e -> prod register bits (1+10+m2 wide).

    m2 = 2*(man_bits+1): the significand p / 2**e in [0, 4) as an m2-bit integer with
    m2-2 fraction bits.  Only finite p.
    """
    sign = _U1 << np.uint64(EXP_BITS + m2) if math.copysign(1.0, p) < 0 else _U0
    if e < -511:
        return sign | (np.uint64(EXP_NONE) << np.uint64(m2))
    sig = np.uint64(math.ldexp(abs(p), m2 - 2 - e))
    return sign | (exp_encode(e) << np.uint64(m2)) | sig


@njit(cache=True)
def prod_decode(bits, m2):
    """prod register bits -> (value, alignment exponent)."""
    sig = bits & ((_U1 << np.uint64(m2)) - _U1)
    e = exp_decode(bits >> np.uint64(m2))
    neg = ((bits >> np.uint64(EXP_BITS + m2)) & _U1) == _U1
    v = 0.0 if e < -511 else math.ldexp(float(sig), e - (m2 - 2))
    return (-v if neg else v), e


@njit(cache=True)
def smag_encode(t, width):
    """Integer-valued finite float64 -> sign-magnitude bits of ``width`` bits."""
    sign = _U1 << np.uint64(width - 1) if math.copysign(1.0, t) < 0 else _U0
    return sign | np.uint64(abs(t))


@njit(cache=True)
def smag_decode(bits, width):
    mag = float(bits & ((_U1 << np.uint64(width - 1)) - _U1))
    return -mag if ((bits >> np.uint64(width - 1)) & _U1) == _U1 else mag


@njit(cache=True)
def wrap_mag(t, width):
    """Keep the low width-1 magnitude bits (what a fixed-width register holds)."""
    lim = math.ldexp(1.0, width - 1)
    if abs(t) >= lim and abs(t) != np.inf:
        return np.fmod(t, lim)
    return t


# ---- datapath stages -----------------------------------------------------------------
@njit(cache=True)
def fma_add(p, c, rd):
    """The scalar PE's add stage: c + p (p exact) rounded once to nearest even into
    ``rd`` (a :class:`Rounding`, the step's ``out``) -> float64.

    The core's :func:`round_sum`, as ``fma_gemm`` uses it (SystolicArray admits only
    round-to-nearest-even FMA rules).
    """
    return round_sum(np.float64(c), np.float64(p), rd.man, rd.emin, rd.max, True, rd.ovf)


@njit(cache=True)
def dpu_align(p, pe, k, c_val, c_fused, frac, o_emin, terms, sc, su, c_zero):
    """Exponent compare and alignment of one step: fills terms, returns E (int64).

    p, pe: (k,) products and their alignment exponents; terms: (k+1,) out, the C
    term (fused mode) last; c_zero: a zero carried term's exponent (SENTINEL: none).
    """
    e_max = np.int64(SENTINEL)
    if c_fused:
        sc[0] = c_val
        e_max = np.int64(c_zero) if c_val == 0.0 else np.int64(acc_align_exp(su[0], o_emin))
    for t in range(k):
        if pe[t] > -511 and pe[t] > e_max:
            e_max = pe[t]
    su[0] = scale_bits(e_max, frac)
    scale = sc[0]
    lim = frac + 3
    for t in range(k):
        terms[t] = wrap_mag(np.trunc(p[t] * scale), lim)
    terms[k] = wrap_mag(np.trunc(c_val * scale), lim) if c_fused else 0.0
    return e_max


@njit(cache=True)
def dpu_sum(terms, k, c_fused):
    """Exact sum of the aligned terms, C's first (as the fast kernel adds them)."""
    total = terms[k] if c_fused else 0.0
    for t in range(k):
        total += terms[t]
    return total


@njit(cache=True)
def dpu_round_pass(total, e_max, st, sc, su):
    """Normalise one pass's aligned sum and round it into binary32 (``st.pas``; st a
    :class:`FusedStep`): the result of every pass but the last, and the products' part
    of a c_mode "after" step.  Returns the float64 value."""
    pas = st.pas
    su[0] = unscale_bits(e_max, st.frac)
    sc[1] = total * sc[0]
    su[1] = round_bits(su[1], pas.man, pas.emin, pas.max, pas.rne, pas.ovf)
    return sc[1]


@njit(cache=True)
def dpu_finish(total, e_max, c_val, st, sc, su):
    """Normalise and round a step's last pass into the accumulator (float64 value; st
    a :class:`FusedStep`); c_mode "after" (``st.c_fused`` False): then the fast path's
    :func:`add_c_after`.  sc: float64 scratch of 3 (su: its uint64 view)."""
    if st.c_fused:
        out = st.out
        su[0] = unscale_bits(e_max, st.frac)
        sc[1] = total * sc[0]
        su[1] = round_bits(su[1], out.man, out.emin, out.max, out.rne, out.ovf)
        if total == 0.0:
            su[1] = su[1] & _MAG  # an exact zero result is +0
        return sc[1]
    x = dpu_round_pass(total, e_max, st, sc, su)
    sc[0] = x
    sc[1] = c_val
    add_c_after(sc[0:1], sc[1:2], sc[2:3], sc[1:2], 1, st)
    return sc[1]


@njit(cache=True)
def _ev_hit(ev, e, reg, r, c, i):
    return (ev[e, EV_REG] == reg and ev[e, EV_R] == r and ev[e, EV_C0] <= c < ev[e, EV_C1]
            and ev[e, EV_I0] <= i < ev[e, EV_I1])


@njit(cache=True)
def _has_reg(ev, e0, e1, reg, r, c, i):
    for e in range(e0, e1):
        if _ev_hit(ev, e, reg, r, c, i):
            return True
    return False


@njit(cache=True)
def _ops(v, ev, em, e0, e1, reg, r, c, i, elem, stage):
    """Apply, in order, every event on (reg, PE (r, c), item i, element, stage) to bits v."""
    for e in range(e0, e1):
        if _ev_hit(ev, e, reg, r, c, i) and ev[e, EV_ELEM] == elem and ev[e, EV_STAGE] == stage:
            v = apply_op(v, em[e, 0], em[e, 1], em[e, 2])
    return v


@njit(cache=True)
def _psum_ops(v, ev, em, e0, e1, reg, r, c, i, stage, accf):
    """Events on a psum register (accf: the accumulator's :class:`Encoding`)."""
    if not _has_reg(ev, e0, e1, reg, r, c, i):
        return v
    bits = encode_ieee(v, accf)
    bits = _ops(bits, ev, em, e0, e1, reg, r, c, i, 0, stage)
    return decode_fp(bits, accf)


@njit(cache=True)
def row_events(ev, em, ridx, lo, hi, i, evs, ems):
    """Copy the events ``ridx[lo:hi]`` (one fold's events on one PE row, in table
    order) that act on item ``i`` into ``evs``/``ems``; returns how many.  The hot
    path then scans only these, so a fold with many faults (a fault map: every
    faulty PE in every fold) costs each row only its own events."""
    n = 0
    for q in range(lo, hi):
        e = ridx[q]
        if ev[e, EV_I0] <= i < ev[e, EV_I1]:
            for j in range(EV_COLS):
                evs[n, j] = ev[e, j]
            for j in range(3):
                ems[n, j] = em[e, j]
            n += 1
    return n


# ---- scalar-FMA PE: the staged (hot) path of one PE row ------------------------------
@njit(cache=True)
def _fma_hot_row(row_active, ab0, wb_row, c_vals, out, ev, em, e0, e1, r, i, ncols, depth, reg_w, opf, accf, rd):
    """One PE row of a scalar-FMA array for one item, every register as bits.

    ab0: the moving operand's bits entering column 0 (uint64); wb_row: (ncols,) the
    other operand's bits per column; c_vals: (ncols,) psum in; out: (ncols,) psum out
    (may alias c_vals).  row_active False: a pass-through row (psum only).  opf, accf:
    operand and accumulator :class:`Encoding`; rd: the add's :class:`Rounding`.
    """
    for c in range(ncols):
        out[c] = _fma_hot_pe(row_active, ab0, wb_row[c], c_vals[c], ev, em, e0, e1, r, c, i, depth, reg_w,
                             opf, accf, rd)


@njit(cache=True)
def _fma_hot_pe(row_active, ab0, wb, v, ev, em, e0, e1, r, c, i, depth, reg_w, opf, accf, rd):
    """One scalar-FMA PE (r, c) for one item, every register as bits: ab0 the moving
    operand's bits as they entered the row, wb the other operand's bits, v psum in;
    returns psum out (records as :func:`_fma_hot_row`)."""
    m2 = 2 * (opf.man_bits + 1)
    if row_active:
        ab = _ops(ab0, ev, em, e0, e1, REG_A, r, c, i, 0, 0)
        wb = _ops(wb, ev, em, e0, e1, reg_w, r, c, i, 0, 0)
        av = decode_fp(ab, opf)
        wv = decode_fp(wb, opf)
        ea = operand_exp(ab, opf)
        ew = operand_exp(wb, opf)
        p = av * wv
        pe = ea + ew if (ea > -511 and ew > -511) else np.int64(SENTINEL)
        for s in range(1, depth):
            if np.isfinite(p) and _has_reg(ev, e0, e1, REG_PROD, r, c, i):
                pb = _ops(prod_encode(p, pe, m2), ev, em, e0, e1, REG_PROD, r, c, i, 0, s)
                p, pe = prod_decode(pb, m2)
        v = fma_add(p, v, rd)
    return _psum_ops(v, ev, em, e0, e1, REG_PSUM, r, c, i, 1, accf)


@njit(cache=True)
def ws_fma(a_bits, a_val, w_bits, w_val, acc, geo, use_f32, opf, accf, rd, evt):
    """Weight-stationary scalar-FMA array over a whole GEMM (acc in place).

    a_bits (M, K) uint64 operand encodings, a_val (M, K) their values (float32 when
    use_f32, else float64); w_bits/w_val (K, N) likewise; acc (M, N) float32/float64:
    C on entry, D on return.  Folds run N-tile-major, K-folds inner, so each fold's
    partial sum enters the next as its C.  geo: the :class:`Geometry`; opf, accf: the
    operand and accumulator :class:`Encoding`; rd: the add's :class:`Rounding`; evt:
    the :class:`Events`, grouped by (fold, PE row).  A (fold, item, PE row) no event
    touches is the fault-free FMA; one that an event touches runs the staged path on
    that row's events only.
    Rows of M are independent within a fold: threads take chunks of ``geo.chunk`` rows.
    """
    # the parallel kernel takes the records' fields: a parallel kernel taking records
    # ran its fault-free sweeps 4x slower (measured); they are rebuilt in each task
    R, C, depth, chunk = geo.rows, geo.cols, geo.depth, geo.chunk
    ev, em, row_ptr, row_idx, max_row = evt.table, evt.masks, evt.ptr, evt.idx, evt.max_row
    op_eb, op_mb, op_bias, op_fn = opf
    acc_eb, acc_mb, acc_bias, acc_fn = accf
    o_man, o_emin, o_max, o_rne, o_ovf = rd
    _ws_fma(a_bits, a_val, w_bits, w_val, acc, R, C, depth, chunk, use_f32, op_eb, op_mb, op_bias, op_fn, acc_eb,
            acc_mb, acc_bias, acc_fn, o_man, o_emin, o_max, o_rne, o_ovf, ev, em, row_ptr, row_idx, max_row)


@njit(cache=True, parallel=True)
def _ws_fma(a_bits, a_val, w_bits, w_val, acc, R, C, depth, chunk, use_f32, op_eb, op_mb, op_bias, op_fn, acc_eb,
            acc_mb, acc_bias, acc_fn, o_man, o_emin, o_max, o_rne, o_ovf, ev, em, row_ptr, row_idx, max_row):
    """:func:`ws_fma` on the records' fields."""
    M, K = a_bits.shape
    N = w_bits.shape[1]
    nkf = (K + R - 1) // R
    nnt = (N + C - 1) // C
    nch = (M + chunk - 1) // chunk
    for ch in prange(nch):
        opf_ = Encoding(op_eb, op_mb, op_bias, op_fn)
        accf_ = Encoding(acc_eb, acc_mb, acc_bias, acc_fn)
        rd_ = Rounding(o_man, o_emin, o_max, o_rne, o_ovf)
        colhot = np.zeros(C, np.bool_)
        evs = np.empty((max(max_row, 1), EV_COLS), np.int64)
        ems = np.empty((max(max_row, 1), 3), np.uint64)
        for nt in range(nnt):
            n0 = nt * C
            Cu = min(C, N - n0)
            for kf in range(nkf):
                f = nt * nkf + kf
                k0 = kf * R
                Ru = min(R, K - k0)
                for m in range(ch * chunk, min(M, (ch + 1) * chunk)):
                    for r in range(R):
                        lo = row_ptr[f * R + r]
                        hi = row_ptr[f * R + r + 1]
                        ne = row_events(ev, em, row_idx, lo, hi, m, evs, ems) if hi > lo else 0
                        if ne > 0:
                            # only the PEs an event touches take the staged path (the
                            # rest of the row is the fault-free FMA on the same values)
                            colhot[:Cu] = False
                            for q in range(ne):
                                for c in range(evs[q, EV_C0], min(evs[q, EV_C1], Cu)):
                                    colhot[c] = True
                            ab0 = a_bits[m, k0 + r] if r < Ru else _U0
                            for c in range(Cu):
                                if colhot[c]:
                                    acc[m, n0 + c] = _fma_hot_pe(
                                        r < Ru, ab0, w_bits[k0 + r, n0 + c] if r < Ru else _U0, acc[m, n0 + c],
                                        evs, ems, 0, ne, r, c, m, depth, REG_W, opf_, accf_, rd_)
                                elif r < Ru and use_f32:
                                    acc[m, n0 + c] = acc[m, n0 + c] + a_val[m, k0 + r] * w_val[k0 + r, n0 + c]
                                elif r < Ru:
                                    acc[m, n0 + c] = fma_add(a_val[m, k0 + r] * w_val[k0 + r, n0 + c],
                                                             acc[m, n0 + c], rd_)
                        elif r < Ru:
                            av = a_val[m, k0 + r]
                            if use_f32:
                                for c in range(Cu):
                                    acc[m, n0 + c] = acc[m, n0 + c] + av * w_val[k0 + r, n0 + c]
                            else:
                                for c in range(Cu):
                                    acc[m, n0 + c] = fma_add(av * w_val[k0 + r, n0 + c], acc[m, n0 + c], rd_)


@njit(cache=True)
def os_fma(a_bits, a_val, b_bits, b_val, acc, geo, use_f32, opf, accf, rd, evt):
    """Output-stationary scalar-FMA array over a whole GEMM (acc in place).

    Arrays as :func:`ws_fma` (b_* is (K, N)).  Fold (mt, nt) pins D[mt*R:, nt*C:] in
    the PEs; K streams through.  Items are k; PE rows are output rows, so an event's
    row is the PE row and its items are k.  Folds of one M-tile go to one thread.
    evt: the :class:`Events`, grouped by fold.
    """
    R, C, depth = geo.rows, geo.cols, geo.depth
    ev, em, fold_ptr = evt.table, evt.masks, evt.ptr
    op_eb, op_mb, op_bias, op_fn = opf
    acc_eb, acc_mb, acc_bias, acc_fn = accf
    o_man, o_emin, o_max, o_rne, o_ovf = rd
    _os_fma(a_bits, a_val, b_bits, b_val, acc, R, C, depth, use_f32, op_eb, op_mb, op_bias, op_fn, acc_eb, acc_mb,
            acc_bias, acc_fn, o_man, o_emin, o_max, o_rne, o_ovf, ev, em, fold_ptr)


@njit(cache=True, parallel=True)
def _os_fma(a_bits, a_val, b_bits, b_val, acc, R, C, depth, use_f32, op_eb, op_mb, op_bias, op_fn, acc_eb, acc_mb,
            acc_bias, acc_fn, o_man, o_emin, o_max, o_rne, o_ovf, ev, em, fold_ptr):
    """:func:`os_fma` on the records' fields (as :func:`_ws_fma`)."""
    M, K = a_bits.shape
    N = b_bits.shape[1]
    nmt = (M + R - 1) // R
    nnt = (N + C - 1) // C
    for mt in prange(nmt):
        opf_ = Encoding(op_eb, op_mb, op_bias, op_fn)
        accf_ = Encoding(acc_eb, acc_mb, acc_bias, acc_fn)
        rd_ = Rounding(o_man, o_emin, o_max, o_rne, o_ovf)
        cv = np.empty(C, np.float64)
        brow = np.empty(C, np.uint64)
        m0 = mt * R
        Ru = min(R, M - m0)
        for nt in range(nnt):
            n0 = nt * C
            Cu = min(C, N - n0)
            f = mt * nnt + nt
            e0 = fold_ptr[f]
            e1 = fold_ptr[f + 1]
            for r in range(Ru):
                m = m0 + r
                for k in range(K):
                    if e1 > e0 and _row_has(ev, e0, e1, r, k):
                        for c in range(Cu):
                            cv[c] = _psum_ops(acc[m, n0 + c], ev, em, e0, e1, REG_PSUM, r, c, k, 0, accf_)
                            brow[c] = b_bits[k, n0 + c]
                        _fma_hot_row(True, a_bits[m, k], brow, cv, cv, ev, em, e0, e1, r, k, Cu, depth, REG_W,
                                     opf_, accf_, rd_)
                        for c in range(Cu):
                            acc[m, n0 + c] = cv[c]
                    else:
                        av = a_val[m, k]
                        if use_f32:
                            for c in range(Cu):
                                acc[m, n0 + c] = acc[m, n0 + c] + av * b_val[k, n0 + c]
                        else:
                            for c in range(Cu):
                                acc[m, n0 + c] = fma_add(av * b_val[k, n0 + c], acc[m, n0 + c], rd_)


@njit(cache=True)
def _row_has(ev, e0, e1, r, i):
    for e in range(e0, e1):
        if ev[e, EV_R] == r and ev[e, EV_I0] <= i < ev[e, EV_I1]:
            return True
    return False


# ---- dot-product unit (tensor core): staged path and the array kernel ----------------
@njit(cache=True)
def _x_ops(x, ev, em, e0, e1, r, c, i, stage):
    """Events on a pass-result register ``x{stage}`` (binary32 bits)."""
    if not _has_reg(ev, e0, e1, REG_X, r, c, i):
        return x
    bits = _ops(encode_ieee(x, _F32), ev, em, e0, e1, REG_X, r, c, i, 0, stage)
    return decode_fp(bits, _F32)


@njit(cache=True)
def dpu_hot(row_active, ab, wb, k, c_val, order, start, ev, em, e0, e1, r, c, i, opf, accf, st,
            p, pe, pp, ppe, terms, sc, su):
    """One DPU step with every pipeline register as bits and its events applied.

    ab, wb: (k,) operand bits (zero-padded past K); c_val: psum in (float64);
    order (k,), start (P+1,): the step's positions by pass (``_pe.pass_layout``);
    opf, accf: operand and accumulator :class:`Encoding`; st: the :class:`FusedStep`;
    p, pe (k,), pp, ppe (k,), terms (k+1,): scratch.  Each pass aligns its products
    with the term carried into it (C for pass 0 when fused, else the previous pass's
    result), sums them and rounds; the last pass rounds into the accumulator.
    Returns psum out (float64).
    """
    v = c_val
    frac, c_fused = st.frac, st.c_fused
    if row_active:
        m2 = 2 * (opf.man_bits + 1)
        for t in range(k):
            a1 = _ops(ab[t], ev, em, e0, e1, REG_A, r, c, i, t, 0)
            w1 = _ops(wb[t], ev, em, e0, e1, REG_W, r, c, i, t, 0)
            va = decode_fp(a1, opf)
            vw = decode_fp(w1, opf)
            # a zero operand counts with the rule's zero_exp (st.c_zero; SENTINEL: no part)
            ea = st.c_zero if va == 0.0 else operand_exp(a1, opf)
            ew = st.c_zero if vw == 0.0 else operand_exp(w1, opf)
            p[t] = va * vw
            pe[t] = ea + ew if (ea > -511 and ew > -511) else np.int64(SENTINEL)
            if np.isfinite(p[t]) and _has_reg(ev, e0, e1, REG_PROD, r, c, i):
                pb = _ops(prod_encode(p[t], pe[t], m2), ev, em, e0, e1, REG_PROD, r, c, i, t, 0)
                p[t], pe[t] = prod_decode(pb, m2)
        n_pass = len(start) - 1
        carry = c_val
        has_c = c_fused
        tw = frac + 3
        for q in range(n_pass):
            c_emin = carry_emin(q, c_fused, st.out.emin, st.pas.emin)
            kp = start[q + 1] - start[q]
            for j in range(kp):
                pp[j] = p[order[start[q] + j]]
                ppe[j] = pe[order[start[q] + j]]
            e_max = dpu_align(pp, ppe, kp, carry, has_c, frac, c_emin, terms, sc, su,
                              st.c_zero if q == 0 else np.int64(SENTINEL))
            e_max = exp_decode(_ops(exp_encode(e_max), ev, em, e0, e1, REG_EMAX, r, c, i, 0, q))
            if _has_reg(ev, e0, e1, REG_ALIGNED, r, c, i):
                for t in range(kp + 1 if has_c else kp):  # the carried term is element kp
                    if np.isfinite(terms[t]):
                        terms[t] = smag_decode(_ops(smag_encode(terms[t], tw), ev, em, e0, e1, REG_ALIGNED,
                                                    r, c, i, t, q), tw)
            total = dpu_sum(terms, kp, has_c)
            if np.isfinite(total) and _has_reg(ev, e0, e1, REG_SUM, r, c, i):
                sw = sum_int_bits(kp, frac, has_c)
                bits = (exp_encode(e_max) << np.uint64(sw)) | smag_encode(total, sw)
                bits = _ops(bits, ev, em, e0, e1, REG_SUM, r, c, i, 0, q)
                e_max = exp_decode(bits >> np.uint64(sw))
                total = smag_decode(bits & ((_U1 << np.uint64(sw)) - _U1), sw)
            if q < n_pass - 1:
                carry = dpu_round_pass(total, e_max, st, sc, su)
                carry = _x_ops(carry, ev, em, e0, e1, r, c, i, q + 1)
                has_c = True
            else:
                v = dpu_finish(total, e_max, c_val, st, sc, su)
    return _psum_ops(v, ev, em, e0, e1, REG_PSUM, r, c, i, 1, accf)


@njit(cache=True)
def sum_int_bits(k, frac, c_fused):
    """Width of the sum register's sign-magnitude integer: frac+3+ceil(log2(terms))."""
    n = k + 1 if c_fused else k
    lg = 0
    while (1 << lg) < n:
        lg += 1
    return frac + 3 + lg


@njit(cache=True)
def ws_dpu(a_bits, w_bits, acc, geo, k, order, start, ops, opf, accf, st, evt):
    """Weight-stationary array of k-wide dot-product units over a whole GEMM.

    a_bits (M, K), w_bits (K, N): operand encodings (uint64) in K order, for the
    staged path; acc (M, N) float64, C in, D out; order (k,), start (P+1,) int64: the
    step's K positions by pass (``_pe.pass_layout``).  ops: the same operands in the
    core's layout, a :class:`FusedOperands` (``simulator._matmul.fused_layout``);
    geo: the :class:`Geometry`; opf, accf: operand and accumulator :class:`Encoding`;
    st: the :class:`FusedStep`.  PE row r of K-fold kf holds step
    s = kf*R + r (K columns [s*k, s*k+k)); rows past the last step pass the partial
    sum through.  A fault-free PE row is the core's :func:`fused_step_rows` over the
    fold's columns; a row a fault touches runs the staged path, every register as bits,
    on that row's events only (evt, :class:`Events`, as :func:`ws_fma`).
    """
    R, C, chunk = geo.rows, geo.cols, geo.chunk
    ev, em, row_ptr, row_idx, max_row = evt.table, evt.masks, evt.ptr, evt.idx, evt.max_row
    # the parallel kernel takes the records' fields (a parallel kernel taking records ran
    # 4x slower, measured) and rebuilds them in each task
    a_val, a_exp, b_val, b_exp, a_bad, b_bad = ops.a_val, ops.a_exp, ops.b_val, ops.b_exp, ops.a_bad, ops.b_bad
    n_pass_, pass_len, p_floor = ops.n_pass, ops.pass_len, ops.p_floor
    frac, c_fused = st.frac, st.c_fused
    p_man, p_emin, p_max, p_rne, p_ovf = st.pas
    o_man, o_emin, o_max, o_rne, o_ovf = st.out
    f_man, f_emin, f_max, f_rne, f_ovf = st.f32
    op_eb, op_mb, op_bias, op_fn = opf
    acc_eb, acc_mb, acc_bias, acc_fn = accf
    _ws_dpu(a_bits, w_bits, acc, R, C, chunk, k, order, start, ev, em, row_ptr, row_idx, max_row, a_val, a_exp, b_val,
            b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor, frac, c_fused, op_eb, op_mb, op_bias, op_fn, acc_eb,
            acc_mb, acc_bias, acc_fn, p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man,
            f_emin, f_max, f_rne, f_ovf, st.c_zero)


@njit(cache=True, parallel=True)
def _ws_dpu(a_bits, w_bits, acc, R, C, chunk, k, order, start, ev, em, row_ptr, row_idx, max_row, a_val, a_exp, b_val,
            b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor, frac, c_fused, op_eb, op_mb, op_bias, op_fn, acc_eb,
            acc_mb, acc_bias, acc_fn, p_man, p_emin, p_max, p_rne, p_ovf, o_man, o_emin, o_max, o_rne, o_ovf, f_man,
            f_emin, f_max, f_rne, f_ovf, c_zero):
    """:func:`ws_dpu` on the records' fields."""
    M, K = a_bits.shape
    N = w_bits.shape[1]
    n_pass = len(start) - 1
    k_step = n_pass * pass_len
    nsteps = (K + k - 1) // k
    nkf = (nsteps + R - 1) // R
    nnt = (N + C - 1) // C
    nch = (M + chunk - 1) // chunk
    for ch in prange(nch):
        ops_ = FusedOperands(a_val, a_exp, b_val, b_exp, a_bad, b_bad, n_pass_, pass_len, p_floor)
        st_ = FusedStep(frac, c_fused, Rounding(p_man, p_emin, p_max, p_rne, p_ovf),
                        Rounding(o_man, o_emin, o_max, o_rne, o_ovf), Rounding(f_man, f_emin, f_max, f_rne, f_ovf),
                        c_zero)
        opf_ = Encoding(op_eb, op_mb, op_bias, op_fn)
        accf_ = Encoding(acc_eb, acc_mb, acc_bias, acc_fn)
        sc = np.empty(3, np.float64)
        su = sc.view(np.uint64)
        p = np.empty(k, np.float64)
        pe = np.empty(k, np.int64)
        pp = np.empty(k, np.float64)
        ppe = np.empty(k, np.int64)
        terms = np.empty(k + 1, np.float64)
        ab = np.zeros(k, np.uint64)
        wb = np.zeros(k, np.uint64)
        emx = np.empty(C, np.int16)
        scl = np.empty(C, a_val.dtype)
        itot = np.empty(C, np.int32)
        special = np.zeros(C, np.float64)
        tot = np.empty(C, np.float64)
        carry = np.empty(C, np.float64)
        row = np.empty(C, np.float64)
        evs = np.empty((max(max_row, 1), EV_COLS), np.int64)
        ems = np.empty((max(max_row, 1), 3), np.uint64)
        for nt in range(nnt):
            n0 = nt * C
            Cu = min(C, N - n0)
            for kf in range(nkf):
                f = nt * nkf + kf
                Ru = min(R, nsteps - kf * R)
                for m in range(ch * chunk, min(M, (ch + 1) * chunk)):
                    for r in range(R):
                        kb = (kf * R + r) * k
                        kn = min(k, K - kb) if r < Ru else 0
                        lo = row_ptr[f * R + r]
                        hi = row_ptr[f * R + r + 1]
                        ne = row_events(ev, em, row_idx, lo, hi, m, evs, ems) if hi > lo else 0
                        if ne > 0:
                            for t in range(k):
                                ab[t] = a_bits[m, kb + t] if t < kn else _U0
                            for c in range(Cu):
                                for t in range(k):
                                    wb[t] = w_bits[kb + t, n0 + c] if t < kn else _U0
                                acc[m, n0 + c] = dpu_hot(r < Ru, ab, wb, k, acc[m, n0 + c], order, start,
                                                         evs, ems, 0, ne, r, c, m, opf_, accf_, st_,
                                                         p, pe, pp, ppe, terms, sc, su)
                            continue
                        if r >= Ru:
                            continue
                        # a fault-free unit row: the core's fused step over the fold's columns
                        fused_step_rows(ops_, st_, acc, m, m + 1, (kf * R + r) * k_step, n0, n0 + Cu,
                                        emx, scl, itot, special, tot, carry, row)


# ---- units of issue-13 rules: operands, scales, psum ---------------------------------
GeneralUnit = namedtuple("GeneralUnit", ["k", "pairwise", "flush_nodes", "flush_acc", "scaled", "n_scales",
                                         "tv", "te", "stv", "ste", "op_mask", "m2", "sum_w"])
GeneralUnit.__doc__ = """A unit of an issue-13 rule as :func:`ws_general` takes it: k (int64) positions
per step; pairwise (bool) a pairwise binary32 tree (else the general fused step);
flush_nodes, flush_acc (bool) its flushes; scaled (bool) block scales, n_scales (int64)
scale-register elements; tv, te: value (float64) and alignment exponent (int16) of every
operand code (the rule's input flush and zero_exp applied), stv, ste: of every scale
code; op_mask (uint64): the operand codes' bits; m2 (int64): the product register's
significand bits (:func:`prod_encode`; fused trees); sum_w (int64): the sum register's
sign-magnitude integer bits (fused trees)."""


@njit(cache=True)
def _unit_step(u, g, ab, wb, sab, swb, kn, c_val, av1, ae1, bv1, be1, sav1, sae1, sbv1, sbe1, a32, b32, c32,
               buf, cv, scr, ev, em, ne, r, c, i):
    """One unit step from register bits: operand codes ab, wb (k,), scale codes sab, swb
    (n_scales,) -> the step's result (float64) by the core's step (:func:`general_step_cols`
    or :func:`pairwise_step_cols` on one column, run stage by stage), with the events
    ``ev[:ne]``/``em`` on PE (r, c), item i, applied to the stage registers between the
    stages: ``prod`` (the products), ``node{l}`` (level l of a pairwise tree), ``sum``
    (a fused tree's exact sum).  kn: the step's live positions."""
    k = u.k
    per = k // u.n_scales if u.scaled else 1
    for t in range(k):
        ca = ab[t] & u.op_mask
        cw = wb[t] & u.op_mask
        live = t < kn
        av1[0, t] = u.tv[ca] if live else 0.0
        ae1[0, t] = u.te[ca]
        bv1[t, 0] = u.tv[cw] if live else 0.0
        be1[t, 0] = u.te[cw]
        if u.scaled:
            sa_ = sab[t // per] & np.uint64(0xFF)
            sw_ = swb[t // per] & np.uint64(0xFF)
            sav1[0, t] = u.stv[sa_]
            sae1[0, t] = u.ste[sa_]
            sbv1[t, 0] = u.stv[sw_]
            sbe1[t, 0] = u.ste[sw_]
    if u.pairwise:
        for t in range(k):
            a32[0, t] = np.float32(av1[0, t])
            b32[t, 0] = np.float32(bv1[t, 0])
        c32[0] = np.float32(c_val)
        pairwise_leaves(a32, b32, 0, 0, k, 0, 1, buf, u.flush_nodes)
        if _has_reg(ev, 0, ne, REG_PROD, r, c, i):
            for t in range(k):
                buf[t, 0] = _f32_ops(buf[t, 0], ev, em, ne, REG_PROD, r, c, i, t, 0)
        w = 1
        lvl = 1
        while w < k:
            pairwise_level(buf, k, w, 1, u.flush_nodes)
            if _has_reg(ev, 0, ne, REG_X, r, c, i):
                for t in range(0, k, 2 * w):
                    buf[t, 0] = _f32_ops(buf[t, 0], ev, em, ne, REG_X, r, c, i, t // (2 * w), lvl)
            w *= 2
            lvl += 1
        pairwise_add_c(c32, buf, 1, u.flush_acc)
        return np.float64(c32[0])
    if _has_reg(ev, 0, ne, REG_PROD, r, c, i):
        # a product register holds the exact product and its alignment exponent (the DPU's
        # encoding); a faulted one enters the step as the operand pair (product, 1.0) with
        # its exponent on A's side, which gives the step exactly that term
        for t in range(k):
            p = av1[0, t] * bv1[t, 0]
            ea, ew = np.int64(ae1[0, t]), np.int64(be1[t, 0])
            pe = ea + ew if (ea > -511 and ew > -511) else np.int64(SENTINEL)
            if np.isfinite(p):
                p, pe = prod_decode(_ops(prod_encode(p, pe, u.m2), ev, em, 0, ne, REG_PROD, r, c, i, t, 0), u.m2)
                av1[0, t] = p
                ae1[0, t] = pe
                bv1[t, 0] = 1.0
                be1[t, 0] = 0
    # no step known clean: a register may hold anything, so every step sorts out IEEE classes
    ops1 = GeneralOperands(av1, ae1, bv1, be1, sav1, sae1, sbv1, sbe1, np.int64(1 if u.scaled else 0),
                           np.zeros((0, 0), np.bool_))
    cv[0] = c_val
    n_big = general_sum_cols(ops1, 0, 0, 1, 0, kn, cv[0:1], g, scr[0], scr[1], scr[2], scr[3], scr[4], scr[5])
    xs, ue = scr[4][1, 0], scr[5][1, 0]
    if np.isfinite(xs) and _has_reg(ev, 0, ne, REG_SUM, r, c, i):
        # the register: the exponent E of the sum's alignment and the integer xs / 2**ue
        # (ue = E - fraction bits) in sign-magnitude
        fb = g.sum_fb if g.c_mode == C_ALIGNED else g.frac
        bits = (exp_encode(ue + fb) << np.uint64(u.sum_w)) | smag_encode(math.ldexp(xs, -ue), u.sum_w)
        bits = _ops(bits, ev, em, 0, ne, REG_SUM, r, c, i, 0, 0)
        scr[4][1, 0] = math.ldexp(smag_decode(bits, u.sum_w), exp_decode(bits >> np.uint64(u.sum_w)) - fb)
    general_round_cols(cv[0:1], 1, (kn + g.group_k - 1) // g.group_k, n_big, g, scr[0], scr[4])
    return cv[0]


@njit(cache=True)
def _f32_ops(x, ev, em, ne, reg, r, c, i, elem, stage):
    """The events on one binary32 element (x float32) of a register, applied to its bits
    (a NaN held as the canonical quiet NaN, as :func:`encode_ieee` holds one)."""
    tmp = np.empty(1, np.float32)
    tmp[0] = x
    bits = tmp.view(np.uint32)
    if x != x:
        bits[0] = np.uint32(QNAN32)
    bits[0] = np.uint32(_ops(np.uint64(bits[0]), ev, em, 0, ne, reg, r, c, i, elem, stage) & np.uint64(0xFFFFFFFF))
    return tmp[0]


@njit(cache=True)
def ws_general(a_bits, w_bits, sa_bits, sw_bits, acc, geo, ops, a32f, b32f, u, g, accf, evt):
    """Weight-stationary array of k-wide units of an issue-13 rule over a whole GEMM.

    a_bits (M, K), w_bits (K, N): operand codes (uint64); sa_bits (M, K), sw_bits (K, N):
    each position's scale code (uint64; unused unless ``u.scaled``); acc (M, N) float64,
    C in, D out.  ops: a :class:`GeneralOperands` of the same operands (scales per
    position, blk 1) and a32f (M, K), b32f (K, N) float32 their values (pairwise trees):
    a fault-free PE row is the core's step over the fold's columns.  u: the
    :class:`GeneralUnit`; g: the :class:`GeneralStep`; accf: the accumulator's
    :class:`Encoding`; evt: :class:`Events` grouped by (fold, PE row) as :func:`ws_dpu`.
    PE row r of K-fold kf holds step kf*R + r; a row a fault touches decodes its
    registers' (faulted) bits unit by unit and runs the same step on them.
    """
    R, C = geo.rows, geo.cols
    ev, em, row_ptr, row_idx, max_row = evt.table, evt.masks, evt.ptr, evt.idx, evt.max_row
    M, K = a_bits.shape
    N = w_bits.shape[1]
    k = u.k
    ns = max(u.n_scales, 1)
    nsteps = (K + k - 1) // k
    nkf = (nsteps + R - 1) // R
    nnt = (N + C - 1) // C
    scr = general_scratch(k, g.n_pass, max(C, 1))
    scr1 = general_scratch(k, g.n_pass, 1)
    buf = np.empty((k, max(C, 1)), np.float32)
    c32 = np.empty(max(C, 1), np.float32)
    ab = np.zeros(k, np.uint64)
    wb = np.zeros(k, np.uint64)
    sab = np.zeros(ns, np.uint64)
    swb = np.zeros(ns, np.uint64)
    av1 = np.zeros((1, k))
    ae1 = np.zeros((1, k), np.int16)
    bv1 = np.zeros((k, 1))
    be1 = np.zeros((k, 1), np.int16)
    sav1 = np.ones((1, k))
    sae1 = np.zeros((1, k), np.int16)
    sbv1 = np.ones((k, 1))
    sbe1 = np.zeros((k, 1), np.int16)
    a32 = np.zeros((1, k), np.float32)
    b32 = np.zeros((k, 1), np.float32)
    c1 = np.empty(1, np.float32)
    cv = np.empty(1, np.float64)
    evs = np.empty((max(max_row, 1), EV_COLS), np.int64)
    ems = np.empty((max(max_row, 1), 3), np.uint64)
    per = k // ns
    for nt in range(nnt):
        n0 = nt * C
        Cu = min(C, N - n0)
        for kf in range(nkf):
            f = nt * nkf + kf
            Ru = min(R, nsteps - kf * R)
            for m in range(M):
                for r in range(R):
                    kb = (kf * R + r) * k
                    kn = min(k, K - kb) if r < Ru else 0
                    lo = row_ptr[f * R + r]
                    hi = row_ptr[f * R + r + 1]
                    ne = row_events(ev, em, row_idx, lo, hi, m, evs, ems) if hi > lo else 0
                    if ne > 0:
                        for c in range(Cu):
                            v = acc[m, n0 + c]
                            if r < Ru:
                                for t in range(k):
                                    xa = a_bits[m, kb + t] if t < kn else _U0
                                    xw = w_bits[kb + t, n0 + c] if t < kn else _U0
                                    ab[t] = _ops(xa, evs, ems, 0, ne, REG_A, r, c, m, t, 0)
                                    wb[t] = _ops(xw, evs, ems, 0, ne, REG_W, r, c, m, t, 0)
                                if u.scaled:
                                    for q in range(ns):
                                        live = q * per < kn
                                        xa = sa_bits[m, kb + q * per] if live else _U0
                                        xw = sw_bits[kb + q * per, n0 + c] if live else _U0
                                        sab[q] = _ops(xa, evs, ems, 0, ne, REG_SA, r, c, m, q, 0)
                                        swb[q] = _ops(xw, evs, ems, 0, ne, REG_SW, r, c, m, q, 0)
                                v = _unit_step(u, g, ab, wb, sab, swb, kn, v, av1, ae1, bv1, be1, sav1, sae1, sbv1,
                                               sbe1, a32, b32, c1, buf, cv, scr1, evs, ems, ne, r, c, m)
                            acc[m, n0 + c] = _psum_ops(v, evs, ems, 0, ne, REG_PSUM, r, c, m, 1, accf)
                        continue
                    if r >= Ru:
                        continue
                    c0 = acc[m, n0:n0 + Cu]
                    if u.pairwise:
                        for c in range(Cu):
                            c32[c] = np.float32(c0[c])
                        pairwise_step_cols(a32f, b32f, m, kb, k, n0, n0 + Cu, c32, buf, u.flush_nodes, u.flush_acc)
                        for c in range(Cu):
                            c0[c] = np.float64(c32[c])
                    else:
                        general_step_cols(ops, m, n0, n0 + Cu, kb, kb + kn, c0, g, scr[0], scr[1], scr[2], scr[3],
                                          scr[4], scr[5])
