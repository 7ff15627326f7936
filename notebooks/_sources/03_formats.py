# %% [markdown]
# # Formats: FP16, BF16, TF32, FP8 (E4M3, E5M2) under faults
#
# The founding paper (MPGemmFI) flips bits of GEMM *results* and asks which bits and which
# formats matter.  Here the same questions are asked at the register level: single-bit
# flips in the pipeline registers of a PE array running the CNN on the digits test
# images, each input format in its own stratum, and the result-level (value) campaign run
# beside them on the same model, batch and formats so that the two views can be compared.
#
# Four campaigns, all with fp32 accumulation:
#
# 1. **inputs**: an 8x8 weight-stationary systolic array of binary32-FMA PEs
#    (`systolic_fma`), flips in the operand registers `a` (moving) and `w` (stationary),
#    whose bits are laid out in the input format;
# 2. **psum**: the same array, flips in the binary32 partial-sum register `psum`;
# 3. **value**: MPGemmFI's method: one bit of one GEMM output element (binary32), after the GEMM;
# 4. **tensor core**: an 8x8 tensor-core array (`hopper` datapath: 16-wide fp16/bf16
#    dot-product units, 8-wide tf32, two 16-product passes for FP8), flips in every
#    pipeline register.
#
# Register-level sites are drawn uniformly without replacement over register bits x PEs x
# cycles of every tile of every GEMM, value-level sites over output elements x 32 bits.
# Outcomes: *SDC* = the logits differ from the fault-free run; *critical* = some image's
# top-1 class changed, or a NaN/Inf reached the logits.  Intervals are 95 % Wilson
# intervals.  `GEMMFI_FULL=1`: 256 images and about eight times the trials.

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
from models import Accelerator, accelerated, get_model, load_digits, load_params

T0 = time.perf_counter()
FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
DB = Path("results/03_formats") if FULL else Path(tempfile.mkdtemp(prefix="gemmfi_03_"))
DB.mkdir(parents=True, exist_ok=True)
MODEL, BATCH = "cnn", (256 if FULL else 64)
FMTS = ("fp16", "bf16", "tf32", "e4m3", "e5m2")
SCALE = 8 if FULL else 1
TRIALS = {"inputs": 2500 * SCALE, "psum": 1500 * SCALE, "value": 1500 * SCALE, "tc": 1500 * SCALE}
SYS = simulator.SystolicArray(8, 8, dataflow="ws", profile="systolic_fma")
TC = simulator.TensorCoreArray(8, 8, profile="hopper")
COL = dict(zip(FMTS, ("tab:blue", "tab:red", "tab:purple", "tab:green", "tab:orange")))
IDX = {c: i for i, c in enumerate(faults.TrialResult._fields)}

x, y = load_digits("test")
x, y = x[:BATCH], y[:BATCH]
params, model = load_params(MODEL), get_model(MODEL)
print(f"fault-free accuracy of the {MODEL} on {BATCH} test images:")
for prof in ("systolic_fma", "hopper"):
    accs = {f: float((np.asarray(accelerated(model.apply, Accelerator(prof, f))(params, x)).argmax(-1) == y).mean())
            for f in FMTS}
    print(f"  {prof:<13}" + "  ".join(f"{f} {100 * a:.1f} %" for f, a in accs.items()))
for f in FMTS:
    F = simulator.get_format(f)
    print(f"{f}: {F.width} bits = sign + {F.exp_bits} exponent + {F.man_bits} mantissa; "
          f"systolic PE registers {SYS.registers(f)}; tensor-core unit {sum(w for _, w in TC.registers(f))} bits")

# %%
CAMPAIGNS = {
    "inputs": faults.ModelCampaign(model=MODEL, array=SYS, formats=FMTS, batch=BATCH, registers=("a", "w"),
                                   trials=TRIALS["inputs"], seed=3),
    "psum": faults.ModelCampaign(model=MODEL, array=SYS, formats=FMTS, batch=BATCH, registers=("psum",),
                                 trials=TRIALS["psum"], seed=3),
    "value": faults.ModelCampaign(model=MODEL, array=SYS, formats=FMTS, batch=BATCH, level="value",
                                  trials=TRIALS["value"], seed=3),
    "tc": faults.ModelCampaign(model=MODEL, array=TC, formats=FMTS, batch=BATCH, trials=TRIALS["tc"], seed=3),
}
ROWS, REPORTS = {}, {}
for name, camp in CAMPAIGNS.items():
    path = DB / f"{name}_{camp.digest}.db"
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run = faults.run_model_campaign(camp, path, executor="serial")
    with faults.ResultStore.open(path) as st:
        ROWS[name] = st.rows()
        pops = {s[1]: s[3] for s in st.strata()}
    REPORTS[name] = faults.model_campaign_report(path)
    print(f"{name:<7} {run.total:>6} trials ({camp.trials} per format; populations "
          + ", ".join(f"{f} {pops[f]:.2e}" for f in FMTS) + f") in {time.perf_counter() - t:.1f} s")

# %% [markdown]
# ## Per format
# Rates per injected fault, and the accuracy under faults: the fault-free accuracy plus
# the mean change in correct predictions per trial (one fault per inference of the batch),
# with a normal 95 % interval.

# %%
def col(rows, c):
    return np.array([r[IDX[c]] for r in rows])


def rates(rows):
    n = len(rows)
    oc = col(rows, "outcome") if n else np.array([])
    k_sdc = int(np.isin(oc, ("benign_sdc", "critical_sdc", "nan_inf")).sum())
    k_crit = int(np.isin(oc, ("critical_sdc", "nan_inf")).sum())
    return dict(n=n, sdc=k_sdc / max(n, 1), sdc_ci=faults.wilson_interval(k_sdc, n), k_crit=k_crit,
                crit=k_crit / max(n, 1), crit_ci=faults.wilson_interval(k_crit, n))


def pct(v, ci):
    return f"{100 * v:6.2f}% [{100 * ci[0]:5.2f}, {100 * ci[1]:6.2f}]"


PER_FMT = {}
print(f"{'campaign':<8}{'format':<7}{'n':>6}{'P(SDC) [95% CI]':>27}{'P(critical) [95% CI]':>27}"
      f"{'acc. change per fault (pp) [95% CI]':>40}")
for name, rows in ROWS.items():
    for f in FMTS:
        rs = [r for r in rows if r[IDX["format"]] == f]
        d = rates(rs)
        dc = col(rs, "correct_delta") / BATCH * 100
        m, h = dc.mean(), 1.96 * dc.std(ddof=1) / np.sqrt(len(dc))
        d.update(acc=m, acc_ci=(m - h, m + h))
        PER_FMT[(name, f)] = d
        print(f"{name:<8}{f:<7}{d['n']:>6}{pct(d['sdc'], d['sdc_ci']):>27}{pct(d['crit'], d['crit_ci']):>27}"
              f"{m:>+20.4f} [{m - h:+.4f}, {m + h:+.4f}]")

# %% [markdown]
# ## Per bit position
# Operand registers `a` and `w` of the systolic PEs hold one input-format number each, so a
# bit position is a field of the format: sign, exponent (high to low), mantissa.  Rates per
# bit, pooling `a` and `w` (the trials of a format are spread evenly over its bits).  The
# last panel compares the binary32 `psum` register (register level, mid-accumulation) with
# the binary32 GEMM output (value level, after the GEMM), pooled over the five formats.

# %%
def field(fmt, bit):
    F = simulator.get_format(fmt)
    return "mantissa" if bit < F.man_bits else ("exponent" if bit < F.man_bits + F.exp_bits else "sign")


FIELD_COL = {"sign": "0.85", "exponent": "#fde0c5", "mantissa": "#dbe9f6"}
BITS = {}
for f in FMTS:
    rs = [r for r in ROWS["inputs"] if r[IDX["format"]] == f]
    b = col(rs, "bit")
    BITS[("inputs", f)] = {int(k): rates([r for r, bb in zip(rs, b) if bb == k]) for k in range(simulator.get_format(f).width)}
for name in ("psum", "value"):
    rs = ROWS[name]
    b = col(rs, "bit")
    BITS[(name, "all")] = {k: rates([r for r, bb in zip(rs, b) if bb == k]) for k in range(32)}


def bit_panel(ax, table, fmt_for_fields, label, color, off=0.0, width=0.8, show_sdc=True):
    ks = sorted(table, reverse=True)
    xs = np.arange(len(ks)) + off
    v = np.array([table[k]["crit"] for k in ks]) * 100
    lo = np.array([table[k]["crit_ci"][0] for k in ks]) * 100
    hi = np.array([table[k]["crit_ci"][1] for k in ks]) * 100
    ax.bar(xs, v, width, color=color, label=f"{label} critical", yerr=[v - lo, hi - v], capsize=1.5,
           error_kw=dict(lw=0.6, ecolor="0.3"))
    if show_sdc:
        ax.plot(xs, [table[k]["sdc"] * 100 for k in ks], "k.", ms=4, label=f"{label} SDC")
    return ks


fig, axes = plt.subplots(len(FMTS) + 1, 1, figsize=(11, 2.3 * (len(FMTS) + 1)))
for ax, f in zip(axes, FMTS):
    ks = bit_panel(ax, BITS[("inputs", f)], f, f"{f} a+w", COL[f])
    for i, k in enumerate(ks):
        ax.axvspan(i - 0.5, i + 0.5, color=FIELD_COL[field(f, k)], zorder=0)
    ax.set_xticks(range(len(ks)), [f"{k}\n{field(f, k)[0].upper()}" for k in ks], fontsize=7)
    ax.set_xlim(-0.6, 31.6 if len(ks) > 19 else len(ks) - 0.4)
    ax.set_ylabel("% of trials")
    n_per = int(np.mean([BITS[("inputs", f)][k]["n"] for k in ks]))
    ax.set_title(f"{f}: operand registers a, w (about {n_per} trials per bit)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
ax = axes[-1]
ks = bit_panel(ax, BITS[("psum", "all")], "fp32", "psum register", "tab:gray", -0.2, 0.4, show_sdc=False)
bit_panel(ax, BITS[("value", "all")], "fp32", "GEMM output (value level)", "k", 0.2, 0.4, show_sdc=False)
for i, k in enumerate(ks):
    ax.axvspan(i - 0.5, i + 0.5, color=FIELD_COL[field("fp32", k)], zorder=0)
ax.set_xticks(range(32), [f"{k}\n{field('fp32', k)[0].upper()}" for k in ks], fontsize=7)
ax.set_xlim(-0.6, 31.6)
ax.set_ylabel("% of trials")
ax.set_title("binary32: psum register vs GEMM output, pooled over formats (critical %; S/E/M = sign/exponent/mantissa)",
             fontsize=9)
ax.legend(fontsize=7, loc="upper right")
fig.tight_layout()
fig.savefig(FIG / "formats_bits.png", dpi=100)

print(f"{'format':<7}{'bit':>4}{'field':>10}{'n':>6}{'P(critical) [95% CI]':>28}{'P(SDC) [95% CI]':>28}   (bits with a critical event)")
for f in FMTS:
    for k, d in sorted(BITS[("inputs", f)].items(), reverse=True):
        if d["k_crit"]:
            print(f"{f:<7}{k:>4}{field(f, k):>10}{d['n']:>6}{pct(d['crit'], d['crit_ci']):>28}{pct(d['sdc'], d['sdc_ci']):>28}")

# %% [markdown]
# ## Per register
# The systolic PE's three registers, and every pipeline register of the tensor-core unit
# (a multi-pass FP8 step's second-pass registers `emax1`, `aligned1`, `sum1` are pooled
# with the first pass's; `x1` is the first pass's binary32 result).  The share of SDCs a
# register causes is P(SDC | flip in it) x its bits, normalised over the unit.

# %%
def reg_table(rows):
    out = {}
    for f in FMTS:
        rs = [r for r in rows if r[IDX["format"]] == f]
        regs = [r[IDX["register"]] for r in rs]
        base = [g[:-1] if g[-1:].isdigit() and g != "x1" else g for g in regs]
        for g in dict.fromkeys(base):
            out[(f, g)] = rates([r for r, bg in zip(rs, base) if bg == g])
    return out


REG = {"systolic": reg_table(ROWS["inputs"] + ROWS["psum"]), "tensor core": reg_table(ROWS["tc"])}


def pipeline_order(arr):  # register names in pipeline order, second-pass registers pooled
    names = [n[:-1] if n[-1:].isdigit() and n != "x1" else n for f in FMTS for n, _ in arr.registers(f)]
    return [n for n in dict.fromkeys(["a", "w", "prod", "emax", "aligned", "sum", "x1", "psum"] + names) if n in names]


fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw=dict(width_ratios=(3, 7)))
for ax, (arr, table) in zip(axes, REG.items()):
    regs = [g for g in pipeline_order(SYS if arr == "systolic" else TC) if any((f, g) in table for f in FMTS)]
    w = 0.8 / len(FMTS)
    for i, f in enumerate(FMTS):
        xs = np.arange(len(regs)) + (i - (len(FMTS) - 1) / 2) * w
        d = [table.get((f, g)) for g in regs]
        v = np.array([dd["sdc"] * 100 if dd else np.nan for dd in d])
        lo = np.array([dd["sdc_ci"][0] * 100 if dd else np.nan for dd in d])
        hi = np.array([dd["sdc_ci"][1] * 100 if dd else np.nan for dd in d])
        ax.bar(xs, v, w, color=COL[f], label=f, yerr=[v - lo, hi - v], capsize=1.5, error_kw=dict(lw=0.6))
        c = np.array([dd["crit"] * 100 if dd else np.nan for dd in d])
        ax.plot(xs, c, "kv", ms=3, label="critical" if i == 0 else None)
    ax.set_xticks(range(len(regs)), regs)
    ax.set_ylabel("P(SDC | flip in register) %")
    ax.set_title(f"{arr} array 8x8: SDC per register (bars, 95 % CI), critical (triangles)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
fig.savefig(FIG / "formats_registers.png", dpi=100)

print(f"{'array':<12}{'format':<7}{'register':<9}{'bits':>5}{'n':>6}{'P(SDC) [95% CI]':>27}{'P(critical) [95% CI]':>27}{'SDC share':>10}")
for arr, table, a in (("systolic", REG["systolic"], SYS), ("tensor core", REG["tensor core"], TC)):
    for f in FMTS:
        widths = {}
        for n_, w_ in a.registers(f):
            g = n_[:-1] if n_[-1:].isdigit() and n_ != "x1" else n_
            widths[g] = widths.get(g, 0) + w_
        tot = sum(table[(f, g)]["sdc"] * widths[g] for g in widths if (f, g) in table) or 1.0
        for g in widths:
            d = table.get((f, g))
            if d:
                print(f"{arr:<12}{f:<7}{g:<9}{widths[g]:>5}{d['n']:>6}{pct(d['sdc'], d['sdc_ci']):>27}"
                      f"{pct(d['crit'], d['crit_ci']):>27}{100 * d['sdc'] * widths[g] / tot:>9.1f}%")

# %% [markdown]
# ## The founding paper's findings, checked against these numbers
# MPGemmFI (Fang et al., CLUSTER 2024; arXiv 2311.05782) injects into GEMM results and, as
# we read it, reports two qualitative findings: (1) the high-order **exponent** bits are
# the ones that matter, while sign and mantissa flips are largely tolerated; (2) the
# **format** matters through its exponent range: a wider exponent (BF16, TF32: 8 bits)
# lets a high-exponent flip turn a small value into a huge one, where FP16's 5-bit
# exponent bounds the damage.  The cell below tests each statement on the campaigns above
# and prints whether the data support it; a flip of exponent bit e-1 (the top one) of a
# value below 2 multiplies it by 2^(2^(e-1)), printed as the format's "blow-up".

# %%
print("(1) which bits matter (operand registers a, w):")
for f in FMTS:
    tb = BITS[("inputs", f)]
    k_tot = sum(d["k_crit"] for d in tb.values())
    by = {fl: sum(d["k_crit"] for k, d in tb.items() if field(f, k) == fl) for fl in ("sign", "exponent", "mantissa")}
    nb = {fl: sum(1 for k in tb if field(f, k) == fl) for fl in by}
    top = max(tb, key=lambda k: tb[k]["crit"])
    F = simulator.get_format(f)
    msb = F.man_bits + F.exp_bits - 1
    others = [d["crit_ci"][1] for k, d in tb.items() if k != msb]
    sep = tb[msb]["crit_ci"][0] > max(others)
    print(f"  {f}: {k_tot} critical trials; exponent bits ({nb['exponent']} of {F.width}) hold "
          f"{by['exponent']}, mantissa {by['mantissa']}, sign {by['sign']}; highest critical rate at bit {top} "
          f"({field(f, top)}, {'the exponent MSB' if top == msb else 'not the exponent MSB'}: {100 * tb[top]['crit']:.1f} %)"
          f"; exponent MSB {'significantly above every other bit' if sep else 'not separated from the other bits at this sample size'}")
ex_share = sum(sum(d["k_crit"] for k, d in BITS[("inputs", f)].items() if field(f, k) == "exponent") for f in FMTS)
all_crit = sum(sum(d["k_crit"] for d in BITS[("inputs", f)].values()) for f in FMTS)
print(f"  => {ex_share} of {all_crit} critical operand-register trials were exponent-bit flips "
      f"({100 * ex_share / max(all_crit, 1):.0f} %); exponent bits are "
      f"{100 * np.mean([simulator.get_format(f).exp_bits / simulator.get_format(f).width for f in FMTS]):.0f} % of the bits")
msb_top = [f for f in FMTS if max(BITS[("inputs", f)], key=lambda k: BITS[("inputs", f)][k]["crit"])
           == simulator.get_format(f).man_bits + simulator.get_format(f).exp_bits - 1]
F1 = ex_share >= 0.9 * all_crit and len(msb_top) == len(FMTS)
for name in ("psum", "value"):
    tb = BITS[(name, "all")]
    ex = sum(d["k_crit"] for k, d in tb.items() if field("fp32", k) == "exponent")
    tot = sum(d["k_crit"] for d in tb.values())
    print(f"  {name} (binary32): {ex} of {tot} critical trials in exponent bits; top bit "
          f"{max(tb, key=lambda k: tb[k]['crit'])}")

print("\n(2) format and vulnerability (exponent MSB of the operand registers; whole-format rates):")
for f in FMTS:
    F = simulator.get_format(f)
    msb = F.man_bits + F.exp_bits - 1
    d = BITS[("inputs", f)][msb]
    print(f"  {f}: blow-up 2^{2 ** (F.exp_bits - 1):<4} exponent-MSB critical {pct(d['crit'], d['crit_ci'])} (n={d['n']});"
          f" whole register: critical {pct(PER_FMT[('inputs', f)]['crit'], PER_FMT[('inputs', f)]['crit_ci'])},"
          f" SDC {pct(PER_FMT[('inputs', f)]['sdc'], PER_FMT[('inputs', f)]['sdc_ci'])}")


def disjoint(a, b):
    return a[1] < b[0] or b[1] < a[0]


F2 = {}
for a_, b_ in (("bf16", "fp16"), ("tf32", "fp16"), ("e5m2", "e4m3")):
    for what, key in (("exponent-MSB", None), ("whole-register", "inputs")):
        if key is None:
            da = BITS[("inputs", a_)][simulator.get_format(a_).man_bits + simulator.get_format(a_).exp_bits - 1]
            db = BITS[("inputs", b_)][simulator.get_format(b_).man_bits + simulator.get_format(b_).exp_bits - 1]
        else:
            da, db = PER_FMT[(key, a_)], PER_FMT[(key, b_)]
        rel = ">" if da["crit"] > db["crit"] else ("<" if da["crit"] < db["crit"] else "=")
        F2[(a_, b_, what)] = rel == ">" and disjoint(da["crit_ci"], db["crit_ci"])
        print(f"  {what} critical rate {a_} {rel} {b_} ({100 * da['crit']:.2f} % vs {100 * db['crit']:.2f} %): "
              + ("significant (95 % intervals disjoint)" if disjoint(da["crit_ci"], db["crit_ci"])
                 else "not significant at this sample size (intervals overlap)"))

print("\nSummary:")
print(f"  finding (1), high exponent bits matter: {'SUPPORTED' if F1 else 'NOT fully supported'} "
      f"({100 * ex_share / max(all_crit, 1):.0f} % of critical operand flips in exponent bits; the exponent MSB is the "
      f"most critical bit for {len(msb_top)} of {len(FMTS)} formats)")
sup = [f"{a_} > {b_} ({w_})" for (a_, b_, w_), ok in F2.items() if ok]
print("  finding (2), wider exponent => more critical: significant for " + (", ".join(sup) if sup else "no pair")
      + f"; not significant for the other {len(F2) - len(sup)} of {len(F2)} comparisons")

# %% [markdown]
# ## Where the register-level view differs from result-level injection
# Mechanisms that can separate the two views; the cell below measures each one and prints
# which way it goes on these campaigns:
#
# * **Exposure.**  A value-level fault always lands in a computed output; a register flip
#   can land in an idle register or in a value never read again (masked), which pushes
#   P(SDC | fault) down; how far depends on the array's schedule (notebook 2).
# * **Blast radius.**  A result-level flip corrupts exactly one output element.  A flip in
#   the stationary weight register corrupts that weight for every row streamed through it
#   (a column of the output tile) and a flip in the moving operand `a` corrupts every
#   product it meets along its row, which pushes P(SDC | fault) up.  Here a tile is 8 x 8
#   outputs, so at most 8 elements change; with all M rows streamed through one weight
#   load (notebook 2's setting) a weight flip can reach up to M.
# * **Format visibility.**  Value-level faults flip bits of the binary32 result, whatever
#   the input format, so the input format can only act through the data values.  Operand
#   registers hold the input format's own bits, so its exponent width sets what a flip
#   does (the blow-up above).  The tensor core's internal registers (exact products,
#   aligned fixed-point significands, sums) have no single "format" at all.
# * **Timing.**  A flip in `psum` mid-accumulation is followed by further additions, which
#   can round a low-mantissa flip away; a flip of the final output cannot be absorbed.

# %%
print("P(SDC | fault) and P(critical | fault), pooled over formats:")
for name in ("value", "inputs", "psum", "tc"):
    d = rates(ROWS[name])
    print(f"  {name:<7} SDC {pct(d['sdc'], d['sdc_ci'])}   critical {pct(d['crit'], d['crit_ci'])}   (n={d['n']})")
dv = rates(ROWS["value"])
for name in ("inputs", "psum", "tc"):
    d = rates(ROWS[name])
    for what in ("sdc", "crit"):
        rel = "lower" if d[what] < dv[what] else "higher"
        sig = disjoint(d[what + "_ci"], dv[what + "_ci"])
        print(f"  => {name}: P({'SDC' if what == 'sdc' else 'critical'}) per flip is "
              + (f"{rel} than value level (significant)" if sig else "not distinguishable from value level"))
print("output elements changed per SDC trial (mean, max) by register:")
for name, regs in (("value", ("output",)), ("inputs", ("a", "w")), ("psum", ("psum",)), ("tc", ("a", "w", "psum"))):
    for g in regs:
        rs = [r for r in ROWS[name] if r[IDX["register"]] == g and r[IDX["outcome"]] in ("benign_sdc", "critical_sdc", "nan_inf")]
        if rs:
            td = col(rs, "tile_diff")
            print(f"  {name:<7}{g:<7} {td.mean():7.1f} {td.max():6d}   ({len(rs)} SDC trials)")
spread = {}
for name in ("value", "inputs"):
    cs = [PER_FMT[(name, f)] for f in FMTS]
    hi_f = max(FMTS, key=lambda f: PER_FMT[(name, f)]["crit"])
    lo_f = min(FMTS, key=lambda f: PER_FMT[(name, f)]["crit"])
    sig = disjoint(PER_FMT[(name, hi_f)]["crit_ci"], PER_FMT[(name, lo_f)]["crit_ci"])
    print(f"critical rate across formats, {name}: {100 * PER_FMT[(name, lo_f)]['crit']:.2f} % ({lo_f}) .. "
          f"{100 * PER_FMT[(name, hi_f)]['crit']:.2f} % ({hi_f}): "
          + ("formats differ significantly" if sig else "no significant difference between formats at this sample size"))
mant = lambda name: rates([r for r in ROWS[name] if field("fp32", r[IDX["bit"]]) == "mantissa"])
pm, vm = mant("psum"), mant("value")
pe, ve = (rates([r for r in ROWS[n] if field("fp32", r[IDX["bit"]]) == "exponent"]) for n in ("psum", "value"))
print(f"binary32 mantissa flips: SDC {pct(pm['sdc'], pm['sdc_ci'])} in psum vs {pct(vm['sdc'], vm['sdc_ci'])} in the output"
      f" (ratio {pm['sdc'] / max(vm['sdc'], 1e-12):.2f}); exponent flips: {pct(pe['sdc'], pe['sdc_ci'])} vs "
      f"{pct(ve['sdc'], ve['sdc_ci'])} (ratio {pe['sdc'] / max(ve['sdc'], 1e-12):.2f})")
print("  (both ratios include the same dead-cycle dilution of psum flips; a mantissa ratio well below the exponent "
      "ratio is what rounding-away of mid-accumulation flips would look like)")
print(f"notebook time: {time.perf_counter() - T0:.1f} s")

# %% [markdown]
# ## Reading the result
# The "Summary" lines and the "=>" verdicts above are computed from this run's campaigns
# and carry their significance; at small-mode sample sizes a comparison whose intervals
# overlap is reported as undecided rather than as a difference.  `GEMMFI_FULL=1` runs eight
# times the trials on four times the images to settle more of them.
