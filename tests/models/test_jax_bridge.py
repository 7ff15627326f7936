"""The bridge on the JAX engine (Accelerator(engine="jax")): jit, vmap and grad of an
accelerated function, bit for bit the Numba engine's result."""
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import models
from simulator import get_format
from models import MODELS_DIR_ENV, Accelerator, OutputBitFlip, ReplaceTile, accelerated, get_model, load_params
from models._jax_operands import round_operand_jax
from models._jax_scaling import mul_f32
from models._lowering import lower_conv, lower_dot_general

DATA = Path(os.environ.get(MODELS_DIR_ENV) or Path(models.__file__).resolve().parent.parent.parent / "shared" / "models")
needs_data = pytest.mark.skipif(not (DATA / "retrieval_pairs.jsonl").exists() or not (DATA / "all-MiniLM-L6-v2").is_dir(),
                                reason="all-MiniLM-L6-v2 and retrieval_pairs.jsonl not available")


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _same(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return x.dtype == y.dtype and x.shape == y.shape and np.array_equal(_bits(x), _bits(y))


def _digits(n=24):
    x, _ = models.load_digits("test")
    return jnp.asarray(x[:n])


# ---- operand rounding -----------------------------------------------------------------
def _operand_samples():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2 ** 32, 60000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = []
    for name in models.INPUT_FORMATS:
        if name == "tf32":
            continue
        f = get_format(name)
        top, tiny = f.max_finite, 2.0 ** (f.emin - f.man_bits)
        for v in (top, np.nextafter(np.float32(top), np.float32(np.inf)), top * (1 + 2.0 ** -(f.man_bits + 1)),
                  top * 2, tiny, tiny / 2, tiny * 0.75, tiny * 1.5, 2.0 ** f.emin):
            edges += [v, -v]
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan]
    with np.errstate(over="ignore"):  # edges past float32's top are meant to become inf
        return np.concatenate([x, np.array(edges + specials, np.float32)])


@pytest.mark.parametrize("fmt", [f for f in models.INPUT_FORMATS])
@pytest.mark.parametrize("saturate", [None, True, False])
def test_operand_rounding_equals_the_eager_bridge(fmt, saturate):
    # float32 (every class, both sides of each rounding boundary) and float16/bfloat16
    # model dtypes; NaN may differ only in payload
    acc = Accelerator("hopper", fmt, saturate=saturate)
    x32 = _operand_samples()
    with np.errstate(over="ignore", invalid="ignore"):  # narrowing the samples overflows some to inf
        inputs = (x32, x32.astype(np.float16), x32.astype(jnp.bfloat16))
    for x in inputs:
        want = acc.round_operand(x)
        got = np.asarray(jax.jit(lambda v: round_operand_jax(acc, v))(jnp.asarray(x)))
        assert got.dtype == want.dtype
        nan = np.isnan(want.astype(np.float32))
        assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
        assert np.array_equal(_bits(got)[~nan], _bits(want)[~nan]), fmt


# ---- the lowering in jax.numpy ---------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), lhs_dilation=(1, 1), rhs_dilation=(1, 1), groups=1),
    dict(window_strides=(2, 1), padding=((0, 2), (-1, 1)), lhs_dilation=(1, 2), rhs_dilation=(2, 1), groups=2),
    dict(window_strides=(1,), padding=((2, 0),), lhs_dilation=(3,), rhs_dilation=(1,), groups=1),
])
def test_conv_lowering_is_the_same_in_numpy_and_jax(kw):
    rng = np.random.default_rng(2)
    nsp = len(kw["window_strides"])
    g = kw.pop("groups")
    lhs = rng.standard_normal((2, 4) + (7,) * nsp).astype(np.float32)
    rhs = rng.standard_normal((6, 4 // g) + (3,) * nsp).astype(np.float32)
    spec = ("NCHW", "OIHW", "NCHW") if nsp == 2 else ("NCH", "OIH", "NCH")
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, spec)
    params = dict(kw, dimension_numbers=dn, feature_group_count=g, batch_group_count=1)
    a, b, asm = lower_conv(lhs, rhs, **params)
    ja, jb = jax.jit(lambda x, y: lower_conv(x, y, xp=jnp, **params)[:2])(lhs, rhs)
    assert _same(a, ja) and _same(b, jb)
    d = np.einsum("gmk,gkn->gmn", a, b)
    _, _, jasm = lower_conv(jnp.asarray(lhs), jnp.asarray(rhs), xp=jnp, **params)
    want = lax.conv_general_dilated(lhs, rhs, kw["window_strides"], kw["padding"], kw["lhs_dilation"],
                                    kw["rhs_dilation"], dn, feature_group_count=g)
    assert asm(d).shape == want.shape and _same(asm(d), jasm(jnp.asarray(d)))


def test_dot_general_lowering_is_the_same_in_numpy_and_jax():
    rng = np.random.default_rng(3)
    lhs, rhs = rng.standard_normal((3, 4, 5, 6)), rng.standard_normal((3, 6, 5, 2))
    dn = (((2, 3), (2, 1)), ((0,), (0,)))
    a, b, asm = lower_dot_general(lhs, rhs, dn)
    ja, jb, jasm = lower_dot_general(jnp.asarray(lhs, jnp.float32), jnp.asarray(rhs, jnp.float32), dn, xp=jnp)
    assert _same(a.astype(np.float32), ja) and _same(b.astype(np.float32), jb)
    d = np.ones((a.shape[0], a.shape[1], b.shape[2]), np.float32)
    assert _same(asm(d), jasm(jnp.asarray(d)))


# ---- whole models: jit equals the Numba engine ------------------------------------------
@pytest.mark.parametrize("name,profile,fmt,acc,split_k", [
    ("cnn", "hopper", "fp16", "fp32", 1), ("mlp", "hopper", "bf16", "fp16", 2),
    ("mlp", "cdna3", "bf16", "fp32", 1), ("cnn", "systolic_fma", "fp16", "fp32", 1), ("mlp", "tpu", "bf16", "fp32", 1),
])
def test_zoo_model_under_jit_equals_the_numba_engine(name, profile, fmt, acc, split_k):
    m, p, x = get_model(name), load_params(name), _digits()
    kw = dict(profile=profile, input_format=fmt, accumulator=acc, split_k=split_k)
    want = accelerated(m.apply, Accelerator(**kw))(p, x)
    fn = accelerated(m.apply, Accelerator(**kw, engine="jax"))
    got = jax.jit(fn)(p, x)
    assert _same(got, want)
    # the call itself (jit-compiled inside) gives the same bits
    assert _same(fn(p, x), want)
    # and the result is not the native one (the simulator did round)
    assert not _same(m.apply(p, x), want)


@needs_data
def test_minilm_under_jit_equals_the_numba_engine():
    w = models.minilm_retrieval(2)
    want = accelerated(w.apply, Accelerator("hopper", "fp16"))(w.params, w.inputs)
    fn = accelerated(w.apply, Accelerator("hopper", "fp16", engine="jax"))
    got = jax.jit(fn)(w.params, w.inputs)
    assert _same(got, want)
    assert len(fn.jax_gemms(w.params, w.inputs)) == 48  # 6 layers x 8 GEMM sites, all on the engine
    assert all(s.where == "jax" for s in fn.jax_gemms(w.params, w.inputs))


def test_vmap_batches_calls_bit_for_bit():
    m, p = get_model("cnn"), load_params("cnn")
    xs = _digits(24).reshape(3, 8, 64)
    fn = accelerated(m.apply, Accelerator("hopper", "fp16", engine="jax"))
    got = jax.jit(jax.vmap(fn, in_axes=(None, 0)))(p, xs)
    for i in range(3):
        assert _same(got[i], accelerated(m.apply, Accelerator("hopper", "fp16"))(p, xs[i]))


def test_gradient_is_straight_through():
    # d/dw sum(g * (x @ w)) is x^T g for the exact GEMM; the simulated one passes it through
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((8, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((8, 4)), jnp.float32)
    fn = accelerated(lambda x, w: jnp.dot(x, w), Accelerator("hopper", "e4m3", engine="jax"))
    gx, gw = jax.grad(lambda x, w: jnp.sum(g * fn(x, w)), argnums=(0, 1))(x, w)
    nx, nw = jax.grad(lambda x, w: jnp.sum(g * jnp.dot(x, w)), argnums=(0, 1))(x, w)
    assert _same(gx, nx) and _same(gw, nw)
    # through a whole model: finite, nonzero, close to the native gradient at fp16
    m, p, xd = get_model("cnn"), load_params("cnn"), _digits(16)
    fm = accelerated(m.apply, Accelerator("hopper", "fp16", engine="jax"))
    gs = jax.jit(jax.grad(lambda p: jnp.sum(fm(p, xd) ** 2)))(p)
    ns = jax.grad(lambda p: jnp.sum(m.apply(p, xd) ** 2))(p)
    for k in p:
        assert np.all(np.isfinite(gs[k])) and np.any(gs[k] != 0)
        np.testing.assert_allclose(gs[k], ns[k], rtol=0.05, atol=0.05 * float(np.abs(ns[k]).max()))


def test_accelerator_gemm_on_the_jax_engine():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 5, 32)).astype(np.float16)
    b = rng.standard_normal((2, 32, 3)).astype(np.float16)
    for acc in ("fp32", "fp16"):
        assert _same(Accelerator("hopper", "fp16", acc, engine="jax").gemm(a, b),
                     Accelerator("hopper", "fp16", acc).gemm(a, b))


# ---- value-level faults in the traced computation ---------------------------------------
def test_output_bit_flips_equal_the_numba_engine():
    m, p, x = get_model("mlp"), load_params("mlp"), _digits(8)
    faults = [OutputBitFlip(gemm=0, row=3, col=5, bit=30), OutputBitFlip(gemm=1, row=7, col=2, bit=22)]
    want = accelerated(m.apply, Accelerator("hopper", "fp16"), faults)(p, x)
    got = jax.jit(accelerated(m.apply, Accelerator("hopper", "fp16", engine="jax"), faults))(p, x)
    assert _same(got, want)


def test_inject_many_runs_trials_in_one_vmapped_call():
    m, p, x = get_model("cnn"), load_params("cnn"), _digits(8)
    acc = Accelerator("hopper", "fp16", engine="jax")
    fn = accelerated(m.apply, acc)
    sites = fn.jax_gemms(p, x)
    trace = accelerated(m.apply, Accelerator("hopper", "fp16")).trace(p, x)
    assert [(s.M, s.K, s.N, s.groups) for s in sites] == [(s.M, s.K, s.N, s.groups) for s in trace.gemms]
    rng = np.random.default_rng(6)
    flips = [OutputBitFlip(gemm=int(g), row=int(rng.integers(sites[g].M)), col=int(rng.integers(sites[g].N)),
                           bit=int(rng.integers(32))) for g in rng.integers(len(sites), size=5)]
    out = fn.inject_many(flips, p, x, chunk=2)
    assert out.shape == (5,) + tuple(trace.outputs.shape)
    for t, f in enumerate(flips):
        assert _same(out[t], trace.inject(f))
    # rows as data, with a no-op row (gemm -1) giving the fault-free output
    rows = np.concatenate([[[-1, 0, 0, 0]], models.flip_array(flips[:1], sites, acc)])
    s0 = sites[flips[0].gemm]
    assert rows[1].tolist() == [flips[0].gemm, 0, flips[0].row * s0.N + flips[0].col, flips[0].bit]
    out2 = fn.inject_many(rows, p, x)
    assert _same(out2[0], trace.outputs) and _same(out2[1], out[0])
    # two faults in one trial
    both = fn.inject_many([flips[:2]], p, x)
    assert _same(both[0], trace.inject(flips[:2]))


# ---- scaling recipes ------------------------------------------------------------------------
def test_binary32_multiply_is_ieee():
    # the epilogue's multiply against numpy's binary32 (which keeps subnormals)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32)
    y = rng.integers(0, 2 ** 32, 200000, dtype=np.uint64).astype(np.uint32)
    # products near the subnormal and overflow boundaries, and the specials
    e = rng.integers(1, 254, 200000).astype(np.uint32)
    y2 = ((254 - e) << 23) | (y & 0x807FFFFF)
    sp = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 1, 0x80000001, 0x7F7FFFFF, 0x00800000],
                  np.uint32)
    xs = np.concatenate([x, x, np.repeat(sp, len(sp))])
    ys = np.concatenate([y, y2, np.tile(sp, len(sp))])
    got = np.asarray(jax.jit(mul_f32)(jnp.asarray(xs), jnp.asarray(ys)))
    with np.errstate(all="ignore"):
        want = (xs.view(np.float32) * ys.view(np.float32)).view(np.uint32)
    nan = np.isnan(want.view(np.float32))
    assert np.array_equal(np.isnan(got.view(np.float32)), nan)
    assert np.array_equal(got[~nan], want[~nan])


# the three code paths: the epilogue's multiply (tensor; "row" differs only in the scales'
# shapes and is left out to keep the suite's time), the sum over blocks (block:32 on
# hopper) and the block scales applied by the unit itself (blackwell_mx)
@pytest.mark.parametrize("profile,scaling", [("hopper", "tensor"), ("hopper", "block:32"),
                                             ("blackwell_mx", "block:32")])
def test_scaled_cnn_equals_the_numba_engine_with_scale_faults(profile, scaling):
    # blackwell_mx: the unit applies the block scales (jax_matmul's scale_a/scale_b)
    m, p, x = get_model("cnn"), load_params("cnn"), _digits(16)
    kw = dict(profile=profile, input_format="e4m3", scaling=scaling)
    eager = accelerated(m.apply, Accelerator(**kw))
    fn = accelerated(m.apply, Accelerator(**kw, engine="jax"))
    assert _same(jax.jit(fn)(p, x), eager(p, x))
    trace = eager.trace(p, x)
    kind = scaling.split(":")[0]
    bits = (3, 7) if kind == "block" else (23, 30)
    faults = [models.ScaleBitFlip(gemm=g, operand=o, index=0, bit=b) for g in (0, 2) for o in "ab" for b in bits]
    faults.append([OutputBitFlip(gemm=1, row=2, col=3, bit=26), models.ScaleBitFlip(1, "b", 0, bits[0])])
    out = fn.inject_many(faults, p, x, chunk=5)
    for t, f in enumerate(faults):
        want = np.asarray(trace.inject(f))
        got = np.asarray(out[t])
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan) and np.array_equal(_bits(got)[~nan], _bits(want)[~nan]), f


# ---- bad input ---------------------------------------------------------------------------
def test_bad_engine_and_unsupported_combinations_are_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        Accelerator(engine="torch")
    with pytest.raises(TypeError, match="engine must be a str"):
        Accelerator(engine=1)
    m = get_model("mlp")
    with pytest.raises(TypeError, match="OutputBitFlip or ScaleBitFlip values on engine='jax'"):
        accelerated(m.apply, Accelerator(engine="jax"), [ReplaceTile(0, (0, 1), (0, 1), lambda a, b, d: d)])
    p, x = load_params("mlp"), _digits(4)
    with pytest.raises(ValueError, match="needs Accelerator\\(engine='jax'\\)"):
        accelerated(m.apply, Accelerator()).inject_many([OutputBitFlip(0, 0, 0, 0)], p, x)
    fn = accelerated(m.apply, Accelerator(engine="jax"))
    with pytest.raises(ValueError, match="gemm must be in"):
        fn.inject_many([OutputBitFlip(gemm=9, row=0, col=0, bit=0)], p, x)
    with pytest.raises(ValueError, match="row must be in"):
        fn.inject_many([OutputBitFlip(gemm=0, row=4, col=0, bit=0)], p, x)
    with pytest.raises(ValueError, match="bit must be in"):
        fn.inject_many([OutputBitFlip(gemm=0, row=0, col=0, bit=32)], p, x)
    with pytest.raises(ValueError, match="at least one trial"):
        fn.inject_many([], p, x)
    with pytest.raises(ValueError, match="faults must have shape"):
        fn.inject_many(np.zeros((2, 5), np.int32), p, x)
    with pytest.raises(ValueError, match="index must be in"):
        s0 = fn.jax_gemms(p, x)[0]
        fn.inject_many(np.array([[0, 0, s0.groups * s0.M * s0.N, 0]]), p, x)
    with pytest.raises(ValueError, match="target must be in"):
        fn.inject_many(np.array([[0, 3, 0, 0]]), p, x)
    with pytest.raises(ValueError, match="scaled GEMM"):
        fn.inject_many([models.ScaleBitFlip(gemm=0, operand="a", index=0, bit=1)], p, x)
    with pytest.raises(ValueError, match="gemm must be in"):
        jax.jit(accelerated(m.apply, Accelerator(engine="jax"), [OutputBitFlip(gemm=5, row=0, col=0, bit=0)]))(p, x)


def test_unroutable_gemm_is_refused_or_run_natively():
    f = lambda x, y: jnp.dot(x, y)  # noqa: E731
    x = jnp.ones((2, 3), jnp.complex64)
    with pytest.raises(NotImplementedError, match="complex operands"):
        jax.jit(accelerated(f, Accelerator(engine="jax")))(x, x.T)
    fn = accelerated(f, Accelerator(engine="jax"), fallback="native")
    assert _same(jax.jit(fn)(x, x.T), f(x, x.T))
    assert [s.where for s in fn.jax_gemms(x, x.T)] == ["native"]


def test_gemm_sites_follow_the_call_shapes():
    # a jitted function per shape signature: the sites of one call never describe another's
    f = accelerated(lambda x, w: jnp.dot(x, w), Accelerator(engine="jax"))
    w = jnp.ones((16, 4), jnp.float32)
    for m in (3, 5, 3):
        (s,) = f.jax_gemms(jnp.ones((m, 16), jnp.float32), w)
        assert (s.M, s.K, s.N) == (m, 16, 4)
