"""Fault specifications as frozen, validated values.

A :class:`Fault` names one register of one PE, a bit (or a burst of adjacent bits),
a cycle and what happens there.  Its fields are checked here on their own; whether
the PE, register, bit and cycle exist is checked against the array that runs it
(``SystolicArray.run`` / ``TensorCoreArray.run``), which knows the valid ranges.

Timing convention (cycles count from 0 at the start of the run): a fault at cycle
``t`` acts on the value the register latches at the end of cycle ``t``, i.e. what
its readers see from cycle ``t + 1`` until the register is written again.

* ``"flip"``: the bits are inverted once (a single-event upset).  A moving register
  is rewritten the next cycle, so the upset lasts one use; a stationary register
  (``w``) keeps the flipped value until it is reloaded.
* ``"stuck0"`` / ``"stuck1"``: the bits read as 0 / 1 for ``duration`` cycles
  (``None``: from ``cycle`` to the end of the run).  A stationary register keeps the
  forced value until it is reloaded.

``nbits > 1`` makes any kind a burst over bits ``bit .. bit + nbits - 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fault", "OutputFault", "FAULT_KINDS", "apply_output_faults", "flip_bits"]

#: Kinds of register fault.
FAULT_KINDS = ("flip", "stuck0", "stuck1")


def _int(name, v, lo=0):
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, not {v}")
    return int(v)


@dataclass(frozen=True)
class Fault:
    """A fault in one register of one PE.

    Attributes:
        pe: (row, col) of the PE (dot-product unit) in the array.
        register: register name, one of the array's ``registers`` (e.g. ``"psum"``).
        bit: lowest bit hit, counted from bit 0 (LSB) of the register's encoding;
            vector registers (a tensor core's ``a``, ``prod``, ...) number element
            ``j``'s bits from ``j * element_width``.
        cycle: first cycle the fault acts (see the module's timing convention).
        kind: ``"flip"``, ``"stuck0"`` or ``"stuck1"``.
        nbits: adjacent bits hit (a multi-bit burst when > 1).
        duration: cycles the fault acts, or None (stuck-at: to the end of the run).
            A flip acts for one cycle.
    """

    pe: tuple
    register: str
    bit: int
    cycle: int = 0
    kind: str = "flip"
    nbits: int = 1
    duration: int | None = 1

    def __post_init__(self):
        if not isinstance(self.pe, tuple) or len(self.pe) != 2:
            raise TypeError(f"pe must be a (row, col) tuple, not {self.pe!r}")
        object.__setattr__(self, "pe", (_int("pe row", self.pe[0]), _int("pe col", self.pe[1])))
        if not isinstance(self.register, str):
            raise TypeError(f"register must be a str, not {type(self.register).__name__}")
        object.__setattr__(self, "bit", _int("bit", self.bit))
        object.__setattr__(self, "cycle", _int("cycle", self.cycle))
        object.__setattr__(self, "nbits", _int("nbits", self.nbits, 1))
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, not {self.kind!r}")
        if self.duration is None:
            if self.kind == "flip":
                raise ValueError("duration must be 1 for a flip (a transient upset), not None")
        else:
            object.__setattr__(self, "duration", _int("duration", self.duration, 1))
            if self.kind == "flip" and self.duration != 1:
                raise ValueError(f"duration must be 1 for a flip (a transient upset), not {self.duration}")

    @property
    def last_cycle(self) -> int | None:
        """Last cycle the fault acts (None: to the end of the run)."""
        return None if self.duration is None else self.cycle + self.duration - 1


@dataclass(frozen=True)
class OutputFault:
    """A result-level fault: flip ``nbits`` bits of one element of D after the GEMM.

    The founding paper's (MPGemmFI) method, kept so register-level and result-level
    injection can be compared on the same GEMM.

    Attributes:
        index: (i, j) of the output element.
        bit: lowest bit flipped in the element's encoding (D's dtype: 32 or 16 bits).
        nbits: adjacent bits flipped.
    """

    index: tuple
    bit: int
    nbits: int = 1

    def __post_init__(self):
        if not isinstance(self.index, tuple) or len(self.index) != 2:
            raise TypeError(f"index must be an (i, j) tuple, not {self.index!r}")
        object.__setattr__(self, "index", (_int("index i", self.index[0]), _int("index j", self.index[1])))
        object.__setattr__(self, "bit", _int("bit", self.bit))
        object.__setattr__(self, "nbits", _int("nbits", self.nbits, 1))


def _flip_in_place(x: np.ndarray, index, bit: int, nbits: int) -> None:
    u = x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))
    u[index] ^= u.dtype.type(((1 << nbits) - 1) << bit)


def flip_bits(x: np.ndarray, index, bit: int, nbits: int = 1) -> np.ndarray:
    """A copy of ``x`` (any floating dtype: float64/32/16, ml_dtypes' bfloat16 and FP8)
    with bits ``bit .. bit + nbits - 1`` of element ``x[index]``'s encoding inverted
    (bit 0: the LSB).  The one output-bit flip of the project.

    Raises ValueError for bits outside the element's width.
    """
    x = np.asarray(x)
    width = x.dtype.itemsize * 8
    if bit < 0 or nbits < 1 or bit + nbits > width:
        raise ValueError(f"bit..bit+nbits-1 must be in [0, {width - 1}] for {x.dtype}, not {bit}..{bit + nbits - 1}")
    out = x.copy()
    _flip_in_place(out, index, bit, nbits)
    return out


def apply_output_faults(d: np.ndarray, faults) -> np.ndarray:
    """A copy of D (float32 or float16, (M, N)) with each OutputFault's bits flipped.

    Raises ValueError naming the valid range for an index or bit outside D.
    """
    if not isinstance(d, np.ndarray) or d.dtype not in (np.float32, np.float16) or d.ndim != 2:
        raise TypeError(f"d must be a 2-D float32 or float16 array, not {getattr(d, 'dtype', type(d).__name__)}")
    out = d.copy()
    width = out.dtype.itemsize * 8
    for f in faults:
        if not isinstance(f, OutputFault):
            raise TypeError(f"faults must be OutputFault values here, not {type(f).__name__}")
        i, j = f.index
        if i >= d.shape[0] or j >= d.shape[1]:
            raise ValueError(f"index must be in [0, {d.shape[0]}) x [0, {d.shape[1]}), not {f.index}")
        if f.bit + f.nbits > width:
            raise ValueError(f"bit..bit+nbits-1 must be in [0, {width - 1}] for {d.dtype} output, "
                             f"not {f.bit}..{f.bit + f.nbits - 1}")
        _flip_in_place(out, (i, j), f.bit, f.nbits)
    return out
