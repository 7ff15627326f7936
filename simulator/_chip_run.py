"""A GEMM on a faulty chip, fast: the fault-free result where no fault reaches, the
fast path wherever a stuck bit can be expressed on it, the array's kernel elsewhere.

``chip_gemm(array, a, b, c, fault_map=fm)`` returns exactly the bits of
``array.run(a, b, c, fault_map=fm).output`` (tests hold it to that on every register
kind, WS, OS and the tensor-core array), at a cost that grows with the faulty PEs,
not with the GEMM.  Weight-stationary, it works from the fault events of the run
(:func:`simulator._schedule.fault_events`, the table the kernels themselves take):

* an output column no event names is the fault-free D's column (``golden``, or the
  fast path :func:`simulator.matmul`, bit-exact to the array);
* on a :class:`SystolicArray` whose operand format fills its container (fp16, bf16,
  fp8), events that act on every item of a fold the same way (a stuck bit does: it
  is held from cycle 0) are expressed on the fast path, which is the array's FMA
  chain down K: ``a`` and ``w`` events are folded into the operands (the kernel
  applies them to the bits of A[m, k] / B[k, n] before anything reads them): ``w``
  rewrites B once, ``a`` (forwarded right, so it reaches the columns right of the
  faulty PE: the events spell that out) rewrites A per group of columns that meet
  the same ``a`` faults; a stuck ``psum`` bit cuts the chain after its PE's MAC, the
  bit is applied to the binary32 partial sums there and the chain goes on (a NaN
  partial sum is the canonical quiet NaN 0x7FC00000 in the register, whatever sign
  the arithmetic gave it, :func:`simulator._array_kernels.encode_ieee`, so the stuck
  bit acts on that pattern, as in the kernel);
* what the fast path cannot promise goes to the kernel: product registers, tf32
  operands, the tensor-core array's registers.  Those columns run the array's
  kernel on a narrower array (same rows, as many columns as they hold per N-tile)
  with all of their events moved to the new column positions (a
  weight-stationary column depends on A, its B and C columns and the events on its
  own PEs only), plus witness columns that make the kernel pick the arithmetic it
  picks for the whole GEMM.

Output-stationary runs (and tf32 on a SystolicArray) are handed to ``array.run``.
"""
from __future__ import annotations

import dataclasses
import functools
from contextlib import contextmanager

import numba
import numpy as np

from . import _array_kernels as AK
from ._array import SystolicArray, TensorCoreArray
from ._faultmap import FaultMap
from ._formats import get_format
from ._golden import _Operands, to_output
from ._kernels import SENTINEL
from ._matmul import matmul, operand_arrays
from ._schedule import fault_events

__all__ = ["chip_gemm"]

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


@contextmanager
def _one_thread():
    """Numba kernels called in this block run on the calling thread only (this thread's
    setting; restored after).  The fast path of a chip run makes many small calls (one
    per segment and group of columns): measured on a loaded 2-core machine, each
    parallel region cost ~10-20 ms of thread wake-up, far more than its work.  The
    kernel runs (large) keep the threads."""
    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(n)


def _compose(ops) -> tuple:
    """The effect of bit operations ((v & and) | or) ^ xor applied in order, as the
    images (of all-zeros, of all-ones): bit i of the result is bit i of the first
    where v's bit i is 0, of the second where it is 1."""
    z, o = np.uint64(0), _ONES
    for am, om, xm in ops:
        z = ((z & am) | om) ^ xm
        o = ((o & am) | om) ^ xm
    return int(z), int(o)


def _apply(bits: np.ndarray, z: int, o: int) -> np.ndarray:
    """Apply a composed operation (:func:`_compose`) to unsigned bits (any uint dtype)."""
    t = bits.dtype.type
    return (~bits & t(z & np.iinfo(bits.dtype).max)) | (bits & t(o & np.iinfo(bits.dtype).max))


def _uniform_op(ev, em, idx, items):
    """The composed operation of events ``idx`` (rows of the event table ``ev`` and
    masks ``em`` as lists, table order) if it is the same on every item in
    [0, items), else None."""
    cuts = sorted({0, items} | {min(max(ev[e][AK.EV_I0], 0), items) for e in idx}
                  | {min(max(ev[e][AK.EV_I1], 0), items) for e in idx})
    op = None
    for s, t in zip(cuts[:-1], cuts[1:]):
        if s >= t:
            continue
        cur = _compose([em[e] for e in idx if ev[e][AK.EV_I0] <= s < ev[e][AK.EV_I1]])
        if op is None:
            op = cur
        elif cur != op:
            return None
    return op


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What a fault map does to one GEMM shape on one array (data-independent, so
    computed once per (array, map, shape, formats) and reused by every call)."""

    ev: np.ndarray       # the run's fault events (simulator._schedule.fault_events)
    em: np.ndarray
    nkf: int             # K-folds per N-tile
    kstep: int           # K positions per fold
    touched: tuple       # (N-tile, PE column) keys some event reaches, sorted
    kept: dict           # key -> [event]: events only the kernel can apply
    allev: dict          # key -> [event]: every event of the column
    a_ops: dict          # key -> [(kf, r, z, o)]: folded ``a`` operations
    p_ops: dict          # key -> [(kf, r, z, o)]: stuck partial sums
    w_k: np.ndarray      # folded ``w`` operations: B[k, n] rewritten by (z, o)
    w_n: np.ndarray
    w_z: np.ndarray
    w_o: np.ndarray


@functools.lru_cache(maxsize=256)
def _plan(array, fault_map, M, Kd, N, fmt_name, acc_name, fold_ops) -> _Plan:
    sched = array.schedule(M, Kd, N, input_format=fmt_name, accumulator=acc_name)
    reg_faults, _ = array._check_faults(sched, fault_map.faults)
    ev, em, _ = fault_events(sched, reg_faults)
    C = array.cols
    nnt = -(-N // C)
    nkf = sched.folds // nnt
    kstep = array.rows * sched.step
    evl, eml = ev.tolist(), [tuple(np.uint64(x) for x in row) for row in em]
    # per (fold, register, PE row, PE column): the events that act there, table order
    per_pe = {}
    for e, row in enumerate(evl):
        f, reg, r = row[AK.EV_FOLD], row[AK.EV_REG], row[AK.EV_R]
        for col in range(row[AK.EV_C0], min(row[AK.EV_C1], C)):
            per_pe.setdefault((f, reg, r, col), []).append(e)
    a_ops, p_ops, kept, allev, w_ops = {}, {}, {}, {}, []
    touched = set()
    for (f, reg, r, col), idx in per_pe.items():
        nt, kf = divmod(f, nkf)
        if nt * C + col >= N:
            continue  # a PE column this N-tile does not use
        touched.add((nt, col))
        allev.setdefault((nt, col), []).extend(idx)
        stage = 1 if reg == AK.REG_PSUM else 0
        plain = all(evl[e][AK.EV_ELEM] == 0 and evl[e][AK.EV_STAGE] == stage for e in idx)
        op = None
        if fold_ops and plain and (reg in (AK.REG_A, AK.REG_W) or (reg == AK.REG_PSUM and acc_name == "fp32")):
            op = _uniform_op(evl, eml, idx, M)
        if op is None:
            kept.setdefault((nt, col), []).extend(idx)
            continue
        k = kf * kstep + r
        if reg == AK.REG_PSUM:
            p_ops.setdefault((nt, col), []).append((kf, r, *op))
        elif k >= Kd:
            continue  # an idle PE row: the kernel reads no operand there
        elif reg == AK.REG_A:
            a_ops.setdefault((nt, col), []).append((kf, r, *op))
        else:
            w_ops.append((k, nt * C + col, *op))
    w = np.array(w_ops, dtype=np.uint64).reshape(-1, 4)
    return _Plan(ev, em, nkf, kstep, tuple(sorted(touched)), kept, {k: sorted(v) for k, v in allev.items()},
                 a_ops, p_ops, w[:, 0].astype(np.int64), w[:, 1].astype(np.int64), w[:, 2], w[:, 3])


def _check_golden(golden, shape, dtype):
    g = np.asarray(golden)
    if g.shape != shape or g.dtype != dtype:
        raise ValueError(f"golden must be the fault-free D, {shape} {np.dtype(dtype)}, not {g.shape} {g.dtype}")
    return g


def chip_gemm(array, a, b, c=None, *, fault_map: FaultMap, input_format: str | None = None,
              golden=None) -> np.ndarray:
    """D = A @ B + C on ``array`` with the permanent faults ``fault_map``: the bits of
    ``array.run(a, b, c, fault_map=fault_map, input_format=input_format).output``,
    with cycle-level work only on the output columns a fault reaches (see the module).

    Args:
        array: a :class:`SystolicArray` or :class:`TensorCoreArray`.
        a (M, K), b (K, N), c (M, N) or None, input_format: as :meth:`SystolicArray.run`.
        fault_map: the chip's :class:`FaultMap` (checked against the array).
        golden: the fault-free D (M, N) in C's dtype, if the caller has it (e.g.
            ``matmul(a, b, c, profile=array.profile)``); computed when None.

    Returns:
        D, (M, N), C's dtype (float32 when c is None).
    """
    if not isinstance(array, (SystolicArray, TensorCoreArray)):
        raise TypeError(f"array must be a SystolicArray or TensorCoreArray, not {type(array).__name__}")
    if not isinstance(fault_map, FaultMap):
        raise TypeError(f"fault_map must be a FaultMap, not {type(fault_map).__name__}")
    fmt, rule, acc_fmt, cc, (M, Kd, N) = array._prepare(a, b, c, input_format)
    sched = array._schedule(M, Kd, N, fmt, rule, acc_fmt)
    array._check_faults(sched, fault_map.faults)
    if sched.dataflow != "ws" or not sched.folds:
        return array.run(a, b, c, fault_map=fault_map, input_format=input_format).output
    fold_ops = isinstance(array, SystolicArray) and fmt.name != "tf32" and not fmt.container_shift and \
        fmt.width == 8 * fmt.uint_dtype.itemsize
    if isinstance(array, SystolicArray) and not fold_ops:
        return array.run(a, b, c, fault_map=fault_map, input_format=input_format).output
    gold = (matmul(a, b, cc, profile=array.profile, input_format=input_format) if golden is None
            else _check_golden(golden, (M, N), cc.dtype))
    plan = _plan(array, fault_map, M, Kd, N, fmt.name, acc_fmt.name, fold_ops)
    if not plan.touched:
        return np.array(gold, copy=True)
    ev, em, C, nkf, kstep, kept, allev = plan.ev, plan.em, array.cols, plan.nkf, plan.kstep, plan.kept, plan.allev
    bb = np.array(b, copy=True)
    if len(plan.w_k):
        u = bb.view(fmt.uint_dtype)
        mask = np.iinfo(u.dtype).max
        v = u[plan.w_k, plan.w_n]
        u[plan.w_k, plan.w_n] = (~v & (plan.w_z & mask).astype(u.dtype)) | (v & (plan.w_o & mask).astype(u.dtype))
    touched, a_ops, p_ops = plan.touched, plan.a_ops, plan.p_ops

    out = np.array(gold, copy=True)
    slow = [key for key in touched if key in kept]
    if isinstance(array, TensorCoreArray):
        # nothing folds: every touched column runs the kernel with all of its events
        if slow:
            _kernel_columns(out, array, _Operands.of(a, b, fmt, rule, acc_fmt), cc, acc_fmt, slow,
                            {key: allev[key] for key in slow}, ev, em, C, nkf)
        return out
    groups = {}    # signature of folded ``a`` operations -> [(nt, col)]
    for key in touched:
        if key not in kept:
            groups.setdefault(tuple(sorted(a_ops.get(key, ()))), []).append(key)
    with _one_thread():
        for sig, keys in groups.items():
            _group(out, a, bb, cc, sig, keys, fmt, p_ops, array, input_format, C, kstep, Kd)
    if slow:
        # the kernel on these columns with all of their events and the operands as
        # they are, plus witness columns so that the kernel takes the same
        # arithmetic as on the whole GEMM
        _kernel_columns(out, array, _Operands.of(a, b, fmt, rule, acc_fmt), cc, acc_fmt, sorted(set(slow)),
                        {key: allev[key] for key in set(slow)}, ev, em, C, nkf, _witnesses(b, cc, fmt, rule, C))
    return out


def _witnesses(b, cc, fmt, rule, C) -> list:
    """(N-tile, column) keys of the columns of B and C that decide the scalar-FMA
    kernel's binary32 shortcut for the whole GEMM (simulator._array._f32_exact: all
    values finite, the smallest and largest nonzero |b| against A's): a run on a
    subset of columns that includes them takes the same arithmetic."""
    bv, be = operand_arrays(b, fmt, rule)
    cols = set()
    bad = ~np.isfinite(bv).all(axis=0)
    if bad.any():
        cols.add(int(np.argmax(bad)))
    badc = ~np.isfinite(cc).all(axis=0)
    if badc.any():
        cols.add(int(np.argmax(badc)))
    nz = np.where(be != SENTINEL, np.abs(bv), np.nan)
    if not np.isnan(nz).all():
        cols.add(int(np.unravel_index(np.nanargmin(nz), nz.shape)[1]))
        cols.add(int(np.unravel_index(np.nanargmax(nz), nz.shape)[1]))
    return [divmod(n, C) for n in sorted(cols)]


def _group(out, a, bb, cc, sig, keys, fmt, p_ops, array, input_format, C, kstep, Kd) -> None:
    """The columns ``keys`` that meet the folded ``a`` operations ``sig`` (B's folded
    ``w`` operations already in ``bb``), written into ``out``."""
    ag = a
    if sig:  # one op per (kf, r): the fold's K position; all of them in one vector operation
        ag = np.array(a, copy=True)
        u = ag.view(fmt.uint_dtype)
        t = u.dtype.type
        mask = np.iinfo(u.dtype).max
        ks = np.array([kf * kstep + r for kf, r, _, _ in sig], np.int64)
        z = np.array([t(z & mask) for _, _, z, _ in sig], u.dtype)
        o = np.array([t(o & mask) for _, _, _, o in sig], u.dtype)
        v = u[:, ks]
        u[:, ks] = (~v & z) | (v & o)
    _segmented(out, ag, bb, cc, keys, p_ops, array, input_format, C, kstep, Kd)


def _segmented(out, a, b, c, keys, p_ops, array, input_format, C, kstep, Kd) -> None:
    """Columns ``keys`` ((N-tile, PE column), ...) of D on the fast path: the array's
    FMA chain down K cut where a partial sum is stuck, the stuck bits applied to the
    float32 partial sums there (top PE row first), a NaN partial sum being the
    register's canonical quiet NaN (``AK.QNAN32``; a stuck bit may turn it into a
    number, which the chain then carries on).  Writes ``out``'s columns."""
    ns = np.array([nt * C + col for nt, col in keys], np.int64)
    cuts = {}
    for j, key in enumerate(keys):
        for kf, r, z, o in p_ops.get(key, ()):
            k = kf * kstep + r
            cuts.setdefault(min(k + 1, Kd), []).append((kf, r, j, z, o))  # idle rows: after the fold's last MAC
    acc = np.ascontiguousarray(c[:, ns])
    prev = 0
    for p in sorted(set(cuts) | {Kd}):
        if p > prev:
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf partial sums are expected here
                acc = matmul(a[:, prev:p], b[prev:p][:, ns], acc, profile=array.profile, input_format=input_format)
            prev = p
        for kf, r, j, z, o in sorted(cuts.get(p, ()), key=lambda q: (q[0], q[1])):
            u = acc[:, j].view(np.uint32).copy()
            u[np.isnan(acc[:, j])] = np.uint32(AK.QNAN32)  # the register's NaN, whatever sign the arithmetic gave
            acc[:, j] = _apply(u, z, o).view(np.float32)
    # a stuck bit after the last segment can leave a NaN of any payload: D holds the profile's NaN
    acc = to_output(acc, acc.dtype, get_format("fp32" if acc.dtype == np.float32 else "fp16"), array._profile)
    out[:, ns] = acc


def _kernel_columns(out, array, ops, cc, acc_fmt, keys, kept, ev, em, C, nkf, extra=()):
    """Columns ``keys`` of D by the array's kernel on a narrower array (as many PE
    columns as the widest N-tile's share of ``keys``), with the events ``kept`` moved
    to the new column positions; ``extra`` columns run along (without events) and are
    not written."""
    tiles = {}
    for nt, col in sorted(set(keys) | set(extra)):
        tiles.setdefault(nt, []).append(col)
    nts = sorted(tiles)
    width = max(len(v) for v in tiles.values())
    cols_idx, real = [], []
    write = set(keys)
    for t in nts:
        cs = tiles[t]
        cols_idx += [t * C + x for x in cs] + [t * C + cs[0]] * (width - len(cs))
        real += [(t, x) in write for x in cs] + [False] * (width - len(cs))
    cols_idx = np.array(cols_idx, np.int64)
    real = np.array(real, np.bool_)
    rows = []
    for ti, t in enumerate(nts):
        for j, x in enumerate(tiles[t]):
            for e in kept.get((t, x), ()):
                rows.append((e, ti * nkf + int(ev[e, AK.EV_FOLD]) % nkf, j))
    rows.sort(key=lambda q: (q[1], q[0]))  # by new fold, table order within it
    nfold = len(nts) * nkf
    sev = np.empty((len(rows), AK.EV_COLS), np.int64)
    sem = np.empty((len(rows), 3), np.uint64)
    for q, (e, f2, j) in enumerate(rows):
        sev[q] = ev[e]
        sev[q, AK.EV_FOLD], sev[q, AK.EV_C0], sev[q, AK.EV_C1] = f2, j, j + 1
        sem[q] = em[e]
    sptr = np.searchsorted(sev[:, AK.EV_FOLD], np.arange(nfold + 1)).astype(np.int64)
    sub = dataclasses.replace(array, cols=width)
    sops = dataclasses.replace(ops, bbits=np.ascontiguousarray(ops.bbits[:, cols_idx]),
                               bv=np.ascontiguousarray(ops.bv[:, cols_idx]),
                               be=np.ascontiguousarray(ops.be[:, cols_idx]))
    acc = cc[:, cols_idx].astype(np.float64)
    sub._kernel_run(sops, acc, sev, sem, sptr)
    res = to_output(acc, cc.dtype, acc_fmt, array._profile)
    out[:, cols_idx[real]] = res[:, real]
