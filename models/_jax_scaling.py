"""The scaling recipes of :class:`models.Accelerator` on the JAX engine.

:meth:`Accelerator.quantize`, :meth:`Accelerator.scaled_gemm` and
:meth:`Accelerator.dequantize` re-expressed in 32-bit integer ``jax.numpy`` (traceable,
no x64): the scale exponents come from the operands' bit patterns, an operand is scaled
by moving its binary exponent before the one rounding to the format (exact, as
``ldexp`` in binary64 is in the eager version), and the epilogue's binary32 products
and sums are integer binary32 operations rounded to nearest even (XLA's CPU float
arithmetic flushes subnormals, and under ``jax.jit`` contracts a multiply and an add
into one fused multiply-add; neither happens here).  Bit for bit the eager bridge's
result, NaN payloads aside.

Scales travel as integer arrays so that faults can flip their bits inside a traced
computation: ``"tensor"``/``"row"`` scales as uint32 binary32 bits, ``"block"`` scales
as uint8 E8M0 codes.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax import lax

from simulator import RoundingTarget, get_format

from ._jax_engine import _add_ieee, _f32_bits, _f32_parts, _round, _to_format_bits, jax_matmul
from ._jax_operands import round_operand_jax

__all__ = ["quantize_jax", "scaled_gemm_jax", "dequantize_jax", "mul_f32", "JaxScales"]

_U = jnp.uint32
_I = jnp.int32
_F32 = get_format("fp32")
_RNE32 = RoundingTarget(_F32.man_bits, _F32.emin, _F32.emax, True, True)
_F16 = get_format("fp16")
_RNE16 = RoundingTarget(_F16.man_bits, _F16.emin, _F16.emax, True, True)
_E8M0_BIAS = 127
_E8M0_NAN = 0xFF
_SCALE_EXP = (-126, 127)  # tensor / row scales: normal binary32 powers of two
_MX_EXP = (-127, 127)  # E8M0's exponents


def _bitlen(x):
    return 32 - lax.clz(x).astype(_I)


def _exponent(mag_bits):
    """(floor(log2 v) int32, v's significand normalised to 24 bits uint32) of binary32
    magnitudes v > 0 (finite; subnormals too)."""
    _, mag, unit, _, _ = _f32_parts(mag_bits)
    n = _bitlen(mag)
    return unit + n - 1, lax.shift_left(mag, jnp.clip(24 - n, 0, 31).astype(_U))


def _amax_bits(bits, axis):
    """Largest |finite value| along ``axis`` (None: all) as binary32 bits (0 when none)."""
    mag = bits & _U(0x7FFFFFFF)
    mag = jnp.where(mag < _U(0x7F800000), mag, _U(0))  # inf / NaN take no part
    return jnp.max(mag) if axis is None else jnp.max(mag, axis=axis)


def _pow2_at_least(amax_bits, fmax: float):
    """Smallest e (int32) with amax / 2**e <= fmax, clamped to the normal binary32
    exponents; 0 where amax is 0 (as ``models._accelerator._pow2_at_least``)."""
    ea, ma = _exponent(amax_bits)
    ef, mf = _exponent(jnp.asarray(np.float32(fmax).view(np.uint32), _U))
    e = ea - ef + (ma > mf).astype(_I)
    return jnp.where(amax_bits == 0, 0, jnp.clip(e, *_SCALE_EXP))


def _mx_exponent(amax_bits, emax: int):
    """OCP MX shared exponent floor(log2(amax)) - emax clamped to E8M0's range; 0 for an
    all-zero block."""
    ea, _ = _exponent(amax_bits)
    return jnp.where(amax_bits == 0, 0, jnp.clip(ea - emax, *_MX_EXP))


def mul_f32(x, y):
    """x * y of binary32 bits (uint32), rounded to nearest even as IEEE 754 binary32
    (subnormals kept, signed zeros, inf and NaN as IEEE; NaN as 0x7FC00000)."""
    xneg, xm, xu, xfin, xzero = _f32_parts(x)
    yneg, ym, yu, yfin, yzero = _f32_parts(y)
    neg = xneg ^ yneg
    # the exact 48-bit product of the 24-bit significands from 12-bit limbs, as hi * 2**24 + lo
    mask12 = _U(0xFFF)
    xh, xl, yh, yl = xm >> 12, xm & mask12, ym >> 12, ym & mask12
    mid = xh * yl + xl * yh  # < 2**25
    lo = xl * yl + ((mid & mask12) << 12)  # < 2**25
    hi = xh * yh + (mid >> 12) + (lo >> 24)
    lo = lo & _U(0xFFFFFF)
    n = jnp.where(hi > 0, _bitlen(hi) + 24, _bitlen(lo))
    s = jnp.maximum(n - 27, 0)  # keep 27 bits (23 + guard, round and more), the rest as sticky
    s_lo = jnp.minimum(s, 24)
    mag = jnp.where(s >= 24, lax.shift_right_logical(hi, jnp.clip(s - 24, 0, 31).astype(_U)),
                    lax.shift_left(hi, jnp.clip(24 - s, 0, 31).astype(_U))
                    | lax.shift_right_logical(lo, s_lo.astype(_U)))
    lo_mask = lax.shift_left(_U(1), s_lo.astype(_U)) - 1
    hi_mask = lax.shift_left(_U(1), jnp.clip(s - 24, 0, 31).astype(_U)) - 1
    sticky = ((lo & lo_mask) != 0) | ((s > 24) & ((hi & hi_mask) != 0))
    r = _round(neg, mag, xu + yu + s, sticky, _RNE32)
    sign = jnp.where(neg, _U(0x80000000), _U(0))
    r = jnp.where((r & _U(0x7FFFFFFF)) == 0, sign, r)  # a zero product keeps the sign (IEEE)
    xnan, ynan = ~xfin & ((x & 0x7FFFFF) != 0), ~yfin & ((y & 0x7FFFFF) != 0)
    xinf, yinf = ~xfin & ~xnan, ~yfin & ~ynan
    nan = xnan | ynan | (xinf & yzero) | (yinf & xzero)
    r = jnp.where(xinf | yinf, sign | _U(0x7F800000), r)
    return jnp.where(nan, _U(0x7FC00000), r)


def _to_acc(bits, acc_dtype):
    """binary32 bits -> the accumulator dtype, rounded to nearest even (fp16: as numpy's
    cast: overflow to inf, subnormals kept)."""
    if np.dtype(acc_dtype) == np.float32:
        return lax.bitcast_convert_type(bits, jnp.float32)
    neg, mag, unit, fin, _ = _f32_parts(bits)
    r = jnp.where(fin, _round(neg, mag, unit, jnp.zeros(bits.shape, bool), _RNE16), bits)
    r = jnp.where(fin & ((r & 0x7FFFFFFF) == 0), bits & _U(0x80000000), r)  # signed zeros stay
    out = _to_format_bits(r, _F16).astype(jnp.uint16)
    nan = ~fin & ((bits & 0x7FFFFF) != 0)
    return lax.bitcast_convert_type(jnp.where(nan, jnp.uint16(0x7E00), out), jnp.float16)


class JaxScales(NamedTuple):
    """The scales of one scaled GEMM inside a trace (see :class:`models.Scales` for the
    layouts): ``kind`` ``"tensor"``/``"row"`` with ``a``, ``b`` uint32 binary32 bits,
    or ``"block"`` with uint8 E8M0 codes and the block length."""
    kind: str
    a: object
    b: object
    block: int = 0


def quantize_jax(acc, a, b):
    """:meth:`Accelerator.quantize` of a batch of GEMMs: a (G, M, K), b (G, K, N) exact
    operands -> (qa, qb, JaxScales), qa/qb in the input format (block: K padded with
    zeros to whole blocks)."""
    kind, n = acc.scaling_kind
    fmt = get_format(acc.input_format)
    ab, bb = _f32_bits(a), _f32_bits(b)
    if kind == "tensor":
        ea = _pow2_at_least(_amax_bits(ab, None), fmt.max_finite)
        eb = _pow2_at_least(_amax_bits(bb, None), fmt.max_finite)
        return (round_operand_jax(acc, a, ea), round_operand_jax(acc, b, eb),
                JaxScales("tensor", _pow2_bits(ea).reshape(1), _pow2_bits(eb).reshape(1)))
    if kind == "row":
        ea = _pow2_at_least(_amax_bits(ab, 2), fmt.max_finite)  # (G, M)
        eb = _pow2_at_least(_amax_bits(bb, 1), fmt.max_finite)  # (G, N)
        return (round_operand_jax(acc, a, ea[:, :, None]), round_operand_jax(acc, b, eb[:, None, :]),
                JaxScales("row", _pow2_bits(ea), _pow2_bits(eb)))
    G, M, K = a.shape
    N = b.shape[2]
    nb = -(-K // n)
    pa = jnp.pad(ab, ((0, 0), (0, 0), (0, nb * n - K)))
    pb = jnp.pad(bb, ((0, 0), (0, nb * n - K), (0, 0)))
    xa = _mx_exponent(_amax_bits(pa.reshape(G, M, nb, n), 3), fmt.emax)  # (G, M, nb)
    xb = _mx_exponent(_amax_bits(pb.reshape(G, nb, n, N), 2), fmt.emax)  # (G, nb, N)
    fa = lax.bitcast_convert_type(pa, jnp.float32)
    fb = lax.bitcast_convert_type(pb, jnp.float32)
    qa = round_operand_jax(acc, fa, jnp.repeat(xa, n, axis=2))
    qb = round_operand_jax(acc, fb, jnp.repeat(xb, n, axis=1))
    return qa, qb, JaxScales("block", (xa + _E8M0_BIAS).astype(jnp.uint8), (xb + _E8M0_BIAS).astype(jnp.uint8), n)


def _pow2_bits(e):
    """binary32 bits of 2**e for normal exponents e (int32)."""
    return lax.shift_left((e + 127).astype(_U), _U(23))


def _e8m0_bits(codes):
    """binary32 bits of E8M0 scales: 2**(code - 127) (code 0: 2**-127, a subnormal), 0xFF
    NaN (as ``Scales.values``)."""
    c = codes.astype(_I)
    normal = lax.shift_left(jnp.clip(c, 1, 254).astype(_U), _U(23))
    sub = _U(0x400000)  # 2**-127
    return jnp.where(c == _E8M0_NAN, _U(0x7FC00000), jnp.where(c == 0, sub, normal))


def scaled_gemm_jax(acc, qa, qb, scales: JaxScales, matmul):
    """:meth:`Accelerator.scaled_gemm`: D (G, M, N) in the accumulator dtype before the
    epilogue (``"tensor"``/``"row"``: the unscaled accumulator; ``"block"``: the scaled
    sum over blocks).  ``matmul(a, b)`` computes unscaled GEMMs (the JAX engine, or a
    faulty chip)."""
    if scales.kind in ("tensor", "row"):
        return matmul(qa, qb)
    G, M, _ = qa.shape
    N = qb.shape[2]
    n = scales.block
    nb = scales.a.shape[2]
    if acc.datapath.mx_block:  # the unit applies the block scales itself
        return jax_matmul(qa, qb, jnp.zeros((G, M, N), acc.acc_dtype), profile=acc.profile, scale_a=scales.a,
                          scale_b=scales.b, scale_format="ue8m0")
    ba = qa.reshape(G, M, nb, n).transpose(0, 2, 1, 3).reshape(G * nb, M, n)
    bb = qb.reshape(G, nb, n, N).reshape(G * nb, n, N)
    parts = _f32_bits(matmul(ba, bb)).reshape(G, nb, M, N)
    s = mul_f32(_e8m0_bits(scales.a).transpose(0, 2, 1)[:, :, :, None], _e8m0_bits(scales.b)[:, :, None, :])
    d = mul_f32(parts[:, 0], s[:, 0])
    for j in range(1, nb):
        d = _add_ieee(d, mul_f32(parts[:, j], s[:, j]), _RNE32)
    return _to_acc(d, acc.acc_dtype)


def dequantize_jax(acc, d, scales: JaxScales):
    """:meth:`Accelerator.dequantize`: D times sa * sb in binary32 (``"tensor"``,
    ``"row"``), into the accumulator dtype; ``"block"``: D as it is."""
    if scales.kind == "block":
        return d
    if scales.kind == "tensor":
        s = mul_f32(scales.a, scales.b).reshape(1, 1, 1)
    else:
        s = mul_f32(scales.a[:, :, None], scales.b[:, None, :])
    return _to_acc(mul_f32(_f32_bits(d), s), acc.acc_dtype)
