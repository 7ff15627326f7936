"""MiniLM-L6 (all-MiniLM-L6-v2) on the simulated accelerator: forward time and
register-level campaign throughput.

1. Forward: ``batch`` texts (queries and passages of the retrieval pairs) padded or
   truncated to ``tokens`` tokens, through ``models.accelerated(model.apply,
   Accelerator("hopper", "fp16"))`` and through ``jax.jit(model.apply)``, same process,
   median of ``--repeats`` runs each (after one warm-up run).
2. Campaign: the ``minilm-retrieval`` workload on ``batch / 2`` pairs, a register-level
   campaign on a 16x16 weight-stationary systolic array (serial executor, chunked
   recomputation per pair), ``--trials`` trials: injections per second of trial time
   (setup, the golden runs, excluded).
3. Value-level baseline: :class:`faults.NativeValueInjector` on the same workload, one
   bit flip of one GEMM output element per call, median time per injection.

Ends with ``RESULT forward_vs_jit=R injections_per_s=X ratio_vs_value_level=Y``
(Y = campaign seconds per injection / value-level seconds per injection).
Needs the model and data (``GEMMFI_MODELS_DIR`` or ``../shared/models``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np

import faults
import models
from simulator import SystolicArray


def _median_time(fn, repeats):
    fn()  # warm-up: compilation / jaxpr tracing
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16, help="texts per forward (even)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--value-trials", type=int, default=50)
    ap.add_argument("--path", default=None, help="models directory (default: GEMMFI_MODELS_DIR or ../shared/models)")
    args = ap.parse_args()

    wl = models.minilm_retrieval(n=max(2, args.batch // 2), path=args.path)
    ids = np.asarray(wl.inputs["token_ids"]).reshape(-1, wl.inputs["token_ids"].shape[-1])[:args.batch]
    mask = np.asarray(wl.inputs["attention_mask"]).reshape(ids.shape)[:args.batch]
    T = args.tokens
    ids = np.pad(ids, ((0, 0), (0, max(0, T - ids.shape[1]))))[:, :T].astype(np.int32)
    mask = np.pad(mask, ((0, 0), (0, max(0, T - mask.shape[1]))))[:, :T].astype(np.int32)
    params = wl.params
    n = args.batch // 2
    # the workload on these batch texts (n query/passage pairs, T tokens each)
    wl = models.Workload(wl.apply, params, {"token_ids": ids.reshape(n, 2, T), "attention_mask": mask.reshape(n, 2, T)},
                         None, "retrieval", "minilm-retrieval")
    enc = lambda p, i, m: wl.apply(p, {"token_ids": i, "attention_mask": m})  # noqa: E731
    ids, mask = wl.inputs["token_ids"], wl.inputs["attention_mask"]

    jit = jax.jit(enc)
    t_jit = _median_time(lambda: jit(params, ids, mask), args.repeats)
    af = models.accelerated(enc, models.Accelerator("hopper", "fp16"))
    t_acc = _median_time(lambda: af(params, ids, mask), args.repeats)
    print(f"forward {args.batch}x{T} tokens: accelerated {t_acc:.2f} s, "
          f"jax.jit {t_jit * 1e3:.1f} ms, ratio {t_acc / t_jit:.1f}")

    array = SystolicArray(rows=16, cols=16)
    c = faults.ModelCampaign(model=wl, array=array, trials=args.trials, seed=1, chunk=1)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        r = faults.run_model_campaign(c, os.path.join(d, "m.db"), executor="serial")
        setup = time.perf_counter() - t - r.trial_seconds
        with faults.ResultStore.open(os.path.join(d, "m.db")) as st:
            rows = st.rows()
    per_inj = r.trial_seconds / max(r.ran, 1)
    outcomes = {o: sum(x.outcome == o for x in rows) for o in sorted({x.outcome for x in rows})}
    print(f"campaign: {r.ran} register-level trials on 16x16 in {r.trial_seconds:.1f} s "
          f"(setup {setup:.1f} s): {1 / per_inj:.2f} injections/s; outcomes {outcomes}")

    inj = faults.NativeValueInjector(wl.apply, params, wl.inputs)
    rng = np.random.default_rng(0)
    ts = []
    for _ in range(args.value_trials):
        g = int(rng.integers(len(inj.gemms)))
        size = int(np.prod(inj.gemms[g][0]))
        t = time.perf_counter()
        inj(g, int(rng.integers(size)), int(rng.integers(32)))
        ts.append(time.perf_counter() - t)
    t_val = statistics.median(ts)
    print(f"value level (NativeValueInjector): {t_val * 1e3:.1f} ms per injection")
    print(f"RESULT forward_vs_jit={t_acc / t_jit:.1f} injections_per_s={1 / per_inj:.2f} "
          f"ratio_vs_value_level={per_inj / t_val:.1f}")


if __name__ == "__main__":
    main()
