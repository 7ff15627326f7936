"""Rounded weights are cached across calls of an accelerated function."""
import jax.numpy as jnp
import numpy as np
import pytest

from models import Accelerator, OutputBitFlip, accelerated


def _f(p, x):
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w1": jnp.asarray(rng.standard_normal((16, 8)), jnp.float32),
            "w2": jnp.asarray(rng.standard_normal((8, 4)), jnp.float32)}


def test_weights_rounded_once_and_bits_unchanged(monkeypatch):
    p = _params()
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    acc = Accelerator("hopper", "bf16")
    want = np.asarray(accelerated(_f, acc)(p, x))
    calls = []
    orig = Accelerator.round_operand

    def counting(self, v):
        calls.append(np.shape(v))
        return orig(self, v)

    monkeypatch.setattr(Accelerator, "round_operand", counting)
    af = accelerated(_f, acc)
    first = np.asarray(af(p, x))
    n_first = len(calls)
    second = np.asarray(af(p, x))
    assert np.array_equal(first.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(second.view(np.uint32), want.view(np.uint32))
    assert n_first == 4 and len(calls) - n_first == 2  # only the activations again
    # new weights: rounded afresh, and their results, not the cached ones
    p2 = _params(2)
    third = np.asarray(af(p2, x))
    assert np.array_equal(third.view(np.uint32), np.asarray(accelerated(_f, acc)(p2, x)).view(np.uint32))
    assert len(af._round_cache) == 2
    # a faulty re-run reuses the cache too
    g = af.trace(p2, x)
    before = len(calls)
    g.inject(OutputBitFlip(0, 0, 0, 30))
    assert len(calls) - before == 1  # the tainted activation of GEMM 1 only


def test_numpy_weights_are_not_cached():
    p = {k: np.array(v) for k, v in _params().items()}
    x = np.ones((2, 16), np.float32)
    acc = Accelerator("hopper", "fp16")
    af = accelerated(_f, acc)
    a = np.asarray(af(p, x))
    p["w2"][:] = 0.0  # mutated in place: must be seen
    b = np.asarray(af(p, x))
    assert not b.any() and a.any()


def _g(p, x):
    h = x @ p["w1"]
    h = jnp.tanh(jnp.exp(-jnp.abs(h)))          # one-input chain: its middle values are not kept
    return (h * p["s"] + 1.0) @ p["w2"]           # h is read with s: kept


def test_golden_trace_drops_values_only_one_input_equations_read_and_injects_the_same():
    p = dict(_params(), s=jnp.asarray(np.linspace(0.5, 2.0, 8), jnp.float32))
    x = np.random.default_rng(3).standard_normal((6, 16)).astype(np.float32)
    acc = Accelerator("hopper", "fp16")
    af = accelerated(_g, acc)
    tr = af.trace(p, x)
    kept = [o is not None for outs in tr._cache.values() for o in outs]
    assert not all(kept) and sum(kept) >= 3  # something dropped, the read-twice values kept
    for gemm in range(2):
        for idx in [(0, 0), (5, 3), (2, 7 if gemm == 0 else 3)]:
            for bit in (3, 22, 30, 31):
                f = OutputBitFlip(gemm, idx[0], idx[1], bit)
                got, stats = tr.inject(f, return_stats=True)
                want = accelerated(_g, acc, faults=(f,))(p, x)
                assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))
                assert stats.masked == np.array_equal(np.asarray(want).view(np.uint32),
                                                      np.asarray(tr.outputs).view(np.uint32))


def test_a_trace_without_intermediates_keeps_operands_and_refuses_inject():
    p = _params()
    x = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    tr = accelerated(_f, Accelerator("hopper", "fp16")).trace(p, x)
    a, b, d = tr.operands(1)
    tr.drop_intermediates()
    a2, b2, d2 = tr.operands(1)
    assert a2 is a and d2 is d
    with pytest.raises(ValueError, match="drop_intermediates"):
        tr.inject(OutputBitFlip(0, 0, 0, 3))
