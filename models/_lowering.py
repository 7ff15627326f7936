"""Lowering ``dot_general`` and ``conv_general_dilated`` to batches of 2-D GEMMs.

Each lowering takes the (already rounded) operands plus the primitive's parameters
and returns ``(a, b, assemble)``: ``a`` (G, M, K) and ``b`` (G, K, N) hold the GEMMs'
operands, and ``assemble(d)`` turns their results D (G, M, N) back into the
primitive's output layout.  Only data moves here (transposes, reshapes, zero padding,
patch gathering); no arithmetic.  ``xp`` is the array namespace: ``numpy`` for the
eager bridge, ``jax.numpy`` for the JAX engine under ``jax.jit`` (one lowering, so both
engines see the same K order); every operation used exists in both with the same
meaning.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ._jaxpr import is_floating

__all__ = ["lower_dot_general", "lower_conv", "unroutable", "promote"]


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def lower_dot_general(lhs, rhs, dimension_numbers, xp=np):
    """``lax.dot_general`` as G = prod(batch dims) GEMMs.

    M = prod(lhs free dims), K = prod(contracting dims) (in the order the dimension
    numbers list them), N = prod(rhs free dims).  The output layout of dot_general is
    (batch..., lhs free..., rhs free...), which is (G, M, N) reshaped.
    """
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = map(tuple, (lc, rc, lb, rb))
    lf = tuple(d for d in range(lhs.ndim) if d not in lc and d not in lb)
    rf = tuple(d for d in range(rhs.ndim) if d not in rc and d not in rb)
    batch_shape = tuple(lhs.shape[d] for d in lb)
    lf_shape = tuple(lhs.shape[d] for d in lf)
    rf_shape = tuple(rhs.shape[d] for d in rf)
    G, M, N = _prod(batch_shape), _prod(lf_shape), _prod(rf_shape)
    K = _prod(lhs.shape[d] for d in lc)
    a = xp.transpose(lhs, lb + lf + lc).reshape(G, M, K)
    b = xp.transpose(rhs, rb + rc + rf).reshape(G, K, N)

    def assemble(d):
        return d.reshape(batch_shape + lf_shape + rf_shape)

    return a, b, assemble


def _dilate_pad(x, dilation, padding, xp):
    """Insert dilation-1 zeros between elements of the spatial axes (2..), then pad
    (negative padding crops).  x: (N, C, *spatial)."""
    for i, (d, (lo, hi)) in enumerate(zip(dilation, padding)):
        ax = 2 + i
        n = x.shape[ax]
        if d > 1 and n > 0:
            # each element followed by d - 1 zeros along ax, the trailing zeros cut off
            # (functional, so that it also runs on immutable jax arrays)
            zeros = xp.zeros(x.shape[:ax + 1] + (d - 1,) + x.shape[ax + 1:], x.dtype)
            y = xp.concatenate([xp.expand_dims(x, ax + 1), zeros], axis=ax + 1)
            y = y.reshape(x.shape[:ax] + (n * d,) + x.shape[ax + 1:])
            idx = [slice(None)] * x.ndim
            idx[ax] = slice(0, (n - 1) * d + 1)
            x = y[tuple(idx)]
        widths = [(0, 0)] * x.ndim
        widths[ax] = (max(lo, 0), max(hi, 0))
        x = xp.pad(x, widths)
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(max(-lo, 0), x.shape[ax] - max(-hi, 0))
        x = x[tuple(idx)]
    return x


def lower_conv(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
               feature_group_count, batch_group_count, xp=np, **_):
    """``lax.conv_general_dilated`` as im2col GEMMs, one per feature group.

    With the input in (Nb, C, *S) and the kernel in (O, C/G, *W) layout, group g is the
    GEMM of patches (Nb * prod(out spatial), C/G * prod(W)) by kernel
    (C/G * prod(W), O/G).  K runs over input channel (slowest), then window
    positions in row-major order.  M runs over batch, then output positions
    row-major.
    """
    if batch_group_count != 1:
        raise NotImplementedError(f"batch_group_count must be 1 (it only arises in gradients), "
                                  f"not {batch_group_count}")
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    x = xp.transpose(lhs, tuple(lhs_spec))  # (Nb, C, *S)
    w = xp.transpose(rhs, tuple(rhs_spec))  # (O, Cg, *W)
    nsp = x.ndim - 2
    strides = tuple(window_strides) if window_strides else (1,) * nsp
    lhs_dilation = tuple(lhs_dilation) if lhs_dilation else (1,) * nsp
    rhs_dilation = tuple(rhs_dilation) if rhs_dilation else (1,) * nsp
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    G = int(feature_group_count)
    Nb, C = x.shape[:2]
    O, Cg = w.shape[:2]
    win = w.shape[2:]
    xd = _dilate_pad(x, lhs_dilation, padding, xp)
    eff = tuple((k - 1) * d + 1 for k, d in zip(win, rhs_dilation))
    out_sp = tuple(max(0, (n - e) // s + 1) for n, e, s in zip(xd.shape[2:], eff, strides))
    # patches: (Nb, C, *W, *out_sp), one strided window slice per window position
    if all(o > 0 for o in out_sp):
        patches = [xd[(slice(None), slice(None)) + tuple(
            slice(p * d, p * d + s * (o - 1) + 1, s) for p, d, s, o in zip(pos, rhs_dilation, strides, out_sp))]
            for pos in np.ndindex(*win)]
        cols = xp.stack(patches, axis=2).reshape((Nb, C) + win + out_sp)
    else:
        cols = xp.zeros((Nb, C) + win + out_sp, x.dtype)
    L = _prod(out_sp)
    Kw = Cg * _prod(win)
    Og = O // G
    # (Nb, G, Cg, *W, *out_sp) -> (G, Nb, *out_sp, Cg, *W)
    cols = cols.reshape((Nb, G, Cg) + win + out_sp)
    perm = (1, 0) + tuple(range(3 + nsp, 3 + 2 * nsp)) + (2,) + tuple(range(3, 3 + nsp))
    a = xp.transpose(cols, perm).reshape(G, Nb * L, Kw)
    b = xp.transpose(w.reshape((G, Og, Kw)), (0, 2, 1))  # (G, Kw, Og)
    inv_out = tuple(int(i) for i in np.argsort(out_spec))

    def assemble(d):
        # (G, Nb*L, Og) -> (Nb, G*Og, *out_sp) -> output layout
        y = d.reshape((G, Nb) + out_sp + (Og,))
        y = xp.moveaxis(y, -1, 1)  # (G, Og, Nb, *out_sp)
        y = xp.swapaxes(y.reshape((G * Og, Nb) + out_sp), 0, 1)  # (Nb, O, *out_sp)
        return xp.transpose(y, inv_out)

    return a, b, assemble


def unroutable(eqn) -> str:
    """Why a GEMM equation (of :func:`models.is_gemm`) cannot be lowered to 2-D GEMMs of
    floating operands ('' when it can): both bridges route by this one rule."""
    dts = [np.dtype(v.aval.dtype) for v in eqn.invars]
    if any(jnp.issubdtype(d, jnp.complexfloating) for d in dts):
        return "complex operands"
    if not any(is_floating(d) for d in dts):
        return "no floating-point operand"
    if not all(is_floating(d) or jnp.issubdtype(d, jnp.integer) or d == np.bool_ for d in dts):
        return f"operand dtypes {[d.name for d in dts]}"
    if eqn.primitive.name == "conv_general_dilated" and eqn.params.get("batch_group_count", 1) != 1:
        return f"batch_group_count={eqn.params['batch_group_count']} (it only arises in gradients)"
    return ""


def promote(lhs, rhs):
    """The two operands of a mixed GEMM (int8 x bfloat16, float32 x float16) converted to
    their common type as JAX's type promotion gives it (:func:`jax.numpy.result_type`);
    numpy or jax arrays (both bridges route mixed GEMMs by this one rule)."""
    if np.dtype(lhs.dtype) == np.dtype(rhs.dtype):
        return lhs, rhs
    dt = np.dtype(jnp.result_type(lhs.dtype, rhs.dtype))
    return lhs.astype(dt), rhs.astype(dt)
