"""Model campaigns with an FP8 scaling recipe (``ModelCampaign(scaling=...)``, ``--scaling``):
the runner's golden run is the scaled accelerator's, the array's tile is D before the
epilogue bit for bit, campaigns run, store and report; invalid recipes and block
scaling at register level are refused; ``"none"`` keeps the JSON and digest."""
import json
import sqlite3

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import faults
from faults import ModelCampaign, ResultStore, model_campaign_report, run_model_campaign
from faults._cli import main
from faults._trial import _Runner
from models import Accelerator, Workload, accelerated
from simulator import SystolicArray, TensorCoreArray


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _wl(n=6, seed=0):
    """An MLP whose activations (about 100) exceed e4m3's range: unscaled e4m3 saturates."""
    rng = np.random.default_rng(seed)
    p = {"w1": jnp.asarray(rng.standard_normal((16, 24)) / 4, jnp.float32),
         "w2": jnp.asarray(rng.standard_normal((24, 10)) / 5, jnp.float32)}
    x = jnp.asarray(rng.standard_normal((n, 16)) * 300, jnp.float32)
    return Workload(lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"], p, x, name="tiny-fp8")


def test_runner_uses_the_scaled_accelerator_and_tiles_are_d_before_the_epilogue():
    wl = _wl()
    arr = TensorCoreArray(4, 4, profile="hopper")
    c = ModelCampaign(model=wl, array=arr, formats=("e4m3",), scaling="tensor", trials=4)
    run = _Runner(c, wl).runs["e4m3"]
    assert run.acc.scaling == "tensor"
    scaled = accelerated(wl.apply, Accelerator("hopper", "e4m3", scaling="tensor"))(wl.params, wl.inputs)
    plain = accelerated(wl.apply, Accelerator("hopper", "e4m3"))(wl.params, wl.inputs)
    assert np.array_equal(_bits(run.logits), _bits(scaled))
    assert not np.array_equal(_bits(scaled), _bits(plain))  # the recipe changes the result here
    for g in range(len(run.golden.gemms)):
        a, b, d = run.ops[g]
        sc = run.golden.scales(g)
        assert sc is not None and sc.kind == "tensor"
        # the array computes the unscaled accumulator from the quantised operands, bit for bit
        for r0 in range(0, a.shape[1], 4):
            for c0 in range(0, b.shape[2], 4):
                at = np.ascontiguousarray(a[0, r0:r0 + 4])
                bt = np.ascontiguousarray(b[0, :, c0:c0 + 4])
                out = arr.run(at, bt, np.zeros((at.shape[0], bt.shape[1]), d.dtype)).output
                assert np.array_equal(_bits(out), _bits(d[0, r0:r0 + 4, c0:c0 + 4])), (g, r0, c0)


@pytest.mark.parametrize("scaling", ["tensor", "row"])
def test_scaled_campaign_runs_stores_and_reports(tmp_path, scaling):
    wl = _wl()
    c = ModelCampaign(model=wl, array=SystolicArray(4, 4), formats=("e4m3",), scaling=scaling, trials=30, seed=3)
    res = run_model_campaign(c, tmp_path / "s.db", executor="serial")
    assert res.complete and res.done == 30
    with ResultStore.open(tmp_path / "s.db") as st:
        rows = st.rows()
        assert st.campaign.scaling == scaling and st.campaign == c.with_(model=st.campaign.model)
    assert len(rows) == 30 and {r.format for r in rows} == {"e4m3"}
    assert any(r.outcome != "masked" for r in rows)
    # trials are pure: the same trials rerun give the same rows
    assert _Runner(c, wl).run_many(range(30)) == rows
    rep = model_campaign_report(tmp_path / "s.db")
    assert f"formats e4m3 (scaling {scaling})" in rep.text() and "30/30 trials" in rep.text()
    # reopening with the unscaled campaign is another campaign
    with pytest.raises(faults.CampaignMismatchError):
        ResultStore.open(tmp_path / "s.db", c.with_(scaling="none"))


def test_scaling_is_in_the_json_and_digest_only_when_not_none():
    c = ModelCampaign(model="mlp", array=SystolicArray(4, 4), formats=("e4m3",), trials=3)
    assert "scaling" not in json.loads(c.to_json())  # campaigns from before the field keep their digest
    t = c.with_(scaling="tensor")
    assert json.loads(t.to_json())["scaling"] == "tensor" and t.digest != c.digest
    assert ModelCampaign.from_json(t.to_json()) == t and ModelCampaign.from_json(c.to_json()) == c
    v = c.with_(level="value", scaling="block:32")
    assert ModelCampaign.from_json(v.to_json()) == v and v.digest not in (c.digest, t.digest)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(scaling="channel"), ValueError, "scaling must be one of"),
    (dict(scaling="block:0"), ValueError, "scaling must be one of"),
    (dict(scaling="block:x"), ValueError, "scaling must be one of"),
    (dict(scaling=None), TypeError, "scaling must be a str, not NoneType"),
    (dict(scaling="tensor", formats=("tf32",)), ValueError, "scaling must be 'none' for input_format 'tf32'"),
    (dict(scaling="block:32"), ValueError, "scaling must be 'none', 'tensor' or 'row' at level 'register'"),
])
def test_invalid_scaling_is_refused(kw, exc, msg):
    base = dict(model="mlp", array=SystolicArray(4, 4), formats=("e4m3",), trials=3)
    with pytest.raises(exc, match=msg) as e:
        ModelCampaign(**{**base, **kw})
    assert "\n" not in str(e.value)


def test_block_scaling_at_value_level_runs(tmp_path):
    wl = _wl()
    c = ModelCampaign(model=wl, array=SystolicArray(4, 4), formats=("e4m3",), level="value",
                      scaling="block:8", trials=20)
    r = _Runner(c, wl)
    run = r.runs["e4m3"]
    assert run.golden.scales(0).kind == "block"
    ref = accelerated(wl.apply, Accelerator("systolic_fma", "e4m3", scaling="block:8"))(wl.params, wl.inputs)
    assert np.array_equal(_bits(run.logits), _bits(ref))
    rows = r.run_many(range(20))
    assert all(x.register == "output" and x.tile_diff == 1 for x in rows)


def test_cli_scaling(tmp_path, capsys):
    db = tmp_path / "c.db"
    rc = main(["campaign", "run", "--model", "mlp", "--batch", "4", "--trials", "6", "--formats", "e4m3",
               "--scaling", "row", "--array", "4x4", "--executor", "serial", "--db", str(db), "--no-progress",
               "--no-plots"])
    out = capsys.readouterr().out
    assert rc == 0 and "formats e4m3 (scaling row)" in out
    with sqlite3.connect(db) as conn:
        assert json.loads(conn.execute("SELECT value FROM meta WHERE key='campaign'").fetchone()[0])["scaling"] == "row"
    rc = main(["campaign", "run", "--model", "mlp", "--batch", "4", "--trials", "6", "--formats", "e4m3",
               "--scaling", "block:32", "--array", "4x4", "--executor", "serial", "--db", str(tmp_path / "b.db"),
               "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and "at level 'register'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.db").exists()
