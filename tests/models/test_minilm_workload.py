"""The built-in minilm-retrieval workload (skipped when the model and data are absent)."""
import os
from pathlib import Path

import jax
import numpy as np
import pytest

import models
from models import MODELS_DIR_ENV, Accelerator, Workload, accelerated, get_workload, load_workload

DATA = Path(os.environ.get(MODELS_DIR_ENV) or Path(models.__file__).resolve().parent.parent.parent / "shared" / "models")
needs_data = pytest.mark.skipif(not (DATA / "retrieval_pairs.jsonl").exists() or not (DATA / "all-MiniLM-L6-v2").is_dir(),
                                reason="all-MiniLM-L6-v2 and retrieval_pairs.jsonl not available")


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="retrieval_pairs.jsonl|all-MiniLM-L6-v2"):
        get_workload("minilm-retrieval", 4, path=tmp_path)
    with pytest.raises(TypeError, match="path must be"):
        get_workload("minilm-retrieval", 4, path=3)


def test_paired_retrieval_outcome():
    # 3 pairs of unit vectors: query i is closest to passage i
    e = np.eye(3, dtype=np.float32)
    out = np.stack([e, e + 0.1 * np.roll(e, 1, axis=1)], axis=1)  # (3, 2, 3)
    wl = Workload(lambda p, x: x, {}, np.zeros((3, 1), np.float32), outcome="retrieval")
    assert wl.correct(out) == 3
    bad = out.copy()
    bad[0, 0] = [0.0, 1.0, 0.0]  # query 0 now retrieves passage 1
    assert wl.critical(out, bad).tolist() == [True, False, False]
    assert wl.correct(bad) == 2
    nan = out.copy()
    nan[2, 1, 0] = np.nan
    assert wl.critical(out, nan).tolist() == [False, False, True]
    d = wl.embedding_distance(out, bad)
    assert d[0] == pytest.approx(1.0) and d[1] == 0.0 and wl.embedding_distance(out, nan)[2] == 2.0


@needs_data
def test_minilm_retrieval_workload_small():
    wl = get_workload("minilm-retrieval", 6)
    assert wl.batch == 6 and wl.outcome == "retrieval" and wl.name == "minilm-retrieval"
    assert wl.inputs["token_ids"].shape[:2] == (6, 2) and wl.inputs["token_ids"].dtype == np.int32
    out = np.asarray(jax.jit(wl.apply)(wl.params, wl.inputs))
    assert out.shape == (6, 2, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    assert wl.correct(out) == 6
    # the reference embeddings of the official implementation (when present)
    ref = DATA / "all-MiniLM-L6-v2.reference.npz"
    if ref.exists():
        r = np.load(ref)
        cos = (out[:, 0] * r["query_embeddings"][:6]).sum(-1)
        assert cos.min() >= 0.99999
    assert load_workload("minilm-retrieval").batch == 256


@needs_data
def test_minilm_retrieval_tiny_campaign(tmp_path):
    faults = pytest.importorskip("faults")
    from simulator import SystolicArray
    c = faults.ModelCampaign(model="models:minilm_retrieval", array=SystolicArray(rows=16, cols=16), batch=3,
                             trials=4, seed=1, chunk=None)
    r = faults.run_model_campaign(c, tmp_path / "m.db", executor="serial")
    assert r.done == 4
    with faults.ResultStore.open(tmp_path / "m.db") as st:
        rows = st.rows()
    assert len(rows) == 4 and {x.format for x in rows} == {"fp16"}
    assert all(x.outcome in ("masked", "benign_sdc", "critical_sdc", "nan_inf", "detected", "corrected")
               for x in rows)


@needs_data
def test_e4m3_tensor_scaling_keeps_retrieval_on_minilm():
    wl = get_workload("minilm-retrieval", 4)
    out = np.asarray(accelerated(wl.apply, Accelerator("hopper", "e4m3", scaling="tensor"))(wl.params, wl.inputs))
    assert np.isfinite(out).all()
    assert wl.correct(out) == 4
