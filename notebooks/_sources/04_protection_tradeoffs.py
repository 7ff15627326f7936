# %% [markdown]
# # Protection trade-offs
#
# What each protection scheme (and a few combinations) buys, and what it costs, on a 16x16
# weight-stationary systolic array of scalar binary32 FMA PEs (`systolic_fma`, fp16 inputs)
# running the CNN on the digits test set:
#
# 1. **coverage versus cost**: single-bit register upsets injected into one real GEMM of the
#    CNN (`faults.compare_schemes`), outcome shares against added cycles and register bits;
# 2. **the best scheme per budget**: Pareto fronts of the silent-data-corruption rate against
#    added bits and added cycles;
# 3. **accuracy restored under a fault rate**: a register-level model campaign
#    (`faults.run_model_campaign`) whose faulty tiles are then judged by every protected
#    configuration of the same array, so the model's accuracy under a given upset rate can be
#    read per scheme.
#
# Every rate below comes with its sample size and a 95 % Wilson interval
# (`faults.wilson_interval`). Small mode (the default, for CI) uses few injections; set
# `GEMMFI_FULL=1` for the full-size study.

# %%
import dataclasses
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import faults
import models
import simulator
from protection import Abft, Dmr, Parity, ProtectedArray, RangeCheck, Residue, SecDed

FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
T0 = time.perf_counter()

N_GEMM = 6000 if FULL else 250        # injections per configuration, single-GEMM campaigns
N_MODEL = 40000 if FULL else 1500     # trials of the model campaign
BATCH = 256 if FULL else 64           # evaluation images (first of the digits test split)
N_CLEAN = 16 if FULL else 3           # extra fault-free GEMMs for the false-alarm count
SEED = 6
Z = 1.959963984540054                 # 95 % normal quantile


def wilson(k, n):
    return faults.wilson_interval(k, n, 0.95)


array = simulator.SystolicArray(16, 16, dataflow="ws", profile="systolic_fma")
cnn, params = models.get_model("cnn"), models.load_params("cnn")
x_test, y_test = models.load_digits("test")
x, y = x_test[:BATCH], y_test[:BATCH]
golden_model = models.accelerated(cnn.apply, models.Accelerator("systolic_fma", "fp16")).trace(params, x)
ops = [golden_model.operands(g) for g in range(len(golden_model.gemms))]
logits0 = np.asarray(golden_model.outputs)
acc0 = float((logits0.argmax(-1) == y).mean())
for s in golden_model.gemms:
    print(f"GEMM {s.index}: {s.name:28s} M={s.M:6d} K={s.K:4d} N={s.N:3d}")
print(f"fault-free accuracy on {BATCH} test images (fp16 inputs, fp32 accumulation): {acc0:.4f}")

# range-check bounds are learned on training images (fault-free), never on the test images
x_train = models.load_digits("train")[0][:512]
golden_train = models.accelerated(cnn.apply, models.Accelerator("systolic_fma", "fp16")).trace(params, x_train)
D_TRAIN = [golden_train.operands(g)[2] for g in range(len(golden_train.gemms))]

# the GEMM of the single-GEMM campaigns: the first 256 rows (16 images) of conv2 (im2col)
A2, B2, D2 = ops[1]
A, B = np.ascontiguousarray(A2[0, :256]), np.ascontiguousarray(B2[0])
clean = tuple((np.ascontiguousarray(A2[0, 256 * (i + 1):256 * (i + 2)]), B) for i in range(N_CLEAN)
              if 256 * (i + 2) <= A2.shape[1])
print("campaign GEMM: conv2 rows 0..255,", A.shape, "@", B.shape, f"; {len(clean)} extra fault-free GEMMs")

# %% [markdown]
# ## The configurations
# Single schemes, each with the action that restores the output when it can (`recompute`
# the tile, SEC-DED's and ABFT's own correction), and combinations. The range check's bound
# is learned from the layer's fault-free outputs on 512 *training* images
# (`RangeCheck.profile`, one binade of slack), so the false alarms counted on the test
# images are out of sample; in the model campaign each layer gets its own bound. One code per
# register: a combination puts different codes on different registers.

# %%
def range_for(d, action="recompute"):
    return RangeCheck.profile([d], slack=1, action=action)


def configs(rc):
    """label -> tuple of schemes; ``rc`` is the layer's profiled range check."""
    aw = Parity(("a", "w"), "recompute")
    return {
        "none": (),
        "parity(psum)": (Parity(("psum",), "recompute"),),
        "parity(a,w,psum)": (Parity(("a", "w", "psum"), "recompute"),),
        "sec-ded(psum)": (SecDed(("psum",), "recompute"),),
        "sec-ded(a,w,psum)": (SecDed(("a", "w", "psum"), "recompute"),),
        "residue-3": (Residue(2, action="recompute"),),
        "residue-7": (Residue(3, action="recompute"),),
        "residue-15": (Residue(4, action="recompute"),),
        "abft": (Abft(action="correct"),),
        "range-recompute": (rc,),
        "range-clamp": (RangeCheck(rc.max_exp, "clamp"),),
        "dmr": (Dmr("recompute"),),
        "range+parity(a,w)": (rc, aw),
        "range+sec-ded(psum)": (rc, SecDed(("psum",), "recompute")),
        "abft+sec-ded(psum)": (Abft(action="correct"), SecDed(("psum",), "recompute")),
        "sec-ded(psum)+parity(a,w)": (SecDed(("psum",), "recompute"), aw),
        "dmr+parity(a,w)": (Dmr("recompute"), aw),
    }


RC = range_for(D_TRAIN[1])
CONFIGS = configs(RC)
print("range bound of conv2:", RC)
M_, K_, N_ = A.shape[0], A.shape[1], B.shape[1]
print(f"{'configuration':28s} {'added cycles':>14s} {'added bits':>16s}   (GEMM {M_}x{K_}x{N_})")
for name, sch in CONFIGS.items():
    c = ProtectedArray(array, sch).cost(M_, K_, N_)
    print(f"{name:28s} {c.added_cycles:6d} ({100 * (c.cycles_ratio - 1):5.2f} %) "
          f"{c.added_bits:7d} ({100 * (c.bits_ratio - 1):5.1f} %)")

# %% [markdown]
# ## Coverage versus cost
# `N_GEMM` single-bit transient flips per configuration, drawn uniformly over that
# configuration's fault sites (datapath registers *and* the schemes' check bits, duplicates,
# flags and checksum registers) x bits x live cycles, all sharing one golden run.
#
# A protected array has more bits to upset. To compare configurations under one physical
# upset rate, the SDC share is also given per upset in the *unprotected* array's live bits:
# `SDC share x (live sites of the configuration / live sites unprotected)`.

# %%
t = time.perf_counter()
schemes = [CONFIGS[k] for k in CONFIGS if k != "none"]
results = faults.compare_schemes(array, schemes, A, B, n=N_GEMM, seed=SEED, clean=clean)
# CampaignResult.scheme is the schemes' joined names ("parity" for every parity variant): relabel
results = [dataclasses.replace(r, scheme=name) for name, r in zip(CONFIGS, results)]
RES = dict(zip(CONFIGS, results))
base = RES["none"]
print(f"{len(results)} campaigns x {N_GEMM} injections in {time.perf_counter() - t:.1f} s\n")
print(faults.coverage_table(results))

base_regs = {"a", "w", "psum"}
ROWS = {}
print(f"\n{'configuration':28s} {'SDC share [95% CI]':>24s} {'SDC per base upset [95% CI]':>30s}"
      f" {'false alarms':>13s} {'SDC from added sites':>21s}")
for name, r in RES.items():
    k = r.counts["sdc"]
    lo, hi = wilson(k, r.n)
    scale = r.sites / base.sites
    added_sdc = sum(v["sdc"] for reg, v in r.by_register.items() if reg not in base_regs)
    ROWS[name] = dict(sdc=k / r.n, lo=lo, hi=hi, rate=k / r.n * scale, rate_lo=lo * scale, rate_hi=hi * scale,
                      bits=r.bits_ratio - 1, cycles=r.cycles_ratio - 1, added_sdc=added_sdc,
                      fa=r.false_alarms, clean=r.clean_runs)
    print(f"{name:28s} {k / r.n:7.3f} [{lo:.3f}, {hi:.3f}]   {k / r.n * scale:9.3f} [{lo * scale:.3f}, "
          f"{hi * scale:.3f}]   {r.false_alarms:5d}/{r.clean_runs:<5d} {added_sdc:12d}")
print("\nfalse alarms over all configurations:", sum(v["fa"] for v in ROWS.values()),
      "; SDCs caused by faults in added sites:", sum(v["added_sdc"] for v in ROWS.values()))

# %%
names = list(RES)
fig, ax = plt.subplots(figsize=(10, 4.2))
bottom = np.zeros(len(names))
colors = {"masked": "#bbbbbb", "corrected": "#4c9a2a", "detected": "#e0a526", "sdc": "#c0392b"}
for oc in ("masked", "corrected", "detected", "sdc"):
    v = np.array([RES[n].fraction(oc) for n in names])
    ax.bar(range(len(names)), v, bottom=bottom, color=colors[oc], label=oc, width=0.75)
    bottom += v
sdc = np.array([ROWS[n]["sdc"] for n in names])
err = np.array([[ROWS[n]["sdc"] - ROWS[n]["lo"] for n in names], [ROWS[n]["hi"] - ROWS[n]["sdc"] for n in names]])
ax.errorbar(np.arange(len(names)), 1 - sdc, yerr=err[::-1], fmt="none", ecolor="k", capsize=2, lw=0.8)
ax.set_xticks(range(len(names)))
ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
ax.set_ylabel("share of injected upsets")
ax.set_ylim(0, 1)
ax.set_title(f"Outcomes of {N_GEMM} single-bit upsets per configuration "
             f"(16x16 ws array, conv2 GEMM {M_}x{K_}x{N_}; bars: 95 % CI of SDC)", fontsize=9)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
fig.tight_layout()
fig.savefig(FIG / "protection_coverage.png", dpi=110)

# %% [markdown]
# ## The best scheme per budget
# A configuration is on the Pareto front when no other one has at most its added bits (or
# cycles) and a lower SDC rate per base upset. The budget table names, for each budget, the
# configuration with the lowest measured rate among those within it, and every other one
# whose 95 % interval overlaps the winner's (statistically tied at this sample size).


# %%
def pareto(rows, cost):
    """Names on the front of (cost, rate): sorted by cost, strictly decreasing rate."""
    front, best = [], np.inf
    for n in sorted(rows, key=lambda n: (rows[n][cost], rows[n]["rate"])):
        if rows[n]["rate"] < best:
            front.append(n)
            best = rows[n]["rate"]
    return front


def budget_table(rows, cost, budgets, label, digits=3):
    print(f"best configuration per budget of {label} (rate = SDC per base upset):")
    out = {}
    for b in budgets:
        within = [n for n in rows if rows[n][cost] <= b + 1e-12]
        win = min(within, key=lambda n: (rows[n]["rate"], rows[n][cost]))
        tied = [n for n in within if n != win and rows[n]["rate_lo"] <= rows[win]["rate_hi"]]
        out[b] = (win, tied)
        w = rows[win]
        print(f"  <= {100 * b:5.1f} %: {win:28s} {w['rate']:.{digits}f} [{w['rate_lo']:.{digits}f}, "
              f"{w['rate_hi']:.{digits}f}]"
              f"   tied: {', '.join(tied) if tied else '-'}")
    return out


FRONT_BITS, FRONT_CYC = pareto(ROWS, "bits"), pareto(ROWS, "cycles")
print("Pareto front, SDC vs added bits:  ", " -> ".join(FRONT_BITS))
print("Pareto front, SDC vs added cycles:", " -> ".join(FRONT_CYC), "\n")
BUD_BITS = budget_table(ROWS, "bits", (0.0, 0.01, 0.05, 0.10, 0.20, 0.40, 0.60), "added register bits")
BUD_CYC = budget_table(ROWS, "cycles", (0.0, 0.005, 0.01, 0.05, 0.10), "added cycles")

# %% [markdown]
# ## Accuracy restored under a fault rate
# A register-level campaign on the CNN (`faults.ModelCampaign`: upsets uniform over the
# model's output tiles x registers `a`, `w`, `psum` x bits x PEs x cycles of each tile's run on
# the 16x16 array). Each trial's faulty tile is then re-judged by every configuration of the
# same array on the same fault (`ProtectedArray.evaluator` on the tile's golden run): a tile a
# scheme restores costs no accuracy; a tile it leaves as it was keeps the campaign's measured
# effect; a tile it changes otherwise (a clamp) is propagated through the rest of the model.
# Faults in the schemes' own added bits are not drawn here: the single-GEMM campaigns above
# count how many of those ever reached D.
#
# The detector hook of `ModelCampaign` (`detector="module:function"`) cross-checks the
# re-judging: a second campaign with the hook running one configuration must flag exactly
# the trials the re-judging says that configuration alarms on.

# %%
tmp = Path(tempfile.mkdtemp(prefix="gemmfi_nb04_"))
camp = faults.ModelCampaign(model="cnn", array=array, formats=("fp16",), batch=BATCH, trials=N_MODEL, seed=SEED)
t = time.perf_counter()
run = faults.run_model_campaign(camp, tmp / "model.db", executor="serial")
with faults.ResultStore.open(tmp / "model.db") as store:
    trials = [r._asdict() for r in store.rows()]
POP = faults.site_space(camp).strata[0].population
print(f"model campaign: {run.done} trials in {time.perf_counter() - t:.1f} s (fault space: {POP} sites)")
CNT = {}
for tr in trials:
    CNT[tr["outcome"]] = CNT.get(tr["outcome"], 0) + 1
print("unprotected outcomes:", CNT)
RC_LAYER = [range_for(d) for d in D_TRAIN]
print("per-layer range bounds (max_exp):", [r.max_exp for r in RC_LAYER])


def tile_of(tr):
    a, b, _ = ops[tr["gemm"]]
    r0, c0 = tr["row0"], tr["col0"]
    return (np.ascontiguousarray(a[tr["grp"], r0:r0 + tr["rows"]]),
            np.ascontiguousarray(b[tr["grp"], :, c0:c0 + tr["cols"]]))


def fault_of(tr):
    return faults.Fault((tr["pe_row"], tr["pe_col"]), tr["register"], tr["bit"], tr["cycle"])


def propagate(tr, tile):
    f = models.ReplaceTile(tr["gemm"], (tr["row0"], tr["row0"] + tr["rows"]), (tr["col0"], tr["col0"] + tr["cols"]),
                           lambda *_: tile, tr["grp"])
    lg = np.asarray(golden_model.inject([f]))
    top1 = int((lg.argmax(-1) != logits0.argmax(-1)).sum())
    delta = int((lg.argmax(-1) == y).sum()) - int((logits0.argmax(-1) == y).sum())
    return top1, delta


t = time.perf_counter()
LAYER_CONFIGS = [configs(rc) for rc in RC_LAYER]
# per configuration: images whose top-1 changed, change in correct predictions, alarm raised
judged = {n: np.zeros((len(trials), 3), np.int64) for n in CONFIGS}
n_prop = n_diff = mismatch = 0
clean_alarms = dict.fromkeys(CONFIGS, 0)
for i, tr in enumerate(trials):
    if tr["tile_diff"] == 0:
        continue  # the faulty tile equals the golden one: masked for every configuration
    n_diff += 1
    a, b = tile_of(tr)
    g = array.golden(a, b, np.zeros((a.shape[0], b.shape[1]), np.float32))
    f = fault_of(tr)
    faulty = None
    for name, sch in LAYER_CONFIGS[tr["gemm"]].items():
        ev = ProtectedArray(array, sch).evaluator(g)
        clean_alarms[name] += bool(ev.false_alarms)
        res = ev.evaluate((f,))
        out = res.output.view(np.uint32)
        if name == "none":
            faulty = out
            mismatch += int((out != g.output.view(np.uint32)).sum()) != tr["tile_diff"]
        if np.array_equal(out, g.output.view(np.uint32)):
            top1, delta = 0, 0
        elif np.array_equal(out, faulty):
            top1, delta = tr["top1_changed"], tr["correct_delta"]
        else:
            top1, delta = propagate(tr, res.output)
            n_prop += 1
        judged[name][i] = (top1, delta, bool(res.alarms))
print(f"re-judged {n_diff} trials with a corrupted tile x {len(CONFIGS)} configurations in "
      f"{time.perf_counter() - t:.1f} s ({n_prop} clamped tiles propagated); unprotected re-runs that differ from "
      f"the campaign's tile: {mismatch}")
assert mismatch == 0
print("false alarms on the fault-free runs of those tiles:", {k: v for k, v in clean_alarms.items() if v} or 0)

# %%
# cross-check through the campaign's detector hook: one configuration, the first trials
CHECK = "sec-ded(psum)+parity(a,w)"


def _detect(tc):
    sch = LAYER_CONFIGS[tc.site.gemm][CHECK]
    g = array.golden(tc.a, tc.b, np.zeros(tc.d.shape, tc.d.dtype))
    f = faults.Fault(tc.site.pe, tc.site.register, tc.site.bit, tc.site.cycle)
    return bool(ProtectedArray(array, sch).evaluator(g).evaluate((f,)).alarms)


sys.modules["nb04_detectors"] = types.SimpleNamespace(detect=_detect)  # importable by name in this process
n_check = min(len(trials), 3000 if FULL else 300)
hooked = camp.with_(detector="nb04_detectors:detect")
faults.run_model_campaign(hooked, tmp / "hooked.db", executor="serial", max_trials=n_check)
with faults.ResultStore.open(tmp / "hooked.db") as store:
    hk = {r.trial: r.outcome for r in store.rows()}


def alarm_from_row(tr):
    """The configuration's alarm re-judged from the stored trial row (not the hook's view)."""
    if tr["tile_diff"] > 0:
        return bool(judged[CHECK][tr["trial"], 2])
    a, b = tile_of(tr)
    g = array.golden(a, b, np.zeros((a.shape[0], b.shape[1]), np.float32))
    return bool(ProtectedArray(array, LAYER_CONFIGS[tr["gemm"]][CHECK]).evaluator(g).evaluate((fault_of(tr),)).alarms)


agree = sum((hk[i] == "detected") == alarm_from_row(trials[i]) for i in hk)
print(f"detector hook ({CHECK}) on the first {len(hk)} trials: flagged {sum(v == 'detected' for v in hk.values())}; "
      f"agrees with the re-judging on {agree} of {len(hk)} trials")
assert agree == len(hk)

# %% [markdown]
# Per configuration: the share of upsets that change some image's top-1 prediction
# (critical), with its Wilson interval, and the mean change in correct predictions per upset
# (normal-approximation interval, widened to at least the Wilson upper bound of the critical
# share times the mean correct predictions lost per critical upset of the unprotected array,
# so a configuration with no critical trial still gets an honest band). With `lam` upsets
# per image inference (`lam * BATCH` per batch run, each landing uniformly in the batch's
# fault space, rare enough not to interact) the expected accuracy is `acc0 + lam * mean_delta`.
# The share of the unprotected loss a configuration restores is given with the range that
# the two mean intervals allow.

# %%
n = len(trials)
ACC = {}
crit0 = judged["none"][:, 0] > 0
LOSS_PER_CRIT = float(-judged["none"][crit0, 1].mean()) if crit0.any() else 1.0
print(f"correct predictions lost per critical upset, unprotected: {LOSS_PER_CRIT:.2f} ({int(crit0.sum())} trials)")
for reg in ("a", "w", "psum"):
    sel = np.array([tr["register"] == reg for tr in trials])
    k = int((crit0 & sel).sum())
    print(f"  unprotected critical upsets in register {reg:4s}: {k:4d} of {int(sel.sum())} trials "
          f"({k / max(1, sel.sum()):.4%}, 95% CI {wilson(k, int(sel.sum()))[0]:.4%}..{wilson(k, int(sel.sum()))[1]:.4%})")
print(f"{n} trials; fault space {POP} sites for {BATCH} images\n")
print(f"{'configuration':28s} {'critical':>8s} {'share [95% CI]':>24s} {'mean delta correct / upset [95% CI]':>40s}")
for name in CONFIGS:
    top1, delta = judged[name][:, 0], judged[name][:, 1]
    k = int((top1 > 0).sum())
    lo, hi = wilson(k, n)
    m, s = float(delta.mean()), float(delta.std(ddof=1)) if n > 1 else 0.0
    mlo = min(m - Z * s / np.sqrt(n), -hi * max(LOSS_PER_CRIT, 0.0))
    mhi = m + Z * s / np.sqrt(n)
    ACC[name] = dict(k=k, p=k / n, lo=lo, hi=hi, mean=m, mlo=mlo, mhi=mhi,
                     bits=ROWS[name]["bits"], cycles=ROWS[name]["cycles"])
    print(f"{name:28s} {k:8d} {k / n:8.5f} [{lo:.5f}, {hi:.5f}]   {m:+.5f} [{mlo:+.5f}, {mhi:+.5f}]")

loss0 = -ACC["none"]["mean"]
LAM_MAX = 0.25 / loss0 if loss0 > 0 else 100.0   # where the unprotected array loses ~25 points
LAM = np.linspace(0, LAM_MAX, 50)
print(f"\nupset rate axis: 0 .. {LAM_MAX:.1f} upsets per image inference "
      f"(= {LAM_MAX * BATCH / POP:.2e} per register bit per cycle)")
lam_ref = LAM_MAX / 2
print(f"at {lam_ref:.1f} upsets per image: unprotected accuracy {acc0 + lam_ref * ACC['none']['mean']:.4f} "
      f"(fault-free {acc0:.4f})")
u = ACC["none"]
for name in list(CONFIGS)[1:]:
    a = ACC[name]
    if u["mean"] < 0 and u["mhi"] < 0:
        a["restored"] = 1 - a["mean"] / u["mean"]
        a["restored_lo"] = 1 - min(-a["mlo"] / -u["mhi"], 1e9)
        a["restored_hi"] = min(1.0, 1 - (-a["mhi"]) / -u["mlo"])
    else:  # the unprotected loss is not significantly above zero at this n
        a["restored"] = a["restored_lo"] = a["restored_hi"] = float("nan")
    print(f"  {name:28s} accuracy {acc0 + lam_ref * a['mean']:.4f} "
          f"[{acc0 + lam_ref * a['mlo']:.4f}, {min(1, acc0 + lam_ref * a['mhi']):.4f}]  share of the loss restored "
          f"{a['restored']:6.1%} [{a['restored_lo']:.0%}, {a['restored_hi']:.0%}]")

# %%
show = ["none", "range-clamp", "range-recompute", "parity(psum)", "sec-ded(psum)", "abft", "dmr",
        "sec-ded(psum)+parity(a,w)"]
fig, ax = plt.subplots(figsize=(7.5, 4.2))
for q, name in enumerate(show):
    a = ACC[name]
    line, = ax.plot(LAM, acc0 + LAM * a["mean"], ls=("-", "--", "-.", ":")[q % 4], lw=1.6,
                    label=f"{name} (+{100 * a['bits']:.1f} % bits)")
    ax.fill_between(LAM, acc0 + LAM * a["mlo"], np.minimum(1, acc0 + LAM * a["mhi"]), color=line.get_color(),
                    alpha=0.08, lw=0)
ax.axhline(acc0, color="k", lw=0.6, ls=":")
ax.set_xlabel("register upsets per image inference")
ax.set_ylabel(f"expected top-1 accuracy ({BATCH} test images)")
ax.set_title(f"CNN on a 16x16 array under upsets ({n} trials; bands: 95 % CI; coinciding lines overlap)",
             fontsize=9)
ax.legend(fontsize=7, loc="lower left")
fig.tight_layout()
fig.savefig(FIG / "protection_accuracy.png", dpi=110)

# %% [markdown]
# ## Pareto fronts for both failure definitions
# Left and middle: bitwise SDC of the GEMM (any output bit wrong) per base upset against
# added bits and added cycles. Right: critical SDC of the model (a top-1 prediction changed)
# per base upset against added bits. The front is drawn through the configurations that no
# other one beats on both axes.

# %%
MROWS = {k: dict(rate=v["p"], rate_lo=v["lo"], rate_hi=v["hi"], bits=v["bits"], cycles=v["cycles"])
         for k, v in ACC.items()}
FRONT_MODEL = pareto(MROWS, "bits")
print("Pareto front, critical SDC vs added bits:", " -> ".join(FRONT_MODEL), "\n")
BUD_MODEL = budget_table(MROWS, "bits", (0.0, 0.01, 0.05, 0.10, 0.20, 0.40, 0.60), "added bits (critical SDC)", digits=5)

fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
ids = {nm: q + 1 for q, nm in enumerate(CONFIGS)}
panels = [(ROWS, "bits", FRONT_BITS, "bitwise SDC per base upset (GEMM)"),
          (ROWS, "cycles", FRONT_CYC, "bitwise SDC per base upset (GEMM)"),
          (MROWS, "bits", FRONT_MODEL, "critical SDC per base upset (CNN)")]
for ax, (rows, cost, front, ylab) in zip(axes, panels):
    for nm, r in rows.items():
        xv = 100 * r[cost]
        ax.errorbar(xv + 0.01, r["rate"], yerr=[[r["rate"] - r["rate_lo"]], [r["rate_hi"] - r["rate"]]], fmt="o",
                    ms=4, color="tab:red" if nm in front else "tab:blue", capsize=2, lw=0.8)
        ax.annotate(nm if nm in front else str(ids[nm]), (xv + 0.01, r["rate"]), fontsize=7 if nm in front else 6,
                    xytext=(3, 3 + 7 * ((ids[nm] % 3) if nm not in front else front.index(nm) % 2)),
                    textcoords="offset points",
                    color="tab:red" if nm in front else "k")
    fx = [100 * rows[nm][cost] + 0.01 for nm in front]
    ax.step(fx, [rows[nm]["rate"] for nm in front], where="post", color="tab:red", lw=1, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel(f"added {'register bits' if cost == 'bits' else 'cycles'} (% of unprotected, +0.01)")
    ax.set_ylabel(ylab)
axes[0].set_title(f"{N_GEMM} upsets per configuration", fontsize=9)
axes[1].set_title("red: Pareto front", fontsize=9)
axes[2].set_title(f"{n} model-campaign trials", fontsize=9)
items = [f"{q}: {nm}" for nm, q in ids.items()]
key = "   ".join(items[:9]) + "\n" + "   ".join(items[9:])
fig.text(0.5, 0.01, key, ha="center", fontsize=7, wrap=True)
fig.tight_layout(rect=(0, 0.07, 1, 1))
fig.savefig(FIG / "protection_pareto.png", dpi=110)

# %% [markdown]
# ## What the numbers say
# The statements below are computed from the tables above (re-run the notebook and they
# follow the numbers).

# %%
def tied(rows, a, b):
    return rows[a]["rate_lo"] <= rows[b]["rate_hi"] and rows[b]["rate_lo"] <= rows[a]["rate_hi"]


zero_sdc = [k for k, v in ROWS.items() if v["sdc"] == 0]
cheapest_zero = min(zero_sdc, key=lambda k: ROWS[k]["bits"]) if zero_sdc else None
print(f"- Unprotected, {ROWS['none']['sdc']:.1%} of upsets in the GEMM's live register bits give a bitwise SDC "
      f"(95% CI {ROWS['none']['lo']:.1%}..{ROWS['none']['hi']:.1%}, n={N_GEMM}).")
if cheapest_zero:
    print(f"- No SDC in {N_GEMM} upsets for: {', '.join(zero_sdc)} (upper 95% bound {ROWS[cheapest_zero]['hi']:.2%} "
          f"of upsets each); the cheapest of them in bits is {cheapest_zero} "
          f"(+{100 * ROWS[cheapest_zero]['bits']:.1f} % bits, +{100 * ROWS[cheapest_zero]['cycles']:.2f} % cycles).")
for sch in ("range-recompute", "abft", "dmr", "sec-ded(psum)", "parity(psum)"):
    r = ROWS[sch]
    print(f"- {sch}: bitwise SDC {r['sdc']:.1%} [{r['lo']:.1%}, {r['hi']:.1%}] for +{100 * r['bits']:.1f} % bits; "
          f"critical SDC {ACC[sch]['p']:.3%} [{ACC[sch]['lo']:.3%}, {ACC[sch]['hi']:.3%}] "
          f"vs {ACC['none']['p']:.3%} unprotected"
          + (" (intervals overlap: not distinguishable at this n)" if tied(MROWS, sch, "none") else "") + ".")
print(f"- Faults in the schemes' own bits caused {sum(v['added_sdc'] for v in ROWS.values())} SDCs; "
      f"false alarms on fault-free GEMMs: {sum(v['fa'] for v in ROWS.values())} "
      f"over {sum(v['clean'] for v in ROWS.values())} checks.")
for b, (win, tie) in BUD_BITS.items():
    if b in (0.01, 0.05, 0.20):
        print(f"- Bits budget {100 * b:.0f} %: lowest bitwise SDC with {win}"
              + (f" (tied within 95% CIs: {', '.join(tie)})" if tie else "") + "; "
              f"lowest critical SDC with {BUD_MODEL[b][0]}"
              + (f" (tied: {', '.join(BUD_MODEL[b][1])})" if BUD_MODEL[b][1] else "") + ".")
print(f"- At {lam_ref:.1f} upsets per image inference the unprotected CNN's expected accuracy is "
      f"{acc0 + lam_ref * ACC['none']['mean']:.3f} (fault-free {acc0:.3f}); restored shares of that loss: "
      + ", ".join(f"{k} {ACC[k]['restored']:.0%} [{ACC[k]['restored_lo']:.0%}, {ACC[k]['restored_hi']:.0%}]"
                  for k in show[1:]) + ".")
print(f"\nnotebook run time: {time.perf_counter() - T0:.0f} s ({'full' if FULL else 'small'} mode)")

# %% [markdown]
# Reading the study. Which registers a scheme covers decides its bitwise coverage: every
# register of this PE (`a`, `w`, `psum`) holds a share of the live bits, so a scheme on
# `psum` alone leaves the operand registers' share as SDC, and DMR, which duplicates only
# the accumulator path, misses faults in the shared operands; covering the operands with
# parity closes that gap (the added bits are in the cost table). The range check and ABFT
# only see errors large enough to leave the profiled range or exceed the rounding bound,
# so they leave the small errors as bitwise SDCs; whether that matters for the model is what
# the critical-SDC column and the right-hand Pareto panel show, and how the two rankings
# compare is read from the budget tables printed above, with their intervals.
