"""Check the fast path against captured tensor-core results, bit for bit.

Usage::

    python -m simulator.verify PATH.npz [PATH.npz ...] [--profile hopper] [--tiles N]
    python -m simulator.verify DIR [--tiles N]

A DIR holds an ``index.json`` in the MMA-Sim layout (``../shared/reference/mmasim``):
every instruction it lists is mapped to its profile (:data:`INSTRUCTION_PROFILES`),
and each line reads ``NAME SUITE matched/total`` with NAME the file's stem.  For
host-NaN profiles (AMD) a NaN result matches any NaN; how many did so is printed.

Each file holds, per suite, raw-bit arrays ``SUITE.a`` (tiles, 16, K),
``SUITE.b`` (tiles, K, 8), ``SUITE.c`` and ``SUITE.d`` (tiles, 16, 8) with
``D = A @ B + C`` as the hardware computed it; the op is the file's stem (f16f32,
bf16f32, tf32f32, f16f16, e4m3f32, e5m2f32).  Prints ``OP SUITE matched/total`` per
suite and a last line ``TOTAL matched/total``; exits 0 only when every element matches.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import zipfile
from types import MappingProxyType

import numpy as np

import json

from ._formats import get_format
from ._matmul import matmul
from ._profiles import get_profile

__all__ = ["OPS", "INSTRUCTION_PROFILES", "instruction_profile", "verify_dir", "load_suites", "verify_file", "main"]

#: op (a reference file's stem) -> (input format, accumulator format); the arrays'
#: dtypes are the formats' (``Format.dtype``)
OPS = MappingProxyType({
    "f16f32": ("fp16", "fp32"),
    "bf16f32": ("bf16", "fp32"),
    "tf32f32": ("tf32", "fp32"),
    "f16f16": ("fp16", "fp16"),
    "e4m3f32": ("e4m3", "fp32"),
    "e5m2f32": ("e5m2", "fp32"),
})


#: (arch, instruction kind) of an MMA-Sim index entry -> profile name; Hopper follows the
#: H100 silicon (zeros take no part in the exponent choice), not MMA-Sim's convention
INSTRUCTION_PROFILES = MappingProxyType({
    ("Volta", "mma"): "volta", ("Turing", "mma"): "turing", ("Ampere", "mma"): "ampere",
    ("Ada Lovelace", "mma"): "ada", ("Hopper", "mma"): "hopper", ("Hopper", "wgmma"): "hopper_wgmma",
    ("Blackwell", "mma"): "blackwell", ("Blackwell", "tcgen05mma"): "blackwell",
    ("RTX Blackwell", "mma"): "rtx_blackwell",
    ("Blackwell", "mma_block_scale"): "blackwell_mx", ("Blackwell", "tcgen05mma_block_scale"): "blackwell_mx",
    ("RTX Blackwell", "mma_block_scale"): "blackwell_mx",
    ("CDNA1", "mfma"): "cdna1", ("CDNA2", "mfma"): "cdna2", ("CDNA3", "mfma"): "cdna3",
})
# MMA-Sim's format names -> the catalogue's
_MMASIM_FORMATS = {"f32": "fp32", "f16": "fp16"}


def instruction_profile(entry) -> tuple:
    """An index.json entry -> (profile name, variant or None, input format names (a, b))."""
    key = (entry["arch"], entry["instruction"])
    if key not in INSTRUCTION_PROFILES:
        raise ValueError(f"instruction must be one of {sorted(INSTRUCTION_PROFILES)}, not {key!r}")
    fa, fb = (_MMASIM_FORMATS.get(entry[x], entry[x]) for x in ("a_format", "b_format"))
    # CDNA2's bf16 instructions without the _1k suffix pair products as CDNA1 does
    variant = "legacy" if key == ("CDNA2", "mfma") and fa == "bf16" and not entry["qualifier"].endswith("_1k") \
        else None
    return INSTRUCTION_PROFILES[key], variant, (fa, fb)


def _typed(bits, fmt_name):
    """Raw codes -> an array matmul takes (float32 for tf32/fp32, the format's dtype else)."""
    fmt = get_format(fmt_name)
    if fmt.name in ("tf32", "fp32"):
        return bits.astype(np.uint32).view(np.float32)
    return bits.astype(fmt.uint_dtype).view(fmt.dtype)


def verify_dir(folder, tiles=None, suites=None):
    """Check every instruction of an MMA-Sim-layout folder through :func:`matmul`.

    Returns a list of (name, suite, matched, total, nan_matches), one per instruction
    and suite; ``nan_matches`` counts NaN results that matched a NaN of other bits
    (host-NaN profiles only).
    """
    try:
        index = json.loads(open(os.path.join(folder, "index.json")).read())
    except (OSError, ValueError) as e:
        raise ValueError(f"{folder}: no readable index.json ({e})") from e
    if not isinstance(index, dict) or not isinstance(index.get("instructions"), list):
        raise ValueError(f"{folder}: index.json must be an MMA-Sim index (an object with 'instructions'), "
                         f"not {type(index).__name__}")
    rows = []
    for entry in index["instructions"]:
        pname, variant, (fa, fb) = instruction_profile(entry)
        prof = get_profile(pname)
        path = os.path.join(folder, entry["file"])
        name = os.path.splitext(entry["file"])[0]
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(f"{path}: not a readable .npz results file ({e})") from e
        cf, df = (_MMASIM_FORMATS.get(entry[x], entry[x]) for x in ("c_format", "d_format"))
        acc_dt = get_format(df).dtype
        kw = dict(profile=prof, variant=variant)
        if fa in ("tf32", "fp32"):
            kw["input_format"] = fa
        if entry.get("scale_format"):
            kw["scale_format"] = entry["scale_format"]
        for suite in sorted({k.split(".")[0] for k in arrays}):
            if suites is not None and suite not in suites:
                continue
            a, b, c, d = (arrays[f"{suite}.{x}"] for x in "abcd")
            n = a.shape[0] if tiles is None else min(tiles, a.shape[0])
            matched = nan_m = 0
            for t in range(n):
                ct = _typed(c[t], cf).astype(acc_dt)  # an f16 C of an f32 D widens exactly
                if "scale_format" in kw:
                    kw["scale_a"], kw["scale_b"] = arrays[f"{suite}.scale_a"][t], arrays[f"{suite}.scale_b"][t]
                got = matmul(_typed(a[t], fa), _typed(b[t], fb), ct, **kw).view(d.dtype)
                eq = got == d[t]
                if prof.host_nan:
                    fmt = get_format(df)
                    gn, rn = np.isnan(fmt.decode(got)), np.isnan(fmt.decode(d[t]))
                    nan_m += int((gn & rn & ~eq).sum())
                    eq = eq | (gn & rn)
                matched += int(eq.sum())
            rows.append((name, suite, matched, n * d[0].size, nan_m))
    return rows


def load_suites(path):
    """Read a results file -> (op, {suite: (a, b, c, d)}) with typed arrays.

    Raises ValueError naming the file and what is wrong for an unknown op, a
    missing array, inconsistent shapes or a corrupt archive.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: results file must be an existing file, not missing")
    op = os.path.splitext(os.path.basename(path))[0]
    if op not in OPS:
        raise ValueError(f"{path}: the file's stem must name an op in {sorted(OPS)}, not {op!r}")
    in_dt, acc_dt = (get_format(x).dtype for x in OPS[op])
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: results file must be an .npz archive, not a single .npy array")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, zipfile.BadZipFile, EOFError, AttributeError) as e:
        raise ValueError(f"{path}: not a readable .npz results file ({e})") from e
    except ValueError as e:
        raise ValueError(f"{path}: not a readable .npz results file ({e})" if not str(e).startswith(str(path))
                         else str(e)) from e
    suites = {}
    for name in sorted({k.rsplit(".", 1)[0] for k in arrays}):
        try:
            a, b, c, d = (arrays[f"{name}.{x}"] for x in "abcd")
        except KeyError as e:
            raise ValueError(f"{path}: suite {name!r} lacks array {e.args[0]!r}") from None
        if a.ndim != 3 or b.ndim != 3 or c.shape != d.shape or c.ndim != 3 or a.shape[0] != b.shape[0] \
                or a.shape[2] != b.shape[1] or c.shape != (a.shape[0], a.shape[1], b.shape[2]):
            raise ValueError(f"{path}: suite {name!r} has inconsistent shapes "
                             f"a{a.shape} b{b.shape} c{c.shape} d{d.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"{path}: suite {name!r} must hold >= 1 tile, not 0")
        want_in = np.dtype(np.uint32) if op == "tf32f32" else np.dtype(in_dt).itemsize
        want_acc = np.dtype(acc_dt).itemsize
        if (a.dtype.itemsize != np.dtype(want_in).itemsize if op == "tf32f32" else a.dtype.itemsize != want_in) \
                or a.dtype.kind != "u" or b.dtype != a.dtype or c.dtype.itemsize != want_acc \
                or c.dtype.kind != "u" or d.dtype != c.dtype:
            raise ValueError(f"{path}: suite {name!r} has dtypes a={a.dtype} b={b.dtype} c={c.dtype} "
                             f"d={d.dtype}, not the raw-bit dtypes of op {op}")
        suites[name] = (a.view(in_dt), b.view(in_dt), c.view(acc_dt), d)
    if not suites:
        raise ValueError(f"{path}: holds no suites")
    return op, suites


def verify_file(path, profile="hopper", tiles=None):
    """Run every suite of one file; returns {suite: (matched, total)}."""
    op, suites = load_suites(path)
    input_format = OPS[op][0] if OPS[op][0] == "tf32" else None  # float32 arrays: say tf32
    out = {}
    for name, (a, b, c, d) in suites.items():
        n = a.shape[0] if tiles is None else min(tiles, a.shape[0])
        matched = 0
        for t in range(n):
            got = matmul(a[t], b[t], c[t], profile=profile, input_format=input_format)
            matched += int((got.view(d.dtype) == d[t]).sum())
        out[name] = (matched, n * d.shape[1] * d.shape[2])
    return op, out


def _positive(text: str) -> int:
    """argparse type: an int >= 1."""
    try:
        v = int(text)
    except ValueError:
        v = None
    if v is None or v < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, not {text!r}")
    return v


def _is_mmasim_dir(folder) -> bool:
    """Whether a folder's index.json is an MMA-Sim index (an object with 'instructions')."""
    try:
        with open(os.path.join(folder, "index.json")) as fh:
            index = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(index, dict) and "instructions" in index


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.verify", description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="results files (OP.npz)")
    p.add_argument("--profile", default="hopper", help="datapath profile (default: hopper)")
    p.add_argument("--tiles", type=_positive, default=None, help="check only the first N tiles of each suite")
    args = p.parse_args(argv)
    tot_m = tot_n = 0
    paths = []
    for x in args.paths:  # a folder of captures (OP.npz, no MMA-Sim index) stands for its files
        if os.path.isdir(x) and not _is_mmasim_dir(x):
            found = sorted(glob.glob(os.path.join(x, "*.npz")))
            if not found:
                print(f"error: {x}: holds neither an MMA-Sim index.json nor OP.npz results files", file=sys.stderr)
                return 2
            paths.extend(found)
        else:
            paths.append(x)
    args.paths = paths
    dirs = [x for x in args.paths if os.path.isdir(x)]
    if dirs:
        nan_total = 0
        for folder in dirs:
            try:
                rows = verify_dir(folder, args.tiles)
            except (ValueError, TypeError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            for name, suite, m, n, nm in rows:
                print(f"{name} {suite} {m}/{n}" + ("" if m == n else f"  ({100.0 * m / n:.3f} %)")
                      + (f"  [{nm} NaN = NaN]" if nm else ""))
                tot_m += m
                tot_n += n
                nan_total += nm
        if nan_total:
            print(f"# host-NaN profiles: {nan_total} NaN results matched NaNs of other bits")
    for path in (x for x in args.paths if not os.path.isdir(x)):
        try:
            op, res = verify_file(path, args.profile, args.tiles)
        except (ValueError, TypeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for suite, (m, n) in res.items():
            print(f"{op} {suite} {m}/{n}" + ("" if m == n else f"  ({100.0 * m / n:.3f} %)"))
            tot_m += m
            tot_n += n
    print(f"TOTAL {tot_m}/{tot_n}")
    if tot_n == 0:
        print("error: nothing was checked (no results in the files given)", file=sys.stderr)
        return 2
    return 0 if tot_m == tot_n else 1


if __name__ == "__main__":
    sys.exit(main())
