# %% [markdown]
# # One fault, four matrix units: Hopper, CDNA3, Blackwell MX and a TPU-style array
#
# The same GEMM tiles, taken from real models, run on the cycle-level model of four
# accelerators' matrix units, and single-bit transient flips are injected into every
# pipeline register of every PE:
#
# * **Hopper** (`hopper`): NVIDIA tensor-core dot-product units, fp16 and e4m3 operands;
# * **CDNA3** (`cdna3`): AMD matrix-core units, fp16 and e4m3fnuz operands;
# * **Blackwell MX** (`blackwell_mx`): block-scaled MXFP8 (e4m3) and MXFP4 (e2m1), one
#   E8M0 scale per 32 K positions per row of A and column of B; the scales sit in
#   registers of the unit and are fault sites too;
# * **TPU** (`tpu`): a 16x16 weight-stationary systolic array, bf16 operands, exact
#   products, binary32 accumulation along each column.
#
# Tiles (16 rows x 16 columns, all of K): the second convolution of the shipped CNN as
# im2col GEMM (K = 144) on digits test images, and a MiniLM-sized GEMM: the first query
# projection of all-MiniLM-L6-v2 (K = 384) on the retrieval pairs (when `../shared/models`
# or `GEMMFI_MODELS_DIR` holds it; otherwise the notebook says so and uses a second CNN
# tile).  Operands are the models' float32 values, rounded to each format (FP8 and FP4
# per-tensor or per-block scaled into range, as real FP8/MX inference does).
#
# Faults are drawn uniformly over the *live* points of each unit (register bit x PE x
# cycle where the register holds a value that is read later: a flip anywhere else cannot
# change the output, and the live share of each register is shown separately).  A live
# fault is **absorbed** when the output tile is bitwise the fault-free tile (the flipped
# bit was shifted out in alignment, truncated or rounded away by the datapath itself)
# and an **SDC** otherwise.  95 % Wilson intervals.  `GEMMFI_FULL=1`: 8x the faults.

# %%
import os
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import faults
import models
import simulator

T0 = time.perf_counter()
FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
N_FAULTS = 1600 if FULL else 80
TILE = 16


def exact_operands(workload, gemm, rows):
    """float32 operands (A rows, B) of one GEMM of a workload: a tf32 trace on a profile
    that passes float32 operands through unchanged keeps the model's own values."""
    af = models.accelerated(workload.apply, models.Accelerator("systolic_fma", "tf32"))
    a, b, _ = af.trace(workload.params, workload.inputs).operands(gemm)
    return np.asarray(a[0, :rows], np.float32), np.asarray(b[0], np.float32)


cnn = models.get_workload("cnn", n=8)
TILES = {"CNN conv2 (K=144)": exact_operands(cnn, 1, 2 * TILE)}
try:
    minilm = models.minilm_retrieval(n=2)
    TILES["MiniLM Q projection (K=384)"] = exact_operands(minilm, 0, 2 * TILE)
except FileNotFoundError as e:
    print(f"MiniLM not available ({e}); using a second CNN tile instead")
    a, b = TILES["CNN conv2 (K=144)"]
    TILES["CNN conv2, other rows (K=144)"] = (a[TILE:], b)
for name, (a, b) in TILES.items():
    print(f"{name}: A {a.shape}, B {b.shape}, |A| max {np.abs(a).max():.3g}, |B| max {np.abs(b).max():.3g}")

# %% [markdown]
# ## The units and their registers

# %%
def pow2_scale(x, fmt):
    """Per-tensor scale 2**e with amax / 2**e <= the format's largest value."""
    amax = float(np.abs(x).max()) or 1.0
    e = int(np.ceil(np.log2(amax / fmt.max_finite)))
    return e if amax / 2.0 ** e <= fmt.max_finite else e + 1


def to_format(x, fmt_name, block=0, axis=1):
    """x (float32) rounded to a format: fp16/bf16 as is, 8-bit and narrower scaled into
    range (per tensor; or per ``block`` positions along ``axis`` with E8M0 codes, OCP MX)."""
    fmt = simulator.get_format(fmt_name)
    x64 = x.astype(np.float64)
    if fmt.width >= 16:
        return fmt.encode(x64, "rne").view(fmt.dtype), None
    if not block:
        e = pow2_scale(x64, fmt)
        return fmt.encode(np.ldexp(x64, -e), "rne", saturate=True).view(fmt.dtype), None
    xs = np.moveaxis(x64, axis, -1)
    nb = xs.shape[-1] // block
    blocks = xs.reshape(xs.shape[:-1] + (nb, block))
    amax = np.abs(blocks).max(axis=-1)
    _, ex = np.frexp(amax)
    X = np.where(amax > 0, np.clip(ex.astype(np.int64) - 1 - fmt.emax, -127, 127), 0)  # OCP MX shared exponent
    q = fmt.encode(np.ldexp(blocks, -X[..., None]).reshape(xs.shape), "rne", saturate=True)
    codes = (X + 127).astype(np.uint8)
    return np.moveaxis(q, -1, axis).view(fmt.dtype), (codes if axis == 1 else codes.T)


UNITS = [  # (label, array, format, MX block)
    ("Hopper fp16", simulator.TensorCoreArray(TILE, TILE, profile="hopper"), "fp16", 0),
    ("Hopper e4m3", simulator.TensorCoreArray(TILE, TILE, profile="hopper"), "e4m3", 0),
    ("CDNA3 fp16", simulator.TensorCoreArray(TILE, TILE, profile="cdna3"), "fp16", 0),
    ("CDNA3 e4m3fnuz", simulator.TensorCoreArray(TILE, TILE, profile="cdna3"), "e4m3fnuz", 0),
    ("Blackwell MXFP8", simulator.TensorCoreArray(TILE, TILE, profile="blackwell_mx"), "e4m3", 32),
    ("Blackwell MXFP4", simulator.TensorCoreArray(TILE, TILE, profile="blackwell_mx"), "e2m1", 32),
    ("TPU bf16", simulator.SystolicArray(TILE, TILE, profile="tpu", dataflow="ws"), "bf16", 0),
]
def schedule(arr, fmt, blk, k):
    """The unit's schedule of a TILE x k @ k x TILE GEMM (block-scaled: with its scale registers)."""
    kw = dict(scale_block=blk, scale_format="ue8m0") if blk else {}
    return arr.schedule(TILE, k, TILE, input_format=fmt, accumulator="fp32", **kw)


for label, arr, fmt, blk in UNITS:
    regs = ", ".join(f"{r.name} {r.width}" for r in schedule(arr, fmt, blk, 64).registers)
    print(f"{label:<16} {arr.profile}: registers (name bits) {regs}")

# %% [markdown]
# ## Campaigns

# %%
def run_unit(arr, fmt, blk, a32, b32, seed):
    if blk and a32.shape[1] % blk:  # MX scales cover whole blocks of K: zero-pad K (zero products add nothing)
        pad = blk - a32.shape[1] % blk
        a32, b32 = np.pad(a32, ((0, 0), (0, pad))), np.pad(b32, ((0, pad), (0, 0)))
    a, sa = to_format(a32[:TILE], fmt, blk, axis=1)
    b, sb = to_format(b32[:, :TILE], fmt, blk, axis=0)
    kw = dict(scale_a=sa, scale_b=sb, scale_format="ue8m0") if blk else {}
    gold = arr.run(a, b, **kw).output
    want = simulator.matmul(a, b, profile=arr.profile, **kw)
    assert np.array_equal(gold.view(np.uint32), want.view(np.uint32)), "cycle level != fast path"
    sites = simulator.FaultSites(schedule(arr, fmt, blk, a.shape[1]))
    regs = [(r, w) for r, w, _ in sites.registers]
    rows = []
    for i in range(N_FAULTS):
        f = sites.draw(seed, i)
        out = arr.run(a, b, faults=[f], **kw).output
        diff = out.view(np.uint32) != gold.view(np.uint32)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(out.astype(np.float64) - gold) / max(float(np.abs(gold).max()), 1e-30)
        rows.append((f.register, f.bit, bool(diff.any()), float(np.nanmax(err)) if diff.any() else 0.0,
                     bool(~np.isfinite(out).all())))
    live = {}
    for g in sites.groups:
        live[g.register] = live.get(g.register, 0) + g.size
    share = {r: live.get(r, 0) / (w * TILE * TILE * sites.cycles) for r, w in regs}
    return rows, share, regs


RESULTS = {}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for tname, (a32, b32) in TILES.items():
        for k, (label, arr, fmt, blk) in enumerate(UNITS):
            t = time.perf_counter()
            RESULTS[tname, label] = run_unit(arr, fmt, blk, a32, b32, seed=11 + k)
            rows = RESULTS[tname, label][0]
            sdc = sum(r[2] for r in rows)
            lo, hi = faults.wilson_interval(sdc, len(rows))
            print(f"{tname:<30} {label:<16} SDC {100 * sdc / len(rows):5.1f} % [{100 * lo:.1f}, {100 * hi:.1f}] "
                  f"of {len(rows)} live faults ({time.perf_counter() - t:.1f} s)")

# %% [markdown]
# ## How much the datapath absorbs, per register
#
# Bars: the share of live faults that the unit's own alignment, truncation and rounding
# absorb (output bitwise unchanged), per register; above each bar, the register's live
# share (what fraction of its bit-cycles can matter at all).

# %%
fig, axes = plt.subplots(len(TILES), 1, figsize=(13, 4.2 * len(TILES)), squeeze=False)
for ax, tname in zip(axes[:, 0], TILES):
    x0 = 0
    ticks, labels = [], []
    for k, (label, arr, fmt, blk) in enumerate(UNITS):
        rows, share, regs = RESULTS[tname, label]
        for r, _ in regs:
            sel = [x for x in rows if x[0] == r]
            if not sel:
                continue
            n = len(sel)
            ab = sum(not x[2] for x in sel)
            lo, hi = faults.wilson_interval(ab, n)
            ax.bar(x0, ab / n, color=f"C{k}", yerr=[[ab / n - lo], [hi - ab / n]], capsize=2)
            ax.text(x0, 1.02, f"{100 * share[r]:.0f}%", ha="center", fontsize=6, rotation=90)
            ticks.append(x0)
            labels.append(r)
            x0 += 1
        ax.text(x0 - 0.5 * len(regs) - 0.5, -0.32, label, ha="center", fontsize=8, color=f"C{k}",
                transform=ax.get_xaxis_transform())
        x0 += 1
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("live faults absorbed")
    ax.set_title(f"{tname}: absorbed by the datapath (95 % intervals); live share above the bars")
fig.tight_layout()
fig.savefig(FIG / "06_absorbed_per_register.png", dpi=110)

# %% [markdown]
# ## Which bits matter: SDC probability per bit of the partial-sum and operand registers

# %%
fig, axes = plt.subplots(2, len(UNITS), figsize=(3.0 * len(UNITS), 5.5), squeeze=False)
tname = next(iter(TILES))
for k, (label, arr, fmt, blk) in enumerate(UNITS):
    rows, _, reg_list = RESULTS[tname, label]
    regs = dict(reg_list)
    for row, pick in enumerate(("psum", "a")):
        ax = axes[row, k]
        if pick not in regs:
            ax.set_axis_off()
            continue
        w = regs[pick]
        if pick == "a" and isinstance(arr, simulator.TensorCoreArray):
            w = w // simulator.get_profile(arr.profile).rule(fmt).k  # bits of one of the unit's A elements
            w = w if w * simulator.get_profile(arr.profile).rule(fmt).k == regs[pick] else regs[pick]
        n = np.zeros(w)
        s = np.zeros(w)
        for r, bit, sdc, _, _ in rows:
            if r == pick:
                n[bit % w] += 1
                s[bit % w] += sdc
        p = np.where(n > 0, s / np.maximum(n, 1), np.nan)
        ax.bar(np.arange(w), p, color=f"C{k}")
        ax.set_title(f"{label}\n{pick} ({w} bits{' per element' if w != regs[pick] else ''})", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("bit (0 = LSB)", fontsize=7)
axes[0, 0].set_ylabel("P(SDC | live flip)")
axes[1, 0].set_ylabel("P(SDC | live flip)")
fig.suptitle(f"{tname}: SDC probability per bit (few faults per bit in small mode)")
fig.tight_layout()
fig.savefig(FIG / "06_sdc_per_bit.png", dpi=110)

# %% [markdown]
# ## Summary table

# %%
print(f"{'tile':<30} {'unit':<16} {'live faults':>11} {'SDC %':>7} {'95 % CI':>15} {'rel. err > 1e-2':>16} {'NaN/inf':>8}")
for (tname, label), (rows, _, _) in RESULTS.items():
    n = len(rows)
    sdc = sum(r[2] for r in rows)
    big = sum(r[3] > 1e-2 for r in rows)
    nan = sum(r[4] for r in rows)
    lo, hi = faults.wilson_interval(sdc, n)
    print(f"{tname:<30} {label:<16} {n:>11} {100 * sdc / n:>7.1f} {f'[{100 * lo:.1f}, {100 * hi:.1f}]':>15} "
          f"{100 * big / n:>15.1f}% {nan:>8}")
print(f"\nnotebook run time: {time.perf_counter() - T0:.0f} s ({'full' if FULL else 'small'} mode)")
