"""The simulated accelerator as one frozen config, and the GEMM it runs.

:class:`Accelerator` says which datapath profile computes a GEMM, which format its
inputs are rounded to and which format it accumulates in.  :meth:`Accelerator.gemm`
runs a batch of 2-D GEMMs through :func:`simulator.matmul` (the bit-exact fast path).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from simulator import DatapathProfile, get_format, get_profile, matmul

__all__ = ["Accelerator", "INPUT_FORMATS", "ACCUMULATORS"]

#: Input formats a matrix unit can take (catalogue names; a rounded operand has the
#: format's numpy dtype, :attr:`simulator.Format.dtype`, float32 for tf32).
INPUT_FORMATS = ("fp16", "bf16", "tf32", "e4m3", "e5m2")
#: Accumulator formats (catalogue names).
ACCUMULATORS = ("fp32", "fp16")


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
        bits = fmt.encode(x.astype(np.float64), "rne", saturate=self.saturates)
        return bits.view(self.input_dtype)

    def gemm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """A batch of GEMMs on the matrix unit: D[i] = A[i] @ B[i] (C = +0).

        Args:
            a: (G, M, K) rounded operands (dtype :attr:`input_dtype`).
            b: (G, K, N) rounded operands, same dtype.
        Returns:
            D, (G, M, N) of :attr:`acc_dtype`; each D[i] equals
            ``simulator.matmul(a[i], b[i], zeros(acc_dtype), profile=..., split_k=...)``
            bit for bit.
        """
        G, M, K = a.shape
        N = b.shape[2]
        out = np.empty((G, M, N), self.acc_dtype)
        fmt = "tf32" if self.input_format == "tf32" else None
        if K % self.split_k:
            raise ValueError(f"K must be a multiple of split_k={self.split_k}, not {K} "
                             f"(a GEMM of shape ({M}, {K}) @ ({K}, {N}))")
        split = self.split_k
        for g in range(G):
            c = np.zeros((M, N), self.acc_dtype)
            out[g] = matmul(np.ascontiguousarray(a[g]), np.ascontiguousarray(b[g]), c, profile=self.profile,
                            input_format=fmt, split_k=split)
        return out
