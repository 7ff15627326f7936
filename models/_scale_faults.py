"""Value-level faults on the scale factors of a scaled GEMM (``Accelerator(scaling=...)``).

A scaled GEMM reads its operands' scale factors (:class:`models.Scales`) besides the
quantised operands; a fault in a stored scale changes how the result is scaled back,
not the quantised operands (those were written before, with the good scale).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._accelerator import Scales
from ._faults import GEMM_FAULTS as _D_FAULTS
from ._faults import _check_int

__all__ = ["ScaleBitFlip", "GEMM_FAULTS"]


@dataclass(frozen=True)
class ScaleBitFlip:
    """Flip one bit of one scale factor of a scaled GEMM.

    Attributes:
        gemm: :attr:`GemmSite.index` of the GEMM (its accelerator's ``scaling`` must
            not be ``"none"``).
        operand: ``"a"`` or ``"b"``: whose scales.
        index: flat (C-order) index into that operand's scale array
            (:class:`models.Scales`: (1,) per tensor, (G, M) / (G, N) per row / column,
            (G, M, nb) / (G, nb, N) per block).
        bit: bit of the stored scale: 0..31 of the binary32 scale (tensor, row), 0..7
            of the E8M0 byte (block).
    """

    gemm: int
    operand: str
    index: int
    bit: int

    def __post_init__(self):
        for n in ("gemm", "index", "bit"):
            _check_int(n, getattr(self, n))
        if not isinstance(self.operand, str):
            raise TypeError(f"operand must be a str, not {type(self.operand).__name__}")
        if self.operand not in ("a", "b"):
            raise ValueError(f"operand must be 'a' or 'b', not {self.operand!r}")

    def apply_scales(self, scales: Scales | None, site) -> Scales:
        """The scales with this bit flipped (a copy)."""
        if scales is None:
            raise ValueError(f"gemm must be a scaled GEMM (Accelerator(scaling=...) not 'none') for a "
                             f"ScaleBitFlip, not GEMM {site.index} ({site.name})")
        x = (scales.a if self.operand == "a" else scales.b).copy()
        if not 0 <= self.index < x.size:
            raise ValueError(f"index must be in [0, {x.size}), not {self.index}")
        width = x.dtype.itemsize * 8
        if not 0 <= self.bit < width:
            raise ValueError(f"bit must be in [0, {width}), not {self.bit}")
        bits = x.view(np.dtype(f"uint{width}")).reshape(-1)
        bits[self.index] ^= np.array(1 << self.bit, bits.dtype)
        a, b = (x, scales.b) if self.operand == "a" else (scales.a, x)
        return Scales(scales.kind, a, b, scales.block)


#: Every fault type the bridge understands: the D faults of :mod:`models._faults`
#: (:class:`OutputBitFlip`, :class:`ReplaceGemmOutput`, :class:`ReplaceTile`) and
#: :class:`ScaleBitFlip`.
GEMM_FAULTS = _D_FAULTS + (ScaleBitFlip,)
