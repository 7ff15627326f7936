"""FP8 scaling recipes of models.Accelerator and faults on scale factors."""
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from models import Accelerator, GoldenTrace, OutputBitFlip, ScaleBitFlip, Scales, accelerated
from simulator import matmul


def _rel(x, ref):
    return float(np.abs(np.asarray(x, np.float64) - ref).max() / np.abs(ref).max())


def _operands(scale, seed=0, shape=(8, 64, 12)):
    rng = np.random.default_rng(seed)
    M, K, N = shape
    return (rng.standard_normal((M, K)) * scale).astype(np.float32), \
        (rng.standard_normal((K, N)) * scale).astype(np.float32)


@pytest.mark.parametrize("scale", [2.0 ** -14, 2.0 ** 12])
@pytest.mark.parametrize("scaling", ["tensor", "row", "block:32", "block:16"])
def test_scaling_keeps_e4m3_gemm_close_where_none_fails(scale, scaling):
    x, w = _operands(scale)
    ref = x.astype(np.float64) @ w.astype(np.float64)
    f = lambda x, w: x @ w  # noqa: E731
    none = np.asarray(accelerated(f, Accelerator("hopper", "e4m3"))(x, w))
    scaled = np.asarray(accelerated(f, Accelerator("hopper", "e4m3", scaling=scaling))(x, w))
    assert _rel(none, ref) > 0.5  # underflow to zero, or saturation at 448
    assert _rel(scaled, ref) < 0.1  # e4m3 has 3 mantissa bits: a few per cent per operand


def test_tensor_scaling_is_exact_power_of_two_rescaling():
    # Scaling by a power of two is exact: the scaled GEMM is the unscaled GEMM of the
    # scaled operands, multiplied back by sa*sb in binary32.
    x, w = _operands(2.0 ** -10)
    acc = Accelerator("hopper", "e4m3", scaling="tensor")
    qa, qb, sc = acc.quantize(x[None], w[None])
    sa, sb = float(sc.a[0]), float(sc.b[0])
    assert np.log2(sa) == int(np.log2(sa)) and np.log2(sb) == int(np.log2(sb))
    # amax maps into (fmax/2, fmax]
    amax = np.abs(x).max() / sa
    assert 224.0 < amax <= 448.0
    want = (x.astype(np.float64) / sa).astype(ml_dtypes.float8_e4m3fn)
    assert np.array_equal(qa[0].view(np.uint8), want.view(np.uint8))
    d = matmul(qa[0], qb[0], np.zeros((8, 12), np.float32), profile="hopper")
    out = np.asarray(accelerated(lambda x, w: x @ w, acc)(x, w))
    assert np.array_equal(out, d * np.float32(sa * sb))


def test_row_scales_shapes_and_values():
    x, w = _operands(1.0)
    x[3] *= 2.0 ** 20
    acc = Accelerator("hopper", "e5m2", scaling="row")
    qa, qb, sc = acc.quantize(x[None], w[None])
    assert sc.a.shape == (1, 8) and sc.b.shape == (1, 12) and sc.a.dtype == np.float32
    assert sc.a[0, 3] / sc.a[0, 2] >= 2.0 ** 19
    rows = np.abs(x).max(axis=1) / sc.a[0]
    assert np.all((rows > 57344.0 / 2) & (rows <= 57344.0))


def test_block_scales_follow_ocp_mx():
    x, w = _operands(1.0, shape=(4, 40, 4))
    acc = Accelerator("hopper", "e4m3", scaling="block:16")
    qa, qb, sc = acc.quantize(x[None], w[None])
    assert sc.a.shape == (1, 4, 3) and sc.b.shape == (1, 3, 4) and sc.a.dtype == np.uint8
    blk = np.abs(x[1, 16:32]).max()
    assert int(sc.a[0, 1, 1]) - 127 == int(np.floor(np.log2(blk))) - 8
    vals = sc.values("a")
    assert vals[0, 1, 1] == 2.0 ** (int(sc.a[0, 1, 1]) - 127)
    bad = Scales("block", np.full((1, 1, 1), 0xFF, np.uint8), sc.b, 16)
    assert np.isnan(bad.values("a")).all()


def test_block_scaled_gemm_is_the_blockwise_sum():
    x, w = _operands(1.0, shape=(4, 48, 5))
    acc = Accelerator("hopper", "e4m3", scaling="block:16")
    qa, qb, sc = acc.quantize(x[None], w[None])
    sa, sb = sc.values("a"), sc.values("b")
    d = None
    for j in range(3):
        p = matmul(qa[0][:, 16 * j:16 * j + 16], qb[0][16 * j:16 * j + 16], np.zeros((4, 5), np.float32),
                   profile="hopper")
        t = p * (sa[0, :, j][:, None] * sb[0, j][None, :])
        d = t if d is None else d + t
    out = np.asarray(accelerated(lambda x, w: x @ w, acc)(x, w))
    assert np.array_equal(out.view(np.uint32), d.view(np.uint32))


@pytest.mark.parametrize("scaling,index,bit", [("tensor", 0, 23), ("row", 1, 24), ("block:16", 1, 0)])
def test_scale_bit_flip_changes_output(scaling, index, bit):
    x, w = _operands(1.0, shape=(4, 32, 6))
    f = lambda x, w: jnp.tanh(x @ w) @ w.T  # noqa: E731
    af = accelerated(f, Accelerator("hopper", "e4m3", scaling=scaling))
    golden = af.trace(x, w)
    sc = golden.scales(0)
    assert sc is not None and sc.kind == scaling.split(":")[0]
    out, stats = golden.inject(ScaleBitFlip(gemm=0, operand="a", index=index, bit=bit), return_stats=True)
    assert not stats.masked
    diff = np.asarray(out) != np.asarray(golden.outputs)
    assert diff.any()
    # bitwise the same as the eager faulty run
    eager = accelerated(f, af.accelerator, faults=[ScaleBitFlip(0, "a", index, bit)])(x, w)
    assert np.array_equal(np.asarray(eager), np.asarray(out))
    # a fault-free inject is the golden output
    assert np.array_equal(np.asarray(golden.inject([])), np.asarray(golden.outputs))


def test_tensor_scale_flip_scales_output_by_power_of_two():
    x, w = _operands(1.0, shape=(4, 32, 6))
    af = accelerated(lambda x, w: x @ w, Accelerator("hopper", "e4m3", scaling="tensor"))
    golden = af.trace(x, w)
    out = np.asarray(golden.inject(ScaleBitFlip(0, "b", 0, 23)))  # exponent LSB: x2 or /2
    ratio = out / np.asarray(golden.outputs)
    ok = np.isfinite(ratio)
    assert np.all((ratio[ok] == 2.0) | (ratio[ok] == 0.5))


def test_output_fault_acts_before_the_epilogue():
    x, w = _operands(2.0 ** -12, shape=(4, 32, 6))
    af = accelerated(lambda x, w: x @ w, Accelerator("hopper", "e4m3", scaling="tensor"))
    golden = af.trace(x, w)
    a, b, d = golden.operands(0)
    sc = golden.scales(0)
    out = np.asarray(golden.inject(OutputBitFlip(0, 1, 2, 31)))  # sign of the raw accumulator
    assert out[1, 2] == -np.float32(d[0, 1, 2] * (sc.a[0] * sc.b[0]))


def test_scaling_validation():
    with pytest.raises(ValueError, match="scaling must be one of"):
        Accelerator("hopper", "e4m3", scaling="block:0")
    with pytest.raises(ValueError, match="scaling must be one of"):
        Accelerator("hopper", "e4m3", scaling="channel")
    with pytest.raises(TypeError, match="scaling must be a str"):
        Accelerator("hopper", "e4m3", scaling=None)
    with pytest.raises(ValueError, match="tf32"):
        Accelerator("hopper", "tf32", scaling="tensor")
    with pytest.raises(ValueError, match="operand must be"):
        ScaleBitFlip(0, "c", 0, 0)
    x, w = _operands(1.0, shape=(4, 32, 6))
    golden = accelerated(lambda x, w: x @ w, Accelerator("hopper", "e4m3")).trace(x, w)
    assert golden.scales(0) is None
    with pytest.raises(ValueError, match="scaled GEMM"):
        golden.inject(ScaleBitFlip(0, "a", 0, 0))
    g2 = accelerated(lambda x, w: x @ w, Accelerator("hopper", "e4m3", scaling="row")).trace(x, w)
    with pytest.raises(ValueError, match="index must be in"):
        g2.inject(ScaleBitFlip(0, "a", 4, 0))
    with pytest.raises(ValueError, match="bit must be in"):
        g2.inject(ScaleBitFlip(0, "a", 0, 32))


def test_block_scales_go_into_a_unit_that_applies_them():
    """blackwell_mx applies E8M0 scales per 32 K positions inside its dot products: the
    bridge hands them to matmul (not the software recipe), bit for bit per GEMM."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 80)).astype(np.float32) * np.exp2(rng.integers(-8, 8, (6, 80)))
    w = rng.standard_normal((80, 5)).astype(np.float32)
    for fmt in ("e4m3", "e5m2"):
        acc = Accelerator("blackwell_mx", fmt, scaling="block:32")
        tr = accelerated(lambda x, w: x @ w, acc).trace(x, w)
        qa, qb, d = tr.operands(0)
        sc = tr.scales(0)
        pa = np.zeros((6, 96), qa.dtype); pa[:, :80] = qa[0]
        pb = np.zeros((96, 5), qb.dtype); pb[:80] = qb[0]
        want = matmul(pa, pb, profile="blackwell_mx", scale_a=sc.a[0], scale_b=sc.b[0], scale_format="ue8m0")
        np.testing.assert_array_equal(np.asarray(tr.outputs).view(np.uint32), want.view(np.uint32))
        soft = Accelerator("hopper", fmt, scaling="block:32")  # no block-scaled unit: the software recipe
        assert not soft.datapath.mx_block and acc.datapath.mx_block == 32
        # a scale flip reruns the unit with the flipped scale
        out = tr.inject(ScaleBitFlip(0, "a", 1, 0))  # flat index 1: row 0, block 1
        sa = sc.a.copy()
        sa[0, 0, 1] ^= 1
        want2 = matmul(pa, pb, profile="blackwell_mx", scale_a=sa[0], scale_b=sc.b[0], scale_format="ue8m0")
        np.testing.assert_array_equal(np.asarray(out).view(np.uint32), want2.view(np.uint32))
    with pytest.raises(ValueError, match="block:32"):
        Accelerator("blackwell_mx", "e4m3", scaling="block:16")
