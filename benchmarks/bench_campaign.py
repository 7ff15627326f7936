"""End-to-end throughput of a register-level model campaign, against a value-level
injector in native JAX on the same model and batch, in the same process.

* register level: :func:`faults.run_model_campaign` of the CNN on the first 256 test digits,
  fp16 inputs, fp32 accumulation, single-bit flips drawn uniformly over every register
  bit x PE x cycle of a 16x16 weight-stationary ``systolic_fma`` array running the
  model's GEMM tiles; the default local process pool; every trial classified and
  committed to SQLite.  Timed from the call to the last trial stored: pool start-up,
  golden runs and database included.
* value level (the baseline): :class:`faults.NativeValueInjector`, the MPGemmFI method
  in native JAX: one bit of one element of one GEMM output flipped (uniform over GEMM
  output elements x 32 bits), the whole model re-run jit-compiled by XLA, the logits
  classified the same way (masked / SDC / top-1 changed / NaN); compile excluded.
* for information: the same campaign with value-level faults (one bit of one GEMM
  output on the simulated accelerator, :class:`models.OutputBitFlip`).

``ratio_vs_value_level`` = time per register-level injection / time per native
value-level injection (below 1: the register-level campaign is the faster one).
Ends with ``RESULT injections_per_s=X ratio_vs_value_level=Y``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import faults
from simulator import SystolicArray


def native_rate(n, seed=0, batch=256):
    from models import get_model, load_digits, load_params

    m = get_model("cnn")
    x, y = load_digits("test")
    inj = faults.NativeValueInjector(m.apply, load_params("cnn"), x[:batch])
    gold = inj.golden
    sizes = np.array([int(np.prod(s)) for s, _ in inj.gemms], np.int64)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(sizes)
    inj(0, 0, 0)  # warm
    counts = {}
    t = time.perf_counter()
    for _ in range(n):
        u = int(rng.integers(cum[-1]))
        g = int(np.searchsorted(cum, u, side="right"))
        e = u - (int(cum[g - 1]) if g else 0)
        out = inj(g, e, int(rng.integers(32)))
        if np.array_equal(out.view(np.uint32), gold.view(np.uint32)):
            k = "masked"
        elif not np.isfinite(out).all():
            k = "nan_inf"
        elif (out.argmax(-1) != gold.argmax(-1)).any():
            k = "critical_sdc"
        else:
            k = "benign_sdc"
        counts[k] = counts.get(k, 0) + 1
    dt = time.perf_counter() - t
    return n / dt, counts


def campaign_rate(campaign, workers):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.db")
        t = time.perf_counter()
        res = faults.run_model_campaign(campaign, path, workers=workers)
        dt = time.perf_counter() - t
        rep = faults.model_campaign_report(path)
    return res.ran / dt, res, rep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4000, help="register-level trials")
    ap.add_argument("--native-trials", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip-value-campaign", action="store_true")
    args = ap.parse_args()

    c = faults.ModelCampaign(model="cnn", array=SystolicArray(16, 16), formats=("fp16",), batch=256,
                             level="register", trials=args.trials, seed=0)
    reg, res, rep = campaign_rate(c, args.workers)
    row = rep.tables["format"][0]
    print(f"register-level campaign: {res.ran} trials in {res.seconds:.2f} s end to end "
          f"({reg:.0f}/s; trials alone {res.ran / res.trial_seconds:.0f}/s), {res.executor} pool; "
          f"SDC {100 * row.sdc:.1f}% critical {100 * row.critical:.2f}%")
    if not args.skip_value_campaign:
        val, vres, vrep = campaign_rate(c.with_(level="value", trials=args.trials // 2), args.workers)
        vrow = vrep.tables["format"][0]
        print(f"value-level campaign on the simulated accelerator: {vres.ran} trials, {val:.0f}/s end to end; "
              f"SDC {100 * vrow.sdc:.1f}% critical {100 * vrow.critical:.2f}%")
    nat, counts = native_rate(args.native_trials)
    print(f"native-JAX value-level injector: {args.native_trials} injections, {nat:.0f}/s; {counts}")
    print(f"RESULT injections_per_s={reg:.1f} ratio_vs_value_level={nat / reg:.3f}")


if __name__ == "__main__":
    main()
