"""The results database: creation, reopening, mismatches, corruption, duplicates, reports."""
import sqlite3

import pytest

import faults
from faults import (CampaignMismatchError, ModelCampaign, ResultStore, StoreError, model_campaign_report,
                    run_model_campaign)
from simulator import SystolicArray

C = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=8, trials=16, seed=2)


@pytest.fixture(scope="module")
def done_db(tmp_path_factory):
    p = tmp_path_factory.mktemp("store") / "c.db"
    run_model_campaign(C, p, executor="serial")
    return p


def test_reopen_and_continue(tmp_path):
    p = tmp_path / "c.db"
    r = run_model_campaign(C, p, executor="serial", max_trials=5)
    assert (r.ran, r.done, r.total, r.complete) == (5, 5, 16, False)
    with ResultStore.open(p) as s:
        assert s.campaign == C and s.pending() == list(range(5, 16))
        assert sum(x[4] for x in s.strata()) == 16
    r = faults.resume_model_campaign(p, executor="serial")
    assert (r.ran, r.done, r.complete) == (11, 16, True)
    assert run_model_campaign(C, p, executor="serial").ran == 0


def test_mismatched_campaign(done_db):
    with pytest.raises(CampaignMismatchError, match="must hold the campaign asked for"):
        run_model_campaign(C.with_(seed=3), done_db, executor="serial")


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="must be a gemmfi"):
        ResultStore.open(p)
    with pytest.raises(StoreError):
        run_model_campaign(C, p, executor="serial")
    with pytest.raises(FileNotFoundError, match="must be an existing file"):
        ResultStore.open(tmp_path / "missing.db")


def test_foreign_and_tampered_databases(tmp_path, done_db):
    p = tmp_path / "other.db"
    with sqlite3.connect(p) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="gemmfi campaign database"):
        ResultStore.open(p)
    for name, sql, msg in (("tampered", "UPDATE meta SET value='99' WHERE key='schema'", "schema must be 2"),
                           ("badmeta", "UPDATE meta SET value='{}' WHERE key='campaign'", "header digest")):
        q = tmp_path / f"{name}.db"
        q.write_bytes(done_db.read_bytes())
        with sqlite3.connect(q) as conn:
            conn.execute(sql)
        with pytest.raises(StoreError, match=msg):
            ResultStore.open(q)


def test_truncated_database(tmp_path, done_db):
    q = tmp_path / "trunc.db"
    data = done_db.read_bytes()
    q.write_bytes(data[:len(data) // 2])
    with pytest.raises(StoreError):
        ResultStore.open(q)


def test_a_trial_is_stored_once(tmp_path, done_db):
    q = tmp_path / "dup.db"
    q.write_bytes(done_db.read_bytes())
    with ResultStore.open(q) as s:
        row = s.rows()[0]
        with pytest.raises(StoreError, match="stored once"):
            s.write([row])
        assert s.count() == 16


def test_new_path_must_not_exist(done_db):
    with pytest.raises(FileExistsError):
        ResultStore.create(done_db, C, ())


def test_report(done_db, tmp_path):
    rep = model_campaign_report(done_db)
    assert rep.done == rep.total == 16
    (row,) = rep.tables["format"]
    assert row.n == 16 and abs(sum(row.rates.values()) - 1) < 1e-12
    assert row.sdc_ci[0] <= row.sdc <= row.sdc_ci[1]
    assert sum(r.n for r in rep.tables["layer"]) == 16 == sum(r.n for r in rep.tables["bit"])
    cp = model_campaign_report(done_db, method="clopper-pearson", confidence=0.99)
    assert cp.tables["format"][0].sdc_ci[1] >= row.sdc_ci[1]
    text = rep.text(("format", "layer", "register", "bit"))
    assert "fc1/dot_general" in text and "psum" in text
    paths = rep.plot(tmp_path)
    assert {p.name for p in paths} == {"c_layer.png", "c_register.png", "c_bit.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_layer_strata_are_weighted(tmp_path):
    c = C.with_(stratify="layer", trials=6)
    run_model_campaign(c, tmp_path / "l.db", executor="serial")
    rep = model_campaign_report(tmp_path / "l.db")
    with ResultStore.open(tmp_path / "l.db") as s:
        strata = s.strata()
    pops = {st[2][0]: st[3] for st in strata}
    total = sum(pops.values())
    lay = {r.key[1]: r for r in rep.tables["layer"]}
    names = [n for n in sorted(lay)]
    fmt = rep.tables["format"][0]
    space = faults.site_space(c)
    gem = {space.layer("fp16", s.index): s.index for s in space.gemms["fp16"]}
    want = sum(lay[n].sdc * pops[gem[n]] / total for n in names)
    assert abs(fmt.sdc - want) < 1e-12



def test_create_leaves_no_partial_file_behind(tmp_path, monkeypatch):
    """A kill while a database is being created must not leave a file that blocks resume:
    the database appears under its name only once its tables are committed."""
    seen = []
    real_connect = ResultStore._connect

    def spy(path, *a):
        seen.append((path.name, (tmp_path / "c.db").exists()))
        return real_connect(path, *a)

    monkeypatch.setattr(ResultStore, "_connect", staticmethod(spy))
    r = run_model_campaign(C, tmp_path / "c.db", executor="serial", max_trials=2)
    assert r.done == 2
    # the tables were built under another name while c.db did not exist yet
    assert seen[0][0] != "c.db" and seen[0][1] is False
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["c.db"]
    assert not list(tmp_path.glob("*.tmp"))
    assert faults.resume_model_campaign(tmp_path / "c.db", executor="serial").done == 16


def test_stored_rows_are_trial_results_at_their_sites(done_db):
    with ResultStore.open(done_db) as s:
        rows = s.rows()
    assert ResultStore.stored(done_db) == len(rows) == 16
    space = faults.site_space(C)
    for r in rows:
        assert isinstance(r, faults.TrialResult) and r.outcome in faults.TRIAL_OUTCOMES
        site = space.site(r.trial)
        assert (r.format, r.gemm, r.layer, r.grp, r.row0, r.col0, r.register, r.bit, (r.pe_row, r.pe_col),
                r.cycle) == (site.format, site.gemm, site.layer, site.group, site.row0, site.col0, site.register,
                             site.bit, site.pe, site.cycle)
        assert (r.outcome == "masked") == (r.tile_diff == 0 or r.effect == "masked")
    assert ResultStore.stored(done_db.with_name("absent.db")) == 0
