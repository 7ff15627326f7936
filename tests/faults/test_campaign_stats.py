"""Sample sizes (Leveugle et al.), confidence intervals, the keyed permutation."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faults import clopper_pearson_interval, proportion_interval, sample_size, wilson_interval
from faults._stats import KeyedPermutation


def test_sample_size_known_values():
    # infinite-population limit t^2 p(1-p)/e^2: 384.1 -> 385 at 5 %, 95 %
    assert sample_size(10 ** 12, 0.05, 0.95) == 385
    assert sample_size(10 ** 12, 0.01, 0.99) == math.ceil(2.5758293035489 ** 2 * 0.25 / 1e-4)
    # Leveugle et al. Table: N = 10,000, e = 5 %, 95 % -> 370
    assert sample_size(10_000, 0.05, 0.95) == 370
    assert sample_size(1, 0.05, 0.95) == 1
    assert sample_size(50, 0.01, 0.99) <= 50
    assert sample_size(10 ** 9, 0.05, 0.95, p=0.1) < sample_size(10 ** 9, 0.05, 0.95)


@pytest.mark.parametrize("kw,exc", [(dict(population=0), ValueError), (dict(population=1.5), TypeError),
                                    (dict(population=10, margin=0), ValueError),
                                    (dict(population=10, confidence=1.0), ValueError),
                                    (dict(population=10, p="x"), TypeError)])
def test_sample_size_rejects(kw, exc):
    with pytest.raises(exc, match="must be"):
        sample_size(**kw)


def test_intervals():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and abs((lo + hi) / 2 - 0.5) < 1e-12
    cl, ch = clopper_pearson_interval(10, 20)
    assert cl < lo and ch > hi  # exact interval is the wider one
    assert clopper_pearson_interval(0, 10)[0] == 0.0 and clopper_pearson_interval(10, 10)[1] == 1.0
    assert proportion_interval(3, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="method must be"):
        proportion_interval(1, 2, method="normal")


def test_wilson_coverage():
    rng = np.random.default_rng(1)
    p, n = 0.1, 200
    k = rng.binomial(n, p, size=2000)
    cover = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(int(x), n) for x in k)])
    assert 0.93 <= cover <= 0.97


@settings(max_examples=30)
@given(st.integers(1, 3000), st.integers(0, 2 ** 32))
def test_permutation_is_a_bijection(n, seed):
    p = KeyedPermutation(n, (seed, 0))
    img = [p(i) for i in range(n)]
    assert sorted(img) == list(range(n))
    assert KeyedPermutation(n, (seed, 0))(n - 1) == img[-1]  # a pure function of the key


def test_permutation_big_and_keyed():
    n = 10 ** 15 + 7
    a, b = KeyedPermutation(n, (0, 0)), KeyedPermutation(n, (1, 0))
    xs = [a(i) for i in range(200)]
    assert all(0 <= x < n for x in xs) and len(set(xs)) == 200
    assert xs != [b(i) for i in range(200)]
    with pytest.raises(ValueError, match="must be in"):
        a(n)
