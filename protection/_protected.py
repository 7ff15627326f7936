"""A PE array with protection schemes attached: cost, fault sites, runs under faults.

Why a wrapper (``ProtectedArray(SystolicArray(...), (SecDed(),))``) and not a field of
the array configurations: the arrays stay the bit-exact datapath and know nothing of
checkers (``simulator`` does not import ``protection``); a scheme only adds stages
around the datapath's registers, so it composes with any configuration, and the same
golden run serves the unprotected and every protected variant of an array in a
campaign.

How a run is judged.  Faults on the datapath's registers run on the array's own
kernels (only the fold and rows they touch: :class:`simulator.ArrayGoldenRun`); a register
code (parity, SEC-DED, residue) decides from the error pattern it sees on a live word
what reaches the datapath (nothing, after a correction) and whether it alarms; DMR
compares the two copies' fold outputs; output checks (range, ABFT) look at D; then
each alarming scheme's action is applied, and the outcome is:

* ``"masked"``: no alarm, D equals the fault-free D (bit for bit);
* ``"corrected"``: a scheme detected the fault and its action restored D exactly;
* ``"detected"``: an alarm was raised but D was not restored (flag-only, clamp/zero,
  or a permanent fault that a re-run meets again);
* ``"sdc"``: no alarm, D differs (silent data corruption).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from simulator import (ArrayGoldenRun, Fault, FaultSites, OutputFault, SiteGroup, SystolicArray, TensorCoreArray,
                       get_format)

from ._schemes import EDGE, SCHEMES, Scheme

__all__ = ["ProtectedArray", "ProtectedResult", "Cost", "ProtectedSites", "Evaluator", "Judgement",
           "PROTECTION_OUTCOMES"]

#: Outcome classes of one protected run under faults (distinct from a model
#: campaign's outcomes, ``faults.OUTCOMES``).
PROTECTION_OUTCOMES = ("masked", "corrected", "detected", "sdc")


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
class ProtectedResult:
    """A protected run.

    Attributes:
        output: D after the schemes' actions, (M, N), the accumulator's dtype.
        cycles: cycles including the schemes' stages and any re-computation.
        outcome: one of :data:`PROTECTION_OUTCOMES` (against the fault-free D).
        alarms: names of the schemes that detected something.
        corrected: whether a code corrected a word in a register.
        recompute_cycles: cycles spent re-computing after detections.
    """

    output: np.ndarray
    cycles: int
    outcome: str
    alarms: tuple
    corrected: bool
    recompute_cycles: int


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


class Judgement:
    """The state of one evaluation, handed to each scheme's hooks (:class:`Scheme`).

    Attributes:
        evaluator: the :class:`Evaluator` (golden run, formats, per-scheme scratch).
        golden, schedule, fmt, acc: the golden run, its schedule, input and
            accumulator formats.
        injection: the :class:`simulator.Injection` of the datapath faults that got
            through the codes; output: its D (before any scheme acted).
        changed_block: ((i0, i1), (n0, n1)) of D the faults may have changed, or None
            (several folds, no datapath fault, or output faults).
        base_faults: the datapath faults run (after the codes); dup_faults: faults in
            a DMR copy, named by the register they copy.
        edge: scheme index -> what its :meth:`Scheme.edge_fault` collected.
        permanent: whether a fault lasts to the end of the run (a re-run meets it again).
        alarms: indices of the schemes that alarmed; acted: whether a scheme changed D;
        recompute_cycles: cycles spent re-computing.
    """

    def __init__(self, evaluator, injection, base_faults, dup_faults, permanent):
        self.evaluator, self.golden = evaluator, evaluator.golden
        self.schedule, self.fmt, self.acc = evaluator.schedule, evaluator.fmt, evaluator.acc
        self.injection, self.output = injection, injection.output
        self.changed_block = (injection.rows, injection.cols) if injection.rows is not None else None
        self.base_faults, self.dup_faults, self.permanent = base_faults, dup_faults, permanent
        self.edge = {}
        self.alarms = set()
        self.acted = False
        self.recompute_cycles = 0
        self._final = injection.output
        self._tiles = set()  # output tiles to re-run: (rows, cols)

    def alarm(self, q: int) -> None:
        """Scheme ``q`` detected something."""
        self.alarms.add(q)

    def writable(self) -> np.ndarray:
        """D as the schemes' actions leave it, writable (copied on first use)."""
        if self._final is self.output:
            self._final = self.output.copy()
        return self._final

    def recompute_tile(self, i: int, j: int) -> None:
        """Re-run the output tile holding D[i, j] (:meth:`simulator.Schedule.output_tile`)."""
        self._tiles.add(self.schedule.output_tile(i, j))

    def recompute_changed(self) -> None:
        """Re-run the tile the faults changed (all tiles when that is not known)."""
        if self.changed_block is not None:
            self.recompute_tile(self.injection.rows[0], self.injection.cols[0])
        else:
            for j in range(0, self.golden.shape[2], self.schedule.cols):
                self.recompute_tile(0, j)

    def finish(self, tile_cycles: int) -> np.ndarray:
        """Apply the re-runs (``tile_cycles`` each) and return the final D."""
        g = self.golden
        for (r0, r1), (c0, c1) in self._tiles:
            final = self.writable()
            if not self.permanent:
                final[r0:r1, c0:c1] = g.output[r0:r1, c0:c1]
            self.recompute_cycles += tile_cycles
            self.acted = True
        return self._final


class Evaluator:
    """Judges fault sets on one GEMM: see :class:`ProtectedArray` and the module.

    Attributes:
        golden: the :class:`simulator.ArrayGoldenRun`; schedule: its schedule;
        fmt, acc: input and accumulator formats;
        false_alarms: names of the schemes that alarm on the fault-free run.
    """

    def __init__(self, parray, golden):
        self.golden = golden
        self.schedule = golden.schedule
        self.fmt, self.acc = golden.fmt, golden.acc_fmt
        self.L = _Layout(parray, golden.schedule, golden.fmt, golden.acc_fmt)
        self.out_bits = golden.output.view(golden.acc_fmt.uint_dtype)
        self._scratch = {}
        self.false_alarms = tuple(s.name for s in parray.schemes if s.golden_alarm(self))

    def scratch(self, scheme) -> dict:
        """A dict a scheme may cache golden-run precomputations in."""
        return self._scratch.setdefault(id(scheme), {})

    def evaluate(self, faults) -> ProtectedResult:
        L, g = self.L, self.golden
        schemes = L.schemes
        base, dup, edge, out_faults = [], [], [], []
        words = {}
        flag_alarms, corrected, permanent = set(), False, False
        for f in faults:
            if isinstance(f, OutputFault):
                out_faults.append(f)
                continue
            L.check_fault(f)
            name = f.register
            permanent |= f.duration is None
            if name in L.code_of or name in L.check_of:
                if f.kind != "flip":
                    raise ValueError(f"kind must be 'flip' for a register under a code ({name!r}): a stuck-at "
                                     f"bit's effect depends on the register's value, not {f.kind!r}")
                rname = name if name in L.code_of else L.check_of[name][1]
                ew = L.base[name].elem_width if name in L.code_of else L.sites[name][1].elem_width
                for bit in range(f.bit, f.bit + f.nbits):
                    key = (f.pe, rname, f.cycle, bit // ew)
                    e = words.setdefault(key, [0, 0])
                    e[0 if name in L.code_of else 1] ^= 1 << (bit % ew)
            elif name in L.base:
                base.append(f)
            elif name in L.dup_of:
                dup.append(replace(f, register=L.dup_of[name]))
            elif name in L.flags:
                if f.kind != "stuck0":  # a sticky flag that is set raises the alarm
                    flag_alarms.add(L.flags[name])
            else:
                edge.append(f)
        for (pe, rname, cycle, elem), (ed, ec) in words.items():
            if not self.schedule.is_live(rname, pe, cycle, elem):
                continue  # overwritten before anyone reads (or checks) it
            q = L.code_of[rname]
            reg = L.base[rname]
            left, det, corr = schemes[q].judge(ed, ec, reg, L.fmt, L.acc)
            if det:
                flag_alarms.add(q)
            corrected |= corr
            ew = reg.elem_width
            base += [Fault(pe=pe, register=rname, bit=elem * ew + b, cycle=cycle)
                     for b in range(ew) if (left >> b) & 1]
        j = Judgement(self, g.inject(base + out_faults), base, dup, permanent)
        j.alarms |= flag_alarms
        for f in edge:
            q, site = L.sites[f.register]
            ij = L.edge_element(f.pe[1], f.cycle, site.live == "final")
            if ij is None or (site.width == 1 and f.kind == "stuck0"):
                continue  # not live, or a 1-bit flag held at "no alarm"
            schemes[q].edge_fault(q, j, f.register, ij, tuple(range(f.bit, f.bit + f.nbits)))
        for q, s in enumerate(schemes):
            s.check(q, j)
        for q in sorted(j.alarms):
            schemes[q].on_alarm(q, j)
        final = j.finish(L.recompute_cycles())
        same = np.array_equal(final.view(self.out_bits.dtype), self.out_bits)
        if j.alarms or corrected:
            outcome = "corrected" if same and (corrected or j.acted) else "detected"
        else:
            outcome = "masked" if same else "sdc"
        return ProtectedResult(final, L.cycles + j.recompute_cycles, outcome,
                               tuple(schemes[q].name for q in sorted(j.alarms)), corrected, j.recompute_cycles)


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
