"""Operand rounding on the JAX engine: ``Accelerator.round_operand`` in 32-bit integer
``jax.numpy`` (traceable, no x64), with the binary32 bits of an operand obtained
without any float conversion (XLA's CPU conversions flush subnormals)."""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from simulator import RoundingTarget, get_format

from ._jax_engine import _f32_bits, _f32_parts, _round, _to_format_bits

__all__ = ["round_operand_jax"]

_U = jnp.uint32


def round_operand_jax(acc, x, shift=None):
    """``acc.round_operand(x)`` in ``jax.numpy`` integer arithmetic (traceable).

    Args:
        acc: the :class:`models.Accelerator`.
        x: a floating array (float32, or a dtype of a catalogue format: float16,
            bfloat16, FP8), any shape.
        shift: None, or int32 exponents broadcastable to x: round x * 2**-shift
            instead (the scaling recipes' x / scale, exact before the one rounding).
    Returns:
        An array of ``acc.input_dtype`` (float32 for tf32, which the engine narrows),
        bit for bit the eager bridge's rounding, NaN payloads aside (a NaN becomes the
        format's NaN): round to nearest even from the exact value, saturating as
        ``acc.saturates`` says.  Only integer operations and bitcasts touch the values:
        XLA's float conversions may flush subnormals (the CPU backend does).
    """
    if acc.input_format == "tf32":
        return lax.bitcast_convert_type(_f32_bits(x), jnp.float32)
    fmt = get_format(acc.input_format)
    if np.dtype(x.dtype) == fmt.dtype and shift is None:
        return x
    bits = _f32_bits(x)
    neg, mag, unit, fin, _ = _f32_parts(bits)
    nan = ~fin & ((bits & 0x7FFFFF) != 0)
    inf = ~fin & ~nan
    # the same rounding the engine's steps use, with the format as the target; the
    # format's own top (e4m3: 448, not all ones) and its lack of infinities are applied
    # after, so the target overflows to inf and the result is settled here
    target = RoundingTarget(fmt.man_bits, fmt.emin, fmt.emax, True, True)
    if shift is not None:
        unit = unit - shift
    r = _round(neg, mag, unit, jnp.zeros(bits.shape, bool), target)
    top = _U(int(np.float32(fmt.max_finite).view(np.uint32)))
    over = fin & ((r & 0x7FFFFFFF) > top)  # beyond the largest finite value (inf included)
    code = _to_format_bits(jnp.where(over, top, r & 0x7FFFFFFF), fmt)  # magnitude codes (sign below)
    codes = _special_codes(fmt)
    if acc.saturates:
        code = jnp.where(over | inf, _U(codes["max"]), code)
    elif codes["inf"] is None:  # no infinity: an overflow or an infinity is NaN
        code = jnp.where(over | inf, _U(codes["nan"]), code)
    else:
        code = jnp.where(over | inf, _U(codes["inf"]), code)
    # the sign (a zero result keeps it, as IEEE rounding does); NaN is the format's NaN
    code = code | jnp.where(neg, _U(1 << (fmt.width - 1)), _U(0))
    code = jnp.where(nan, _U(codes["nan"]), code)
    return lax.bitcast_convert_type(code.astype(fmt.uint_dtype), fmt.dtype)


@functools.lru_cache(maxsize=None)
def _special_codes(fmt) -> dict:
    """The format's codes (unsigned, sign bit clear) of its largest finite value, of
    +inf (None when it has none) and of its NaN, from the catalogue's own encoder."""
    def code(v, saturate=False):
        return int(fmt.encode(np.array([v]), "rne", saturate=saturate)[0])
    return {"max": code(fmt.max_finite), "inf": code(np.inf) if fmt.specials == "ieee" else None,
            "nan": code(np.nan)}
