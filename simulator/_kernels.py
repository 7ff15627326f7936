"""Numba kernels of the numerics core (private).

Kernels take only arrays and integers.  Values travel as binary64, which holds every
input, every product of two inputs and every aligned partial sum of the catalogue's
datapaths exactly; rounding is done on the binary64 bit pattern with explicit
``uint64`` arithmetic, masked after every shift.  The scalar primitives here
(:func:`acc_align_exp`, :func:`scale_bits`, :func:`round_bits`) are the only place
where alignment and rounding happen: the fast row kernels below and the cycle-level
PE models call them, so every path makes the same bits.

The slow reference beside these kernels is :mod:`simulator._reference`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

# alignment exponent of a zero or non-finite operand: far below any real exponent so
# it never becomes the maximum, and sums of two stay far below too
SENTINEL = np.int32(-(1 << 20))
# lowest alignment exponent used for scaling, so 2**(frac_bits - E) stays finite in
# binary64 when a step has no nonzero finite term (real exponents are >= -300)
E_FLOOR = -600

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_SIGN = np.uint64(0x8000000000000000)
_MAG = np.uint64(0x7FFFFFFFFFFFFFFF)
_FRAC = np.uint64(0x000FFFFFFFFFFFFF)
_HIDDEN = np.uint64(0x0010000000000000)
_INF = np.uint64(0x7FF0000000000000)
_EXP_ALL = np.uint64(0x7FF)
_U52 = np.uint64(52)


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


@njit(cache=True)
def acc_align_exp(u, acc_emin):
    """Alignment exponent (int32) of an accumulator value from its binary64 bits.

    floor(log2|c|), at least ``acc_emin`` (a subnormal accumulator counts with its
    format's smallest normal exponent); :data:`SENTINEL` for zero, inf and NaN, which
    take no part in choosing the alignment exponent.
    """
    be = np.int64((u >> _U52) & _EXP_ALL)
    if be == 0 or be == 0x7FF:
        return SENTINEL
    e = be - 1023
    return np.int32(e if e > acc_emin else acc_emin)


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


@njit(cache=True)
def _row_fused(a_val, a_exp, i, b_val, b_exp, b_special, acc, k_step, frac_bits, c_fused,
               p_man, p_emin, p_max, p_rne, o_man, o_emin, o_max, o_rne, o_ovf, f32_max):
    """All K-steps of row ``i`` (in place on ``acc``, shape (N,), binary64)."""
    K = a_val.shape[1]
    N = acc.shape[0]
    emax = np.empty(N, np.int32)
    scale = np.empty(N, np.float64)
    scale_u = scale.view(np.uint64)
    total = np.empty(N, np.float64)
    total_u = total.view(np.uint64)
    acc_u = acc.view(np.uint64)
    for k0 in range(0, K, k_step):
        k1 = min(k0 + k_step, K)
        # 1. the alignment exponent: largest exponent among nonzero terms
        if c_fused:
            for j in range(N):
                emax[j] = acc_align_exp(acc_u[j], o_emin)
        else:
            emax[:] = SENTINEL
        for k in range(k0, k1):
            ea = a_exp[i, k]
            if ea == SENTINEL:
                continue
            for j in range(N):
                e = ea + b_exp[k, j]
                if e > emax[j]:
                    emax[j] = e
        for j in range(N):
            scale_u[j] = scale_bits(emax[j], frac_bits)
        # 2. aligned terms, each truncated toward zero, summed exactly
        if c_fused:
            for j in range(N):
                total[j] = np.trunc(acc[j] * scale[j])
        else:
            total[:] = 0.0
        for k in range(k0, k1):
            av = a_val[i, k]
            if av == 0.0 and not b_special[k]:
                continue  # zero products add nothing (a zero times inf or NaN still must)
            for j in range(N):
                total[j] += np.trunc(av * b_val[k, j] * scale[j])
        # 3. back to a value (exact), then rounded into the accumulator
        for j in range(N):
            scale_u[j] = unscale_bits(emax[j], frac_bits)
            total[j] = total[j] * scale[j]
        if c_fused:
            for j in range(N):
                acc_u[j] = round_bits(total_u[j], o_man, o_emin, o_max, o_rne, o_ovf)
        else:
            for j in range(N):
                total_u[j] = round_bits(total_u[j], p_man, -126, p_max, p_rne, o_ovf)
                # one binary32 round-to-nearest-even addition of C (exact in binary64
                # then rounded once more: innocuous, 53 >= 2 * 24 + 2)
                total[j] = total[j] + acc[j]
                total_u[j] = round_bits(total_u[j], 23, -126, f32_max, True, o_ovf)
                acc_u[j] = round_bits(total_u[j], o_man, o_emin, o_max, o_rne, o_ovf)
        for j in range(N):
            if total[j] == 0.0 and c_fused:
                acc_u[j] = acc_u[j] & _MAG  # an exact zero result is +0


@njit(cache=True, parallel=True)
def fused_gemm(a_val, a_exp, b_val, b_exp, b_special, acc, k_step, frac_bits, c_fused,
               p_man, p_emin, p_max, p_rne, o_man, o_emin, o_max, o_rne, o_ovf, f32_max):
    """D = A @ B + C through chained fused steps of ``k_step`` products.

    Args:
        a_val: (M, K) float64 input values; a_exp: (M, K) int32 alignment exponents
            (:data:`SENTINEL` for zero/non-finite).
        b_val: (K, N) float64; b_exp: (K, N) int32; b_special: (K,) bool, True where
            row k of B holds an inf or NaN.
        acc: (M, N) float64 accumulator, C on entry, D on return (in place).
        k_step: products per fused step; frac_bits: fractional bits after alignment.
        c_fused: C aligned with the products (True) or added after (False).
        p_*: binary32 rounding of the products' sum when C comes after (mantissa
            bits, emin, max bits, rne).
        o_*: rounding into the accumulator (mantissa bits, emin, max bits, rne,
            overflow-to-inf); f32_max: bits of the binary32 maximum.
    """
    M = a_val.shape[0]
    for i in prange(M):
        _row_fused(a_val, a_exp, i, b_val, b_exp, b_special, acc[i], k_step, frac_bits, c_fused,
                   p_man, p_emin, p_max, p_rne, o_man, o_emin, o_max, o_rne, o_ovf, f32_max)


@njit(cache=True, parallel=True)
def fma_gemm(a_val, b_val, acc, o_man, o_emin, o_max, o_ovf):
    """D = A @ B + C by scalar fused multiply-adds along K, rounding to nearest even.

    a_val (M, K), b_val (K, N), acc (M, N) float64 (in place).  Each product is exact
    in binary64; ``product + c`` in binary64 followed by one rounding to the
    accumulator is the correctly rounded FMA (53 >= 2 * 24 + 2).
    """
    M, K = a_val.shape
    N = acc.shape[1]
    for i in prange(M):
        row = acc[i]
        row_u = row.view(np.uint64)
        for k in range(K):
            av = a_val[i, k]
            for j in range(N):
                row[j] = row[j] + av * b_val[k, j]
                row_u[j] = round_bits(row_u[j], o_man, o_emin, o_max, True, o_ovf)


@njit(cache=True, parallel=True)
def fma_gemm_f32(a32, b32, acc32):
    """As :func:`fma_gemm` in binary32, valid only when every product is exact in binary32.

    a32 (M, K), b32 (K, N), acc32 (M, N) float32 (in place).  The caller checks the
    exactness condition (all nonzero products within [2**-126, 2**127]).
    """
    M, K = a32.shape
    N = acc32.shape[1]
    for i in prange(M):
        row = acc32[i]
        for k in range(K):
            av = a32[i, k]
            for j in range(N):
                row[j] = row[j] + av * b32[k, j]
