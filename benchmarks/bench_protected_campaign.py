"""Protection in the loop: the shipped CNN under register faults in ``psum``, on an
unprotected 16x16 weight-stationary systolic array and on the same array with SEC-DED
on ``psum`` (:class:`protection.SecDed`), same seed, same trials.

Each campaign draws single-bit flips uniformly over ``psum`` bits x PEs x cycles of
the CNN's output tiles on the first 256 test digits (fp16 inputs, fp32 accumulation);
every trial runs the faulty tile on the array (the protected one through
:meth:`protection.ProtectedArray.run`: the code checks, corrects, alarms) and
propagates the delivered tile through the rest of the model.  Prints both campaigns'
outcome shares with 95 % Wilson intervals and ends with
``RESULT unprotected_sdc=.. [lo,hi] protected_sdc=.. [lo,hi] protected_critical=N
intervals_overlap=False``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import faults
from protection import ProtectedArray, SecDed
from simulator import SystolicArray


def run(array, trials, workers, d, name):
    c = faults.ModelCampaign(model="cnn", array=array, registers=("psum",), trials=trials, seed=1)
    t = time.perf_counter()
    faults.run_model_campaign(c, os.path.join(d, f"{name}.db"), workers=workers)
    dt = time.perf_counter() - t
    rep = faults.model_campaign_report(os.path.join(d, f"{name}.db"))
    with faults.ResultStore.open(os.path.join(d, f"{name}.db")) as st:
        rows = st.rows()
    return rep.tables["format"][0], rows, dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=600)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    base = SystolicArray(16, 16, dataflow="ws", profile="systolic_fma")
    prot = ProtectedArray(base, (SecDed(registers=("psum",)),))
    with tempfile.TemporaryDirectory() as d:
        out = {}
        for name, arr in (("unprotected", base), ("protected", prot)):
            row, rows, dt = run(arr, args.trials, args.workers, d, name)
            crit = sum(r.outcome in ("critical_sdc", "nan_inf") for r in rows)
            print(f"{name:>12}: {row.n} trials in {dt:.1f} s; " + ", ".join(
                f"{o} {100 * row.rates[o]:.1f}%" for o in faults.TRIAL_OUTCOMES) +
                f"; SDC {100 * row.sdc:.2f}% [{100 * row.sdc_ci[0]:.2f}, {100 * row.sdc_ci[1]:.2f}]; "
                f"critical trials {crit}")
            out[name] = (row, crit)
    (u, _), (p, pc) = out["unprotected"], out["protected"]
    overlap = not (p.sdc_ci[1] < u.sdc_ci[0])
    print(f"RESULT unprotected_sdc={u.sdc:.4f} [{u.sdc_ci[0]:.4f},{u.sdc_ci[1]:.4f}] "
          f"protected_sdc={p.sdc:.4f} [{p.sdc_ci[0]:.4f},{p.sdc_ci[1]:.4f}] protected_critical={pc} "
          f"intervals_overlap={overlap}")


if __name__ == "__main__":
    main()
