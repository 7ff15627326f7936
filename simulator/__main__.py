"""``python -m simulator``: simulate one GEMM tile in several formats and datapaths.

Draws one tile (M x K @ K x N, N(0, 1) entries, fixed seed), rounds it to each input
format, runs it through each datapath profile, and prints how the result differs
from binary64: the error of the format itself (inputs rounded, exact arithmetic) and
the extra error the datapath adds (its result against the correctly rounded binary32
of the exact product of the rounded inputs), in units in the last place of binary32.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ._formats import get_format
from ._matmul import _narrow, matmul
from ._profiles import PROFILES

def _ulps(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|x - ref| in binary32 ulps of ref (ref's exponent, at least the smallest normal's)."""
    e = np.floor(np.log2(np.maximum(np.abs(ref), 2.0 ** -126)))
    return np.abs(x - ref) / 2.0 ** (e - 23)


def run_tile(m=16, n=8, k=64, seed=0, profiles=("hopper", "ampere", "volta", "systolic_fma")):
    """Rows of (profile, format, max |D - exact64|, max ulps vs RNE, bit-equal fraction)."""
    rng = np.random.default_rng(seed)
    a64, b64 = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    exact_unrounded = a64 @ b64
    rows = []
    for pname in profiles:
        prof = PROFILES[pname]
        for fname in ("fp16", "bf16", "tf32", "e4m3", "e5m2"):
            if fname not in prof.rules:
                continue
            fmt = get_format(fname)
            a, b = a64.astype(fmt.dtype), b64.astype(fmt.dtype)  # tf32: float32 arrays
            rule = prof.rule(fname)
            av = fmt.decode(_narrow(a, fmt, rule).view(fmt.uint_dtype))
            bv = fmt.decode(_narrow(b, fmt, rule).view(fmt.uint_dtype))
            exact = av @ bv  # binary64: exact enough to be the reference here (K=64 terms)
            d = matmul(a, b, profile=pname, input_format="tf32" if fname == "tf32" else None).astype(np.float64)
            rne = exact.astype(np.float32).astype(np.float64)
            rows.append((pname, fname, float(np.abs(exact - exact_unrounded).max()),
                         float(_ulps(d, rne).max()), float((d == rne).mean())))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.m, args.n, args.k) < 1:
        p.error("--m, --n and --k must be positive")
    print(f"one {args.m}x{args.k} @ {args.k}x{args.n} tile, N(0,1) inputs, seed {args.seed}")
    print(f"{'profile':<13} {'input':<6} {'format error':>13} {'datapath ulps':>14} {'= RNE fp32':>11}")
    print(f"{'':<13} {'':<6} {'(max abs)':>13} {'(max, fp32)':>14} {'(fraction)':>11}")
    for pname, fname, ferr, ulps, eq in run_tile(args.m, args.n, args.k, args.seed):
        print(f"{pname:<13} {fname:<6} {ferr:>13.3e} {ulps:>14.1f} {eq:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
