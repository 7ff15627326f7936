"""The JAX engine (models.jax_matmul) against the Numba fast path (simulator.matmul).

Same process, same operands: 512^3 hopper fp16 (fp32 accumulator) and e4m3 on the CPU,
each the median of several runs after a warm-up (the JAX one jitted and compiled
first); the outputs are checked bit for bit.  With a GPU among jax.devices(), 4096^3
hopper fp16 is timed there too (its first 256 rows checked bit for bit against the
Numba fast path), and so is a jitted all-MiniLM-L6-v2 forward on the JAX engine's
bridge (``Accelerator("hopper", "fp16", engine="jax")``, batch 64 x 128 tokens; needs
the model directory, see ``models.minilm_retrieval``).  Ends with
``RESULT cpu_vs_numba=R gpu_macs_per_s=X``: R = JAX time / Numba time (hopper fp16,
512^3), X = bit-exact MAC/s on the GPU (0 without one).

    PYTHONPATH=$PWD python benchmarks/bench_jax_engine.py [--size 512] [--repeats 5]
"""
import argparse
import functools
import time

import jax
import numpy as np

import simulator
from models import Accelerator, accelerated, jax_matmul, minilm_retrieval


def _median_time(fn, repeats):
    fn()  # warm-up: Numba's cached compile, XLA's compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def minilm_forward_seconds(device, batch=64, tokens=128, repeats=3):
    """Median seconds of a jitted MiniLM-L6 forward (hopper fp16, JAX engine) of
    ``batch`` texts of ``tokens`` random token ids on ``device`` (compile excluded), or
    None when the model directory is absent."""
    try:
        wl = minilm_retrieval(2)  # the encoder and its weights; the inputs are made here
    except FileNotFoundError as e:
        print("MiniLM-L6 not available:", e)
        return None
    rng = np.random.default_rng(1)
    shape = (batch // 2, 2, tokens)  # the workload's (pairs, query/passage, tokens) layout
    inputs = jax.device_put({"token_ids": rng.integers(1000, 20000, shape).astype(np.int32),
                             "attention_mask": np.ones(shape, np.int32)}, device)
    params = jax.device_put(wl.params, device)
    fwd = jax.jit(accelerated(wl.apply, Accelerator("hopper", "fp16", engine="jax")))
    t0 = time.perf_counter()
    fwd(params, inputs).block_until_ready()
    print(f"MiniLM-L6 {batch} x {tokens} on {device.device_kind}: first call (trace + compile) "
          f"{time.perf_counter() - t0:.1f} s")
    return _median_time(lambda: fwd(params, inputs).block_until_ready(), repeats)


def _operands(rng, fmt, m, k, n):
    dt = simulator.FORMATS[fmt].dtype
    return (rng.standard_normal((m, k)).astype(dt), rng.standard_normal((k, n)).astype(dt),
            rng.standard_normal((m, n)).astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gpu-size", type=int, default=4096)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    s = args.size
    cpu = jax.devices("cpu")[0]
    ratio = None
    for fmt in ("fp16", "e4m3"):
        a, b, c = _operands(rng, fmt, s, s, s)
        f = jax.jit(functools.partial(jax_matmul, profile="hopper"))  # runs where its inputs are
        aj, bj, cj = (jax.device_put(x, cpu) for x in (a, b, c))
        want = simulator.matmul(a, b, c, profile="hopper")
        got = np.asarray(f(aj, bj, cj))
        assert (got.view(np.uint32) == want.view(np.uint32)).all(), f"hopper {fmt}: JAX engine != simulator.matmul"
        t_nb = _median_time(lambda: simulator.matmul(a, b, c, profile="hopper"), args.repeats)
        t_jx = _median_time(lambda: f(aj, bj, cj).block_until_ready(), args.repeats)
        macs = s ** 3
        print(f"hopper {fmt} {s}^3 cpu: numba {t_nb * 1e3:.1f} ms ({macs / t_nb:.3g} MAC/s), "
              f"jax {t_jx * 1e3:.1f} ms ({macs / t_jx:.3g} MAC/s), jax/numba {t_jx / t_nb:.1f}x (bits equal)")
        if fmt == "fp16":
            ratio = t_jx / t_nb
    gpu_rate = 0.0
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if gpus:
        g = args.gpu_size
        a, b, c = _operands(rng, "fp16", g, g, g)
        f = jax.jit(functools.partial(jax_matmul, profile="hopper"))
        aj, bj, cj = (jax.device_put(x, gpus[0]) for x in (a, b, c))
        t = _median_time(lambda: f(aj, bj, cj).block_until_ready(), max(2, args.repeats // 2))
        rows = min(g, 256)
        got = np.asarray(f(aj, bj, cj))[:rows]
        want = simulator.matmul(a[:rows], b, c[:rows], profile="hopper")
        exact = bool((got.view(np.uint32) == want.view(np.uint32)).all())
        gpu_rate = g ** 3 / t if exact else 0.0  # only bit-exact MAC/s count
        print(f"hopper fp16 {g}^3 on {gpus[0].device_kind}: {t * 1e3:.1f} ms ({g ** 3 / t:.3g} MAC/s); first "
              f"{rows} rows {'equal' if exact else 'NOT equal'} to simulator.matmul bit for bit")
        tm = minilm_forward_seconds(gpus[0])
        if tm is not None:
            print(f"MiniLM-L6 forward, batch 64 x 128 tokens, jitted on {gpus[0].device_kind}: {tm * 1e3:.1f} ms")
    else:
        print("no GPU among jax.devices(): GPU figure unmeasured")
    print(f"RESULT cpu_vs_numba={ratio:.2f} gpu_macs_per_s={gpu_rate:.3g}")


if __name__ == "__main__":
    main()
