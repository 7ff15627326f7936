# %% [markdown]
# # One tile, one fault
#
# A single bit flip in one register of one PE of an 8x8 weight-stationary systolic array
# (scalar binary32 FMA PEs, fp16 inputs), followed cycle by cycle through the array, and
# compared with the founding paper's result-level injection (a flip of the same bit of the
# output element). Set `GEMMFI_FULL=1` for a larger tile and the full bit sweep.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import faults
import simulator

FULL = os.environ.get("GEMMFI_FULL") == "1"
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
R = C = 8
M, K, N = (64, 8, 8) if FULL else (16, 8, 8)
rng = np.random.default_rng(0)
a = rng.standard_normal((M, K)).astype(np.float16)
b = rng.standard_normal((K, N)).astype(np.float16)
array = simulator.SystolicArray(R, C, dataflow="ws", profile="systolic_fma")
sites = array.fault_sites(M, K, N)
print("registers (name, bits, stationary):", sites.registers)
print("cycles:", sites.cycles, " fault space (register bits x PEs x cycles):", sites.size)

# %% [markdown]
# ## The fault
# PE (3, 5), register `psum` (the binary32 partial sum leaving the PE), bit 30 (the top
# exponent bit), at a cycle when that register holds a live partial sum.

# %%
pe, reg, bit = (3, 5), "psum", 30
live = sites.live_cycles(reg, pe)
cycle = int(live[len(live) // 2])
fault = faults.Fault(pe=pe, register=reg, bit=bit, cycle=cycle, kind="flip")
golden = array.run(a, b, trace=("psum", "a", "w"))
faulty = array.run(a, b, faults=[fault], trace=("psum", "a", "w"))
assert np.array_equal(golden.output, simulator.matmul(a, b, profile="systolic_fma"))
changed = np.argwhere(faulty.output.view(np.uint32) != golden.output.view(np.uint32))
print("live cycles of psum at", pe, ":", live.min(), "..", live.max(), "-> fault at cycle", cycle)
print("output elements changed:", [tuple(x) for x in changed])
for i, j in changed:
    print(f"  D[{i},{j}]: {golden.output[i, j]!r} -> {faulty.output[i, j]!r}")

# %% [markdown]
# ## Watching it travel
# Each panel is one cycle; a cell is dark where the PE's `psum` register holds different
# bits in the faulty run than in the fault-free one. The corrupted partial sum moves one
# row down per cycle in its column and leaves the array at the bottom.

# %%
diff = (faulty.trace["psum"] != golden.trace["psum"]).any(axis=-1)  # (cycles, R, C)
hot = [t for t in range(diff.shape[0]) if diff[t].any()]
show = list(range(max(0, cycle - 1), min(diff.shape[0], cycle + R - pe[0] + 2)))
fig, axes = plt.subplots(1, len(show), figsize=(1.6 * len(show), 2.0))
for ax, t in zip(np.atleast_1d(axes), show):
    ax.imshow(diff[t], cmap="Greys", vmin=0, vmax=1)
    ax.set_title(f"cycle {t}", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])
fig.suptitle(f"psum differs from the fault-free run (flip of bit {bit} at PE {pe}, cycle {cycle})", fontsize=9)
fig.tight_layout()
fig.savefig(FIG / "one_tile_propagation.png", dpi=110)
print("cycles with a corrupted psum:", hot)

# %% [markdown]
# ## Register-level versus result-level
# The same bit of the output element that the register fault reached, flipped after the GEMM
# (the founding paper's method), and every bit position of the `psum` register at the same
# site and cycle: how far does the output move?

# %%
i, j = (int(changed[0][0]), int(changed[0][1])) if len(changed) else (0, pe[1])
res_level = array.run(a, b, faults=[faults.OutputFault(index=(i, j), bit=bit)])
print(f"result-level flip of bit {bit} of D[{i},{j}]: {golden.output[i, j]!r} -> {res_level.output[i, j]!r}")

bits = range(32) if FULL else range(16, 32)
rel_reg, rel_out = [], []
g = float(golden.output[i, j])
for bb in bits:
    d_reg = array.run(a, b, faults=[faults.Fault(pe=pe, register=reg, bit=bb, cycle=cycle)]).output
    d_out = array.run(a, b, faults=[faults.OutputFault(index=(i, j), bit=bb)]).output
    rel_reg.append(abs(float(d_reg[i, j]) - g) / abs(g) if np.isfinite(d_reg[i, j]) else np.inf)
    rel_out.append(abs(float(d_out[i, j]) - g) / abs(g) if np.isfinite(d_out[i, j]) else np.inf)

fig, ax = plt.subplots(figsize=(7, 3))
x = np.array(list(bits))
ax.bar(x - 0.2, np.minimum(rel_reg, 1e30), 0.4, label=f"register {reg} at PE {pe}, cycle {cycle}")
ax.bar(x + 0.2, np.minimum(rel_out, 1e30), 0.4, label=f"result-level, D[{i},{j}]")
ax.set_yscale("log")
ax.set_xlabel("bit position (binary32)")
ax.set_ylabel("relative error of D[i,j]")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG / "one_tile_bits.png", dpi=110)
for bb, r1, r2 in zip(bits, rel_reg, rel_out):
    print(f"bit {bb:2d}: register-level {r1:10.3e}   result-level {r2:10.3e}")

# %% [markdown]
# The register-level flip lands in a partial sum that still has K-steps to accumulate, so its
# error is the flip's magnitude relative to the partial sum at that cycle, carried through
# the remaining additions; the result-level flip scales with the final value. Exponent bits
# (23-30) dominate both; a flip of the partial sum's low mantissa bits is often absorbed by
# the later binary32 rounding.
