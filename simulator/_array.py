"""PE array configurations: a systolic array of scalar-FMA PEs and a tensor-core array of dot-product units.

PE (:mod:`simulator._pe`: registers and their timing) -> schedule
(:mod:`simulator._schedule`: folds, skew, liveness, fault events) -> this module
(the frozen, validated configurations and ``run``: they check the arguments and
faults, build the :class:`simulator.Schedule` and hand arrays to the kernels of
:mod:`simulator._array_kernels`).  Results and the fault-site population are in
:mod:`simulator._results`, golden runs in :mod:`simulator._golden`.

``ArrayResult.cycles`` is the schedule's cycle count (the formulas in
:mod:`simulator._schedule`); the slow reference stepper (``run(..., trace=...)``)
counts the same cycles by stepping registers until the last output drains.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import numpy as np

from . import _array_kernels as AK
from . import _kernels as K
from . import _pe
from ._array_reference import step_run
from ._fault import Fault, OutputFault, apply_output_faults
from ._faultmap import FaultMap
from ._formats import get_format
from ._golden import ArrayGoldenRun, _Operands, flush_c, to_output
from ._matmul import check_gemm_args, check_scales, fused_layout, general_step, operand_table, scale_table
from ._profiles import DatapathProfile, get_profile
from ._results import ArrayResult, FaultSites
from ._schedule import Schedule, fault_events

__all__ = ["SystolicArray", "TensorCoreArray", "DATAFLOWS"]

#: Dataflows of a SystolicArray: weight-stationary, output-stationary.
DATAFLOWS = ("ws", "os")
_CHUNK = 32  # rows of M per thread task in the weight-stationary kernels


def _check_dims(rows, cols):
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        if not 1 <= v <= 4096:
            raise ValueError(f"{name} must be in [1, 4096], not {v}")


class _ArrayBase:
    """What both array configurations share: schedules, fault checks, runs."""

    @property
    def _profile(self) -> DatapathProfile:
        return get_profile(self.profile)

    def _prepare(self, a, b, c, input_format):
        return check_gemm_args(self._profile, a, b, c, input_format)

    def schedule(self, m: int, k: int, n: int, *, input_format: str | None = None,
                 accumulator: str = "fp32", scale_block: int | None = None,
                 scale_format: str = "ue8m0") -> Schedule:
        """The :class:`simulator.Schedule` of an (m x k) @ (k x n) GEMM: folds, cycles,
        registers and their live cycles.  ``input_format`` picks the profile's rule
        (default: its first); ``accumulator``: ``"fp32"`` or ``"fp16"``;
        ``scale_block``: K positions per block scale of a block-scaled GEMM (None: none)
        in ``scale_format``."""
        for name, v in (("m", m), ("k", k), ("n", n)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, not {v!r}")
        fmt = get_format(input_format or next(iter(self._profile.rules)))
        scales = None
        if scale_block is not None:
            if not isinstance(scale_block, int) or scale_block < 1 or k % scale_block:
                raise ValueError(f"scale_block must be a positive int dividing k={k}, not {scale_block!r}")
            # the schedule reads the scales' block count and format only
            scales = (np.zeros((0, k // scale_block), np.uint8), None, get_format(scale_format))
        return self._schedule(int(m), int(k), int(n), fmt, self._profile.rule(fmt.name), get_format(accumulator),
                              scales)

    def _check_faults(self, schedule, faults):
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
            w = schedule.register(f.register).width
            if f.bit + f.nbits > w:
                raise ValueError(f"bit..bit+nbits-1 must be in [0, {w - 1}] for register {f.register!r}, "
                                 f"not {f.bit}..{f.bit + f.nbits - 1}")
            if f.cycle >= schedule.cycles:
                raise ValueError(f"cycle must be in [0, {schedule.cycles}) for this run, not {f.cycle}")
            reg_faults.append(f)
        return reg_faults, out_faults

    def fault_sites(self, m: int, k: int, n: int, input_format: str = "fp16", accumulator: str = "fp32") -> FaultSites:
        """The fault-site population of this configuration on an (m x k) @ (k x n) GEMM."""
        return FaultSites(self.schedule(m, k, n, input_format=input_format, accumulator=accumulator))

    def cycles(self, m: int, k: int, n: int, input_format: str | None = None) -> int:
        """Cycle count of an (m x k) @ (k x n) GEMM (``schedule(...).cycles``: the closed
        forms of :mod:`simulator._schedule`); ``input_format`` picks the profile's rule."""
        return self.schedule(m, k, n, input_format=input_format).cycles

    def registers(self, input_format: str = "fp16", accumulator: str = "fp32") -> tuple:
        """((name, width in bits), ...) of each PE for these formats."""
        return tuple((r.name, r.width) for r in
                     self.schedule(1, 1, 1, input_format=input_format, accumulator=accumulator).registers)

    def _scales(self, scale_a, scale_b, scale_format, M, Kd, N, fmt, rule):
        """Validated block scales (None or (scale_a, scale_b, Format)); only block-scaled
        units take them."""
        if scale_a is not None or scale_b is not None or scale_format is not None:
            raise ValueError(f"scale_a, scale_b and scale_format must be None for a {type(self).__name__}, "
                             f"not given")
        return None

    def run(self, a, b, c=None, *, faults=(), fault_map: FaultMap | None = None, input_format=None,
            trace=(), scale_a=None, scale_b=None, scale_format=None) -> ArrayResult:
        """D = A @ B + C through the array, cycle by cycle, with faults.

        Args:
            a: (M, K), b: (K, N) input arrays (dtypes as :func:`simulator.matmul`).
            c: (M, N) accumulator (float32, or float16 where the profile supports it)
                or None (+0, float32).
            faults: :class:`simulator.Fault` (register level) and
                :class:`simulator.OutputFault` (applied to D afterwards) values.
            fault_map: a :class:`simulator.FaultMap`: the chip's permanent faults,
                met in every fold at every cycle (after ``faults`` in acting order).
            input_format: ``"tf32"`` for float32 inputs.
            trace: register names to record every cycle (runs the slow reference
                stepper: small GEMMs only; units of the original vocabulary only).
            scale_a, scale_b, scale_format: block scales (TensorCoreArray), as
                :func:`simulator.matmul`'s: (M, K/block) and (K/block, N) uint8 codes of
                ``"ue8m0"`` or ``"ue4m3"``; each unit holds its step's scales in its
                ``sa``/``sw`` registers.
        """
        fmt, rule, acc_fmt, c, (M, Kd, N) = self._prepare(a, b, c, input_format)
        scales = self._scales(scale_a, scale_b, scale_format, M, Kd, N, fmt, rule)
        sched = self._schedule(M, Kd, N, fmt, rule, acc_fmt, scales)
        dead = tuple(f for f in self._check_faults(sched, faults)[0] if not _lands_live(sched, f))
        if fault_map is not None:
            if not isinstance(fault_map, FaultMap):
                raise TypeError(f"fault_map must be a FaultMap, not {type(fault_map).__name__}")
            faults = tuple(faults) + fault_map.faults
        reg_faults, out_faults = self._check_faults(sched, faults)
        ops = _Operands.of(a, b, fmt, rule, acc_fmt, scales)
        acc = flush_c(c.astype(np.float64), rule, acc_fmt)
        trace_out = {}
        if trace:
            if not self._classic_unit(rule, scales):
                raise ValueError(f"trace must be empty for a unit of the issue-13 stages (profile "
                                 f"{self._profile.name!r} {fmt.name}): the reference stepper models the "
                                 f"original dot-product unit, not {trace!r}")
            acc, trace_out, stepped = step_run(self, sched, ops.abits, ops.bbits, acc, fmt, acc_fmt, ops.sp,
                                               reg_faults, trace)
            assert stepped == sched.cycles
        elif sched.folds:
            self._kernel_run(ops, acc, *fault_events(sched, reg_faults))
        out = to_output(acc, c.dtype, acc_fmt, self._profile)
        if out_faults:
            out = apply_output_faults(out, out_faults)
        macs = M * Kd * N
        util = macs / (self.rows * self.cols * sched.step * sched.cycles) if sched.cycles else 0.0
        return ArrayResult(out, int(sched.cycles), float(util), int(macs), int(sched.folds), trace_out, dead)

    def golden(self, a, b, c=None, *, input_format=None) -> ArrayGoldenRun:
        """The fault-free run of this GEMM, kept for fast re-runs under faults."""
        return ArrayGoldenRun(self, a, b, c, input_format)


def _lands_live(sched: Schedule, f) -> bool:
    """Whether register fault ``f`` acts on a value that is read later: a flip at a
    live cycle of one of the elements its bits cover, a stuck-at over cycles that meet
    such a live cycle."""
    reg = sched.register(f.register)
    elems = {b // reg.elem_width for b in range(f.bit, f.bit + f.nbits)}
    if f.kind == "flip":
        return any(sched.is_live(f.register, f.pe, f.cycle, e) for e in elems)
    end = sched.cycles if f.duration is None else f.cycle + f.duration
    return any(lo < end and hi > f.cycle for d in {reg.delay(e) for e in elems}
               for lo, hi in sched.live_ranges(f.register, f.pe, d))


@dataclass(frozen=True)
class SystolicArray(_ArrayBase):
    """A rows x cols grid of scalar multiply-accumulate PEs.

    ``SystolicArray(rows, cols, *, profile="systolic_fma", dataflow="ws", pipeline_depth=1)``.

    Attributes:
        rows, cols: PEs in the grid.
        profile: a profile whose every rule is a scalar IEEE FMA (``k=1``,
            ``frac_bits=None``), e.g. ``"systolic_fma"``.
        dataflow: ``"ws"`` (weight-stationary: B's tile preloaded, A's rows skewed in
            from the left, partial sums flow down) or ``"os"`` (output-stationary:
            A from the left, B from the top, each PE accumulates one D element).
        pipeline_depth: cycles from a PE's multiply to its result (d >= 1; d - 1
            product registers ``prod1..``).
    """

    rows: int
    cols: int
    _: KW_ONLY
    profile: str | DatapathProfile = "systolic_fma"
    dataflow: str = "ws"
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

    @staticmethod
    def _classic_unit(rule, scales) -> bool:
        return True

    def _schedule(self, M, Kd, N, fmt, rule, acc, scales=None) -> Schedule:
        regs = _pe.fma_registers(self.dataflow, self.pipeline_depth, fmt, acc)
        return Schedule.build(self.dataflow, self.rows, self.cols, M, Kd, N, regs, depth=self.pipeline_depth,
                              input_format=fmt.name, acc_format=acc.name)

    def _kernel_run(self, ops, acc, ev, em, ptr):
        """Run the dataflow's kernel over ``ops`` (a prepared (sub-)GEMM), acc in place."""
        fmt, acc_fmt, sp = ops.fmt, ops.acc_fmt, ops.sp
        use_f32 = acc_fmt.name == "fp32" and _f32_exact(ops.av, ops.ae, ops.bv, ops.be, acc)
        dt = np.float32 if use_f32 else np.float64
        acc_k = acc.astype(dt)
        geo = _geometry(self.rows, self.cols, self.pipeline_depth)
        if self.dataflow == "ws":
            evt = AK.Events(ev, em, *_row_index(ev, len(ptr) - 1, self.rows))
            AK.ws_fma(ops.abits, ops.av.astype(dt), ops.bbits, ops.bv.astype(dt), acc_k, geo, use_f32,
                      AK.encoding(fmt), AK.encoding(acc_fmt), sp.out, evt)
        else:
            evt = AK.Events(ev, em, np.ascontiguousarray(ptr, np.int64), np.zeros(0, np.int64), np.int64(0))
            AK.os_fma(ops.abits, ops.av.astype(dt), ops.bbits, ops.bv.astype(dt), acc_k, geo, use_f32,
                      AK.encoding(fmt), AK.encoding(acc_fmt), sp.out, evt)
        acc[...] = acc_k


def _geometry(rows: int, cols: int, depth: int) -> AK.Geometry:
    """The array's :class:`~simulator._array_kernels.Geometry` record (int64 fields)."""
    return AK.Geometry(np.int64(rows), np.int64(cols), np.int64(depth), np.int64(_CHUNK))


def _row_index(ev: np.ndarray, folds: int, rows: int) -> tuple:
    """(row_ptr (folds*rows+1,), row_idx (E,), max_row): the event table grouped by
    (fold, PE row), table order kept within a group (the order faults act in), and
    the largest group: the weight-stationary kernels scan one row's events only."""
    key = ev[:, AK.EV_FOLD] * rows + ev[:, AK.EV_R]
    idx = np.argsort(key, kind="stable").astype(np.int64)
    ptr = np.searchsorted(key[idx], np.arange(folds * rows + 1)).astype(np.int64)
    return ptr, idx, np.int64(np.diff(ptr).max() if len(ev) else 0)


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

    ``TensorCoreArray(rows, cols, *, profile="hopper")``.  The unit's depth follows
    from the rule: operands -> prod -> emax/aligned -> sum -> psum, 4 cycles for a
    one-pass step; a step of P passes (hopper FP8: 2) chains P align/sum/round
    groups, 3P + 1 cycles (``schedule(...).depth``; see :mod:`simulator._pe`).

    Rules of :attr:`simulator.StepRule.classic_form` (the original vocabulary, a zero
    operand's exponent ``zero_exp`` as data) without block scales run on that unit.
    Every other tensor-core rule (pairwise trees, re-aligned C, parallel passes, scaled
    groups, block scales) runs on a unit whose step is the fast path's step itself, run
    stage by stage: registers ``a``, ``w``, the scale registers ``sa``/``sw`` of a
    block-scaled GEMM, ``prod``, a pairwise tree's levels ``node1``.. or a fused tree's
    ``sum``, and ``psum`` (:func:`simulator._pe.general_registers`), depth 4.

    Attributes:
        rows, cols: units in the grid.
        profile: a tensor-core profile (at least one rule with ``frac_bits``), e.g.
            ``"hopper"``, ``"cdna3"``; its scalar-FMA rules (``frac_bits=None``, such as
            CDNA's fp32) are refused at ``run``.
        dataflow: ``"ws"`` (read-only: the only dataflow of a tensor-core array).
    """

    rows: int
    cols: int
    _: KW_ONLY
    profile: str | DatapathProfile = "hopper"

    def __post_init__(self):
        _check_dims(self.rows, self.cols)
        prof = get_profile(self.profile)
        if all(r.frac_bits is None for r in prof.rules.values()):
            raise ValueError(f"profile must be a tensor-core profile (a rule with frac_bits), not "
                             f"{prof.name!r} (use SystolicArray)")

    def _prepare(self, a, b, c, input_format):
        fmt, rule, acc_fmt, c, shape = check_gemm_args(self._profile, a, b, c, input_format)
        if rule.frac_bits is None:
            raise ValueError(f"input format must have a dot-product rule on a TensorCoreArray, not {fmt.name!r}: "
                             f"profile {self._profile.name!r} computes it as a scalar FMA chain (use "
                             f"simulator.matmul)")
        return fmt, rule, acc_fmt, c, shape

    def _scales(self, scale_a, scale_b, scale_format, M, Kd, N, fmt, rule):
        scales = check_scales(scale_a, scale_b, scale_format, M, Kd, N, fmt)
        if rule.group_k > 1 and scales is None:
            raise ValueError(f"profile {self._profile.name!r} computes {fmt.name} in scaled groups: scale_a and "
                             f"scale_b must be given, not None")
        if scales is not None:
            blk = Kd // scales[0].shape[1]
            if blk % rule.k and rule.k % blk:
                raise ValueError(f"the scale block must divide the unit's k={rule.k} or be a multiple of it, "
                                 f"not {blk}")
        return scales

    @staticmethod
    def _classic_unit(rule, scales) -> bool:
        """Whether the original dot-product unit runs the rule (else the issue-13 unit)."""
        return rule.classic_form and scales is None

    @property
    def dataflow(self) -> str:
        """``"ws"``: partial sums flow down, weights stationary."""
        return "ws"

    def _schedule(self, M, Kd, N, fmt, rule, acc, scales=None) -> Schedule:
        fused = rule.c_mode == "fused"
        if not self._classic_unit(rule, scales):
            n_scales = 0 if scales is None else rule.k // min(Kd // scales[0].shape[1], rule.k)
            regs = _pe.general_registers(rule, fmt, acc, n_scales, None if scales is None else scales[2])
            return Schedule.build("ws", self.rows, self.cols, M, Kd, N, regs, step=rule.k, passes=1,
                                  row_interval=_pe.dpu_psum_skew(1, fused), depth=_pe.dpu_depth(1),
                                  input_format=fmt.name, acc_format=acc.name)
        regs = _pe.dpu_registers(rule.k, rule.frac_bits, fused, fmt, acc, rule.passes)
        n_pass = max(rule.passes) + 1
        return Schedule.build("ws", self.rows, self.cols, M, Kd, N, regs, step=rule.k, passes=n_pass,
                              row_interval=_pe.dpu_psum_skew(n_pass, fused), depth=_pe.dpu_depth(n_pass),
                              input_format=fmt.name, acc_format=acc.name)

    def _kernel_run(self, ops, acc, ev, em, ptr):
        """Run the weight-stationary DPU kernel over ``ops`` (a prepared (sub-)GEMM), acc in place."""
        fmt, acc_fmt, sp, rule = ops.fmt, ops.acc_fmt, ops.sp, ops.rule
        if not self._classic_unit(rule, ops.scales):
            return self._general_run(ops, acc, ev, em, ptr)
        _, order, start = _pe.pass_layout(rule.k, rule.passes)
        lay = fused_layout(ops.av, ops.ae, ops.bv, ops.be, fmt, rule)
        evt = AK.Events(ev, em, *_row_index(ev, len(ptr) - 1, self.rows))
        geo = _geometry(self.rows, self.cols, _pe.dpu_depth(max(rule.passes) + 1))
        AK.ws_dpu(ops.abits, ops.bbits, acc, geo, np.int64(rule.k), order, start, lay,
                  AK.encoding(fmt), AK.encoding(acc_fmt), sp, evt)



    def _general_run(self, ops, acc, ev, em, ptr):
        """Run the weight-stationary kernel of issue-13 units over ``ops``, acc in place."""
        fmt, acc_fmt, rule = ops.fmt, ops.acc_fmt, ops.rule
        M, Kd = ops.av.shape
        N = ops.bv.shape[1]
        tv, te = operand_table(fmt, rule)
        if ops.scales is not None:
            sa_bits, sb_bits, sfmt, blk = ops.scales
            stv, ste = scale_table(sfmt)
            n_scales = rule.k // min(blk, rule.k)
            sav, sae = stv[sa_bits.astype(np.intp)], ste[sa_bits.astype(np.intp)]
            sbv, sbe = stv[sb_bits.astype(np.intp)], ste[sb_bits.astype(np.intp)]
        else:
            sa_bits, sb_bits = np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64)
            stv, ste = np.ones(1), np.zeros(1, np.int16)
            n_scales = 0
            sav, sae = np.ones((1, 1)), np.zeros((1, 1), np.int16)
            sbv, sbe = sav, sae
        unit = AK.GeneralUnit(np.int64(rule.k), rule.tree == "pairwise", "nodes" in rule.flush,
                              "accumulator" in rule.flush, ops.scales is not None, np.int64(n_scales),
                              tv, te, stv, ste, np.uint64((1 << fmt.width) - 1), np.int64(2 * (fmt.man_bits + 1)),
                              np.int64(_pe.general_sum_width(rule, fmt, None if ops.scales is None else ops.scales[2])))
        gops = K.GeneralOperands(ops.av, np.ascontiguousarray(ops.ae, np.int16), ops.bv,
                                 np.ascontiguousarray(ops.be, np.int16), np.ascontiguousarray(sav),
                                 np.ascontiguousarray(sae), np.ascontiguousarray(sbv), np.ascontiguousarray(sbe),
                                 np.int64(1 if ops.scales is not None else 0), np.zeros((0, 0), np.bool_))
        evt = AK.Events(ev, em, *_row_index(ev, len(ptr) - 1, self.rows))
        geo = _geometry(self.rows, self.cols, _pe.dpu_depth(1))
        AK.ws_general(ops.abits, ops.bbits, np.ascontiguousarray(sa_bits), np.ascontiguousarray(sb_bits), acc, geo,
                      gops, ops.av.astype(np.float32), ops.bv.astype(np.float32), unit,
                      general_step(rule, ops.sp), AK.encoding(acc_fmt), evt)
