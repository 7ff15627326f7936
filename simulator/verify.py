"""Check the fast path against captured tensor-core results, bit for bit.

Usage::

    python -m simulator.verify PATH.npz [PATH.npz ...] [--profile hopper] [--tiles N]

Each file holds, per suite, raw-bit arrays ``SUITE.a`` (tiles, 16, K),
``SUITE.b`` (tiles, K, 8), ``SUITE.c`` and ``SUITE.d`` (tiles, 16, 8) with
``D = A @ B + C`` as the hardware computed it; the op is the file's stem (f16f32,
bf16f32, tf32f32, f16f16, e4m3f32, e5m2f32).  Prints ``OP SUITE matched/total`` per
suite and a last line ``TOTAL matched/total``; exits 0 only when every element matches.
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from types import MappingProxyType

import numpy as np

from ._formats import get_format
from ._matmul import matmul

__all__ = ["OPS", "load_suites", "verify_file", "main"]

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


def load_suites(path):
    """Read a results file -> (op, {suite: (a, b, c, d)}) with typed arrays.

    Raises ValueError naming the file and what is wrong for an unknown op, a
    missing array, inconsistent shapes or a corrupt archive.
    """
    op = os.path.splitext(os.path.basename(path))[0]
    if op not in OPS:
        raise ValueError(f"{path}: the file's stem must name an op in {sorted(OPS)}, not {op!r}")
    in_dt, acc_dt = (get_format(x).dtype for x in OPS[op])
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz results file ({e})") from e
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
        out[name] = (matched, n * d[0].size)
    return op, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.verify", description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", help="results files (OP.npz)")
    p.add_argument("--profile", default="hopper", help="datapath profile (default: hopper)")
    p.add_argument("--tiles", type=int, default=None, help="check only the first N tiles of each suite")
    args = p.parse_args(argv)
    tot_m = tot_n = 0
    for path in args.paths:
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
    return 0 if tot_m == tot_n else 1


if __name__ == "__main__":
    sys.exit(main())
