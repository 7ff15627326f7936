"""Statistics of fault-injection campaigns: sample sizes, confidence intervals, and a
keyed permutation that turns a trial index into a fault without replacement.

* :func:`sample_size` is the statistical fault-injection formula of Leveugle et al.
  (DATE 2009): the trials needed to estimate a proportion over a population of N
  fault sites within error margin ``e`` at a given confidence,
  ``n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p)))``, ``t`` the normal quantile.
* :func:`wilson_interval` and :func:`clopper_pearson_interval` bound a proportion.
* :class:`KeyedPermutation` is a bijection of ``[0, N)`` keyed by a seed (a Feistel
  network with cycle walking): trial ``i`` draws site ``perm(i)``, so the first n
  trials are n distinct sites (sampling without replacement, as the formula assumes)
  and trial ``i``'s fault is a pure function of ``(seed, i)``.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["sample_size", "wilson_interval", "clopper_pearson_interval", "proportion_interval",
           "KeyedPermutation", "CI_METHODS"]

#: Confidence-interval methods of :func:`proportion_interval`.
CI_METHODS = ("wilson", "clopper-pearson")


def _check_prob(name, v, lo_open=True, hi_open=True):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise TypeError(f"{name} must be a float, not {type(v).__name__}")
    if not ((0 < v) if lo_open else (0 <= v)) or not ((v < 1) if hi_open else (v <= 1)):
        rng = f"{'(' if lo_open else '['}0, 1{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {rng}, not {v}")


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def sample_size(population: int, margin: float = 0.05, confidence: float = 0.95, p: float = 0.5) -> int:
    """Trials for a statistical fault-injection campaign (Leveugle et al., DATE 2009).

    Args:
        population: N, the number of fault sites (>= 1).
        margin: e, the error margin on the estimated proportion, in (0, 1).
        confidence: confidence level in (0, 1) (0.95: t = 1.96).
        p: the anticipated proportion (0.5, the default, is the worst case).
    Returns:
        ``ceil(N / (1 + e^2 (N - 1) / (t^2 p (1 - p))))``, an int in [1, N].
    """
    if not isinstance(population, (int, np.integer)) or isinstance(population, bool):
        raise TypeError(f"population must be an int, not {type(population).__name__}")
    if population < 1:
        raise ValueError(f"population must be >= 1, not {population}")
    _check_prob("margin", margin)
    _check_prob("confidence", confidence)
    _check_prob("p", p)
    t = _z(confidence)
    n = population / (1 + margin ** 2 * (population - 1) / (t ** 2 * p * (1 - p)))
    return int(min(population, max(1, math.ceil(n - 1e-9))))


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple:
    """Wilson score interval (lo, hi) for ``successes`` out of ``n`` (floats allowed:
    weighted counts with an effective n).  ``n == 0`` gives (0.0, 1.0)."""
    _check_prob("confidence", confidence)
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    ph = min(max(successes / n, 0.0), 1.0)
    den = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def clopper_pearson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple:
    """Exact (Clopper-Pearson) interval (lo, hi); ``n == 0`` gives (0.0, 1.0)."""
    from scipy.stats import beta

    _check_prob("confidence", confidence)
    if n <= 0:
        return 0.0, 1.0
    a = 1 - confidence
    k = min(max(successes, 0.0), n)
    lo = 0.0 if k <= 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def proportion_interval(successes: float, n: float, confidence: float = 0.95, method: str = "wilson") -> tuple:
    """(lo, hi) by ``method``: ``"wilson"`` or ``"clopper-pearson"``."""
    if method == "wilson":
        return wilson_interval(successes, n, confidence)
    if method == "clopper-pearson":
        return clopper_pearson_interval(successes, n, confidence)
    raise ValueError(f"method must be one of {CI_METHODS}, not {method!r}")


_M64 = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64 finaliser on a Python int (64-bit)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


class KeyedPermutation:
    """A pseudo-random bijection of ``[0, size)``, a pure function of ``key``.

    A balanced Feistel network on ``2h`` bits (``4**h >= size``) with six rounds,
    its round keys drawn from ``numpy.random.SeedSequence(key)``; values that land
    outside ``[0, size)`` are permuted again (cycle walking), so the map stays a
    bijection of ``[0, size)``.  Python ints throughout: any size works.

    Args:
        size: N >= 1.
        key: a non-negative int or a tuple of them (e.g. ``(seed, stratum)``).
    """

    ROUNDS = 6

    def __init__(self, size: int, key):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size < 1:
            raise ValueError(f"size must be >= 1, not {size}")
        self.size = int(size)
        self.h = max(1, ((self.size - 1).bit_length() + 1) // 2)
        self.mask = (1 << self.h) - 1
        state = np.random.SeedSequence(key).generate_state(self.ROUNDS, np.uint64)
        self.keys = [int(k) for k in state]

    def _once(self, x: int) -> int:
        h, m = self.h, self.mask
        left, right = x >> h, x & m
        for k in self.keys:
            left, right = right, left ^ (_mix(right ^ k) & m)
        return (left << h) | right

    def __call__(self, i: int) -> int:
        """The image of ``i`` in ``[0, size)``."""
        if not 0 <= i < self.size:
            raise ValueError(f"i must be in [0, {self.size}), not {i}")
        x = self._once(int(i))
        while x >= self.size:
            x = self._once(x)
        return x
