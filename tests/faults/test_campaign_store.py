"""run_campaign(store=...): stored trials are keyed by a digest of the GEMM, not its
shape; a partial last line is dropped with a warning; an altered line is refused;
golden= of another GEMM is refused; K = 0 is refused."""
import json
import warnings

import numpy as np
import pytest

from faults import run_campaign
from faults._campaign import gemm_digest
from protection import ProtectedArray, SecDed
from simulator import SystolicArray

ARR = ProtectedArray(SystolicArray(4, 4), (SecDed(),))


def _gemm(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 12)).astype(np.float16), rng.standard_normal((12, 8)).astype(np.float16)


def test_another_gemm_of_the_same_shape_does_not_reuse_the_store(tmp_path):
    a, b = _gemm()
    store = str(tmp_path / "t.jsonl")
    run_campaign(ARR, a, b, n=30, seed=1, store=store)
    assert gemm_digest(a, b) != gemm_digest(0 * a, b) != gemm_digest(a, b, np.zeros((8, 8), np.float32))
    assert gemm_digest(a, b) == gemm_digest(a.copy(), b.copy())
    with pytest.raises(ValueError, match="store must hold trials of this campaign"):
        run_campaign(ARR, 0 * a, b, n=30, seed=1, store=store)
    # the zero GEMM in its own store gives its own counts, which differ from a's
    z = run_campaign(ARR, 0 * a, b, n=30, seed=1, store=str(tmp_path / "z.jsonl"))
    assert dict(z.counts) == dict(run_campaign(ARR, 0 * a, b, n=30, seed=1).counts)
    assert dict(z.counts) != dict(run_campaign(ARR, a, b, n=30, seed=1).counts)


def test_a_partial_last_line_is_dropped_and_rerun(tmp_path):
    a, b = _gemm(1)
    ref = run_campaign(ARR, a, b, n=40, seed=2)
    store = tmp_path / "t.jsonl"
    run_campaign(ARR, a, b, n=25, seed=2, store=str(store))
    text = store.read_text()
    last = text.splitlines()[-1]
    store.write_text(text[:-len(last) - 1] + last[:len(last) // 2])  # killed in the middle of trial 24's line
    with pytest.warns(RuntimeWarning, match="dropped a partial last line"):
        res = run_campaign(ARR, a, b, n=40, seed=2, store=str(store))
    assert dict(res.counts) == dict(ref.counts)
    lines = store.read_text().splitlines()
    assert len(lines) == 41 and [json.loads(x)["i"] for x in lines[1:]] == list(range(40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dict(run_campaign(ARR, a, b, n=40, seed=2, store=str(store)).counts) == dict(ref.counts)


def test_an_altered_line_is_refused(tmp_path):
    a, b = _gemm(2)
    store = tmp_path / "t.jsonl"
    run_campaign(ARR, a, b, n=10, seed=0, store=str(store))
    lines = store.read_text().splitlines()
    x = json.loads(lines[5])
    x["outcome"] = "masked" if x["outcome"] != "masked" else "sdc"
    lines[5] = json.dumps(x)
    store.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 6 must be a trial this module wrote"):
        run_campaign(ARR, a, b, n=10, seed=0, store=str(store))
    old = tmp_path / "old.jsonl"  # a store of the first layout (no GEMM digest)
    old.write_text(json.dumps({"header": {"config": repr(ARR), "seed": 0, "shape": [8, 12, 8], "format": "fp16"}})
                   + "\n")
    with pytest.raises(ValueError, match="store must hold trials of this campaign"):
        run_campaign(ARR, a, b, n=10, seed=0, store=str(old))


def test_golden_of_another_gemm_is_refused():
    a, b = _gemm(3)
    g = ARR.array.golden(a, b)
    run_campaign(ARR, a, b, n=5, golden=g)  # its own: fine
    with pytest.raises(ValueError, match="golden must be the fault-free run of these a, b, c"):
        run_campaign(ARR, 0 * a, b, n=5, golden=g)
    with pytest.raises(ValueError, match="golden must be the fault-free run"):
        run_campaign(ARR, a, b, np.ones((8, 8), np.float32), n=5, golden=g)
    with pytest.raises(ValueError, match="golden must be a run of this GEMM"):
        run_campaign(ARR, a[:4], b, n=5, golden=g)
    with pytest.raises(ValueError, match="golden must be a run on"):
        run_campaign(SystolicArray(2, 2), a, b, n=5, golden=g)


def test_empty_dimensions_are_refused():
    a, b = _gemm()
    with pytest.raises(ValueError, match=r"K must be >= 1 for a fault campaign, not 0"):
        run_campaign(ARR, a[:, :0], b[:0], n=5)
    with pytest.raises(ValueError, match=r"M must be >= 1"):
        run_campaign(ARR, a[:0], b, n=5)
    with pytest.raises(ValueError, match=r"b must have K = 12 rows"):
        run_campaign(ARR, a, b[:5], n=5)
