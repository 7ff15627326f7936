"""The bridge on the JAX engine (Accelerator(engine="jax")) against the Numba engine.

Same process, the shipped CNN on digits test images, hopper fp16 (fp32 accumulation):

* ``forward``: one jitted forward on the JAX engine (compiled first) against one eager
  forward on the Numba engine (``accelerated(...)(params, x)``), median of several
  runs each; the outputs are checked bit for bit.
* ``trials``: output-bit-flip trials per second of ``inject_many`` (T trials in vmapped,
  jitted chunks; compile excluded) against ``GoldenTrace.inject`` one trial at a time
  (the golden-trace reuse of the Numba engine), over the same random flips; a few
  trials are checked bit for bit against each other.

Ends with ``RESULT jax_forward_vs_numba=R jax_trials_per_s=X numba_trials_per_s=Y``.

    python benchmarks/bench_jax_bridge.py [--images 64] [--trials 256] [--repeats 5]
"""
import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import models
from bench_matmul import median_time  # the same timing discipline (run as a script)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    m, p = models.get_model("cnn"), models.load_params("cnn")
    x = jnp.asarray(models.load_digits("test")[0][:args.images])
    numba = models.accelerated(m.apply, models.Accelerator("hopper", "fp16"))
    jaxf = models.accelerated(m.apply, models.Accelerator("hopper", "fp16", engine="jax"))
    jitted = jax.jit(jaxf)
    t0 = time.perf_counter()
    out = jitted(p, x).block_until_ready()
    print(f"first jitted call (trace + compile): {time.perf_counter() - t0:.1f} s")
    want = numba(p, x)
    assert np.array_equal(np.asarray(out).view(np.uint32), np.asarray(want).view(np.uint32))
    t_numba = median_time(lambda: numba(p, x), args.repeats)
    t_jax = median_time(lambda: jitted(p, x).block_until_ready(), args.repeats)
    print(f"forward, {args.images} images: numba engine {t_numba * 1e3:.1f} ms, jax engine (jit) {t_jax * 1e3:.1f} ms")

    sites = jaxf.jax_gemms(p, x)
    rng = np.random.default_rng(0)
    g = rng.integers(len(sites), size=args.trials)
    flips = [models.OutputBitFlip(gemm=int(i), row=int(rng.integers(sites[i].M)), col=int(rng.integers(sites[i].N)),
                                  bit=int(rng.integers(32))) for i in g]
    trace = numba.trace(p, x)
    jaxf.inject_many(flips[:args.chunk], p, x, chunk=args.chunk)  # compile
    t0 = time.perf_counter()
    many = jax.block_until_ready(jaxf.inject_many(flips, p, x, chunk=args.chunk))
    t_many = time.perf_counter() - t0
    n_one = min(args.trials, 64)
    t0 = time.perf_counter()
    ones = [trace.inject(f) for f in flips[:n_one]]
    t_one = (time.perf_counter() - t0) / n_one
    for t in range(0, n_one, max(1, n_one // 8)):
        assert np.array_equal(np.asarray(many[t]).view(np.uint32), np.asarray(ones[t]).view(np.uint32))
    jt, nt = args.trials / t_many, 1 / t_one
    print(f"trials: inject_many {jt:.1f}/s ({args.trials} in chunks of {args.chunk}), "
          f"GoldenTrace.inject {nt:.1f}/s ({n_one} trials)")
    print(f"RESULT jax_forward_vs_numba={t_jax / t_numba:.2f} jax_trials_per_s={jt:.1f} numba_trials_per_s={nt:.1f}")


if __name__ == "__main__":
    main()
