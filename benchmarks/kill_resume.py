"""Issue 5's durability bar: SIGKILL a model campaign at 20 random points, resuming it each
time, and compare the final results table with an uninterrupted run of the same campaign.

Each round starts ``gemmfi campaign run`` (``python -m faults._cli``) on the same database
in a new process group (alternating the serial and process-pool executors), picks a kill
point from a seeded random stream and SIGKILLs the whole group (the CLI and its pool
workers).  Two kinds of kill point:

* ``startup``: a random time after launch, before or while the first trials are stored
  (JAX import, golden runs, database creation);
* ``running``: a random delay after the round has stored at least one new trial
  (mid-transaction, mid-batch, between batches).

After the 20 kills one last ``campaign run`` finishes the campaign; the uninterrupted
reference is ``faults.run_model_campaign`` in this process (serial executor).  Prints one
line per kill and ends with ``RESULT kills=K identical=True|False trials=N``.

    python benchmarks/kill_resume.py [--kills 20] [--seed 0] [--trials 12000]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from faults import ModelCampaign, ResultStore, run_model_campaign
from simulator import SystolicArray


def _cli(db, executor, args):
    return [sys.executable, "-m", "faults._cli", "campaign", "run", "--db", str(db), "--executor", executor,
            "--workers", "2", *args]


def _kill_round(db, executor, args, mode, delay, timeout=90.0):
    """One launch killed at the chosen point; returns (trials stored after, seconds alive, finished)."""
    before = ResultStore.stored(db)
    t0 = time.monotonic()
    p = subprocess.Popen(_cli(db, executor, args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        if mode == "startup":
            while p.poll() is None and time.monotonic() - t0 < delay:
                time.sleep(0.005)
        else:
            while ResultStore.stored(db) <= before and p.poll() is None and time.monotonic() - t0 < timeout:
                time.sleep(0.005)
            end = time.monotonic() + delay
            while p.poll() is None and time.monotonic() < end:
                time.sleep(0.005)
    finally:
        finished = p.poll() is not None
        if not finished:
            os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
    if finished and p.returncode != 0:
        raise RuntimeError(f"campaign run exited with {p.returncode} before its kill:\n{err.decode()[-2000:]}")
    return ResultStore.stored(db), time.monotonic() - t0, finished


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    ap.add_argument("--trials", type=int, default=12000, help="trials of the campaign")
    ap.add_argument("--startup-share", type=float, default=0.25, help="share of kills at a random startup time")
    opt = ap.parse_args(argv)


    campaign = ModelCampaign(model="cnn", batch=128, array=SystolicArray(8, 8), trials=opt.trials, chunk=None)
    args = ["--model", "cnn", "--batch", "128", "--array", "8x8", "--trials", str(opt.trials), "--chunk", "0",
            "--batch-size", "3", "--no-report", "--no-progress"]
    rng = np.random.default_rng(opt.seed)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gemmfi_kill_") as tmp:
        db, ref = Path(tmp) / "killed.db", Path(tmp) / "ref.db"
        t = time.perf_counter()
        run_model_campaign(campaign, ref, executor="serial")
        print(f"uninterrupted reference: {campaign.trials} trials in {time.perf_counter() - t:.1f} s (serial)")

        counts, finished_early = [], 0
        for k in range(opt.kills):
            executor = ("serial", "process")[k % 2]
            startup = bool(rng.random() < opt.startup_share)
            delay = float(rng.uniform(0.2, 3.0)) if startup else float(rng.uniform(0.0, 0.3))
            n, alive, finished = _kill_round(db, executor, args, "startup" if startup else "running", delay)
            finished_early += finished
            counts.append(n)
            print(f"kill {k + 1:2d}: {executor:7s} {'startup' if startup else 'running'} point "
                  f"(+{delay:.2f} s{' after launch' if startup else ' after a new trial'}), alive {alive:5.2f} s, "
                  f"trials stored {n:5d}{'  (finished before the kill!)' if finished else ''}")
        t = time.perf_counter()
        p = subprocess.run(_cli(db, "serial", args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            print(p.stderr.decode()[-3000:])
        print(f"final resume: {ResultStore.stored(db) - counts[-1]} trials in {time.perf_counter() - t:.1f} s")

        try:
            with ResultStore.open(db, campaign) as a, ResultStore.open(ref, campaign) as b:
                rows_a, rows_b = a.rows(), b.rows()
        except Exception as e:  # a database the kills broke: report it, not a traceback
            print(f"killed database unreadable: {type(e).__name__}: {e}")
            rows_a, rows_b = [], [None]
        identical = rows_a == rows_b
        monotone = counts == sorted(counts)
        print(f"trials stored at each kill: {counts}")
        print(f"never fewer trials after a kill than before: {monotone}; rounds that finished before their kill: "
              f"{finished_early}; killed table {len(rows_a)} rows, reference {len(rows_b)} rows")
        if not identical:
            diff = [r[0] for r, s in zip(rows_a, rows_b) if r != s]
            print(f"rows that differ: {len(diff)} (first trials {diff[:10]})")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    print(f"RESULT kills={opt.kills - finished_early} identical={identical} trials={len(rows_a)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
