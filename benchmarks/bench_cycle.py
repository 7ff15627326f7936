"""Throughput of the cycle-level PE arrays, against the fast path in the same process.

Measures, with fault hooks compiled in and one transient flip armed (in a live psum
register, so its fold runs the staged path):

* simulated PE-cycle updates per second (rows * cols * cycles / wall time) of a
  weight-stationary ``systolic_fma`` SystolicArray of 8x8, 32x32 and 128x128 PEs
  on a full 1024^3 fp16 GEMM (no extrapolation), and the slowdown against
  ``simulator.matmul`` (profile ``systolic_fma``) on the same GEMM;
* multiply-accumulates per second through a 16x16 hopper TensorCoreArray (fp16,
  512^3) and its slowdown against ``simulator.matmul`` (profile ``hopper``).

Each timing is the best of ``--repeat`` runs after one warm-up (numba compile).
Ends with ``RESULT pe_cycles_per_s_32x32=X slowdown_vs_fast_32x32=Y tensor_core_macs_per_s=Z``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import simulator
from simulator import Fault


def best(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--tc-size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.size
    a = rng.standard_normal((n, n)).astype(np.float16)
    b = rng.standard_normal((n, n)).astype(np.float16)
    t_fast = best(lambda: simulator.matmul(a, b, profile="systolic_fma"), args.repeat)
    print(f"fast path systolic_fma {n}^3: {t_fast:.3f} s  ({n ** 3 / t_fast:.3e} MAC/s)")
    res = {}
    for dim in (8, 32, 128):
        arr = simulator.SystolicArray(dim, dim, dataflow="ws", profile="systolic_fma")
        fault = Fault(pe=(dim // 2, dim // 2), register="psum", bit=30, cycle=2 * dim + 5)
        t = best(lambda: arr.run(a, b, faults=(fault,)), args.repeat)
        r = arr.run(a, b, faults=(fault,))
        pe_cycles = dim * dim * r.cycles
        res[dim] = (pe_cycles / t, t / t_fast)
        print(f"SystolicArray {dim}x{dim} ws {n}^3: {t:.3f} s, {r.cycles} cycles, "
              f"{pe_cycles / t:.3e} PE-cycles/s, {n ** 3 / t:.3e} MAC/s, utilization {r.utilization:.3f}, "
              f"slowdown vs fast {t / t_fast:.1f}x")
    m = args.tc_size
    a2 = rng.standard_normal((m, m)).astype(np.float16)
    b2 = rng.standard_normal((m, m)).astype(np.float16)
    t_fast_tc = best(lambda: simulator.matmul(a2, b2, profile="hopper"), args.repeat)
    tc = simulator.TensorCoreArray(16, 16, profile="hopper")
    fault = Fault(pe=(3, 5), register="psum", bit=30, cycle=100)
    t_tc = best(lambda: tc.run(a2, b2, faults=(fault,)), args.repeat)
    r = tc.run(a2, b2, faults=(fault,))
    macs = m ** 3 / t_tc
    print(f"fast path hopper {m}^3: {t_fast_tc:.3f} s ({m ** 3 / t_fast_tc:.3e} MAC/s)")
    print(f"TensorCoreArray 16x16 hopper fp16 {m}^3: {t_tc:.3f} s, {r.cycles} cycles, {macs:.3e} MAC/s, "
          f"utilization {r.utilization:.3f}, slowdown vs fast {t_tc / t_fast_tc:.1f}x")
    print(f"RESULT pe_cycles_per_s_32x32={res[32][0]:.3e} slowdown_vs_fast_32x32={res[32][1]:.2f} "
          f"tensor_core_macs_per_s={macs:.3e}")


if __name__ == "__main__":
    main()
