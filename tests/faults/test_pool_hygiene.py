"""Process hygiene: SIGKILL of `gemmfi campaign run --executor process` (the main
process only) leaves no pool worker or resource tracker behind, and the campaign
resumes to completion."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults import ResultStore, resume_model_campaign

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _group(pgid: int) -> list:
    """(pid, command line) of the live processes in process group ``pgid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_sigkill_of_the_main_process_leaves_no_pool_behind(tmp_path):
    db = tmp_path / "c.db"
    p = subprocess.Popen([sys.executable, "-m", "faults._cli", "campaign", "run", "--db", str(db), "--model", "mlp",
                          "--batch", "16", "--array", "8x8", "--trials", "120", "--executor", "process",
                          "--workers", "2", "--batch-size", "2", "--no-report", "--no-progress"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        t0 = time.monotonic()
        while ResultStore.stored(db) < 4 and p.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        assert p.poll() is None, "the campaign ended before the kill: nothing was tested"
        pool = [q for q in _group(p.pid) if q[0] != p.pid]
        assert len(pool) >= 2, pool  # the workers (and the resource tracker) are up
        os.kill(p.pid, signal.SIGKILL)  # the main process only, as a user's `kill -9 PID` does
        p.wait()
        t1 = time.monotonic()
        while _group(p.pid) and time.monotonic() - t1 < 20:
            time.sleep(0.2)
        left = _group(p.pid)
        print(f"pool processes alive {time.monotonic() - t1:.1f} s after the kill: {len(left)}")
    finally:
        for pid, _ in _group(p.pid):  # never leave them running, whatever happened
            os.kill(pid, signal.SIGKILL)
    assert left == [], left
    stored = ResultStore.stored(db)
    assert 0 < stored < 120
    res = resume_model_campaign(db, executor="serial")
    assert res.complete and res.ran == 120 - stored
    with ResultStore.open(db) as s:
        assert s.count() == 120
