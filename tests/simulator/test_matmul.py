"""The fast GEMM path: bit-exact against the slow reference, an FMA loop, split-K, errors.

Expected values never come from the code under test alone: the slow exact-rational
reference (simulator._reference, which shares only the frozen profile data with the
kernels), a plain np.float32 loop, or matmul itself applied to pieces of the problem
(chaining and split-K rules, stated in the issue and in matmul's docstring).
"""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import FORMATS, PROFILES, DatapathProfile, StepRule, matmul
from simulator._reference import reference_matmul, reference_step

DTYPES = {"fp16": np.dtype(np.float16), "bf16": np.dtype(ml_dtypes.bfloat16),
          "e4m3": np.dtype(ml_dtypes.float8_e4m3fn), "e5m2": np.dtype(ml_dtypes.float8_e5m2),
          "tf32": np.dtype(np.float32)}
ACC_DTYPES = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16)}
# the original vocabulary against the original reference (issue-13 rules: test_accelerators.py)
COMBOS = [(p, f, acc) for p in sorted(PROFILES) for f in sorted(PROFILES[p].rules)
          for acc in PROFILES[p].accumulators if f in DTYPES and PROFILES[p].rules[f].is_classic]

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy NaN/overflow casts in oracles


# ---------------------------------------------------------------------------- input generation
IN_MODES = ("bits", "finite", "normal", "subnormal", "special", "ints", "onebig")
C_MODES_ = ("zero", "negzero", "normal", "bits", "special", "tiny", "big", "ints")


def _uint(d):
    return np.dtype(f"uint{8 * np.dtype(d).itemsize}")


def _from_codes(codes, d):
    return codes.astype(_uint(d)).view(d)


def _finite_codes(rng, shape, d):
    """Uniform over a format's bit patterns, non-finite ones moved to finite ones."""
    w = 8 * np.dtype(d).itemsize
    codes = rng.integers(0, 1 << w, shape, dtype=np.uint64)
    bad = ~np.isfinite(_from_codes(codes, d).astype(np.float64))
    codes[bad] ^= np.uint64(1 << (w - 2))  # clear the top exponent bit
    return codes


def make_array(rng, shape, fmt, mode):
    """An input array (tf32: a float32 array, low bits included) drawn by ``mode``."""
    d = DTYPES[fmt]
    w = 8 * d.itemsize
    if mode == "bits":
        return _from_codes(rng.integers(0, 1 << w, shape, dtype=np.uint64), d)
    if mode == "finite":
        return _from_codes(_finite_codes(rng, shape, d), d)
    scale = 2.0 ** int(rng.integers(-4, 5))
    x = rng.standard_normal(shape) * scale
    if mode == "subnormal":
        # exponent field 0 (tf32: binary32 subnormals, whose low bits are cut off) in half the entries
        man_bits = 23 if fmt == "tf32" else FORMATS[fmt].man_bits
        sub = rng.integers(0, 1 << man_bits, shape, dtype=np.uint64)
        sub |= rng.integers(0, 2, shape, dtype=np.uint64) << np.uint64(w - 1)
        x = np.where(rng.random(shape) < 0.5, _from_codes(sub, d).astype(np.float64),
                     x * FORMATS[fmt].smallest_normal * 4)
    elif mode == "special":
        pick = rng.random(shape) < 0.15
        x = np.where(pick, rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]), shape), x)
    elif mode == "ints":
        x = rng.integers(-3, 4, shape).astype(np.float64)
    elif mode == "onebig":
        x.flat[int(rng.integers(0, x.size))] *= 2.0 ** int(rng.integers(4, 12))
    return x.astype(d)


def make_c(rng, shape, acc, mode):
    d = ACC_DTYPES[acc]
    if mode == "zero":
        return np.zeros(shape, d)
    if mode == "negzero":
        return np.full(shape, -0.0, d)
    if mode == "bits":
        return _from_codes(rng.integers(0, 1 << (8 * d.itemsize), shape, dtype=np.uint64), d)
    if mode == "ints":
        return rng.integers(-3, 4, shape).astype(d)
    x = rng.standard_normal(shape)
    if mode == "tiny":
        x *= 2.0 ** -20
    elif mode == "big":
        x *= 2.0 ** 20
    elif mode == "special":
        pick = rng.random(shape) < 0.2
        x = np.where(pick, rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]), shape), x)
    return x.astype(d)


@st.composite
def gemm_cases(draw, step=16, max_mn=5, max_k=70):
    M = draw(st.integers(1, max_mn))
    N = draw(st.integers(1, max_mn))
    edge = sorted({k for k in (step - 1, step, step + 1, 2 * step + 1, 3 * step - 1) if 1 <= k <= max_k})
    K = draw(st.one_of(st.integers(1, max_k), st.sampled_from(edge)))
    modes = (draw(st.sampled_from(IN_MODES)), draw(st.sampled_from(IN_MODES)), draw(st.sampled_from(C_MODES_)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return M, N, K, modes, seed


def build(case, fmt, acc):
    M, N, K, (ma, mb, mc), seed = case
    rng = np.random.default_rng(seed)
    return make_array(rng, (M, K), fmt, ma), make_array(rng, (K, N), fmt, mb), make_c(rng, (M, N), acc, mc)


# ---------------------------------------------------------------------------- oracles
def operand_values(x, fmt, rule):
    """Binary64 values the matrix unit sees (tf32: binary32 narrowed by bit arithmetic)."""
    if fmt != "tf32":
        return x.astype(np.float64)
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    if rule.operand_rounding == "rne":
        u = u + np.uint64(0xFFF) + ((u >> np.uint64(13)) & np.uint64(1))
    vals = (u & np.uint64(0xFFFFE000)).astype(np.uint32).view(np.float32).astype(np.float64)
    return np.where(np.isnan(x), np.nan, vals)


def expected_bits(a, b, c, prof, fmt):
    """Bits the reference says D has (NaN: the profile's NaN bits)."""
    acc = "fp32" if c.dtype == np.float32 else "fp16"
    rule = prof.rule(fmt)
    ref = reference_matmul(operand_values(a, fmt, rule), operand_values(b, fmt, rule),
                           c.astype(np.float64), rule, fmt, acc)
    out = ref.astype(c.dtype)
    fin = np.isfinite(ref)
    assert (out[fin].astype(np.float64) == ref[fin]).all(), "reference result not representable"
    bits = out.view(_uint(c.dtype)).copy()
    bits[np.isnan(ref)] = prof.nan_fp32 if acc == "fp32" else prof.nan_fp16
    return bits


def assert_bits(got, want_bits, context=""):
    got_bits = got.view(want_bits.dtype)
    bad = np.argwhere(got_bits != want_bits)
    assert bad.size == 0, (f"{len(bad)} of {want_bits.size} elements differ {context}: e.g. at {bad[0].tolist()} "
                           f"got {hex(int(got_bits[tuple(bad[0])]))} want {hex(int(want_bits[tuple(bad[0])]))}")


# ---------------------------------------------------------------------------- matmul == reference
@pytest.mark.parametrize("profile,fmt,acc", COMBOS)
@settings(max_examples=40)
@given(case=gemm_cases())
def test_matmul_equals_reference(profile, fmt, acc, case):
    prof = PROFILES[profile]
    a, b, c = build(case, fmt, acc)
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    c_before = c.copy()
    got = matmul(a, b, c, profile=profile, **kw)
    assert got.dtype == c.dtype and got.shape == c.shape
    assert_bits(got, expected_bits(a, b, c, prof, fmt), f"({profile}, {fmt}, {acc}, case={case})")
    np.testing.assert_array_equal(c.view(_uint(c.dtype)), c_before.view(_uint(c.dtype)))  # c untouched


@pytest.mark.parametrize("profile,fmt", [(p, f) for p, f, acc in COMBOS if acc == "fp32"])
def test_matmul_without_c_accumulates_from_positive_zero(profile, fmt):
    rng = np.random.default_rng(5)
    a, b = make_array(rng, (3, 37), fmt, "normal"), make_array(rng, (37, 4), fmt, "special")
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    got = matmul(a, b, profile=profile, **kw)
    assert got.dtype == np.float32
    assert_bits(got, expected_bits(a, b, np.zeros((3, 4), np.float32), PROFILES[profile], fmt))


# any data-driven rule, not only the catalogue's: kernels must read the rule's integers
@st.composite
def step_rules(draw):
    k = draw(st.integers(1, 40))
    if k == 1 and draw(st.booleans()):
        return StepRule(1, frac_bits=None, rounding=draw(st.sampled_from(["rz", "rne"])))
    divisors = [d for d in range(1, min(k, 8) + 1) if k % d == 0]
    L = draw(st.sampled_from(divisors))
    n_pass = draw(st.integers(1, L))
    passes = tuple(sorted(list(range(n_pass)) + [draw(st.integers(0, n_pass - 1)) for _ in range(L - n_pass)]))
    passes = tuple(draw(st.permutations(passes)))
    return StepRule(k, frac_bits=draw(st.integers(1, 26)), c_mode=draw(st.sampled_from(["fused", "after"])),
                    rounding=draw(st.sampled_from(["rz", "rne"])), result_man_bits=draw(st.integers(1, 23)),
                    operand_rounding=draw(st.sampled_from(["rz", "rne"])), passes=passes,
                    overflow=draw(st.sampled_from(["inf", "ieee"])))


@settings(max_examples=250)
@given(rule=step_rules(), fmt=st.sampled_from(sorted(DTYPES)), acc=st.sampled_from(["fp32", "fp16"]),
       case=gemm_cases(max_mn=4, max_k=50))
def test_matmul_equals_reference_for_any_step_rule(rule, fmt, acc, case):
    prof = DatapathProfile("custom", "a drawn rule", {fmt: rule}, nan_fp32=0x7FC00001, nan_fp16=0x7E01)
    a, b, c = build(case, fmt, acc)
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    got = matmul(a, b, c, profile=prof, **kw)
    assert_bits(got, expected_bits(a, b, c, prof, fmt), f"({rule}, {fmt}, {acc}, case={case})")


def test_exact_step_rule_honours_its_rounding_and_result_bits():
    """A frac_bits=None rule is an exact sum rounded once by the rule's rounding and result_man_bits.

    1 + 0.75 * 2**-23 (0.75 ulp above 1.0 in binary32): toward zero it is 1.0; with 10
    mantissa bits it is 1.0 under either rounding.
    """
    a = np.array([[0.75]], np.float16)
    b = np.array([[2.0 ** -23]], np.float16)
    c = np.array([[1.0]], np.float32)
    for rule in (StepRule(1, frac_bits=None, rounding="rz"), StepRule(1, frac_bits=None, rounding="rne",
                                                                      result_man_bits=10)):
        prof = DatapathProfile("fma_variant", "test", {"fp16": rule})
        assert reference_step([0.75], [2.0 ** -23], 1.0, rule, "fp16") == 1.0
        got = matmul(a, b, c, profile=prof)
        assert got.view(np.uint32)[0, 0] == 0x3F800000, (rule, hex(int(got.view(np.uint32)[0, 0])))
    # the catalogue's RNE binary32 FMA rounds the same sum up
    assert matmul(a, b, c, profile="systolic_fma").view(np.uint32)[0, 0] == 0x3F800001


def test_c_after_with_infinite_c_and_overflowing_products_is_nan():
    """c_mode="after": the products' sum is rounded to binary32 (here: overflow to +inf, the
    rule's overflow="inf"), then C = -inf is added: +inf + -inf is NaN."""
    rule = StepRule(2, frac_bits=25, c_mode="after")
    prof = DatapathProfile("after", "test", {"bf16": rule})
    a = np.full((1, 2), 2.0 ** 100, ml_dtypes.bfloat16)
    c = np.array([[-np.inf]], np.float32)
    got = matmul(a, a.T.copy(), c, profile=prof)
    assert got.view(np.uint32)[0, 0] == prof.nan_fp32
    assert np.isnan(reference_step([2.0 ** 100] * 2, [2.0 ** 100] * 2, -np.inf, rule, "bf16"))


# ---------------------------------------------------------------------------- chaining along K
@pytest.mark.parametrize("profile,fmt,acc", [c for c in COMBOS if c[0] in ("hopper", "ampere", "systolic_fma")])
def test_matmul_chains_instruction_steps_along_k(profile, fmt, acc):
    """D of each instruction-sized K slice is C of the next (the issue's GEMM main loop)."""
    step = PROFILES[profile].rule(fmt).k
    rng = np.random.default_rng(23)
    K = 5 * step + step // 2 + 1
    a, b = make_array(rng, (6, K), fmt, "normal"), make_array(rng, (K, 7), fmt, "onebig")
    c = make_c(rng, (6, 7), acc, "normal")
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    d = c
    for k0 in range(0, K, step):
        d = matmul(a[:, k0:k0 + step], b[k0:k0 + step], d, profile=profile, **kw)
    assert_bits(matmul(a, b, c, profile=profile, **kw), d.view(_uint(c.dtype)))


# ---------------------------------------------------------------------------- systolic_fma
def fma_loop(a, b, c):
    """A plain loop of np.float32 multiply-then-add along K (exact products)."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    out = c.astype(np.float32).copy()
    with np.errstate(all="ignore"):
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                acc = np.float32(out[i, j])
                for k in range(a.shape[1]):
                    acc = np.float32(acc + np.float32(a32[i, k] * b32[k, j]))
                out[i, j] = acc
    return out


def _fma_inputs(rng, fmt, shape, mode):
    if fmt == "bf16":  # keep products inside binary32's normal range
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(-50, 50, shape).astype(np.float64)
        if mode == "special":
            x = np.where(rng.random(shape) < 0.15, rng.choice(np.array([0.0, -0.0, np.inf, -np.inf, np.nan]),
                                                             shape), x)
        elif mode == "ints":
            x = rng.integers(-3, 4, shape).astype(np.float64)
        return x.astype(DTYPES[fmt])
    return make_array(rng, shape, fmt, mode)  # every finite product of these formats is a binary32 normal


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3", "e5m2"])
@settings(max_examples=60)
@given(M=st.integers(1, 8), N=st.integers(1, 8), K=st.integers(1, 100),
       mode=st.sampled_from(["finite", "normal", "special", "ints"]),
       c_mode=st.sampled_from(["zero", "negzero", "normal", "big", "bits", "special", "ints"]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_systolic_fma_equals_float32_loop(fmt, M, N, K, mode, c_mode, seed):
    rng = np.random.default_rng(seed)
    a, b = _fma_inputs(rng, fmt, (M, K), mode), _fma_inputs(rng, fmt, (K, N), mode)
    c = make_c(rng, (M, N), "fp32", c_mode)
    want = fma_loop(a, b, c)
    got = matmul(a, b, c, profile="systolic_fma")
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all()
    assert (got.view(np.uint32)[nan] == PROFILES["systolic_fma"].nan_fp32).all()
    assert_bits(got[~nan], want[~nan].view(np.uint32), f"({fmt}, case={(M, N, K, mode, c_mode, seed)})")


@settings(max_examples=25)
@given(M=st.integers(1, 5), N=st.integers(1, 5), K=st.integers(1, 40), seed=st.integers(0, 2 ** 32 - 1),
       c_scale=st.sampled_from([0.0, 2.0 ** -140, 2.0 ** -126, 2.0 ** -100]))
def test_systolic_fma_with_products_below_binary32_equals_reference(M, N, K, seed, c_scale):
    """Tiny bf16 products underflow binary32: the PE must still round the exact sum once."""
    rng = np.random.default_rng(seed)
    tiny = lambda shape: (rng.standard_normal(shape) * 2.0 ** rng.integers(-90, -55, shape)).astype(ml_dtypes.bfloat16)
    a, b = tiny((M, K)), tiny((K, N))
    a[0, 0] = b[0, 0] = 2.0 ** -75  # at least one product (2**-150) below binary32's subnormals
    c = (rng.standard_normal((M, N)) * c_scale).astype(np.float32)
    assert_bits(matmul(a, b, c, profile="systolic_fma"), expected_bits(a, b, c, PROFILES["systolic_fma"], "bf16"))


def test_systolic_fma_rounds_once_where_the_float32_loop_rounds_twice():
    """2**-75 * 2**-75 = 2**-150 is half binary32's smallest subnormal: a float32 multiply
    rounds it to 0 (tie to even), an FMA adds it exactly: 2**-149 + 2**-150 ties up to 2**-148."""
    a = np.array([[2.0 ** -75]], ml_dtypes.bfloat16)
    c = np.array([[2.0 ** -149]], np.float32)
    got = matmul(a, a.copy(), c, profile="systolic_fma")
    assert got[0, 0] == np.float32(2.0 ** -148)
    assert fma_loop(a, a, c)[0, 0] == np.float32(2.0 ** -149)


def test_systolic_fma_zero_sign_is_ieee_and_independent_of_other_elements():
    """(-0) * b + (-0) is -0 in IEEE binary32 FMA, whatever other elements hold.

    Row 0 is the same in both calls; row 1's product underflows binary32 in the second.
    """
    c = np.full((2, 1), -0.0, np.float32)
    b = np.array([[2.0 ** -100]], ml_dtypes.bfloat16)
    for other in (1.0, 2.0 ** -100):
        a = np.array([[-0.0], [other]], ml_dtypes.bfloat16)
        got = matmul(a, b, c, profile="systolic_fma")
        assert got.view(np.uint32)[0, 0] == 0x80000000, f"row 1 = {other}: row 0 gave {got[0, 0]!r}"
    rule = PROFILES["systolic_fma"].rule("bf16")
    assert np.signbit(reference_step([-0.0], [1.0], -0.0, rule, "bf16"))


# ---------------------------------------------------------------------------- split-K
SPLIT_COMBOS = [("hopper", "fp16", "fp32"), ("hopper", "fp16", "fp16"), ("hopper", "bf16", "fp32"),
                ("hopper", "tf32", "fp32"), ("hopper", "e4m3", "fp32"), ("hopper_wgmma", "e5m2", "fp32"),
                ("systolic_fma", "fp16", "fp32")]


def split_k_oracle(a, b, c, S, profile, kw):
    """The docstring's rule, from matmul on each chunk (each accumulated from zero)."""
    K = a.shape[1]
    ch = K // S
    parts = [matmul(a[:, s * ch:(s + 1) * ch], b[s * ch:(s + 1) * ch], np.zeros(c.shape, c.dtype),
                    profile=profile, **kw) for s in range(S)]
    with np.errstate(all="ignore"):
        total = parts[0].astype(np.float32)
        for p in parts[1:]:
            total = total + p.astype(np.float32)
        d = (total + c.astype(np.float32)).astype(c.dtype)
    bits = d.view(_uint(c.dtype)).copy()
    prof = PROFILES[profile]
    bits[np.isnan(d)] = prof.nan_fp32 if c.dtype == np.float32 else prof.nan_fp16
    return bits


@pytest.mark.parametrize("profile,fmt,acc", SPLIT_COMBOS)
@settings(max_examples=25)
@given(M=st.integers(1, 5), N=st.integers(1, 5), S=st.integers(2, 4), chunk=st.integers(1, 40),
       modes=st.tuples(st.sampled_from(IN_MODES), st.sampled_from(IN_MODES), st.sampled_from(C_MODES_)),
       seed=st.integers(0, 2 ** 32 - 1))
def test_split_k_follows_the_docstring_rule(profile, fmt, acc, M, N, S, chunk, modes, seed):
    a, b, c = build((M, N, S * chunk, modes, seed), fmt, acc)
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    got = matmul(a, b, c, profile=profile, split_k=S, **kw)
    assert got.dtype == c.dtype
    assert_bits(got, split_k_oracle(a, b, c, S, profile, kw))
    # split_k=1 (the default) is no split: C enters the first step, as in the plain chained GEMM
    assert_bits(matmul(a, b, c, profile=profile, split_k=1, **kw), matmul(a, b, c, profile=profile, **kw)
                .view(_uint(c.dtype)))


def test_split_k_really_changes_the_schedule():
    """Summing partials in binary32 RNE differs from chaining (RZ) for some inputs."""
    rng = np.random.default_rng(31)
    a = rng.standard_normal((8, 256)).astype(np.float16)
    b = rng.standard_normal((256, 8)).astype(np.float16)
    assert (matmul(a, b, split_k=4).view(np.uint32) != matmul(a, b).view(np.uint32)).any()
    np.testing.assert_array_equal(matmul(a, b, split_k=np.int64(4)), matmul(a, b, split_k=4))


# ---------------------------------------------------------------------------- specials, zeros, NaN bits
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "tf32", "e4m3", "e5m2"])
@pytest.mark.parametrize("acc", ["fp32", "fp16"])
def test_hopper_exact_zero_is_positive_even_when_c_is_negative_zero(fmt, acc):
    d = DTYPES[fmt]
    kw = dict(input_format="tf32") if fmt == "tf32" else {}
    K = 40
    c = np.full((3, 2), -0.0, ACC_DTYPES[acc])
    a = np.zeros((3, K), d)
    a[1] = -0.0
    a[2, :2] = [1.0, -1.0]  # products that cancel exactly
    b = np.ones((K, 2), d)
    b[:, 1] = -0.0
    got = matmul(a, b, c, profile="hopper", **kw)
    assert (got.view(_uint(got.dtype)) == 0).all(), got.view(_uint(got.dtype))
    # K = 0: no instruction runs, D is C
    got0 = matmul(np.zeros((3, 0), d), np.zeros((0, 2), d), c, profile="hopper", **kw)
    assert (got0.view(_uint(got0.dtype)) == c.view(_uint(c.dtype))).all()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_nan_results_carry_the_profile_nan_bits(profile):
    prof = PROFILES[profile]
    if "fp16" not in prof.rules:
        pytest.skip(f"{profile} takes no fp16 inputs")
    nan32 = 0x7FC00000 if prof.nan_fp32 is None else prof.nan_fp32  # host NaN: the quiet NaN
    nan16 = 0x7E00 if prof.nan_fp16 is None else prof.nan_fp16
    # NaN in; inf - inf; inf * 0; NaN C
    a = np.array([[np.nan, 1.0], [np.inf, 1.0], [1.0, np.inf], [1.0, 1.0]], np.float16)
    b = np.array([[1.0], [0.0]], np.float16)
    c = np.array([[0.0], [-np.inf], [0.0], [np.nan]], np.float32)
    got = matmul(a, b, c, profile=profile)
    assert (got.view(np.uint32) == nan32).all(), [hex(x) for x in got.view(np.uint32).ravel()]
    if "fp16" in prof.accumulators:
        got = matmul(a, b, c.astype(np.float16), profile=profile)
        assert (got.view(np.uint16) == nan16).all()
    # inf + finite stays inf with its sign
    got = matmul(np.array([[-np.inf, 1.0]], np.float16), np.array([[1.0], [2.0]], np.float16), profile=profile)
    assert got[0, 0] == -np.inf


def test_layouts_and_strides_do_not_matter():
    rng = np.random.default_rng(3)
    a = make_array(rng, (5, 40), "bf16", "normal")
    b = make_array(rng, (40, 6), "bf16", "normal")
    want = matmul(a, b)
    np.testing.assert_array_equal(matmul(np.asfortranarray(a), np.asfortranarray(b)), want)
    big = np.zeros((10, 80), a.dtype)
    big[::2, ::2] = a
    np.testing.assert_array_equal(matmul(big[::2, ::2], b), want)


# ---------------------------------------------------------------------------- argument validation
F16 = np.ones((2, 3), np.float16)
F16B = np.ones((3, 4), np.float16)


@pytest.mark.parametrize("args,kwargs,exc,match", [
    (([[1.0]], F16B), {}, TypeError, "a must be a numpy array"),
    ((F16, [[1.0]]), {}, TypeError, "b must be a numpy array"),
    ((np.ones(3, np.float16), F16B), {}, ValueError, "a must be 2-D"),
    ((F16, np.ones((1, 3, 4), np.float16)), {}, ValueError, "b must be 2-D"),
    ((F16, F16B.astype(ml_dtypes.bfloat16)), {}, TypeError, "a and b must have the same dtype"),
    ((F16.astype(np.float64), F16B.astype(np.float64)), {}, TypeError, "inputs must be"),
    ((F16.astype(np.int8), F16B.astype(np.int8)), {}, TypeError, "inputs must be"),
    ((F16.astype(np.float32), F16B.astype(np.float32)), {}, TypeError, "input_format"),
    ((F16.astype(np.float32), F16B.astype(np.float32)), dict(input_format="fp16"), TypeError, "input_format"),
    ((F16, F16B), dict(input_format="tf32"), TypeError, "input_format"),
    ((F16, F16B), dict(input_format="fp32"), TypeError, "input_format"),
    ((F16, F16B), dict(input_format="fp64"), ValueError, "input_format"),
    ((F16, F16B), dict(input_format=16), TypeError, "input_format"),
    ((F16, np.ones((4, 4), np.float16)), {}, ValueError, "b must have shape"),
    ((F16, F16B, np.ones((2, 4))), {}, TypeError, "c must be float32 or float16"),
    ((F16, F16B, np.ones((2, 4), ml_dtypes.bfloat16)), {}, TypeError, "c must be float32 or float16"),
    ((F16, F16B, np.ones((4, 2), np.float32)), {}, ValueError, "c must have shape"),
    ((F16, F16B, np.ones(8, np.float32)), {}, ValueError, "c must be 2-D"),
    ((F16, F16B, [[0.0] * 4] * 2), {}, TypeError, "c must be a numpy array"),
    ((F16, F16B), dict(split_k=0), ValueError, "split_k must be a positive divisor"),
    ((F16, F16B), dict(split_k=2), ValueError, "split_k must be a positive divisor"),
    ((F16, F16B), dict(split_k=-3), ValueError, "split_k must be a positive divisor"),
    ((F16, F16B), dict(split_k=3.0), TypeError, "split_k must be an int"),
    ((F16, F16B), dict(split_k=True), TypeError, "split_k must be an int"),
    ((F16, F16B), dict(split_k=None), TypeError, "split_k must be an int"),
    ((F16, F16B), dict(profile="h100"), ValueError, "profile must be one of"),
    ((F16, F16B), dict(profile=None), TypeError, "profile must be a str"),
    ((F16, F16B, np.ones((2, 4), np.float16)), dict(profile="systolic_fma"), ValueError, "accumulators"),
    ((F16.astype(ml_dtypes.bfloat16), F16B.astype(ml_dtypes.bfloat16)), dict(profile="volta"), ValueError,
     "supports input formats"),
])
def test_matmul_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        matmul(*args, **kwargs)


# ---------------------------------------------------------------------------- batches
def _batch_operand(rng, fmt_name, shape):
    """Random values of a format (as its numpy dtype, float32 for tf32/fp32) with
    zeros, subnormal-sized values and, where the format has them, inf and NaN."""
    fmt = FORMATS[fmt_name]
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-6, 6, shape))
    x[rng.random(shape) < 0.1] = 0.0
    x[rng.random(shape) < 0.05] = fmt.smallest_normal / 2
    if fmt.has_inf:
        x.flat[0] = np.inf
    if fmt.has_nan:
        x.flat[-1] = np.nan
    if fmt_name in ("tf32", "fp32"):
        return x.astype(np.float32)
    return fmt.encode(x, "rne", saturate=True).view(fmt.dtype)


BATCH_COMBOS = [(p, f, acc) for p, prof in sorted(PROFILES.items()) for f in prof.rules if "/" not in f
                for acc in prof.accumulators]


@pytest.mark.parametrize("profile,fmt,acc", BATCH_COMBOS)
def test_a_batch_equals_its_gemms_one_by_one(profile, fmt, acc):
    prof = PROFILES[profile]
    rng = np.random.default_rng(len(profile) * 31 + len(fmt))
    G, M, K, N = 3, 5, 64, 7
    a, b = _batch_operand(rng, fmt, (G, M, K)), _batch_operand(rng, fmt, (G, K, N))
    c = (rng.standard_normal((G, M, N))).astype(np.float32 if acc == "fp32" else np.float16)
    kw = {}
    if fmt in ("tf32", "fp32"):
        kw["input_format"] = fmt
    if fmt == "fp32" and "fp32" not in prof.rules:
        kw["precision"] = "x3"
    if prof.rule(fmt).group_k > 1:  # block-scaled rules: one scale per 32 (or 16) K positions
        blk = 16 if fmt == "e2m1" and prof.rule(fmt).group_k == 16 else 32
        kw["scale_a"] = rng.integers(120, 134, (G, M, K // blk)).astype(np.uint8)
        kw["scale_b"] = rng.integers(120, 134, (G, K // blk, N)).astype(np.uint8)
        kw["scale_format"] = "ue8m0"
    got = matmul(a, b, c, profile=profile, **kw)
    one = {k: v for k, v in kw.items() if k not in ("scale_a", "scale_b")}
    want = np.stack([matmul(a[g], b[g], c[g], profile=profile, **one,
                            **({"scale_a": kw["scale_a"][g], "scale_b": kw["scale_b"][g]} if "scale_a" in kw else {}))
                     for g in range(G)])
    assert got.shape == (G, M, N) and got.dtype == c.dtype
    assert_bits(got, want.view(_uint(c.dtype)), f"({profile}, {fmt}, {acc})")


def test_a_large_batch_runs_in_parallel_and_equals_its_gemms():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((24, 64, 32)).astype(np.float16)
    b = rng.standard_normal((24, 32, 64)).astype(np.float16)
    got = matmul(a, b)  # 24 * 64 * 32 * 64 MACs: above the serial threshold
    want = np.stack([matmul(a[g], b[g]) for g in range(24)])
    assert_bits(got, want.view(np.uint32))


@pytest.mark.parametrize("a_shape,b_shape,c_shape,match", [
    ((2, 4, 8), (3, 8, 4), None, "same number"),
    ((0, 4, 8), (0, 8, 4), None, "same number"),
    ((2, 4, 8), (8, 4), None, "b must be 3-D"),
    ((2, 4, 8), (2, 8, 4), (4, 4), "c must be 3-D"),
    ((2, 4, 8), (2, 8, 4), (3, 4, 4), "same number"),
    ((2, 4, 8), (2, 7, 4), None, "b must have shape"),
])
def test_batches_with_mismatched_shapes_are_refused(a_shape, b_shape, c_shape, match):
    c = None if c_shape is None else np.zeros(c_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        matmul(np.zeros(a_shape, np.float16), np.zeros(b_shape, np.float16), c)
