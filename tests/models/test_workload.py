"""models.Workload: validation, outcome rules (expected values written by hand), digest."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from models import MODELS, Workload, get_workload, load_workload

G = np.array([[0.1, 0.5, 0.2], [0.9, 0.0, 0.3], [0.2, 0.3, 0.1]], np.float32)  # top-1: 1, 0, 1
F = np.array([[0.6, 0.5, 0.2], [0.9, 0.0, 0.3], [0.2, 0.1, 0.3]], np.float32)  # top-1: 0, 0, 2


def wl(**kw):
    return Workload(lambda p, x: x, {}, G, **kw)


def test_top1_against_golden_and_labels():
    assert wl().critical(G, F).tolist() == [True, False, True]
    # labels: example 2's golden answer (1) is already wrong (label 2), so its change is not critical
    w = wl(labels=np.array([1, 0, 2]))
    assert w.critical(G, F).tolist() == [True, False, False]
    assert w.correct(G) == 2 and w.correct(F) == 2


def test_topk():
    assert wl(outcome="topk:2").critical(G, F).tolist() == [False, False, True]  # golden top-1 among faulty top-2?
    assert wl(outcome="topk:2", labels=np.array([2, 1, 1])).critical(G, F).tolist() == [True, False, True]


def test_retrieval():
    e = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)  # neighbours 1, 0, 3, 2
    f = e.copy()
    f[0] = [0.3, 0.9]  # row 0 now retrieves row 3; rows 1, 2, 3 keep their neighbours (0, 3, 2)
    w = Workload(lambda p, x: x, {}, e, outcome="retrieval")
    assert w.critical(e, f).tolist() == [True, False, False, False]
    lab = Workload(lambda p, x: x, {}, e, labels=np.array([0, 0, 1, 1]), outcome="retrieval")
    assert lab.critical(e, f)[0] and lab.correct(e) == 4


def test_tolerance_and_nonfinite():
    w = wl(outcome="tolerance:0.5")
    f = G.copy()
    f[0, 1] = 0.7   # error 0.2 <= 0.5 * 0.5
    f[1, 0] = 0.3   # error 0.6 > 0.5 * 0.9
    f[2, 2] = np.inf
    assert w.critical(G, f).tolist() == [False, True, True]
    assert wl().critical(G, np.where(np.arange(3)[:, None] == 1, np.nan, G)).tolist() == [False, True, False]


def test_callable_outcome_checked():
    assert wl(outcome=lambda g, f, l: np.array([True, False, False])).critical(G, F).tolist() == [True, False, False]
    with pytest.raises(ValueError, match=r"\(B,\) = \(3,\) bool"):
        wl(outcome=lambda g, f, l: np.zeros(3)).critical(G, F)


@pytest.mark.parametrize("kw,err,msg", [
    (dict(outcome="top5"), ValueError, "outcome must be one of"),
    (dict(outcome="topk:0"), ValueError, "outcome must be one of"),
    (dict(outcome="tolerance:-1"), ValueError, "outcome must be one of"),
    (dict(outcome=3), TypeError, "outcome must be a str or a callable"),
    (dict(labels=np.zeros(2)), ValueError, "batch size 3"),
    (dict(labels=[0, 1, 2]), TypeError, "labels must be an array"),
    (dict(name=3), TypeError, "name must be a str"),
])
def test_validation(kw, err, msg):
    with pytest.raises(err, match=msg):
        wl(**kw)


def test_inputs_validation():
    with pytest.raises(ValueError, match="same leading batch axis"):
        Workload(lambda p, x: x, {}, {"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
    with pytest.raises(TypeError, match="inputs must be an array"):
        Workload(lambda p, x: x, {}, [1, 2])
    with pytest.raises(TypeError, match="apply must be callable"):
        Workload(None, {}, G)


def test_digest_tracks_params_inputs_labels():
    p = {"w": np.ones((2, 2), np.float32)}
    a = Workload(lambda p, x: x, p, G)
    assert a.digest == Workload(lambda p, x: x + 1, dict(p), G.copy()).digest  # data, not code
    assert a.digest != Workload(lambda p, x: x, {"w": np.ones((2, 2), np.float16)}, G).digest
    g2 = G.copy()
    g2[2, 2] = np.nextafter(g2[2, 2], 1)
    assert a.digest != Workload(lambda p, x: x, p, g2).digest
    assert a.digest != Workload(lambda p, x: x, p, G, labels=np.zeros(3, np.int32)).digest
    assert a.digest != Workload(lambda p, x: x, p, jnp.asarray(G, jnp.bfloat16)).digest


def test_take_and_shipped_workloads():
    w = get_workload("mlp")
    assert w.batch == 256 and w.labels.shape == (256,) and w.name == "mlp"
    t = w.take(10)
    assert t.batch == 10 and np.array_equal(t.labels, w.labels[:10]) and t.digest != w.digest
    assert set(MODELS) == {"mlp", "cnn", "transformer"}
    assert load_workload("cnn").digest == get_workload("cnn").digest
    with pytest.raises(ValueError, match="module:function"):
        load_workload("nosuchmodule_xyz:make")
    with pytest.raises(TypeError, match="must return a models.Workload"):
        load_workload("os:getcwd")
