"""Print the shipped models' test accuracy natively (fp32) and on the simulated
accelerator (hopper profile, fp32 accumulation) in FP16, BF16, FP8 e4m3 and e5m2.

    python -m models [--retrain]

``--retrain`` first retrains every model deterministically and overwrites the
shipped weights.
"""
from __future__ import annotations

import argparse
import time

from ._train import TABLE_FORMATS, accuracy_table, retrain_all

__all__ = ["main"]


def _format_table(table: dict) -> str:
    """A {model: {format: accuracy}} table as aligned text (percent)."""
    cols = list(next(iter(table.values())))
    lines = [f"{'model':<12}" + "".join(f"{c:>8}" for c in cols)]
    for m, row in table.items():
        lines.append(f"{m:<12}" + "".join(f"{100 * row[c]:>7.2f}%" for c in cols))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m models", description=__doc__.splitlines()[0])
    ap.add_argument("--retrain", action="store_true", help="retrain and overwrite the shipped weights first")
    args = ap.parse_args(argv)
    if args.retrain:
        retrain_all(verbose=False)
    t = time.perf_counter()
    table = accuracy_table()
    print("test accuracy on 360 digits images; fp32 = native JAX, others = hopper profile, "
          "fp32 accumulation")
    print(_format_table(table))
    print(f"({time.perf_counter() - t:.1f} s, {len(TABLE_FORMATS)} formats)")


if __name__ == "__main__":
    main()
