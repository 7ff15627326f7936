"""Chunked recomputation when native ops after the GEMMs round differently at the chunk's
batch size (as XLA's CPU reductions can): every GEMM still matches the full batch, an
example a fault leaves unchanged keeps the full batch's output, one it changes takes its
chunk's, and the user is told."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from faults import ModelCampaign
from faults._trial import _Runner
from models import ReplaceTile, Workload
from simulator import SystolicArray


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _wl(n=6):
    rng = np.random.default_rng(5)
    p = {"w1": jnp.asarray(rng.standard_normal((8, 12)) / 3, jnp.float32),
         "w2": jnp.asarray(rng.standard_normal((12, 5)) / 3, jnp.float32)}
    x = jnp.asarray(rng.standard_normal((n, 8)), jnp.float32)

    def apply(p, x):  # the tail depends on the batch size, as a shape-dependent reduction can
        return jax.nn.relu(x @ p["w1"]) @ p["w2"] + x.shape[0] * 2.0 ** -12
    return Workload(apply, p, x, name="batch-dependent-tail")


def test_chunks_with_a_batch_dependent_tail_are_used_and_the_user_is_told():
    wl = _wl()
    c = ModelCampaign(model=wl, array=SystolicArray(4, 4), trials=40, seed=2, chunk=2)
    with pytest.warns(UserWarning, match="chunks' outputs differ from the full batch's"):
        r = _Runner(c, wl)
    run = r.runs["fp16"]
    assert run.chunks is not None
    rows = r.run_many(range(40))
    full = _Runner(c.with_(chunk=None), wl).run_many(range(40))
    # the tile and whether the outputs change at all do not depend on chunking
    assert [(x.tile_diff, x.outcome == "masked") for x in rows] == [(x.tile_diff, x.outcome == "masked") for x in full]
    assert any(x.outcome != "masked" for x in rows)
    # a changed tile: its examples take the chunk's faulty output, the others the full batch's
    g = 1
    a, b, d = run.ops[g]
    tile = d[0, 0:4, 0:4].copy()
    _bits(tile)[0, 0] ^= np.uint32(1 << 30)
    logits = run.propagate(g, 0, 0, 0, tile)
    want_rows = run.chunks[0].inject([ReplaceTile(g, (0, 2), (0, 4), lambda *_: tile[0:2], 0)])
    np.testing.assert_array_equal(_bits(logits[0]), _bits(np.asarray(want_rows)[0]))
    np.testing.assert_array_equal(_bits(logits[1:]), _bits(run.logits[1:]))
    assert not np.array_equal(_bits(logits[0]), _bits(run.logits[0]))
