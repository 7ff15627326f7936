# %% [markdown]
# # PE-array sizes
#
# How the shape of the matrix unit changes (1) the time the models' GEMMs take and how
# much of the array they keep busy, and (2) how vulnerable the computation is to a
# single-bit upset in a PE register.  Three array kinds: weight-stationary (`ws`) and
# output-stationary (`os`) systolic arrays of scalar binary32-FMA PEs (`systolic_fma`),
# and a weight-stationary tensor-core array (`tc`) of 16-wide dot-product units
# (`hopper` fp16 rule).  Inputs fp16, accumulation fp32 throughout.
#
# **Assumptions** (the cycle counts are the simulator's closed forms, checked against the
# cycle-level kernels by the tests): a 1 GHz clock (1 cycle = 1 ns; a TPU v1 ran at
# 700 MHz, an H100 boosts to about 1.8 GHz: scale the latencies by 1/f); compute-bound
# (operands always there, no memory stalls); folds and layers run back to back with no
# overlap; every GEMM group (e.g. one attention head of one image) is its own run;
# everything that is not a GEMM is free.  Set `GEMMFI_FULL=1` for a 256-image batch,
# more array shapes and campaigns sized by the sample-size formula (1 % margin).

# %%
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import faults
import simulator
from models import MODELS, Accelerator, accelerated, get_model, load_digits, load_params

T0 = time.perf_counter()
FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
# small mode: a fresh scratch database per run; full mode: resumable results next to the notebook
DB = Path("results/02_pe_array_sizes") if FULL else Path(tempfile.mkdtemp(prefix="gemmfi_02_"))
DB.mkdir(parents=True, exist_ok=True)
BATCH = 256 if FULL else 64
CLOCK_HZ = 1.0e9
FMT, ACC = "fp16", "fp32"
SIZES = (4, 8, 16, 32, 64, 128)
SHAPES = [(r, c) for r in SIZES for c in SIZES]  # square and rectangular
KINDS = ("ws", "os", "tc")
LABEL = {"ws": "systolic WS (FMA PEs)", "os": "systolic OS (FMA PEs)", "tc": "tensor-core WS (16-wide DPUs)"}
COLOR = {"ws": "tab:blue", "os": "tab:orange", "tc": "tab:green"}


def make(kind, r, c):
    return simulator.TensorCoreArray(r, c, profile="hopper") if kind == "tc" else simulator.SystolicArray(r, c, dataflow=kind)


LANES = {"ws": 1, "os": 1, "tc": simulator.get_profile("hopper").rule(FMT).k}  # MACs per PE per cycle
x = load_digits("test")[0][:BATCH]
GEMMS = {m: accelerated(get_model(m).apply, Accelerator("hopper", FMT, ACC)).gemms(load_params(m), x) for m in MODELS}
for m, gs in GEMMS.items():
    print(f"{m}: {len(gs)} GEMMs on a batch of {BATCH} images, {sum(g.macs for g in gs):,} MACs")
    for g in gs:
        print(f"   {g.name:<45} groups={g.groups:<4} M={g.M:<5} K={g.K:<4} N={g.N}")

# %% [markdown]
# ## Cycles, utilisation and latency
# For every GEMM of every model and every array shape from 4x4 to 128x128 (36 shapes, square
# and rectangular): cycles = groups x `array.cycles(M, K, N)`; utilisation = MACs /
# (PEs x MACs per PE per cycle x cycles) (a tensor-core unit does 16 MACs a cycle, a
# scalar PE one); latency = cycles / clock.

# %%
def short(name):
    return (name.replace("/dot_general", "").replace("/conv_general_dilated", "")
            .replace("attn/bthd,bshd->bhts", "attn.scores").replace("attn/bhts,bshd->bthd", "attn.mix"))


perf, layer_util = {}, {}
for m, gs in GEMMS.items():
    macs = sum(g.macs for g in gs)
    for kind in KINDS:
        for r, c in SHAPES:
            arr = make(kind, r, c)
            cyc = 0
            for g in gs:
                cg = g.groups * arr.cycles(g.M, g.K, g.N, FMT)
                layer_util[(m, g.index, kind, r, c)] = g.macs / (r * c * LANES[kind] * cg)
                cyc += cg
            perf[(m, kind, r, c)] = dict(cycles=cyc, util=macs / (r * c * LANES[kind] * cyc),
                                         latency_us=cyc / CLOCK_HZ * 1e6, lanes=r * c * LANES[kind])

print(f"{'model':<12}{'array':<5}{'shape':>9}{'MAC lanes':>11}{'cycles':>12}{'util %':>9}{'latency us':>12}")
for m in MODELS:
    for kind in KINDS:
        for r, c in [(s, s) for s in SIZES] + [(8, 128), (128, 8)]:
            p = perf[(m, kind, r, c)]
            print(f"{m:<12}{kind:<5}{f'{r}x{c}':>9}{p['lanes']:>11}{p['cycles']:>12,}{100 * p['util']:>9.2f}"
                  f"{p['latency_us']:>12.1f}")

# %%
fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 4), sharey=False)
for ax, m in zip(axes, MODELS):
    for kind in KINDS:
        sq = [perf[(m, kind, s, s)] for s in SIZES]
        ax.plot([p["lanes"] for p in sq], [p["latency_us"] for p in sq], "-o", color=COLOR[kind], label=LABEL[kind] + ", square")
        rect = [perf[(m, kind, r, c)] for r, c in SHAPES if r != c]
        ax.scatter([p["lanes"] for p in rect], [p["latency_us"] for p in rect], s=14, facecolors="none",
                   edgecolors=COLOR[kind], label="rectangular" if kind == "tc" else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("MAC lanes (PEs x MACs per PE per cycle)")
    ax.set_ylabel(f"latency of one batch (us at {CLOCK_HZ / 1e9:g} GHz)")
    ax.set_title(f"{m}, batch {BATCH}, fp16")
    ax.grid(alpha=0.3, which="both")
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIG / "pe_array_latency.png", dpi=110)

fig, axes = plt.subplots(len(MODELS), len(KINDS), figsize=(4.2 * len(KINDS), 3.6 * len(MODELS)))
for i, m in enumerate(MODELS):
    for j, kind in enumerate(KINDS):
        ax = axes[i, j]
        u = np.array([[100 * perf[(m, kind, r, c)]["util"] for c in SIZES] for r in SIZES])
        im = ax.imshow(u, cmap="viridis", vmin=0, vmax=100, origin="lower")
        for a in range(len(SIZES)):
            for b in range(len(SIZES)):
                ax.text(b, a, f"{u[a, b]:.0f}" if u[a, b] >= 1 else f"{u[a, b]:.1f}", ha="center", va="center",
                        fontsize=7, color="w" if u[a, b] < 60 else "k")
        ax.set_xticks(range(len(SIZES)), SIZES)
        ax.set_yticks(range(len(SIZES)), SIZES)
        ax.set_xlabel("array cols")
        if j == 0:
            ax.set_ylabel("array rows")
        ax.set_title(f"{m}: {kind} utilisation %", fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.6, label="utilisation %")
fig.savefig(FIG / "pe_array_utilization.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## Per layer
# Utilisation of every GEMM (rows) on square arrays and two rectangular ones (columns).

# %%
LSHAPES = [(s, s) for s in SIZES] + [(8, 128), (128, 8)]
rows = [(m, g) for m in MODELS for g in GEMMS[m]]
fig, axes = plt.subplots(1, len(KINDS), figsize=(4.3 * len(KINDS), 0.28 * len(rows) + 1.6), sharey=True)
for ax, kind in zip(axes, KINDS):
    u = np.array([[100 * layer_util[(m, g.index, kind, r, c)] for r, c in LSHAPES] for m, g in rows])
    ax.imshow(u, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for a in range(u.shape[0]):
        for b in range(u.shape[1]):
            ax.text(b, a, f"{u[a, b]:.0f}", ha="center", va="center", fontsize=6, color="w" if u[a, b] < 60 else "k")
    ax.set_xticks(range(len(LSHAPES)), [f"{r}x{c}" for r, c in LSHAPES], rotation=60, fontsize=7)
    ax.set_title(f"{kind}: utilisation % per GEMM", fontsize=9)
axes[0].set_yticks(range(len(rows)), [f"{m}: {short(g.name)} ({g.M}x{g.K}x{g.N})" for m, g in rows], fontsize=7)
fig.tight_layout()
fig.savefig(FIG / "pe_array_layers.png", dpi=100)

for m in MODELS:
    for kind in KINDS:
        best = min(SHAPES, key=lambda s: perf[(m, kind, *s)]["latency_us"])
        best_sq_4k = min([s for s in SHAPES if s[0] * s[1] * LANES[kind] <= 4096],
                         key=lambda s: perf[(m, kind, *s)]["latency_us"])
        us = [100 * perf[(m, kind, s, s)]["util"] for s in SIZES]
        print(f"{m:<12}{kind}: fastest shape {best[0]}x{best[1]} ({perf[(m, kind, *best)]['latency_us']:.1f} us, "
              f"util {100 * perf[(m, kind, *best)]['util']:.1f} %); fastest within 4096 MAC lanes "
              f"{best_sq_4k[0]}x{best_sq_4k[1]} ({perf[(m, kind, *best_sq_4k)]['latency_us']:.1f} us); "
              f"square utilisation {us[0]:.0f} % (4x4) -> {us[-1]:.1f} % (128x128)")
n_big = sum(min(SHAPES, key=lambda s: perf[(m, k, *s)]["latency_us"]) == (128, 128) for m in MODELS for k in KINDS)
print(f"the largest array (128x128) is the fastest for {n_big} of {len(MODELS) * len(KINDS)} (model, array kind) pairs")

# %% [markdown]
# Reading the tables: these GEMMs are small (K <= 144, N <= 128), so a large array is mostly
# idle: in weight-stationary arrays a fold covers only ceil(K/R) x ceil(N/C) weight tiles
# and pays the array's fill-and-drain skew (about 2R + C cycles) every fold, and in the
# output-stationary array every R x C output tile pays R + C - 2 skew cycles plus R to
# drain.  So beyond some size a larger array buys little or even loses time; the count of
# (model, array kind) pairs for which 128x128 is the fastest shape, the fastest shape of
# each, and how much a rectangular array gains over a square one of the same size are
# printed above.  The tensor-core array packs 16 MACs in each unit, so compare it
# with the systolic arrays at equal MAC lanes (x axis of the latency figure).

# %% [markdown]
# ## Vulnerability versus array shape
# Register-level campaigns on the CNN (fp16 inputs, fp32 accumulation), one per array kind and
# shape: single-bit flips drawn uniformly, without replacement, over the whole fault
# space of one inference of the batch (every register bit of every PE at every cycle of
# every tile of every GEMM).  Weight-stationary tiles stream all M rows of A (tile rows
# = M), output-stationary tiles are R x C outputs, so each campaign's population is
# register bits x PEs x the cycles of the table above.  Outcomes: *SDC* (logits differ
# from the fault-free run), *critical* (some image's top-1 changed, or a NaN/Inf in the
# logits).  From the per-fault probability P:
#
# * **per injected fault**: P, with its 95 % Wilson interval;
# * **per cycle of exposure**: P x register bits x PEs, the "vulnerable bits" of the running
#   array (expected outcomes per cycle per unit raw upset rate per bit per cycle);
# * **per inference**: P x bits x PEs x cycles (the population), divided by the batch:
#   vulnerable bit-cycles per image (expected outcomes per image per unit raw rate).
#
# The population is known exactly, so the last two carry P's interval scaled.

# %%
CSHAPES = ([(s, s) for s in SIZES] + [(8, 64), (64, 8), (16, 128), (128, 16)] if FULL
           else [(4, 4), (16, 16), (64, 64), (128, 128), (8, 64)])
TRIALS = None if FULL else 500           # None: the sample-size formula (margin below, p = 0.5)
MARGIN = 0.01
VMODEL = "cnn"
vul = {}
t_camp = time.perf_counter()
for kind in KINDS:
    for r, c in CSHAPES:
        arr = make(kind, r, c)
        camp = faults.ModelCampaign(model=VMODEL, array=arr, formats=(FMT,), accumulator=ACC, batch=BATCH,
                                    trials=TRIALS, margin=MARGIN, seed=2, tile_rows=None if kind == "os" else 1 << 20)
        path = DB / f"{kind}_{r}x{c}_{camp.digest}.db"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            faults.run_model_campaign(camp, path, executor="serial")
        rep = faults.model_campaign_report(path)
        with faults.ResultStore.open(path) as st:
            pop = st.strata()[0][3]
        row = rep.tables["format"][0]
        bits = sum(w for _, w in arr.registers(FMT, ACC))
        cyc = pop // (bits * r * c)
        assert cyc == perf[(VMODEL, kind, r, c)]["cycles"], (kind, r, c, cyc)
        vul[(kind, r, c)] = dict(n=row.n, pop=pop, bits=bits, pes=r * c, cycles=cyc,
                                 sdc=row.sdc, sdc_ci=row.sdc_ci, crit=row.critical, crit_ci=row.critical_ci,
                                 util=perf[(VMODEL, kind, r, c)]["util"])
print(f"{sum(v['n'] for v in vul.values())} trials in {time.perf_counter() - t_camp:.1f} s")
print(f"{'array':<5}{'shape':>8}{'trials':>7}{'bits/PE':>8}{'cycles':>9}{'util%':>7}"
      f"{'P(SDC) [95% CI]':>24}{'P(critical) [95% CI]':>26}{'crit vuln. bits':>26}{'crit vuln. bit-cycles/img':>34}")


def ci(v, lo, hi, scale=1.0, fmt="{:.2%}"):
    return f"{fmt.format(v * scale)} [{fmt.format(lo * scale)}, {fmt.format(hi * scale)}]"


for (kind, r, c), v in vul.items():
    s_cyc = v["bits"] * v["pes"]
    s_inf = v["pop"] / BATCH
    print(f"{kind:<5}{f'{r}x{c}':>8}{v['n']:>7}{v['bits']:>8}{v['cycles']:>9}{100 * v['util']:>7.1f}"
          f"{ci(v['sdc'], *v['sdc_ci']):>24}{ci(v['crit'], *v['crit_ci']):>26}"
          f"{ci(v['crit'], *v['crit_ci'], s_cyc, '{:.3g}'):>26}{ci(v['crit'], *v['crit_ci'], s_inf, '{:.3g}'):>34}")

# %%
keys = list(vul)
xl = [f"{k}\n{r}x{c}" for k, r, c in keys]
xs = np.arange(len(keys))
fig, axes = plt.subplots(3, 1, figsize=(max(8, 0.55 * len(keys) + 2), 10), sharex=True)
for ax, (scale, title) in zip(axes, (
        (lambda v: 1.0, "per injected fault: P(outcome | fault)"),
        (lambda v: v["bits"] * v["pes"], "per cycle of exposure: P x register bits x PEs"),
        (lambda v: v["pop"] / BATCH, "per inference: P x bits x PEs x cycles / images"))):
    for off, (name, key, mk) in zip((-0.15, 0.15), (("SDC", "sdc", "o"), ("critical", "crit", "s"))):
        val = np.array([vul[k][key] * scale(vul[k]) for k in keys])
        lo = np.array([vul[k][key + "_ci"][0] * scale(vul[k]) for k in keys])
        hi = np.array([vul[k][key + "_ci"][1] * scale(vul[k]) for k in keys])
        col = [COLOR[k[0]] for k in keys]
        pos = val > 0
        ax.errorbar(xs[pos] + off, val[pos], yerr=[val[pos] - np.maximum(lo[pos], val[pos] * 1e-3), hi[pos] - val[pos]],
                    fmt="none", ecolor="0.4", capsize=2, lw=0.8)
        ax.scatter(xs[pos] + off, val[pos], c=[c for c, p in zip(col, pos) if p], marker=mk, s=28,
                   label=f"{name}" if ax is axes[0] else None, edgecolors="k", linewidths=0.4)
        if (~pos).any():  # zero events: show the 95 % upper bound
            ax.scatter(xs[~pos] + off, hi[~pos], marker="v", facecolors="none", edgecolors=[c for c, p in zip(col, pos) if not p],
                       s=28, label=f"{name}: 0 events, 95 % upper bound" if ax is axes[0] else None)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both", axis="y")
axes[0].set_ylabel("probability")
axes[1].set_ylabel("vulnerable bits")
axes[2].set_ylabel("vulnerable bit-cycles / image")
axes[0].legend(fontsize=7, ncol=3)
axes[-1].set_xticks(xs, xl, fontsize=7)
fig.suptitle(f"{VMODEL}, fp16, batch {BATCH}: marker colour = array kind "
             f"(blue ws, orange os, green tc); bars: 95 % Wilson intervals", fontsize=9)
fig.tight_layout()
fig.savefig(FIG / "pe_array_vulnerability.png", dpi=100)

# %% [markdown]
# ## What the numbers say
# The cell below draws its statements from the campaigns above (and says so when the
# intervals are too wide to tell).  Two effects pull in opposite directions as the array
# grows: a larger array has more idle PEs and idle cycles, whose flips are masked, so P per
# injected fault tends to fall with utilisation; but it also has more register bits
# exposed per cycle, so the per-cycle exposure can grow even when P falls.  Per inference,
# the cycles shrink as the array grows until the skew dominates.

# %%
def overlap(a, b):
    return not (a[1] < b[0] or b[1] < a[0])


util = np.array([v["util"] for v in vul.values()])
psdc = np.array([v["sdc"] for v in vul.values()])
rank = lambda z: np.argsort(np.argsort(z))
rho = float(np.corrcoef(rank(util), rank(psdc))[0, 1])
print(f"Spearman rank correlation between utilisation and P(SDC | fault) over {len(vul)} campaigns: {rho:+.2f}")
for kind in KINDS:
    ks = [k for k in vul if k[0] == kind]
    lo_k, hi_k = min(ks, key=lambda k: k[1] * k[2]), max(ks, key=lambda k: k[1] * k[2])
    a, b = vul[lo_k], vul[hi_k]
    for name, key in (("P(SDC | fault)", "sdc"), ("P(critical | fault)", "crit")):
        verdict = ("the 95 % intervals overlap: no significant difference at this sample size"
                   if overlap(a[key + "_ci"], b[key + "_ci"]) else
                   ("lower" if b[key] < a[key] else "higher") + " on the larger array (intervals disjoint)")
        print(f"{kind}: {name} {lo_k[1]}x{lo_k[2]} {a[key]:.2%} vs {hi_k[1]}x{hi_k[2]} {b[key]:.2%}: {verdict}")
    f_cyc = (b["sdc"] * b["bits"] * b["pes"]) / max(a["sdc"] * a["bits"] * a["pes"], 1e-300)
    f_inf = (b["sdc"] * b["pop"]) / max(a["sdc"] * a["pop"], 1e-300)
    print(f"{kind}: SDC exposure per cycle x{f_cyc:.3g}, per inference x{f_inf:.3g} from {lo_k[1]}x{lo_k[2]} to "
          f"{hi_k[1]}x{hi_k[2]} (register bits x PEs grew x{b['bits'] * b['pes'] / (a['bits'] * a['pes']):.0f}, "
          f"cycles x{b['cycles'] / a['cycles']:.3g})")
same = [s for s in CSHAPES if all((k, *s) in vul for k in KINDS)]
for s in same:
    order = sorted(KINDS, key=lambda k: vul[(k, *s)]["sdc"] * vul[(k, *s)]["pop"])
    print(f"{s[0]}x{s[1]}: SDC vulnerable bit-cycles per image, lowest to highest: "
          + ", ".join(f"{k} {vul[(k, *s)]['sdc'] * vul[(k, *s)]['pop'] / BATCH:.3g}" for k in order))
print(f"notebook time so far: {time.perf_counter() - T0:.1f} s")

# %% [markdown]
# Caveats: a trial is critical when any of the batch's images changes its top-1 class, so
# the critical rate grows with the batch; a weight-register flip in a weight-stationary
# array corrupts a whole column of outputs, which is why the stationary registers weigh
# more than their share of bits.  The tensor-core unit's registers are wide (operand
# vectors, products, aligned significands: about 1,600 bits a unit against 64 in a scalar
# FMA PE, as printed in the table), so per cycle it exposes far more bits for 16x the
# MACs.  Small mode runs 500 trials per campaign (about +-4.4 % margin at 95 % for P near
# 0.5, and far wider relative to a rare critical rate: read its critical numbers as
# orders of magnitude); `GEMMFI_FULL=1` sizes each campaign by the formula at a 1 % margin.
