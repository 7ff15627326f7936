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

__all__ = ["reference_step", "reference_matmul", "round_fraction"]

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
