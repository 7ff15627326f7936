"""What a run of a PE array returns, and the fault-site population of a configuration.

:class:`ArrayResult` is a run's output and counts.  :class:`FaultSites` is the one
definition of a fault-site population: registers' bits x locations x cycles of one
configuration on one GEMM shape, with the live cycles of each point
(:class:`SiteGroup`, from the :class:`simulator.Schedule`), and the samplers that
draw faults from it (uniform over every point, or over the live points only).
:mod:`protection` extends the same population with the registers its schemes add;
campaigns (:mod:`faults`) draw from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ._fault import Fault
from ._schedule import Schedule

__all__ = ["ArrayResult", "FaultSites", "SiteGroup"]


@dataclass(frozen=True)
class ArrayResult:
    """What a run of a PE array produced.

    Attributes:
        output: D, (M, N), the accumulator's dtype (float32 or float16).
        cycles: cycles the run took (all folds).
        utilization: useful multiply-accumulates / (PEs * products per PE step * cycles).
        macs: useful multiply-accumulates (M * K * N).
        folds: number of folds.
        trace: register name -> uint64 array (cycles, rows, cols, elements) of the bits
            each PE's register held after each cycle (only the registers asked for).
        dead_faults: the register faults given to ``run`` (not a fault map's) that
            landed where nothing reads the register afterwards (a flip on a cycle the
            register is not live, a stuck-at whose cycles miss every live one): they
            cannot change D (``FaultSites.live_cycles`` lists the live cycles).
    """

    output: np.ndarray
    cycles: int
    utilization: float
    macs: int
    folds: int
    trace: dict = field(default_factory=dict)
    dead_faults: tuple = ()


@dataclass(frozen=True, eq=False)
class SiteGroup:
    """Fault points of one register at one location that share their live cycles.

    Attributes:
        register: the register's name (``Fault.register``).
        location: ``Fault.pe``: (row, col) of a PE, or (rows, col) for a register below
            the bottom row (an edge register of :mod:`protection`).
        elements: the element indices it covers (a fault's bit is
            ``element * element_bits + b``).
        element_bits: bits per element.
        live: ((folds, ranges, count), ...): per class of folds, the folds (int64
            array, ascending), the fold-relative live cycle ranges ((t0, t1), ...) and
            their total length ``count`` (cycles).
        size: live points: len(elements) * element_bits * sum(len(folds) * count).
    """

    register: str
    location: tuple
    elements: tuple
    element_bits: int
    live: tuple
    size: int

    @staticmethod
    def over_folds(schedule: Schedule, register: str, location: tuple, elements: tuple, element_bits: int,
                   live_of) -> "SiteGroup | None":
        """The group whose fold-relative live ranges in a fold of class
        (rows used, cols used, final) are ``live_of(rows_used, cols_used, final)``;
        None when it is never live."""
        ft = []
        for Ru, Cu, fin, folds in schedule.fold_classes():
            rr = tuple(live_of(Ru, Cu, fin))
            cnt = sum(hi - lo for lo, hi in rr)
            if cnt:
                ft.append((folds, rr, cnt))
        size = len(elements) * element_bits * sum(len(fo) * c for fo, _, c in ft)
        return SiteGroup(register, tuple(location), tuple(elements), element_bits, tuple(ft), size) if size else None

    @staticmethod
    def of_register(schedule: Schedule, register: str, *, name: str | None = None,
                    element_bits: int | None = None) -> tuple:
        """The groups of a datapath register at every PE (one per PE and element
        latch delay), live when the register is.  ``name`` / ``element_bits``: a
        register that shadows it (check bits, a duplicate) under another name and width."""
        reg = schedule.register(register)
        name = register if name is None else name
        ebits = reg.elem_width if element_bits is None else element_bits
        groups = {}
        for j in range(reg.elems):
            groups.setdefault(reg.delay(j), []).append(j)
        out = []
        for r in range(schedule.rows):
            for c in range(schedule.cols):
                for dly, elems in groups.items():
                    g = SiteGroup.over_folds(schedule, name, (r, c), elems, ebits,
                                             lambda Ru, Cu, fin, r=r, c=c, d=dly:
                                             schedule.fold_live(register, r, c, Ru, Cu, d))
                    if g is not None:
                        out.append(g)
        return tuple(out)


@dataclass(frozen=True, eq=False)
class FaultSites:
    """The fault-site population of one configuration running one GEMM shape.

    Every point is (register, location, bit, cycle).  Two ways to draw from it:

    * :meth:`sample` (``live=False``): uniform over every register bit x PE x cycle
      of the run (``size`` points), most of which are masked by construction;
    * :meth:`draw` / :meth:`sample` (``live=True``): uniform over the *live* points
      (``live_size``): a bit of a register at a cycle at whose end it latches a
      value that is read later (:meth:`Schedule.fold_live`).  Fault i of a stream
      depends only on (seed, i), so a campaign can resume anywhere.

    Build with ``array.fault_sites(m, k, n, input_format, accumulator)``; protection
    adds its registers with ``FaultSites(schedule, extra_groups=...)``.

    Attributes:
        schedule: the :class:`Schedule` the sites live in.
        extra_groups: :class:`SiteGroup` values added after the datapath's
            (registers a wrapper such as :mod:`protection` adds).
        registers: ((name, width in bits, stationary), ...) of every PE (datapath).
        rows, cols: the PE grid.
        cycles: cycles of the run; a fault's cycle is in [0, cycles).
        size: datapath registers' bits * PEs * cycles: what ``sample(live=False)`` draws from.
        groups: the live points, datapath registers' groups then ``extra_groups``.
        live_size: live points (sum of the groups' sizes): what :meth:`draw` draws from.
    """

    schedule: Schedule
    extra_groups: tuple = ()

    @property
    def registers(self) -> tuple:
        return tuple((r.name, r.width, r.stationary) for r in self.schedule.registers)

    @property
    def rows(self) -> int:
        return self.schedule.rows

    @property
    def cols(self) -> int:
        return self.schedule.cols

    @property
    def cycles(self) -> int:
        return self.schedule.cycles

    @property
    def size(self) -> int:
        return sum(r.width for r in self.schedule.registers) * self.rows * self.cols * self.cycles

    @cached_property
    def groups(self) -> tuple:
        out = []
        for reg in self.schedule.registers:
            out.extend(SiteGroup.of_register(self.schedule, reg.name))
        return tuple(out) + tuple(self.extra_groups)

    @cached_property
    def live_size(self) -> int:
        return int(sum(g.size for g in self.groups))

    @cached_property
    def _cum(self) -> np.ndarray:
        return np.cumsum([g.size for g in self.groups])

    def live_cycles(self, register: str, pe: tuple) -> np.ndarray:
        """Cycles (int64, ascending) at whose end the register of that PE latches a value
        that is read later and reaches the output (a flip at any other cycle is masked)."""
        return self.schedule.live_cycles(register, pe)

    def sample(self, n: int, seed: int = 0, *, live: bool = False) -> tuple:
        """n single-bit transient flips (:class:`simulator.Fault`).

        live=False: uniform over the datapath registers' bits x PEs x cycles (one
        generator seeded with ``seed``); live=True: ``draw(seed, i)`` for i < n.
        """
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be an int >= 0, not {n!r}")
        if live:
            return tuple(self.draw(seed, i) for i in range(n))
        rng = np.random.default_rng(seed)
        regs = self.registers
        widths = np.array([w for _, w, _ in regs], np.int64)
        out = []
        for _ in range(n):
            b = int(rng.integers(widths.sum()))
            ri = int(np.searchsorted(np.cumsum(widths), b, side="right"))
            bit = b - int(widths[:ri].sum())
            out.append(Fault(pe=(int(rng.integers(self.rows)), int(rng.integers(self.cols))),
                             register=regs[ri][0], bit=bit, cycle=int(rng.integers(self.cycles))))
        return tuple(out)

    def draw(self, seed: int, i: int) -> Fault:
        """Fault i of the stream ``seed``: a single-bit transient flip uniform over the
        live points (every group's bits x locations x live cycles)."""
        for name, v in (("seed", seed), ("i", i)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, not {v!r}")
        cum = self._cum
        if not len(cum) or cum[-1] == 0:
            raise ValueError("the population must have live points to draw from, not none")
        rng = np.random.default_rng([seed, i])
        u = int(rng.integers(cum[-1]))
        g = self.groups[int(np.searchsorted(cum, u, side="right"))]
        w = np.array([len(folds) * cnt for folds, _, cnt in g.live], np.int64)
        v = int(rng.integers(w.sum()))
        ti = int(np.searchsorted(np.cumsum(w), v, side="right"))
        folds, ranges, cnt = g.live[ti]
        fold = int(folds[int(rng.integers(len(folds)))])
        off = int(rng.integers(cnt))
        for lo, hi in ranges:
            if off < hi - lo:
                t = lo + off
                break
            off -= hi - lo
        bit = int(g.elements[int(rng.integers(len(g.elements)))]) * g.element_bits + int(rng.integers(g.element_bits))
        return Fault(pe=g.location, register=g.register, bit=bit, cycle=fold * self.schedule.fold_length + t)
