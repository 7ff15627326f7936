"""Permanent-fault model campaigns: each trial is one faulty chip (a sampled FaultMap)
running the whole evaluation set; stored with digests, resumed after a kill, run on the
process pool and Dask like transient trials, reported as a distribution over chips."""
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import models
from faults import (CHIP_OUTCOMES, ChipReport, ChipResult, ModelCampaign, ResultStore, StoreCorruptError, StoreError,
                    chip_seed, model_campaign_report, run_model_campaign, site_space)
from faults._cli import main
from protection import ProtectedArray
from simulator import FaultMap, SystolicArray

ARR = SystolicArray(8, 8)
C = ModelCampaign(model="cnn", batch=16, array=ARR, fault_model="permanent", fault_rate=0.05, trials=8, seed=3)


@pytest.fixture(scope="module")
def done_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("perm") / "chips.db"
    run_model_campaign(C, db, executor="serial")
    return db


def _call(argv):
    out = io.StringIO()
    try:
        rc = main(argv, out=out)
    except SystemExit as e:
        rc = e.code
    return rc, out.getvalue()


# ---- the specification --------------------------------------------------------------------
@pytest.mark.parametrize("kw, err, msg", [
    (dict(fault_rate=1.5), ValueError, r"fault_rate must be in \[0, 1\], not 1.5"),
    (dict(fault_rate=-0.01), ValueError, r"fault_rate must be in \[0, 1\], not -0.01"),
    (dict(fault_rate=float("nan")), ValueError, r"fault_rate must be in \[0, 1\], not nan"),
    (dict(fault_rate="0.1"), TypeError, "fault_rate must be a float in \\[0, 1\\].*not str"),
    (dict(fault_rate=True), TypeError, "fault_rate must be a float in \\[0, 1\\].*not bool"),
    (dict(fault_rate=None), TypeError, "fault_rate must be a float in \\[0, 1\\].*not NoneType"),
    (dict(fault_rate=(0.1, 0.1)), ValueError, "fault_rate must hold distinct rates"),
    (dict(fault_model="intermittent"), ValueError, r"fault_model must be one of \('transient', 'permanent'\), "
                                                   r"not 'intermittent'"),
    (dict(trials=None), ValueError, "trials must be an int >= 1 \\(chips per stratum\\)"),
    (dict(level="value"), ValueError, "level must be 'register' for fault_model 'permanent', not 'value'"),
    (dict(stratify="layer"), ValueError, "stratify must be 'format' for fault_model 'permanent'"),
    (dict(tile_rows=4), ValueError, "tile_rows must be None for fault_model 'permanent'"),
    (dict(detector="m:f"), ValueError, "detector must be None for fault_model 'permanent'"),
    (dict(stuck=("stuck2",)), ValueError, "stuck must be distinct values among"),
    (dict(stuck=()), TypeError, "stuck must be a non-empty tuple of str"),
    (dict(bits=(16, 40)), ValueError, r"bits must include one below 16 \(register 'a' in fp16\)"),
    (dict(bits=(-1,)), ValueError, "bits must be distinct ints >= 0"),
    (dict(registers=("prod",)), ValueError, "registers must be among"),
    (dict(array=ProtectedArray(ARR, ())), ValueError, "array must be a SystolicArray or TensorCoreArray for "
                                                      "fault_model 'permanent'"),
])
def test_bad_permanent_campaigns_are_refused(kw, err, msg):
    with pytest.raises(err, match=msg) as e:
        C.with_(**kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw, name", [(dict(fault_rate=0.1), "fault_rate"), (dict(stuck=("stuck1",)), "stuck"),
                                      (dict(bits=(3,)), "bits")])
def test_permanent_settings_are_refused_on_a_transient_campaign(kw, name):
    with pytest.raises(ValueError, match=f"{name} must be .* for fault_model 'transient'"):
        ModelCampaign(model="cnn", array=ARR, **kw)


def test_json_round_trip_and_old_digests_kept():
    for c in (C, C.with_(fault_rate=(0.0, 0.5), stuck="stuck1", bits=(3, 14), registers=("w", "psum"))):
        back = ModelCampaign.from_json(c.to_json())
        assert back == c and back.digest == c.digest
    t = ModelCampaign(model="cnn", array=ARR, trials=5)
    d = json.loads(t.to_json())  # a transient campaign's JSON (and digest) is what it was before chips
    assert not {"fault_model", "fault_rate", "stuck", "bits"} & set(d)
    assert C.chunk is None and C.with_(chunk=8).digest == C.digest  # unused by chips: one canonical campaign
    assert C.fault_rates == (0.05,) and t.fault_rates == () and C.permanent and not t.permanent


def test_chip_space_is_balanced_and_reproducible():
    c = C.with_(model="mlp", batch=8, fault_rate=(0.0, 0.25), trials=7, formats=("fp16", "bf16"),
                stuck=("stuck0", "stuck1"))
    sp = site_space(c)
    assert sp.total == 28 and [(s.format, s.first, s.trials) for s in sp.strata] == [
        ("fp16", 0, 7), ("fp16", 7, 7), ("bf16", 14, 7), ("bf16", 21, 7)]
    sites = [sp.site(i) for i in range(sp.total)]
    assert [s.rate for s in sites[:14]] == [0.0] * 7 + [0.25] * 7
    # register and stuck value cycle through registers x stuck, in the PE's register order
    assert [(s.register, s.stuck) for s in sites[:7]] == [
        ("a", "stuck0"), ("a", "stuck1"), ("w", "stuck0"), ("w", "stuck1"), ("psum", "stuck0"), ("psum", "stuck1"),
        ("a", "stuck0")]
    assert len({s.map_seed for s in sites}) == 28 and sites[5].map_seed == chip_seed(c.seed, 5)
    assert chip_seed(3, 5) == chip_seed(3, 5) != chip_seed(4, 5) and 0 <= chip_seed(2 ** 40, 10 ** 9) < 2 ** 63
    with pytest.raises(ValueError, match=r"trial must be in \[0, 28\), not 28"):
        sp.site(28)


# ---- what a chip row holds -------------------------------------------------------------------
def test_a_chip_row_is_the_chip_run_by_hand(done_db):
    with ResultStore.open(done_db, C) as s:
        rows = s.rows()
    assert len(rows) == 8 and all(isinstance(r, ChipResult) for r in rows)
    wl = models.get_workload("cnn", 16)
    acc = models.Accelerator("systolic_fma", "fp16")
    trace = models.accelerated(wl.apply, acc).trace(wl.params, wl.inputs)
    gold = np.asarray(trace.outputs)
    labels = np.asarray(wl.labels)
    assert rows[0].fault_free_accuracy == float((gold.argmax(-1) == labels).mean())
    for r in rows[:3]:
        assert (r.trial, r.rate, r.examples) == (rows.index(r), 0.05, 16) and r.outcome in CHIP_OUTCOMES
        fm = FaultMap.sample(ARR, rate=0.05, registers=r.register, kinds=r.stuck, seed=chip_seed(3, r.trial))
        assert r.map_seed == chip_seed(3, r.trial) and r.faulty_pes == len(fm.pes) == 3  # round(0.05 * 64)
        assert {(f.register, f.kind) for f in fm} == {(r.register, r.stuck)}
        out = np.asarray(models.run_on_chip(trace, models.array_gemm(ARR, fm, acc)))
        assert r.accuracy == float((out.argmax(-1) == labels).mean())
        assert r.out_diff == int((out.view(np.uint32) != gold.view(np.uint32)).sum())
        ok_g, ok_f = gold.argmax(-1) == labels, out.argmax(-1) == labels
        bad = ~np.isfinite(out).all(axis=1)
        assert r.critical == int(((ok_g & ~ok_f) | bad).sum()) and r.critical_frac == r.critical / 16
    assert any(r.out_diff for r in rows), "no chip changed the output: nothing was tested"


def test_a_chip_without_faults_is_masked(tmp_path):
    c = ModelCampaign(model="mlp", batch=8, array=ARR, fault_model="permanent", fault_rate=(0.0, 1.0), trials=2,
                      registers=("psum",), stuck="stuck1", bits=(30,))
    run_model_campaign(c, tmp_path / "z.db", executor="serial")
    with ResultStore.open(tmp_path / "z.db") as s:
        zero, _, full, _ = s.rows()
    assert zero.faulty_pes == 0 and zero.outcome == "masked" and zero.accuracy == zero.fault_free_accuracy
    assert zero.critical == zero.out_diff == 0
    # every PE's partial sum with bit 30 (exponent MSB) stuck at 1: every output wrong
    assert full.faulty_pes == 64 and full.outcome in ("critical_sdc", "nan_inf") and full.critical_frac > 0.5


# ---- store, report, resume -------------------------------------------------------------------
def test_report_prints_the_distribution(done_db, capsys):
    rep = model_campaign_report(done_db)
    assert isinstance(rep, ChipReport) and rep.done == rep.total == 8
    (row,) = rep.tables["rate"]
    with ResultStore.open(done_db) as s:
        accs = [r.accuracy for r in s.rows()]
    assert row.n == 8 and row.key == ("fp16", 0.05) and row.faulty_pes == 3
    assert row.accuracy[0] == float(np.median(accs))
    assert row.accuracy[1] <= row.accuracy[0] <= row.accuracy[2]
    assert min(accs) <= row.accuracy[1] and row.accuracy[2] <= max(accs)
    assert sum(r.n for r in rep.tables["register"]) == sum(r.n for r in rep.tables["stuck"]) == 8
    rc, out = _call(["campaign", "report", str(done_db), "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    assert "permanent faults" in out and "8/8 chips" in out and "accuracy: median [5%, 95%]" in out
    line = next(x for x in out.splitlines() if x.startswith("fp16/0.05 "))
    assert f"{100 * row.accuracy[0]:.2f}%" in line
    for reg in ("a", "w", "psum"):
        assert re.search(rf"^fp16/0\.05/{reg}/stuck[01] ", out, re.M)
    rc, out = _call(["campaign", "report", str(done_db), "--by", "register", "--no-plots"])
    assert rc == 0 and "fp16/0.05/w " in out and "fp16/0.05/w/stuck1" not in out
    rc, _ = _call(["campaign", "report", str(done_db), "--by", "layer", "--no-plots"])
    err = capsys.readouterr().err
    assert rc == 2 and "groupings must be among ('rate', 'register', 'stuck') for a permanent" in err
    assert rep.plot(done_db.parent)[0].name == "chips_chips.png"


def test_chip_rows_are_guarded_like_trial_rows(done_db, tmp_path):
    q = tmp_path / "x.db"
    q.write_bytes(done_db.read_bytes())
    with sqlite3.connect(q) as conn:
        conn.execute("UPDATE trials SET accuracy = 1.0 WHERE trial = 1")
    with pytest.raises(StoreCorruptError, match="row digest mismatch"):
        model_campaign_report(q)
    q2 = tmp_path / "y.db"
    q2.write_bytes(done_db.read_bytes())
    with ResultStore.open(q2) as s:
        assert s.columns == ChipResult._fields
        row = s.rows()[0]
        with pytest.raises(StoreError, match="stored once"):
            s.write([row])
        with pytest.raises(TypeError, match="rows must be ChipResult values for this campaign, not tuple"):
            s.write([tuple(row)])
        assert s.count() == 8


def test_a_version_2_transient_database_is_still_read(tmp_path):
    from faults._store import _header_digest

    c = ModelCampaign(model="mlp", array=ARR, batch=8, trials=6)
    db = tmp_path / "v2.db"
    run_model_campaign(c, db, executor="serial")
    with sqlite3.connect(db) as conn:  # what gemmfi wrote before chips: schema 2, same layout
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'header_digest'", (_header_digest(conn),))
    assert model_campaign_report(db).done == 6
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema must be 2 or 3, not '4'.*newer gemmfi"):
        ResultStore.open(db)


def test_dask_gives_the_serial_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    c = ModelCampaign(model="mlp", batch=8, array=ARR, fault_model="permanent", fault_rate=(0.05, 0.5), trials=3,
                      seed=9)
    run_model_campaign(c, tmp_path / "s.db", executor="serial")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        r = run_model_campaign(c, tmp_path / "d.db", scheduler=cluster.scheduler_address, batch_size=2)
    assert r.executor == "dask" and r.complete and r.done == 6
    with ResultStore.open(tmp_path / "d.db") as a, ResultStore.open(tmp_path / "s.db") as b:
        rows = a.rows()
        assert rows == b.rows() and {r.faulty_pes for r in rows} == {3, 32}


# ---- the command line ------------------------------------------------------------------------
CLI = ["--model", "cnn", "--fault-model", "permanent", "--fault-rate", "0.01", "--trials", "20", "--batch", "16",
       "--array", "16x16", "--no-progress", "--batch-size", "1"]


def _kill_run(db, executor, rng, timeout=90):
    """Start `gemmfi campaign run`, let it store a few more chips, SIGKILL it (and its
    pool: the process executor's resume path is this one)."""
    before = ResultStore.stored(db)
    p = subprocess.Popen([sys.executable, "-m", "faults._cli", "campaign", "run", "--db", str(db), "--executor",
                          executor, "--workers", "1", "--no-report", *CLI],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.monotonic()
        while ResultStore.stored(db) <= before and p.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.1)))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return ResultStore.stored(db)


def test_cli_run_stores_20_chips_resumes_after_a_kill_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "killed.db"
    rng = np.random.default_rng(int(time.time()))
    counts = [_kill_run(db, ex, rng) for ex in ("serial", "process")]
    print("stored after each kill:", counts)
    assert 0 < counts[0] < counts[1] < 20, "every run finished before its kill: nothing was tested"
    rc, out = _call(["campaign", "resume", str(db), "--executor", "serial", "--no-progress", "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    assert f"{20 - counts[1]} trials run" in out and "20/20 chips" in out and "fp16/0.01 " in out
    rc, out2 = _call(["campaign", "run", "--db", "ref.db", "--executor", "serial", "--no-plots", *CLI])
    assert rc == 0 and "20 trials run" in out2
    with ResultStore.open(db) as a, ResultStore.open(tmp_path / "ref.db") as b:
        rows = a.rows()
        assert len(rows) == 20 and rows == b.rows()  # no chip lost, none repeated, none different
    assert {r.faulty_pes for r in rows} == {3}  # round(0.01 * 256)
    rc, rep = _call(["campaign", "report", str(db), "--no-plots"])
    assert rc == 0 and "20/20 chips" in rep and "accuracy: median [5%, 95%]" in rep


BAD = [
    (["--fault-rate", "1.5"], "--fault-rate: must be fractions of faulty PEs in \\[0, 1\\]"),
    (["--fault-rate", "abc"], "--fault-rate: must be fractions of faulty PEs in \\[0, 1\\]"),
    (["--fault-rate", "-0.1"], "--fault-rate: must be fractions"),
    (["--fault-model", "sticky", "--fault-rate", "0.1"], "--fault-model: invalid choice: 'sticky'"),
    (["--fault-rate", "0.1", "--fault-model", "transient"], "--fault-rate must not be given with --fault-model "
                                                            "transient"),
    (["--bits", "3", "--fault-model", "transient"], "--bits must not be given with --fault-model transient"),
    (["--fault-model", "permanent"], "--fault-rate must be given"),
    (["--fault-model", "permanent", "--fault-rate", "0.1", "--trials", "0"], "--trials: must be an int >= 1"),
    (["--fault-model", "permanent", "--fault-rate", "0.1"], "--trials must be given"),
    (["--fault-model", "permanent", "--fault-rate", "0.1", "--trials", "2", "--level", "value"],
     "--level must be register"),
    (["--fault-model", "permanent", "--fault-rate", "0.1", "--trials", "2", "--stuck", "stuck7"],
     "stuck must be distinct values among"),
    (["--fault-model", "permanent", "--fault-rate", "0.1", "--trials", "2", "--bits", "99"],
     "bits must include one below"),
    (["--fault-model", "permanent", "--fault-rate", "0.1", "--trials", "2", "--tile", "4x4"],
     "tile_rows must be None for fault_model 'permanent'"),
]


@pytest.mark.parametrize("argv, msg", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_cli_input_is_refused_with_one_line(argv, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, out = _call(["campaign", "run", "--model", "mlp", "--batch", "8", "--array", "8x8", "--executor", "serial",
                     "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and re.search(msg, err), err
    assert err.strip().splitlines()[-1].startswith(("gemmfi: error:", "gemmfi campaign run: error:")), err
    assert list(tmp_path.iterdir()) == [], "a refused invocation wrote something"
