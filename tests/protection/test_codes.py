"""The codes' stage models (Numba, masks, end-around carry) against their pure references."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protection import Residue, SecDed, parity, parity_ref, residue, residue_ref, secded_code
from protection._codes import STATUS_CORRECTED, STATUS_DETECTED, STATUS_OK

WORDS = st.integers(1, 64).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, (1 << w) - 1)))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 ** 64 - 1))
def test_parity_matches_reference(x):
    assert int(parity(np.uint64(x))) == parity_ref(x)


@settings(max_examples=300, deadline=None)
@given(WORDS, st.lists(st.integers(0, 200), max_size=3, unique=True))
def test_secded_matches_reference(word, flips):
    width, data = word
    code = secded_code(width)
    check = code.encode(data)
    assert check == code.encode_ref(data) == SecDed.reference(data, width)
    n = width + code.check_bits
    flips = [f % n for f in flips]
    flips = sorted(set(flips))
    d, c = data, check
    for f in flips:
        if f < width:
            d ^= 1 << f
        else:
            c ^= 1 << (f - width)
    got = code.decode(d, c)
    assert got == code.decode_ref(d, c)
    if len(flips) == 0:
        assert got == (data, STATUS_OK)
    elif len(flips) == 1:
        assert got == (data, STATUS_CORRECTED)  # corrects any single bit, data or check
    elif len(flips) == 2:
        assert got[1] == STATUS_DETECTED  # detects any two


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 ** 64 - 1), st.integers(2, 16))
def test_residue_matches_reference(x, k):
    assert int(residue(np.uint64(x), k)) == residue_ref(x, k) == Residue.reference(x, k)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 24 - 1), st.integers(0, 2 ** 24 - 1), st.lists(st.integers(0, 2 ** 28), min_size=1, max_size=17),
       st.integers(2, 8), st.integers(0, 47), st.integers(0, 31))
def test_residue_mac_checks(a, w, terms, k, pbit, sbit):
    """The multiplier and adder checks pass on correct results and catch any one flipped
    bit of the product or the sum (2**j is never a multiple of 2**k - 1)."""
    m = (1 << k) - 1
    p, total = a * w, sum(terms)
    assert Residue.reference_mac_check(a, w, p, tuple(terms), total, k)
    assert (int(residue(np.uint64(a), k)) * int(residue(np.uint64(w), k)) - int(residue(np.uint64(p), k))) % m == 0
    assert not Residue.reference_mac_check(a, w, p ^ (1 << pbit), tuple(terms), total, k)
    assert not Residue.reference_mac_check(a, w, p, tuple(terms), total ^ (1 << sbit), k)


def test_code_widths():
    assert secded_code(32).check_bits == 7 and secded_code(16).check_bits == 6 and secded_code(64).check_bits == 8
    with pytest.raises(ValueError, match="width must be an int in"):
        secded_code(65)
