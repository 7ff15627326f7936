"""Judging fault sets against a golden run: the evaluator and the state schemes act on.

How a run is judged.  Faults on the datapath's registers run on the array's own
kernels (only the fold and rows they touch: :class:`simulator.ArrayGoldenRun`); a
register code (parity, SEC-DED, residue) decides from the error pattern it sees on a
live word what reaches the datapath (nothing, after a correction) and whether it
alarms; then each scheme's own hooks (:class:`protection.Scheme`) see the result:
edge-register faults, its checker and action, its action on an alarm.  The outcome is
one of :data:`PROTECTION_OUTCOMES`:

* ``"masked"``: no alarm, no correction, D equals the fault-free D (bit for bit);
* ``"corrected"``: a code corrected a word or a scheme acted, and D equals the
  fault-free D exactly;
* ``"detected"``: an alarm reached the system and D was not silently accepted
  (flag-only, clamp/zero, or a permanent fault that a re-run meets again);
* ``"sdc"``: D differs and the system accepted it: no alarm, or a miscorrection (a code
  "corrected" the word into a wrong one, or a re-run of a transient fault still
  differs). Miscorrections are also flagged (``ProtectedResult.miscorrected``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from simulator import Fault, OutputFault

from ._layout import _Layout

__all__ = ["Evaluator", "Judgement", "ProtectedResult", "PROTECTION_OUTCOMES"]

#: Outcome classes of one protected run under faults (distinct from a model
#: campaign's outcomes, ``faults.OUTCOMES``).
PROTECTION_OUTCOMES = ("masked", "corrected", "detected", "sdc")



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
        miscorrected: D differs from the fault-free D although a code "corrected" a
            word or a re-computation ran (counted apart for study; its outcome is
            ``"sdc"`` unless an alarm still reached the system).
    """

    output: np.ndarray
    cycles: int
    outcome: str
    alarms: tuple
    corrected: bool
    recompute_cycles: int
    miscorrected: bool = False



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
        # a re-run of a transient fault should restore D: if D still differs, the
        # system accepted a wrong result (a permanent fault meets the re-run's check again)
        rerun_failed = j.recompute_cycles > 0 and not permanent and not same
        if same:
            outcome = ("corrected" if corrected or j.acted else "detected") if (j.alarms or corrected) else "masked"
        else:
            outcome = "detected" if j.alarms and not rerun_failed else "sdc"
        return ProtectedResult(final, L.cycles + j.recompute_cycles, outcome,
                               tuple(schemes[q].name for q in sorted(j.alarms)), corrected, j.recompute_cycles,
                               not same and (corrected or rerun_failed))
