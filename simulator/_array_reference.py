"""Slow, obvious reference for the PE-array kernels: registers shuffled cycle by cycle.

Every PE register is a Python value that is latched at the end of each cycle from
the registers of the cycle before; faults act on the latched values at their cycles
(in start-cycle order); the fold ends when its last output has left the array, and
the cycles are counted by stepping.  The arithmetic is the kernels' own stage
functions (:mod:`simulator._array_kernels`), so what this checks is the schedule:
skew, pipeline timing, folds, and where and when a fault lands.  For tiles of a few
PEs and a few dozen items; the tests compare it with the kernels bit for bit.
"""
from __future__ import annotations

import numpy as np

from . import _array_kernels as AK
from ._kernels import SENTINEL
from ._pe import pass_layout, reg_code


class _Ctx:
    def __init__(self, array, plan, fmt, acc_fmt, sp):
        self.plan, self.fmt, self.acc_fmt, self.sp = plan, fmt, acc_fmt, sp
        self.opf = AK.encoding(fmt)
        self.accf = AK.encoding(acc_fmt)
        self.f32 = AK.Encoding(np.int64(8), np.int64(23), np.int64(127), False)
        self.m2 = 2 * (fmt.man_bits + 1)
        self.sc = np.empty(3, np.float64)  # dpu_finish needs three
        self.su = self.sc.view(np.uint64)
        self.dpu = plan.step > 1 or type(array).__name__ == "TensorCoreArray"
        self.split = {}  # DPU registers stored per pass: name -> positions of each pass
        if self.dpu:
            rule = array._profile.rule(fmt.name)
            _, order, start = pass_layout(rule.k, rule.passes)
            self.pos = [[int(t) for t in order[start[q]:start[q + 1]]] for q in range(len(start) - 1)]
            self.split = {"a": self.pos, "prod": self.pos}

    # a register's whole value (all elements) at PE (r, c), whatever its storage
    def get(self, regs, name, r, c):
        if name not in self.split:
            return regs[name][r][c]["v"]
        full = [None] * self.plan.step
        for q, pos in enumerate(self.split[name]):
            for j, t in enumerate(pos):
                full[t] = regs[(name, q)][r][c]["v"][j]
        return full

    def set(self, regs, name, r, c, v):
        if name not in self.split:
            regs[name][r][c]["v"] = v
            return
        for q, pos in enumerate(self.split[name]):
            regs[(name, q)][r][c]["v"] = [v[t] for t in pos]

    # register content <-> bits, per element (the encodings of _array_kernels)
    def to_bits(self, reg, v):
        code = reg_code(reg)
        if code in (AK.REG_A, AK.REG_W):
            return list(v)
        if code == AK.REG_PROD:
            return [AK.prod_encode(p, e, self.m2) if np.isfinite(p) else None for p, e in v]
        if code == AK.REG_EMAX:
            return [AK.exp_encode(v)]
        if code == AK.REG_ALIGNED:
            return [AK.smag_encode(t, reg.elem_width) if np.isfinite(t) else None for t in v]
        if code == AK.REG_SUM:
            total, e = v
            if not np.isfinite(total):
                return [None]
            sw = reg.elem_width - AK.EXP_BITS
            return [(int(AK.exp_encode(e)) << sw) | int(AK.smag_encode(total, sw))]
        if code == AK.REG_X:
            return [AK.encode_ieee(v, self.f32)]
        return [AK.encode_ieee(v, self.accf)]

    def from_bits(self, reg, bits, old):
        code = reg_code(reg)
        if code in (AK.REG_A, AK.REG_W):
            return [int(b) for b in bits]
        if code == AK.REG_PROD:
            return [o if b is None else AK.prod_decode(np.uint64(b), self.m2) for b, o in zip(bits, old)]
        if code == AK.REG_EMAX:
            return int(AK.exp_decode(np.uint64(bits[0])))
        if code == AK.REG_ALIGNED:
            return [o if b is None else AK.smag_decode(np.uint64(b), reg.elem_width) for b, o in zip(bits, old)]
        if code == AK.REG_SUM:
            if bits[0] is None:
                return old
            sw = reg.elem_width - AK.EXP_BITS
            b = int(bits[0])
            return (AK.smag_decode(np.uint64(b & ((1 << sw) - 1)), sw), int(AK.exp_decode(np.uint64(b >> sw))))
        if code == AK.REG_X:
            return AK.decode_fp(np.uint64(bits[0]), self.f32)
        return AK.decode_fp(np.uint64(bits[0]), self.accf)

    def decode_op(self, bits):
        v = AK.decode_fp(np.uint64(bits), self.opf)
        # a zero operand counts with the rule's zero_exp (sp.c_zero; SENTINEL: no part)
        return v, int(self.sp.c_zero) if v == 0.0 else int(AK.operand_exp(np.uint64(bits), self.opf))

    def fma(self, p, c):
        return AK.fma_add(p, c, self.sp.out)

    def round_pass(self, total, e):
        return AK.dpu_round_pass(total, e, self.sp, self.sc, self.su)

    def finish(self, total, e, c):
        return AK.dpu_finish(total, e, c, self.sp, self.sc, self.su)




def _psum_in(regs, acc, r, c, m, n0, Cu):
    """The partial sum entering PE (r, c) for row m: C at the top row, else the PE above's."""
    if r == 0:
        return float(acc[m, n0 + c]) if c < Cu else 0.0
    x = regs["psum"][r - 1][c]
    assert x["tag"] == m, (x["tag"], m)
    return x["v"]


def _latch_ws_cycle(ctx, regs, new, faults, g, tr, acc, Cu, n0):
    """The end of weight-stationary cycle ``g`` (global): the faults acting then,
    the trace, then :func:`_end_ws_cycle`.  Returns how many outputs left."""
    _apply_faults(ctx, new, faults, g, list(ctx.plan.register_names))
    if tr:
        _trace_bits(ctx, new, list(tr), tr)
    return _end_ws_cycle(regs, new, acc, ctx.plan.rows, ctx.plan.cols, Cu, n0)


def _end_ws_cycle(regs, new, acc, R, C, Cu, n0):
    """End of a weight-stationary cycle: store what the bottom row latched into D and
    clear the tags of registers that were not rewritten (stale values must not fire
    again; the stationary ``w`` keeps its own).  Returns how many outputs left."""
    outs = 0
    for c in range(C):
        x = new["psum"][R - 1][c]
        if x["tag"] >= 0 and _fresh(regs["psum"][R - 1][c], x):
            outs += 1
            if c < Cu:
                acc[x["tag"], n0 + c] = x["v"]
    for name in regs:
        if name == "w":
            continue
        for r in range(R):
            for c in range(C):
                if not _fresh(regs[name][r][c], new[name][r][c]):
                    new[name][r][c]["tag"] = -1
    return outs

def _preload(new, regs, wtile, t, R, C):
    """Weight preload, cycle t < R: the weights for row R-1-t enter at the top, the rest shift down."""
    if t >= R:
        return
    for c in range(C):
        new["w"][0][c]["v"] = list(wtile[R - 1 - t][c])
        for r in range(1, R):
            new["w"][r][c]["v"] = list(regs["w"][r - 1][c]["v"])

def _apply_faults(ctx, regs, faults, g, names):
    """Act on the registers latched at global cycle g (faults sorted by start cycle)."""
    for f in faults:
        last = f.last_cycle
        if f.cycle <= g and (last is None or g <= last) and f.register in names:
            reg = ctx.plan.register(f.register)
            r, c = f.pe
            old = ctx.get(regs, f.register, r, c)
            bits = ctx.to_bits(reg, old)
            for b in range(f.bit, f.bit + f.nbits):
                j, m = b // reg.elem_width, 1 << (b % reg.elem_width)
                if bits[j] is None:
                    continue
                x = int(bits[j])
                x = x ^ m if f.kind == "flip" else (x & ~m if f.kind == "stuck0" else x | m)
                bits[j] = x
            ctx.set(regs, f.register, r, c, ctx.from_bits(reg, bits, old))


def _grid(R, C, v):
    return [[{"v": v, "tag": -1} for _ in range(C)] for _ in range(R)]


def _copy(g):
    return [[dict(x) for x in row] for row in g]


def _trace_bits(ctx, regs, trace, out):
    for name in trace:
        reg = ctx.plan.register(name)
        arr = np.zeros((ctx.plan.rows, ctx.plan.cols, reg.elems), np.uint64)
        for r in range(ctx.plan.rows):
            for c in range(ctx.plan.cols):
                for j, b in enumerate(ctx.to_bits(reg, ctx.get(regs, name, r, c))):
                    arr[r, c, j] = 0 if b is None else int(b)
        out[name].append(arr)


def step_run(array, plan, abits, bbits, acc, fmt, acc_fmt, sp, faults, trace):
    """Run a whole GEMM by stepping; returns (acc values, trace dict, cycles stepped)."""
    ctx = _Ctx(array, plan, fmt, acc_fmt, sp)
    for name in trace:
        if name not in plan.register_names:
            raise ValueError(f"trace names must be registers in {sorted(plan.register_names)}, not {name!r}")
    faults = sorted(faults, key=lambda f: f.cycle)  # stable: ties keep the caller's order
    tr = {name: [] for name in trace}
    acc = acc.copy()
    g = 0
    for f in range(plan.folds):
        if plan.dataflow == "ws" and ctx.dpu:
            g += _ws_dpu_fold(ctx, f, abits, bbits, acc, faults, g, tr)
        elif plan.dataflow == "ws":
            g += _ws_fold(ctx, f, abits, bbits, acc, faults, g, tr)
        else:
            g += _os_fold(ctx, f, abits, bbits, acc, faults, g, tr)
    return acc, {k: np.array(v) for k, v in tr.items()}, g


def _ws_fold(ctx, f, abits, bbits, acc, faults, g0, tr):
    """One weight-stationary fold of scalar-FMA PEs."""
    plan = ctx.plan
    R, C, M, Kd, N, k, S = plan.rows, plan.cols, plan.m, plan.k, plan.n, plan.step, plan.row_interval
    nkf = plan.k_folds
    nt, kf = divmod(f, nkf)
    n0, Ru, Cu = nt * C, plan.fold_rows[f], plan.fold_cols[f]
    kk = k  # operand elements per PE (1)

    def kcols(r):
        base = (kf * R + r) * k
        return [base + t for t in range(kk)]

    wtile = [[[int(bbits[q, n0 + c]) if (r < Ru and c < Cu and q < Kd) else 0 for q in kcols(r)]
              for c in range(C)] for r in range(R)]
    zero_ops = [0] * kk
    regs = {"a": _grid(R, C, zero_ops), "w": _grid(R, C, zero_ops)}
    for s in range(1, plan.depth):
        regs[f"prod{s}"] = _grid(R, C, [(0.0, SENTINEL)])
    regs["psum"] = _grid(R, C, 0.0)
    outs = 0
    t = 0
    while outs < M * C:
        new = {n: _copy(v) for n, v in regs.items()}
        _preload(new, regs, wtile, t, R, C)
        for r in range(R):
            m = t + 1 - R - r * S
            ok = 0 <= m < M
            new["a"][r][0] = {"v": ([int(abits[m, q]) if q < Kd and r < Ru else 0 for q in kcols(r)]
                                    if ok else zero_ops), "tag": m if ok else -1}
            for c in range(1, C):
                new["a"][r][c] = dict(regs["a"][r][c - 1])

        def psum_in(r, c, m):
            return _psum_in(regs, acc, r, c, m, n0, Cu)

        for r in range(R):
            for c in range(C):
                a = regs["a"][r][c]
                if a["tag"] >= 0:  # multiply
                    av, ea = ctx.decode_op(a["v"][0])
                    wv, ew = ctx.decode_op(regs["w"][r][c]["v"][0])
                    pe = ea + ew if (ea > -511 and ew > -511) else SENTINEL
                    prod = {"v": [(av * wv, pe)], "tag": a["tag"]}
                else:
                    prod = {"v": [(0.0, SENTINEL)], "tag": -1}
                for s in range(1, plan.depth):
                    new[f"prod{s}"][r][c] = prod
                    prod = regs[f"prod{s}"][r][c]
                if prod["tag"] >= 0:  # add
                    m = prod["tag"]
                    cin = psum_in(r, c, m)
                    v = ctx.fma(prod["v"][0][0], cin) if r < Ru else cin
                    new["psum"][r][c] = {"v": v, "tag": m}
        outs += _latch_ws_cycle(ctx, regs, new, faults, g0 + t, tr, acc, Cu, n0)
        regs = new
        t += 1
    return t


def _ws_dpu_fold(ctx, f, abits, bbits, acc, faults, g0, tr):
    """One weight-stationary fold of dot-product units, pass by pass (see ``_pe``)."""
    plan, sp = ctx.plan, ctx.sp
    R, C, M, Kd, N, k, S = plan.rows, plan.cols, plan.m, plan.k, plan.n, plan.step, plan.row_interval
    pos, P, L = ctx.pos, len(ctx.pos), 3  # L: cycles per pass (_pe.PASS_CYCLES)
    nkf = plan.k_folds
    nt, kf = divmod(f, nkf)
    n0, Ru, Cu = nt * C, plan.fold_rows[f], plan.fold_cols[f]
    fused = sp.c_fused

    def kbase(r):
        return (kf * R + r) * k

    wtile = [[[int(bbits[kbase(r) + t, n0 + c]) if (r < Ru and c < Cu and kbase(r) + t < Kd) else 0
               for t in range(k)] for c in range(C)] for r in range(R)]
    sfx = ["" if q == 0 else str(q) for q in range(P)]
    has_c = [fused if q == 0 else True for q in range(P)]
    regs = {"w": _grid(R, C, [0] * k), "psum": _grid(R, C, 0.0)}
    for q in range(P):
        regs[("a", q)] = _grid(R, C, [0] * len(pos[q]))
        regs[("prod", q)] = _grid(R, C, [(0.0, SENTINEL)] * len(pos[q]))
        regs["emax" + sfx[q]] = _grid(R, C, SENTINEL)
        regs["aligned" + sfx[q]] = _grid(R, C, [0.0] * (len(pos[q]) + has_c[q]))
        regs["sum" + sfx[q]] = _grid(R, C, (0.0, SENTINEL))
        if q < P - 1:
            regs[f"x{q + 1}"] = _grid(R, C, 0.0)
    outs = 0
    t = 0
    while outs < M * C:
        new = {n: _copy(v) for n, v in regs.items()}
        _preload(new, regs, wtile, t, R, C)
        for q in range(P):  # pass q's slice of A enters L*q cycles after pass 0's
            for r in range(R):
                m = t + 1 - R - r * S - L * q
                ok = 0 <= m < M
                new[("a", q)][r][0] = {"v": [int(abits[m, kbase(r) + p]) if ok and r < Ru and kbase(r) + p < Kd
                                             else 0 for p in pos[q]], "tag": m if ok else -1}
                for c in range(1, C):
                    new[("a", q)][r][c] = dict(regs[("a", q)][r][c - 1])

        def psum_in(r, c, m):
            return _psum_in(regs, acc, r, c, m, n0, Cu)

        for r in range(R):
            for c in range(C):
                for q in range(P):
                    kp = len(pos[q])
                    a = regs[("a", q)][r][c]
                    if a["tag"] >= 0:  # multiply (reads the stationary weights now)
                        pr = []
                        for j, p in enumerate(pos[q]):
                            av, ea = ctx.decode_op(a["v"][j])
                            wv, ew = ctx.decode_op(regs["w"][r][c]["v"][p])
                            pr.append((av * wv, ea + ew if (ea > -511 and ew > -511) else SENTINEL))
                        new[("prod", q)][r][c] = {"v": pr, "tag": a["tag"]}
                    x = regs[("prod", q)][r][c]
                    if x["tag"] >= 0:  # align, with the term carried in
                        m = x["tag"]
                        if q == 0:
                            cin = psum_in(r, c, m) if fused else 0.0
                            carried, emin = cin, sp.out.emin
                        else:
                            xr = regs[f"x{q}"][r][c]
                            assert xr["tag"] == m, (xr["tag"], m)
                            carried, emin, cin = xr["v"], sp.pas.emin, xr["cin"]
                        p = np.array([v for v, _ in x["v"]] + [0.0])
                        pe = np.array([e for _, e in x["v"]] + [0], np.int64)
                        terms = np.zeros(kp + 1)
                        e = AK.dpu_align(p, pe, kp, carried, has_c[q], sp.frac, emin, terms, ctx.sc, ctx.su,
                                         sp.c_zero if q == 0 else np.int64(SENTINEL))
                        new["emax" + sfx[q]][r][c] = {"v": int(e), "tag": m}
                        new["aligned" + sfx[q]][r][c] = {"v": list(terms[:kp + has_c[q]]), "tag": m, "cin": cin}
                    x = regs["aligned" + sfx[q]][r][c]
                    if x["tag"] >= 0:  # sum
                        terms = np.zeros(kp + 1)
                        terms[:len(x["v"])] = x["v"]
                        total = AK.dpu_sum(terms, kp, has_c[q])
                        new["sum" + sfx[q]][r][c] = {"v": (total, regs["emax" + sfx[q]][r][c]["v"]),
                                                     "tag": x["tag"], "cin": x["cin"]}
                    x = regs["sum" + sfx[q]][r][c]
                    if x["tag"] >= 0:  # round: into the next pass's x, or into psum
                        m = x["tag"]
                        if q < P - 1:
                            new[f"x{q + 1}"][r][c] = {"v": ctx.round_pass(*x["v"]), "tag": m, "cin": x["cin"]}
                        else:
                            cin = x["cin"] if fused else psum_in(r, c, m)
                            v = ctx.finish(x["v"][0], x["v"][1], cin) if r < Ru else cin
                            new["psum"][r][c] = {"v": v, "tag": m}
        outs += _latch_ws_cycle(ctx, regs, new, faults, g0 + t, tr, acc, Cu, n0)
        regs = new
        t += 1
    return t


def _fresh(old, new):
    """Whether a register latched a new item this cycle (its tag advanced)."""
    return new["tag"] >= 0 and new["tag"] != old["tag"]


def _os_fold(ctx, f, abits, bbits, acc, faults, g0, tr):
    plan = ctx.plan
    R, C, Kd, N, d = plan.rows, plan.cols, plan.k, plan.n, plan.depth
    mt, nt = divmod(f, plan.n_tiles)
    m0, n0, Ru, Cu = mt * R, nt * C, plan.fold_rows[f], plan.fold_cols[f]
    names = list(plan.register_names)
    regs = {"a": _grid(R, C, [0]), "b": _grid(R, C, [0]), "acc": _grid(R, C, 0.0)}
    for s in range(1, d):
        regs[f"prod{s}"] = _grid(R, C, [(0.0, SENTINEL)])
    for r in range(R):
        for c in range(C):
            regs["acc"][r][c]["v"] = float(acc[m0 + r, n0 + c]) if (r < Ru and c < Cu) else 0.0
    if Kd:  # item 0 reaches PE (0, 0) as the fold starts (latched in the cycle before)
        regs["a"][0][0] = {"v": [int(abits[m0, 0])], "tag": 0}
        regs["b"][0][0] = {"v": [int(bbits[0, n0]) if Cu else 0], "tag": 0}
    done = [[0] * C for _ in range(R)]
    t = 0
    drain = None  # first drain cycle, once every PE has accumulated all K
    read = 0
    while read < R:
        new = {n: _copy(v) for n, v in regs.items()}
        if drain is None:
            for r in range(R):
                k = t + 1 - r
                ok = 0 <= k < Kd
                new["a"][r][0] = {"v": [int(abits[m0 + r, k]) if ok and r < Ru else 0], "tag": k if ok else -1}
                for c in range(1, C):
                    new["a"][r][c] = dict(regs["a"][r][c - 1])
            for c in range(C):
                k = t + 1 - c
                ok = 0 <= k < Kd
                new["b"][0][c] = {"v": [int(bbits[k, n0 + c]) if ok and c < Cu else 0], "tag": k if ok else -1}
                for r in range(1, R):
                    new["b"][r][c] = dict(regs["b"][r - 1][c])
            for r in range(R):
                for c in range(C):
                    a, b = regs["a"][r][c], regs["b"][r][c]
                    if a["tag"] >= 0:
                        assert a["tag"] == b["tag"]
                        av, ea = ctx.decode_op(a["v"][0])
                        bv, eb = ctx.decode_op(b["v"][0])
                        prod = {"v": [(av * bv, ea + eb if (ea > -511 and eb > -511) else SENTINEL)], "tag": a["tag"]}
                    else:
                        prod = {"v": [(0.0, SENTINEL)], "tag": -1}
                    for s in range(1, d):
                        new[f"prod{s}"][r][c] = prod
                        prod = regs[f"prod{s}"][r][c]
                    if prod["tag"] >= 0:
                        new["acc"][r][c] = {"v": ctx.fma(prod["v"][0][0], regs["acc"][r][c]["v"]), "tag": prod["tag"]}
                        done[r][c] += 1
        else:
            j = t - drain
            for c in range(C):  # the bottom row is read out, the rest shifts down
                if R - 1 - j < Ru and c < Cu:
                    acc[m0 + R - 1 - j, n0 + c] = regs["acc"][R - 1][c]["v"]
                new["acc"][0][c] = {"v": 0.0, "tag": -1}
                for r in range(1, R):
                    new["acc"][r][c] = dict(regs["acc"][r - 1][c])
            read += 1
        _apply_faults(ctx, new, faults, g0 + t, names)
        if tr:
            _trace_bits(ctx, new, list(tr), tr)
        for name in names:
            if name.startswith("prod") or name in ("a", "b"):
                for r in range(R):
                    for c in range(C):
                        if not _fresh(regs[name][r][c], new[name][r][c]):
                            new[name][r][c]["tag"] = -1
        regs = new
        t += 1
        if drain is None and all(x == Kd for row in done for x in row):
            drain = t
    return t
