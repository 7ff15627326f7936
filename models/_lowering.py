"""Lowering ``dot_general`` and ``conv_general_dilated`` to batches of 2-D GEMMs.

Each lowering takes the (already rounded) operands as numpy arrays plus the
primitive's parameters and returns ``(a, b, assemble)``: ``a`` (G, M, K) and ``b``
(G, K, N) hold the GEMMs' operands, and ``assemble(d)`` turns their results D
(G, M, N) back into the primitive's output layout.  Only data moves here (transposes,
reshapes, zero padding, patch gathering); no arithmetic.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lower_dot_general", "lower_conv"]


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def lower_dot_general(lhs: np.ndarray, rhs: np.ndarray, dimension_numbers):
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
    a = np.transpose(lhs, lb + lf + lc).reshape(G, M, K)
    b = np.transpose(rhs, rb + rc + rf).reshape(G, K, N)

    def assemble(d: np.ndarray) -> np.ndarray:
        return d.reshape(batch_shape + lf_shape + rf_shape)

    return a, b, assemble


def _dilate_pad(x: np.ndarray, dilation, padding) -> np.ndarray:
    """Insert dilation-1 zeros between elements of the spatial axes (2..), then pad
    (negative padding crops).  x: (N, C, *spatial)."""
    for i, (d, (lo, hi)) in enumerate(zip(dilation, padding)):
        ax = 2 + i
        n = x.shape[ax]
        if d > 1 and n > 0:
            shape = list(x.shape)
            shape[ax] = (n - 1) * d + 1
            y = np.zeros(shape, x.dtype)
            idx = [slice(None)] * x.ndim
            idx[ax] = slice(None, None, d)
            y[tuple(idx)] = x
            x = y
        widths = [(0, 0)] * x.ndim
        widths[ax] = (max(lo, 0), max(hi, 0))
        x = np.pad(x, widths)
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(max(-lo, 0), x.shape[ax] - max(-hi, 0))
        x = x[tuple(idx)]
    return x


def lower_conv(lhs: np.ndarray, rhs: np.ndarray, *, window_strides, padding, lhs_dilation, rhs_dilation,
               dimension_numbers, feature_group_count, batch_group_count, **_):
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
    x = np.transpose(lhs, tuple(lhs_spec))  # (Nb, C, *S)
    w = np.transpose(rhs, tuple(rhs_spec))  # (O, Cg, *W)
    nsp = x.ndim - 2
    strides = tuple(window_strides) if window_strides else (1,) * nsp
    lhs_dilation = tuple(lhs_dilation) if lhs_dilation else (1,) * nsp
    rhs_dilation = tuple(rhs_dilation) if rhs_dilation else (1,) * nsp
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    G = int(feature_group_count)
    Nb, C = x.shape[:2]
    O, Cg = w.shape[:2]
    win = w.shape[2:]
    xp = _dilate_pad(x, lhs_dilation, padding)
    eff = tuple((k - 1) * d + 1 for k, d in zip(win, rhs_dilation))
    out_sp = tuple(max(0, (n - e) // s + 1) for n, e, s in zip(xp.shape[2:], eff, strides))
    # patches: (Nb, C, *W, *out_sp)
    cols = np.empty((Nb, C) + win + out_sp, x.dtype)
    for pos in np.ndindex(*win):
        idx = (slice(None), slice(None)) + tuple(
            slice(p * d, p * d + s * (o - 1) + 1, s) for p, d, s, o in zip(pos, rhs_dilation, strides, out_sp))
        cols[(slice(None), slice(None)) + pos] = xp[idx] if all(o > 0 for o in out_sp) else 0
    L = _prod(out_sp)
    Kw = Cg * _prod(win)
    Og = O // G
    # (Nb, G, Cg, *W, *out_sp) -> (G, Nb, *out_sp, Cg, *W)
    cols = cols.reshape((Nb, G, Cg) + win + out_sp)
    perm = (1, 0) + tuple(range(3 + nsp, 3 + 2 * nsp)) + (2,) + tuple(range(3, 3 + nsp))
    a = np.transpose(cols, perm).reshape(G, Nb * L, Kw)
    b = np.transpose(w.reshape((G, Og, Kw)), (0, 2, 1))  # (G, Kw, Og)
    inv_out = tuple(np.argsort(out_spec))

    def assemble(d: np.ndarray) -> np.ndarray:
        # (G, Nb*L, Og) -> (Nb, G*Og, *out_sp) -> output layout
        y = d.reshape((G, Nb) + out_sp + (Og,))
        y = np.moveaxis(y, -1, 1)  # (G, Og, Nb, *out_sp)
        y = y.reshape((G * Og, Nb) + out_sp).swapaxes(0, 1)  # (Nb, O, *out_sp)
        return np.transpose(y, inv_out)

    return a, b, assemble
