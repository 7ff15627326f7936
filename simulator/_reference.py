"""Slow, obviously-correct reference of the datapath step, in exact rational arithmetic.

It shares nothing with the kernels but the frozen data (formats, profiles): every
value is a :class:`fractions.Fraction`, every alignment an integer division.  Tests
hold the Numba kernels to it.  Speed: some 1e4 products per second.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ._formats import Format, get_format
from ._profiles import StepRule

__all__ = ["reference_step", "reference_matmul", "round_fraction", "reference_general_step",
           "reference_general_matmul"]

_INF = float("inf")


def _floor_log2(q: Fraction) -> int:
    """floor(log2(q)) for a positive rational, exactly."""
    n, d = q.numerator, q.denominator
    e = n.bit_length() - d.bit_length()
    # now 2**(e-1) < n/d < 2**(e+1): pick the right side
    if (n << max(0, -e)) < (d << max(0, e)):
        e -= 1
    return e


def _align_exp(x: float, fmt: Format) -> int:
    """Alignment exponent of a nonzero finite value: floor(log2|x|), at least emin."""
    return max(_floor_log2(abs(Fraction(x))), fmt.emin)


def round_fraction(q: Fraction, man_bits: int, emin: int, max_finite: Fraction, mode: str,
                   overflow: str = "ieee"):
    """Round an exact rational to a binary format; returns a Fraction, or +-inf.

    ``man_bits`` mantissa bits, smallest normal exponent ``emin``, overflow past
    ``max_finite``: with ``overflow="ieee"`` round-to-nearest-even gives inf and
    round-toward-zero the largest finite value; with ``overflow="inf"`` both give inf.
    An exact zero gives ``Fraction(0)`` (positive zero).
    """
    if q == 0:
        return Fraction(0)
    s = -1 if q < 0 else 1
    m = abs(q)
    e = max(_floor_log2(m), emin)
    quantum = Fraction(2) ** (e - man_bits)
    r = m / quantum
    t = math.floor(r)
    if mode == "rne":
        rem = r - t
        if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and t % 2 == 1):
            t += 1
    v = t * quantum
    if v > max_finite:
        return s * _INF if (mode == "rne" or overflow == "inf") else s * max_finite
    return s * v


def _acc_target(acc: Format, rule: StepRule):
    """(man_bits, emin, max_finite, mode) of the step result in accumulator ``acc``."""
    if acc.name == "fp16":
        return acc.man_bits, acc.emin, Fraction(acc.max_finite), "rne", rule.overflow
    mb = rule.result_man_bits
    max_finite = Fraction((1 << (mb + 1)) - 1) * Fraction(2) ** (acc.emax - mb)
    return mb, acc.emin, max_finite, rule.rounding, rule.overflow


def reference_step(a, b, c: float, rule: StepRule, in_fmt, acc_fmt="fp32") -> float:
    """One fused step: returns ``round(sum_k a[k] * b[k] (+ c))`` as a Python float.

    Args:
        a, b: sequences of ``rule.k`` (or fewer) input values, exactly representable in
            ``in_fmt`` (binary64 floats).
        c: the accumulator value (exactly representable in ``acc_fmt``).
        rule: the step's :class:`StepRule`.
    Returns a float (NaN for an invalid result; the caller encodes NaN bits).
    """
    in_fmt, acc_fmt = get_format(in_fmt), get_format(acc_fmt)
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    c_fused = rule.c_mode == "fused"
    # IEEE special values first: NaN in, inf * 0, inf - inf.  C takes part here only
    # when it is fused; added after, it meets the products' result in an IEEE addition
    infs = set()
    for x, y in zip(a, b):
        if math.isnan(x) or math.isnan(y):
            return math.nan
        if math.isinf(x) or math.isinf(y):
            if x == 0 or y == 0:
                return math.nan
            infs.add(math.copysign(1.0, x) * math.copysign(1.0, y))
    if c_fused and math.isinf(c):
        infs.add(math.copysign(1.0, c))
    if math.isnan(c) or len(infs) == 2:
        return math.nan
    if infs:
        return infs.pop() * _INF + (0.0 if c_fused else c)

    fp32 = get_format("fp32")
    n_pass = max(rule.passes) + 1
    groups = [[] for _ in range(n_pass)]  # (exact value, alignment exponent) per pass
    for k, (x, y) in enumerate(zip(a, b)):
        if x != 0 and y != 0:
            groups[rule.passes[k % len(rule.passes)]].append(
                (Fraction(x) * Fraction(y), _align_exp(x, in_fmt) + _align_exp(y, in_fmt)))
    carried = Fraction(c) if c_fused else Fraction(0)  # the term each pass hands on
    carried_fmt = acc_fmt if c_fused else fp32
    for p, terms in enumerate(groups):
        if carried != 0:
            terms = terms + [(carried, _align_exp(float(carried), carried_fmt))]
        if not terms:
            total = Fraction(0)
        elif rule.frac_bits is None:
            total = sum(v for v, _ in terms)
        else:
            E = max(e for _, e in terms)
            quantum = Fraction(2) ** (E - rule.frac_bits)
            # truncation toward zero of the magnitude: int() of a Fraction truncates toward zero
            total = sum(int(v / quantum) for v, _ in terms) * quantum
        last = p == n_pass - 1
        out = round_fraction(total, *_acc_target(acc_fmt if (last and c_fused) else fp32, rule))
        if isinstance(out, float):  # overflow to inf: later passes keep it, C after adds to it
            return out if c_fused else out + c
        carried, carried_fmt = out, fp32
    if c_fused:
        if carried != 0:
            return float(carried)
        if rule.frac_bits is None:
            # IEEE 754 fused multiply-add: a zero result carries the sign of an exact
            # -0 + -0, or of a nonzero sum that underflowed; otherwise it is +0
            if total != 0:
                return math.copysign(0.0, total)
            prods = [math.copysign(1.0, x) * math.copysign(1.0, y) for x, y in zip(a, b)]
            if all(s < 0 for s in prods) and math.copysign(1.0, c) < 0:
                return -0.0
        return 0.0
    # C after: one binary32 round-to-nearest-even addition
    if math.isinf(c):
        return c
    if c == 0 and carried == 0:
        return 0.0
    out = round_fraction(carried + Fraction(c), fp32.man_bits, fp32.emin, Fraction(fp32.max_finite), "rne")
    if acc_fmt.name == "fp16" and not isinstance(out, float):
        out = round_fraction(Fraction(out), acc_fmt.man_bits, acc_fmt.emin, Fraction(acc_fmt.max_finite), "rne")
    return float(out) if out != 0 else 0.0


def reference_matmul(a_vals, b_vals, c_vals, rule: StepRule, in_fmt, acc_fmt="fp32") -> np.ndarray:
    """D = A @ B + C by chained steps of ``rule.k`` along K, element by element.

    Args:
        a_vals: (M, K) binary64 values of the inputs; b_vals: (K, N); c_vals: (M, N)
            binary64 values of the accumulator.
    Returns (M, N) binary64 values of D (NaN for NaN results).
    """
    a_vals, b_vals, c_vals = (np.asarray(x, np.float64) for x in (a_vals, b_vals, c_vals))
    M, K = a_vals.shape
    N = b_vals.shape[1]
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            acc = float(c_vals[i, j])
            for k0 in range(0, K, rule.k):
                acc = reference_step(a_vals[i, k0:k0 + rule.k], b_vals[k0:k0 + rule.k, j], acc,
                                     rule, in_fmt, acc_fmt)
            out[i, j] = acc
    return out


# ---------------------------------------------------------------------------- issue 13: every field
def _floor_div_pow2(v: Fraction, q: Fraction, mode: str) -> int:
    """v / q rounded to an integer: ``"rd"`` floor, ``"rz"`` toward zero."""
    r = v / q
    return math.floor(r) if mode == "rd" else int(r)


def _pairwise_tree(p, flush):
    """MMA-Sim's pairwise sum of binary32 values (numpy float32: IEEE RNE)."""
    if len(p) == 1:
        s = p[0]
    else:
        m = len(p) // 2
        with np.errstate(all="ignore"):
            s = np.float32(_pairwise_tree(p[:m], flush) + _pairwise_tree(p[m:], flush))
    if flush and abs(s) < np.float32(2.0 ** -126):
        s = np.float32(s * np.float32(0.0))
    return s


def reference_general_step(a, b, c: float, rule: StepRule, a_fmt, b_fmt=None, acc_fmt="fp32",
                           sa=None, sb=None, scale_fmt=None) -> float:
    """One step under any rule (every issue-13 field), exactly; returns a float.

    a, b: the step's input values (binary64), of formats ``a_fmt`` and ``b_fmt``;
    sa, sb: each position's scale values (or None); c: the accumulator value.
    Inputs are taken as given (the ``"inputs"`` flush is :func:`reference_general_matmul`'s).
    """
    a_fmt = get_format(a_fmt)
    b_fmt = a_fmt if b_fmt is None else get_format(b_fmt)
    acc_fmt = get_format(acc_fmt)
    a = [float(x) for x in a]
    b = [float(x) for x in b]
    n = len(a)
    if rule.tree == "pairwise":
        with np.errstate(all="ignore"):
            leaves = []
            for x, y in zip(a, b):
                p = np.float32(np.float32(x) * np.float32(y))
                if x == 0 or y == 0:
                    p = np.float32(p + np.float32(0.0))  # fmaf(a, b, +0): an exact -0 is +0
                if "nodes" in rule.flush and abs(p) < np.float32(2.0 ** -126):
                    p = np.float32(p * np.float32(0.0))
                leaves.append(p)
            while len(leaves) & (len(leaves) - 1):
                leaves.append(np.float32(0.0))  # a partial step: zero products
            acc = np.float32(np.float32(c) + _pairwise_tree(leaves, "nodes" in rule.flush))
        if "accumulator" in rule.flush and abs(acc) < np.float32(2.0 ** -126):
            acc = np.float32(acc * np.float32(0.0))
        return float(acc)
    sa = [1.0] * n if sa is None else [float(x) for x in sa]
    sb = [1.0] * n if sb is None else [float(x) for x in sb]
    sfmt = get_format(scale_fmt) if scale_fmt is not None else None
    c_in = rule.c_mode != "after"
    # IEEE classes first, on the exact values
    vals = []
    with np.errstate(all="ignore"):
        special = 0.0
        for x, y, u, v in zip(a, b, sa, sb):
            p = x * y * u * v  # binary64: exact for finite terms, NaN/inf exactly when IEEE says so
            if not math.isfinite(p):
                special += p
            vals.append(p)
        if c_in and not math.isfinite(c):
            special += c
    if not math.isfinite(special):
        return special + (0.0 if c_in else c)
    if rule.product_overflow == "inf":
        big = [p for p in vals if abs(p) >= 2.0 ** 128]
        if big:
            signs = {p > 0 for p in big}
            return math.nan if len(signs) == 2 else (_INF if True in signs else -_INF)

    def ex(x, fmt):
        return None if x == 0 else _align_exp(x, fmt)

    def sx(x):
        return 0 if sfmt is None else _align_exp(x, sfmt)
    # terms: (exact value, alignment exponent or None = takes no part)
    terms = []
    z = rule.zero_exp
    if rule.group_k == 1:
        for x, y, u, v in zip(a, b, sa, sb):
            ea, eb = ex(x, a_fmt), ex(y, b_fmt)
            if ea is None or eb is None:
                e = None if z is None else (z if ea is None else ea) + (z if eb is None else eb) + sx(u) + sx(v)
                terms.append((Fraction(0), e))
            else:
                terms.append((Fraction(x) * Fraction(y) * Fraction(u) * Fraction(v), ea + eb + sx(u) + sx(v)))
    else:
        g = rule.group_k
        for g0 in range(0, n, g):
            gs = sum((Fraction(x) * Fraction(y) for x, y in zip(a[g0:g0 + g], b[g0:g0 + g])), Fraction(0))
            e = sx(sa[g0]) + sx(sb[g0])
            terms.append((gs * Fraction(sa[g0]) * Fraction(sb[g0]), None if (gs == 0 and z is None) else e))
    ce = ex(c, acc_fmt) if c != 0 else z
    F = rule.frac_bits
    if rule.c_mode == "aligned":
        P = max(rule.passes) + 1
        sums, exps = [], []
        for j in range(P):
            mem = [t for i, t in enumerate(terms) if rule.passes[i % len(rule.passes)] == j and t[1] is not None]
            if not mem:
                continue
            Ej = max(e for _, e in mem)
            sums.append(sum(int(v / Fraction(2) ** (Ej - F)) for v, _ in mem))
            exps.append(Ej)
        if exps:
            Ep = max(exps)
            Sp = sum(s_ if P == 1 else _floor_div_pow2(Fraction(s_), Fraction(2) ** (Ep - Ej), rule.merge_rounding)
                     for s_, Ej in zip(sums, exps))
        else:
            Ep, Sp = None, 0
        cands = [e for e in (Ep, ce) if e is not None]
        if not cands:
            return 0.0
        E = max(cands)
        SF, CF = rule.sum_frac_bits, rule.c_frac_bits
        S = 0
        if Ep is not None:
            S = _floor_div_pow2(Fraction(Sp) * Fraction(2) ** (SF - F), Fraction(2) ** (E - Ep), rule.align_rounding)
        Sc = _floor_div_pow2(Fraction(c), Fraction(2) ** (E - CF), rule.align_rounding)
        if rule.c_drop is not None and ce is not None and ce < E - rule.c_drop:
            Sc = 0
        total = (Fraction(S) + Fraction(Sc) * Fraction(2) ** (SF - CF)) * Fraction(2) ** (E - SF)
    else:
        live = [t for t in terms if t[1] is not None]
        if c_in and ce is not None:
            live.append((Fraction(c), ce))
        if not live:
            total = Fraction(0)
        else:
            E = max(e for _, e in live)
            q = Fraction(2) ** (E - F)
            total = sum(int(v / q) for v, _ in live) * q
    if rule.c_mode == "after":
        fp32 = get_format("fp32")
        x = round_fraction(total, *_acc_target(fp32, rule))
        if isinstance(x, float):
            return x + c
        out = round_fraction(x + Fraction(c), 23, -126, Fraction(fp32.max_finite), "rne")
        if acc_fmt.name == "fp16" and not isinstance(out, float):
            out = round_fraction(Fraction(out), acc_fmt.man_bits, acc_fmt.emin, Fraction(acc_fmt.max_finite), "rne")
        return float(out)
    out = round_fraction(total, *_acc_target(acc_fmt, rule))
    if out == 0 and total < 0 and rule.zero_result == "signed":
        return -0.0
    return float(out)


def reference_general_matmul(a_vals, b_vals, c_vals, rule: StepRule, a_fmt, b_fmt=None, acc_fmt="fp32",
                             sa_vals=None, sb_vals=None, scale_fmt=None) -> np.ndarray:
    """D = A @ B + C by chained :func:`reference_general_step` along K (and the
    ``"inputs"`` flush first).  sa_vals (M, K), sb_vals (K, N): per-position scale
    values (each block's scale repeated), or None.  Returns (M, N) binary64."""
    a_fmt = get_format(a_fmt)
    b_fmt = a_fmt if b_fmt is None else get_format(b_fmt)
    acc_fmt = get_format(acc_fmt)
    a_vals, b_vals, c_vals = (np.array(x, np.float64) for x in (a_vals, b_vals, c_vals))
    if "inputs" in rule.flush:
        for x, f in ((a_vals, a_fmt), (b_vals, b_fmt), (c_vals, acc_fmt)):
            x[np.abs(x) < f.smallest_normal] = 0.0
    M, K = a_vals.shape
    N = b_vals.shape[1]
    out = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            acc = float(c_vals[i, j])
            for k0 in range(0, K, rule.k):
                sl = slice(k0, k0 + rule.k)
                acc = reference_general_step(
                    a_vals[i, sl], b_vals[sl, j], acc, rule, a_fmt, b_fmt, acc_fmt,
                    None if sa_vals is None else sa_vals[i, sl], None if sb_vals is None else sb_vals[sl, j], scale_fmt)
            out[i, j] = acc
    return out
