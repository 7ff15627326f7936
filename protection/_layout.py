"""What a protected configuration adds on one GEMM shape: its fault sites and checkers.

:class:`_Layout` joins an array's :class:`simulator.Schedule` with the schemes' sites
(which register each code covers, which sites are check bits, copies, flags or edge
registers) and their cost in cycles and bits; :class:`ProtectedSites` is the
fault-site population of the protected configuration (the array's
:class:`simulator.FaultSites` extended by the schemes' sites).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from simulator import Fault, FaultSites, SiteGroup

from ._schemes import EDGE

__all__ = ["ProtectedSites"]


class _Layout:
    """The fault sites and checkers of one protected configuration on one GEMM shape
    (``plan``: the array's :class:`simulator.Schedule`)."""

    def __init__(self, parray, plan, fmt, acc):
        self.parray, self.plan, self.fmt, self.acc = parray, plan, fmt, acc
        self.array = parray.array
        self.schemes = parray.schemes
        self.base = {r.name: r for r in plan.registers}
        self.sites = {}  # added register name -> (scheme index, Site)
        self.code_of, self.check_of, self.dup_of, self.flags = {}, {}, {}, {}
        for q, s in enumerate(self.schemes):
            encoded, dups = s.encoded(plan), s.duplicated(plan)
            for r in encoded:
                if r in self.code_of:
                    raise ValueError(f"a register must be protected by one code, not {r!r} by "
                                     f"{self.schemes[self.code_of[r]].name} and {s.name}")
                self.code_of[r] = q
            for site in s.sites(plan, fmt, acc):
                if site.name in self.sites or site.name in self.base:
                    raise ValueError(f"schemes must not add the same register twice, not {site.name!r} "
                                     f"(from {s.name} and another scheme)")
                self.sites[site.name] = (q, site)
                if site.live == "all":
                    self.flags[site.name] = q
                elif site.live == "mirror" and site.mirror in encoded:
                    self.check_of[site.name] = (q, site.mirror)
                elif site.live == "mirror" and site.mirror in dups:
                    self.dup_of[site.name] = site.mirror
        self.fold_extra = sum(s.fold_cycles(plan) for s in self.schemes)
        self.fold_len = plan.fold_length + self.fold_extra
        self.cycles = plan.folds * self.fold_len
        self.base_bits = sum(r.width for r in plan.registers) * plan.rows * plan.cols
        self.added_bits = sum(s.added_bits(plan, fmt, acc) for s in self.schemes)

    def width(self, name):
        return self.base[name].width if name in self.base else self.sites[name][1].width

    def edge_element(self, col, cycle, final_only):
        """The output (i, j) leaving column ``col`` at ``cycle``, or None."""
        p = self.plan
        if final_only and not p.is_final(cycle // p.fold_length):
            return None
        return p.output_at(col, cycle)

    def recompute_cycles(self):
        """Cycles to re-run one tile: a weight-stationary N-tile's K-folds, one
        output-stationary fold."""
        return self.plan.k_folds * self.fold_len

    def check_fault(self, f):
        if not isinstance(f, Fault):
            raise TypeError(f"faults must be Fault or OutputFault values, not {type(f).__name__}")
        R, C = self.plan.rows, self.plan.cols
        name = f.register
        if name not in self.base and name not in self.sites:
            raise ValueError(f"register must be one of {sorted(self.base) + sorted(self.sites)}, not {name!r}")
        edge = name in self.sites and self.sites[name][1].scope == EDGE
        r, c = f.pe
        if edge and (r != R or c >= C):
            raise ValueError(f"pe must be ({R}, col) with col in [0, {C}) for edge register {name!r}, not {f.pe}")
        if not edge and (r >= R or c >= C):
            raise ValueError(f"pe must be in [0, {R}) x [0, {C}), not {f.pe}")
        w = self.width(name)
        if f.bit + f.nbits > w:
            raise ValueError(f"bit..bit+nbits-1 must be in [0, {w - 1}] for register {name!r}, "
                             f"not {f.bit}..{f.bit + f.nbits - 1}")
        if f.cycle >= self.plan.cycles:
            raise ValueError(f"cycle must be in [0, {self.plan.cycles}) for this run, not {f.cycle}")

    def site_groups(self) -> tuple:
        """The schemes' fault sites as :class:`simulator.SiteGroup` values, in the
        order the population draws them: check bits and copies (live when the
        register they shadow is), then sticky flags (every cycle) and edge registers
        (as the column's outputs leave the array)."""
        p = self.plan
        out = []
        for name, (_, s) in self.sites.items():
            if s.live == "mirror":
                out.extend(SiteGroup.of_register(p, s.mirror, name=name, element_bits=s.elem_width))
        for name, (_, s) in self.sites.items():
            groups = []
            if s.live == "all":
                groups = [SiteGroup.over_folds(p, name, (r, c), (0,), 1, lambda Ru, Cu, fin: ((0, p.fold_length),))
                          for r in range(p.rows) for c in range(p.cols)]
            elif s.scope == EDGE:
                groups = [SiteGroup.over_folds(p, name, (p.rows, c), (0,), s.width,
                                               lambda Ru, Cu, fin, c=c, fo=s.live == "final":
                                               p.output_cycles(c, Ru, Cu) if (fin or not fo) else ())
                          for c in range(p.cols)]
            out.extend(g for g in groups if g is not None)
        return tuple(out)



@dataclass(frozen=True, eq=False)
class ProtectedSites:
    """The fault space of a protected configuration on one GEMM shape: every register
    (datapath and schemes) x location x bit x the cycles it is live.  One population
    with the array's (:class:`simulator.FaultSites`, extended by the schemes'
    :class:`simulator.SiteGroup` values): its :meth:`draw` is the array's.

    Attributes:
        registers: ((name, width in bits, scope), ...): scope "pe" or "edge".
        cycles: cycles of the run (the unprotected schedule faults are timed in).
        size: live points (register bits x live cycles, summed over locations): what
            :meth:`sample` draws from uniformly.
        population: the :class:`simulator.FaultSites` drawn from.
    """

    layout: _Layout = field(repr=False)
    registers: tuple = ()
    cycles: int = 0
    size: int = 0
    population: FaultSites = field(default=None, repr=False)

    def __init__(self, layout):
        object.__setattr__(self, "layout", layout)
        regs = tuple((n, r.width, "pe") for n, r in layout.base.items()) + tuple(
            (n, s.width, s.scope) for n, (_, s) in layout.sites.items())
        object.__setattr__(self, "registers", regs)
        object.__setattr__(self, "cycles", int(layout.plan.cycles))
        pop = FaultSites(layout.plan, extra_groups=layout.site_groups())
        object.__setattr__(self, "population", pop)
        object.__setattr__(self, "size", pop.live_size)

    def sample(self, n: int, seed: int = 0) -> tuple:
        """n single-bit transient flips, uniform over registers' bits x locations x live
        cycles; fault i depends only on (seed, i), so a campaign can resume anywhere."""
        return self.population.sample(n, seed, live=True)

    def draw(self, seed: int, i: int) -> Fault:
        """Fault i of the stream ``seed`` (see :meth:`sample`)."""
        return self.population.draw(seed, i)
