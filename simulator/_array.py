"""PE arrays: a systolic array of scalar-FMA PEs and a tensor-core array of dot-product units.

PE (:mod:`simulator._pe`) -> array (this module: grid, dataflow, skew, folds) -> tiled
GEMM (``run``).  Configurations are frozen and validated; ``run`` unpacks them and
the input formats into integers and hands arrays to :mod:`simulator._array_kernels`.

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

``ArrayResult.cycles`` is the sum of the folds' lengths as the kernels' schedule places
every item (the slow reference stepper counts the same cycles by stepping registers
until the last output drains; tests hold both to these formulas).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from ._fault import Fault, OutputFault, apply_output_faults

from . import _array_kernels as AK
from . import _kernels as K
from . import _pe
from ._formats import Format, get_format
from ._matmul import check_gemm_args, fused_layout, operand_arrays, step_params
from ._profiles import DatapathProfile, get_profile

__all__ = ["SystolicArray", "TensorCoreArray", "ArrayResult", "FaultSites", "DATAFLOWS"]

DATAFLOWS = ("ws", "os")
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_CHUNK = 32  # rows of M per thread task in the weight-stationary kernels


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
    """

    output: np.ndarray
    cycles: int
    utilization: float
    macs: int
    folds: int
    trace: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FaultSites:
    """The fault space of one configuration running one GEMM shape.

    Attributes:
        registers: ((name, width in bits, stationary), ...) of every PE.
        rows, cols: the PE grid.
        cycles: cycles of the run; a fault's cycle is in [0, cycles).
        size: registers' bits * PEs * cycles: the points a uniform sampler draws from.
    """

    registers: tuple
    rows: int
    cols: int
    cycles: int
    size: int
    _plan: object = field(repr=False, compare=False, default=None)

    def live_cycles(self, register: str, pe: tuple) -> np.ndarray:
        """Cycles (int64, ascending) at whose end the register of that PE latches a value
        that is read later and reaches the output (a flip at any other cycle is masked)."""
        return self._plan.live_cycles(register, pe)

    def sample(self, n: int, seed: int = 0) -> tuple:
        """n single-bit transient flips drawn uniformly over registers' bits x PEs x cycles."""
        rng = np.random.default_rng(seed)
        widths = np.array([w for _, w, _ in self.registers], np.int64)
        out = []
        for _ in range(n):
            b = int(rng.integers(widths.sum()))
            ri = int(np.searchsorted(np.cumsum(widths), b, side="right"))
            bit = b - int(widths[:ri].sum())
            out.append(Fault(pe=(int(rng.integers(self.rows)), int(rng.integers(self.cols))),
                             register=self.registers[ri][0], bit=bit, cycle=int(rng.integers(self.cycles))))
        return tuple(out)


# ---- the schedule of one run ---------------------------------------------------------
class _Plan:
    """Folds, their lengths and the registers of one configuration on one GEMM shape."""

    def __init__(self, dataflow, R, C, M, Kd, N, regs, k=1, S=1, P=1, depth=1):
        self.dataflow, self.R, self.C, self.M, self.K, self.N = dataflow, R, C, M, Kd, N
        self.regs = {r.name: r for r in regs}
        self.k, self.S, self.P, self.depth = k, S, P, depth
        nnt = -(-N // C)
        if dataflow == "ws":
            units = -(-Kd // k)  # PE rows' worth of K: steps (k products) per row
            nkf = -(-units // R)
            self.nfolds = nnt * nkf
            f = np.arange(self.nfolds)
            self.Ru = np.minimum(R, units - (f % nkf) * R)
            self.Cu = np.minimum(C, N - (f // nkf) * C)
            self.fold_len = R + M + C - 2 + (R - 1) * S + P
            self.items = M
        else:
            nmt = -(-M // R)
            self.nfolds = nmt * nnt
            f = np.arange(self.nfolds)
            self.Ru = np.minimum(R, M - (f // nnt) * R)
            self.Cu = np.minimum(C, N - (f % nnt) * C)
            self.compute_len = Kd + R + C + depth - 3
            self.fold_len = self.compute_len + R
            self.items = Kd
        if self.items == 0:
            self.nfolds = 0
        self.cycles = self.nfolds * self.fold_len

    def base(self, r, c):
        """Base cycle of item 0 at PE (r, c), relative to its fold's start."""
        return (self.R + r * self.S + c) if self.dataflow == "ws" else (r + c)

    # -- fault -> events -----------------------------------------------------------
    def events(self, faults):
        """Event table (E, 9) int64, masks (E, 3) uint64 and fold offsets (folds + 1,)."""
        rows = []
        for q, f in enumerate(faults):
            reg = self.regs[f.register]
            g0 = f.cycle
            g1 = self.cycles - 1 if f.duration is None else min(f.cycle + f.duration - 1, self.cycles - 1)
            masks = {}  # element delay -> {element: bit mask}
            for b in range(f.bit, f.bit + f.nbits):
                j = b // reg.elem_width
                dm = masks.setdefault(reg.delay(j), {})
                dm[j] = dm.get(j, 0) | (1 << (b % reg.elem_width))
            for fold in range(g0 // self.fold_len, g1 // self.fold_len + 1):
                start = fold * self.fold_len
                t0, t1 = max(g0 - start, 0), min(g1 - start, self.fold_len - 1)
                for dly, dm in masks.items():
                    for key, r, c0, c1, i0, i1, stage in self._fold_events(reg, f.pe, t0, t1, dly):
                        for elem, m in dm.items():
                            m = np.uint64(m)
                            if f.kind == "flip":
                                ops = (_ONES, np.uint64(0), m)
                            elif f.kind == "stuck0":
                                ops = (~m, np.uint64(0), np.uint64(0))
                            else:
                                ops = (_ONES, m, np.uint64(0))
                            rows.append(((fold, start + key, f.cycle, q),
                                         (fold, reg.code, r, c0, c1, i0, i1, elem, stage), ops))
        rows.sort(key=lambda x: x[0])
        ev = np.array([x[1] for x in rows], np.int64).reshape(-1, AK.EV_COLS)
        em = np.array([x[2] for x in rows], np.uint64).reshape(-1, 3)
        ptr = np.searchsorted(ev[:, 0], np.arange(self.nfolds + 1)).astype(np.int64)
        return ev, em, ptr

    def _fold_events(self, reg, pe, t0, t1, dly=0):
        """(key cycle, row, c0, c1, i0, i1, stage) for a fault acting in fold cycles [t0, t1]
        on the elements of ``reg`` whose latch (read, if stationary) is ``dly`` cycles late."""
        r, c = pe
        R, C, items = self.R, self.C, self.items
        out = []
        if reg.stationary:  # weight-stationary w
            for j in range(max(t0, r), min(t1, R - 1) + 1):  # preload: weight for row d passes
                out.append((j, R - 1 - j + r, c, c + 1, 0, items, 0))
            if t1 >= R:
                tt = max(t0, R)
                out.append((tt, r, c, c + 1, max(0, tt + 1 - self.base(r, c) - dly), items, 0))
            return out
        if self.dataflow == "os" and reg.code == AK.REG_PSUM:
            d = self.depth
            kp0, kp1 = t0 - (d - 1) - r - c, min(t1, self.compute_len - 1) - (d - 1) - r - c
            if t0 < self.compute_len:
                if kp0 < 0:
                    out.append((t0, r, c, c + 1, 0, 1, 0))
                lo, hi = max(kp0, 0), min(kp1, items - 1)
                if lo <= hi:
                    out.append((lo + (d - 1) + r + c, r, c, c + 1, lo, hi + 1, 1))
                if kp1 >= items:
                    out.append((max(t0, items + (d - 1) + r + c), r, c, c + 1, items - 1, items, 1))
            for t in range(max(t0, self.compute_len), t1 + 1):  # drain: shifted down the column
                origin = r - (t - self.compute_len) - 1
                if origin >= 0:
                    out.append((t, origin, c, c + 1, items - 1, items, 1))
            return out
        first = self.base(r, c) + reg.latch + dly  # cycle item 0 latches here
        lo, hi = max(t0 - first, 0), min(t1 - first, items - 1)
        if lo > hi:
            return out
        # events of one chain (a value passed PE to PE) are ordered by where they act
        # along it; on one PE the fault that started later acts last (see events())
        key = first
        if reg.flows == "right":
            out.append((key, r, c, C, lo, hi + 1, reg.stage))
        elif reg.flows == "down":
            for rr in range(r, R):
                out.append((key, rr, c, c + 1, lo, hi + 1, reg.stage))
        else:
            out.append((key, r, c, c + 1, lo, hi + 1, reg.stage))
        return out

    def fold_live(self, register, r, c, Ru, Cu, dly=0):
        """Live cycle ranges ((t0, t1), ...) relative to a fold's start, of the elements of
        ``register`` at PE (r, c) whose latch is ``dly`` cycles late, in a fold whose
        active rows and columns are Ru and Cu.  Closed forms for weight-stationary folds
        (what :meth:`live_cycles` finds by scanning); a scan for output-stationary."""
        reg = self.regs[register]
        if c >= Cu:
            return ()
        if self.dataflow != "ws":
            return self._scan_live(reg, r, c, Ru, Cu, dly)
        items = self.items
        if reg.stationary:
            if r >= Ru:
                return ()
            out = []
            p0 = max(r, self.R + r - Ru)  # preload cycles carrying a weight for an active row
            hi = self.base(r, c) + dly + items - 1  # after preload: while an item still reads it
            if p0 <= self.R - 1:
                out.append((p0, self.R))
            if hi > self.R:
                if out:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((self.R, hi))
            return tuple(out)
        if reg.code == AK.REG_PSUM or r < Ru:  # psum: pass-through rows carry it too
            first = self.base(r, c) + reg.latch + dly
            return ((first, first + items),)
        return ()

    def _scan_live(self, reg, r, c, Ru, Cu, dly):
        key = (reg.name, r, c, Ru, Cu, dly)
        cache = self.__dict__.setdefault("_live_cache", {})
        if key not in cache:
            ts = []
            for t in range(self.fold_len):
                for _, rr, c0, c1, i0, i1, _ in self._fold_events(reg, (r, c), t, t, dly):
                    if (rr < Ru or (self.dataflow == "ws" and reg.code == AK.REG_PSUM)) and c0 < Cu and i0 < i1:
                        ts.append(t)
                        break
            rng = []
            for t in ts:
                if rng and rng[-1][1] == t:
                    rng[-1] = (rng[-1][0], t + 1)
                else:
                    rng.append((t, t + 1))
            cache[key] = tuple(rng)
        return cache[key]

    def live_ranges(self, register, pe, dly=None):
        """Global live cycle ranges [(t0, t1), ...] of a register of PE ``pe`` (the
        elements with latch delay ``dly``, or all elements when None), ascending."""
        reg = self.regs[register]
        r, c = pe
        dlys = reg.delays() if dly is None else (dly,)
        out = []
        for f in range(self.nfolds):
            s = f * self.fold_len
            Ru, Cu = int(self.Ru[f]), int(self.Cu[f])
            ts = sorted({(s + lo, s + hi) for d in dlys for lo, hi in self.fold_live(register, r, c, Ru, Cu, d)})
            out.extend(ts)
        return out

    def live_cycles(self, register, pe):
        reg = self.regs[register]
        r, c = pe
        out = []
        for f in range(self.nfolds):
            start, Ru, Cu = f * self.fold_len, int(self.Ru[f]), int(self.Cu[f])
            if c >= Cu:
                continue
            for t in range(self.fold_len):
                for key, rr, c0, c1, i0, i1, stage in (e for dly in reg.delays()
                                                       for e in self._fold_events(reg, pe, t, t, dly)):
                    active = rr < Ru or (self.dataflow == "ws" and reg.code == AK.REG_PSUM)
                    if active and c0 < Cu and i0 < i1:
                        out.append(start + t)
                        break
        return np.array(sorted(set(out)), np.int64)


# ---- configurations ------------------------------------------------------------------
def _check_dims(rows, cols):
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if not 1 <= v <= 4096:
            raise ValueError(f"{name} must be in [1, 4096], not {v}")


def _bits64(vals: np.ndarray, fmt: Format, x: np.ndarray) -> np.ndarray:
    """Operand encodings at bit 0 (uint64) for operand values exactly in ``fmt``."""
    if fmt.name == "tf32":
        b = fmt.encode(vals, "rne")
    else:
        b = np.ascontiguousarray(x).view(fmt.uint_dtype)
    return np.ascontiguousarray(b.astype(np.uint64) >> np.uint64(fmt.container_shift))


class _ArrayBase:
    def _prepare(self, a, b, c, input_format):
        return check_gemm_args(self._profile, a, b, c, input_format)

    def _check_faults(self, plan, faults):
        reg_faults, out_faults = [], []
        for f in faults:
            if isinstance(f, OutputFault):
                out_faults.append(f)
                continue
            if not isinstance(f, Fault):
                raise TypeError(f"faults must be Fault or OutputFault values, not {type(f).__name__}")
            r, c = f.pe
            if r >= self.rows or c >= self.cols:
                raise ValueError(f"pe must be in [0, {self.rows}) x [0, {self.cols}), not {f.pe}")
            if f.register not in plan.regs:
                raise ValueError(f"register must be one of {sorted(plan.regs)}, not {f.register!r}")
            w = plan.regs[f.register].width
            if f.bit + f.nbits > w:
                raise ValueError(f"bit..bit+nbits-1 must be in [0, {w - 1}] for register {f.register!r}, "
                                 f"not {f.bit}..{f.bit + f.nbits - 1}")
            if f.cycle >= plan.cycles:
                raise ValueError(f"cycle must be in [0, {plan.cycles}) for this run, not {f.cycle}")
            reg_faults.append(f)
        return reg_faults, out_faults

    def _finish(self, acc_vals, c, acc_fmt, plan, out_faults, macs, per_step, trace):
        with np.errstate(over="ignore"):
            out = acc_vals.astype(c.dtype)
        nan = np.isnan(acc_vals)
        if nan.any():
            bits = out.view(acc_fmt.uint_dtype)
            bits[nan] = self._profile.nan_fp32 if acc_fmt.name == "fp32" else self._profile.nan_fp16
        if out_faults:
            out = apply_output_faults(out, out_faults)
        util = macs / (self.rows * self.cols * per_step * plan.cycles) if plan.cycles else 0.0
        return ArrayResult(out, int(plan.cycles), float(util), int(macs), int(plan.nfolds), trace)

    def fault_sites(self, m: int, k: int, n: int, input_format: str = "fp16", accumulator: str = "fp32") -> FaultSites:
        """The fault sites of this configuration on an (m x k) @ (k x n) GEMM."""
        fmt, acc = get_format(input_format), get_format(accumulator)
        plan = self._plan(m, k, n, fmt, self._profile.rule(fmt.name), acc)
        regs = tuple((r.name, r.width, r.stationary) for r in plan.regs.values())
        size = sum(w for _, w, _ in regs) * self.rows * self.cols * plan.cycles
        return FaultSites(regs, self.rows, self.cols, plan.cycles, size, plan)

    def cycles(self, m: int, k: int, n: int, input_format: str | None = None) -> int:
        """Cycle count of an (m x k) @ (k x n) GEMM by the closed forms of the module
        docstring; ``input_format`` picks the profile's rule (default: its first)."""
        fmt = get_format(input_format or next(iter(self._profile.rules)))
        return self._plan(m, k, n, fmt, self._profile.rule(fmt.name), get_format("fp32")).cycles

    @property
    def _profile(self) -> DatapathProfile:
        return get_profile(self.profile)

    def run(self, a, b, c=None, *, faults=(), input_format=None, trace=()) -> ArrayResult:
        """D = A @ B + C through the array, cycle by cycle, with faults.

        Args:
            a: (M, K), b: (K, N) input arrays (dtypes as :func:`simulator.matmul`).
            c: (M, N) accumulator (float32, or float16 where the profile supports it)
                or None (+0, float32).
            faults: :class:`faults.Fault` (register level) and
                :class:`faults.OutputFault` (applied to D afterwards) values.
            input_format: ``"tf32"`` for float32 inputs.
            trace: register names to record every cycle (runs the slow reference
                stepper: small GEMMs only).
        """
        fmt, rule, acc_fmt, c, (M, Kd, N) = self._prepare(a, b, c, input_format)
        plan = self._plan(M, Kd, N, fmt, rule, acc_fmt)
        reg_faults, out_faults = self._check_faults(plan, faults)
        ops = _Operands.of(a, b, fmt, rule, acc_fmt)
        acc = c.astype(np.float64)
        trace_out = {}
        if trace:
            from ._array_reference import step_run
            acc, trace_out, stepped = step_run(self, plan, ops.abits, ops.bbits, acc, fmt, acc_fmt, ops.sp,
                                               reg_faults, trace)
            assert stepped == plan.cycles
        elif plan.nfolds:
            self._kernel_run(ops, acc, *plan.events(reg_faults))
        return self._finish(acc, c, acc_fmt, plan, out_faults, M * Kd * N, plan.k, trace_out)

    def golden(self, a, b, c=None, *, input_format=None) -> "ArrayGoldenRun":
        """The fault-free run of this GEMM, kept for fast re-runs under single faults."""
        return ArrayGoldenRun(self, a, b, c, input_format)


@dataclass(frozen=True)
class SystolicArray(_ArrayBase):
    """A rows x cols grid of scalar multiply-accumulate PEs.

    Attributes:
        rows, cols: PEs in the grid.
        dataflow: ``"ws"`` (weight-stationary: B's tile preloaded, A's rows skewed in
            from the left, partial sums flow down) or ``"os"`` (output-stationary:
            A from the left, B from the top, each PE accumulates one D element).
        profile: a profile whose every rule is a scalar IEEE FMA (``k=1``,
            ``frac_bits=None``), e.g. ``"systolic_fma"``.
        pipeline_depth: cycles from a PE's multiply to its result (d >= 1; d - 1
            product registers ``prod1..``).
    """

    rows: int
    cols: int
    dataflow: str = "ws"
    profile: str | DatapathProfile = "systolic_fma"
    pipeline_depth: int = 1

    def __post_init__(self):
        _check_dims(self.rows, self.cols)
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {DATAFLOWS}, not {self.dataflow!r}")
        prof = get_profile(self.profile)
        bad = [f for f, r in prof.rules.items() if r.k != 1 or r.frac_bits is not None or r.rounding != "rne"]
        if bad:
            raise ValueError(f"profile must be a scalar-FMA profile (every rule k=1, frac_bits=None, rounding "
                             f"'rne') such as 'systolic_fma', not {prof.name!r} (use TensorCoreArray)")
        if not isinstance(self.pipeline_depth, int) or not 1 <= self.pipeline_depth <= 16:
            raise ValueError(f"pipeline_depth must be an int in [1, 16], not {self.pipeline_depth!r}")

    def registers(self, input_format: str = "fp16", accumulator: str = "fp32") -> tuple:
        """((name, width in bits), ...) of each PE for these formats."""
        return tuple((r.name, r.width) for r in _pe.fma_registers(
            self.dataflow, self.pipeline_depth, get_format(input_format), get_format(accumulator)))

    def _plan(self, M, Kd, N, fmt, rule, acc):
        regs = _pe.fma_registers(self.dataflow, self.pipeline_depth, fmt, acc)
        return _Plan(self.dataflow, self.rows, self.cols, M, Kd, N, regs, 1, 1, self.pipeline_depth,
                     self.pipeline_depth)

    def _kernel_run(self, ops, acc, ev, em, ptr):
        """Run the dataflow's kernel over ``ops`` (a prepared (sub-)GEMM), acc in place."""
        fmt, acc_fmt, sp = ops.fmt, ops.acc_fmt, ops.sp
        use_f32 = acc_fmt.name == "fp32" and _f32_exact(ops.av, ops.ae, ops.bv, ops.be, acc)
        dt = np.float32 if use_f32 else np.float64
        acc_k = acc.astype(dt)
        args = (self.rows, self.cols, self.pipeline_depth, use_f32,
                fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials == "fn",
                acc_fmt.exp_bits, acc_fmt.man_bits, acc_fmt.bias,
                sp.o_man, sp.o_emin, sp.o_max, sp.o_ovf, ev, em, ptr)
        if self.dataflow == "ws":
            AK.ws_fma(ops.abits, ops.av.astype(dt), ops.bbits, ops.bv.astype(dt), acc_k, *args, _CHUNK)
        else:
            AK.os_fma(ops.abits, ops.av.astype(dt), ops.bbits, ops.bv.astype(dt), acc_k, *args)
        acc[...] = acc_k


def _f32_exact(av, ae, bv, be, acc) -> bool:
    """Whether binary32 arithmetic is the exact FMA: every value finite, every nonzero
    product within binary32's normal range (the core's fma_gemm_f32 condition)."""
    if not (np.isfinite(av).all() and np.isfinite(bv).all() and np.isfinite(acc).all()):
        return False
    nz_a, nz_b = np.abs(av[ae != K.SENTINEL]), np.abs(bv[be != K.SENTINEL])
    return bool(nz_a.size == 0 or nz_b.size == 0 or (
        nz_a.min() * nz_b.min() >= 2.0 ** -126 and nz_a.max() * nz_b.max() < 2.0 ** 127))


@dataclass(frozen=True)
class TensorCoreArray(_ArrayBase):
    """A rows x cols weight-stationary grid of dot-product units (tensor-core style).

    Each unit fuses one step of the profile's rule: k products (hopper fp16: 16) plus
    C, aligned, summed and rounded as the profile says.  PE row r of a fold holds
    step r of the fold's K range (k weights per unit, preloaded), A's k-vectors are
    skewed in from the left and partial sums flow down, so K is accumulated step by
    step in the fast path's order.

    Attributes:
        rows, cols: units in the grid.
        profile: a tensor-core profile (every rule has ``frac_bits``), e.g. ``"hopper"``.
        dataflow: ``"ws"`` only.
        pipeline_depth: 4, fixed: operands -> prod -> emax/aligned -> sum -> psum for a
            one-pass step; a step of P passes (hopper FP8: 2) chains P
            align/sum/round groups, 3P + 1 cycles (see :mod:`simulator._pe`).
    """

    rows: int
    cols: int
    profile: str | DatapathProfile = "hopper"
    dataflow: str = "ws"
    pipeline_depth: int = _pe.DPU_DEPTH

    def __post_init__(self):
        _check_dims(self.rows, self.cols)
        if self.dataflow != "ws":
            raise ValueError(f"dataflow must be 'ws' for a TensorCoreArray, not {self.dataflow!r}")
        prof = get_profile(self.profile)
        bad = [f for f, r in prof.rules.items() if r.frac_bits is None]
        if bad:
            raise ValueError(f"profile must be a tensor-core profile (every rule has frac_bits), not "
                             f"{prof.name!r} (use SystolicArray)")
        if self.pipeline_depth != _pe.DPU_DEPTH:
            raise ValueError(f"pipeline_depth must be {_pe.DPU_DEPTH} for a TensorCoreArray, not "
                             f"{self.pipeline_depth!r}")

    def registers(self, input_format: str = "fp16", accumulator: str = "fp32") -> tuple:
        """((name, width in bits), ...) of each unit for these formats."""
        fmt = get_format(input_format)
        rule = self._profile.rule(fmt.name)
        return tuple((r.name, r.width) for r in _pe.dpu_registers(
            rule.k, rule.frac_bits, rule.c_mode == "fused", fmt, get_format(accumulator), rule.passes))

    def _plan(self, M, Kd, N, fmt, rule, acc):
        fused = rule.c_mode == "fused"
        regs = _pe.dpu_registers(rule.k, rule.frac_bits, fused, fmt, acc, rule.passes)
        n_pass = max(rule.passes) + 1
        return _Plan("ws", self.rows, self.cols, M, Kd, N, regs, rule.k, _pe.dpu_psum_skew(n_pass, fused),
                     _pe.dpu_depth(n_pass))

    def _kernel_run(self, ops, acc, ev, em, ptr):
        """Run the weight-stationary DPU kernel over ``ops`` (a prepared (sub-)GEMM), acc in place."""
        fmt, acc_fmt, sp, rule = ops.fmt, ops.acc_fmt, ops.sp, ops.rule
        _, order, start = _pe.pass_layout(rule.k, rule.passes)
        lav, lae, lbv, lbe, la_bad, lb_bad, _, pass_len, p_floor = fused_layout(ops.av, ops.ae, ops.bv, ops.be,
                                                                              fmt, rule)
        AK.ws_dpu(ops.abits, ops.bbits, acc, self.rows, self.cols, rule.k, order, start,
                  lav, lae, lbv, lbe, la_bad, lb_bad, pass_len, p_floor, fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials == "fn",
                  acc_fmt.exp_bits, acc_fmt.man_bits, acc_fmt.bias,
                  sp.frac_bits, sp.c_fused, sp.p_man, sp.p_emin, sp.p_max, sp.p_rne,
                  sp.o_man, sp.o_emin, sp.o_max, sp.o_rne, sp.o_ovf, sp.f32_max, ev, em, ptr, _CHUNK)


# ---- golden runs: fast re-runs under single faults ------------------------------------
@dataclass(frozen=True)
class _Operands:
    """A GEMM's operands unpacked for the kernels: encodings (uint64), values (float64),
    alignment exponents (int32) of A (M, K) and B (K, N), and the formats and rule."""

    abits: np.ndarray
    av: np.ndarray
    ae: np.ndarray
    bbits: np.ndarray
    bv: np.ndarray
    be: np.ndarray
    fmt: Format
    acc_fmt: Format
    rule: object
    sp: object

    @staticmethod
    def of(a, b, fmt, rule, acc_fmt):
        av, ae = operand_arrays(a, fmt, rule)
        bv, be = operand_arrays(b, fmt, rule)
        av, bv, ae, be = (np.ascontiguousarray(x, dt) for x, dt in
                          ((av, np.float64), (bv, np.float64), (ae, np.int32), (be, np.int32)))
        return _Operands(_bits64(av, fmt, a), av, ae, _bits64(bv, fmt, b), bv, be, fmt, acc_fmt, rule,
                         step_params(rule, acc_fmt))

    def sub(self, i0, i1, k0, k1, n0, n1):
        """Rows [i0, i1) of A and columns [n0, n1) of B, K range [k0, k1)."""
        cut = np.ascontiguousarray
        return _Operands(cut(self.abits[i0:i1, k0:k1]), cut(self.av[i0:i1, k0:k1]), cut(self.ae[i0:i1, k0:k1]),
                         cut(self.bbits[k0:k1, n0:n1]), cut(self.bv[k0:k1, n0:n1]), cut(self.be[k0:k1, n0:n1]),
                         self.fmt, self.acc_fmt, self.rule, self.sp)


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise: the same binary64 bits, or both NaN (payloads are not kept)."""
    return (x.view(np.uint64) == y.view(np.uint64)) | (np.isnan(x) & np.isnan(y))


@dataclass(frozen=True)
class Injection:
    """The effect of faults on a golden run.

    Attributes:
        output: D under the faults, (M, N), the accumulator's dtype.
        rows, cols: (start, stop) of the output block that was recomputed (the only
            place D can differ from the golden output); None after a full re-run.
        fold: the fold the faults acted in (-1: several, or a full re-run).
        fold_changed: whether the fold's own output (its partial sums as they left
            the array) differed from the fault-free fold's.
    """

    output: np.ndarray
    rows: tuple | None
    cols: tuple | None
    fold: int
    fold_changed: bool


class ArrayGoldenRun:
    """A fault-free run of one configuration on one GEMM, kept for fast fault re-runs.

    :meth:`inject` re-runs faults whose events fall in one fold by running that fold's
    kernel on the rows and columns they touch only (weight-stationary: the items from
    the first to the last touched, the fold's N-tile, its K range, starting from the
    golden partial sums of the folds before), then finishing the remaining K-folds on
    the fast path, which is bit-exact to the array; anything else is a full run.

    Attributes:
        array: the configuration; output: golden D (M, N); cycles: of the run;
        shape: (M, K, N); fmt, acc_fmt: input and accumulator formats.
    """

    def __init__(self, array, a, b, c, input_format):
        from ._matmul import matmul
        fmt, rule, acc_fmt, c, (M, Kd, N) = array._prepare(a, b, c, input_format)
        self.array, self.fmt, self.rule, self.acc_fmt, self.c = array, fmt, rule, acc_fmt, c
        self.a, self.b, self.shape = a, b, (M, Kd, N)
        self.plan = array._plan(M, Kd, N, fmt, rule, acc_fmt)
        self.cycles = self.plan.cycles
        self.ops = _Operands.of(a, b, fmt, rule, acc_fmt)
        self._matmul = lambda x, y, z: matmul(x, y, z, profile=array._profile, input_format=fmt.name)
        self.output = self._matmul(a, b, c)
        self._partials = {}
        p = self.plan
        self.nkf = p.nfolds // max(1, -(-N // array.cols)) if p.dataflow == "ws" else 1

    def partial(self, kf: int) -> np.ndarray:
        """Weight-stationary: accumulator values (M, N) float64 after the first kf K-folds."""
        if kf not in self._partials:
            k0 = min(self.shape[1], kf * self.array.rows * self.plan.k)
            if k0 == self.shape[1]:
                v = self.output.astype(np.float64)
            elif k0 == 0:
                v = self.c.astype(np.float64)
            else:
                v = self._matmul(self.a[:, :k0], self.b[:k0], self.c).astype(np.float64)
            self._partials[kf] = v
        return self._partials[kf]

    def fold_block(self, f: int):
        """((i0, i1), (n0, n1), (k0, k1)) of fold f: rows (ws: all items), columns, K range."""
        p, (M, Kd, N) = self.plan, self.shape
        R, C = self.array.rows, self.array.cols
        if p.dataflow == "ws":
            nt, kf = divmod(f, self.nkf)
            k0 = kf * R * p.k
            return (0, M), (nt * C, min(N, nt * C + C)), (k0, min(Kd, k0 + R * p.k))
        mt, nt = divmod(f, -(-N // C))
        return (mt * R, min(M, mt * R + R)), (nt * C, min(N, nt * C + C)), (0, Kd)

    def _to_output(self, acc):
        with np.errstate(over="ignore"):
            out = acc.astype(self.c.dtype)
        nan = np.isnan(acc)
        if nan.any():
            prof = self.array._profile
            out.view(self.acc_fmt.uint_dtype)[nan] = prof.nan_fp32 if self.acc_fmt.name == "fp32" else prof.nan_fp16
        return out

    def inject(self, faults) -> Injection:
        """D under ``faults`` (Fault / OutputFault values), recomputing only what they touch."""
        reg_faults, out_faults = self.array._check_faults(self.plan, faults)
        ev, em, _ = self.plan.events(reg_faults)
        folds = np.unique(ev[:, AK.EV_FOLD]) if len(ev) else np.zeros(0, np.int64)
        if len(folds) > 1:
            out = self.array.run(self.a, self.b, self.c, faults=faults, input_format=self.fmt.name).output
            return Injection(out, None, None, -1, not np.array_equal(out, self.output, equal_nan=True))
        if len(folds) == 0:
            out = apply_output_faults(self.output, out_faults) if out_faults else self.output
            return Injection(out, None, None, -1, False)
        f = int(folds[0])
        (i0, i1), (n0, n1), (k0, k1) = self.fold_block(f)
        ev = ev.copy()
        ev[:, AK.EV_FOLD] = 0
        if self.plan.dataflow == "ws":
            i0, i1 = int(ev[:, AK.EV_I0].min()), int(ev[:, AK.EV_I1].max())
            ev[:, AK.EV_I0] -= i0
            ev[:, AK.EV_I1] -= i0
            acc = self.partial(f % self.nkf)[i0:i1, n0:n1].copy()
            before = self.partial(f % self.nkf + 1)[i0:i1, n0:n1]
        else:
            acc = self.c[i0:i1, n0:n1].astype(np.float64)
            before = self.output[i0:i1, n0:n1].astype(np.float64)
        # one thread: the sub-problem is a few rows of one fold, and a parallel region's
        # barrier costs more than it saves (much more on a loaded machine)
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            self.array._kernel_run(self.ops.sub(i0, i1, k0, k1, n0, n1), acc, ev, em,
                                   np.array([0, len(ev)], np.int64))
        finally:
            numba.set_num_threads(threads)
        changed = not _same(acc, before).all()
        out = self.output
        if changed:
            if k1 < self.shape[1]:  # the K-folds after this one, fault-free
                acc = self._matmul(self.a[i0:i1, k1:], self.b[k1:, n0:n1],
                                   self._to_output(acc)).astype(np.float64)
            out = self.output.copy()
            out[i0:i1, n0:n1] = self._to_output(acc)
        if out_faults:
            out = apply_output_faults(out, out_faults)
            return Injection(out, None, None, f, changed)
        return Injection(out, (i0, i1), (n0, n1), f, changed)
