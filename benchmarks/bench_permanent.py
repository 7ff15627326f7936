"""The shipped CNN on a faulty chip: permanent faults, bypass, bypass with retraining.

Setup (FAP's headline, Zhang et al. VTS 2018): a 32x32 weight-stationary
``systolic_fma`` SystolicArray, fp16 operands, fp32 accumulation
(``Accelerator("systolic_fma", "fp16")``), the 360 digits test images.  A chip is
``FaultMap.sample(array, rate=R, seed=s)``: round(R * 1024) faulty PEs drawn
uniformly, each with one stuck-at fault (register uniform over a/w/psum, bit uniform
over its width, stuck0/stuck1 uniform).

* ``none``: every GEMM of the model through the faulty array (every fold, every cycle);
* ``bypass``: FAP, ``protection.Bypass``: faulty PEs switched out, their weights zero;
* ``retrain``: FAP+T, the model fine-tuned (``models.retrain_masked``, optax, float32)
  with the weights on faulty PEs held at zero, then run with bypass.

Accuracies are medians over ``--chips`` chips (default 20) at ``--rate`` (0.5), every
scheme on every chip (``--none-chips N`` runs only the first N chips unmitigated; by
default all of them: an unmitigated chip at 50 % takes about a second, since a stuck
partial-sum bit on a NaN acts on the register's canonical quiet NaN on the fast path
of ``simulator.chip_gemm``); the retraining time per chip is printed.  The speed line: one forward pass of the 360
images on a chip with 1 % faulty PEs (``accelerated(..., faults=chip_faults(...))``,
every GEMM through the array with the map, ``models.array_gemm`` =
``simulator.chip_gemm``: cycle-level work only where the faults reach), over the
fault-free accelerated forward, both in this process, best of ``--repeat``.

Ends with ``RESULT fault_free_acc=A none_acc_50pct=B bypass_acc_50pct=C
retrain_acc_50pct=D chip_forward_vs_fault_free=R``.
"""
from __future__ import annotations

import argparse
import time

import jax.numpy as jnp
import numpy as np

import models
from protection import Bypass
from simulator import FaultMap, SystolicArray


def _acc(logits, y) -> float:
    return float((np.asarray(logits).argmax(-1) == y).mean())


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chips", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--none-chips", type=int, default=None,
                    help="chips run unmitigated (the first N; default: every chip)")
    ap.add_argument("--epochs", type=int, default=40, help="retraining epochs per chip")
    ap.add_argument("--lr", type=float, default=3e-3, help="retraining peak learning rate")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    none_chips = args.chips if args.none_chips is None else args.none_chips
    if not 1 <= none_chips <= args.chips:
        ap.error(f"--none-chips must be in [1, --chips={args.chips}], not {none_chips}")

    model, params = models.get_model("cnn"), models.load_params("cnn")
    x, y = models.load_digits("test")
    x = jnp.asarray(x)
    acc = models.Accelerator("systolic_fma", "fp16")
    array = SystolicArray(32, 32, dataflow="ws", profile="systolic_fma")
    af = models.accelerated(model.apply, acc)
    trace = af.trace(params, x)
    ff = _acc(trace.outputs, y)
    print(f"fault-free accelerated accuracy {ff:.4f}  GEMMs {[(s.M, s.K, s.N) for s in trace.gemms]}")

    def bypass_gemm(fm):
        return lambda a, b, d: Bypass().run(array, a, b, np.zeros(d.shape, d.dtype), fault_map=fm).output

    none, byp, ret, secs = [], [], [], []
    for seed in range(args.chips):
        fm = FaultMap.sample(array, rate=args.rate, seed=seed)
        t = time.perf_counter()
        if seed < none_chips:
            none.append(_acc(models.run_on_chip(trace, models.array_gemm(array, fm, acc)), y))
        t_none = time.perf_counter() - t
        byp.append(_acc(models.run_on_chip(trace, bypass_gemm(fm)), y))
        q, s = models.retrain_masked("cnn", params, models.param_masks(params, array, fm), epochs=args.epochs,
                                     lr=args.lr, seed=seed)
        secs.append(s)
        chip = models.accelerated(model.apply, acc, faults=models.chip_faults(trace.gemms, bypass_gemm(fm)))
        ret.append(_acc(chip(q, x), y))
        nn = f"{none[-1]:.4f} ({t_none:.1f} s)" if seed < none_chips else "-"
        print(f"chip {seed:2d}: {len(fm)} faulty PEs  none {nn}  bypass {byp[-1]:.4f}  "
              f"retrain {ret[-1]:.4f} (retraining {s:.1f} s)", flush=True)
    print(f"medians over {args.chips} chips ({len(none)} unmitigated) at rate {args.rate}: none {np.median(none):.4f} "
          f"[{np.min(none):.4f}, {np.max(none):.4f}]  bypass {np.median(byp):.4f} [{np.min(byp):.4f}, "
          f"{np.max(byp):.4f}]  retrain {np.median(ret):.4f} [{np.min(ret):.4f}, {np.max(ret):.4f}]  "
          f"retraining {np.median(secs):.1f} s/chip")

    fm1 = FaultMap.sample(array, rate=0.01, seed=1000)
    chip1 = models.accelerated(model.apply, acc,
                               faults=models.chip_faults(trace.gemms, models.array_gemm(array, fm1, acc)))
    chip1(params, x)  # compile / warm
    af(params, x)
    t_ff = _best(lambda: af(params, x), args.repeat)
    t_chip = _best(lambda: chip1(params, x), args.repeat)
    print(f"forward of 360 images: fault-free {t_ff:.3f} s, chip with {len(fm1)} faulty PEs (1 %) {t_chip:.3f} s")
    print(f"RESULT fault_free_acc={ff:.4f} none_acc_50pct={np.median(none):.4f} bypass_acc_50pct={np.median(byp):.4f} "
          f"retrain_acc_50pct={np.median(ret):.4f} chip_forward_vs_fault_free={t_chip / t_ff:.2f}")


if __name__ == "__main__":
    main()
