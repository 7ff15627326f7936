"""Every command in README.md's bash blocks runs as written.

Each line of a ```bash block (split at ``&&``) is run with bash from a scratch
directory (outputs land there, as they would in a user's), ``gemmfi`` and ``python3``
being this checkout's; lines that read ``../shared/...`` run from the checkout's root
and are skipped when that directory is absent.  Skipped: installs (``pip install``)
and the test suite itself; the long ones (the default campaign, the full reference
verification, the accuracy table: a minute or more each) run only with
``GEMMFI_README_LONG=1``.  ``gemmfi campaign resume/report gemmfi-campaign.db`` run
on a small campaign's database made beforehand when the default campaign is skipped.
A command fails the test when it exits non-zero or prints a traceback.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LONG = os.environ.get("GEMMFI_README_LONG") == "1"

#: (regex on the command, why it does not run by default); "install"/"suite" never run here
SKIP = [(r"pip install", "install"), (r"-m pytest", "suite")]
LONG_COMMANDS = [r"^gemmfi campaign run$", r"^python3 -m models$", r"simulator\.verify .*h100_mma"]
#: README commands known to fail, with the README fix (xfail strict: remove once fixed)
KNOWN_BROKEN: dict = {}


def readme_commands() -> list:
    """The commands of README.md's ```bash blocks, in order (comments stripped)."""
    text = README.read_text()
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.extend(c.strip() for c in line.split("&&"))
    return out


def _params():
    out = []
    for cmd in readme_commands():
        marks = []
        if cmd in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN[cmd]))
        out.append(pytest.param(cmd, marks=marks, id=cmd[:60]))
    return out


def test_readme_has_commands():
    cmds = readme_commands()
    assert "gemmfi campaign resume gemmfi-campaign.db" in cmds and len(cmds) >= 8, cmds


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A scratch directory and a PATH whose gemmfi and python3 are this checkout's."""
    work = tmp_path_factory.mktemp("readme")
    bin_ = tmp_path_factory.mktemp("bin")
    (bin_ / "gemmfi").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m faults._cli "$@"\n')
    (bin_ / "gemmfi").chmod(0o755)
    (bin_ / "python3").symlink_to(sys.executable)
    # files the README asks the reader to save ("Save this as `NAME`:" then a python block)
    for name, body in re.findall(r"[Ss]ave this as\s+`([\w.]+)`:\s*\n+```python\n(.*?)^```", README.read_text(),
                                 re.S | re.M):
        (work / name).write_text(body)
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "MPLBACKEND": "Agg"}
    return work, env


def _run(cmd, cwd, env, timeout=900):
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0 and "Traceback" not in p.stderr, \
        f"README command failed: {cmd!r} (exit {p.returncode})\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.parametrize("cmd", _params())
def test_readme_command_runs(cmd, shell):
    work, env = shell
    for pat, why in SKIP:
        if re.search(pat, cmd):
            pytest.skip(f"{why}: not run by the test suite")
    if any(re.search(p, cmd) for p in LONG_COMMANDS) and not LONG:
        pytest.skip("long: set GEMMFI_README_LONG=1 to run it")
    cwd = work
    if "../shared/" in cmd:
        if not (ROOT / ".." / "shared" / "reference").is_dir():
            pytest.skip("../shared/reference (the captured verification data) is absent")
        cwd = ROOT
    if re.match(r"gemmfi campaign (resume|report)\b", cmd) and not (work / "gemmfi-campaign.db").exists():
        # the README's default campaign was skipped: a small one in its place, half done
        _run("gemmfi campaign run --model mlp --batch 16 --array 8x8 --trials 24 --max-trials 12 "
             "--executor serial --no-report --no-progress", work, env)
    p = _run(cmd, cwd, env)
    if cmd.startswith("gemmfi campaign resume") or cmd.startswith("gemmfi campaign report"):
        if "chips" in cmd:  # a permanent-fault campaign: the distribution over chips
            assert "20/20 chips" in p.stdout and "median [5%, 95%]" in p.stdout, p.stdout[-500:]
        else:
            assert "outcomes" in p.stdout and "trials" in p.stdout
    if "simulator.verify" in cmd:
        total = re.findall(r"^TOTAL (\d+)/(\d+)$", p.stdout, re.M)
        assert total and total[-1][0] == total[-1][1], p.stdout[-500:]
