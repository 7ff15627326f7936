"""Mitigations for permanent faults: what a chip with a known fault map does about it.

Transient-fault schemes (:class:`protection.Scheme`) add check bits and act on an
alarm; a permanent fault is instead found once (a test at power-on gives the
:class:`simulator.FaultMap`) and the chip is reconfigured around it.  Each mitigation
here is a frozen value implementing :class:`Mitigation`: ``run`` (D of one GEMM on
the faulty chip with the mitigation, and its outcome) and ``cost`` (cycles and
register bits against the fault-free array).

* :class:`Unmitigated`: the chip as it is (the baseline).
* :class:`Bypass` (fault-aware pruning, FAP; Zhang et al., VTS 2018): a faulty PE is
  switched out and passes its operands and partial sums through unchanged, so the
  weights the mapping places on it count as zero; zero cycles, one bypass flag per PE.
* :class:`Spares`: ``n`` spare PE columns; a faulty column is switched out (it
  passes its operands on) and its work moves to a spare; cost: the spares' register
  bits and, for the folds that use a spare, the extra skew to reach it.

Outcomes (:data:`protection.PROTECTION_OUTCOMES`, the same rule as every scheme):
``"masked"`` when the mitigation had nothing to act on in this GEMM (no faulty PE
holds its data) and D equals the fault-free D; ``"corrected"`` when it acted and D
equals the fault-free D bit for bit; ``"detected"`` when it acted and D differs (the
chip knows it is degraded); ``"sdc"`` when D differs and nothing acted (unmitigated).
A result that differs from the fault-free one is never ``"corrected"``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from simulator import FORMATS, FaultMap, SystolicArray, TensorCoreArray, chip_gemm, get_format, matmul

__all__ = ["Mitigation", "Unmitigated", "Bypass", "Spares", "MitigatedResult", "MitigationCost", "MITIGATIONS"]


@dataclass(frozen=True)
class MitigatedResult:
    """One GEMM on a faulty chip with a mitigation.

    Attributes:
        output: D, (M, N), the accumulator's dtype.
        cycles: cycles of the run, the mitigation's included.
        outcome: one of :data:`protection.PROTECTION_OUTCOMES` against the fault-free D.
        acted: whether the mitigation had to act (a faulty PE holds this GEMM's data).
    """

    output: np.ndarray
    cycles: int
    outcome: str
    acted: bool


@dataclass(frozen=True)
class MitigationCost:
    """What a mitigation costs on one GEMM shape and one fault map.

    Attributes:
        base_cycles, cycles: of the fault-free array and with the mitigation (cycles);
        added_cycles: cycles - base_cycles.
        base_bits: register bits of the array (rows * cols * PE register bits);
        added_bits: the bits the mitigation adds (spare PEs' registers, flags).
    """

    base_cycles: int
    cycles: int
    added_cycles: int
    base_bits: int
    added_bits: int

    @property
    def cycles_ratio(self) -> float:
        return self.cycles / self.base_cycles if self.base_cycles else 1.0

    @property
    def bits_ratio(self) -> float:
        return (self.base_bits + self.added_bits) / self.base_bits


def _check(array, fault_map):
    if not isinstance(array, (SystolicArray, TensorCoreArray)):
        raise TypeError(f"array must be a SystolicArray or TensorCoreArray, not {type(array).__name__}")
    if not isinstance(fault_map, FaultMap):
        raise TypeError(f"fault_map must be a FaultMap, not {type(fault_map).__name__}")


def _pe_bits(array, input_format, accumulator) -> int:
    return sum(w for _, w in array.registers(input_format=input_format, accumulator=accumulator))


def _formats(a, input_format, c):
    """(input format, accumulator format) names of a GEMM's operands."""
    dt = np.asarray(a).dtype
    fmt = input_format or next((n for n in FORMATS if n not in ("fp32", "tf32") and get_format(n).dtype == dt), None)
    if fmt is None:
        raise TypeError(f"a must have an input format's dtype (or give input_format), not {dt}")
    acc = "fp32" if c is None or np.asarray(c).dtype == np.float32 else "fp16"
    return fmt, acc


def _prologue(array, a, b, c, fault_map, input_format):
    """Check a mitigated run's arguments; returns (M, N, the GEMM's schedule)."""
    _check(array, fault_map)
    M, K = np.shape(a)
    N = np.shape(b)[1]
    fmt, acc = _formats(a, input_format, c)
    return M, N, array.schedule(M, K, N, input_format=fmt, accumulator=acc)


def _outcome(out, gold, acted) -> str:
    same = np.array_equal(out.view(np.uint8), gold.view(np.uint8)) or (
        np.array_equal(out, gold, equal_nan=True) and np.array_equal(np.signbit(out), np.signbit(gold)))
    if same:
        return "corrected" if acted else "masked"
    return "detected" if acted else "sdc"


class Mitigation(ABC):
    """What every permanent-fault mitigation implements (a new one is one subclass)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name (reports)."""

    @abstractmethod
    def run(self, array, a, b, c=None, *, fault_map: FaultMap, input_format: str | None = None) -> MitigatedResult:
        """D = A @ B + C on ``array`` with the permanent faults ``fault_map`` and this
        mitigation (a (M, K), b (K, N), c (M, N) or None as :meth:`SystolicArray.run`)."""

    @abstractmethod
    def cost(self, array, m: int, k: int, n: int, fault_map: FaultMap, input_format: str = "fp16",
             accumulator: str = "fp32") -> MitigationCost:
        """Cycles and register bits of an (m x k) @ (k x n) GEMM against the fault-free array."""

    @staticmethod
    def golden(array, a, b, c=None, input_format=None) -> np.ndarray:
        """The fault-free D (the array's fast path, bit-exact to the array)."""
        return matmul(a, b, c, profile=array.profile, input_format=input_format)


def _base_cost(array, m, k, n, fmt, acc):
    s = array.schedule(m, k, n, input_format=fmt, accumulator=acc)
    return s, array.rows * array.cols * _pe_bits(array, fmt, acc)


@dataclass(frozen=True)
class Unmitigated(Mitigation):
    """The faulty chip as it is: every fault acts (outcome ``"masked"`` or ``"sdc"``)."""

    @property
    def name(self) -> str:
        return "none"

    def run(self, array, a, b, c=None, *, fault_map, input_format=None) -> MitigatedResult:
        M, N, s = _prologue(array, a, b, c, fault_map, input_format)
        gold = self.golden(array, a, b, c, input_format)
        out = chip_gemm(array, a, b, c, fault_map=fault_map, input_format=input_format, golden=gold)
        return MitigatedResult(out, s.cycles, _outcome(out, gold, False), False)

    def cost(self, array, m, k, n, fault_map, input_format="fp16", accumulator="fp32") -> MitigationCost:
        _check(array, fault_map)
        s, bits = _base_cost(array, m, k, n, input_format, accumulator)
        return MitigationCost(s.cycles, s.cycles, 0, bits, 0)


@dataclass(frozen=True)
class Bypass(Mitigation):
    """Fault-aware pruning (FAP): every faulty PE is bypassed.

    A bypassed PE passes the operand from its left and the partial sum from above
    through unchanged, so weight-stationary, the weights the mapping places on it
    (:meth:`simulator.FaultMap.weight_mask`) count as zero; output-stationary, the
    output it would accumulate stays C.  The rest of the array is fault-free, so D
    is the fast path with those weights zeroed (bit-exact with a pass-through except
    where A holds inf/NaN, whose product with the zeroed weight is NaN, or a partial
    sum of -0 meets a +0 product).  Zero cycles; one bypass flag bit per PE.
    """

    @property
    def name(self) -> str:
        return "bypass"

    def run(self, array, a, b, c=None, *, fault_map, input_format=None) -> MitigatedResult:
        M, N, s = _prologue(array, a, b, c, fault_map, input_format)
        bad = fault_map.pe_mask(array.rows, array.cols)
        cz = np.zeros((M, N), np.float32) if c is None else np.asarray(c)
        if s.dataflow == "ws":
            rows, cols = s.weight_pes()
            mask = bad[rows[:, None], cols[None, :]]
            bz = np.array(b, copy=True)
            bz[mask] = 0
            out = matmul(a, bz, cz, profile=array.profile, input_format=input_format)
        else:
            rows, cols = s.output_pes()
            mask = bad[rows[:, None], cols[None, :]]
            out = matmul(a, b, cz, profile=array.profile, input_format=input_format)
            out[mask] = cz.astype(out.dtype)[mask]
        gold = self.golden(array, a, b, c, input_format)
        acted = bool(mask.any())
        return MitigatedResult(out, s.cycles, _outcome(out, gold, acted), acted)

    def cost(self, array, m, k, n, fault_map, input_format="fp16", accumulator="fp32") -> MitigationCost:
        _check(array, fault_map)
        s, bits = _base_cost(array, m, k, n, input_format, accumulator)
        return MitigationCost(s.cycles, s.cycles, 0, bits, array.rows * array.cols)


@dataclass(frozen=True)
class Spares(Mitigation):
    """``n`` spare PE columns to the right of the array.

    The faulty columns (:attr:`simulator.FaultMap.columns`), lowest first, are
    switched out (they pass their operands on) and their work moves to spare 0, 1, ...
    up to ``n``; a fold that uses a column moved to spare j runs j + 1 cycles longer
    (the operands' skew reaches the spare j + 1 columns past the array's last).
    Faulty columns beyond the spares stay in place with their faults (the spares
    take their operands from their own feed, so those faults do not reach them).
    Cost: the spares' registers (n * rows * PE register bits) plus one switch-out
    flag per column, and the remapped folds' extra cycles.

    Attributes:
        n: spare columns (>= 1).
    """

    n: int = 1

    def __post_init__(self):
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"n must be an int >= 1, not {self.n!r}")

    @property
    def name(self) -> str:
        return f"spares{self.n}"

    def remap(self, fault_map: FaultMap) -> dict:
        """{faulty column: spare index} for the columns moved to a spare."""
        return {c: j for j, c in enumerate(fault_map.columns[:self.n])}

    def _cycles(self, s, remap) -> int:
        extra = 0
        for f in range(s.folds):
            used = [j + 1 for col, j in remap.items() if col < s.fold_cols[f]]
            extra += max(used, default=0)
        return s.cycles + extra

    def run(self, array, a, b, c=None, *, fault_map, input_format=None) -> MitigatedResult:
        M, N, s = _prologue(array, a, b, c, fault_map, input_format)
        remap = self.remap(fault_map)
        left = fault_map.select(lambda f: f.pe[1] not in remap)
        gold = self.golden(array, a, b, c, input_format)
        out = chip_gemm(array, a, b, c, fault_map=left, input_format=input_format, golden=gold)
        moved = np.isin(np.arange(N) % array.cols, list(remap))
        out[:, moved] = gold[:, moved]
        acted = bool(moved.any()) or bool(len(left) and min(f.pe[1] for f in left) < min(N, array.cols))
        return MitigatedResult(out, self._cycles(s, remap), _outcome(out, gold, acted), acted)

    def cost(self, array, m, k, n, fault_map, input_format="fp16", accumulator="fp32") -> MitigationCost:
        _check(array, fault_map)
        s, bits = _base_cost(array, m, k, n, input_format, accumulator)
        cyc = self._cycles(s, self.remap(fault_map))
        return MitigationCost(s.cycles, cyc, cyc - s.cycles, bits,
                              self.n * array.rows * _pe_bits(array, input_format, accumulator) + array.cols)


#: The permanent-fault mitigations.
MITIGATIONS = (Unmitigated, Bypass, Spares)
