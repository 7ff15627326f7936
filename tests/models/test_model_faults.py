"""Value-level GEMM faults, the golden-run cache and the replacement hooks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import simulator
from models import (Accelerator, GemmSite, OutputBitFlip, ReplaceGemmOutput, ReplaceTile, accelerated,
                    get_model, load_digits, load_params)

FP16 = Accelerator("hopper", "fp16")
E4M3 = Accelerator("hopper", "e4m3")


def bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{8 * x.dtype.itemsize}"))


def same(x, y):
    return np.array_equal(bits(x), bits(y))


@pytest.fixture(scope="module")
def batch():
    x, y = load_digits("test")
    return jnp.asarray(x[:32]), y[:32]


@pytest.fixture(scope="module")
def golden(batch):
    """Golden runs of every model on 32 test images, fp16."""
    out = {}
    for name in ("mlp", "cnn", "transformer"):
        af = accelerated(get_model(name).apply, FP16)
        params = load_params(name)
        out[name] = (af, params, af.trace(params, batch[0]))
    return out


def test_gemm_sites_of_the_cnn(golden, batch):
    af, params, g = golden["cnn"]
    B = batch[0].shape[0]
    got = [(s.index, s.name.split("/")[-2], s.primitive, s.groups, s.M, s.K, s.N) for s in g.gemms]
    assert got == [(0, "conv1", "conv_general_dilated", 1, B * 64, 9, 16),
                   (1, "conv2", "conv_general_dilated", 1, B * 16, 144, 32),
                   (2, "fc", "dot_general", 1, B, 128, 10)]
    assert af.gemms(params, batch[0]) == g.gemms
    assert all(isinstance(s, GemmSite) for s in g.gemms)
    assert g.gemms[1].macs == B * 16 * 144 * 32


def test_transformer_sites_include_batched_attention(golden, batch):
    _, _, g = golden["transformer"]
    B = batch[0].shape[0]
    attn = [s for s in g.gemms if "/attn/" in s.name]
    assert len(attn) == 4
    assert all(s.groups == B * 2 for s in attn)  # batch x heads independent GEMMs
    # q k^T is (8, 16) @ (16, 8); jnp.einsum may put v first in p @ v, (16, 8) @ (8, 8)
    assert {tuple(sorted((s.M, s.K, s.N))) for s in attn} == {(8, 8, 16)}


def test_golden_equals_plain_call(golden, batch):
    for af, params, g in golden.values():
        out = af(params, batch[0])
        assert same(out, g.outputs)
        res, stats = g.inject([], return_stats=True)
        assert same(res, g.outputs) and stats.masked and stats.eqns_recomputed == 0


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_inject_equals_full_rerun(golden, batch, name):
    """The cached, taint-tracking re-run gives the same bits as a from-scratch run."""
    af, params, g = golden[name]
    rng = np.random.default_rng(0)
    for _ in range(3):
        s = g.gemms[rng.integers(len(g.gemms))]
        f = OutputBitFlip(gemm=s.index, row=int(rng.integers(s.M)), col=int(rng.integers(s.N)),
                          bit=int(rng.integers(20, 31)), group=int(rng.integers(s.groups)))
        fast, stats = g.inject(f, return_stats=True)
        full = accelerated(af.fn, FP16, faults=[f])(params, batch[0])
        assert same(fast, full), f
        assert stats.masked == same(fast, g.outputs)


def test_masked_fault_leaves_outputs_bitwise_equal(golden):
    """A flip of the LSB of a negative pre-ReLU value is masked by the ReLU; the re-run
    stops right after it and the outputs are bitwise the fault-free ones."""
    _, _, g = golden["cnn"]
    a, b, d = g.operands(0)
    # conv1 adds a bias then ReLU: find an element that stays negative after the flip
    rows, cols = np.nonzero(d[0] < -0.5)
    f = OutputBitFlip(gemm=0, row=int(rows[0]), col=int(cols[0]), bit=0)
    out, stats = g.inject(f, return_stats=True)
    assert same(out, g.outputs)
    assert stats.masked
    assert stats.gemms_recomputed == 1  # conv2 and fc came from the cache
    assert stats.eqns_recomputed < 10


def test_flip_twice_and_identity_replacements_are_no_ops(golden):
    _, _, g = golden["mlp"]
    f = OutputBitFlip(gemm=1, row=3, col=5, bit=30)
    assert same(g.inject([f, f]), g.outputs)
    assert same(g.inject(ReplaceGemmOutput(gemm=2, fn=lambda call: call.d)), g.outputs)
    assert same(g.inject(ReplaceTile(gemm=0, rows=(0, 16), cols=(0, 16), fn=lambda a, b, d: d)), g.outputs)


def test_live_flip_changes_only_its_image(golden, batch):
    _, _, g = golden["mlp"]
    ref = np.asarray(g.outputs)
    out = np.asarray(g.inject(OutputBitFlip(gemm=2, row=7, col=3, bit=30)))
    assert not same(out, ref)
    assert out[7, 3] != ref[7, 3]
    mask = np.ones(ref.shape, bool)
    mask[7, 3] = False
    assert same(out[mask], ref[mask])
    # a flip in the first layer reaches the logits of image 7 only
    out = np.asarray(g.inject(OutputBitFlip(gemm=0, row=7, col=int(np.argmax(g.operands(0)[2][0, 7])), bit=30)))
    assert not same(out[7], ref[7])
    assert same(np.delete(out, 7, 0), np.delete(ref, 7, 0))


def test_flip_acts_on_the_accumulator_bits(golden):
    _, _, g = golden["mlp"]
    seen = {}

    def spy(call):
        seen["d"] = call.d.copy()
        return call.d

    d0 = g.operands(2)[2]
    g.inject([OutputBitFlip(gemm=2, row=1, col=2, bit=31), ReplaceGemmOutput(gemm=2, fn=spy)])
    assert seen["d"][0, 1, 2] == -d0[0, 1, 2]  # faults apply in order; sign bit flipped
    assert d0.dtype == np.float32 and not d0.flags.writeable


def test_replace_tile_sees_the_tile_operands(golden):
    """The tile function gets A rows and B columns in the input format: running them
    through the fast path reproduces the tile (what a cycle-level array would do)."""
    _, _, g = golden["cnn"]
    calls = []

    def tile_fn(a, b, d):
        calls.append((a.shape, b.shape, d.shape))
        assert a.dtype == np.float16 and b.dtype == np.float16
        return simulator.matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), profile="hopper")

    f = ReplaceTile(gemm=1, rows=(16, 32), cols=(16, 48), fn=tile_fn)  # cols clip to N=32
    assert same(g.inject(f), g.outputs)
    assert calls == [((16, 144), (144, 16), (16, 16))]
    # a tile that differs is visible downstream
    out = g.inject(ReplaceTile(gemm=1, rows=(0, 4), cols=(0, 4), fn=lambda a, b, d: d + 100))
    assert not same(out, g.outputs)


def test_faults_on_plain_call_and_e4m3():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    f = lambda x, w: x @ w  # noqa: E731
    ref = np.asarray(accelerated(f, E4M3)(x, w))
    out = np.array(accelerated(f, E4M3, faults=OutputBitFlip(gemm=0, row=2, col=1, bit=31))(x, w))
    assert out[2, 1] == -ref[2, 1]
    out[2, 1] = ref[2, 1]
    assert same(out, ref)


def test_fp16_accumulator_bits():
    x = np.ones((2, 4), np.float32)
    w = np.ones((4, 2), np.float32)
    acc = Accelerator("hopper", "fp16", accumulator="fp16")
    out = np.asarray(accelerated(lambda x, w: x @ w, acc, faults=[OutputBitFlip(0, 0, 0, bit=15)])(x, w))
    assert out[0, 0] == -4.0 and out[1, 1] == 4.0
    with pytest.raises(ValueError, match="bit must be in"):
        accelerated(lambda x, w: x @ w, acc, faults=[OutputBitFlip(0, 0, 0, bit=16)])(x, w)


def test_while_loop_with_tainted_condition():
    """A fault that changes a loop's trip count: the re-run leaves the cached path."""
    def f(x, w):
        y = x @ w
        return jax.lax.while_loop(lambda y: y.sum() < 100.0, lambda y: y * 2.0, y)

    x, w = np.ones((1, 2), np.float32), np.ones((2, 1), np.float32)
    g = accelerated(f, FP16).trace(x, w)
    assert float(g.outputs[0, 0]) == 128.0
    flip = OutputBitFlip(gemm=0, row=0, col=0, bit=22)  # 2.0 -> 3.0
    assert same(g.inject(flip), accelerated(f, FP16, [flip])(x, w))
    assert float(g.inject(flip)[0, 0]) == 192.0
