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

# every (profile, rule key, accumulator) of the catalogue, enumerated from the profiles
# themselves (a rule key is a format name or "FORMAT/VARIANT"); block-scaled cases for the
# profiles whose units apply block scales (mx_block > 0), per scale format the rule takes
CATALOGUE = [(p.name, key, acc) for p in simulator.PROFILES.values() for key in p.rules for acc in p.accumulators]
SCALE_BLOCK = {"ue8m0": 32, "ue4m3": 16}  # OCP MX blocks; NVFP4's ue4m3 blocks of 16
SCALED = [(p.name, key, acc, sf) for p in simulator.PROFILES.values() if p.mx_block for key in p.rules
          for acc in p.accumulators for sf in SCALE_BLOCK]
# what the engine refuses, by (profile, rule key[, scale format]): grouped FP4 without scales
# (simulator.matmul refuses it too: the unit has no such instruction)
REFUSED = {("blackwell_mx", "e2m1")}
# FP6 (XLA computes no 6-bit floats): inside jax.jit the operands travel as uint8 codes
_CODES = ("e2m3", "e3m2")
M, K, N = 6, 37, 5  # K not a multiple of any step (2, 4, 8, 16, 32)
K_SCALED = 64  # two 32-position scale blocks


def _signature(profile, key, acc, sf=None):
    """What the engine reads of a profile for one GEMM: the rule, the accumulator, the NaN bits."""
    p = simulator.PROFILES[profile]
    return p.rules[key], key.split("/")[0], acc, p.nan_fp32 if acc == "fp32" else p.nan_fp16, sf


def _refused(case):
    return case[:2] + case[3:] in REFUSED


# profiles that hand the engine the same data (rtx_blackwell = blackwell, turing fp16 = ampere
# fp16, ...) are checked once, under the first profile's name (each compile costs ~1 s)
_FIRST = {}
for _case in CATALOGUE + SCALED:
    _FIRST.setdefault(_signature(*_case), _case)
DISTINCT = [c for c in _FIRST.values() if len(c) == 3 and not _refused(c)]
DISTINCT_SCALED = [c for c in _FIRST.values() if len(c) == 4 and not _refused(c)]


@functools.lru_cache(maxsize=None)
def _jitted(profile, input_format=None, variant=None, scale_format=None, split_k=1, split_reduce="sequential",
            precision=None):
    return jax.jit(functools.partial(jax_matmul, profile=profile, input_format=input_format, variant=variant,
                                     scale_format=scale_format, split_k=split_k, split_reduce=split_reduce,
                                     precision=precision))


def _bits(x):
    x = np.asarray(x)
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


def _check(profile, a, b, c, variant=None, sa=None, sb=None, sf=None, fmt=None, **kw):
    """jax_matmul under jax.jit == simulator.matmul, bit for bit (float32 inputs: tf32
    unless ``fmt`` says "fp32")."""
    fmt = fmt or ("tf32" if a.dtype == np.float32 else None)
    want = simulator.matmul(a, b, c, profile=profile, input_format=fmt, variant=variant, scale_a=sa, scale_b=sb,
                            scale_format=sf, **kw)
    fa, fb = (simulator.FORMATS[n] for n in (_fmt_of(a), _fmt_of(b)))
    if fa.name in _CODES or fb.name in _CODES:
        assert fa == fb
        fmt, a, b = fa.name, a.view(np.uint8), b.view(np.uint8)
    kw_s = {} if sa is None else dict(scale_a=sa, scale_b=sb)
    got = np.asarray(_jitted(profile, fmt, variant, sf, **kw)(a, b, c, **kw_s))
    _same(got, want, profile, a, c)


def _same(got, want, profile, a, c):
    assert got.dtype == want.dtype
    diff = np.flatnonzero(_bits(got) != _bits(want))
    assert diff.size == 0, (f"{profile} {a.dtype} acc {c.dtype}: {diff.size} of {want.size} differ, first at "
                            f"{np.unravel_index(diff[0], want.shape)}: got {got.flat[diff[0]]!r} "
                            f"want {want.flat[diff[0]]!r}")


def _fmt_of(x):
    if x.dtype == np.float32:
        return "fp32"
    return next(n for n in JAX_INPUT_FORMATS if n != "tf32" and simulator.FORMATS[n].dtype == x.dtype)


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


def _operands(rng, fmt, acc, mode, k=K):
    """A (M, k), B (k, N) of ``fmt`` and C of ``acc``; mode "random" (wide exponent ranges:
    alignment shifts of every size), "special" (inf, NaN, zeros of both signs, max finite,
    subnormals, overflowing products, cancellation; C too) or "subnormal" (operands and
    C mostly at the bottom of their ranges)."""
    f = simulator.FORMATS[fmt]
    dt = f.dtype
    cdt = np.float32 if acc == "fp32" else np.float16
    if mode == "subnormal":
        unit = f.smallest_subnormal
        a = rng.integers(-3 << f.man_bits, 3 << f.man_bits, (M, k)) * unit
        b = rng.integers(-3 << f.man_bits, 3 << f.man_bits, (k, N)) * unit
        c = rng.integers(-40, 40, (M, N)) * (2.0 ** -149 if acc == "fp32" else 2.0 ** -24)
        return a.astype(dt), b.astype(dt), c.astype(cdt)
    span = max(2, f.emax - f.emin)
    a = rng.standard_normal((M, k)) * 2.0 ** rng.integers(-span // 2, span // 2, (M, k))
    b = rng.standard_normal((k, N)) * 2.0 ** rng.integers(-span // 2, span // 2, (k, N))
    a, b = np.clip(a, -f.max_finite, f.max_finite), np.clip(b, -f.max_finite, f.max_finite)
    c = rng.standard_normal((M, N)) * 2.0 ** rng.integers(-20, 20, (M, N))
    c = np.clip(c, -60000, 60000)
    if mode == "special":
        sv = _specials(fmt)
        a = np.where(rng.random(a.shape) < 0.15, rng.choice(sv, a.shape), a)
        b = np.where(rng.random(b.shape) < 0.1, rng.choice(sv, b.shape), b)
        # cancellation: row 0 of A against column 0 of B sums to zero before C
        a[0, 1::2] = a[0, 0:-1:2]
        b[1::2, 0] = -b[0:-1:2, 0]
        cs = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, -2.0 ** -24, 2.0 ** -130])
        c = np.where(rng.random(c.shape) < 0.3, rng.choice(cs, c.shape), c)
    return a.astype(dt), b.astype(dt), c.astype(cdt)


def _scales(rng, k, mode, sf="ue8m0"):
    """Scale codes (M, k / block) and (k / block, N): near 1.0 (ue8m0: 2**-10 .. 2**9;
    ue4m3: every normal code), or (special) also the extremes, zero, subnormals and NaN."""
    blk = SCALE_BLOCK[sf]
    lo, hi = (117, 137) if sf == "ue8m0" else (0x08, 0x7F)
    sa = rng.integers(lo, hi, (M, k // blk)).astype(np.uint8)
    sb = rng.integers(lo, hi, (k // blk, N)).astype(np.uint8)
    if mode == "special":
        pick = [255, 254, 0, 1, 200] if sf == "ue8m0" else [0x7F, 0x7E, 0x00, 0x01, 0x80, 0x07]
        sa.flat[rng.choice(sa.size, 4, replace=False)] = rng.choice(pick, 4)
        sb.flat[rng.choice(sb.size, 4, replace=False)] = rng.choice(pick, 4)
    return sa, sb


def test_catalogue_is_covered():
    """Every catalogue case is either checked (under some profile with the same data) or
    on the list of refusals; the list names only catalogue cases."""
    assert {_signature(*c) for c in CATALOGUE + SCALED if not _refused(c)} == \
        {_signature(*c) for c in DISTINCT + DISTINCT_SCALED}
    keys = {c[:2] for c in CATALOGUE} | {c[:2] + c[3:] for c in SCALED}
    assert REFUSED <= keys
    assert len(CATALOGUE) >= 60 and ("hopper", "e4m3", "fp16") in DISTINCT and ("cdna2", "bf16/legacy", "fp32") \
        in DISTINCT


@pytest.mark.parametrize("profile,key,acc", DISTINCT)
def test_equals_simulator(profile, key, acc):
    """Random wide-range, special (inf, NaN, max finite, subnormals, signed zeros,
    cancellation) and subnormal operands, K not a multiple of the step."""
    fmt, _, variant = key.partition("/")
    rng = np.random.default_rng(abs(hash((profile, key, acc))) % 2 ** 32)
    for mode in ("random", "special", "subnormal"):
        _check(profile, *_operands(rng, fmt, acc, mode), variant=variant or None, fmt="fp32" if fmt == "fp32" else None)


@pytest.mark.parametrize("profile,key,acc,sf", DISTINCT_SCALED)
def test_scaled_equals_simulator(profile, key, acc, sf):
    """Block scales (ue8m0: powers of two 2**-127 .. 2**127 and NaN, folded into the terms'
    exponents; ue4m3: significands, zero and NaN, on the general fused step; FP4 in exact
    groups of 16)."""
    rng = np.random.default_rng(abs(hash((profile, key, acc, sf))) % 2 ** 32)
    for mode in ("random", "special", "subnormal"):
        a, b, c = _operands(rng, key, acc, mode, K_SCALED)
        _check(profile, a, b, c, None, *_scales(rng, K_SCALED, mode, sf), sf)


@pytest.mark.parametrize("case", [c for c in CATALOGUE + SCALED if _refused(c)])
def test_refuses_the_rest_by_name(case):
    """What the engine does not take raises a ValueError naming the profile and format."""
    profile, key, acc = case[:3]
    fmt, _, variant = key.partition("/")
    f = simulator.FORMATS[fmt]
    kw = dict(profile=profile, variant=variant or None,
              input_format=fmt if f.dtype == np.float32 or fmt in _CODES else None)
    assert len(case) == 3
    match = f"(profile '{profile}' {fmt}|input_format '{fmt}').* not yet in the JAX"
    if len(case) == 3 and simulator.PROFILES[profile].rules[key].group_k > 1:
        match = "in scaled groups: scale_a and scale_b must be given"  # simulator.matmul's refusal too
    with pytest.raises(ValueError, match=match):
        jax_matmul(np.zeros((2, 64), f.dtype), np.zeros((64, 2), f.dtype), np.zeros((2, 2), np.float32), **kw)


_FNUZ = simulator.DatapathProfile(
    "fnuz_test", "fnuz operands on a classic rule and on an exact FMA (not a catalogue entry)",
    {"e4m3fnuz": simulator.StepRule(16, frac_bits=25, c_mode="after", passes=(0, 1)),
     "e5m2fnuz": simulator.StepRule(16, frac_bits=25, c_mode="after", passes=(0, 1))})
_FNUZ_FMA = simulator.DatapathProfile(
    "fnuz_fma", "fnuz operands on an exact FMA (not a catalogue entry)",
    {f: simulator.StepRule(1, frac_bits=None, rounding="rne") for f in ("e4m3fnuz", "e5m2fnuz")},
    accumulators=("fp32",))


@pytest.mark.parametrize("profile", [_FNUZ, _FNUZ_FMA])
@pytest.mark.parametrize("fmt", ["e4m3fnuz", "e5m2fnuz"])
def test_fnuz_operands(profile, fmt):
    """The fnuz FP8 formats (no -0, NaN = 0x80) through the engine's operand tables, on a
    profile the catalogue lacks (its only fnuz rules are CDNA3's, refused above)."""
    rng = np.random.default_rng(4)
    f = jax.jit(functools.partial(jax_matmul, profile=profile))
    for mode in ("random", "special", "subnormal"):
        a, b, c = _operands(rng, fmt, "fp32", mode)
        a.view(np.uint8)[1, ::5] = 0x80  # NaN
        want = simulator.matmul(a, b, c, profile=profile)
        got = f(a, b, c)
        assert (_bits(got) == _bits(want)).all()


@pytest.mark.parametrize("profile,fa,fb,acc", [
    ("hopper", "e4m3", "e5m2", "fp32"), ("hopper", "e5m2", "e4m3", "fp16"), ("ada", "e4m3", "e5m2", "fp32"),
    ("blackwell", "e5m2", "e4m3", "fp32"), ("hopper_wgmma", "e4m3", "e5m2", "fp16"),
    ("blackwell", "e2m1", "e4m3", "fp32"), ("rtx_blackwell", "e5m2", "e2m1", "fp16")])
def test_mixed_formats_equal_simulator(profile, fa, fb, acc):
    """A and B of two formats of one rule (as simulator.matmul takes them)."""
    rng = np.random.default_rng(11)
    for mode in ("random", "special", "subnormal"):
        a, _, c = _operands(rng, fa, acc, mode)
        _, b, _ = _operands(rng, fb, acc, mode)
        _check(profile, a, b, c)


@pytest.mark.parametrize("profile,fmt,acc,split_k,how", [
    ("hopper", "fp16", "fp32", 4, "sequential"), ("hopper", "fp16", "fp32", 4, "butterfly"),
    ("hopper", "fp16", "fp32", 4, "pairwise"), ("hopper", "e4m3", "fp16", 2, "sequential"),
    ("ampere", "bf16", "fp16", 3, "sequential"), ("systolic_fma", "bf16", "fp32", 2, "butterfly"),
    ("cdna2", "bf16", "fp32", 4, "pairwise")])
def test_split_k_equals_simulator(profile, fmt, acc, split_k, how):
    rng = np.random.default_rng(5)
    for mode in ("random", "special", "subnormal"):
        a, b, c = _operands(rng, fmt, acc, mode)
        a, b = np.concatenate([a, a[:, :11]], axis=1), np.concatenate([b, b[:11]], axis=0)  # K = 48
        _check(profile, a, b, c, split_k=split_k, split_reduce=how)


@pytest.mark.parametrize("precision", list(simulator.PRECISION_TERMS))
def test_precision_equals_simulator(precision):
    """float32 inputs split into bf16 parts on every profile with a bf16 rule and no
    fp32 rule (tpu), random, special and subnormal values (x3: with split_k too)."""
    for profile in [p.name for p in simulator.PROFILES.values() if "bf16" in p.rules and "fp32" not in p.rules
                    and p.rules["bf16"].frac_bits is None]:
        rng = np.random.default_rng(12)
        for mode in ("random", "special", "subnormal"):
            a, b, c = _operands(rng, "fp32", "fp32", mode)
            a, b = a[:, :36], b[:36]
            _check(profile, a, b, c, fmt="fp32", precision=precision)
            if precision == "x3":
                _check(profile, a, b, c, fmt="fp32", precision=precision, split_k=2)


def test_pairwise_into_a_float16_accumulator():
    """A pairwise tree (binary32 sums, flushes) into float16 (not a catalogue entry: the
    CDNA profiles accumulate in float32): rounded into the accumulator once, at the end."""
    prof = simulator.DatapathProfile("pairwise_fp16_acc", "custom", {"fp16": simulator.StepRule(
        4, tree="pairwise", c_mode="after", rounding="rne", overflow="ieee",
        flush=frozenset({"inputs", "nodes", "accumulator"}))})
    rng = np.random.default_rng(6)
    f = jax.jit(functools.partial(jax_matmul, profile=prof))
    for mode in ("random", "special", "subnormal"):
        a, b, c = _operands(rng, "fp16", "fp16", mode)
        assert (_bits(f(a, b, c)) == _bits(simulator.matmul(a, b, c, profile=prof))).all()


def test_scaled_split_k_and_batch():
    """Scales cut along K with split_k (on block boundaries), and a batch of scaled GEMMs."""
    rng = np.random.default_rng(8)
    a, b, c = _operands(rng, "e4m3", "fp32", "random", 128)
    sa, sb = _scales(rng, 128, "random")
    _check("blackwell_mx", a, b, c, None, sa, sb, "ue8m0", split_k=2)
    a4, b4, c4 = _operands(rng, "e2m1", "fp32", "special", 128)
    sa4, sb4 = _scales(rng, 128, "special", "ue4m3")
    _check("blackwell_mx", a4, b4, c4, None, sa4, sb4, "ue4m3", split_k=2, split_reduce="butterfly")
    a8, _, c8 = _operands(rng, "e4m3", "fp32", "special", 128)
    _, b8, _ = _operands(rng, "e5m2", "fp32", "special", 128)
    _check("blackwell_mx", a8, b8, c8, None, sa4, sb4, "ue4m3")  # mixed formats on the general step
    with pytest.raises(ValueError, match="split_k must cut K on scale-block boundaries"):
        jax_matmul(a, b, c, profile="blackwell_mx", scale_a=sa, scale_b=sb, scale_format="ue8m0", split_k=8)
    want = simulator.matmul(np.stack([a, a]), np.stack([b, -b]), np.stack([c, c]), profile="blackwell_mx",
                            scale_a=np.stack([sa, sa]), scale_b=np.stack([sb, sb]), scale_format="ue8m0")
    got = jax_matmul(np.stack([a, a]), np.stack([b, -b]), np.stack([c, c]), profile="blackwell_mx",
                     scale_a=np.stack([sa, sa]), scale_b=np.stack([sb, sb]), scale_format="ue8m0")
    assert (_bits(got) == _bits(want)).all()


def test_fp6_codes_and_arrays():
    """FP6 NumPy arrays are taken outside a trace (as their codes); inside one they must
    come as uint8 codes, with a TypeError saying so."""
    rng = np.random.default_rng(9)
    a, b, c = _operands(rng, "e3m2", "fp32", "special")
    want = simulator.matmul(a, b, c, profile="blackwell")
    assert (_bits(jax_matmul(a, b, c, profile="blackwell")) == _bits(want)).all()
    with pytest.raises(TypeError, match="uint8 codes with input_format='e3m2'"):
        jax.jit(functools.partial(jax_matmul, profile="blackwell"))(a, b, c)
    with pytest.raises(TypeError, match="uint8 inputs are codes: they need input_format"):
        jax_matmul(a.view(np.uint8), b.view(np.uint8), c, profile="blackwell")


_HYP_CASES = [("hopper", "fp16", "fp32"), ("hopper", "e4m3", "fp16"), ("blackwell", "bf16", "fp32"),
              ("ada", "e5m2", "fp32"), ("ampere", "tf32", "fp16"), ("systolic_fma", "tf32", "fp32"),
              ("systolic_fma", "e5m2", "fp32"), ("cdna2", "bf16", "fp32"), ("cdna1", "fp16", "fp32"),
              ("blackwell", "e2m1", "fp16"), ("blackwell", "e3m2", "fp32"), ("tpu", "bf16", "fp32")]


@settings(max_examples=20, deadline=None)
@given(case=st.sampled_from(_HYP_CASES), seed=st.integers(0, 2 ** 32 - 1), special=st.booleans())
def test_hypothesis_random_codes(case, seed, special):
    """Operands as random bit patterns (every code: NaNs, infs, subnormals included) or
    random values; C random bits of the accumulator."""
    profile, fmt, acc = case
    rng = np.random.default_rng(seed)
    f = simulator.FORMATS[fmt]
    if special:
        hi = 1 << f.container_bits  # every bit of the container (tf32: the low 13 bits too)
        if f.width < f.container_bits:
            hi = 1 << f.width  # FP4/FP6: one code in the low bits
        a = rng.integers(0, hi, (M, K), dtype=np.uint64).astype(f.uint_dtype).view(f.dtype)
        b = rng.integers(0, hi, (K, N), dtype=np.uint64).astype(f.uint_dtype).view(f.dtype)
        cu = np.uint32 if acc == "fp32" else np.uint16
        c = rng.integers(0, np.iinfo(cu).max, (M, N), dtype=np.uint64).astype(cu)
        c = c.view(np.float32 if acc == "fp32" else np.float16)
    else:
        a, b, c = _operands(rng, fmt, acc, "random")
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


@pytest.mark.parametrize("profile,fmt,acc,kw", [
    ("hopper", "bf16", "fp16", {}), ("cdna3", "bf16", "fp32", {}), ("cdna2", "fp16", "fp32", {}),
    ("cdna1", "fp32", "fp32", dict(input_format="fp32")), ("tpu", "fp32", "fp32", dict(input_format="fp32",
                                                                                          precision="x6")),
    ("blackwell_mx", "e2m1", "fp32", dict(scale_format="ue4m3"))])
def test_no_64_bit_types(profile, fmt, acc, kw):
    """The whole computation is 32-bit or narrower, every kind of rule: it runs without
    jax_enable_x64 (wider sums are two uint32 words)."""
    assert not jax.config.jax_enable_x64
    dt = simulator.FORMATS[fmt].dtype
    a, b = jnp.ones((4, 64), dt), jnp.ones((64, 4), dt)
    c = jnp.ones((4, 4), jnp.float32 if acc == "fp32" else jnp.float16)
    if "scale_format" in kw:
        kw = dict(kw, scale_a=jnp.ones((4, 4), jnp.uint8), scale_b=jnp.ones((4, 4), jnp.uint8))
    text = str(jax.make_jaxpr(functools.partial(jax_matmul, profile=profile, **kw))(a, b, c))
    assert re.search(r"\b[iuf]64\[", text) is None and "float64" not in text


def test_refuses_combinations_outside_the_catalogue():
    """Block scales on rules whose units apply none (both engines refuse them, with
    simulator.check_scale_support's words), FP6 inside a trace: errors that say so."""
    e4 = simulator.FORMATS["e4m3"].dtype
    s = np.full((2, 1), 127, np.uint8), np.full((1, 2), 127, np.uint8)
    cases = [
        (dict(profile="systolic_fma", scale_format="ue8m0"), e4, "'systolic_fma' e4m3 \\(its rule is an exact FMA"),
        (dict(profile="cdna2", scale_format="ue4m3"), np.float16, "'cdna2' fp16 \\(its rule is a pairwise binary32"),
        (dict(profile="tpu", input_format="fp32", precision="x3", scale_format="ue8m0"), np.float32,
         "'tpu' fp32 \\(precision splits"),
    ]
    for kw, dt, msg in cases:
        for engine in (jax_matmul, simulator.matmul):
            with pytest.raises(ValueError, match="scale_a and scale_b must be None for profile " + msg):
                engine(np.zeros((2, 32), dt), np.zeros((32, 2), dt), scale_a=s[0], scale_b=s[1], **kw)
    with pytest.raises(ValueError, match="precision must be one of"):
        jax_matmul(np.zeros((2, 32), np.float32), np.zeros((32, 2), np.float32), profile="tpu", input_format="fp32",
                   precision="x2")
    with pytest.raises(ValueError, match="profile 'tpu' takes float32 inputs only split into bf16 parts"):
        jax_matmul(np.zeros((2, 32), np.float32), np.zeros((32, 2), np.float32), profile="tpu", input_format="fp32")
    with pytest.raises(ValueError, match="scale_format must be 'ue8m0' or 'ue4m3'"):
        jax_matmul(np.zeros((2, 32), e4), np.zeros((32, 2), e4), profile="blackwell_mx", scale_a=s[0],
                   scale_b=s[1], scale_format="e4m3")
    with pytest.raises(ValueError, match="input_format must be one of"):
        jax_matmul(np.zeros((2, 32), np.float32), np.zeros((32, 2), np.float32), input_format="ue8m0")


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
