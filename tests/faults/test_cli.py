"""The gemmfi command line: tile, campaign run / resume / report, errors."""
import io
import subprocess
import sys

from faults._cli import main


def _run(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def test_tile_shows_what_changed():
    rc, out = _run("tile", "--array", "8x8", "--profile", "systolic_fma", "--pe", "3,5", "--register", "psum",
                   "--bit", "30", "--cycle", "20")
    assert rc == 0
    assert "psum at PE (3, 5) is live" in out and "cycle 20 is live" in out
    assert "1 of 64 outputs changed" in out and "(4, 5)" in out and "X" in out


def test_tile_masked_and_tensor_core():
    rc, out = _run("tile", "--array", "8x8", "--pe", "3,5", "--register", "psum", "--bit", "30", "--cycle", "12")
    assert rc == 0 and "masked" in out and "is not live" in out
    rc, out = _run("tile", "--array", "4x4", "--profile", "hopper", "--pe", "0,1", "--register", "a",
                   "--bit", "14", "--cycle", "3", "--mkn", "4,64,4")
    assert rc == 0 and "TensorCoreArray 4x4 hopper" in out


def test_tile_errors(capsys):
    assert main(["tile", "--pe", "9,9"]) == 2
    assert "pe must be in" in capsys.readouterr().err
    assert main(["tile", "--register", "nope"]) == 2


def test_campaign_run_resume_report(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    args = ["campaign", "run", "--db", db, "--model", "mlp", "--batch", "16", "--array", "8x8", "--trials", "30",
            "--executor", "serial", "--no-progress"]
    rc, out = _run(*args, "--max-trials", "10", "--no-report")
    assert rc == 0 and "10 trials run" in out and "10/30 stored" in out
    rc, out = _run("campaign", "resume", "--db", db, "--executor", "serial", "--no-progress")
    assert rc == 0 and "20 trials run" in out and "30/30 trials" in out and "fc1/dot_general" in out
    assert (tmp_path / "c_layer.png").exists() and (tmp_path / "c_register.png").exists()
    rc, out = _run("campaign", "report", "--db", db, "--by", "format,bit", "--method", "clopper-pearson",
                   "--no-plots")
    assert rc == 0 and "clopper-pearson" in out and "format/register/bit" in out
    assert main(args[:-1] + ["--seed", "9"]) == 2  # another campaign in the same database
    assert "must hold the campaign asked for" in capsys.readouterr().err


def test_campaign_report_on_junk(tmp_path, capsys):
    p = tmp_path / "junk.db"
    p.write_text("not a database")
    assert main(["campaign", "report", "--db", str(p)]) == 2
    assert "must be a gemmfi" in capsys.readouterr().err


def test_default_campaign_command(tmp_path):
    """`gemmfi campaign run` with no arguments: the small default campaign and its report."""
    p = subprocess.run([sys.executable, "-m", "faults._cli", "campaign", "run", "--no-progress"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "385 trials run" in p.stdout and "385/385 trials" in p.stdout and "conv2" in p.stdout
    assert (tmp_path / "gemmfi-campaign.db").exists() and (tmp_path / "gemmfi-campaign_layer.png").exists()
