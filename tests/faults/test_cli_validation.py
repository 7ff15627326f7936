"""Every value a user passes is checked before anything is written: bad CLI options and
function arguments are refused with "X must be Y, not Z", a non-zero exit and no
traceback; the CLI takes the database as a positional path; help shows defaults; the
report defines its outcomes; the progress bar shows no estimate before start-up ends."""
import io
import os
import re
import time

import numpy as np
import pytest

import faults
import simulator.verify
from faults import ModelCampaign, model_campaign_report, run_model_campaign
from faults._cli import main
from simulator import SystolicArray

C = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=8, trials=12, seed=1)
SMALL = ["--model", "mlp", "--batch", "8", "--array", "8x8", "--trials", "12", "--executor", "serial",
         "--no-progress", "--no-plots"]


def _listing(d):
    return sorted((p.relative_to(d).as_posix(), p.stat().st_size) for p in d.rglob("*"))


def _call(fn, argv):
    """Run a CLI main in process: (exit code, stdout); SystemExit counts as an exit."""
    out = io.StringIO()
    try:
        rc = fn(argv, out=out) if fn is main else fn(argv)
    except SystemExit as e:
        rc = e.code
    return rc, out.getvalue()


def _verify_inputs(d):
    """Small verify inputs: a one-tile suite, a zero-tile suite, an .npy named .npz."""
    z = np.zeros((1, 16, 16), np.uint16)
    np.savez(d / "f16f32.npz", **{"s.a": z, "s.b": np.zeros((1, 16, 8), np.uint16),
                                  "s.c": np.zeros((1, 16, 8), np.uint32), "s.d": np.zeros((1, 16, 8), np.uint32)})
    (d / "zero").mkdir()
    np.savez(d / "zero" / "f16f32.npz", **{"s.a": z[:0], "s.b": np.zeros((0, 16, 8), np.uint16),
                                           "s.c": np.zeros((0, 16, 8), np.uint32),
                                           "s.d": np.zeros((0, 16, 8), np.uint32)})
    (d / "npy").mkdir()
    with open(d / "npy" / "f16f32.npz", "wb") as fh:
        np.save(fh, z)



BAD = [
    ("campaign run --batch-size -1", main, ["campaign", "run", "--batch-size", "-1", *SMALL], "must be an int >= 1"),
    ("campaign run --max-trials -1", main, ["campaign", "run", "--max-trials", "-1", *SMALL], "must be an int >= 1"),
    ("campaign run --max-trials 0", main, ["campaign", "run", "--max-trials", "0", *SMALL], "must be an int >= 1"),
    ("campaign run --trials 0", main, ["campaign", "run", *SMALL, "--trials", "0"], "must be an int >= 1"),
    ("campaign run --workers 0", main, ["campaign", "run", "--workers", "0", *SMALL], "must be an int >= 1"),
    ("campaign run --confidence 1.5", main, ["campaign", "run", *SMALL, "--confidence", "1.5"],
     "must be a number in \\(0, 1\\)"),
    ("campaign run unreachable --scheduler", main, ["campaign", "run", "--scheduler", "tcp://127.0.0.1:1", *SMALL],
     "scheduler must be a reachable Dask scheduler"),
    ("campaign run DB --db OTHER", main, ["campaign", "run", "a.db", "--db", "b.db", *SMALL],
     "must be given once"),
    ("campaign report --by bogus", main, ["campaign", "report", "gemmfi-campaign.db", "--by", "bogus"],
     "must be groupings among format,layer,register,bit"),
    ("campaign report missing file", main, ["campaign", "report", "missing.db"], "must be an existing file"),
    ("campaign resume missing file", main, ["campaign", "resume", "missing.db", "--executor", "serial"],
     "must be an existing file"),
    ("campaign report empty file", main, ["campaign", "report", "empty.db"], "an empty file"),
    ("tile --mkn 1,2", main, ["tile", "--mkn", "1,2"], "must be M,K,N"),
    ("tile --array 0x4", main, ["tile", "--array", "0x4"], "must be"),
    ("tile --bit -1", main, ["tile", "--bit", "-1"], "must be an int >= 0"),
    pytest.param("verify --tiles -1", simulator.verify.main, ["f16f32.npz", "--tiles", "-1"], "must be"),
    pytest.param("verify --tiles 0", simulator.verify.main, ["f16f32.npz", "--tiles", "0"], "must be"),
    pytest.param("verify zero-tile suite", simulator.verify.main, ["zero/f16f32.npz"], "must"),
    pytest.param("verify .npy named .npz", simulator.verify.main, ["npy/f16f32.npz"], "npy/f16f32.npz"),
    pytest.param("verify missing file", simulator.verify.main, ["missing.npz"], "must be an existing file"),
]


@pytest.mark.parametrize("name, fn, argv, msg", BAD, ids=[(b.values if hasattr(b, "marks") else b)[0] for b in BAD])
def test_bad_invocations_are_refused_cleanly(name, fn, argv, msg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.db").touch()
    _verify_inputs(tmp_path)
    before = _listing(tmp_path)
    t0 = time.monotonic()
    rc, out = _call(fn, argv)
    err = capsys.readouterr().err
    assert rc not in (0, None), (rc, out, err)
    assert "Traceback" not in err and re.search(msg, err), err
    assert err.strip().splitlines()[-1].count("error") >= 1, err
    assert _listing(tmp_path) == before, "a refused invocation wrote something"
    assert time.monotonic() - t0 < 15, "refusing took too long"


def test_function_arguments_are_checked_before_writing(tmp_path):
    db = tmp_path / "c.db"
    for kw, msg in ((dict(batch_size=-1), "batch_size must be an int >= 1 or None, not -1"),
                    (dict(batch_size=0), "batch_size must be an int >= 1 or None, not 0"),
                    (dict(max_trials=-1), "max_trials must be an int >= 1 or None, not -1"),
                    (dict(max_trials=2.5), "max_trials must be an int >= 1 or None, not 2.5"),
                    (dict(scheduler="nohost"), "scheduler must be a Dask scheduler address such as"),
                    (dict(scheduler="tcp://127.0.0.1:1"), "scheduler must be a reachable Dask scheduler")):
        with pytest.raises((ValueError, ConnectionError), match=re.escape(msg)):
            run_model_campaign(C, db, executor="serial", **kw)
        assert not db.exists()


def test_report_arguments(tmp_path):
    db = tmp_path / "c.db"
    run_model_campaign(C, db, executor="serial")
    rep = model_campaign_report(db)
    with pytest.raises(ValueError, match=r"groupings must be among \('format', 'layer', 'register', 'bit'\), "
                                         r"not \['bogus'\]"):
        rep.text(("format", "bogus"))
    with pytest.raises(ValueError, match="method must be one of"):
        model_campaign_report(db, method="bayes")
    with pytest.raises(ValueError, match="confidence must be a number in \\(0, 1\\) or None, not 1.5"):
        model_campaign_report(db, confidence=1.5)
    text = rep.text(("format", "register"))
    # whole outcome names in the header, each defined in the legend
    head = next(line for line in text.splitlines() if line.startswith("format "))
    legend = text.split("\noutcomes (")[1].splitlines()[1:]
    defined = {line.split()[0] for line in legend}
    for o in faults.TRIAL_OUTCOMES:
        assert re.search(rf"(?<![\w/]){o}(?![\w/])", head), head
    assert defined == set(faults.TRIAL_OUTCOMES) | {"SDC", "critical"}


def test_positional_database_and_db_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out = _call(main, ["campaign", "run", *SMALL, "--max-trials", "5", "--no-report"])
    assert rc == 0 and "5/12 stored in gemmfi-campaign.db" in out
    rc, out = _call(main, ["campaign", "resume", "gemmfi-campaign.db", "--executor", "serial", "--no-progress",
                           "--no-plots"])
    assert rc == 0 and "7 trials run" in out and "12/12 trials" in out
    rc, out2 = _call(main, ["campaign", "report", "gemmfi-campaign.db", "--no-plots"])
    rc3, out3 = _call(main, ["campaign", "report", "--db", "gemmfi-campaign.db", "--no-plots"])
    rc4, out4 = _call(main, ["campaign", "report", "--no-plots"])  # the default path
    assert rc == rc3 == rc4 == 0 and out2 == out3 == out4 and "outcomes" in out2


def test_help_shows_defaults_and_every_option_has_help(capsys):
    import argparse

    from faults._cli import _parser

    def walk(p, path):
        yield path, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, q in a.choices.items():
                    yield from walk(q, path + [name])

    seen = 0
    for path, p in walk(_parser(), []):
        assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter), path
        for a in p._actions:
            if not isinstance(a, argparse._SubParsersAction):
                assert a.help, f"gemmfi {' '.join(path)}: {a.option_strings or a.dest} has no help"
                seen += 1
    assert seen > 40
    with pytest.raises(SystemExit):
        main(["campaign", "run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.95)" in text and "(default: cnn)" in text and "(default: None)" not in text
    assert "gemmfi-campaign.db in the current directory" in text and "next to the database" in text


def test_no_time_estimate_before_start_up_is_measured(tmp_path, capsys):
    """The first batches pay for start-up: the bar shows no estimate until
    workers + 1 batches are stored (serial: 2), and one after."""
    run_model_campaign(C.with_(trials=24), tmp_path / "c.db", executor="serial", batch_size=4, progress=True)
    err = capsys.readouterr().err
    states = [s for s in re.split(r"[\r\n]+", err) if "trial" in s or "/24" in s]
    for s in states:
        n = int(re.search(r"(\d+)/24", s).group(1))
        if n < 8:
            assert "<" not in s and "estimate after start-up" in s, s
    assert any("<" in s for s in states), states  # an estimate once measured
