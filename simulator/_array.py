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
* weight-stationary tensor core, k products per step (rows hold consecutive steps):
  ceil(ceil(K/k)/R) * ceil(N/C) folds of ``R + M + C - 2 + (R - 1)*S + 4`` where the
  partial sum moves one row every S cycles: S = 3 when C is fused into the
  alignment (c_mode "fused"), S = 1 when it is added after (c_mode "after").

``ArrayResult.cycles`` is the sum of the folds' lengths as the kernels' schedule places
every item (the slow reference stepper counts the same cycles by stepping registers
until the last output drains; tests hold both to these formulas).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faults._fault import Fault, OutputFault, apply_output_faults

from . import _array_kernels as AK
from . import _kernels as K
from . import _pe
from ._formats import Format, get_format
from ._matmul import input_format_of, operand_arrays, step_params
from ._profiles import DatapathProfile, get_profile

__all__ = ["SystolicArray", "TensorCoreArray", "ArrayResult", "FaultSites", "DATAFLOWS"]

DATAFLOWS = ("ws", "os")
_ACC_DTYPES = {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16"}
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
            masks = {}
            for b in range(f.bit, f.bit + f.nbits):
                masks[b // reg.elem_width] = masks.get(b // reg.elem_width, 0) | (1 << (b % reg.elem_width))
            for fold in range(g0 // self.fold_len, g1 // self.fold_len + 1):
                start = fold * self.fold_len
                t0, t1 = max(g0 - start, 0), min(g1 - start, self.fold_len - 1)
                for key, r, c0, c1, i0, i1, stage in self._fold_events(reg, f.pe, t0, t1):
                    for elem, m in masks.items():
                        m = np.uint64(m)
                        if f.kind == "flip":
                            ops = (_ONES, np.uint64(0), m)
                        elif f.kind == "stuck0":
                            ops = (~m, np.uint64(0), np.uint64(0))
                        else:
                            ops = (_ONES, m, np.uint64(0))
                        rows.append(((fold, start + key, f.cycle, q), (fold, reg.code, r, c0, c1, i0, i1, elem, stage), ops))
        rows.sort(key=lambda x: x[0])
        ev = np.array([x[1] for x in rows], np.int64).reshape(-1, AK.EV_COLS)
        em = np.array([x[2] for x in rows], np.uint64).reshape(-1, 3)
        ptr = np.searchsorted(ev[:, 0], np.arange(self.nfolds + 1)).astype(np.int64)
        return ev, em, ptr

    def _fold_events(self, reg, pe, t0, t1):
        """(key cycle, row, c0, c1, i0, i1, stage) for a fault acting in fold cycles [t0, t1]."""
        r, c = pe
        R, C, items = self.R, self.C, self.items
        out = []
        if reg.stationary:  # weight-stationary w
            for j in range(max(t0, r), min(t1, R - 1) + 1):  # preload: weight for row d passes
                out.append((j, R - 1 - j + r, c, c + 1, 0, items, 0))
            if t1 >= R:
                tt = max(t0, R)
                out.append((tt, r, c, c + 1, max(0, tt + 1 - self.base(r, c)), items, 0))
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
        first = self.base(r, c) + reg.latch  # cycle item 0 latches here
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

    def live_cycles(self, register, pe):
        reg = self.regs[register]
        r, c = pe
        out = []
        for f in range(self.nfolds):
            start, Ru, Cu = f * self.fold_len, int(self.Ru[f]), int(self.Cu[f])
            if c >= Cu:
                continue
            for t in range(self.fold_len):
                for key, rr, c0, c1, i0, i1, stage in self._fold_events(reg, pe, t, t):
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
        prof: DatapathProfile = self._profile
        for name, x in (("a", a), ("b", b)):
            if not isinstance(x, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, not {type(x).__name__}")
            if x.ndim != 2:
                raise ValueError(f"{name} must be 2-D, not {x.ndim}-D with shape {x.shape}")
        if a.dtype != b.dtype:
            raise TypeError(f"a and b must have the same dtype, not {a.dtype} and {b.dtype}")
        fmt = input_format_of(a.dtype, input_format)
        rule = prof.rule(fmt.name)
        M, Kd = a.shape
        if b.shape[0] != Kd:
            raise ValueError(f"b must have shape ({Kd}, N) to match a's K={Kd}, not {b.shape}")
        N = b.shape[1]
        if c is None:
            c = np.zeros((M, N), np.float32)
        if not isinstance(c, np.ndarray) or c.dtype not in _ACC_DTYPES:
            raise TypeError(f"c must be a float32 or float16 array, not {getattr(c, 'dtype', type(c).__name__)}")
        if c.shape != (M, N):
            raise ValueError(f"c must have shape {(M, N)}, not {c.shape}")
        acc = get_format(_ACC_DTYPES[c.dtype])
        if acc.name not in prof.accumulators:
            raise ValueError(f"profile {prof.name!r} supports accumulators {prof.accumulators}, not {acc.name}")
        return fmt, rule, acc, c, (M, Kd, N)

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

    def cycles(self, m: int, k: int, n: int) -> int:
        """Closed-form cycle count of an (m x k) @ (k x n) GEMM (see the module docstring)."""
        fmt = get_format(next(iter(self._profile.rules)))
        return self._plan(m, k, n, fmt, self._profile.rule(fmt.name), get_format("fp32")).cycles

    @property
    def _profile(self) -> DatapathProfile:
        return get_profile(self.profile)


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
        bad = [f for f, r in prof.rules.items() if r.k != 1 or r.frac_bits is not None]
        if bad:
            raise ValueError(f"profile must be a scalar-FMA profile (every rule k=1, frac_bits=None) such as "
                             f"'systolic_fma', not {prof.name!r} (use TensorCoreArray)")
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

    def run(self, a, b, c=None, *, faults=(), input_format=None, trace=()) -> ArrayResult:
        """D = A @ B + C through the array, cycle by cycle, with faults.

        Args:
            a: (M, K), b: (K, N) input arrays (dtypes as :func:`simulator.matmul`).
            c: (M, N) float32 accumulator or None (+0).
            faults: :class:`faults.Fault` (register level) and
                :class:`faults.OutputFault` (applied to D afterwards) values.
            input_format: ``"tf32"`` for float32 inputs.
            trace: register names to record every cycle (runs the slow reference
                stepper: small GEMMs only).
        """
        fmt, rule, acc_fmt, c, (M, Kd, N) = self._prepare(a, b, c, input_format)
        plan = self._plan(M, Kd, N, fmt, rule, acc_fmt)
        reg_faults, out_faults = self._check_faults(plan, faults)
        sp = step_params(rule, acc_fmt)
        av, ae = operand_arrays(a, fmt, rule)
        bv, be = operand_arrays(b, fmt, rule)
        av, bv, ae, be = (np.ascontiguousarray(x, dt) for x, dt in
                          ((av, np.float64), (bv, np.float64), (ae, np.int32), (be, np.int32)))
        abits, bbits = _bits64(av, fmt, a), _bits64(bv, fmt, b)
        acc = c.astype(np.float64)
        trace_out = {}
        if trace:
            from ._array_reference import step_run
            acc, trace_out, stepped = step_run(self, plan, abits, bbits, acc, fmt, acc_fmt, sp, reg_faults, trace)
            assert stepped == plan.cycles
        elif plan.nfolds:
            ev, em, ptr = plan.events(reg_faults)
            use_f32 = acc_fmt.name == "fp32" and _f32_exact(av, ae, bv, be, acc)
            dt = np.float32 if use_f32 else np.float64
            acc_k = acc.astype(dt)
            args = (self.rows, self.cols, self.pipeline_depth, use_f32,
                    fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials == "fn",
                    acc_fmt.exp_bits, acc_fmt.man_bits, acc_fmt.bias,
                    sp.o_man, sp.o_emin, sp.o_max, sp.o_ovf, ev, em, ptr)
            if self.dataflow == "ws":
                AK.ws_fma(abits, av.astype(dt), bbits, bv.astype(dt), acc_k, *args, _CHUNK)
            else:
                AK.os_fma(abits, av.astype(dt), bbits, bv.astype(dt), acc_k, *args)
            acc = acc_k.astype(np.float64)
        return self._finish(acc, c, acc_fmt, plan, out_faults, M * Kd * N, 1, trace_out)


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
        pipeline_depth: 4, fixed: operands -> prod -> emax/aligned -> sum -> psum.
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
            rule.k, rule.frac_bits, rule.c_mode == "fused", fmt, get_format(accumulator)))

    def _plan(self, M, Kd, N, fmt, rule, acc):
        fused = rule.c_mode == "fused"
        regs = _pe.dpu_registers(rule.k, rule.frac_bits, fused, fmt, acc)
        S = _pe.DPU_DEPTH - _pe.DPU_PSUM_READ[fused]
        return _Plan("ws", self.rows, self.cols, M, Kd, N, regs, rule.k, S, _pe.DPU_DEPTH)

    def run(self, a, b, c=None, *, faults=(), input_format=None, trace=()) -> ArrayResult:
        """D = A @ B + C through the array (arguments as :meth:`SystolicArray.run`;
        c may be float16 where the profile supports it)."""
        fmt, rule, acc_fmt, c, (M, Kd, N) = self._prepare(a, b, c, input_format)
        if len(set(getattr(rule, "passes", (0,)))) > 1:
            raise ValueError(f"TensorCoreArray models single-pass steps; the {self._profile.name!r} rule for "
                             f"{fmt.name} has passes={rule.passes} (not yet modelled)")
        plan = self._plan(M, Kd, N, fmt, rule, acc_fmt)
        reg_faults, out_faults = self._check_faults(plan, faults)
        sp = step_params(rule, acc_fmt)
        av, ae = operand_arrays(a, fmt, rule)
        bv, be = operand_arrays(b, fmt, rule)
        av, bv, ae, be = (np.ascontiguousarray(x, dt) for x, dt in
                          ((av, np.float64), (bv, np.float64), (ae, np.int32), (be, np.int32)))
        abits, bbits = _bits64(av, fmt, a), _bits64(bv, fmt, b)
        acc = c.astype(np.float64)
        trace_out = {}
        if trace:
            from ._array_reference import step_run
            acc, trace_out, stepped = step_run(self, plan, abits, bbits, acc, fmt, acc_fmt, sp, reg_faults, trace)
            assert stepped == plan.cycles
        elif plan.nfolds:
            ev, em, ptr = plan.events(reg_faults)
            AK.ws_dpu(abits, av, ae, bbits, bv, be, acc, self.rows, self.cols, rule.k,
                      fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials == "fn",
                      acc_fmt.exp_bits, acc_fmt.man_bits, acc_fmt.bias,
                      sp.frac_bits, sp.c_fused, sp.p_man, sp.p_emin, sp.p_max, sp.p_rne,
                      sp.o_man, sp.o_emin, sp.o_max, sp.o_rne, sp.o_ovf, sp.f32_max, ev, em, ptr, _CHUNK)
        return self._finish(acc, c, acc_fmt, plan, out_faults, M * Kd * N, rule.k, trace_out)
