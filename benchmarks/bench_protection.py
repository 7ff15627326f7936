"""Coverage and cost of the protection schemes, and their false alarms.

1. Coverage: a 16x16 weight-stationary ``systolic_fma`` SystolicArray (``--tc``: a 16x16
   hopper TensorCoreArray) on one 256^3 fp16 GEMM; ``--n`` (default 10,000) random
   single-bit transient flips per configuration, uniform over its fault sites x bits x
   live cycles (the schemes' check bits and checker registers included), for the
   unprotected array and each scheme.  Prints the table (scheme x outcome x added
   cycles x added bits, ratios to the unprotected array) and the injection rates.
2. False alarms: ``--clean`` (default 10,000) fault-free random GEMMs per profile
   (hopper, systolic_fma) and input format (fp16, bf16, e4m3), varied shapes and
   scales, through every scheme (the range check on fresh inputs of a layer whose
   bound was learned on 64 other inputs).

Ends with ``RESULT false_alarms=N sec_ded_single_bit_corrected=F``: N summed over all
fault-free runs and schemes; F the share of SEC-DED campaign flips that landed in a
protected register or its check bits and were corrected.
"""
from __future__ import annotations

import argparse
import time

import ml_dtypes
import numpy as np

import simulator
from faults import coverage_table, run_campaign
from protection import Abft, Dmr, Parity, ProtectedArray, RangeCheck, Residue, SecDed

_DTYPES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "e4m3": ml_dtypes.float8_e4m3fn}


def coverage(args):
    rng = np.random.default_rng(0)
    n3 = args.size
    a = rng.standard_normal((n3, n3)).astype(np.float16)
    b = rng.standard_normal((n3, n3)).astype(np.float16)
    arr = simulator.TensorCoreArray(16, 16) if args.tc else simulator.SystolicArray(16, 16)
    t = time.perf_counter()
    golden = arr.golden(a, b)
    print(f"golden run: {time.perf_counter() - t:.2f} s; {arr}")
    # the range check's bound: learned on fault-free outputs of the same layer (weights b)
    prof = [simulator.matmul(rng.standard_normal((n3, n3)).astype(np.float16), b, profile=arr.profile)
            for _ in range(4)] + [golden.output]
    schemes = [(), (Parity(),), (Parity(action="recompute"),), (SecDed(),), (Residue(k=3),), (Abft(),),
               (RangeCheck.profile(prof),), (RangeCheck.profile(prof, action="clamp"),), (Dmr(),)]
    results = []
    for s in schemes:
        r = run_campaign(ProtectedArray(arr, s), a, b, n=args.n, seed=1, golden=golden)
        results.append(r)
        print(f"  {r.scheme}: {r.n} injections in {r.seconds:.1f} s ({r.rate:.0f}/s)", flush=True)
    print()
    print(f"{'TensorCoreArray hopper' if args.tc else 'SystolicArray ws systolic_fma'} 16x16, "
          f"{n3}^3 fp16 GEMM, {args.n} single-bit flips per row; unprotected: {results[0].base_cycles} cycles, "
          f"{results[0].base_bits} register bits")
    print(coverage_table(results))
    sd = next(r for r in results if r.scheme.startswith("sec-ded"))
    hits = {k: v for k, v in sd.by_register.items() if k in ("psum", "psum.ecc")}
    n_hit = sum(sum(v.values()) for v in hits.values())
    frac = sum(v["corrected"] for v in hits.values()) / n_hit if n_hit else float("nan")
    print(f"\nSEC-DED: {n_hit} flips in psum or its check bits, {frac:.4f} corrected")
    return sum(r.false_alarms for r in results), frac


def false_alarms(args):
    rng = np.random.default_rng(7)
    total = 0
    for profile in ("hopper", "systolic_fma"):
        arr = simulator.TensorCoreArray(4, 4) if profile == "hopper" else simulator.SystolicArray(4, 4)
        for fmt, dt in _DTYPES.items():
            t = time.perf_counter()
            everything = ProtectedArray(arr, (Parity(registers=("a",)), SecDed(registers=("psum",)), Dmr(), Abft()))
            residue = ProtectedArray(arr, (Residue(),))
            layer_b = (rng.standard_normal((48, 16)) * 0.25).astype(dt)
            rc = RangeCheck.profile([simulator.matmul(rng.standard_normal((32, 48)).astype(dt), layer_b, profile=profile)
                                     for _ in range(64)])
            ranged = ProtectedArray(arr, (rc,))
            n_fa = 0
            for i in range(args.clean):
                M, K, N = (int(x) for x in rng.integers(1, (33, 97, 33)))
                scale = 2.0 ** int(rng.integers(-10, 10))
                a = (rng.standard_normal((M, K)) * scale * 2.0 ** rng.integers(-4, 4, (M, K))).astype(dt)
                bb = (rng.standard_normal((K, N)) * 2.0 ** rng.integers(-4, 4, (K, N))).astype(dt)
                a[rng.random((M, K)) < 0.1] = 0
                c = (rng.standard_normal((M, N)) * scale).astype(np.float32)
                g = arr.golden(a, bb, c)
                n_fa += len(everything.evaluator(g).false_alarms) + len(residue.evaluator(g).false_alarms)
                x = rng.standard_normal((int(rng.integers(1, 33)), 48)).astype(dt)
                n_fa += len(ranged.evaluator(arr.golden(x, layer_b)).false_alarms)
            total += n_fa
            print(f"  {profile:12s} {fmt}: {args.clean} random GEMMs x 6 schemes, {n_fa} false alarms "
                  f"({time.perf_counter() - t:.1f} s)", flush=True)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000, help="injections per configuration")
    ap.add_argument("--clean", type=int, default=10000, help="fault-free GEMMs per profile and format")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tc", action="store_true", help="a 16x16 hopper TensorCoreArray instead")
    args = ap.parse_args()
    t = time.perf_counter()
    fa_campaign, frac = coverage(args)
    print("\nfalse alarms on fault-free random GEMMs:")
    fa = false_alarms(args) + fa_campaign
    print(f"\ntotal {time.perf_counter() - t:.0f} s")
    print(f"RESULT false_alarms={fa} sec_ded_single_bit_corrected={frac:.4f}")


if __name__ == "__main__":
    main()
