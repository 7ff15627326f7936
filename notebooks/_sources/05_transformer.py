# %% [markdown]
# # A pretrained transformer under faults: MiniLM-L6 on the simulated tensor core
#
# `all-MiniLM-L6-v2` (a 6-layer BERT sentence encoder, 22.7 M parameters, loaded from its
# Hugging Face directory by `models.load_pretrained`) embeds query/passage pairs
# (`models.minilm_retrieval`); a trial is *critical* when some query's top-1 passage among
# the pairs changes. Every GEMM runs on a simulated Hopper-like tensor core
# (`profile="hopper"`, fp32 accumulation) and faults strike a 16x16 `TensorCoreArray`'s
# registers at cycle level.
#
# 1. **register-level upsets per layer type** (Q/K/V projections, attention scores QK^T,
#    attention x V, output projection, FFN up/down) and **per register**, for fp16, bf16
#    and the FP8 formats e4m3 and e5m2 with each scaling recipe the array can run tile by
#    tile (`scaling="none" | "tensor" | "row"`: `faults.ModelCampaign(scaling=...)`);
#    block scaling (`"block:32"`, OCP MX) sums per-block partials in binary32 outside
#    the array, so a register-level tile over the whole K is not what that hardware
#    computes: it appears in the scale-factor part only;
# 2. **scale-factor faults** (value level): one bit of one stored scale flipped
#    (`models.ScaleBitFlip` through `GoldenTrace.inject`), per recipe and bit;
# 3. **what protection restores**: each register-level trial's faulty tile re-judged by
#    SEC-DED, ABFT and a range check on the same array (`protection.ProtectedArray`).
#
# Every rate comes with its sample size and a 95 % Wilson interval
# (`faults.wilson_interval`). Small mode (the default, for CI) runs 2 pairs of 4 tokens and
# a few trials; `GEMMFI_FULL=medium` and `GEMMFI_FULL=1` run larger studies (the sizes are
# printed below: they say what the committed outputs are).

# %%
import os
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import numba

import faults
import models
import simulator
from protection import Abft, ProtectedArray, RangeCheck, SecDed

# one Numba thread: this study's GEMMs are many and small (attention runs one per text and
# head), where a thread pool's start-up per call costs more than it gains (the bits are the same)
numba.set_num_threads(1)

MODE = {"1": "full", "medium": "medium"}.get(os.environ.get("GEMMFI_FULL", ""), "small")
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
T0 = time.perf_counter()
SIZE = {  # pairs, tokens per text, register-level trials per GEMM, scale-fault trials per recipe
    "small": dict(pairs=2, tokens=4, per_gemm=1, scale=6),
    "medium": dict(pairs=4, tokens=8, per_gemm=4, scale=16),
    "full": dict(pairs=8, tokens=32, per_gemm=16, scale=200),
}[MODE]
PAIRS, TOKENS, PER_GEMM, N_SCALE = SIZE["pairs"], SIZE["tokens"], SIZE["per_gemm"], SIZE["scale"]
SEED = 5
if MODE == "small":
    CONFIGS = [("fp16", "none"), ("e4m3", "tensor")]
    SCALE_CONFIGS = [("e4m3", "tensor")]
    PROTECT = [("e4m3", "tensor")]
else:
    CONFIGS = [("fp16", "none"), ("bf16", "none")] + [(f, s) for f in ("e4m3", "e5m2")
                                                        for s in ("none", "tensor", "row")]
    SCALE_CONFIGS = [(f, s) for f in ("e4m3", "e5m2") for s in ("tensor", "row", "block:32")]
    PROTECT = [("fp16", "none"), ("e4m3", "tensor")]
print(f"mode {MODE}: {PAIRS} pairs x {TOKENS} tokens, {PER_GEMM} register-level trials per GEMM and "
      f"configuration, {N_SCALE} scale-factor trials per recipe")


def label(fmt, sc):
    return fmt if sc == "none" else f"{fmt}/{sc}"


def wilson(k, n):
    return faults.wilson_interval(k, n, 0.95)


def truncated(wl, tokens, name, first=0):
    """The workload on pairs ``first``.. of ``wl`` and the first ``tokens`` tokens of every
    text (fewer rows per GEMM; the texts' [SEP] may be cut)."""
    inputs = {k: np.ascontiguousarray(np.asarray(v)[first:, ..., :tokens]) for k, v in wl.inputs.items()}
    return models.Workload(wl.apply, wl.params, inputs, None, "retrieval", name)


WL = truncated(models.minilm_retrieval(n=PAIRS), TOKENS, f"minilm-retrieval-{PAIRS}x{TOKENS}")
# held-out pairs (the next PAIRS of the file), for the range check's fault-free profile
HELD = truncated(models.minilm_retrieval(n=2 * PAIRS), TOKENS, "held-out", first=PAIRS)
ARRAY = simulator.TensorCoreArray(16, 16, profile="hopper")
# the PE's registers depend on the format: FP8 adds a second accumulation stage (x1, emax1, aligned1, sum1)
REGS = {f: [n for n, _, _ in ARRAY.fault_sites(1, 1, 1, f, "fp32").registers] for f, _ in CONFIGS + PROTECT}
REGISTERS = list(dict.fromkeys(n for f in sorted(REGS, key=lambda f: -len(REGS[f])) for n in REGS[f]))
print("texts per pair: query, passage; token_ids", WL.inputs["token_ids"].shape)
for f, regs in REGS.items():
    print(f"registers of a PE with {f} inputs: {', '.join(regs)}")

# %% [markdown]
# ## The GEMMs and their layer types
# The bridge names every GEMM by the JAX name stack of the encoder (`layerL/attention/query`,
# ...). Each of the 6 layers has the same 8 GEMMs, so a layer type is 6 GEMMs of one shape.
# Attention's batched matmuls are one GEMM site each with one group per (text, head).

# %%
TYPES = [("attention/query", "Q proj"), ("attention/key", "K proj"), ("attention/value", "V proj"),
         ("attention/scores", "scores QK^T"), ("attention/context", "attn x V"),
         ("attention/output", "out proj"), ("ffn/up", "FFN up"), ("ffn/down", "FFN down")]
TYPE_NAMES = [t for _, t in TYPES]


def layer_type(name):
    for key, t in TYPES:
        if f"/{key}/" in f"/{name}/":
            return t
    raise ValueError(f"GEMM name must hold one of {[k for k, _ in TYPES]}, not {name!r}")


t = time.perf_counter()
TRACES = {}


def golden(fmt, sc, wl=WL):
    """A cached fault-free trace of the workload on the accelerator."""
    key = (fmt, sc, wl.label)
    if key not in TRACES:
        af = models.accelerated(wl.apply, models.Accelerator("hopper", fmt, scaling=sc))
        TRACES[key] = af.trace(wl.params, wl.inputs)
    return TRACES[key]


G0 = golden(*CONFIGS[-1])
SITES = G0.gemms
for s in SITES[:8]:
    print(f"GEMM {s.index:2d} {layer_type(s.name):12s} {s.name:48s} groups={s.groups:3d} M={s.M:4d} K={s.K:4d} "
          f"N={s.N:4d}")
print(f"... {len(SITES)} GEMMs in all (one golden trace: {time.perf_counter() - t:.1f} s)")
assert len(SITES) == 48 and all(layer_type(s.name) == TYPE_NAMES[s.index % 8] for s in SITES)

# %% [markdown]
# ## Register-level upsets per layer type, format and register
# One campaign per configuration, stratified by GEMM (`stratify="layer"`): `PER_GEMM` trials
# per GEMM, each a single-bit flip drawn uniformly over that GEMM's output tiles x registers
# x bits x PEs x live cycles of the tile's run on the 16x16 array. GEMMs of one layer type
# have one shape, so their fault spaces are equal and a layer type's rate is its pooled
# count over its 6 GEMMs. The whole model's rate per upset weights each GEMM by its fault
# space (`ResultStore.strata`; Kish effective sample size for the interval).
#
# SDC = the output embeddings differ bitwise; critical = a query's top-1 passage changed,
# or a NaN/infinity reached the output.

# %%
tmp = Path(tempfile.mkdtemp(prefix="gemmfi_nb05_"))
SDC = ("benign_sdc", "critical_sdc", "nan_inf")
CRIT = ("critical_sdc", "nan_inf")
ROWS, POPS, CAMPS = {}, {}, {}
t_all = time.perf_counter()
for fmt, sc in CONFIGS:
    lab = label(fmt, sc)
    # chunk=None: the whole batch is recomputed after a faulty tile (the encoder's float32 ops
    # on one pair alone are not bitwise its rows of the batch's run, so per-pair golden
    # sub-runs cannot stand in for it; per-tensor scales also depend on the whole batch)
    camp = faults.ModelCampaign(model=WL, array=ARRAY, formats=(fmt,), scaling=sc, trials=PER_GEMM,
                                stratify="layer", seed=SEED, chunk=None)
    t = time.perf_counter()
    db = tmp / f"{lab.replace('/', '_')}.db"
    faults.run_model_campaign(camp, db, executor="serial")
    with faults.ResultStore.open(db) as st:
        ROWS[lab] = [r._asdict() for r in st.rows()]
        POPS[lab] = {gemms[0]: (pop, n) for _, _, gemms, pop, n, _ in st.strata()}  # GEMM -> (N, n)
    CAMPS[lab] = camp
    oc = [r["outcome"] for r in ROWS[lab]]
    print(f"{lab:12s} {len(oc):5d} trials in {time.perf_counter() - t:6.1f} s: "
          + ", ".join(f"{o} {oc.count(o)}" for o in faults.TRIAL_OUTCOMES if oc.count(o)))
print(f"register-level campaigns: {time.perf_counter() - t_all:.1f} s")


def rate(rows, outcomes):
    k, n = sum(r["outcome"] in outcomes for r in rows), len(rows)
    lo, hi = wilson(k, n)
    return dict(k=k, n=n, p=k / n if n else float("nan"), lo=lo, hi=hi)


def weighted_rate(lab, outcomes):
    """Rate per upset over the whole model: trial weight = GEMM fault space / its trials."""
    w = np.array([POPS[lab][r["gemm"]][0] / POPS[lab][r["gemm"]][1] for r in ROWS[lab]], np.float64)
    hit = np.array([r["outcome"] in outcomes for r in ROWS[lab]])
    p = float((w * hit).sum() / w.sum())
    n_eff = float(w.sum() ** 2 / (w ** 2).sum())
    lo, hi = wilson(p * n_eff, n_eff)
    return dict(p=p, lo=lo, hi=hi, n=len(w), n_eff=n_eff)


BY_TYPE = {lab: {ty: [r for r in rows if layer_type(r["layer"]) == ty] for ty in TYPE_NAMES}
           for lab, rows in ROWS.items()}
BY_REG = {lab: {rg: [r for r in rows if r["register"] == rg] for rg in REGISTERS} for lab, rows in ROWS.items()}
print(f"{'configuration':12s} {'model SDC per upset [95% CI]':>32s} {'critical per upset [95% CI]':>32s}  n (n_eff)")
WHOLE = {}
for lab in ROWS:
    s, c = weighted_rate(lab, SDC), weighted_rate(lab, CRIT)
    WHOLE[lab] = (s, c)
    print(f"{lab:12s} {s['p']:12.2e} [{s['lo']:.1e}, {s['hi']:.1e}] {c['p']:12.2e} [{c['lo']:.1e}, {c['hi']:.1e}]"
          f"  {s['n']} ({s['n_eff']:.0f})")
print(f"\nSDC share per layer type (k/n, 95% CI), {6 * PER_GEMM} trials per type and configuration:")
print(f"{'layer type':12s} " + " ".join(f"{lab:>20s}" for lab in ROWS))
for ty in TYPE_NAMES:
    cells = []
    for lab in ROWS:
        r = rate(BY_TYPE[lab][ty], SDC)
        cells.append(f"{r['k']:3d}/{r['n']:<3d}[{r['lo']:.2f},{r['hi']:.2f}]")
    print(f"{ty:12s} " + " ".join(f"{c:>20s}" for c in cells))
print("\ncritical share per layer type (k/n, 95% CI):")
for ty in TYPE_NAMES:
    cells = []
    for lab in ROWS:
        r = rate(BY_TYPE[lab][ty], CRIT)
        cells.append(f"{r['k']:3d}/{r['n']:<3d}[{r['lo']:.2f},{r['hi']:.2f}]")
    print(f"{ty:12s} " + " ".join(f"{c:>20s}" for c in cells))
print("\nSDC share per register (k/n, 95% CI; registers drawn in proportion to their live bits; -: no such "
      "register):")
for rg in REGISTERS:
    cells = []
    for lab in ROWS:
        r = rate(BY_REG[lab][rg], SDC)
        cells.append(f"{r['k']:3d}/{r['n']:<3d}[{r['lo']:.2f},{r['hi']:.2f}]" if r["n"] else "-")
    print(f"{rg:12s} " + " ".join(f"{c:>20s}" for c in cells))

# %%
fig, axes = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True)
labs = list(ROWS)
width = 0.8 / len(labs)
for ax, outs, name in ((axes[0], SDC, "SDC"), (axes[1], CRIT, "critical")):
    for q, lab in enumerate(labs):
        rs = [rate(BY_TYPE[lab][ty], outs) for ty in TYPE_NAMES]
        x = np.arange(len(TYPE_NAMES)) + (q - (len(labs) - 1) / 2) * width
        p = np.array([r["p"] for r in rs])
        err = np.array([[r["p"] - r["lo"] for r in rs], [r["hi"] - r["p"] for r in rs]])
        ax.bar(x, p, width=width, label=lab)
        ax.errorbar(x, p, yerr=err, fmt="none", ecolor="k", lw=0.6, capsize=1.5)
    ax.set_ylabel(f"{name} share of upsets")
    ax.set_ylim(0, 1)
axes[1].set_xticks(range(len(TYPE_NAMES)))
axes[1].set_xticklabels(TYPE_NAMES)
axes[0].legend(fontsize=7, ncol=4, loc="upper right")
axes[0].set_title(f"MiniLM-L6 ({PAIRS} pairs x {TOKENS} tokens), single-bit register upsets on a 16x16 hopper "
                  f"tensor core; {6 * PER_GEMM} trials per bar, 95 % Wilson intervals", fontsize=9)
fig.tight_layout()
fig.savefig(FIG / "transformer_layers.png", dpi=110)

fig, ax = plt.subplots(figsize=(11, 3.8))
for q, lab in enumerate(labs):
    rs = [rate(BY_REG[lab][rg], SDC) for rg in REGISTERS]
    x = np.arange(len(REGISTERS)) + (q - (len(labs) - 1) / 2) * width
    p = np.array([r["p"] for r in rs])
    ax.bar(x, p, width=width, label=lab)
    ax.errorbar(x, p, yerr=[[r["p"] - r["lo"] for r in rs], [r["hi"] - r["p"] for r in rs]], fmt="none",
                ecolor="k", lw=0.6, capsize=1.5)
ax.set_xticks(range(len(REGISTERS)))
ax.set_xticklabels(REGISTERS)
ax.set_ylabel("SDC share of upsets in the register")
ax.set_ylim(0, 1)
ax.legend(fontsize=7, ncol=4)
ax.set_title("SDC share per PE register (all GEMMs pooled; 95 % Wilson intervals; FP8 PEs have a second "
             "accumulation stage: x1, emax1, aligned1, sum1)", fontsize=9)
fig.tight_layout()
fig.savefig(FIG / "transformer_registers.png", dpi=110)

# %% [markdown]
# ## Scale-factor faults
# With scaling, a GEMM also reads its operands' scale factors (`GoldenTrace.scales`):
# per-tensor and per-row scales are binary32 powers of two (one bit flip makes any binary32
# value: an exponent bit multiplies or divides the result by up to 2^128, a mantissa bit
# changes it by a factor 1 + 2^-m, the sign bit negates it); block scales are E8M0 bytes
# (a flip multiplies the block's partial products by 2^(+-2^b), or makes it NaN). A trial
# flips one uniformly drawn bit of one scale, drawn uniformly over the model's scales (every
# GEMM's A and B scales, all entries), and re-runs the model from that GEMM.

# %%
rng = np.random.default_rng(SEED)
SCALE = {}
t_all = time.perf_counter()
for fmt, sc in SCALE_CONFIGS:
    lab = label(fmt, sc)
    g = golden(fmt, sc)
    gold = np.asarray(g.outputs)
    sizes = [(gi, op, (g.scales(gi).a if op == "a" else g.scales(gi).b).size)
             for gi in range(len(g.gemms)) for op in ("a", "b")]
    total = sum(n for *_, n in sizes)
    cum = np.cumsum([n for *_, n in sizes])
    width_bits = 8 if sc.startswith("block") else 32
    recs = []
    t = time.perf_counter()
    for _ in range(N_SCALE):
        j = int(rng.integers(total))
        q = int(np.searchsorted(cum, j, side="right"))
        gi, op, n = sizes[q]
        index = j - (int(cum[q - 1]) if q else 0)
        bit = int(rng.integers(width_bits))
        out = np.asarray(g.inject(models.ScaleBitFlip(gi, op, index, bit)))
        if np.array_equal(out.view(np.uint32), gold.view(np.uint32)):
            oc = "masked"
        elif not np.isfinite(out).all():
            oc = "nan_inf"
        else:
            oc = "critical_sdc" if WL.critical(gold, out).any() else "benign_sdc"
        recs.append(dict(gemm=gi, layer=layer_type(g.gemms[gi].name), operand=op, bit=bit, outcome=oc))
    SCALE[lab] = recs
    s, c = rate(recs, SDC), rate(recs, CRIT)
    print(f"{lab:15s} {len(recs):4d} trials over {total:7d} scales x {width_bits} bits in "
          f"{time.perf_counter() - t:5.1f} s: SDC {s['p']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}], "
          f"critical {c['p']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]")
print(f"scale-factor trials: {time.perf_counter() - t_all:.1f} s")


def bit_field(sc, bit):
    if sc.startswith("block"):
        return "E8M0 exponent"
    return "sign" if bit == 31 else ("exponent" if bit >= 23 else "mantissa")


print("\nby bit field (critical k/n, 95% CI):")
for lab, recs in SCALE.items():
    sc = lab.split("/")[1]
    fields = sorted({bit_field(sc, r["bit"]) for r in recs})
    print(f"  {lab:15s} " + "; ".join(
        f"{f}: {rate([r for r in recs if bit_field(sc, r['bit']) == f], CRIT)['k']}/"
        f"{len([r for r in recs if bit_field(sc, r['bit']) == f])}" for f in fields))

# %%
FIELDS = ["mantissa", "exponent", "sign", "E8M0 exponent"]
fig, ax = plt.subplots(figsize=(10, 3.8))
labs_s = list(SCALE)
w = 0.8 / len(FIELDS)
for q, f in enumerate(FIELDS):
    x = np.arange(len(labs_s)) + (q - (len(FIELDS) - 1) / 2) * w
    for outs, alpha, name in ((SDC, 0.35, "SDC"), (CRIT, 1.0, "critical")):
        rs = [rate([r for r in SCALE[lab] if bit_field(lab.split("/")[1], r["bit"]) == f], outs) for lab in labs_s]
        p = np.array([r["p"] if r["n"] else 0.0 for r in rs])
        ax.bar(x, p, width=w, color=f"C{q}", alpha=alpha, label=f"{f}: {name}" if any(r["n"] for r in rs) else None)
        if name == "critical":
            ax.errorbar(x, p, yerr=[[r["p"] - r["lo"] if r["n"] else 0 for r in rs],
                                    [r["hi"] - r["p"] if r["n"] else 0 for r in rs]], fmt="none", ecolor="k",
                        lw=0.6, capsize=1.5)
ax.set_xticks(range(len(labs_s)))
ax.set_xticklabels(labs_s)
ax.set_ylabel("share of scale-factor flips")
ax.set_ylim(0, 1.02)
ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
ax.set_title(f"Scale-factor bit flips by field ({N_SCALE} per recipe; light: SDC, dark: critical with 95 % "
             f"Wilson interval)", fontsize=9)
fig.tight_layout()
fig.savefig(FIG / "transformer_scale_faults.png", dpi=110)

# %% [markdown]
# ## What SEC-DED, ABFT and a range check restore
# Each register-level trial of a configuration is re-judged on the same fault by the same
# array with schemes attached (`ProtectedArray.evaluator` on the tile's golden run): a tile
# a scheme restores is masked (or corrected); a tile it leaves as it was keeps the campaign's
# outcome; any other delivered tile is propagated through the rest of the model
# (`GoldenTrace.inject`). SEC-DED recomputes the tile on an uncorrectable word; ABFT corrects
# a single located output and recomputes otherwise; the range check's per-GEMM bound is
# learned from the held-out pairs' fault-free outputs (one binade of slack) and recomputes
# the tile on an alarm. Faults in the schemes' own check bits are not drawn here.

# %%
def schemes_for(bound, fmt):
    return {
        "none": (),
        "sec-ded(psum)": (SecDed(("psum",), "recompute"),),
        "sec-ded(all)": (SecDed(tuple(REGS[fmt]), "recompute"),),
        "abft": (Abft(action="correct"),),
        "range": (bound,),
        "abft+sec-ded(psum)": (Abft(action="correct"), SecDed(("psum",), "recompute")),
    }


def classify(g, out):
    gold = np.asarray(g.outputs)
    if np.array_equal(out.view(np.uint32), gold.view(np.uint32)):
        return "masked"
    if not np.isfinite(out).all():
        return "nan_inf"
    return "critical_sdc" if WL.critical(gold, out).any() else "benign_sdc"


PROT = {}
t_all = time.perf_counter()
for fmt, sc in PROTECT:
    lab = label(fmt, sc)
    g, h = golden(fmt, sc), golden(fmt, sc, HELD)
    bounds = [RangeCheck.profile([h.operands(gi)[2]], slack=1) for gi in range(len(g.gemms))]
    names = list(schemes_for(bounds[0], fmt))
    judged = {n: [] for n in names}
    alarms = dict.fromkeys(names, 0)
    n_prop = 0
    for tr in ROWS[lab]:
        if tr["tile_diff"] == 0:  # the faulty tile is the golden one: masked for every scheme
            for n in names:
                judged[n].append(tr["outcome"])
            continue
        a_all, b_all, d_all = g.operands(tr["gemm"])
        r0, c0 = tr["row0"], tr["col0"]
        a = np.ascontiguousarray(a_all[tr["grp"], r0:r0 + tr["rows"]])
        b = np.ascontiguousarray(b_all[tr["grp"], :, c0:c0 + tr["cols"]])
        gr = ARRAY.golden(a, b, np.zeros((a.shape[0], b.shape[1]), d_all.dtype))
        fault = faults.Fault((tr["pe_row"], tr["pe_col"]), tr["register"], tr["bit"], tr["cycle"])
        faulty = None
        for n, sch in schemes_for(bounds[tr["gemm"]], fmt).items():
            res = ProtectedArray(ARRAY, sch).evaluator(gr).evaluate((fault,))
            out = res.output
            alarms[n] += bool(res.alarms)
            if n == "none":
                faulty = out
                assert int((out.view(np.uint32) != gr.output.view(np.uint32)).sum()) == tr["tile_diff"]
            if np.array_equal(out.view(np.uint32), gr.output.view(np.uint32)):
                judged[n].append("corrected" if res.alarms else "masked")
            elif np.array_equal(out.view(np.uint32), faulty.view(np.uint32)):
                judged[n].append(tr["outcome"])  # delivered as the unprotected array did
            else:
                f = models.ReplaceTile(tr["gemm"], (r0, r0 + tr["rows"]), (c0, c0 + tr["cols"]),
                                       (lambda t: (lambda *_: t))(out), tr["grp"])
                judged[n].append(classify(g, np.asarray(g.inject([f]))))
                n_prop += 1
    cost = {n: ProtectedArray(ARRAY, sch).cost(16, 384, 16, fmt, "fp32")
            for n, sch in schemes_for(bounds[0], fmt).items()}
    PROT[lab] = dict(judged=judged, cost=cost, alarms=alarms)
    print(f"{lab}: {len(ROWS[lab])} trials re-judged x {len(names)} configurations ({n_prop} other tiles "
          f"propagated); range bounds (max_exp) per layer type: "
          f"{[bounds[i].max_exp for i in range(8)]}")
    print(f"  {'configuration':20s} {'+bits':>7s} {'+cycles':>8s} {'SDC [95% CI]':>26s} {'critical [95% CI]':>26s}"
          f" {'alarms':>7s}")
    for n in names:
        rows = [dict(outcome=o) for o in judged[n]]
        s, c = rate(rows, SDC), rate(rows, CRIT)
        co = cost[n]
        print(f"  {n:20s} {100 * (co.bits_ratio - 1):6.1f}% {100 * (co.cycles_ratio - 1):7.1f}% "
              f"{s['k']:4d}/{s['n']:<4d} {s['p']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}] "
              f"{c['k']:4d}/{c['n']:<4d} {c['p']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}] {alarms[n]:7d}")
print(f"protection re-judging: {time.perf_counter() - t_all:.1f} s (costs: one 16x384x16 tile)")

# %%
fig, axes = plt.subplots(1, len(PROT), figsize=(6 * len(PROT), 3.8), squeeze=False)
colors = {"masked": "#bbbbbb", "corrected": "#4c9a2a", "detected": "#e0a526", "benign_sdc": "#f1948a",
          "critical_sdc": "#c0392b", "nan_inf": "#6c3483"}
for ax, (lab, pr) in zip(axes[0], PROT.items()):
    names = list(pr["judged"])
    bottom = np.zeros(len(names))
    for oc in ("masked", "corrected", "detected", "benign_sdc", "critical_sdc", "nan_inf"):
        v = np.array([pr["judged"][n].count(oc) / len(pr["judged"][n]) for n in names])
        ax.bar(range(len(names)), v, bottom=bottom, color=colors[oc], label=oc, width=0.75)
        bottom += v
    rs = [rate([dict(outcome=o) for o in pr["judged"][n]], SDC) for n in names]
    ax.errorbar(np.arange(len(names)), [1 - r["p"] for r in rs], yerr=[[r["hi"] - r["p"] for r in rs],
                [r["p"] - r["lo"] for r in rs]], fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n+{100 * (pr['cost'][n].bits_ratio - 1):.1f}% bits" for n in names], rotation=30,
                       ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"{lab}: {len(pr['judged']['none'])} upsets (bars: 95 % CI of SDC)", fontsize=9)
axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
axes[0][0].set_ylabel("share of register upsets")
fig.tight_layout()
fig.savefig(FIG / "transformer_protection.png", dpi=110)

# %% [markdown]
# ## What the numbers say
# Computed from the tables above (they follow the numbers when the notebook is re-run).

# %%
for lab, (s, c) in WHOLE.items():
    worst = max(TYPE_NAMES, key=lambda ty: rate(BY_TYPE[lab][ty], SDC)["p"])
    ws = rate(BY_TYPE[lab][worst], SDC)
    print(f"- {lab}: {s['p']:.2%} of upsets [{s['lo']:.2%}, {s['hi']:.2%}] corrupt the embeddings, {c['p']:.2%} "
          f"[{c['lo']:.2%}, {c['hi']:.2%}] are critical (n={s['n']}); most SDC-prone layer type: {worst} "
          f"({ws['k']}/{ws['n']}).")
for lab, recs in SCALE.items():
    c = rate(recs, CRIT)
    print(f"- scale-factor flips, {lab}: {c['p']:.1%} critical [{c['lo']:.1%}, {c['hi']:.1%}] (n={c['n']}).")
for lab, pr in PROT.items():
    base = rate([dict(outcome=o) for o in pr["judged"]["none"]], SDC)
    print(f"- protection on {lab}: SDC {base['p']:.2%} unprotected; "
          + ", ".join(f"{n} {rate([dict(outcome=o) for o in pr['judged'][n]], SDC)['p']:.2%}"
                      for n in pr["judged"] if n != "none") + ".")
print(f"\nnotebook run time: {time.perf_counter() - T0:.0f} s, {time.process_time():.0f} s CPU "
      f"({MODE} mode: {PAIRS} pairs x {TOKENS} tokens, "
      f"{PER_GEMM} trials per GEMM, {N_SCALE} scale-factor trials per recipe)")
