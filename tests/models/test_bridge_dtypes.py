"""The bridge routes every floating GEMM: bfloat16 and float8 models, mixed int x
float GEMMs, any dot_general layout; what it cannot route is an error (or native
with fallback='native', listed as such); jit/grad/vmap on it say what to do."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from models import Accelerator, OutputBitFlip, accelerated, is_floating
from simulator import get_format, matmul


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _rng_arrays(dtype, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s) / 2, dtype) for s in shapes]


def _mlp(p, x):
    return jax.nn.relu(x @ p["w1"]) @ p["w2"]


def _check_gemms_against_matmul(golden, acc):
    for g, site in enumerate(golden.gemms):
        assert site.where == "simulator"
        a, b, d = golden.operands(g)
        for i in range(site.groups):
            want = matmul(np.ascontiguousarray(a[i]), np.ascontiguousarray(b[i]), np.zeros((site.M, site.N),
                          acc.acc_dtype), profile=acc.profile)
            assert np.array_equal(_bits(d[i]), _bits(want))


@pytest.mark.parametrize("dtype,fmt", [(jnp.bfloat16, "bf16"), (jnp.float8_e4m3fn, "e4m3"), (jnp.float16, "fp16"),
                                       (jnp.float8_e5m2, "e5m2")])
def test_low_precision_model_is_simulated_and_injectable(dtype, fmt):
    w1, w2, x = _rng_arrays(dtype, (16, 12), (12, 5), (6, 16))
    p = {"w1": w1, "w2": w2}
    acc = Accelerator("hopper", fmt)
    golden = accelerated(_mlp, acc).trace(p, x)
    assert [s.where for s in golden.gemms] == ["simulator", "simulator"]
    assert [(s.M, s.K, s.N) for s in golden.gemms] == [(6, 16, 12), (6, 12, 5)]
    a0 = golden.operands(0)[0][0]
    assert a0.dtype == get_format(fmt).dtype
    assert np.array_equal(_bits(a0), _bits(np.asarray(x)))  # already in the input format: taken as is
    _check_gemms_against_matmul(golden, acc)
    out = golden.inject(OutputBitFlip(gemm=1, row=2, col=3, bit=30))
    gold = np.asarray(golden.outputs)
    assert out.dtype == dtype
    assert not np.array_equal(_bits(out), _bits(gold))
    assert np.array_equal(_bits(np.delete(np.asarray(out), 2, axis=0)), _bits(np.delete(gold, 2, axis=0)))


def test_bf16_model_on_fp16_accelerator_rounds_from_exact_values():
    w, x = _rng_arrays(jnp.bfloat16, (8, 4), (3, 8))
    golden = accelerated(lambda w, x: x @ w, Accelerator("hopper", "fp16")).trace(w, x)
    a = golden.operands(0)[0][0]
    want = get_format("fp16").encode(np.asarray(x).astype(np.float64), "rne").view(np.float16)
    assert np.array_equal(_bits(a), _bits(want))


@pytest.mark.parametrize("idt", [jnp.int8, jnp.int32, jnp.bool_])
def test_mixed_int_float_dot_general_is_promoted_as_jax_does(idt):
    rng = np.random.default_rng(1)
    xi = jnp.asarray(rng.integers(-3, 4, (5, 8)), idt)
    (w,) = _rng_arrays(jnp.bfloat16, (8, 3))
    acc = Accelerator("hopper", "bf16")
    golden = accelerated(lambda x, w: x @ w, acc).trace(xi, w)
    (site,) = golden.gemms
    assert site.where == "simulator"
    a = golden.operands(0)[0][0]
    want = np.asarray(xi).astype(np.dtype(jnp.result_type(idt, jnp.bfloat16)))
    assert np.array_equal(_bits(a), _bits(want.astype(ml_dtypes.bfloat16)))
    _check_gemms_against_matmul(golden, acc)


def test_any_dot_general_layout():
    """Batch dims in the middle, contracting dims first, several of each."""
    x, y = _rng_arrays(jnp.float32, (3, 4, 5, 6), (6, 5, 4, 7), seed=2)
    f = lambda x, y: jax.lax.dot_general(x, y, (((2, 3), (1, 0)), ((1,), (2,))))
    acc = Accelerator("hopper", "fp16")
    golden = accelerated(f, acc).trace(x, y)
    (site,) = golden.gemms
    assert (site.groups, site.M, site.K, site.N) == (4, 3, 30, 7)
    _check_gemms_against_matmul(golden, acc)
    # against a float64 reference of the rounded operands (the layout, not the rounding)
    xr = np.asarray(x).astype(np.float16).astype(np.float64)
    yr = np.asarray(y).astype(np.float16).astype(np.float64)
    ref = np.einsum("ibcd,dcbj->bij", xr, yr)  # (batch, lhs free, rhs free)
    np.testing.assert_allclose(np.asarray(golden.outputs), ref, rtol=2e-3, atol=2e-3)


def test_unroutable_gemm_is_an_error_naming_it_unless_native_fallback():
    x, w = (a.astype(jnp.complex64) for a in _rng_arrays(jnp.float32, (4, 8), (8, 3)))
    acc = Accelerator("hopper", "fp16")
    with pytest.raises(NotImplementedError, match=r"dot_general of complex64\[4,8\] x complex64\[8,3\]"):
        accelerated(lambda x, w: x @ w, acc)(x, w)
    y, z = _rng_arrays(jnp.float32, (4, 8), (8, 3), seed=3)
    af = accelerated(lambda x, w, y, z: (x @ w, y @ z), acc, fallback="native")
    golden = af.trace(x, w, y, z)
    assert [s.where for s in golden.gemms] == ["native", "simulator"]
    assert (golden.gemms[0].M, golden.gemms[0].K, golden.gemms[0].N) == (4, 8, 3)
    np.testing.assert_array_equal(np.asarray(golden.outputs[0]), np.asarray(x @ w))
    with pytest.raises(ValueError, match="ran natively"):
        golden.inject(OutputBitFlip(gemm=0, row=0, col=0, bit=3))
    with pytest.raises(ValueError, match="ran natively"):
        golden.operands(0)
    with pytest.raises(ValueError, match="fallback must be"):
        accelerated(_mlp, acc, fallback="silent")


def test_jit_grad_vmap_on_an_accelerated_function_say_what_to_do():
    w, x = _rng_arrays(jnp.float32, (8, 3), (4, 8))
    af = accelerated(lambda w, x: (x @ w).sum(), Accelerator("hopper", "fp16"))
    for wrap in (jax.jit, jax.grad, lambda f: jax.vmap(f, in_axes=(None, 0))):
        with pytest.raises(TypeError, match="concrete arrays, not traced by jax.jit, jax.grad or jax.vmap"):
            wrap(af)(w, x)
    # what the message says to do works: vmap the plain function, then accelerate it
    vm = accelerated(jax.vmap(lambda w, x: x @ w, in_axes=(None, 0)), Accelerator("hopper", "fp16"))
    assert vm(w, x[:, None, :]).shape == (4, 1, 3)


def test_is_floating():
    for dt in (np.float16, np.float32, np.float64, jnp.bfloat16, jnp.float8_e4m3fn, jnp.float8_e5m2):
        assert is_floating(dt)
    for dt in (np.int8, np.bool_, np.complex64, np.uint32):
        assert not is_floating(dt)
