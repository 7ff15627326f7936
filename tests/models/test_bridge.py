"""The JAX bridge: lowering layouts, nested jaxprs, bit-exact agreement with the fast path."""
import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from models import Accelerator, ReplaceGemmOutput, accelerated

FP16 = Accelerator("hopper", "fp16")
ALL_ACCS = [
    Accelerator("hopper", "fp16"),
    Accelerator("hopper", "bf16"),
    Accelerator("hopper", "tf32"),
    Accelerator("hopper", "e4m3"),
    Accelerator("hopper", "e5m2"),
    Accelerator("hopper", "fp16", accumulator="fp16"),
    Accelerator("ampere", "bf16"),
    Accelerator("systolic_fma", "fp16"),
    Accelerator("hopper", "fp16", split_k=2),
]


def ints(rng, shape, lo=-3, hi=4):
    """Small integers as float32: every format holds them and every sum is exact."""
    return rng.integers(lo, hi, shape).astype(np.float32)


def bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{8 * x.dtype.itemsize}"))


def assert_bitwise(x, y):
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_array_equal(bits(x), bits(y))


def assert_same_values(x, y):
    """Equal values and dtypes; zero signs may differ (D = A @ B + (+0) on the
    hardware turns an exact -0 sum into +0, where native JAX keeps -0)."""
    x, y = np.asarray(x), np.asarray(y)
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)


def check_every_gemm(fn, acc, *args):
    """Run fn with an identity replacement on every GEMM that checks D against
    simulator.matmul on the same rounded operands; return (plain, checked) outputs."""
    af = accelerated(fn, acc)
    sites = af.gemms(*args)
    assert sites, "no GEMM found"
    seen = []

    def check(call):
        a, b, d = call.a, call.b, call.d
        assert a.dtype == acc.input_dtype and b.dtype == acc.input_dtype and d.dtype == acc.acc_dtype
        assert a.shape == (call.site.groups, call.site.M, call.site.K)
        assert b.shape == (call.site.groups, call.site.K, call.site.N)
        split = acc.split_k if call.site.K % acc.split_k == 0 else 1
        for g in range(a.shape[0]):
            ref = simulator.matmul(a[g], b[g], np.zeros(d.shape[1:], acc.acc_dtype), profile=acc.profile,
                                   input_format="tf32" if acc.input_format == "tf32" else None, split_k=split)
            assert_bitwise(d[g], ref)
        seen.append(call.site.index)
        return d

    faults = [ReplaceGemmOutput(gemm=s.index, fn=check) for s in sites]
    checked = accelerated(fn, acc, faults)(*args)
    assert seen == [s.index for s in sites]
    return af(*args), checked


# ---- dot_general ----------------------------------------------------------------------
DOT_CASES = [
    # (lhs shape, rhs shape, ((lc, rc), (lb, rb)))
    ((5, 7), (7, 3), (((1,), (0,)), ((), ()))),
    ((7, 5), (3, 7), (((0,), (1,)), ((), ()))),  # transposed operands
    ((4, 5, 6), (4, 6, 3), (((2,), (1,)), ((0,), (0,)))),  # batched matmul
    ((5, 4, 6), (6, 3, 4), (((2,), (0,)), ((1,), (2,)))),  # batch dims in odd places
    ((2, 3, 4, 5), (3, 5, 4, 6), (((2, 3), (2, 1)), ((1,), (0,)))),  # two contracting dims, reordered
    ((2, 3, 4, 5), (2, 3, 5, 4), (((3,), (2,)), ((0, 1), (0, 1)))),  # two batch dims
    ((6,), (6, 4), (((0,), (0,)), ((), ()))),  # vector-matrix
    ((6,), (6,), (((0,), (0,)), ((), ()))),  # dot product: M = N = 1
    ((3, 4), (5,), (((), ()), ((), ()))),  # outer product: K = 1
]


@pytest.mark.parametrize("lhs_shape,rhs_shape,dn", DOT_CASES)
def test_dot_general_layout_exact(lhs_shape, rhs_shape, dn):
    """Small integers: every path is exact, so the bridge must equal native JAX bit for bit."""
    rng = np.random.default_rng(0)
    x, w = ints(rng, lhs_shape), ints(rng, rhs_shape)

    def f(x, w):
        return jax.lax.dot_general(x, w, dn)

    plain, checked = check_every_gemm(f, FP16, x, w)
    assert_same_values(plain, f(x, w))
    assert_bitwise(checked, plain)


@st.composite
def dot_problems(draw):
    """Random dot_general: a random split of axes into batch/contract/free, random axis orders."""
    nb, nc, nfl, nfr = (draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.integers(0, 2)),
                        draw(st.integers(0, 2)))
    size = lambda: draw(st.integers(1, 4))  # noqa: E731
    bsz, csz = [size() for _ in range(nb)], [size() for _ in range(nc)]
    lf, rf = [size() for _ in range(nfl)], [size() for _ in range(nfr)]
    lperm = draw(st.permutations(range(nb + nc + nfl)))
    rperm = draw(st.permutations(range(nb + nc + nfr)))
    # logical axes: batch 0..nb-1, contract nb..nb+nc-1, free after
    lsizes = bsz + csz + lf
    rsizes = bsz + csz + rf
    lshape = tuple(lsizes[p] for p in lperm)
    rshape = tuple(rsizes[p] for p in rperm)
    lpos = {p: i for i, p in enumerate(lperm)}
    rpos = {p: i for i, p in enumerate(rperm)}
    dn = ((tuple(lpos[nb + j] for j in range(nc)), tuple(rpos[nb + j] for j in range(nc))),
          (tuple(lpos[j] for j in range(nb)), tuple(rpos[j] for j in range(nb))))
    return lshape, rshape, dn, draw(st.integers(0, 2 ** 32 - 1))


@settings(max_examples=40)
@given(dot_problems())
def test_dot_general_random_layouts(problem):
    lshape, rshape, dn, seed = problem
    rng = np.random.default_rng(seed)
    x, w = ints(rng, lshape), ints(rng, rshape)

    def f(x, w):
        return jax.lax.dot_general(x, w, dn)

    assert_same_values(accelerated(f, FP16)(x, w), f(x, w))


@pytest.mark.parametrize("acc", ALL_ACCS, ids=lambda a: f"{a.datapath.name}-{a.input_format}-{a.accumulator}"
                         f"-s{a.split_k}")
def test_every_gemm_equals_fast_path(acc):
    """Random (non-integer) values, several formats: every GEMM's D is the fast path's D."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    w2 = rng.standard_normal((3, 8, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)

    def f(x, w1, w2, k):
        h = jnp.tanh(x @ w1)  # (3, 5, 8)
        h = jnp.einsum("bmk,bkn->bmn", h, w2)  # batched
        y = jax.lax.conv_general_dilated(h.reshape(3, 5, 2, 2), k, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y.sum(), h

    plain, checked = check_every_gemm(f, acc, x, w1, w2, k)
    for p, c in zip(plain, checked):
        assert_bitwise(p, c)
    native = f(x, w1, w2, k)
    tol = {"fp16": 2e-2, "bf16": 1e-1, "tf32": 2e-2, "e4m3": 5e-1, "e5m2": 1.0}[acc.input_format]
    np.testing.assert_allclose(plain[1], native[1], rtol=tol, atol=tol * 4)


# ---- convolutions ---------------------------------------------------------------------------
CONV_CASES = [
    dict(window_strides=(1, 1), padding="SAME"),
    dict(window_strides=(2, 2), padding="SAME"),
    dict(window_strides=(2, 1), padding=((1, 2), (0, 1))),
    dict(window_strides=(1, 1), padding="VALID", rhs_dilation=(2, 1)),
    dict(window_strides=(1, 2), padding=((2, 0), (1, 1)), lhs_dilation=(2, 1)),
    dict(window_strides=(1, 1), padding=((-1, 1), (1, -1))),  # negative padding crops
    dict(window_strides=(1, 1), padding="SAME", feature_group_count=2),
]


@pytest.mark.parametrize("layout", [("NCHW", "OIHW", "NCHW"), ("NHWC", "HWIO", "NHWC"), ("NHWC", "OIHW", "NCHW")])
@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv_layout_exact(kw, layout):
    rng = np.random.default_rng(2)
    groups = kw.get("feature_group_count", 1)
    n, c, h, w_, o = 2, 4, 7, 6, 6
    x = ints(rng, {"NCHW": (n, c, h, w_), "NHWC": (n, h, w_, c)}[layout[0]])
    kshape = {"OIHW": (o, c // groups, 3, 2), "HWIO": (3, 2, c // groups, o)}[layout[1]]
    k = ints(rng, kshape)

    def f(x, k):
        return jax.lax.conv_general_dilated(x, k, dimension_numbers=layout, precision="highest", **kw)

    plain, checked = check_every_gemm(f, FP16, x, k)
    assert_same_values(plain, f(x, k))
    assert_bitwise(checked, plain)


def test_conv_1d_and_3d():
    rng = np.random.default_rng(3)
    x1, k1 = ints(rng, (2, 3, 9)), ints(rng, (4, 3, 3))
    f1 = lambda x, k: jax.lax.conv_general_dilated(x, k, (2,), ((1, 1),))  # noqa: E731
    assert_same_values(accelerated(f1, FP16)(x1, k1), f1(x1, k1))
    x3, k3 = ints(rng, (1, 2, 4, 5, 3)), ints(rng, (3, 2, 2, 3, 2))
    f3 = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 2, 1), "SAME", precision="highest")  # noqa: E731
    assert_same_values(accelerated(f3, FP16)(x3, k3), f3(x3, k3))


# ---- nested jaxprs, control flow, pytrees --------------------------------------------------------
def test_nested_jaxprs_route_every_gemm():
    rng = np.random.default_rng(4)
    x, w = ints(rng, (4, 4)), ints(rng, (4, 4), -1, 2)

    @jax.custom_vjp
    def cv(a, b):
        return a @ b

    cv.defvjp(lambda a, b: (a @ b, (a, b)), lambda r, g: (g, g))

    @jax.jit
    def inner(x):
        return jax.nn.relu(x @ w)  # jit + custom_jvp (relu)

    def f(x):
        y = inner(x)
        y = jax.checkpoint(lambda y: cv(y, w))(y)
        y = jax.lax.cond(y.sum() > -1e9, lambda y: y @ w, lambda y: y, y)
        y, _ = jax.lax.scan(lambda c, _: (c @ w / 4, None), y, None, length=2)
        _, y = jax.lax.while_loop(lambda s: s[0] < 2, lambda s: (s[0] + 1, s[1] @ w / 4), (0, y))
        return jax.lax.fori_loop(0, 2, lambda i, y: jnp.tanh(y @ w), y)

    sites = accelerated(f, FP16).gemms(x)
    assert len(sites) == 1 + 1 + 1 + 2 + 2 + 2
    assert sites[0].name.endswith("inner/dot_general")
    plain, checked = check_every_gemm(f, FP16, x)
    assert_bitwise(checked, plain)
    np.testing.assert_allclose(plain, f(x), rtol=1e-2, atol=1e-2)


def test_pytrees_kwargs_static_and_module():
    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Linear:  # an Equinox-style module: a callable pytree
        w: jax.Array
        b: jax.Array

        def __call__(self, x, *, relu=True):
            y = x @ self.w + self.b
            return jax.nn.relu(y) if relu else y

    rng = np.random.default_rng(5)
    m = Linear(jnp.asarray(ints(rng, (3, 2))), jnp.asarray(ints(rng, (2,))))
    x = ints(rng, (4, 3))
    assert_same_values(accelerated(m, FP16)(x, relu=False), m(x, relu=False))
    out = accelerated(lambda mod, d: {"y": mod(d["x"])}, FP16)(m, {"x": x})
    assert_same_values(out["y"], m(x))


def test_output_dtypes_and_non_float_dots_native():
    rng = np.random.default_rng(6)
    x16 = jnp.asarray(ints(rng, (3, 4)), jnp.bfloat16)
    w16 = jnp.asarray(ints(rng, (4, 2)), jnp.bfloat16)
    out = accelerated(lambda a, b: a @ b, FP16)(x16, w16)
    assert out.dtype == jnp.bfloat16
    assert_same_values(out, x16 @ w16)
    xi, wi = jnp.arange(12).reshape(3, 4), jnp.arange(8).reshape(4, 2)
    af = accelerated(lambda a, b: a @ b, FP16)
    assert af.gemms(xi, wi) == ()
    np.testing.assert_array_equal(af(xi, wi), xi @ wi)


def test_operand_rounding():
    x = np.array([[1000.0, -1000.0, np.inf, 1 + 2 ** -11, 1 + 3 * 2 ** -11]], np.float32)
    r = Accelerator("hopper", "e4m3").round_operand(x)
    assert r.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(r.astype(np.float32)[0, :3], [448, -448, 448])  # saturating
    r = Accelerator("hopper", "e4m3", saturate=False).round_operand(x)
    assert np.isnan(r.astype(np.float32)[0, 0])
    r = Accelerator("hopper", "fp16").round_operand(x).astype(np.float32)
    np.testing.assert_array_equal(r[0], [1000, -1000, np.inf, 1.0, 1 + 2 ** -9])  # RNE ties to even
    r = Accelerator("hopper", "e5m2").round_operand(np.array([1e6], np.float32))
    assert r.astype(np.float32)[0] == 57344.0
    # float64 inputs are rounded once, from their exact value (no double rounding)
    v = np.array([1 + 2 ** -11 + 2 ** -40])
    assert Accelerator("hopper", "fp16").round_operand(v).astype(np.float64)[0] == 1 + 2 ** -10
