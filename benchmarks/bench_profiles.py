"""Fast-path time of every issue-13 profile against ``hopper`` on its 16-bit formats.

For each case (profile, input format; block-scaled cases with their scales) at n^3
(default 512), times ``simulator.matmul`` against ``hopper`` on fp16 inputs with a
float32 accumulator in the same process: after a warm-up that also compiles, each of
``--repeats`` rounds times the baseline and then the case, and the case's figure is
the median over rounds of case / baseline (on a shared machine the load changes
between rounds; within one round both see about the same).  Ends with one line::

    RESULT ada_fp16_512=R ada_e4m3_512=R ... (time / hopper fp16 time; bar: <= 2)

Usage: python benchmarks/bench_profiles.py [--n 512] [--repeats 7]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import simulator
from bench_matmul import median_time  # the same timing discipline (run as a script)

# name -> (profile, input format, scale format or None, matmul keywords)
CASES = {
    "ada_fp16": ("ada", "fp16", None, {}),
    "ada_e4m3": ("ada", "e4m3", None, {}),
    "blackwell_bf16": ("blackwell", "bf16", None, {}),
    "blackwell_e4m3": ("blackwell", "e4m3", None, {}),
    "rtx_blackwell_e5m2": ("rtx_blackwell", "e5m2", None, {}),
    "blackwell_mx_e4m3": ("blackwell_mx", "e4m3", "ue8m0", {}),
    "blackwell_mx_e2m1": ("blackwell_mx", "e2m1", "ue4m3", {}),
    "cdna1_fp16": ("cdna1", "fp16", None, {}),
    "cdna2_bf16": ("cdna2", "bf16", None, {}),
    "cdna3_fp16": ("cdna3", "fp16", None, {}),
    "cdna3_bf16": ("cdna3", "bf16", None, {}),
    "cdna3_e4m3fnuz": ("cdna3", "e4m3fnuz", None, {}),
    "tpu_bf16": ("tpu", "bf16", None, {}),
}


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--cases", nargs="*", default=list(CASES))
    args = p.parse_args(argv)
    n = args.n
    rng = np.random.default_rng(0)
    a64, b64 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    h = simulator.FORMATS["fp16"].dtype
    ah, bh = a64.astype(h), b64.astype(h)
    ref = lambda: simulator.matmul(ah, bh, profile="hopper")  # noqa: E731
    t_ref = median_time(ref, args.repeats)
    print(f"{'case':<22} {'simulator s':>12} {'/ hopper':>9}")
    print(f"{'hopper_fp16':<22} {t_ref:>12.4f} {1.0:>9.2f}")
    ratios = {}
    for name in args.cases:
        profile, fmt, sfmt, kw = CASES[name]
        f = simulator.FORMATS[fmt]
        a, b = f.encode(a64, saturate=True).view(f.dtype), f.encode(b64, saturate=True).view(f.dtype)
        if sfmt is not None:
            blk = 16 if fmt == "e2m1" else 32
            code = 127 if sfmt == "ue8m0" else 0x38  # 1.0
            kw = dict(kw, scale_a=np.full((n, n // blk), code, np.uint8),
                      scale_b=np.full((n // blk, n), code, np.uint8), scale_format=sfmt)
        case = lambda: simulator.matmul(a, b, profile=profile, **kw)  # noqa: E731
        t = median_time(case, 1)  # compiles, and a first time
        rounds = [(_time(ref), _time(case)) for _ in range(args.repeats)]
        t = float(np.median([tc for _, tc in rounds]))
        ratios[name] = float(np.median([tc / tr for tr, tc in rounds]))
        print(f"{name:<22} {t:>12.4f} {ratios[name]:>9.2f}", flush=True)
    print("RESULT " + " ".join(f"{k}_{n}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
