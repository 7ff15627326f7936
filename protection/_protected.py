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

from simulator import Fault, OutputFault
from simulator import SystolicArray, TensorCoreArray
from simulator import ArrayGoldenRun
from simulator._formats import get_format

from ._schemes import EDGE, SCHEMES, Abft, Dmr, RangeCheck, _CodeScheme, _acc_register, abft_tolerance

__all__ = ["ProtectedArray", "ProtectedResult", "Cost", "ProtectedSites", "OUTCOMES"]

#: Outcome classes of one run under faults.
OUTCOMES = ("masked", "corrected", "detected", "sdc")


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
        outcome: one of :data:`OUTCOMES` (against the fault-free D).
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
    """The fault sites and checkers of one protected configuration on one GEMM shape."""

    def __init__(self, parray, plan, fmt, acc):
        self.parray, self.plan, self.fmt, self.acc = parray, plan, fmt, acc
        self.array = parray.array
        self.schemes = parray.schemes
        self.base = dict(plan.regs)
        self.sites = {}  # added register name -> (scheme index, Site)
        self.code_of, self.check_of, self.dup_of, self.flags = {}, {}, {}, {}
        self.dmr, self.dmr_cov = None, set()
        for q, s in enumerate(self.schemes):
            for site in s.sites(plan, fmt, acc):
                if site.name in self.sites or site.name in self.base:
                    raise ValueError(f"schemes must not add the same register twice, not {site.name!r} "
                                     f"(from {s.name} and another scheme)")
                self.sites[site.name] = (q, site)
                if site.live == "all":
                    self.flags[site.name] = q
            if isinstance(s, _CodeScheme):
                for r in s.covered(plan):
                    if r in self.code_of:
                        raise ValueError(f"a register must be protected by one code, not {r!r} by "
                                         f"{self.schemes[self.code_of[r]].name} and {s.name}")
                    self.code_of[r] = q
                    self.check_of[f"{r}.{s.suffix}"] = (q, r)
            if isinstance(s, Dmr):
                self.dmr, self.dmr_cov = q, set(s.covered(plan))
                self.dup_of.update({f"dup.{r}": r for r in self.dmr_cov})
        self.acc_reg = _acc_register(plan)
        self.nkf = plan.nfolds // max(1, -(-plan.N // plan.C)) if plan.dataflow == "ws" else 1
        self.fold_extra = sum(s.fold_cycles(plan) for s in self.schemes)
        self.fold_len = plan.fold_len + self.fold_extra
        self.cycles = plan.nfolds * self.fold_len
        self.base_bits = sum(r.width for r in plan.regs.values()) * plan.R * plan.C
        self.added_bits = sum(s.added_bits(plan, fmt, acc) for s in self.schemes)

    def width(self, name):
        return self.base[name].width if name in self.base else self.sites[name][1].width

    def is_final(self, f):
        return self.plan.dataflow != "ws" or f % self.nkf == self.nkf - 1

    def is_live(self, name, pe, cycle, elem):
        """Whether element ``elem`` of base register ``name`` of PE ``pe`` holds, after
        ``cycle``, a value that is read later."""
        p = self.plan
        f, t = divmod(cycle, p.fold_len)
        if f >= p.nfolds:
            return False
        dly = p.regs[name].delay(elem)
        return any(lo <= t < hi for lo, hi in p.fold_live(name, pe[0], pe[1], int(p.Ru[f]), int(p.Cu[f]), dly))

    def edge_ranges(self, col, Ru, Cu, final_only, is_final):
        """Fold-relative cycles at which column ``col``'s outputs leave the array."""
        p = self.plan
        if col >= Cu or (final_only and not is_final):
            return ()
        if p.dataflow == "ws":
            return p.fold_live(self.acc_reg, p.R - 1, col, Ru, Cu, 0)
        return ((p.compute_len + p.R - Ru, p.compute_len + p.R),)

    def edge_element(self, col, cycle, final_only):
        """The output (i, j) leaving column ``col`` at ``cycle``, or None."""
        p = self.plan
        f, t = divmod(cycle, p.fold_len)
        if f >= p.nfolds or (final_only and not self.is_final(f)):
            return None
        Ru, Cu = int(p.Ru[f]), int(p.Cu[f])
        if col >= Cu:
            return None
        if p.dataflow == "ws":
            nt = f // self.nkf
            m = t - (p.base(p.R - 1, col) + p.regs[self.acc_reg].latch)
            return (m, nt * p.C + col) if 0 <= m < p.M else None
        j = t - p.compute_len
        nnt = -(-p.N // p.C)
        mt, nt = divmod(f, nnt)
        if 0 <= j < p.R and p.R - 1 - j < Ru:
            return (mt * p.R + p.R - 1 - j, nt * p.C + col)
        return None

    def recompute_cycles(self):
        """Cycles to re-run one tile: a weight-stationary N-tile's K-folds, one
        output-stationary fold."""
        return self.nkf * self.fold_len

    def check_fault(self, f):
        if not isinstance(f, Fault):
            raise TypeError(f"faults must be Fault or OutputFault values, not {type(f).__name__}")
        R, C = self.plan.R, self.plan.C
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
            if not isinstance(s, SCHEMES):
                raise TypeError(f"schemes must hold protection schemes ({', '.join(c.__name__ for c in SCHEMES)}), "
                                f"not {type(s).__name__}")

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
        fmt, acc = get_format(input_format), get_format(accumulator)
        prof = self.array._profile
        plan = self.array._plan(m, k, n, fmt, prof.rule(fmt.name), acc)
        return _Layout(self, plan, fmt, acc)

    def cycles(self, m: int, k: int, n: int, input_format: str | None = None) -> int:
        """Cycles of an (m x k) @ (k x n) GEMM with the schemes' stages (no re-runs)."""
        fmt = input_format or next(iter(self.array._profile.rules))
        return self._layout(m, k, n, fmt, "fp32").cycles

    def cost(self, m: int, k: int, n: int, input_format: str = "fp16", accumulator: str = "fp32") -> Cost:
        """Cycles, latency and register bits against the unprotected array."""
        L = self._layout(m, k, n, input_format, accumulator)
        p = L.plan
        stages = tuple(f"{s.name}: +{s.fold_cycles(p)} cycles/fold, +{s.added_bits(p, L.fmt, L.acc)} bits, "
                       f"sites {[x.name for x in s.sites(p, L.fmt, L.acc)]}" for s in self.schemes)
        return Cost(p.cycles, L.cycles, L.cycles - p.cycles, L.cycles / p.cycles if p.cycles else 1.0,
                    p.fold_len, L.fold_len, L.base_bits, L.added_bits,
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
            raise TypeError("golden must be a ArrayGoldenRun of this ProtectedArray's array (array.golden(a, b, c))")
        return Evaluator(self, golden)

    def run(self, a, b, c=None, *, faults=(), input_format=None) -> ProtectedResult:
        """D = A @ B + C through the protected array under faults (arguments as
        :meth:`simulator.SystolicArray.run`; faults may name the schemes' registers)."""
        return self.evaluator(self.array.golden(a, b, c, input_format=input_format)).evaluate(faults)


class Evaluator:
    """Judges fault sets on one GEMM: see :class:`ProtectedArray` and the module."""

    def __init__(self, parray, golden):
        self.golden = golden
        self.L = _Layout(parray, golden.plan, golden.fmt, golden.acc_fmt)
        self.out_bits = golden.output.view(golden.acc_fmt.uint_dtype)
        self._abft = None
        self._abft_sums = None
        self.false_alarms = tuple(s.name for s in parray.schemes if self._clean_alarm(s))

    # -- output checks on the golden run (false alarms) and their precomputation ----------
    def _clean_alarm(self, s) -> bool:
        g, L = self.golden, self.L
        if isinstance(s, RangeCheck):
            return bool(s.check_bits(g.output, L.acc).any())
        if isinstance(s, Abft):
            rows, cols = self._abft_alarms(s, g.output, None, ())
            return bool(rows.any() or cols.any())
        return False  # a code or DMR compares a value with itself when nothing flipped

    def _abft_setup(self, s):
        if self._abft is None:
            g, L = self.golden, self.L
            a, b = g.ops.av, g.ops.bv
            cv = g.c.astype(np.float64)
            tau = s.safety * abft_tolerance(g.rule, L.fmt, L.acc, a, b, cv)
            M, _, N = g.shape
            C = L.plan.C
            nnt = -(-N // C)
            with np.errstate(invalid="ignore", over="ignore"):
                bsum = np.stack([b[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1)  # (K, nnt)
                rho = np.stack([cv[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1) + a @ bsum
                kappa = cv.sum(axis=0) + a.sum(axis=0) @ b
                S_abs = np.abs(cv) + np.abs(a) @ np.abs(b)
                tau_row = np.stack([tau[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1)
                tau_row += 2.0 ** -40 * np.stack([S_abs[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1)
                tau_col = tau.sum(axis=0) + 2.0 ** -40 * S_abs.sum(axis=0)
            self._abft = (rho, kappa, tau_row, tau_col, C, nnt)
        return self._abft

    def _abft_alarms(self, s, out, block, edge):
        """Row alarms (M, nnt) and column alarms (N,) of the stage model: binary64 sums in
        the order outputs leave the array (sequential along a row's columns, down a
        column), with edge-register faults ``edge`` ((name, (i, j), bit)) applied.
        ``block`` ((i0, i1), (n0, n1)) limits the re-summing to what changed."""
        rho, kappa, tau_row, tau_col, C, nnt = self._abft_setup(s)
        with np.errstate(invalid="ignore", over="ignore"):
            if self.__dict__.get("_abft_sums") is None or block is None:
                dd = out.astype(np.float64)
                rs = np.stack([np.cumsum(dd[:, t * C:(t + 1) * C], axis=1)[:, -1] for t in range(nnt)], axis=1)
                cs = np.cumsum(dd, axis=0)[-1] if dd.shape[0] else np.zeros(dd.shape[1])
                if block is None and out is self.golden.output:
                    self._abft_sums = (rs, cs)
            else:
                rs, cs = (x.copy() for x in self._abft_sums)
                (i0, i1), (n0, n1) = block
                t = n0 // C
                rs[i0:i1, t] = np.cumsum(out[i0:i1, t * C:(t + 1) * C].astype(np.float64), axis=1)[:, -1]
                cs[n0:n1] = np.cumsum(out[:, n0:n1].astype(np.float64), axis=0)[-1]
            rref, cref = rho.copy(), kappa.copy()
            for name, (i, j), bit in edge:
                t = j // C
                if name == "abft_rsum":
                    v = np.cumsum(out[i, t * C:j + 1].astype(np.float64))[-1]
                    rs[i, t] += _flip64(v, bit) - v
                elif name == "abft_csum":
                    v = np.cumsum(out[:i + 1, j].astype(np.float64))[-1]
                    cs[j] += _flip64(v, bit) - v
                elif name == "abft_rref":
                    rref[i, t] = _flip64(rref[i, t], bit)
                else:
                    cref[j] = _flip64(cref[j], bit)
            rows = ~(np.abs(rs - rref) <= tau_row) & np.isfinite(tau_row)
            cols = ~(np.abs(cs - cref) <= tau_col) & np.isfinite(tau_col)
        return rows, cols

    # -- one fault set ----------------------------------------------------------------
    def evaluate(self, faults) -> ProtectedResult:
        L, g = self.L, self.golden
        schemes = L.schemes
        base, dup, edge, out_faults = [], [], [], []
        words = {}
        alarms, corrected, permanent = set(), False, False
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
                    alarms.add(L.flags[name])
            else:
                edge.append(f)
        for (pe, rname, cycle, elem), (ed, ec) in words.items():
            if not L.is_live(rname, pe, cycle, elem):
                continue  # overwritten before anyone reads (or checks) it
            q = L.code_of[rname]
            reg = L.base[rname]
            left, det, corr = schemes[q].judge(ed, ec, reg, L.fmt, L.acc)
            if det:
                alarms.add(q)
            corrected |= corr
            ew = reg.elem_width
            base += [Fault(pe=pe, register=rname, bit=elem * ew + b, cycle=cycle)
                     for b in range(ew) if (left >> b) & 1]
        inj = g.inject(base + out_faults)
        out = inj.output
        if L.dmr is not None:
            cov = [f for f in base if f.register in L.dmr_cov]
            shared = [f for f in base if f.register not in L.dmr_cov]
            if cov or dup:
                if not shared and not dup:
                    det = inj.fold_changed
                elif not base:
                    det = g.inject(dup).fold_changed
                else:
                    det = not _same_out(out, g.inject(shared + dup).output)
                if det:
                    alarms.add(L.dmr)
        range_extra, abft_edge = {}, []
        for f in edge:
            q, site = L.sites[f.register]
            ij = L.edge_element(f.pe[1], f.cycle, site.live == "final")
            if ij is None:
                continue
            if site.width == 1:
                if f.kind == "stuck0":
                    continue
                if isinstance(schemes[q], RangeCheck):
                    range_extra.setdefault(q, []).append(ij)
                else:
                    alarms.add(q)
            else:
                for bit in range(f.bit, f.bit + f.nbits):
                    abft_edge.append((f.register, ij, bit))
        final = out
        rec_cycles, acted = 0, False
        tiles = set()  # output tiles to re-run: (rows, cols)
        changed_block = (inj.rows, inj.cols) if inj.rows is not None else None
        for q, s in enumerate(schemes):
            if isinstance(s, RangeCheck):
                blk = out if changed_block is None else out[slice(*inj.rows), slice(*inj.cols)]
                flags = s.check_bits(blk, L.acc)
                idx = [tuple(x) for x in np.argwhere(flags)]
                if changed_block is not None:
                    idx = [(i + inj.rows[0], j + inj.cols[0]) for i, j in idx]
                idx += range_extra.get(q, [])
                if idx:
                    alarms.add(q)
                    if s.action == "recompute":
                        tiles.update(self._tile_of(i, j) for i, j in idx)
                    else:
                        final = final.copy() if final is out else final
                        for i, j in idx:
                            v = s.clamp(final[i:i + 1, j:j + 1], L.acc) if s.action == "clamp" else 0.0
                            final[i, j] = v if np.ndim(v) == 0 else v[0, 0]
                        acted = True
            elif isinstance(s, Abft) and (changed_block is not None or abft_edge or inj.fold < 0):
                rows, cols = self._abft_alarms(s, out, changed_block, abft_edge)
                if rows.any() or cols.any():
                    alarms.add(q)
                    if s.action == "flag":
                        continue
                    C = L.plan.C
                    ri, rt = np.nonzero(rows)
                    cj = np.nonzero(cols)[0]
                    if s.action == "correct" and len(ri) == 1 and len(cj) == 1 and cj[0] // C == rt[0]:
                        final = final.copy() if final is out else final
                        i, j = int(ri[0]), int(cj[0])
                        if not permanent:
                            final[i, j] = g.output[i, j]
                        rec_cycles += -(-g.shape[1] // L.plan.k) + (L.plan.P if L.plan.dataflow == "ws" else L.plan.depth)  # one dot product on one PE
                        acted = True
                    else:
                        tiles.update(self._tile_of(int(i), int(t) * C) for i, t in zip(ri, rt))
                        tiles.update(self._tile_of(0, int(j)) for j in cj)
        for q in alarms:
            s = schemes[q]
            if getattr(s, "action", "flag") == "recompute" and not isinstance(s, (RangeCheck, Abft)):
                if changed_block is not None:
                    tiles.add(self._tile_of(inj.rows[0], inj.cols[0]))
                else:
                    tiles.update(self._tile_of(0, j) for j in range(0, g.shape[2], L.plan.C))
        for (r0, r1), (c0, c1) in tiles:
            final = final.copy() if final is out else final
            if not permanent:
                final[r0:r1, c0:c1] = g.output[r0:r1, c0:c1]
            rec_cycles += L.recompute_cycles()
            acted = True
        same = np.array_equal(final.view(self.out_bits.dtype), self.out_bits)
        detected = bool(alarms) or corrected
        if detected:
            outcome = "corrected" if same and (corrected or acted) else "detected"
        else:
            outcome = "masked" if same else "sdc"
        return ProtectedResult(final, L.cycles + rec_cycles, outcome, tuple(schemes[q].name for q in sorted(alarms)),
                               corrected, rec_cycles)

    def _tile_of(self, i, j):
        """The output tile (rows, cols) holding output (i, j): a weight-stationary
        N-tile (all rows), an output-stationary fold."""
        p = self.L.plan
        t = j // p.C
        cols = (t * p.C, min(p.N, t * p.C + p.C))
        if p.dataflow == "ws":
            return ((0, p.M), cols)
        mt = i // p.R
        return ((mt * p.R, min(p.M, mt * p.R + p.R)), cols)


def _flip64(v: float, bit: int) -> float:
    x = np.array([v], np.float64)
    x.view(np.uint64)[0] ^= np.uint64(1) << np.uint64(bit)
    return float(x[0])


def _same_out(x, y):
    return np.array_equal(x.view(np.uint8), y.view(np.uint8))


@dataclass(frozen=True)
class ProtectedSites:
    """The fault space of a protected configuration on one GEMM shape: every register
    (datapath and schemes) x location x bit x the cycles it is live.

    Attributes:
        registers: ((name, width in bits, scope), ...): scope "pe" or "edge".
        cycles: cycles of the run (the unprotected schedule faults are timed in).
        size: live points (register bits x live cycles, summed over locations): what
            :meth:`sample` draws from uniformly.
    """

    layout: _Layout = field(repr=False)
    registers: tuple = ()
    cycles: int = 0
    size: int = 0
    _strata: tuple = field(default=(), repr=False)

    def __init__(self, layout):
        object.__setattr__(self, "layout", layout)
        regs = tuple((n, r.width, "pe") for n, r in layout.base.items()) + tuple(
            (n, s.width, s.scope) for n, (_, s) in layout.sites.items())
        object.__setattr__(self, "registers", regs)
        object.__setattr__(self, "cycles", int(layout.plan.cycles))
        strata = _strata(layout)
        object.__setattr__(self, "_strata", strata)
        object.__setattr__(self, "size", int(sum(s[-1] for s in strata)))

    def sample(self, n: int, seed: int = 0) -> tuple:
        """n single-bit transient flips, uniform over registers' bits x locations x live
        cycles; fault i depends only on (seed, i), so a campaign can resume anywhere."""
        return tuple(self.draw(seed, i) for i in range(n))

    def draw(self, seed: int, i: int) -> Fault:
        """Fault i of the stream ``seed`` (see :meth:`sample`)."""
        rng = np.random.default_rng([seed, i])
        st = self._strata
        cum = self.__dict__.get("_cum")
        if cum is None:
            cum = np.cumsum([s[-1] for s in st])
            object.__setattr__(self, "_cum", cum)
        u = int(rng.integers(cum[-1]))
        name, pe, elems, ebits, types, _ = st[int(np.searchsorted(cum, u, side="right"))]
        w = np.array([len(folds) * cnt for folds, _, cnt in types], np.int64)
        v = int(rng.integers(w.sum()))
        ti = int(np.searchsorted(np.cumsum(w), v, side="right"))
        folds, ranges, cnt = types[ti]
        fold = int(folds[int(rng.integers(len(folds)))])
        off = int(rng.integers(cnt))
        for lo, hi in ranges:
            if off < hi - lo:
                t = lo + off
                break
            off -= hi - lo
        bit = int(elems[int(rng.integers(len(elems)))]) * ebits + int(rng.integers(ebits))
        return Fault(pe=pe, register=name, bit=bit, cycle=fold * self.layout.plan.fold_len + t)


def _strata(L):
    """(name, pe, elements, bits per element, fold types, weight) for every location
    and latch-delay group; fold types: ((folds, fold-relative live ranges, count), ...)."""
    p = L.plan
    types = {}
    for f in range(p.nfolds):
        types.setdefault((int(p.Ru[f]), int(p.Cu[f]), L.is_final(f)), []).append(f)
    types = {k: np.array(v, np.int64) for k, v in types.items()}
    out = []

    def add(name, pe, elems, ebits, rng_of):
        ft = []
        for (Ru, Cu, fin), folds in types.items():
            rr = tuple(rng_of(Ru, Cu, fin))
            cnt = sum(hi - lo for lo, hi in rr)
            if cnt:
                ft.append((folds, rr, cnt))
        wt = len(elems) * ebits * sum(len(fo) * c for fo, _, c in ft)
        if wt:
            out.append((name, pe, tuple(elems), ebits, tuple(ft), wt))

    mirrors = [(n, n, r.elem_width) for n, r in L.base.items()]
    mirrors += [(n, s.mirror, s.elem_width) for n, (_, s) in L.sites.items() if s.live == "mirror"]
    for name, reg_name, ebits in mirrors:
        reg = p.regs[reg_name]
        groups = {}
        for j in range(reg.elems):
            groups.setdefault(reg.delay(j), []).append(j)
        for r in range(p.R):
            for c in range(p.C):
                for dly, elems in groups.items():
                    add(name, (r, c), elems, ebits,
                        lambda Ru, Cu, fin, rn=reg_name, r=r, c=c, d=dly: p.fold_live(rn, r, c, Ru, Cu, d))
    for name, (_, s) in L.sites.items():
        if s.live == "all":
            for r in range(p.R):
                for c in range(p.C):
                    add(name, (r, c), (0,), 1, lambda Ru, Cu, fin: ((0, p.fold_len),))
        elif s.scope == EDGE:
            for c in range(p.C):
                add(name, (p.R, c), (0,), s.width,
                    lambda Ru, Cu, fin, c=c, fo=s.live == "final": L.edge_ranges(c, Ru, Cu, fo, fin))
    return tuple(out)


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
