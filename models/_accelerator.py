"""The simulated accelerator as one frozen config, and the GEMM it runs.

:class:`Accelerator` says which datapath profile computes a GEMM, which format its
inputs are rounded to and which format it accumulates in.  :meth:`Accelerator.gemm`
runs a batch of 2-D GEMMs through :func:`simulator.matmul` (the bit-exact fast path),
or through :func:`models.jax_matmul` (the same numerics in ``jax.numpy``) with
``engine="jax"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from simulator import DatapathProfile, get_format, get_profile, matmul

from ._jax_engine import jax_matmul

__all__ = ["Accelerator", "INPUT_FORMATS", "ACCUMULATORS", "SCALINGS", "Scales", "ENGINES"]

#: Input formats a matrix unit can take (catalogue names; a rounded operand has the
#: format's numpy dtype, :attr:`simulator.Format.dtype`, float32 for tf32).
INPUT_FORMATS = ("fp16", "bf16", "tf32", "e4m3", "e5m2")
#: Accumulator formats (catalogue names).
ACCUMULATORS = ("fp32", "fp16")
#: Scaling recipes (``"block:N"`` with an int N >= 1, the block length along K).
SCALINGS = ("none", "tensor", "row", "block:N")
#: Engines of the numerics core: ``"numba"`` (:func:`simulator.matmul`, eager, CPU) and
#: ``"jax"`` (:func:`models.jax_matmul`: an accelerated function becomes a JAX
#: computation that ``jax.jit``, ``jax.vmap`` and ``jax.grad`` transform).
ENGINES = ("numba", "jax")
_F32_EXP = (-126, 127)  # exponents of the normal binary32 powers of two
_E8M0_BIAS = 127
_E8M0_NAN = 0xFF


def _parse_scaling(scaling):
    if not isinstance(scaling, str):
        raise TypeError(f"scaling must be a str, not {type(scaling).__name__}")
    if scaling in ("none", "tensor", "row"):
        return scaling, 0
    kind, sep, arg = scaling.partition(":")
    if kind == "block" and sep and arg.isdigit() and int(arg) >= 1:
        return "block", int(arg)
    raise ValueError(f"scaling must be one of {list(SCALINGS)} (N an int >= 1), not {scaling!r}")


def _pow2_at_least(amax: np.ndarray, maxf: float) -> np.ndarray:
    """Smallest e (int64) with amax / 2**e <= maxf, clamped to the normal binary32
    exponents; 0 where amax is 0 or not finite.  amax: float64 array."""
    ok = np.isfinite(amax) & (amax > 0)
    safe = np.where(ok, amax, maxf)
    with np.errstate(divide="ignore"):
        e = np.ceil(np.log2(safe / maxf)).astype(np.int64)
    # log2 is not exact: settle e by exact power-of-two comparisons (ldexp is exact in binary64).
    e = np.where(np.ldexp(safe, -e) > maxf, e + 1, e)
    e = np.where(np.ldexp(safe, -(e - 1)) <= maxf, e - 1, e)
    return np.where(ok, np.clip(e, *_F32_EXP), 0)


@dataclass(frozen=True)
class Scales:
    """Scale factors of one scaled GEMM (value-level fault sites).

    ``a`` and ``b`` are the dequantisation scales of A (G, M, K) and B (G, K, N):
    the exact operand is about ``scale * quantised operand``.

    * ``"tensor"``: ``a``, ``b`` of shape (1,) float32 (one each for the whole operand);
    * ``"row"``: ``a`` (G, M) float32 (per row of A), ``b`` (G, N) float32 (per column of B);
    * ``"block:N"``: ``a`` (G, M, nb) and ``b`` (G, nb, N) uint8 E8M0 codes (scale
      2**(code - 127), code 0xFF is NaN), nb = ceil(K / N) blocks along K.

    Tensor and row scales are powers of two stored in binary32 (a bit flip makes them
    any binary32 value); block scales are E8M0 bytes, as OCP MX stores them.
    """

    kind: str
    a: np.ndarray
    b: np.ndarray
    block: int = 0

    def values(self, which: str) -> np.ndarray:
        """The scales of operand ``which`` ("a" or "b") as float32 (E8M0 decoded)."""
        x = self.a if which == "a" else self.b
        if self.kind != "block":
            return x
        with np.errstate(over="ignore"):  # code 0xFF: 2**128 overflows, then becomes NaN below
            out = np.ldexp(np.float32(1), x.astype(np.int32) - _E8M0_BIAS).astype(np.float32)
        out[x == _E8M0_NAN] = np.nan
        return out


@dataclass(frozen=True)
class Accelerator:
    """A matrix unit as the JAX bridge sees it.

    Attributes:
        profile: a datapath profile name in :data:`simulator.PROFILES` (``"hopper"``, ...)
            or a :class:`simulator.DatapathProfile`.
        input_format: ``"fp16"``, ``"bf16"``, ``"tf32"``, ``"e4m3"`` or ``"e5m2"``: the
            format both GEMM operands are rounded to before the matrix unit sees them.
        accumulator: ``"fp32"`` or ``"fp16"``: the format the GEMM accumulates in (the
            dtype of C and D).  D is then cast to the model's dtype (exact for fp32
            models: float32 and float16 widen exactly).
        saturate: whether rounding an operand clamps out-of-range values (and
            infinities) to the largest finite value.  ``None`` (default) means: saturate
            for the FP8 formats, as the hardware conversion does (``cvt.rn.satfinite``
            on Hopper; e4m3 has no infinity, so a non-saturating conversion would give
            NaN), and not for fp16/bf16 (overflow gives inf, as a plain cast does).
        split_k: split-K factor passed to :func:`simulator.matmul`; every GEMM's K
            must be a multiple of it (else :meth:`gemm` raises ValueError naming K and
            split_k: a GEMM never silently runs unsplit).

        scaling: ``"none"`` (default), ``"tensor"``, ``"row"`` or ``"block:N"``: how
            operands are scaled into the input format before rounding and how the result
            is scaled back (:meth:`quantize`, :meth:`scaled_gemm`, :meth:`dequantize`);
            the scale factors are fault sites (:class:`models.ScaleBitFlip`).  Not
            with ``tf32``.
        engine: ``"numba"`` (default) or ``"jax"``: which engine of the numerics core
            runs the GEMMs (:data:`ENGINES`).  Both give the same bits.  With
            ``"jax"``, :func:`models.accelerated` returns a function that runs as one
            JAX computation (jit-compiled; it can itself be wrapped in ``jax.jit``,
            ``jax.vmap`` and ``jax.grad``, the gradient straight-through), and
            :meth:`gemm` calls :func:`models.jax_matmul`.

    Operands are rounded to nearest, ties to even (RNE), from their exact values
    (float32/float16/bfloat16/float64 model arrays are widened to binary64 first, so
    there is no double rounding).  ``tf32`` is the exception: the float32 operand goes
    to the simulator as is and the profile's ``operand_rounding`` narrows it (RZ on the
    NVIDIA profiles, as the tensor cores do).  NaN stays NaN.
    """

    profile: object = "hopper"
    input_format: str = "fp16"
    accumulator: str = "fp32"
    saturate: bool | None = None
    split_k: int = 1
    scaling: str = "none"
    engine: str = "numba"

    def __post_init__(self):
        if not isinstance(self.profile, (str, DatapathProfile)):
            raise TypeError(f"profile must be a str or DatapathProfile, not {type(self.profile).__name__}")
        prof = get_profile(self.profile)  # ValueError for an unknown name
        for attr, allowed in (("input_format", INPUT_FORMATS), ("accumulator", ACCUMULATORS)):
            v = getattr(self, attr)
            if not isinstance(v, str):
                raise TypeError(f"{attr} must be a str, not {type(v).__name__}")
            if v not in allowed:
                raise ValueError(f"{attr} must be one of {sorted(allowed)}, not {v!r}")
        if self.input_format not in prof.rules:
            raise ValueError(f"input_format must be one of {sorted(prof.rules)} for profile {prof.name!r}, "
                             f"not {self.input_format!r}")
        if self.accumulator not in prof.accumulators:
            raise ValueError(f"accumulator must be one of {list(prof.accumulators)} for profile {prof.name!r}, "
                             f"not {self.accumulator!r}")
        if self.saturate is not None and not isinstance(self.saturate, bool):
            raise TypeError(f"saturate must be a bool or None, not {type(self.saturate).__name__}")
        if not isinstance(self.split_k, int) or isinstance(self.split_k, bool):
            raise TypeError(f"split_k must be an int, not {type(self.split_k).__name__}")
        if self.split_k < 1:
            raise ValueError(f"split_k must be >= 1, not {self.split_k}")
        kind, n = _parse_scaling(self.scaling)
        if kind == "block" and prof.mx_block and n != prof.mx_block:
            raise ValueError(f"scaling must be 'block:{prof.mx_block}' on profile {prof.name!r} (its unit applies one "
                             f"E8M0 scale per {prof.mx_block} K positions), not {self.scaling!r}")
        if not isinstance(self.engine, str):
            raise TypeError(f"engine must be a str, not {type(self.engine).__name__}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, not {self.engine!r}")
        if self.scaling != "none" and self.input_format == "tf32":
            raise ValueError(f"scaling must be 'none' for input_format 'tf32' (the simulator narrows tf32 "
                             f"operands itself), not {self.scaling!r}")

    # ---- derived -------------------------------------------------------------
    @property
    def datapath(self) -> DatapathProfile:
        """The :class:`simulator.DatapathProfile` object."""
        return get_profile(self.profile)

    @property
    def input_dtype(self) -> np.dtype:
        """numpy dtype of a rounded operand (float32 for tf32)."""
        return get_format(self.input_format).dtype

    @property
    def acc_dtype(self) -> np.dtype:
        """numpy dtype of C and D (float32 or float16)."""
        return get_format(self.accumulator).dtype

    @property
    def saturates(self) -> bool:
        """Whether operand rounding saturates (``saturate``, or its default)."""
        return self.input_format in ("e4m3", "e5m2") if self.saturate is None else self.saturate

    # ---- arithmetic ----------------------------------------------------------
    def round_operand(self, x) -> np.ndarray:
        """Round an operand to the input format.

        Args:
            x: array-like of any float dtype, any shape.
        Returns:
            numpy array of :attr:`input_dtype`, same shape (float32 for tf32: the
            simulator narrows it).
        """
        x = np.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):  # bfloat16 / float8 have numpy kind 'V'
            raise TypeError(f"GEMM operands must be floating point, not {x.dtype}")
        if self.input_format == "tf32":
            return np.ascontiguousarray(x, np.float32)
        if x.dtype == self.input_dtype:
            return np.ascontiguousarray(x)
        fmt = get_format(self.input_format)
        bits = fmt.encode(x, "rne", saturate=self.saturates)  # widens any float dtype exactly
        return bits.view(self.input_dtype)

    def gemm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A batch of GEMMs on the matrix unit: D[i] = A[i] @ B[i] (C = +0).

        Args:
            a: (G, M, K) rounded operands (dtype :attr:`input_dtype`).
            b: (G, K, N) rounded operands, same dtype.
        Returns:
            D, (G, M, N) of :attr:`acc_dtype`; each D[i] equals
            ``simulator.matmul(a[i], b[i], zeros(acc_dtype), profile=..., split_k=...)``
            bit for bit (computed by :func:`models.jax_matmul` with ``engine="jax"``).
        """
        G, M, K = self._check_split(a, b)
        N = b.shape[2]
        if G == 0:
            return np.empty((0, M, N), self.acc_dtype)
        if self.engine == "jax":
            return np.asarray(self.jax_gemm(a, b))
        fmt = "tf32" if self.input_format == "tf32" else None
        # the whole batch in one call: the simulator runs it in one kernel where it can
        return matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), np.zeros((G, M, N), self.acc_dtype),
                      profile=self.profile, input_format=fmt, split_k=self.split_k)

    def jax_gemm(self, a, b):
        """:meth:`gemm` on the JAX engine, traceable: a (G, M, K), b (G, K, N) rounded
        operands (jax or numpy arrays) -> D (G, M, N) of :attr:`acc_dtype` as a jax array
        (:func:`models.jax_matmul` with this profile and split_k, C = +0)."""
        G, M, _ = self._check_split(a, b)
        return jax_matmul(a, b, jnp.zeros((G, M, b.shape[2]), self.acc_dtype), profile=self.profile,
                          input_format="tf32" if self.input_format == "tf32" else None, split_k=self.split_k)

    def _check_split(self, a, b) -> tuple:
        """(G, M, K) of a batch of GEMMs, K checked against split_k (a GEMM never silently
        runs unsplit)."""
        G, M, K = a.shape
        if K % self.split_k:
            raise ValueError(f"K must be a multiple of split_k={self.split_k}, not {K} "
                             f"(a GEMM of shape ({M}, {K}) @ ({K}, {b.shape[2]}))")
        return G, M, K

    # ---- scaling recipes -------------------------------------------------------
    @property
    def scaling_kind(self) -> tuple:
        """(kind, block length): ("none", 0), ("tensor", 0), ("row", 0) or ("block", N)."""
        return _parse_scaling(self.scaling)

    def quantize(self, a, b):
        """Scale and round the exact operands of a batch of GEMMs.

        Args:
            a: (G, M, K), b: (G, K, N) exact operand values (any float dtype).
        Returns:
            ``(qa, qb, scales)``: the rounded operands (:attr:`input_dtype`) and a
            :class:`Scales` (None for ``scaling="none"``, where this is
            :meth:`round_operand` of each).

        Recipes (``fmax`` = the input format's largest finite value):

        * ``"tensor"``: per-tensor current scaling.  s = 2**e, the smallest power of
          two with amax / s <= fmax (amax over the whole operand's finite values); the
          operand is x / s rounded (RNE, saturating as :attr:`saturates`).  A power
          of two rather than amax / fmax itself, so that dividing and multiplying back
          are exact in binary32 and the only rounding is the format's.
        * ``"row"``: the same per row of A (over K) and per column of B (over K).
        * ``"block:N"``: OCP MX: per N consecutive elements along K (of each row of A
          and each column of B) an E8M0 scale 2**X with X = floor(log2(amax)) -
          emax(format) (clamped to [-127, 127]; an all-zero block gets X = 0); the
          elements x / 2**X are rounded saturating, as the MX spec's conversion does.
        """
        kind, n = self.scaling_kind
        if kind == "none":
            return self.round_operand(a), self.round_operand(b), None
        a64 = np.asarray(a).astype(np.float64)
        b64 = np.asarray(b).astype(np.float64)
        fmt = get_format(self.input_format)
        with np.errstate(invalid="ignore"):
            if kind == "tensor":
                ea = _pow2_at_least(np.array([_amax(a64, None)]), fmt.max_finite)
                eb = _pow2_at_least(np.array([_amax(b64, None)]), fmt.max_finite)
                qa = self._round_scaled(a64, -ea.reshape(1, 1, 1))
                qb = self._round_scaled(b64, -eb.reshape(1, 1, 1))
                sc = Scales("tensor", np.ldexp(np.float32(1), ea).astype(np.float32),
                            np.ldexp(np.float32(1), eb).astype(np.float32))
            elif kind == "row":
                ea = _pow2_at_least(_amax(a64, 2), fmt.max_finite)  # (G, M)
                eb = _pow2_at_least(_amax(b64, 1), fmt.max_finite)  # (G, N)
                qa = self._round_scaled(a64, -ea[:, :, None])
                qb = self._round_scaled(b64, -eb[:, None, :])
                sc = Scales("row", np.ldexp(np.float32(1), ea).astype(np.float32),
                            np.ldexp(np.float32(1), eb).astype(np.float32))
            else:
                G, M, K = a64.shape
                N = b64.shape[2]
                nb = -(-K // n)
                pa = np.zeros((G, M, nb * n)); pa[:, :, :K] = a64
                pb = np.zeros((G, nb * n, N)); pb[:, :K, :] = b64
                xa = _mx_exponent(_amax(pa.reshape(G, M, nb, n), 3), fmt.emax)  # (G, M, nb)
                xb = _mx_exponent(_amax(pb.reshape(G, nb, n, N), 2), fmt.emax)  # (G, nb, N)
                qa = self._round_scaled(pa, -np.repeat(xa, n, axis=2))[:, :, :K]
                qb = self._round_scaled(pb, -np.repeat(xb, n, axis=1))[:, :K, :]
                sc = Scales("block", (xa + _E8M0_BIAS).astype(np.uint8), (xb + _E8M0_BIAS).astype(np.uint8), n)
        return np.ascontiguousarray(qa), np.ascontiguousarray(qb), sc

    def _round_scaled(self, x64: np.ndarray, e: np.ndarray) -> np.ndarray:
        fmt = get_format(self.input_format)
        # ldexp by a power of two is exact in binary64 for these ranges: one rounding, the format's.
        bits = fmt.encode(np.ldexp(x64, e), "rne", saturate=self.saturates)
        return bits.view(self.input_dtype)

    def scaled_gemm(self, qa: np.ndarray, qb: np.ndarray, scales) -> np.ndarray:
        """The matrix unit's result for quantised operands, before the epilogue.

        ``scales`` None, ``"tensor"`` or ``"row"``: :meth:`gemm` (the unscaled
        accumulator, (G, M, N) :attr:`acc_dtype`; :meth:`dequantize` applies the
        scales).  ``"block"``: K is cut into blocks of N; each block's GEMM runs on
        the simulator (all blocks in one batched call, C = +0), its result (binary32)
        is multiplied by the binary32 product of its two scales and the blocks are
        added in binary32 in K order (D = P0*s0, then D = D + Pj*sj, each operation
        rounded to nearest even): the scales act inside the dot product, as MX
        hardware applies them; the last block is zero-padded when N does not divide K.
        On a profile whose unit applies block scales itself (``mx_block``, e.g.
        ``"blackwell_mx"``), the scales go into the unit instead (:func:`simulator.matmul`
        with ``scale_a``/``scale_b``): each term's value and exponent carry them, bit for
        bit as the hardware's block-scaled instruction.
        """
        if scales is None or scales.kind != "block":
            return self.gemm(qa, qb)
        n = scales.block
        G, M, K = qa.shape
        N = qb.shape[2]
        nb = scales.a.shape[2]
        pa = np.zeros((G, M, nb * n), qa.dtype); pa[:, :, :K] = qa
        pb = np.zeros((G, nb * n, N), qb.dtype); pb[:, :K, :] = qb
        if self.datapath.mx_block:  # a unit with block-scaled instructions: the scales go into it
            if G == 0:
                return np.empty((0, M, N), self.acc_dtype)
            return matmul(pa, pb, np.zeros((G, M, N), self.acc_dtype), profile=self.profile,
                          scale_a=scales.a, scale_b=scales.b, scale_format="ue8m0")
        ba = pa.reshape(G, M, nb, n).transpose(0, 2, 1, 3).reshape(G * nb, M, n)
        bb = pb.reshape(G, nb, n, N).reshape(G * nb, n, N)
        parts = self.gemm(ba, bb).astype(np.float32).reshape(G, nb, M, N)
        s = scales.values("a").transpose(0, 2, 1)[:, :, :, None] * scales.values("b")[:, :, None, :]  # (G,nb,M,N)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            d = parts[:, 0] * s[:, 0]
            for j in range(1, nb):
                d = d + parts[:, j] * s[:, j]
        return d.astype(self.acc_dtype)

    def dequantize(self, d: np.ndarray, scales) -> np.ndarray:
        """The epilogue: D (G, M, N) times sa * sb (``"tensor"``, ``"row"``), both in
        binary32 (the scales' product first, then D times it, each rounded to nearest
        even), cast to :attr:`acc_dtype`.  Identity for ``None`` and ``"block"``."""
        if scales is None or scales.kind == "block":
            return d
        sa, sb = scales.values("a"), scales.values("b")
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            if scales.kind == "tensor":
                s = sa.reshape(1, 1, 1) * sb.reshape(1, 1, 1)
            else:
                s = sa[:, :, None] * sb[:, None, :]
            return (d.astype(np.float32) * s).astype(self.acc_dtype)


def _amax(x: np.ndarray, axis):
    """Largest |finite value| along axis (0 where there is none)."""
    ax = np.abs(x)
    ax = np.where(np.isfinite(ax), ax, 0.0)
    return ax.max() if axis is None else ax.max(axis=axis)


def _mx_exponent(amax: np.ndarray, emax: int) -> np.ndarray:
    """OCP MX shared exponent floor(log2(amax)) - emax, clamped to E8M0's [-127, 127];
    0 for an all-zero block.  frexp is exact: amax = m * 2**ex, m in [0.5, 1)."""
    _, ex = np.frexp(amax)
    x = ex.astype(np.int64) - 1 - emax
    return np.where(amax > 0, np.clip(x, -127, 127), 0)
