"""models.jax_matmul (the JAX engine, issue 15's first slice) equals simulator.matmul bit
for bit under jax.jit on CPU, for every (profile, format, accumulator) it supports; it
refuses the rest with a ValueError; it vmaps and needs no 64-bit types."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from models import JAX_INPUT_FORMATS, jax_matmul

# every (profile, input format, accumulator) of the catalogue the engine takes: the rules
# the classic fused kernel runs, 16-bit and FP8 inputs
SUPPORTED = [(p.name, f, acc) for p in simulator.PROFILES.values() for f in JAX_INPUT_FORMATS
             if f in p.rules and p.rules[f].frac_bits is not None and p.rules[f].classic_form
             for acc in p.accumulators]
M, K, N = 6, 37, 5  # K not a multiple of any step (4, 8, 16, 32)


def _signature(profile, fmt, acc):
    """What the engine reads of a profile for one GEMM: the rule, the accumulator, the NaN bits."""
    p = simulator.PROFILES[profile]
    return p.rules[fmt], fmt, acc, p.nan_fp32 if acc == "fp32" else p.nan_fp16


# profiles that hand the engine the same data (rtx_blackwell = blackwell, turing fp16 = ampere
# fp16, ...) are checked once, under the first profile's name (each compile costs ~1 s)
_FIRST = {}
for _case in SUPPORTED:
    _FIRST.setdefault(_signature(*_case), _case)
DISTINCT = list(_FIRST.values())


@functools.lru_cache(maxsize=None)
def _jitted(profile, input_format=None):
    return jax.jit(functools.partial(jax_matmul, profile=profile, input_format=input_format))


def _bits(x):
    x = np.asarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


def _check(profile, a, b, c):
    fmt = "tf32" if a.dtype == np.float32 else None  # float32 inputs: tf32, narrowed by the rule
    want = simulator.matmul(a, b, c, profile=profile, input_format=fmt)
    got = np.asarray(_jitted(profile, fmt)(a, b, c))
    assert got.dtype == want.dtype
    diff = np.flatnonzero(_bits(got) != _bits(want))
    assert diff.size == 0, (f"{profile} {a.dtype} acc {c.dtype}: {diff.size} of {want.size} differ, first at "
                            f"{np.unravel_index(diff[0], want.shape)}: got {got.flat[diff[0]]!r} "
                            f"want {want.flat[diff[0]]!r}")


def _specials(fmt):
    """Values of a format worth meeting: signed zeros, subnormals, the extremes, inf, NaN."""
    f = simulator.FORMATS[fmt]
    v = [0.0, -0.0, f.smallest_subnormal, -f.smallest_subnormal, f.smallest_normal, -3 * f.smallest_subnormal,
         f.max_finite, -f.max_finite, 1.0, -1.0]
    if f.has_inf:
        v += [np.inf, -np.inf]
    if f.has_nan:
        v += [np.nan]
    return np.array(v)


def _operands(rng, fmt, acc, special):
    dt = simulator.FORMATS[fmt].dtype
    f = simulator.FORMATS[fmt]
    # wide exponent ranges: alignment shifts of every size, subnormal products
    span = max(2, f.emax - f.emin)
    a = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-span // 2, span // 2, (M, K))
    b = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-span // 2, span // 2, (K, N))
    a, b = np.clip(a, -f.max_finite, f.max_finite), np.clip(b, -f.max_finite, f.max_finite)
    cdt = np.float32 if acc == "fp32" else np.float16
    c = rng.standard_normal((M, N)) * 2.0 ** rng.integers(-20, 20, (M, N))
    c = np.clip(c, -60000, 60000)
    if special:
        sv = _specials(fmt)
        a = np.where(rng.random(a.shape) < 0.15, rng.choice(sv, a.shape), a)
        b = np.where(rng.random(b.shape) < 0.1, rng.choice(sv, b.shape), b)
        # cancellation: row 0 of A against column 0 of B sums to zero before C
        a[0, 1::2] = a[0, 0:-1:2]
        b[1::2, 0] = -b[0:-1:2, 0]
        cs = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -2.0 ** -24, 2.0 ** -130])
        c = np.where(rng.random(c.shape) < 0.3, rng.choice(cs, c.shape), c)
    return a.astype(dt), b.astype(dt), c.astype(cdt)


def test_every_supported_case_is_checked():
    assert {_signature(*c) for c in SUPPORTED} == {_signature(*c) for c in DISTINCT}
    assert len(SUPPORTED) >= 40 and ("hopper", "e4m3", "fp16") in DISTINCT


@pytest.mark.parametrize("profile,fmt,acc", DISTINCT)
def test_equals_simulator(profile, fmt, acc):
    """Random normal, wide-range and special operands (inf, NaN, max finite, subnormals,
    signed zeros, cancellation), K not a multiple of the step."""
    rng = np.random.default_rng(abs(hash((profile, fmt, acc))) % 2 ** 32)
    for special in (False, True):
        _check(profile, *_operands(rng, fmt, acc, special))


@pytest.mark.parametrize("profile,fa,fb,acc", [
    ("hopper", "e4m3", "e5m2", "fp32"), ("hopper", "e5m2", "e4m3", "fp16"), ("ada", "e4m3", "e5m2", "fp32"),
    ("blackwell", "e5m2", "e4m3", "fp32"), ("hopper_wgmma", "e4m3", "e5m2", "fp16")])
def test_mixed_fp8_equals_simulator(profile, fa, fb, acc):
    """A and B of two FP8 formats of one rule (as simulator.matmul takes them)."""
    rng = np.random.default_rng(11)
    for special in (False, True):
        a, _, c = _operands(rng, fa, acc, special)
        _, b, _ = _operands(rng, fb, acc, special)
        _check(profile, a, b, c)


@pytest.mark.parametrize("profile,fmt,acc,split_k,how", [
    ("hopper", "fp16", "fp32", 4, "sequential"), ("hopper", "fp16", "fp32", 4, "butterfly"),
    ("hopper", "fp16", "fp32", 4, "pairwise"), ("hopper", "e4m3", "fp16", 2, "sequential"),
    ("ampere", "bf16", "fp16", 3, "sequential")])
def test_split_k_equals_simulator(profile, fmt, acc, split_k, how):
    rng = np.random.default_rng(5)
    f = jax.jit(functools.partial(jax_matmul, profile=profile, split_k=split_k, split_reduce=how))
    for special in (False, True):
        a, b, c = _operands(rng, fmt, acc, special)
        a, b = np.concatenate([a, a[:, :11]], axis=1), np.concatenate([b, b[:11]], axis=0)  # K = 48
        want = simulator.matmul(a, b, c, profile=profile, split_k=split_k, split_reduce=how)
        assert (_bits(np.asarray(f(a, b, c))) == _bits(want)).all()


_HYP_CASES = [("hopper", "fp16", "fp32"), ("hopper", "e4m3", "fp16"), ("blackwell", "bf16", "fp32"),
              ("ada", "e5m2", "fp32"), ("ampere", "tf32", "fp16")]


@settings(max_examples=15)
@given(case=st.sampled_from(_HYP_CASES), seed=st.integers(0, 2 ** 32 - 1), special=st.booleans())
def test_hypothesis_random_codes(case, seed, special):
    """Operands as random bit patterns (every code: NaNs, infs, subnormals included) or
    random values; C random bits of the accumulator."""
    profile, fmt, acc = case
    rng = np.random.default_rng(seed)
    f = simulator.FORMATS[fmt]
    if special:
        hi = 1 << f.container_bits  # every bit of the container (tf32: the low 13 bits too)
        a = rng.integers(0, hi, (M, K), dtype=np.uint64).astype(f.uint_dtype).view(f.dtype)
        b = rng.integers(0, hi, (K, N), dtype=np.uint64).astype(f.uint_dtype).view(f.dtype)
        cu = np.uint32 if acc == "fp32" else np.uint16
        c = rng.integers(0, np.iinfo(cu).max, (M, N), dtype=np.uint64).astype(cu)
        c = c.view(np.float32 if acc == "fp32" else np.float16)
    else:
        a, b, c = _operands(rng, fmt, acc, False)
    _check(profile, a, b, c)


def test_many_columns():
    """More columns than one CPU column block (128): the blocks, the last one partial."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 40)).astype(np.float16)
    b = rng.standard_normal((40, 300)).astype(np.float16)
    c = rng.standard_normal((3, 300)).astype(np.float32)
    _check("hopper", a, b, c)


def test_c_none_and_k_zero():
    a = np.ones((3, 20), np.float16)
    b = np.full((20, 2), -0.5, np.float16)
    np.testing.assert_array_equal(np.asarray(_jitted("hopper")(a, b, None)),
                                  simulator.matmul(a, b, profile="hopper"))
    c = np.array([[1.0, np.nan]], np.float32)
    got = np.asarray(jax_matmul(np.zeros((1, 0), np.float16), np.zeros((0, 2), np.float16), c))
    assert _bits(got).tolist() == _bits(simulator.matmul(np.zeros((1, 0), np.float16), np.zeros((0, 2), np.float16),
                                                         c)).tolist()


def test_vmap_equals_items_and_batched_simulator():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, M, K)).astype(np.float16)
    b = rng.standard_normal((3, K, N)).astype(np.float16)
    c = rng.standard_normal((3, M, N)).astype(np.float32)
    batched = np.asarray(jax.jit(jax.vmap(_jitted("hopper")))(a, b, c))
    items = np.stack([np.asarray(_jitted("hopper")(a[g], b[g], c[g])) for g in range(3)])
    assert (_bits(batched) == _bits(items)).all()
    assert (_bits(batched) == _bits(simulator.matmul(a, b, c, profile="hopper"))).all()
    assert (_bits(np.asarray(jax_matmul(a, b, c))) == _bits(items)).all()  # 3-D arrays: a batch


def test_no_64_bit_types():
    """The whole computation is 32-bit or narrower: it runs without jax_enable_x64."""
    assert not jax.config.jax_enable_x64
    a = jnp.ones((4, 16), jnp.bfloat16)
    b = jnp.ones((16, 4), jnp.bfloat16)
    c = jnp.ones((4, 4), jnp.float16)
    text = str(jax.make_jaxpr(functools.partial(jax_matmul, profile="hopper"))(a, b, c))
    assert re.search(r"\b[iuf]64\[", text) is None and "float64" not in text


@pytest.mark.parametrize("args,kw,match", [
    (("fp16", "fp16"), dict(profile="cdna3"), "profile 'cdna3' fp16 .* not yet in the JAX engine"),
    (("fp16", "fp16"), dict(profile="systolic_fma"), "profile 'systolic_fma' fp16 .* not yet in the JAX engine"),
    (("bf16", "bf16"), dict(profile="tpu"), "profile 'tpu' bf16 .* not yet in the JAX engine"),
    (("bf16", "bf16"), dict(profile="cdna2"), "profile 'cdna2' bf16 .* not yet in the JAX engine"),
    (("fp32", "fp32"), dict(input_format="fp32"), "input_format 'fp32' .* not yet in the JAX engine"),
    (("tf32", "tf32"), dict(input_format="tf32", profile="cdna3"), "profile 'cdna3' tf32 .* not yet in the JAX"),
    (("tf32", "tf32"), dict(input_format="tf32", profile="systolic_fma"), "profile 'systolic_fma' tf32 .* not yet"),
    (("e4m3fnuz", "e4m3fnuz"), dict(profile="cdna3"), "float8_e4m3fnuz .* not yet in the JAX engine"),
    (("e2m1", "e2m1"), dict(profile="blackwell"), "not yet in the JAX engine"),
])
def test_refuses_what_is_not_yet_in_the_engine(args, kw, match):
    fa, fb = (simulator.FORMATS[n].dtype for n in args)
    with pytest.raises(ValueError, match=match):
        jax_matmul(np.zeros((2, 32), fa), np.zeros((32, 2), fb), **kw)


def test_bad_arguments():
    a = np.zeros((2, 16), np.float16)
    with pytest.raises(ValueError, match="b must have shape \\(16, N\\)"):
        jax_matmul(a, np.zeros((8, 2), np.float16))
    with pytest.raises(ValueError, match="accumulators \\('fp32',\\), not fp16"):
        jax_matmul(np.zeros((2, 32), simulator.FORMATS["e4m3"].dtype), np.zeros((32, 2), simulator.FORMATS["e4m3"].dtype),
                   np.zeros((2, 2), np.float16), profile="blackwell_mx")
    with pytest.raises(TypeError, match="c must be a float32 or float16 array"):
        jax_matmul(a, np.zeros((16, 2), np.float16), np.zeros((2, 2), np.int32))
    with pytest.raises(TypeError, match="input_format='bf16' needs bfloat16 arrays"):
        jax_matmul(a, np.zeros((16, 2), np.float16), input_format="bf16")
    with pytest.raises(TypeError, match="a and b must have the same dtype, or both be formats of at most 8 bits"):
        jax_matmul(a, np.zeros((16, 2), simulator.FORMATS["bf16"].dtype))
    with pytest.raises(TypeError, match="float32 inputs need input_format='tf32'"):
        jax_matmul(np.zeros((2, 8), np.float32), np.zeros((8, 2), np.float32))
    b = np.zeros((16, 2), np.float16)
    with pytest.raises(TypeError, match="split_k must be an int, not float"):
        jax_matmul(a, b, split_k=2.0)
    with pytest.raises(ValueError, match="split_k must be a positive divisor of K=16, not 3"):
        jax_matmul(a, b, split_k=3)
    with pytest.raises(ValueError, match="split_reduce must be one of"):
        jax_matmul(a, b, split_k=2, split_reduce="tree")
    with pytest.raises(ValueError, match="split_reduce='butterfly' needs split_k a power of two, not 6"):
        jax_matmul(np.zeros((2, 24), np.float16), np.zeros((24, 2), np.float16), split_k=6, split_reduce="butterfly")
    with pytest.raises(ValueError, match="c must have shape \\(2, 2\\)"):
        jax_matmul(a, np.zeros((16, 2), np.float16), np.zeros((3, 2), np.float32))
