"""Integrity of results databases: every reader verifies digests; corrupt, altered,
empty, old and foreign files are refused with one line naming the file; reading never
writes; an interrupted creation's temporary files are cleaned on the next open."""
import io
import os
import sqlite3

import numpy as np
import pytest

from faults import (ModelCampaign, ResultStore, StoreCorruptError, StoreError, model_campaign_report,
                    run_model_campaign)
from faults._cli import main
from simulator import SystolicArray

C = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=8, trials=16, seed=5)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    p = tmp_path_factory.mktemp("integrity") / "c.db"
    run_model_campaign(C, p, executor="serial")
    return p


def _copy(db, tmp_path, name="x.db"):
    q = tmp_path / name
    q.write_bytes(db.read_bytes())
    return q


def _report_cli(path, capsys):
    """`gemmfi campaign report PATH --no-plots` in process: (exit code, stdout, stderr)."""
    out = io.StringIO()
    rc = main(["campaign", "report", str(path), "--no-plots"], out=out)
    return rc, out.getvalue(), capsys.readouterr().err


def test_one_byte_corruptions_never_give_a_silently_different_report(db, tmp_path, capsys):
    """40 one-byte corruptions at random offsets (fixed seed): each database is either
    refused with one line naming it, or gives exactly the original report."""
    rc, want, err = _report_cli(db, capsys)
    assert rc == 0 and err == ""
    data = db.read_bytes()
    rng = np.random.default_rng(11)
    refused = same = 0
    for i in range(40):
        off = int(rng.integers(len(data)))
        bad = bytearray(data)
        bad[off] ^= int(rng.integers(1, 256))
        q = tmp_path / f"corrupt{i}.db"
        q.write_bytes(bytes(bad))
        rc, out, err = _report_cli(q, capsys)
        if rc == 0:
            assert out.replace(str(q), "") == want.replace(str(db), ""), f"offset {off}: a different report"
            same += 1
        else:
            assert rc == 2 and out == "" and "Traceback" not in err, (off, err)
            assert err.count("\n") == 1 and str(q) in err, (off, err)
            refused += 1
        # reading never writes: the file is byte for byte what it was
        assert q.read_bytes() == bytes(bad), f"offset {off}: the reader wrote to the file"
    print(f"40 corruptions: {refused} refused, {same} identical reports")
    assert refused + same == 40 and refused >= 5


@pytest.mark.parametrize("sql, what", [
    ("UPDATE trials SET outcome = 'masked' WHERE trial = (SELECT MIN(trial) FROM trials WHERE outcome != 'masked')",
     "row digest mismatch"),
    ("UPDATE trials SET bit = bit + 1 WHERE trial = 3", "row digest mismatch"),
    ("DELETE FROM trials WHERE trial = 7", "rows lost or added"),
    ("UPDATE meta SET value = replace(value, '\"confidence\":0.95', '\"confidence\":0.85') WHERE key = 'campaign'",
     "header digest mismatch"),
    ("UPDATE strata SET population = population + 1", "header digest mismatch"),
    ("UPDATE meta SET value = '17' WHERE key = 'total'", "header digest mismatch"),
])
def test_altered_rows_and_campaign_are_refused(db, tmp_path, sql, what, capsys):
    q = _copy(db, tmp_path)
    with sqlite3.connect(q) as conn:
        before = conn.total_changes
        conn.execute(sql)
        (camp,) = conn.execute("SELECT value FROM meta WHERE key = 'campaign'").fetchone()
        assert conn.total_changes == before + 1
    assert ('"confidence":0.85' in camp) == ("confidence" in sql)
    with pytest.raises(StoreCorruptError, match=what):
        model_campaign_report(q)
    with pytest.raises(StoreCorruptError, match=what):
        ResultStore.open(q)
    rc, out, err = _report_cli(q, capsys)
    assert rc == 2 and out == "" and str(q) in err and what in err and err.count("\n") == 1


def test_the_confidence_edit_is_covered(db):
    """The campaign JSON carries the confidence the report uses (a check on the test above)."""
    with sqlite3.connect(db) as conn:
        (camp,) = conn.execute("SELECT value FROM meta WHERE key = 'campaign'").fetchone()
    assert '"confidence":0.95' in camp


def test_empty_file_is_refused_and_left_empty(tmp_path, capsys):
    q = tmp_path / "empty.db"
    q.touch()
    rc, out, err = _report_cli(q, capsys)
    assert rc == 2 and "an empty file" in err and str(q) in err
    assert q.stat().st_size == 0, "reading wrote to an empty file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    with pytest.raises(StoreError, match="an empty file"):
        run_model_campaign(C, q, executor="serial")
    assert q.stat().st_size == 0


def test_reading_writes_nothing_and_works_read_only(db, tmp_path):
    q = _copy(db, tmp_path)
    before = q.read_bytes()
    rep = model_campaign_report(q)
    assert rep.done == 16
    with ResultStore.open(q, readonly=True) as s:
        assert len(s.rows()) == 16
        with pytest.raises(StoreError, match="must be writable"):
            s.write(s.rows()[:1])
    assert q.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]


def test_old_schema_gets_a_clear_message(db, tmp_path):
    q = _copy(db, tmp_path)
    with sqlite3.connect(q) as conn:
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="schema must be 2 or 3, not '1'.*older gemmfi"):
        ResultStore.open(q)


def test_temporaries_of_an_interrupted_creation_are_cleaned(db, tmp_path):
    q = _copy(db, tmp_path, "c.db")
    dead = 2 ** 22 + 12345  # above any pid this machine hands out
    junk = [tmp_path / f".c.db.{dead}.tmp", tmp_path / f".c.db.{dead}.tmp-journal",
            tmp_path / f".c.db.{dead}.tmp-wal"]
    live = tmp_path / f".c.db.{os.getppid()}.tmp"  # a live process: maybe creating it now
    for p in junk + [live]:
        p.write_bytes(b"x")
    ResultStore.open(q, readonly=True).close()
    assert all(p.exists() for p in junk), "a reader must not write or remove files"
    ResultStore.open(q).close()
    assert not any(p.exists() for p in junk) and live.exists()
    # a creation that never got renamed into place: the next run creates the database
    for p in junk:
        p.write_bytes(b"x")
    new = tmp_path / "new.db"
    (tmp_path / f".new.db.{dead}.tmp").write_bytes(b"half")
    (tmp_path / "new.db-journal").write_bytes(b"stale")
    run_model_campaign(C, new, executor="serial", max_trials=1)
    assert not (tmp_path / f".new.db.{dead}.tmp").exists() and not (tmp_path / "new.db-journal").exists()
    assert ResultStore.stored(new) == 1
