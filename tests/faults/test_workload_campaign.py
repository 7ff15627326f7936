"""Campaigns on user workloads: 'module:function' factories from the CLI with every
local executor, the stored workload digest, edited databases, protection in the loop."""
from __future__ import annotations

import json
import sqlite3
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import faults
from faults import CampaignMismatchError, ModelCampaign, ResultStore, model_campaign_report, run_model_campaign
from faults._cli import main
from models import Workload
from protection import ProtectedArray, SecDed
from simulator import SystolicArray

MODULE = textwrap.dedent('''
    import os
    import jax
    import jax.numpy as jnp
    import numpy as np
    from models import Workload

    def _mlp(dtype):
        rng = np.random.default_rng(int(os.environ.get("MYWL_SEED", "0")))
        p = {"w1": jnp.asarray(rng.standard_normal((16, 24)) / 4, dtype),
             "w2": jnp.asarray(rng.standard_normal((24, 10)) / 5, dtype)}
        x = jnp.asarray(rng.standard_normal((8, 16)), dtype)
        def apply(p, x):
            return jax.nn.relu(x @ p["w1"]) @ p["w2"]
        return Workload(apply, p, x, name=f"mlp-{jnp.dtype(dtype).name}")

    def make():
        return _mlp(jnp.float32)

    def make_bf16():
        return _mlp(jnp.bfloat16)
''')


@pytest.fixture()
def mywl(tmp_path, monkeypatch):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "mywl.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(d))
    # spawned workers import the factory's module from PYTHONPATH, as a user's would
    monkeypatch.setenv("PYTHONPATH", f"{d}:{sys.path[0]}:" + __import__("os").environ.get("PYTHONPATH", ""))
    sys.modules.pop("mywl", None)
    yield d
    sys.modules.pop("mywl", None)


def _trials(db):
    with sqlite3.connect(db) as c:
        return (c.execute("SELECT COUNT(*) FROM trials").fetchone()[0],
                c.execute("SELECT COUNT(DISTINCT gemm) FROM trials").fetchone()[0],
                sorted(r[0] for r in c.execute("SELECT DISTINCT layer FROM trials")))


@pytest.mark.parametrize("factory", ["mywl:make", "mywl:make_bf16"])
@pytest.mark.parametrize("executor", ["serial", "process"])
def test_cli_factory_campaign(mywl, tmp_path, capsys, factory, executor):
    db = tmp_path / f"{executor}.db"
    rc = main(["campaign", "run", "--model", factory, "--trials", "60", "--stratify", "layer", "--formats", "fp16",
               "--executor", executor, "--workers", "2", "--array", "4x4", "--db", str(db), "--no-progress",
               "--no-plots"])
    assert rc == 0
    n, gemms, layers = _trials(db)
    assert (n, gemms) == (120, 2)
    assert layers == ["0:dot_general", "1:dot_general"]  # unnamed GEMMs never merge into one row
    capsys.readouterr()
    assert main(["campaign", "report", str(db), "--no-plots"]) == 0  # the positional DB
    out = capsys.readouterr().out
    assert f"({factory}," in out and "120/120 trials" in out and "1:dot_general" in out


def test_cli_resume_refuses_changed_workload_data(mywl, tmp_path, capsys, monkeypatch):
    db = tmp_path / "c.db"
    assert main(["campaign", "run", "--model", "mywl:make", "--trials", "5", "--array", "4x4", "--db", str(db),
                 "--executor", "serial", "--max-trials", "4", "--no-progress", "--no-report"]) == 0
    before = _trials(db)[0]
    assert before == 4
    monkeypatch.setenv("MYWL_SEED", "1")  # the factory now returns other data
    rc = main(["campaign", "resume", "--db", str(db), "--executor", "serial", "--no-progress", "--no-report"])
    err = capsys.readouterr().err
    assert rc != 0 and "workload digest" in err
    with ResultStore.open(db) as st:
        stored = st.workload["digest"]
    import mywl
    assert stored in err and mywl.make().digest in err
    assert _trials(db)[0] == before  # nothing added
    rc = main(["campaign", "report", str(db), "--no-plots"])
    assert rc != 0 and "workload digest" in capsys.readouterr().err


def test_cli_resume_refuses_edited_campaign(mywl, tmp_path, capsys):
    db = tmp_path / "c.db"
    assert main(["campaign", "run", "--model", "mywl:make", "--trials", "5", "--array", "4x4", "--db", str(db),
                 "--seed", "17", "--executor", "serial", "--max-trials", "4", "--no-progress", "--no-report"]) == 0
    with sqlite3.connect(db) as c:
        text = c.execute("SELECT value FROM meta WHERE key='campaign'").fetchone()[0]
        assert '"seed":17' in text
        c.execute("UPDATE meta SET value=? WHERE key='campaign'", (text.replace('"seed":17', '"seed":18'),))
    capsys.readouterr()
    rc = main(["campaign", "resume", str(db), "--executor", "serial", "--no-progress", "--no-report"])
    err = capsys.readouterr().err
    assert rc != 0 and "edited" in err
    assert _trials(db)[0] == 4
    assert main(["campaign", "report", "--db", str(db), "--no-plots"]) != 0


def test_cli_db_given_twice_differently_is_an_error(tmp_path, capsys):
    assert main(["campaign", "report", "a.db", "--db", "b.db"]) == 2
    assert "given once" in capsys.readouterr().err


def _wl(n=6, seed=0):
    rng = np.random.default_rng(seed)
    p = {"w1": jnp.asarray(rng.standard_normal((8, 12)) / 3, jnp.float32),
         "w2": jnp.asarray(rng.standard_normal((12, 5)) / 3, jnp.float32)}
    x = jnp.asarray(rng.standard_normal((n, 8)), jnp.float32)
    return Workload(lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"], p, x, name="tiny")


def test_in_memory_workload_runs_serially_and_resumes_with_it(tmp_path):
    wl = _wl()
    c = ModelCampaign(model=wl, array=SystolicArray(4, 4), trials=6, chunk=2)
    with pytest.raises(ValueError, match="module:function"):
        run_model_campaign(c, tmp_path / "x.db", executor="process")
    run_model_campaign(c, tmp_path / "m.db", executor="serial", max_trials=3)
    with pytest.raises(ValueError, match="workload itself"):
        faults.resume_model_campaign(tmp_path / "m.db", executor="serial")
    with pytest.raises(CampaignMismatchError, match=_wl(seed=1).digest):
        faults.resume_model_campaign(tmp_path / "m.db", executor="serial", workload=_wl(seed=1))
    r = faults.resume_model_campaign(tmp_path / "m.db", executor="serial", workload=_wl())
    assert r.complete and r.done == 6
    rep = model_campaign_report(tmp_path / "m.db")
    assert rep.workload["digest"] == wl.digest and "tiny" in rep.text()
    with pytest.raises(CampaignMismatchError):
        model_campaign_report(tmp_path / "m.db", workload=_wl(seed=2))


def test_results_do_not_depend_on_how_the_workload_was_given(mywl, tmp_path):
    import mywl as m
    a = ModelCampaign(model="mywl:make", array=SystolicArray(4, 4), trials=8)
    b = a.with_(model=m.make())
    run_model_campaign(a, tmp_path / "a.db", executor="serial")
    run_model_campaign(b, tmp_path / "b.db", executor="serial")
    with ResultStore.open(tmp_path / "a.db") as x, ResultStore.open(tmp_path / "b.db") as y:
        assert x.rows() == y.rows()
        assert x.workload["digest"] == y.workload["digest"] == m.make().digest
        assert x.workload["ref"] == "mywl:make" and y.workload["ref"] is None


def test_outcome_rule_drives_critical(tmp_path):
    """A callable outcome that calls everything critical: every non-masked, finite
    trial is a critical SDC, and top1_changed counts every example."""
    wl = _wl()
    every = Workload(wl.apply, wl.params, wl.inputs, outcome=lambda g, f, l: np.ones(len(g), bool))
    c = ModelCampaign(model=every, array=SystolicArray(4, 4), trials=40, level="value")
    run_model_campaign(c, tmp_path / "o.db", executor="serial")
    with ResultStore.open(tmp_path / "o.db") as st:
        rows = st.rows()
    assert {r.outcome for r in rows} <= {"masked", "critical_sdc", "nan_inf"}
    assert any(r.outcome == "critical_sdc" for r in rows)
    assert all(r.top1_changed == 6 for r in rows if r.outcome == "critical_sdc")


def test_protected_array_campaign_outcomes(tmp_path):
    """SEC-DED on psum: a single flip in psum is corrected in the register, so no
    trial is an SDC, and corrected trials end with the golden tile."""
    wl = _wl(n=4)
    arr = ProtectedArray(SystolicArray(4, 4), (SecDed(registers=("psum",)),))
    c = ModelCampaign(model=wl, array=arr, registers=("psum",), trials=40)
    assert ModelCampaign.from_json(c.to_json(), wl) == c.with_(model=wl)
    run_model_campaign(c, tmp_path / "p.db", executor="serial")
    with ResultStore.open(tmp_path / "p.db") as st:
        rows = st.rows()
        assert st.campaign.array == arr
    outs = {r.outcome for r in rows}
    assert outs <= {"masked", "corrected"} and "corrected" in outs
    assert all(r.tile_diff == 0 for r in rows)
    rep = model_campaign_report(tmp_path / "p.db")
    assert rep.tables["format"][0].sdc == 0.0 and "protected by sec-ded(psum; flag)" in rep.text()


def test_miscorrection_is_sdc_not_corrected(tmp_path, monkeypatch):
    """A scheme that claims a correction but delivers a wrong tile is an SDC."""
    from faults import _trial

    wl = _wl(n=4)
    arr = ProtectedArray(SystolicArray(4, 4), (SecDed(registers=("psum",)),))
    c = ModelCampaign(model=wl, array=arr, registers=("psum",), trials=10)
    runner = _trial._Runner(c, wl)

    class Liar:
        def __init__(self, res, recompute):
            out = res.output.copy()
            out.view(np.uint32)[0, 0] ^= np.uint32(1 << 30)
            self.output, self.alarms, self.corrected = out, ("secded",), not recompute
            self.recompute_cycles = 5 if recompute else 0
            self.outcome, self.miscorrected = "corrected", False  # a false claim: the tile differs

    for recompute in (False, True):
        real_run = ProtectedArray.run
        monkeypatch.setattr(ProtectedArray, "run", lambda self, *a, **k: Liar(real_run(self, *a, **k), recompute))
        outs = {runner.run(t).outcome for t in range(10)}
        monkeypatch.setattr(ProtectedArray, "run", real_run)
        assert outs and outs <= {"benign_sdc", "critical_sdc", "nan_inf", "masked"}
        assert outs & {"benign_sdc", "critical_sdc", "nan_inf"}


def test_alarm_without_action_is_detected(tmp_path):
    """A flag-only parity check on psum: flips it sees end detected, never SDC."""
    from protection import Parity

    wl = _wl(n=4)
    arr = ProtectedArray(SystolicArray(4, 4), (Parity(registers=("psum",)),))
    c = ModelCampaign(model=wl, array=arr, registers=("psum",), trials=40)
    run_model_campaign(c, tmp_path / "d.db", executor="serial")
    with ResultStore.open(tmp_path / "d.db") as st:
        rows = st.rows()
    assert "detected" in {r.outcome for r in rows}
    assert all(r.outcome in ("masked", "detected") for r in rows)


def test_cli_factory_campaign_on_dask(mywl, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        rc = main(["campaign", "run", "--model", "mywl:make_bf16", "--trials", "10", "--stratify", "layer",
                   "--array", "4x4", "--executor", "dask", "--scheduler", cluster.scheduler_address,
                   "--db", str(tmp_path / "d.db"), "--no-progress", "--no-report"])
    assert rc == 0 and _trials(tmp_path / "d.db")[:2] == (20, 2)
    assert main(["campaign", "run", "--model", "mywl:make_bf16", "--trials", "10", "--stratify", "layer",
                 "--array", "4x4", "--executor", "serial", "--db", str(tmp_path / "s.db"), "--no-progress",
                 "--no-report"]) == 0
    with ResultStore.open(tmp_path / "d.db") as a, ResultStore.open(tmp_path / "s.db") as b:
        assert a.rows() == b.rows()
    assert main(["campaign", "resume", str(tmp_path / "d.db"), "--executor", "dask"]) == 2
    assert "--scheduler must be" in capsys.readouterr().err


def test_builtin_workload_names_are_campaign_models():
    assert ModelCampaign(model="minilm-retrieval", trials=2).model == "minilm-retrieval"
    with pytest.raises(ValueError, match="minilm-retrieval"):
        ModelCampaign(model="minilm", trials=2)
