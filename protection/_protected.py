"""A PE array with protection schemes attached: cost, fault sites, runs under faults.

Why a wrapper (``ProtectedArray(SystolicArray(...), (SecDed(),))``) and not a field of
the array configurations: the arrays stay the bit-exact datapath and know nothing of
checkers (``simulator`` does not import ``protection``); a scheme only adds stages
around the datapath's registers, so it composes with any configuration, and the same
golden run serves the unprotected and every protected variant of an array in a
campaign.  Sites and costs: :mod:`protection._layout`; judging faults:
:mod:`protection._evaluate`.
"""
from __future__ import annotations

from dataclasses import dataclass

from simulator import ArrayGoldenRun, SystolicArray, TensorCoreArray, get_format

from ._evaluate import Evaluator, ProtectedResult
from ._layout import ProtectedSites, _Layout
from ._schemes import SCHEMES, Scheme

__all__ = ["ProtectedArray", "Cost"]


@dataclass(frozen=True)
class Cost:
    """What the schemes cost on one GEMM shape.

    Attributes:
        base_cycles, cycles: of the unprotected and the protected array (cycles).
        added_cycles: cycles - base_cycles; cycles_ratio: cycles / base_cycles.
        base_fold, fold: one fold's length (the tile latency), unprotected / protected.
        base_bits: register bits of the unprotected array (rows * cols * PE bits).
        added_bits: check bits and checker registers the schemes add; bits_ratio:
            (base_bits + added_bits) / base_bits.
        stages: one line per scheme: its stages, cycles per fold, bits.
    """

    base_cycles: int
    cycles: int
    added_cycles: int
    cycles_ratio: float
    base_fold: int
    fold: int
    base_bits: int
    added_bits: int
    bits_ratio: float
    stages: tuple



@dataclass(frozen=True)
class ProtectedArray:
    """A SystolicArray or TensorCoreArray with protection schemes attached.

    Attributes:
        array: the configuration.
        schemes: tuple of scheme objects (:class:`Parity`, :class:`SecDed`,
            :class:`Residue`, :class:`Abft`, :class:`RangeCheck`, :class:`Dmr`); ``()``
            is the unprotected array (a campaign's baseline).  One code per register.
    """

    array: SystolicArray | TensorCoreArray
    schemes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.array, (SystolicArray, TensorCoreArray)):
            raise TypeError(f"array must be a SystolicArray or TensorCoreArray, not {type(self.array).__name__}")
        if not isinstance(self.schemes, tuple):
            raise TypeError(f"schemes must be a tuple of protection schemes, not {type(self.schemes).__name__}")
        for s in self.schemes:
            if not isinstance(s, Scheme):
                raise TypeError(f"schemes must hold protection schemes (Scheme values such as "
                                f"{', '.join(c.__name__ for c in SCHEMES)}), not {type(s).__name__}")

    @property
    def rows(self) -> int:
        return self.array.rows

    @property
    def cols(self) -> int:
        return self.array.cols

    @property
    def name(self) -> str:
        """The schemes' names joined by ``+`` ("none" when unprotected)."""
        return "+".join(s.name for s in self.schemes) or "none"

    @property
    def label(self) -> str:
        """As :attr:`name`, each scheme with its registers and action, e.g.
        ``"parity(psum; recompute)"``: unique across the configurations of a study."""
        return "+".join(_scheme_label(s) for s in self.schemes) or "none"

    def _layout(self, m, k, n, input_format, accumulator):
        sched = self.array.schedule(m, k, n, input_format=input_format, accumulator=accumulator)
        return _Layout(self, sched, get_format(sched.input_format), get_format(sched.acc_format))

    def cycles(self, m: int, k: int, n: int, input_format: str | None = None) -> int:
        """Cycles of an (m x k) @ (k x n) GEMM with the schemes' stages (no re-runs)."""
        return self._layout(m, k, n, input_format, "fp32").cycles

    def cost(self, m: int, k: int, n: int, input_format: str = "fp16", accumulator: str = "fp32") -> Cost:
        """Cycles, latency and register bits against the unprotected array."""
        L = self._layout(m, k, n, input_format, accumulator)
        p = L.plan
        stages = tuple(f"{s.name}: +{s.fold_cycles(p)} cycles/fold, +{s.added_bits(p, L.fmt, L.acc)} bits, "
                       f"sites {[x.name for x in s.sites(p, L.fmt, L.acc)]}" for s in self.schemes)
        return Cost(p.cycles, L.cycles, L.cycles - p.cycles, L.cycles / p.cycles if p.cycles else 1.0,
                    p.fold_length, L.fold_len, L.base_bits, L.added_bits,
                    (L.base_bits + L.added_bits) / L.base_bits, stages)

    def registers(self, input_format: str = "fp16", accumulator: str = "fp32") -> tuple:
        """((name, width in bits), ...) per PE, the schemes' PE registers included
        (edge registers below the bottom row: see :meth:`fault_sites`)."""
        L = self._layout(1, 1, 1, input_format, accumulator)
        return tuple((n, r.width) for n, r in L.base.items()) + tuple(
            (n, s.width) for n, (_, s) in L.sites.items() if s.scope == "pe")

    def fault_sites(self, m, k, n, input_format="fp16", accumulator="fp32") -> "ProtectedSites":
        """The fault sites (datapath and schemes) of an (m x k) @ (k x n) GEMM."""
        return ProtectedSites(self._layout(m, k, n, input_format, accumulator))

    def evaluator(self, golden: ArrayGoldenRun) -> "Evaluator":
        """Judge faults against a golden run of the unprotected array (see the module)."""
        if not isinstance(golden, ArrayGoldenRun) or golden.array != self.array:
            raise TypeError("golden must be an ArrayGoldenRun of this ProtectedArray's array (array.golden(a, b, c))")
        return Evaluator(self, golden)

    def run(self, a, b, c=None, *, faults=(), input_format=None) -> ProtectedResult:
        """D = A @ B + C through the protected array under faults (arguments as
        :meth:`simulator.SystolicArray.run`; faults may name the schemes' registers)."""
        return self.evaluator(self.array.golden(a, b, c, input_format=input_format)).evaluate(faults)



def _scheme_label(s) -> str:
    """A scheme's name with the fields that tell two configurations of it apart."""
    parts = []
    regs = getattr(s, "registers", None)
    if regs:
        parts.append(",".join(regs))
    for attr in ("max_exp", "safety"):
        if hasattr(s, attr):
            parts.append(f"{attr}={getattr(s, attr)}")
    if hasattr(s, "action"):
        parts.append(s.action)
    return f"{s.name}({'; '.join(parts)})" if parts else s.name
