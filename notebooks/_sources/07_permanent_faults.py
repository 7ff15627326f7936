# %% [markdown]
# # Permanent faults: a faulty chip, and what keeps it working
#
# The shipped CNN (digits) on a 32x32 weight-stationary systolic array of scalar binary32
# FMA PEs (`systolic_fma`), with a fraction of its PEs permanently faulty: each faulty PE
# has one register bit stuck at 0 or 1 for the life of the chip
# (`simulator.FaultMap.sample`: the faulty PEs are drawn uniformly without replacement,
# the bit uniformly over the register's width, stuck0/stuck1 with equal odds). Every GEMM
# of the model, every tile and every fold meets the chip's faults
# (`models.run_on_chip` with `models.array_gemm`, bit-exact to the cycle-level array run).
#
# Curves: accuracy against the fraction of faulty PEs (a single PE, 0.1 %, 1 %, 10 %,
# 25 %, 50 %), for
#
# * **none**: the chip as it is;
# * **bypass** (FAP, Zhang et al. VTS 2018; `protection.Bypass`): faulty PEs are switched
#   out, the weights mapped on them count as zero;
# * **bypass + retraining** (FAP+T; `models.retrain_masked`): the model fine-tuned in
#   float32 with those weights held at zero, then run with bypass;
# * **spares** (`protection.Spares(4)`): four spare PE columns take the work of the first
#   four faulty columns (12.5 % more PEs); faulty columns beyond the spares keep their faults;
#
# with the stuck bits in the weight (`w`), operand (`a`, the link to the right neighbour)
# or partial-sum (`psum`, the link down) registers, and fp16, bf16 and e4m3 operands
# (fp32 accumulation). Bypass and retraining do not depend on which register is faulty
# (a bypassed PE is out whatever its fault), so their curves are the same in every row.
# On a 32x32 array 0.1 % of the PEs rounds to one PE, the same count as the single-PE
# point (drawn independently).
#
# Each point is the mean accuracy over chips with a 95 % bootstrap interval of the mean.
# Small mode (the default, for CI) runs few chips, few rates and few images; set
# `GEMMFI_FULL=1` for the full study (20 chips per point, all 360 test images, 40
# retraining epochs per chip). Nothing is cut in the full study: every chip runs every
# scheme, register and format; the only work shared is what is exactly the same (one PE
# draw serves the three registers, and one retraining per chip serves the three formats,
# since the pruning mask depends on the PEs and the mapping only). The committed notebook
# is the full study: 53 minutes on two shared cores (CNN schemes 30 min, retraining ~5 s per
# chip; fault-aware fine-tuning 15 min; the transformer 8 min).

# %%
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import models
from protection import Bypass, Spares
from simulator import FaultMap, SystolicArray

FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
T0 = time.perf_counter()

RATES = ((1 / 1024, 0.001, 0.01, 0.1, 0.25, 0.5) if FULL else (1 / 1024, 0.1))
LABELS = ["1 PE" if r == 1 / 1024 else f"{100 * r:g} %" for r in RATES]
CHIPS = 20 if FULL else 2          # chips per point
IMAGES = 360 if FULL else 48       # first images of the digits test split
FORMATS = ("fp16", "bf16", "e4m3")
REGISTERS = ("w", "a", "psum")
EPOCHS = 40 if FULL else 1         # retraining epochs per chip
SPARES = Spares(4)

array = SystolicArray(32, 32, dataflow="ws", profile="systolic_fma")
cnn, params = models.get_model("cnn"), models.load_params("cnn")
x_all, y_all = models.load_digits("test")
x, y = jnp.asarray(x_all[:IMAGES]), y_all[:IMAGES]
ACC = {f: models.Accelerator("systolic_fma", f) for f in FORMATS}
TRACE = {f: models.accelerated(cnn.apply, ACC[f]).trace(params, x) for f in FORMATS}


def accuracy(logits) -> float:
    return float((np.asarray(logits).argmax(-1) == y).mean())


FAULT_FREE = {f: accuracy(TRACE[f].outputs) for f in FORMATS}
print("GEMMs (M, K, N):", [(s.M, s.K, s.N) for s in TRACE["fp16"].gemms])
print("fault-free accuracy on", IMAGES, "images:", {f: round(a, 4) for f, a in FAULT_FREE.items()})


def mitigated(mitigation, fm):
    """A GEMM function for models.run_on_chip: one GEMM through the mitigated chip."""
    return lambda a, b, d: mitigation.run(array, a, b, np.zeros(d.shape, d.dtype), fault_map=fm).output


# %% [markdown]
# ## The chips
# For each rate and chip seed the set of faulty PEs is the same whatever the register
# (`FaultMap.sample` draws the PEs first), so a chip's bypass and retraining results serve
# all three register rows. The unmitigated and spare-column runs are per register.

# %%
rows = []  # dicts: rate, chip, fmt, register (None: register-independent), scheme, acc
retrain_s = []
t_none = 0.0
for ri, rate in enumerate(RATES):
    for chip in range(CHIPS):
        seed = 1000 * chip + ri  # one seed per (chip, point): the single-PE and 0.1 % chips differ
        pes = FaultMap.sample(array, rate=rate, seed=seed)  # the PE set (every register)
        for fmt in FORMATS:
            rows.append(dict(rate=rate, chip=chip, fmt=fmt, register=None, scheme="bypass",
                             acc=accuracy(models.run_on_chip(TRACE[fmt], mitigated(Bypass(), pes)))))
        q, secs = models.retrain_masked("cnn", params, models.param_masks(params, array, pes), epochs=EPOCHS,
                                        seed=chip)
        retrain_s.append(secs)
        for fmt in FORMATS:
            chip_fn = models.accelerated(cnn.apply, ACC[fmt],
                                         faults=models.chip_faults(TRACE[fmt].gemms, mitigated(Bypass(), pes)))
            rows.append(dict(rate=rate, chip=chip, fmt=fmt, register=None, scheme="bypass+retrain",
                             acc=accuracy(chip_fn(q, x))))
        for reg in REGISTERS:
            for fmt in FORMATS:
                fm = FaultMap.sample(array, rate=rate, seed=seed, registers=reg, input_format=fmt)
                assert fm.pes == pes.pes
                t = time.perf_counter()
                rows.append(dict(rate=rate, chip=chip, fmt=fmt, register=reg, scheme="none",
                                 acc=accuracy(models.run_on_chip(TRACE[fmt], models.array_gemm(array, fm, ACC[fmt])))))
                t_none += time.perf_counter() - t
                rows.append(dict(rate=rate, chip=chip, fmt=fmt, register=reg, scheme="spares",
                                 acc=accuracy(models.run_on_chip(TRACE[fmt], mitigated(SPARES, fm)))))
    print(f"{LABELS[ri]} ({int(round(rate * 1024))} faulty PEs): done at {time.perf_counter() - T0:.0f} s", flush=True)
print(f"retraining: median {np.median(retrain_s):.1f} s per chip ({EPOCHS} epochs); "
      f"unmitigated chips: {t_none:.1f} s in all")
cost = SPARES.cost(array, 5760, 144, 32, FaultMap.sample(array, rate=0.01, seed=0))
print(f"spares cost on conv2 at 1 %: +{cost.added_bits} register bits ({cost.bits_ratio - 1:.1%}), "
      f"+{cost.added_cycles} cycles ({cost.cycles_ratio - 1:.1%})")


# %% [markdown]
# ## Accuracy against the fraction of faulty PEs

# %%
SCHEMES = ("none", "bypass", "bypass+retrain", "spares")
STYLE = {"none": ("tab:red", "o"), "bypass": ("tab:blue", "s"), "bypass+retrain": ("tab:green", "^"),
         "spares": ("tab:purple", "D")}
BOOT = np.random.default_rng(0)


def mean_ci(v):
    v = np.asarray(v, float)
    if len(v) < 2:
        return v.mean(), v.mean(), v.mean()
    means = v[BOOT.integers(len(v), size=(2000, len(v)))].mean(axis=1)
    return v.mean(), np.quantile(means, 0.025), np.quantile(means, 0.975)


def curve(scheme, fmt, reg):
    out = []
    for rate in RATES:
        v = [r["acc"] for r in rows if r["scheme"] == scheme and r["fmt"] == fmt and r["rate"] == rate
             and r["register"] in (None, reg)]
        out.append(mean_ci(v))
    return np.array(out)


fig, axes = plt.subplots(len(REGISTERS), len(FORMATS), figsize=(4.2 * len(FORMATS), 3.2 * len(REGISTERS)),
                         sharex=True, sharey=True, squeeze=False)
xs = np.arange(len(RATES))  # one slot per point: the single PE and 0.1 % are both one PE of 1024
for i, reg in enumerate(REGISTERS):
    for j, fmt in enumerate(FORMATS):
        ax = axes[i, j]
        for s in SCHEMES:
            c = curve(s, fmt, reg)
            color, marker = STYLE[s]
            ax.plot(xs, c[:, 0], marker=marker, color=color, label=s)
            ax.fill_between(xs, c[:, 1], c[:, 2], color=color, alpha=0.15)
        ax.axhline(FAULT_FREE[fmt], color="gray", ls=":", lw=1)
        ax.set_xticks(xs, LABELS, fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{fmt}, stuck bits in '{reg}'", fontsize=10)
        if i == len(REGISTERS) - 1:
            ax.set_xlabel("faulty PEs (of 1024)")
        if j == 0:
            ax.set_ylabel("accuracy")
axes[0, 0].legend(fontsize=8, loc="lower left")
fig.suptitle(f"CNN on a 32x32 WS array with permanent faults ({CHIPS} chips per point, {IMAGES} images; "
             f"dotted: fault-free)", fontsize=11)
fig.tight_layout()
fig.savefig(FIG / "permanent_faults_accuracy.png", dpi=110)
plt.show()

# %% [markdown]
# ## The numbers
# Per point: the mean accuracy over chips, its 95 % bootstrap interval, and the median chip.

# %%
def median_of(scheme, fmt, reg, rate):
    return float(np.median([r["acc"] for r in rows if r["scheme"] == scheme and r["fmt"] == fmt
                            and r["rate"] == rate and r["register"] in (None, reg)]))


print(f"{'register':8s} {'format':6s} {'scheme':15s} "
      + " ".join(f"{f'{lab}: mean [95 %] median':>31s}" for lab in LABELS))
for reg in REGISTERS:
    for fmt in FORMATS:
        for s in SCHEMES:
            c = curve(s, fmt, reg)
            print(f"{reg:8s} {fmt:6s} {s:15s} " + " ".join(
                f"{m:9.3f} [{lo:.3f}, {hi:.3f}] {median_of(s, fmt, reg, rate):7.3f}"
                for (m, lo, hi), rate in zip(c, RATES)))
print(f"total {time.perf_counter() - T0:.0f} s ({'full' if FULL else 'small'} mode)")

# %% [markdown]
# ## Fault-aware fine-tuning: the fault in the loop
# No hardware change at all: the CNN is fine-tuned on the training split with the faulty
# chip in its forward pass (`models.finetune_on_chip`: every GEMM of every training step
# runs on the chip as it is, through `models.chip_matmul`, a host callback inside the
# jitted step; the backward pass is the JAX bridge's straight-through gradient; a step
# whose gradient is not finite is skipped), then evaluated on the same chip. fp16
# operands; the first `FT_CHIPS` chips of every point above (the same draws, so the
# curves compare chip for chip), with the unmitigated and bypass + retraining results of
# those same chips beside it.

# %%
FT_CHIPS = 5 if FULL else 1
FT_EPOCHS = 3 if FULL else 1
ft_rows = []
t0 = time.perf_counter()
for ri, rate in enumerate(RATES):
    for chip in range(FT_CHIPS):
        seed = 1000 * chip + ri  # the chips of the study above
        for reg in REGISTERS:
            fm = FaultMap.sample(array, rate=rate, seed=seed, registers=reg, input_format="fp16")
            q, _ = models.finetune_on_chip("cnn", params, array, fm, ACC["fp16"], epochs=FT_EPOCHS, seed=chip)
            tq = models.accelerated(cnn.apply, ACC["fp16"]).trace(q, x)
            ft_rows.append(dict(rate=rate, chip=chip, register=reg,
                                acc=accuracy(models.run_on_chip(tq, models.array_gemm(array, fm, ACC["fp16"])))))
print(f"fault-aware fine-tuning: {time.perf_counter() - t0:.0f} s ({FT_CHIPS} chips per point, {FT_EPOCHS} epochs)")


def ft_curve(reg, scheme):
    out = []
    for rate in RATES:
        if scheme == "fault-aware FT":
            v = [r["acc"] for r in ft_rows if r["register"] == reg and r["rate"] == rate]
        else:
            v = [r["acc"] for r in rows if r["scheme"] == scheme and r["fmt"] == "fp16" and r["rate"] == rate
                 and r["register"] in (None, reg) and r["chip"] < FT_CHIPS]
        out.append(mean_ci(v) + (float(np.median(v)),))
    return np.array(out)


FT_SCHEMES = ("none", "bypass+retrain", "fault-aware FT")
STYLE["fault-aware FT"] = ("tab:orange", "v")
fig, axes = plt.subplots(1, len(REGISTERS), figsize=(4.2 * len(REGISTERS), 3.2), sharey=True, squeeze=False)
for j, reg in enumerate(REGISTERS):
    ax = axes[0, j]
    for s in FT_SCHEMES:
        c = ft_curve(reg, s)
        color, marker = STYLE[s]
        ax.plot(xs, c[:, 0], marker=marker, color=color, label=s)
        ax.fill_between(xs, c[:, 1], c[:, 2], color=color, alpha=0.15)
    ax.axhline(FAULT_FREE["fp16"], color="gray", ls=":", lw=1)
    ax.set_xticks(xs, LABELS, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"fp16, stuck bits in '{reg}'", fontsize=10)
    ax.set_xlabel("faulty PEs (of 1024)")
axes[0, 0].set_ylabel("accuracy")
axes[0, 0].legend(fontsize=8, loc="lower left")
fig.suptitle(f"Fault-aware fine-tuning against bypass + retraining ({FT_CHIPS} chips per point, "
             f"{FT_EPOCHS} epochs)", fontsize=11)
fig.tight_layout()
fig.savefig(FIG / "permanent_faults_finetune.png", dpi=110)
plt.show()
print(f"{'register':8s} {'scheme':15s} " + " ".join(f"{f'{lab}: mean [95 %] median':>31s}" for lab in LABELS))
for reg in REGISTERS:
    for s in FT_SCHEMES:
        print(f"{reg:8s} {s:15s} " + " ".join(f"{m:9.3f} [{lo:.3f}, {hi:.3f}] {med:7.3f}"
                                              for m, lo, hi, med in ft_curve(reg, s)))

# %% [markdown]
# ## The transformer workload: MiniLM-L6 retrieval on a faulty chip
# The same 32x32 weight-stationary array and fault model, now running every GEMM of
# all-MiniLM-L6-v2 (`models.minilm_retrieval`: query/passage pairs, each query retrieves
# its passage by cosine similarity among the pairs; texts cut to their first tokens to
# keep the run short), fp16 operands, fp32 accumulation. The metric is top-1 retrieval
# accuracy over the pairs; schemes: none (per register `w`, `a`, `psum`) and bypass (FAP:
# B's elements held by faulty PEs count as zero: weights, or in attention's GEMMs the keys
# and values). Retraining and
# spares are left to the CNN study (retraining a transformer per chip is out of this
# notebook's budget). Skipped, with a message, when the model directory is absent
# (`GEMMFI_MODELS_DIR` or `../shared/models`).

# %%
T_PAIRS, T_TOKENS = (16, 16) if FULL else (4, 8)
T_RATES = (1 / 1024, 0.01) if FULL else (1 / 1024,)
T_CHIPS = 20 if FULL else 1
try:
    _wl = models.minilm_retrieval(n=T_PAIRS)
except FileNotFoundError as e:
    _wl = None
    print("MiniLM-L6 not available, transformer section skipped:", e)
t_rows = []
if _wl is not None:
    t0 = time.perf_counter()
    WLT = models.Workload(_wl.apply, _wl.params,
                          {k: np.ascontiguousarray(np.asarray(v)[..., :T_TOKENS]) for k, v in _wl.inputs.items()},
                          None, "retrieval", f"minilm-{T_PAIRS}x{T_TOKENS}")
    TT = models.accelerated(WLT.apply, ACC["fp16"]).trace(WLT.params, WLT.inputs)
    T_FREE = WLT.correct(TT.outputs) / T_PAIRS
    print(f"MiniLM-L6, {T_PAIRS} pairs x {T_TOKENS} tokens, {len(TT.gemms)} GEMM sites; fault-free top-1 "
          f"{T_FREE:.3f} on the accelerator")
    for rate in T_RATES:
        for chip in range(T_CHIPS):
            seed = 7000 + 1000 * chip + int(round(rate * 1024))
            pes = FaultMap.sample(array, rate=rate, seed=seed)
            t_rows.append(dict(rate=rate, register=None, scheme="bypass",
                               acc=WLT.correct(models.run_on_chip(TT, mitigated(Bypass(), pes))) / T_PAIRS))
            for reg in REGISTERS:
                fm = FaultMap.sample(array, rate=rate, seed=seed, registers=reg, input_format="fp16")
                t_rows.append(dict(rate=rate, register=reg, scheme="none",
                                   acc=WLT.correct(models.run_on_chip(TT, models.array_gemm(array, fm, ACC["fp16"])))
                                   / T_PAIRS))
    print(f"{'scheme':8s} {'register':8s} " + " ".join(
        f"{('1 PE' if r == 1 / 1024 else f'{100 * r:g} %') + ': mean [95 %] median':>31s}" for r in T_RATES))
    for scheme, reg in [("none", r) for r in REGISTERS] + [("bypass", None)]:
        cells = []
        for rate in T_RATES:
            v = [q["acc"] for q in t_rows if q["scheme"] == scheme and q["register"] == reg and q["rate"] == rate]
            m, lo, hi = mean_ci(v)
            cells.append(f"{m:9.3f} [{lo:.3f}, {hi:.3f}] {np.median(v):7.3f}")
        print(f"{scheme:8s} {reg or 'any':8s} " + " ".join(cells))
    print(f"transformer section: {time.perf_counter() - t0:.0f} s ({T_CHIPS} chips per point)")

# %% [markdown]
# ## Reading the curves
#
# (Numbers from the full study above; fault-free accuracy 0.986 in every format.)
#
# * **Unmitigated**, a stuck bit is either harmless (a low mantissa bit) or catastrophic (a
#   high exponent bit): a weight-stationary array reuses every PE for every fold and every
#   image, so one PE with a bad exponent bit corrupts a whole output column of every GEMM
#   (`a`: every column to its right; `w`: the weight of every fold mapped on the PE, which a
#   stuck high exponent bit makes huge). One faulty PE costs little on average (fp16: mean
#   0.92-0.99 over the two single-PE points; the CNN leaves many PEs idle, conv1 uses 9 x 16
#   of them), ten (1 %) cost about half the accuracy on average in every register (fp16
#   means 0.50-0.61, chips anywhere from fault-free to chance), and from 10 % the means are
#   0.09-0.12, around 0.108, the share of the class that all-NaN logits fall to.
# * **Bypass** (FAP) removes the catastrophic outcomes: 0.984 at 1 %, but the pruned weights
#   add up, 0.897 at 10 %, 0.650 at 25 %, 0.224 at 50 % (fp16 means).
# * **Bypass + retraining** (FAP+T) keeps the fault-free accuracy at every rate: 0.985
#   mean, 0.986 median at 50 % in fp16 and bf16 (e4m3: 0.982); at 10-25 % it is even a
#   little above (0.989), the fine-tuning on the training set helping this small CNN.
# * **Spares** (4 columns) restore the result when the faulty columns fit in them: at 1 %
#   (ten faulty PEs in eight or nine of the 32 columns) the median chip is close to fault-free
#   (fp16 `w`: median 0.979 against 0.572 unmitigated) but the mean is not (0.769: the
#   chips whose harmful faults are beyond the spares); from 10 % every column is faulty and
#   spares do nothing.
# * **Fault-aware fine-tuning** (fp16, the first 5 chips of each point, 3 epochs, no hardware
#   change) helps only where the chip's faulty values stay finite and tied to a weight: at
#   1 % faulty PEs, stuck `w` bits go from 0.425 [0.084, 0.782] (median 0.108) to 0.612
#   [0.251, 0.966] (median 0.936), the network re-learning the weights a stuck bit scales;
#   stuck `a` bits barely move (0.436 to 0.461) and `psum` bits not at all (0.324 to 0.305).
#   A stuck high exponent bit gives inf/NaN, whose gradient is not finite: from 10 % on no
#   training step of any of the chips survives and the curves stay at chance (0.105-0.108).
#   Bypass + retraining on the same chips holds 0.986-0.990 at every rate.
# * **Formats**: the fp32 partial-sum register is the same in every format, and so are its
#   curves (1 %: 0.502, 0.515, 0.515). In the operand registers the format matters: at 1 %
#   a stuck `a` bit costs bf16 more than fp16 (0.293 [0.164, 0.440] against 0.609 [0.434,
#   0.774]), consistent with half of bf16's bits being exponent bits (8 of 16, fp16: 5 of
#   16); a stuck `w` bit on a single PE costs e4m3 more than fp16 at 0.1 % (0.852 [0.715,
#   0.973] against 0.986), an e4m3 weight having only 8 bits, 4 of them exponent.
#
# ## Against the published results
#
# **Zhang et al., VTS 2018** (FAP/FAP+T, a 256 x 256 TPU-like weight-stationary array).
# *Agree*: a handful of faulty PEs is enough to wreck an unmitigated array (here ten PEs,
# 1 %, about halve the mean accuracy and 10 % leaves the chips near chance), because a
# weight-stationary PE is reused by every fold; bypass alone degrades as the pruned
# weights add up; and FAP+T holds the fault-free accuracy to 50 % faulty PEs (median drop
# 0.000, mean drop 0.001 in fp16), their "as low as 0.1 %" headline. *Differ*: they see
# the sharp drop at 0.006 % faulty MACs; our smallest point is one PE of 1024 (0.098 %),
# where the mean drop is 0-0.13 by register, format and draw (fp16: 0-0.06). The percentages are not
# comparable: 0.006 % of 65 536 MACs is four MACs, and on our 32 x 32 array a single PE is
# already 0.1 %; in faulty-PE counts, a few PEs (theirs) against about ten (ours) is the
# same picture. Our "faulty PE" is also one stuck bit drawn uniformly over one register's
# width, so many are benign (low mantissa bits) and the chips at a point spread from
# fault-free to chance; and the CNN here is small (a 9 x 16 first layer occupies 14 % of
# the array), so its retraining takes ~4 s a chip where theirs was brought under 12 minutes.
#
# **Ait Alama et al., 2024** (stuck-at bits in inter-PE links and weight registers,
# fp32/fp16/bf16, weight-stationary). *Agree*: our `a` and `psum` registers are the
# links to the right and down, `w` the weight register; stuck bits in each of them are
# catastrophic at a few faulty PEs, and the format changes how much (bf16 against fp16
# for `a` above). *Differ*: their mitigations need no hardware change (invertible
# scaling/shifting of operands, elementary tile operations, fine-tuning with the fault in
# the loop); ours price hardware (a bypass path per PE, spare columns) or prune (FAP+T).
# The one we can run, fault-aware fine-tuning with the chip in the loop (above), partly
# confirms them: it recovers chips whose stuck bits leave finite values (stuck `w` bits at
# 1 %: median chip 0.108 to 0.936), and cannot recover a chip whose stuck exponent bits make
# inf/NaN, which is most chips from 10 % on in our fault model. We also run e4m3 and not
# fp32 operands (accumulation is fp32 in every format).
