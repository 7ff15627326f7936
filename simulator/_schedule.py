"""The schedule of one GEMM on one PE array: folds, timing, registers and liveness.

This module owns every piece of fold arithmetic: how an (m x k) @ (k x n) GEMM is
cut into folds on an R x C array, how long a fold runs, which PE handles which item
at which cycle, when each register latches a value that is read later (its live
cycles), which output leaves which column when, and how a :class:`simulator.Fault`
becomes the kernels' events.  The arrays (:mod:`simulator._array`), their golden
re-runs (:mod:`simulator._golden`), the fault-site population
(:mod:`simulator._sites`), the slow reference stepper and :mod:`protection` all read
it; nothing else computes folds.

Cycle counts per fold (R x C array, (M x K) @ (K x N) GEMM; SCALE-Sim's formulas at
pipeline depth 1; every fold uses the full array's skew even when it is partly idle):

* weight-stationary scalar FMA, pipeline depth d: ceil(K/R) * ceil(N/C) folds of
  ``2R + C + M - 2 + (d - 1)`` cycles: R to preload weights, M inputs skewed in over
  R + C - 2 more cycles, the multiplier's d - 1 extra stages once.
* output-stationary scalar FMA: ceil(M/R) * ceil(N/C) folds of
  ``2R + C + K - 2 + (d - 1)``: K operands skewed in over R + C - 2 more cycles,
  then R cycles to drain the results down the columns.
* weight-stationary tensor core, k products per step in P passes (rows hold
  consecutive steps): ceil(ceil(K/k)/R) * ceil(N/C) folds of
  ``R + M + C - 2 + (R - 1)*S + 3P + 1`` where 3P + 1 is the unit's depth (operands,
  products, then align/sum/round per pass: see :mod:`simulator._pe`) and the
  partial sum moves one row every S cycles: S = 3P when C is fused into pass 0's
  alignment (c_mode "fused"), S = 1 when it is added after (c_mode "after").
  One pass (hopper fp16): ``R + M + C - 2 + 3(R - 1) + 4``; hopper FP8 (two
  passes, C after): ``R + M + C - 2 + (R - 1) + 7``.

In one fold, weight-stationary: PE (r, c) handles item (row of A) m at its *base
cycle* ``R + r*S + c + m``; output-stationary: item (K position) k at ``r + c + k``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _array_kernels as AK
from ._pe import Register, reg_code

__all__ = ["Schedule"]

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True, eq=False)
class Schedule:
    """How one GEMM runs on one array configuration (frozen; build with
    ``array.schedule(m, k, n, input_format=..., accumulator=...)``).

    Attributes:
        dataflow: ``"ws"`` or ``"os"``.
        rows, cols: the PE grid (R x C).
        m, k, n: the GEMM's shape, (m x k) @ (k x n).
        registers: the PE's :class:`Register` values, datapath order.
        step: products per PE step (1 for a scalar FMA, the rule's k for a DPU).
        passes: passes per step (P; 1 for a scalar FMA).
        row_interval: cycles between the psum of one PE row and the row below (S).
        depth: cycles from a PE's operand register to its result (scalar FMA: the
            pipeline depth d; DPU: 3P + 1).
        folds: number of folds (weight-stationary: N-tile-major, K-folds inner;
            output-stationary: M-tile-major).
        fold_rows, fold_cols: per fold, the PE rows and columns that hold data
            (tuples of int, length ``folds``).
        fold_length: cycles of one fold (all folds are equally long).
        cycles: ``folds * fold_length``: the run; a fault's cycle is in [0, cycles).
        items: items streamed through a fold: m (weight-stationary) or k (output-stationary).
        compute_length: output-stationary: cycles before the drain (k + R + C + d - 3);
            weight-stationary: ``fold_length``.
        input_format, acc_format: names of the input and accumulator formats.
    """

    dataflow: str
    rows: int
    cols: int
    m: int
    k: int
    n: int
    registers: tuple
    step: int
    passes: int
    row_interval: int
    depth: int
    folds: int
    fold_rows: tuple
    fold_cols: tuple
    fold_length: int
    cycles: int
    items: int
    compute_length: int
    input_format: str = ""
    acc_format: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @staticmethod
    def build(dataflow, rows, cols, m, k, n, registers, *, step=1, passes=1, row_interval=1, depth=1,
              input_format="", acc_format="") -> "Schedule":
        """The schedule of an (m x k) @ (k x n) GEMM (the arrays call this; see the module)."""
        R, C = rows, cols
        nnt = -(-n // C)
        if dataflow == "ws":
            units = -(-k // step)  # PE rows' worth of K: steps (k products) per row
            nkf = -(-units // R)
            nfolds = nnt * nkf
            f = np.arange(nfolds)
            Ru = np.minimum(R, units - (f % nkf) * R)
            Cu = np.minimum(C, n - (f // nkf) * C)
            fold_len = R + m + C - 2 + (R - 1) * row_interval + depth
            compute_len, items = fold_len, m
        else:
            nmt = -(-m // R)
            nfolds = nmt * nnt
            f = np.arange(nfolds)
            Ru = np.minimum(R, m - (f // nnt) * R)
            Cu = np.minimum(C, n - (f % nnt) * C)
            compute_len = k + R + C + depth - 3
            fold_len, items = compute_len + R, k
        if items == 0:
            nfolds, Ru, Cu = 0, Ru[:0], Cu[:0]
        return Schedule(dataflow, R, C, m, k, n, tuple(registers), step, passes, row_interval, depth, nfolds,
                        tuple(int(x) for x in Ru), tuple(int(x) for x in Cu), fold_len, nfolds * fold_len,
                        items, compute_len, input_format, acc_format)

    # ---- registers ----------------------------------------------------------------
    @property
    def register_names(self) -> tuple:
        """The registers' names, datapath order."""
        return tuple(r.name for r in self.registers)

    def register(self, name: str) -> Register:
        """The :class:`Register` called ``name`` (ValueError naming the valid ones)."""
        regs = self._cache.get("regs")
        if regs is None:
            regs = self._cache.setdefault("regs", {r.name: r for r in self.registers})
        if name not in regs:
            raise ValueError(f"register must be one of {sorted(regs)}, not {name!r}")
        return regs[name]

    @property
    def accumulator(self) -> str:
        """Name of the partial-sum register (role ``"psum"``): ``"psum"`` or ``"acc"``."""
        return next(r.name for r in self.registers if r.role == "psum")

    # ---- folds ---------------------------------------------------------------------
    @property
    def n_tiles(self) -> int:
        """Output column tiles: ceil(n / cols)."""
        return -(-self.n // self.cols)

    @property
    def k_folds(self) -> int:
        """Folds per output tile: weight-stationary, the K-folds of an N-tile
        (ceil(ceil(k / step) / rows)); output-stationary, 1."""
        return self.folds // max(1, self.n_tiles) if self.dataflow == "ws" else 1

    def is_final(self, fold: int) -> bool:
        """Whether ``fold`` is the last of its output tile (its outputs are D's)."""
        return self.dataflow != "ws" or fold % self.k_folds == self.k_folds - 1

    def fold_block(self, fold: int) -> tuple:
        """((i0, i1), (n0, n1), (k0, k1)): rows of A and D (weight-stationary: all),
        columns of B and D, and the K range that fold ``fold`` covers."""
        R, C, M, Kd, N = self.rows, self.cols, self.m, self.k, self.n
        if self.dataflow == "ws":
            nt, kf = divmod(fold, self.k_folds)
            k0 = kf * R * self.step
            return (0, M), (nt * C, min(N, nt * C + C)), (k0, min(Kd, k0 + R * self.step))
        mt, nt = divmod(fold, self.n_tiles)
        return (mt * R, min(M, mt * R + R)), (nt * C, min(N, nt * C + C)), (0, Kd)

    def output_tile(self, i: int, j: int) -> tuple:
        """((r0, r1), (c0, c1)): the block of D a re-run of output (i, j)'s tile
        recomputes: a weight-stationary N-tile (all rows, its K-folds), an
        output-stationary fold."""
        t = j // self.cols
        cols = (t * self.cols, min(self.n, t * self.cols + self.cols))
        if self.dataflow == "ws":
            return ((0, self.m), cols)
        mt = i // self.rows
        return ((mt * self.rows, min(self.m, mt * self.rows + self.rows)), cols)

    def fold_classes(self) -> tuple:
        """((rows used, cols used, final, folds), ...): the folds grouped by the PE
        rows and columns they use and :meth:`is_final`, in order of first fold;
        folds: int64 array, ascending."""
        if "classes" not in self._cache:
            types = {}
            for f in range(self.folds):
                types.setdefault((self.fold_rows[f], self.fold_cols[f], self.is_final(f)), []).append(f)
            self._cache["classes"] = tuple((ru, cu, fin, np.array(v, np.int64)) for (ru, cu, fin), v in types.items())
        return self._cache["classes"]

    def weight_pes(self) -> tuple:
        """Weight-stationary: where B's elements sit, ``(rows (k,), cols (n,))`` int64:
        B[kk, nn] is held by PE (rows[kk], cols[nn]) in its fold (PE row r of a K-fold
        holds K positions [r*step, r*step + step) of the fold's K range, column c
        the fold's N position c): rows = (kk // step) % R, cols = nn % C.  What a
        permanent fault in PE (r, c) meets, in every fold."""
        if self.dataflow != "ws":
            raise ValueError(f"weight_pes needs a weight-stationary schedule, not dataflow {self.dataflow!r}")
        return (np.arange(self.k, dtype=np.int64) // self.step) % self.rows, np.arange(self.n, dtype=np.int64) % self.cols

    def output_pes(self) -> tuple:
        """Output-stationary: where D's elements are accumulated, ``(rows (m,), cols (n,))``
        int64: D[i, j] in PE (i % R, j % C)."""
        if self.dataflow != "os":
            raise ValueError(f"output_pes needs an output-stationary schedule, not dataflow {self.dataflow!r}")
        return np.arange(self.m, dtype=np.int64) % self.rows, np.arange(self.n, dtype=np.int64) % self.cols

    def base_cycle(self, r: int, c: int) -> int:
        """Base cycle (the cycle it multiplies) of item 0 at PE (r, c), fold-relative."""
        return (self.rows + r * self.row_interval + c) if self.dataflow == "ws" else (r + c)

    # ---- liveness ------------------------------------------------------------------
    def fold_live(self, register: str, r: int, c: int, rows_used: int, cols_used: int, delay: int = 0) -> tuple:
        """Live cycle ranges ((t0, t1), ...), fold-relative and half-open, of the
        elements of ``register`` at PE (r, c) whose latch is ``delay`` cycles late, in
        a fold using ``rows_used`` x ``cols_used`` PEs: the cycles at whose end the
        register latches a value that is read later and reaches the output."""
        reg = self.register(register)
        if c >= cols_used:
            return ()
        if self.dataflow != "ws":
            return self._scan_live(reg, r, c, rows_used, cols_used, delay)
        items = self.items
        if reg.stationary:
            if r >= rows_used:
                return ()
            out = []
            p0 = max(r, self.rows + r - rows_used)  # preload cycles carrying a weight for an active row
            hi = self.base_cycle(r, c) + delay + items - 1  # after preload: while an item still reads it
            if p0 <= self.rows - 1:
                out.append((p0, self.rows))
            if hi > self.rows:
                if out:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((self.rows, hi))
            return tuple(out)
        if reg.role == "psum" or r < rows_used:  # psum: pass-through rows carry it too
            first = self.base_cycle(r, c) + reg.latch + delay
            return ((first, first + items),)
        return ()

    def _scan_live(self, reg, r, c, Ru, Cu, dly):
        key = ("live", reg.name, r, c, Ru, Cu, dly)
        if key not in self._cache:
            ts = []
            for t in range(self.fold_length):
                for _, rr, c0, c1, i0, i1, _ in _fold_events(self, reg, (r, c), t, t, dly):
                    if (rr < Ru or (self.dataflow == "ws" and reg.role == "psum")) and c0 < Cu and i0 < i1:
                        ts.append(t)
                        break
            rng = []
            for t in ts:
                if rng and rng[-1][1] == t:
                    rng[-1] = (rng[-1][0], t + 1)
                else:
                    rng.append((t, t + 1))
            self._cache[key] = tuple(rng)
        return self._cache[key]

    def live_ranges(self, register: str, pe: tuple, delay: int | None = None) -> list:
        """Global live cycle ranges [(t0, t1), ...] of ``register`` of PE ``pe`` (the
        elements with latch delay ``delay``, or all elements when None), ascending."""
        reg = self.register(register)
        r, c = pe
        dlys = reg.delays() if delay is None else (delay,)
        out = []
        for f in range(self.folds):
            s = f * self.fold_length
            Ru, Cu = self.fold_rows[f], self.fold_cols[f]
            out.extend(sorted({(s + lo, s + hi) for d in dlys for lo, hi in self.fold_live(register, r, c, Ru, Cu, d)}))
        return out

    def _check_pe(self, pe) -> tuple:
        if not isinstance(pe, tuple) or len(pe) != 2 or not all(
                isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in pe):
            raise TypeError(f"pe must be a (row, col) tuple of ints, not {pe!r}")
        if not (0 <= pe[0] < self.rows and 0 <= pe[1] < self.cols):
            raise ValueError(f"pe must be in [0, {self.rows}) x [0, {self.cols}), not {pe}")
        return int(pe[0]), int(pe[1])

    def live_cycles(self, register: str, pe: tuple) -> np.ndarray:
        """Cycles (int64, ascending) at whose end ``register`` of PE ``pe`` latches a value
        that is read later and reaches the output (a flip at any other cycle is
        masked): the closed-form :meth:`fold_live` ranges of each class of folds
        (:meth:`fold_classes`), placed at every fold of the class with numpy, in time
        proportional to the answer."""
        reg = self.register(register)
        r, c = self._check_pe(pe)
        parts = []
        for ru, cu, _, folds in self.fold_classes():
            rel = sorted({t for d in reg.delays() for lo, hi in self.fold_live(register, r, c, ru, cu, d)
                          for t in range(lo, hi)})
            if rel:
                parts.append((folds[:, None] * self.fold_length + np.array(rel, np.int64)[None, :]).ravel())
        if not parts:
            return np.zeros(0, np.int64)
        out = np.concatenate(parts)
        out.sort()
        return out

    def _scan_live_cycles(self, register: str, pe: tuple) -> np.ndarray:
        """:meth:`live_cycles` found by scanning the fault-event rules cycle by cycle,
        independently of :meth:`fold_live`'s closed forms (the slow reference the tests
        hold the closed forms to)."""
        reg = self.register(register)
        r, c = pe
        out = []
        for f in range(self.folds):
            start, Ru, Cu = f * self.fold_length, self.fold_rows[f], self.fold_cols[f]
            if c >= Cu:
                continue
            for t in range(self.fold_length):
                for key, rr, c0, c1, i0, i1, stage in (e for dly in reg.delays()
                                                       for e in _fold_events(self, reg, pe, t, t, dly)):
                    active = rr < Ru or (self.dataflow == "ws" and reg.role == "psum")
                    if active and c0 < Cu and i0 < i1:
                        out.append(start + t)
                        break
        return np.array(sorted(set(out)), np.int64)

    def is_live(self, register: str, pe: tuple, cycle: int, elem: int = 0) -> bool:
        """Whether element ``elem`` of ``register`` of PE ``pe`` holds, after ``cycle``,
        a value that is read later."""
        f, t = divmod(cycle, self.fold_length)
        if f >= self.folds:
            return False
        dly = self.register(register).delay(elem)
        return any(lo <= t < hi for lo, hi in
                   self.fold_live(register, pe[0], pe[1], self.fold_rows[f], self.fold_cols[f], dly))

    # ---- outputs leaving the array --------------------------------------------------
    def output_cycles(self, col: int, rows_used: int, cols_used: int) -> tuple:
        """Fold-relative cycle ranges ((t0, t1), ...) in which column ``col``'s results
        leave the array (below the bottom row), in a fold using rows_used x cols_used PEs."""
        if col >= cols_used:
            return ()
        if self.dataflow == "ws":
            return self.fold_live(self.accumulator, self.rows - 1, col, rows_used, cols_used, 0)
        return ((self.compute_length + self.rows - rows_used, self.compute_length + self.rows),)

    def output_at(self, col: int, cycle: int) -> tuple | None:
        """The output (i, j) of D whose partial sum leaves column ``col`` at global
        ``cycle`` (weight-stationary: in every K-fold, see :meth:`is_final`), or None."""
        f, t = divmod(cycle, self.fold_length)
        if f >= self.folds:
            return None
        R, C = self.rows, self.cols
        if col >= self.fold_cols[f]:
            return None
        if self.dataflow == "ws":
            nt = f // self.k_folds
            m = t - (self.base_cycle(R - 1, col) + self.register(self.accumulator).latch)
            return (m, nt * C + col) if 0 <= m < self.m else None
        j = t - self.compute_length
        mt, nt = divmod(f, self.n_tiles)
        if 0 <= j < R and R - 1 - j < self.fold_rows[f]:
            return (mt * R + R - 1 - j, nt * C + col)
        return None


# ---- faults -> kernel events (private to simulator) -----------------------------------
def fault_events(s: Schedule, faults) -> tuple:
    """Event table (E, 9) int64, masks (E, 3) uint64 and fold offsets (folds + 1,)
    of register faults (already checked against the array) for the kernels.

    Two flips of the same bit of the same register at the same cycle would cancel
    each other: listing one twice is refused (ValueError), not run as "no fault"."""
    seen = {}
    for f in faults:
        if f.kind != "flip":
            continue
        key = (tuple(f.pe), f.register, f.cycle)
        bits = set(range(f.bit, f.bit + f.nbits))
        if bits & seen.get(key, set()):
            raise ValueError(f"faults must not flip the same bit twice (they would cancel), not "
                             f"{sorted(bits & seen[key])} of {f.register!r} at PE {tuple(f.pe)}, cycle {f.cycle} again")
        seen[key] = seen.get(key, set()) | bits
    rows = []
    for q, f in enumerate(faults):
        reg = s.register(f.register)
        g0 = f.cycle
        g1 = s.cycles - 1 if f.duration is None else min(f.cycle + f.duration - 1, s.cycles - 1)
        masks = {}  # element delay -> {element: bit mask}
        for b in range(f.bit, f.bit + f.nbits):
            j = b // reg.elem_width
            dm = masks.setdefault(reg.delay(j), {})
            dm[j] = dm.get(j, 0) | (1 << (b % reg.elem_width))
        for fold in range(g0 // s.fold_length, g1 // s.fold_length + 1):
            start = fold * s.fold_length
            t0, t1 = max(g0 - start, 0), min(g1 - start, s.fold_length - 1)
            for dly, dm in masks.items():
                for key, r, c0, c1, i0, i1, stage in _fold_events(s, reg, f.pe, t0, t1, dly):
                    for elem, m in dm.items():
                        m = np.uint64(m)
                        if f.kind == "flip":
                            ops = (_ONES, np.uint64(0), m)
                        elif f.kind == "stuck0":
                            ops = (~m, np.uint64(0), np.uint64(0))
                        else:
                            ops = (_ONES, m, np.uint64(0))
                        rows.append(((fold, start + key, f.cycle, q),
                                     (fold, reg_code(reg), r, c0, c1, i0, i1, elem, stage), ops))
    rows.sort(key=lambda x: x[0])
    ev = np.array([x[1] for x in rows], np.int64).reshape(-1, AK.EV_COLS)
    em = np.array([x[2] for x in rows], np.uint64).reshape(-1, 3)
    ptr = np.searchsorted(ev[:, 0], np.arange(s.folds + 1)).astype(np.int64)
    return ev, em, ptr


def _fold_events(s: Schedule, reg: Register, pe, t0, t1, dly=0):
    """(key cycle, row, c0, c1, i0, i1, stage) for a fault acting in fold cycles [t0, t1]
    on the elements of ``reg`` whose latch (read, if stationary) is ``dly`` cycles late."""
    r, c = pe
    R, C, items = s.rows, s.cols, s.items
    out = []
    if reg.stationary:  # weight-stationary w
        for j in range(max(t0, r), min(t1, R - 1) + 1):  # preload: weight for row d passes
            out.append((j, R - 1 - j + r, c, c + 1, 0, items, 0))
        if t1 >= R:
            tt = max(t0, R)
            out.append((tt, r, c, c + 1, max(0, tt + 1 - s.base_cycle(r, c) - dly), items, 0))
        return out
    if s.dataflow == "os" and reg.role == "psum":
        d = s.depth
        kp0, kp1 = t0 - (d - 1) - r - c, min(t1, s.compute_length - 1) - (d - 1) - r - c
        if t0 < s.compute_length:
            if kp0 < 0:
                out.append((t0, r, c, c + 1, 0, 1, 0))
            lo, hi = max(kp0, 0), min(kp1, items - 1)
            if lo <= hi:
                out.append((lo + (d - 1) + r + c, r, c, c + 1, lo, hi + 1, 1))
            if kp1 >= items:
                out.append((max(t0, items + (d - 1) + r + c), r, c, c + 1, items - 1, items, 1))
        for t in range(max(t0, s.compute_length), t1 + 1):  # drain: shifted down the column
            origin = r - (t - s.compute_length) - 1
            if origin >= 0:
                out.append((t, origin, c, c + 1, items - 1, items, 1))
        return out
    first = s.base_cycle(r, c) + reg.latch + dly  # cycle item 0 latches here
    lo, hi = max(t0 - first, 0), min(t1 - first, items - 1)
    if lo > hi:
        return out
    # events of one chain (a value passed PE to PE) are ordered by where they act
    # along it; on one PE the fault that started later acts last (see fault_events)
    key = first
    if reg.flow == "right":
        out.append((key, r, c, C, lo, hi + 1, reg.stage))
    elif reg.flow == "down":
        for rr in range(r, R):
            out.append((key, rr, c, c + 1, lo, hi + 1, reg.stage))
    else:
        out.append((key, r, c, c + 1, lo, hi + 1, reg.stage))
    return out
