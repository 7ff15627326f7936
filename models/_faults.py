"""GEMM sites of a model, and value-level faults on their outputs.

A *GEMM* here is one execution of a ``dot_general`` or ``conv_general_dilated`` in a
JAX function, lowered to G independent 2-D GEMMs (batch dims of a batched
dot_general, feature groups of a convolution).  :class:`GemmSite` describes one;
faults name it by its ``index`` (execution order, 0-based).

Faults act on D, the GEMM's result in the accumulator format (float32 or float16),
*before* it is cast to the model's dtype.  These are the bridge's value-level faults;
register-level faults (``faults/``) plug in through :class:`ReplaceTile`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["GemmSite", "GemmCall", "OutputBitFlip", "ReplaceGemmOutput", "ReplaceTile", "GEMM_FAULTS"]


def _check_int(name, v, lo=0):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, not {v}")


@dataclass(frozen=True)
class GemmSite:
    """One GEMM execution of a function run on the accelerator.

    Attributes:
        index: execution order among the function's GEMMs (a GEMM in a loop body
            counts once per iteration).
        name: ``"<scopes>/<primitive>"``: enclosing jit/custom_jvp names and
            ``jax.named_scope`` names, e.g. ``"cnn/conv1/conv_general_dilated"``.
        primitive: ``"dot_general"`` or ``"conv_general_dilated"``.
        groups: G, the number of independent 2-D GEMMs (dot_general batch size,
            convolution feature groups).
        M, K, N: each 2-D GEMM is (M, K) @ (K, N).
        out_shape: shape of the primitive's output.
        key: where the execution sits in the jaxpr (eqn path, loop iterations);
            internal to the bridge's cache.
        where: ``"simulator"`` (rounded and run by :func:`simulator.matmul`) or
            ``"native"`` (run natively in JAX: only with ``accelerated(...,
            fallback="native")``, for a GEMM the bridge cannot route; G, M, K, N are
            0 where it has no 2-D GEMM form).
    """

    index: int
    name: str
    primitive: str
    groups: int
    M: int
    K: int
    N: int
    out_shape: tuple
    key: tuple = field(repr=False, compare=False, default=())
    where: str = "simulator"

    @property
    def macs(self) -> int:
        """Multiply-accumulates: G * M * K * N."""
        return self.groups * self.M * self.K * self.N


@dataclass(frozen=True)
class GemmCall:
    """What a replacement function sees: one GEMM about to be committed.

    Attributes:
        site: the :class:`GemmSite`.
        a: (G, M, K) operands, rounded to the input format (dtype
            ``accelerator.input_dtype``): exactly what the matrix unit reads.
        b: (G, K, N) operands, same dtype.
        d: (G, M, N) fault-free result in the accumulator dtype (C = +0), or with the
            faults applied before this one.  Read-only.
        accelerator: the :class:`models.Accelerator`.
    """

    site: GemmSite
    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    accelerator: object


@dataclass(frozen=True)
class OutputBitFlip:
    """Flip one bit of one element of a GEMM's result D (accumulator format).

    Attributes:
        gemm: :attr:`GemmSite.index` of the GEMM.
        row, col: the element of the 2-D GEMM, 0 <= row < M, 0 <= col < N.
        bit: bit position in the accumulator encoding (0 = mantissa LSB; 31 = sign
            for fp32, 15 for fp16).
        group: which of the G 2-D GEMMs (default 0).
    """

    gemm: int
    row: int
    col: int
    bit: int
    group: int = 0

    def __post_init__(self):
        for n in ("gemm", "row", "col", "bit", "group"):
            _check_int(n, getattr(self, n))

    def apply(self, call: GemmCall) -> np.ndarray:
        s = call.site
        _in_range("group", self.group, s.groups)
        _in_range("row", self.row, s.M)
        _in_range("col", self.col, s.N)
        d = call.d.copy()
        width = d.dtype.itemsize * 8
        _in_range("bit", self.bit, width)
        bits = d.view(np.dtype(f"uint{width}"))
        bits[self.group, self.row, self.col] ^= np.array(1 << self.bit, bits.dtype)
        return d


@dataclass(frozen=True)
class ReplaceGemmOutput:
    """Replace a GEMM's whole result D by ``fn(call)``.

    Attributes:
        gemm: :attr:`GemmSite.index`.
        fn: ``fn(call: GemmCall) -> array`` (G, M, N), cast to the accumulator dtype.
    """

    gemm: int
    fn: Callable

    def __post_init__(self):
        _check_int("gemm", self.gemm)
        if not callable(self.fn):
            raise TypeError(f"fn must be callable, not {type(self.fn).__name__}")

    def apply(self, call: GemmCall) -> np.ndarray:
        s = call.site
        out = np.asarray(self.fn(call))
        if out.shape != (s.groups, s.M, s.N):
            raise ValueError(f"fn must return shape {(s.groups, s.M, s.N)}, not {out.shape}")
        return out.astype(call.d.dtype, copy=True)


@dataclass(frozen=True)
class ReplaceTile:
    """Replace one tile D[group, r0:r1, c0:c1] of a GEMM's result by
    ``fn(a_tile, b_tile, d_tile)``.

    ``a_tile`` is A[group, r0:r1, :] (m, K), ``b_tile`` is B[group, :, c0:c1] (K, n),
    both in the input dtype, and ``d_tile`` the fault-free tile (m, n) in the
    accumulator dtype; ``fn`` returns the tile the faulty hardware produced, (m, n).
    This is where a cycle-level array run of one tile plugs in.

    Attributes:
        gemm: :attr:`GemmSite.index`.
        rows, cols: (start, stop) of the tile, clipped to M and N.
        fn: the tile function.
        group: which of the G 2-D GEMMs.
    """

    gemm: int
    rows: tuple
    cols: tuple
    fn: Callable
    group: int = 0

    def __post_init__(self):
        _check_int("gemm", self.gemm)
        _check_int("group", self.group)
        for n in ("rows", "cols"):
            v = getattr(self, n)
            if (not isinstance(v, tuple) or len(v) != 2
                    or any(not isinstance(x, (int, np.integer)) or isinstance(x, bool) for x in v)):
                raise TypeError(f"{n} must be a (start, stop) tuple of ints, not {v!r}")
            if not 0 <= v[0] < v[1]:
                raise ValueError(f"{n} must satisfy 0 <= start < stop, not {v!r}")
        if not callable(self.fn):
            raise TypeError(f"fn must be callable, not {type(self.fn).__name__}")

    def apply(self, call: GemmCall) -> np.ndarray:
        s = call.site
        _in_range("group", self.group, s.groups)
        _in_range("rows start", self.rows[0], s.M)
        _in_range("cols start", self.cols[0], s.N)
        r = slice(self.rows[0], min(self.rows[1], s.M))
        c = slice(self.cols[0], min(self.cols[1], s.N))
        d = call.d.copy()
        tile = np.asarray(self.fn(call.a[self.group, r, :], call.b[self.group, :, c], call.d[self.group, r, c]))
        want = (r.stop - r.start, c.stop - c.start)
        if tile.shape != want:
            raise ValueError(f"fn must return a tile of shape {want}, not {tile.shape}")
        d[self.group, r, c] = tile.astype(d.dtype)
        return d


#: The fault types the bridge understands (each has ``gemm`` and ``apply(call)``).
GEMM_FAULTS = (OutputBitFlip, ReplaceGemmOutput, ReplaceTile)


def _in_range(name, v, n):
    if not 0 <= v < n:
        raise ValueError(f"{name} must be in [0, {n}), not {v}")
