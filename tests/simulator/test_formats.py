"""Number formats: properties, decode, encode, errors.

Oracles are independent of simulator._formats: ml_dtypes / numpy casts and finfo,
raw binary32 bit arithmetic for tf32, and a table oracle that rounds by searching the
sorted list of a format's finite values (taken from ml_dtypes views or bit arithmetic).
"""
import dataclasses

import ml_dtypes
import numpy as np
import pytest

import simulator
from simulator import FORMATS, ROUNDING_MODES, Format, get_format

# catalogue name -> numpy / ml_dtypes dtype (tf32 has none)
DTYPES = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "e2m1": np.dtype(ml_dtypes.float4_e2m1fn),
    "e2m3": np.dtype(ml_dtypes.float6_e2m3fn),
    "e3m2": np.dtype(ml_dtypes.float6_e3m2fn),
    "ue8m0": np.dtype(ml_dtypes.float8_e8m0fnu),
}
# ml_dtypes stores FP4/FP6 one code per byte, in the low bits: the codes of the format's width
WIDTH = {"e2m1": 4, "e2m3": 6, "e3m2": 6}
NEW = ["e4m3fnuz", "e5m2fnuz", "e2m1", "e2m3", "e3m2", "ue8m0"]
SMALL = [n for n in DTYPES if DTYPES[n].itemsize <= 2]  # every bit pattern is enumerable
# numpy warns when it casts NaN bit patterns between float types; the tests check NaNs explicitly
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")


def _f32(bits):
    return float(np.array([bits], np.uint32).view(np.float32)[0])


def _uint(nbits):
    return np.dtype(f"uint{nbits}")


def test_catalogue_has_the_issue_formats():
    assert set(FORMATS) == {"fp32", "tf32", "fp16", "bf16", "e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz",
                            "e2m1", "e2m3", "e3m2", "ue8m0", "ue4m3"}
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, Format) and fmt.name == name


# ---------------------------------------------------------------------------- properties
def _expected_properties(name):
    """Properties from ml_dtypes/numpy (or binary32 bit arithmetic for tf32)."""
    if name == "tf32":
        # binary32 with the low 13 mantissa bits cleared
        return dict(width=19, container=32, max_finite=_f32(0x7F7FE000), smallest_normal=_f32(0x00800000),
                    smallest_subnormal=_f32(0x00002000), nan_bits=0x7FC00000, inf_bits=0x7F800000,
                    max_bits=0x7F7FE000, emin=-126, emax=127)
    if name == "ue4m3":
        # E4M3 (fn) read without its sign: ml_dtypes' float8_e4m3fn on the non-negative half
        want = _expected_properties("e4m3")
        return {**want, "nan_bits": 0x7F}
    d = DTYPES[name]
    fi = np.finfo(d) if name in ("fp32", "fp16") else ml_dtypes.finfo(d)
    u = _uint(d.itemsize * 8)
    with np.errstate(invalid="ignore"):
        inf = np.array([np.inf], np.float32).astype(d)
    has_nan = name not in WIDTH
    return dict(
        width=WIDTH.get(name, d.itemsize * 8), container=d.itemsize * 8,
        max_finite=float(fi.max), smallest_normal=float(fi.smallest_normal),
        smallest_subnormal=float(fi.smallest_subnormal),
        nan_bits=int(np.array([np.nan], np.float32).astype(d).view(u)[0]) if has_nan else None,
        inf_bits=int(inf.view(u)[0]) if np.isinf(inf.astype(np.float64))[0] else None,
        max_bits=int(np.array([fi.max], d).view(u)[0]),
        emin=int(fi.minexp), emax=int(fi.maxexp) - 1,
    )


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_properties_match_independent_oracle(name):
    fmt, want = FORMATS[name], _expected_properties(name)
    assert fmt.width == want["width"]
    assert fmt.container_bits == want["container"]
    assert fmt.uint_dtype == _uint(want["container"])
    assert fmt.max_finite == want["max_finite"]
    assert fmt.smallest_normal == want["smallest_normal"]
    assert fmt.smallest_subnormal == want["smallest_subnormal"]
    assert fmt.emin == want["emin"] and fmt.emax == want["emax"]
    if want["nan_bits"] is None:
        assert not fmt.has_nan
        with pytest.raises(ValueError, match="NaN"):
            fmt.nan_bits
    else:
        assert fmt.has_nan and fmt.nan_bits == want["nan_bits"]
    assert fmt.max_bits == want["max_bits"]
    if want["inf_bits"] is None:
        assert not fmt.has_inf
        with pytest.raises(ValueError, match="infinity"):
            fmt.inf_bits
    else:
        assert fmt.has_inf
        assert fmt.inf_bits == want["inf_bits"]


def test_e4m3_is_the_fn_variant():
    e4m3 = FORMATS["e4m3"]
    assert e4m3.max_finite == 448.0
    assert e4m3.specials == "fn" and not e4m3.has_inf
    # exactly one NaN pattern per sign
    codes = np.arange(256, dtype=np.uint8)
    assert np.flatnonzero(np.isnan(e4m3.decode(codes))).tolist() == [0x7F, 0xFF]


# ---------------------------------------------------------------------------- decode
def _assert_same_values(got, want):
    """Equal as binary64 bit patterns (so -0 != +0), NaN positions equal."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    bad = np.flatnonzero(nan_g != nan_w)
    assert bad.size == 0, f"NaN mismatch at {bad[:10]}"
    diff = np.flatnonzero(got[~nan_w].view(np.uint64) != want[~nan_w].view(np.uint64))
    assert diff.size == 0, f"{diff.size} mismatches, e.g. {got[~nan_w][diff[:5]]} vs {want[~nan_w][diff[:5]]}"


@pytest.mark.parametrize("name", SMALL)
def test_decode_every_bit_pattern(name):
    d = DTYPES[name]
    codes = np.arange(1 << WIDTH.get(name, 8 * d.itemsize), dtype=_uint(8 * d.itemsize))
    _assert_same_values(FORMATS[name].decode(codes), codes.view(d).astype(np.float64))
    np.testing.assert_array_equal(FORMATS[name].all_bit_patterns(), codes)


def test_decode_every_tf32_pattern_and_ignores_low_bits():
    tf32 = FORMATS["tf32"]
    codes = np.arange(1 << 19, dtype=np.uint32) << np.uint32(13)
    want = codes.view(np.float32).astype(np.float64)
    _assert_same_values(tf32.decode(codes), want)
    rng = np.random.default_rng(1)
    noisy = codes | rng.integers(0, 1 << 13, codes.size, dtype=np.uint32)
    _assert_same_values(tf32.decode(noisy), want)


def test_decode_fp32_random_and_edge_patterns():
    rng = np.random.default_rng(2)
    edges = np.array([0, 1, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000, 0x7F800001, 0x7FC00000,
                      0x7FFFFFFF], np.uint32)
    bits = np.concatenate([edges, edges | np.uint32(0x80000000), rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint32)])
    _assert_same_values(FORMATS["fp32"].decode(bits), bits.view(np.float32).astype(np.float64))


def test_decode_keeps_shape_and_accepts_signed_ints():
    out = FORMATS["fp16"].decode(np.array([[0x3C00, 0x4000], [0xBC00, 0x0000]], np.int32))
    assert out.shape == (2, 2) and out.dtype == np.float64
    assert out.tolist() == [[1.0, 2.0], [-1.0, 0.0]]


def test_format_without_subnormals_flushes_them():
    ftz = Format("fp16_ftz", exp_bits=5, man_bits=10, bias=15, subnormals=False)
    vals = ftz.decode(np.array([0x0001, 0x03FF, 0x8001, 0x0400], np.uint16))
    assert vals[:3].tolist() == [0.0, 0.0, 0.0]
    assert np.signbit(vals).tolist() == [False, False, True, False]
    assert vals[3] == 2.0 ** -14
    enc = ftz.encode(np.array([2.0 ** -16, -2.0 ** -20, 2.0 ** -14]))
    assert enc.tolist() == [0x0000, 0x8000, 0x0400]


# ---------------------------------------------------------------------------- encode: round trip
@pytest.mark.parametrize("name", SMALL + ["tf32"])
def test_encode_round_trips_every_finite_pattern(name):
    fmt = FORMATS[name]
    if name == "tf32":
        codes = np.arange(1 << 19, dtype=np.uint32) << np.uint32(13)
        vals = codes.view(np.float32)
    else:
        codes = np.arange(1 << fmt.width, dtype=fmt.uint_dtype)
        vals = codes.view(DTYPES[name])
    v64 = vals.astype(np.float64)
    fin = np.isfinite(v64)
    sign = np.uint64(1) << np.uint64(fmt.width - 1 + fmt.container_shift)
    for x in (v64, vals.astype(np.float32)):  # from binary64 and from binary32
        for rounding in ROUNDING_MODES:
            for saturate in (False, True):
                got = fmt.encode(x, rounding, saturate)
                assert got.dtype == fmt.uint_dtype
                np.testing.assert_array_equal(got[fin], codes[fin])
                # NaN -> the format's NaN bits with the input's sign
                nan = np.isnan(v64)
                if not nan.any():
                    assert not fmt.has_nan or name == "ue8m0"  # E8M0's NaN is checked below
                    continue
                want_nan = np.where(np.signbit(v64[nan]), fmt.nan_bits | int(sign), fmt.nan_bits)
                np.testing.assert_array_equal(got[nan].astype(np.uint64), want_nan.astype(np.uint64))


def test_encode_round_trips_fp32_patterns():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 1 << 32, 1 << 18, dtype=np.uint32)
    x = bits.view(np.float32)
    fin = np.isfinite(x)
    for rounding in ROUNDING_MODES:
        got = FORMATS["fp32"].encode(x.astype(np.float64), rounding)
        np.testing.assert_array_equal(got[fin], bits[fin])
        assert np.isnan(got[~np.isinf(x) & ~fin].view(np.float32)).all()


# ---------------------------------------------------------------------------- encode: oracle
class TableOracle:
    """Round binary64 values into a format by searching its sorted finite values.

    Values come from ml_dtypes views (or binary32 bit arithmetic for tf32), never
    from simulator._formats.
    """

    def __init__(self, name):
        self.name = name
        if name == "tf32":
            codes = np.arange(1 << 18, dtype=np.uint64)  # all non-negative codes
            vals = (codes.astype(np.uint32) << np.uint32(13)).view(np.float32).astype(np.float64)
            self.width, self.shift = 19, 13
            self.nan = 0x7FC00000 >> 13
            self.inf = 0x7F800000 >> 13
        else:
            d = DTYPES[name]
            self.width, self.shift = d.itemsize * 8, 0
            codes = np.arange(1 << (self.width - 1), dtype=np.uint64)
            vals = codes.astype(_uint(self.width)).view(d).astype(np.float64)
            self.nan = int(np.array([np.nan], np.float32).astype(d).view(_uint(self.width))[0])
            inf = np.array([np.inf], np.float32).astype(d)
            self.inf = int(inf.view(_uint(self.width))[0]) if np.isinf(inf.astype(float))[0] else None
        fin = np.isfinite(vals)
        # finite non-negative codes are 0..max_code in increasing order of value
        self.max_code = int(np.flatnonzero(fin).max())
        assert fin[: self.max_code + 1].all()
        v = vals[: self.max_code + 1]
        assert (np.diff(v) > 0).all()
        # a virtual next value (code max_code + 1) past the largest finite one
        self.vals = np.append(v, v[-1] + (v[-1] - v[-2]))

    def encode(self, x, rounding, saturate=False):
        x = np.asarray(x, np.float64)
        ax = np.abs(x)
        top = self.vals.size - 1  # the virtual code
        i = np.clip(np.searchsorted(self.vals, np.where(np.isfinite(ax), ax, 0.0), side="right") - 1, 0, top)
        lo = self.vals[i]
        if rounding == "rz":
            code = np.minimum(i, self.max_code)  # RZ never overflows a finite value
        else:
            hi = self.vals[np.minimum(i + 1, top)]
            mid = (lo + hi) / 2  # exact: these formats have few significand bits
            up = (ax > mid) | ((ax == mid) & (i % 2 == 1))
            code = np.where((ax > lo) & up, i + 1, i)
            code = np.where(ax > self.vals[top], top, code)
        overflow_code = self.max_code if saturate else (self.inf if self.inf is not None else self.nan)
        code = np.where(code > self.max_code, overflow_code, code)
        inf_code = self.max_code if saturate else (self.inf if self.inf is not None else self.nan)
        code = np.where(np.isinf(x), inf_code, code)
        code = np.where(np.isnan(x), self.nan, code).astype(np.uint64)
        code |= np.signbit(x).astype(np.uint64) << np.uint64(self.width - 1)
        return code << np.uint64(self.shift)


def _binary32_sample(name, n, seed):
    """~n binary32 values: every pattern, the format's exponent range, ties, specials."""
    rng = np.random.default_rng(seed)
    oracle = TableOracle(name)
    parts = [rng.integers(0, 1 << 32, n // 4, dtype=np.uint32).view(np.float32)]
    # exponents across the format's whole range and a little beyond, random 24-bit significands
    lo_e = int(np.log2(oracle.vals[1])) - 4
    hi_e = int(np.log2(oracle.vals[-2])) + 3
    m = n // 3
    e = rng.integers(max(lo_e, -149), min(hi_e, 127) + 1, m)
    sig = 1.0 + rng.integers(0, 1 << 23, m) / float(1 << 23)
    parts.append(np.ldexp(sig, e).astype(np.float32))
    # exact ties between neighbours (including max_finite / the overflow point) and their neighbours
    v = oracle.vals
    idx = rng.integers(0, v.size - 1, n // 4)
    mid = (v[idx] + v[idx + 1]) / 2
    mid32 = mid.astype(np.float32)
    ok = mid32.astype(np.float64) == mid  # binary32 holds the midpoint
    mid32 = mid32[ok]
    parts += [mid32, np.nextafter(mid32, np.float32(0)), np.nextafter(mid32, np.float32(np.inf))]
    special = np.array([0.0, np.inf, np.nan, v[-2], (v[-2] + v[-1]) / 2, v[-1], v[1], v[1] / 2,
                        v[1] * 0.75, v[1] / 4, 3.4028234663852886e38, 1.401298464324817e-45], np.float64)
    with np.errstate(over="ignore"):  # tf32's virtual next value is 2**128
        parts.append(special.astype(np.float32))
    x = np.concatenate(parts)
    sign = rng.integers(0, 2, x.size).astype(bool)
    return np.where(sign, -x, x).astype(np.float32)


def _assert_bits_equal(got, want, x):
    got = np.asarray(got).astype(np.uint64)
    want = np.asarray(want).astype(np.uint64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} of {x.size} differ, e.g. x={x[bad[:5]].tolist()} "
                           f"got={[hex(int(g)) for g in got[bad[:5]]]} want={[hex(int(w)) for w in want[bad[:5]]]}")


@pytest.mark.parametrize("name", ["fp16", "bf16", "e4m3", "e5m2"])
def test_encode_rne_matches_ml_dtypes_on_a_million_binary32_values(name):
    d, fmt = DTYPES[name], FORMATS[name]
    x = _binary32_sample(name, 1_000_000, seed=hash(name) % 1000)
    assert x.size >= 900_000
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(d)
    want_bits = want.view(fmt.uint_dtype)
    got = fmt.encode(x)
    nan = np.isnan(want.astype(np.float32))
    _assert_bits_equal(got[~nan], want_bits[~nan], x[~nan])
    # NaN results (NaN in, or overflow in a format without inf): the NaN bits with the input's sign
    sign = np.uint64(1 << (fmt.width - 1))
    want_nan = np.where(np.signbit(x[nan]), np.uint64(fmt.nan_bits) | sign, np.uint64(fmt.nan_bits))
    _assert_bits_equal(got[nan], want_nan, x[nan])
    # and from binary64 the same values give the same bits
    _assert_bits_equal(fmt.encode(x.astype(np.float64)), got, x)


@pytest.mark.parametrize("name", ["fp16", "bf16", "e4m3", "e5m2", "tf32"])
def test_table_oracle_agrees_with_ml_dtypes_and_encode_rne_on_tf32(name):
    """The oracle itself is right (vs ml_dtypes); for tf32 (no ml_dtypes type) it checks encode."""
    x = _binary32_sample(name, 200_000, seed=7)
    oracle = TableOracle(name)
    if name == "tf32":
        _assert_bits_equal(FORMATS["tf32"].encode(x), oracle.encode(x, "rne"), x)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            want = x.astype(DTYPES[name])
        nan = np.isnan(want.astype(np.float32))  # numpy keeps NaN payloads: compare positions only
        got = oracle.encode(x, "rne")
        _assert_bits_equal(got[~nan], want.view(_uint(oracle.width))[~nan], x[~nan])
        assert (got[nan] & np.uint64(~(1 << (oracle.width - 1)) & 0xFFFF) == oracle.nan).all()


@pytest.mark.parametrize("name", ["fp16", "bf16", "e4m3", "e5m2", "tf32"])
@pytest.mark.parametrize("rounding,saturate", [("rz", False), ("rz", True), ("rne", True)])
def test_encode_rz_and_saturate_match_table_oracle(name, rounding, saturate):
    fmt, oracle = FORMATS[name], TableOracle(name)
    x = _binary32_sample(name, 200_000, seed=11)
    _assert_bits_equal(fmt.encode(x, rounding, saturate), oracle.encode(x, rounding, saturate), x)


@pytest.mark.parametrize("name", ["fp16", "bf16", "e4m3", "e5m2", "tf32"])
@pytest.mark.parametrize("rounding,saturate", [("rne", False), ("rz", False), ("rne", True), ("rz", True)])
def test_encode_binary64_inputs_match_table_oracle(name, rounding, saturate):
    """binary64 inputs carry more bits than binary32: no double rounding allowed."""
    fmt, oracle = FORMATS[name], TableOracle(name)
    rng = np.random.default_rng(13)
    v = oracle.vals
    idx = rng.integers(0, v.size - 1, 50_000)
    # points at, just around and randomly between neighbours (binary64 resolution)
    t = rng.random(idx.size)
    x = np.concatenate([v[idx] + t * (v[idx + 1] - v[idx]), (v[idx] + v[idx + 1]) / 2,
                        np.nextafter((v[idx] + v[idx + 1]) / 2, 0), np.nextafter((v[idx] + v[idx + 1]) / 2, np.inf),
                        [1e300, 1e-300, 5e-324, np.inf, np.nan]])
    x = np.where(rng.integers(0, 2, x.size).astype(bool), -x, x)
    _assert_bits_equal(fmt.encode(x, rounding, saturate), oracle.encode(x, rounding, saturate), x)


@pytest.mark.parametrize("rounding", ROUNDING_MODES)
@pytest.mark.parametrize("saturate", [False, True])
def test_encode_fp32_from_binary64(rounding, saturate):
    """Oracle: numpy's float64 -> float32 cast (RNE), stepped toward zero for RZ."""
    rng = np.random.default_rng(17)
    x = np.concatenate([np.ldexp(rng.random(200_000) + 0.5, rng.integers(-160, 135, 200_000)),
                        [3.4028235677973366e38, 3.4028235677973362e38, 1e39, np.inf, np.nan, 0.0,
                         2.0 ** -150, 2.0 ** -150 * 1.5, 2.0 ** -149]])
    x = np.where(rng.integers(0, 2, x.size).astype(bool), -x, x)
    with np.errstate(over="ignore"):
        r = x.astype(np.float32)
    if rounding == "rz":
        away = np.isfinite(x) & (np.abs(r.astype(np.float64)) > np.abs(x))
        r = np.where(away, np.nextafter(r, np.float32(0)), r)
    f32max = np.finfo(np.float32).max
    if saturate:
        r = np.where(np.isnan(x), r, np.clip(r, -f32max, f32max)).astype(np.float32)
    want = r.view(np.uint32).copy()
    want[np.isnan(x)] = np.where(np.signbit(x[np.isnan(x)]), 0xFFC00000, 0x7FC00000)
    _assert_bits_equal(FORMATS["fp32"].encode(x, rounding, saturate), want, x)


def test_encode_specific_values():
    fp16, e4m3, e5m2, bf16 = (FORMATS[n] for n in ("fp16", "e4m3", "e5m2", "bf16"))
    # ties to even
    assert fp16.encode(np.array([1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11])).tolist() == [0x3C00, 0x3C02]
    # overflow: RNE -> inf, RZ -> max, saturate -> max; fn format -> NaN
    assert fp16.encode(np.array([65520.0, 65519.0]), "rne").tolist() == [0x7C00, 0x7BFF]
    assert fp16.encode(np.array([1e6, -np.inf]), "rz").tolist() == [0x7BFF, 0xFC00]
    assert fp16.encode(np.array([1e6, -np.inf]), "rne", saturate=True).tolist() == [0x7BFF, 0xFBFF]
    assert e4m3.encode(np.array([464.0, 465.0, 1e9, np.inf])).tolist() == [0x7E, 0x7F, 0x7F, 0x7F]
    assert e4m3.encode(np.array([465.0, -np.inf]), saturate=True).tolist() == [0x7E, 0xFE]
    assert e5m2.encode(np.array([61440.0, 61439.0])).tolist() == [0x7C, 0x7B]
    # subnormals and signed zero
    assert bf16.encode(np.array([2.0 ** -133, -2.0 ** -134, -0.0])).tolist() == [0x0001, 0x8000, 0x8000]
    assert e4m3.encode(np.array([2.0 ** -9, 1.5 * 2.0 ** -9, 2.0 ** -10])).tolist() == [0x01, 0x02, 0x00]
    # shape and dtype are kept
    out = fp16.encode(np.ones((2, 3), np.float32))
    assert out.shape == (2, 3) and out.dtype == np.uint16


@pytest.mark.parametrize("name", ["fp16", "bf16", "e4m3", "e5m2"])
def test_round_returns_binary64_of_the_rounded_value(name):
    x = _binary32_sample(name, 20_000, seed=5)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(DTYPES[name]).astype(np.float64)
    _assert_same_values(FORMATS[name].round(x), want)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("rounding", ["rd", "RNE", "", None, 0])
def test_encode_rejects_bad_rounding(rounding):
    with pytest.raises(ValueError, match="rounding must be one of"):
        FORMATS["fp16"].encode(np.array([1.0]), rounding)


@pytest.mark.parametrize("x", [np.array([1, 2]), np.array([True]), np.array(["1.0"]), [1, 2]])
def test_encode_rejects_non_float_input(x):
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        FORMATS["fp16"].encode(x)


@pytest.mark.parametrize("bits", [np.array([1.0]), np.array(["a"]), np.array([1.5j])])
def test_decode_rejects_non_integer_bits(bits):
    with pytest.raises(TypeError, match="bits must be an integer array"):
        FORMATS["fp16"].decode(bits)


@pytest.mark.parametrize("name", ["fp32", "tf32"])
def test_all_bit_patterns_refuses_wide_formats(name):
    with pytest.raises(ValueError, match="at most 16 bits"):
        FORMATS[name].all_bit_patterns()


GOOD = dict(name="x", exp_bits=5, man_bits=10, bias=15)


@pytest.mark.parametrize("field,value,exc", [
    ("name", "", TypeError), ("name", 3, TypeError), ("name", None, TypeError),
    ("exp_bits", 1, ValueError), ("exp_bits", 12, ValueError), ("exp_bits", 5.0, ValueError),
    ("exp_bits", True, ValueError), ("exp_bits", "5", ValueError),
    ("man_bits", 53, ValueError), ("man_bits", 2.5, ValueError),
    ("man_bits", False, ValueError),
    ("bias", 0, ValueError), ("bias", 32, ValueError), ("bias", -1, ValueError), ("bias", 15.0, ValueError),
    ("specials", "fnz", ValueError), ("specials", None, ValueError), ("man_bits", 0, ValueError),
    ("signed", 1, TypeError), ("sign_ignored", "yes", TypeError), ("has_zero", None, TypeError),
    ("container_bits", 8, ValueError), ("container_bits", 12, ValueError), ("container_bits", 128, ValueError),
    ("container_shift", 1, ValueError), ("container_shift", 1.5, TypeError),
    ("container_shift", -1, ValueError), ("container_bits", 16.0, (TypeError, ValueError)),
    ("subnormals", "no", (TypeError, ValueError)),
])
def test_format_rejects_bad_fields(field, value, exc):
    # container_bits and container_shift are checked together: the message may name either
    with pytest.raises(exc, match="container" if field.startswith("container") else field):
        Format(**{**GOOD, field: value})


def test_format_is_frozen_and_hashable():
    fmt = FORMATS["fp16"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.man_bits = 3
    assert {fmt: 1}[Format("fp16", 5, 10, 15)] == 1
    assert Format("fp16", 5, 10, 15) == fmt


def test_get_format_names_aliases_and_errors():
    for alias, name in [("float16", "fp16"), ("half", "fp16"), ("bfloat16", "bf16"), ("BF16", "bf16"),
                        ("float8_e4m3fn", "e4m3"), ("e4m3fn", "e4m3"), ("float8_e5m2", "e5m2"),
                        ("float32", "fp32"), ("tf32", "tf32")]:
        assert get_format(alias) is FORMATS[name]
    assert get_format(FORMATS["e5m2"]) is FORMATS["e5m2"]
    with pytest.raises(ValueError, match="format must be one of"):
        get_format("fp64")
    with pytest.raises(TypeError, match="format must be a str or Format"):
        get_format(16)
    assert simulator.get_format is get_format


# ---------------------------------------------------------------------------- issue 13 formats
@pytest.mark.parametrize("name", NEW)
def test_new_formats_encode_rne_matches_ml_dtypes(name):
    """Round to nearest even from binary32, against ml_dtypes' casts (FP4/FP6 and fnuz
    saturate / give NaN on overflow as ml_dtypes does; FP4/FP6 refuse NaN inputs)."""
    fmt, d = FORMATS[name], DTYPES[name]
    rng = np.random.default_rng(len(name))
    e = rng.integers(fmt.emin - 6, min(fmt.emax + 3, 127), 200_000)
    x = np.ldexp(1.0 + rng.integers(0, 1 << 23, e.size) / float(1 << 23), e).astype(np.float32)
    fin = fmt.decode(fmt.all_bit_patterns())
    fin = np.unique(fin[np.isfinite(fin) & (fin >= 0)])
    mids = ((fin[1:] + fin[:-1]) / 2).astype(np.float32)  # exact ties
    x = np.concatenate([x, mids, fin.astype(np.float32), [0.0, np.inf]]).astype(np.float32)
    if fmt.signed:
        x = np.where(rng.integers(0, 2, x.size).astype(bool), -x, x).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(d).view(np.uint8)
    got = fmt.encode(x)
    if name == "ue8m0":
        keep = x > 0  # ml_dtypes and this agree on NaN for zero/negatives, checked below
        _assert_bits_equal(got[keep], want[keep], x[keep])
        assert (got[x <= 0] == 0xFF).all()
    else:
        _assert_bits_equal(got, want, x)


def test_fnuz_has_no_negative_zero_and_one_nan():
    for name in ("e4m3fnuz", "e5m2fnuz"):
        f = FORMATS[name]
        v = f.decode(f.all_bit_patterns())
        assert np.flatnonzero(np.isnan(v)).tolist() == [0x80] and not np.isinf(v).any()
        assert f.encode(np.array([-0.0, -2.0 ** -30, np.nan, -np.nan, 1e9])).tolist() == [0, 0, 0x80, 0x80, 0x80]
        assert f.encode(np.array([1e9, -1e9]), saturate=True).tolist() == [0x7F, 0xFF]
    assert FORMATS["e4m3fnuz"].max_finite == 240.0 and FORMATS["e5m2fnuz"].max_finite == 57344.0


def test_fp4_fp6_have_no_specials():
    e2m1 = FORMATS["e2m1"]
    assert e2m1.decode(np.arange(16, dtype=np.uint8)).tolist() == [
        0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
    assert e2m1.encode(np.array([7.0, 1e9, np.inf, -np.inf])).tolist() == [7, 7, 7, 15]
    with pytest.raises(ValueError, match="NaN"):
        e2m1.encode(np.array([np.nan]))
    assert FORMATS["e2m3"].max_finite == 7.5 and FORMATS["e3m2"].max_finite == 28.0


def test_scale_formats():
    e8 = FORMATS["ue8m0"]
    assert e8.width == 8 and not e8.signed and not e8.has_zero and e8.man_bits == 0
    codes = np.arange(256, dtype=np.uint8)
    v = e8.decode(codes)
    assert np.isnan(v[255]) and (v[:255] == np.ldexp(1.0, np.arange(255) - 127)).all()
    assert e8.encode(np.array([1.0, 1.5, 3.0, 2.0 ** -140, 0.0, -1.0, 2.0 ** 128])).tolist() == [
        127, 128, 129, 0, 255, 255, 255]
    ue4 = FORMATS["ue4m3"]
    e4 = FORMATS["e4m3"]
    np.testing.assert_array_equal(ue4.decode(codes[:255]), np.abs(e4.decode(codes[:255])))
    assert np.isnan(ue4.decode(np.array([0x7F, 0xFF], np.uint8))).all()
    assert ue4.encode(np.array([1.0, -0.0])).tolist() == [0x38, 0x00]
    assert ue4.encode(np.array([-1.0])).tolist() == [0x7F]  # no negative scales
