"""A campaign killed with SIGKILL at random points, then resumed, stores exactly the
table of an uninterrupted run: no trial lost, none repeated."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from faults import ModelCampaign, ResultStore, resume_model_campaign, run_model_campaign
from simulator import SystolicArray

CAMPAIGN = ModelCampaign(model="cnn", batch=128, array=SystolicArray(8, 8), trials=1000, chunk=None)
ARGS = ["--model", "cnn", "--batch", "128", "--array", "8x8", "--trials", "1000", "--chunk", "0",
        "--batch-size", "3", "--no-report", "--no-progress"]


def _kill_run(db, executor, rng, timeout=60):
    """Start `gemmfi campaign run`, let it store a few more trials, SIGKILL it (and its pool)."""
    before = ResultStore.stored(db)
    p = subprocess.Popen([sys.executable, "-m", "faults._cli", "campaign", "run", "--db", str(db),
                          "--executor", executor, "--workers", "2", *ARGS],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t0 = time.monotonic()
        while ResultStore.stored(db) <= before and p.poll() is None and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.3)))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return ResultStore.stored(db)


def test_sigkill_and_resume_equals_uninterrupted(tmp_path):
    ref = tmp_path / "ref.db"
    run_model_campaign(CAMPAIGN, ref, executor="serial")
    db = tmp_path / "killed.db"
    rng = np.random.default_rng(int(time.time()))
    counts = [_kill_run(db, ex, rng) for ex in ("serial", "process", "serial")]
    print("stored after each kill:", counts)
    assert counts[0] > 0 and counts == sorted(counts)
    assert counts[-1] < CAMPAIGN.trials, "every run finished before its kill: nothing was tested"
    with ResultStore.open(db, CAMPAIGN) as s:
        done = s.done()
        assert len(done) == s.count() == counts[-1]
    res = resume_model_campaign(db, executor="serial")
    assert res.ran == CAMPAIGN.trials - counts[-1] and res.complete
    with ResultStore.open(db) as a, ResultStore.open(ref) as b:
        assert a.rows() == b.rows()
