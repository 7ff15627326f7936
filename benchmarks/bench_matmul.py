"""Fast-path throughput: simulator.matmul against numpy float32 ``a @ b``, same process.

For each shape (256^3, 512^3, 1024^3) and case (hopper fp16 and bf16 inputs with a
float32 accumulator; systolic_fma fp16), times the simulator and numpy on the same
inputs (median of ``--repeats`` runs, after one warm-up that also compiles), and
prints the time ratio simulator / numpy.  Ends with one line::

    RESULT hopper_fp16_512=R1 hopper_bf16_512=R2 systolic_fma_512=R3

Usage: python benchmarks/bench_matmul.py [--sizes 256 512 1024] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time

import ml_dtypes
import numpy as np

import simulator

CASES = {
    "hopper_fp16": ("hopper", np.float16),
    "hopper_bf16": ("hopper", ml_dtypes.bfloat16),
    "systolic_fma": ("systolic_fma", np.float16),
}


def median_time(fn, repeats):
    # OpenBLAS's worker threads spin for about 0.1 s after a call, and Numba's after a
    # parallel region: on 2 cores that takes a core from whatever runs next.  A short
    # idle gap before each phase keeps one library's spinning out of the other's timing.
    time.sleep(0.3)
    fn()  # warm-up: Numba compile / cache load, BLAS thread start
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    ratios = {}
    print(f"{'case':<14} {'n':>5} {'simulator s':>12} {'numpy s':>10} {'ratio':>8}")
    for n in args.sizes:
        a64, b64 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        for name, (profile, dt) in CASES.items():
            a, b = a64.astype(dt), b64.astype(dt)
            a32, b32 = a.astype(np.float32), b.astype(np.float32)
            # interleave the baseline with the case so both see the same machine load
            t_np = median_time(lambda: a32 @ b32, args.repeats)
            t_sim = median_time(lambda: simulator.matmul(a, b, profile=profile), args.repeats)
            t_np = min(t_np, median_time(lambda: a32 @ b32, args.repeats))
            ratios[(name, n)] = t_sim / t_np
            print(f"{name:<14} {n:>5} {t_sim:>12.5f} {t_np:>10.5f} {t_sim / t_np:>8.1f}", flush=True)
    r = {k: ratios.get((k, 512), float("nan")) for k in CASES}
    print(f"RESULT hopper_fp16_512={r['hopper_fp16']:.1f} hopper_bf16_512={r['hopper_bf16']:.1f} "
          f"systolic_fma_512={r['systolic_fma']:.1f}")


if __name__ == "__main__":
    main()
