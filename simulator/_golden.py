"""Golden runs: a fault-free run of one GEMM on one array, kept for fast re-runs under faults.

:class:`ArrayGoldenRun` owns the re-execution of one fold's rows under faults (the
fold's kernel on the rows and columns the faults touch, then the fast path for the
K-folds after it); :class:`Injection` is what such a re-run returns.  Campaigns and
:mod:`protection` judge many fault sets against one golden run.  The operands as the
kernels take them (:class:`_Operands`) and the conversion of accumulator values to D
(:func:`to_output`) live here and are shared with ``run`` (:mod:`simulator._array`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from . import _array_kernels as AK
from ._fault import apply_output_faults
from ._formats import Format
from ._matmul import flush_zero_exp, matmul, operand_arrays, step_params
from ._schedule import fault_events

__all__ = ["ArrayGoldenRun", "Injection"]


def _bits64(vals: np.ndarray, fmt: Format, x: np.ndarray) -> np.ndarray:
    """Operand encodings at bit 0 (uint64) for operand values exactly in ``fmt``."""
    if fmt.name == "tf32":
        b = fmt.encode(vals, "rne")
    else:
        b = np.ascontiguousarray(x).view(fmt.uint_dtype)
    return np.ascontiguousarray(b.astype(np.uint64) >> np.uint64(fmt.container_shift))


def flush_c(acc: np.ndarray, rule, acc_fmt: Format) -> np.ndarray:
    """C (float64 values) as a GEMM starts under ``rule``: below the accumulator's smallest
    normal made +0 when ``"inputs"`` is in ``rule.flush`` (as :func:`simulator.matmul`)."""
    if "inputs" in rule.flush:
        acc = np.where(np.abs(acc) < acc_fmt.smallest_normal, 0.0, acc)
    return acc


def to_output(acc: np.ndarray, dtype, acc_fmt: Format, profile) -> np.ndarray:
    """Accumulator values (float64) -> D in ``dtype`` (float32/float16), NaNs as the
    profile's NaN encoding."""
    with np.errstate(over="ignore"):
        out = acc.astype(dtype)
    nan = np.isnan(acc)
    if nan.any():
        bits = profile.nan_fp32 if acc_fmt.name == "fp32" else profile.nan_fp16
        if bits is None:  # host NaN: written as the quiet NaN, as simulator.matmul does
            bits = 0x7FC00000 if acc_fmt.name == "fp32" else 0x7E00
        out.view(acc_fmt.uint_dtype)[nan] = bits
    return out


@dataclass(frozen=True)
class _Operands:
    """A GEMM's operands unpacked for the kernels: encodings (uint64), values (float64),
    alignment exponents (int32) of A (M, K) and B (K, N) as the rule's step reads them
    (its input flush and zero_exp applied), the formats and rule; scales: None or block
    scales per K position, (scale codes of A (M, K) uint64, of B (K, N) uint64, scale
    Format, block)."""

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
    scales: tuple | None = None

    @staticmethod
    def of(a, b, fmt, rule, acc_fmt, scales=None):
        """scales: None or (scale_a (M, K/blk), scale_b (K/blk, N) uint8 codes, Format)."""
        av, ae = flush_zero_exp(*operand_arrays(a, fmt, rule), fmt, rule)
        bv, be = flush_zero_exp(*operand_arrays(b, fmt, rule), fmt, rule)
        av, bv, ae, be = (np.ascontiguousarray(x, dt) for x, dt in
                          ((av, np.float64), (bv, np.float64), (ae, np.int32), (be, np.int32)))
        if scales is not None:
            sa, sb, sfmt = scales
            blk = a.shape[1] // sa.shape[1]
            scales = (np.ascontiguousarray(np.repeat(sa, blk, axis=1), np.uint64),
                      np.ascontiguousarray(np.repeat(sb, blk, axis=0), np.uint64), sfmt, blk)
        return _Operands(_bits64(av, fmt, a), av, ae, _bits64(bv, fmt, b), bv, be, fmt, acc_fmt, rule,
                         step_params(rule, acc_fmt), scales)

    def sub(self, i0, i1, k0, k1, n0, n1):
        """Rows [i0, i1) of A and columns [n0, n1) of B, K range [k0, k1)."""
        cut = np.ascontiguousarray
        sc = self.scales
        if sc is not None:
            sc = (cut(sc[0][i0:i1, k0:k1]), cut(sc[1][k0:k1, n0:n1]), sc[2], sc[3])
        return _Operands(cut(self.abits[i0:i1, k0:k1]), cut(self.av[i0:i1, k0:k1]), cut(self.ae[i0:i1, k0:k1]),
                         cut(self.bbits[k0:k1, n0:n1]), cut(self.bv[k0:k1, n0:n1]), cut(self.be[k0:k1, n0:n1]),
                         self.fmt, self.acc_fmt, self.rule, self.sp, sc)


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
        schedule: its :class:`simulator.Schedule`; shape: (M, K, N); a, b, c: the
        inputs (c as the accumulator array); fmt, acc_fmt: input and accumulator
        formats; rule: the profile's step rule for ``fmt``.
    """

    def __init__(self, array, a, b, c, input_format):
        fmt, rule, acc_fmt, c, (M, Kd, N) = array._prepare(a, b, c, input_format)
        self.array, self.fmt, self.rule, self.acc_fmt, self.c = array, fmt, rule, acc_fmt, c
        self.a, self.b, self.shape = a, b, (M, Kd, N)
        self.schedule = array._schedule(M, Kd, N, fmt, rule, acc_fmt)
        self.cycles = self.schedule.cycles
        self._ops = _Operands.of(a, b, fmt, rule, acc_fmt)
        self.output = self._matmul(a, b, c)
        self._partials = {}

    @property
    def a_values(self) -> np.ndarray:
        """A's values as the datapath reads them, (M, K) float64 (tf32: rounded)."""
        return self._ops.av

    @property
    def b_values(self) -> np.ndarray:
        """B's values as the datapath reads them, (K, N) float64."""
        return self._ops.bv

    def _matmul(self, x, y, z):
        return matmul(x, y, z, profile=self.array._profile, input_format=self.fmt.name)

    def partial(self, kf: int) -> np.ndarray:
        """Weight-stationary: accumulator values (M, N) float64 after the first kf K-folds."""
        if kf not in self._partials:
            k0 = min(self.shape[1], kf * self.array.rows * self.schedule.step)
            if k0 == self.shape[1]:
                v = self.output.astype(np.float64)
            elif k0 == 0:
                v = flush_c(self.c.astype(np.float64), self.rule, self.acc_fmt)
            else:
                v = self._matmul(self.a[:, :k0], self.b[:k0], self.c).astype(np.float64)
            self._partials[kf] = v
        return self._partials[kf]

    def _to_output(self, acc):
        return to_output(acc, self.c.dtype, self.acc_fmt, self.array._profile)

    def inject(self, faults) -> Injection:
        """D under ``faults`` (Fault / OutputFault values), recomputing only what they touch."""
        s = self.schedule
        reg_faults, out_faults = self.array._check_faults(s, faults)
        ev, em, _ = fault_events(s, reg_faults)
        folds = np.unique(ev[:, AK.EV_FOLD]) if len(ev) else np.zeros(0, np.int64)
        if len(folds) > 1:
            out = self.array.run(self.a, self.b, self.c, faults=faults, input_format=self.fmt.name).output
            return Injection(out, None, None, -1, not np.array_equal(out, self.output, equal_nan=True))
        if len(folds) == 0:
            out = apply_output_faults(self.output, out_faults) if out_faults else self.output
            return Injection(out, None, None, -1, False)
        f = int(folds[0])
        (i0, i1), (n0, n1), (k0, k1) = s.fold_block(f)
        ev = ev.copy()
        ev[:, AK.EV_FOLD] = 0
        if s.dataflow == "ws":
            i0, i1 = int(ev[:, AK.EV_I0].min()), int(ev[:, AK.EV_I1].max())
            ev[:, AK.EV_I0] -= i0
            ev[:, AK.EV_I1] -= i0
            acc = self.partial(f % s.k_folds)[i0:i1, n0:n1].copy()
            before = self.partial(f % s.k_folds + 1)[i0:i1, n0:n1]
        else:
            acc = self.c[i0:i1, n0:n1].astype(np.float64)
            before = self.output[i0:i1, n0:n1].astype(np.float64)
        # one thread: the sub-problem is a few rows of one fold, and a parallel region's
        # barrier costs more than it saves (much more on a loaded machine)
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            self.array._kernel_run(self._ops.sub(i0, i1, k0, k1, n0, n1), acc, ev, em,
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
