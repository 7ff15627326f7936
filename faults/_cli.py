"""The ``gemmfi`` command line.

``gemmfi tile``: simulate one GEMM tile on a PE array with one fault and show what
changed.  ``gemmfi campaign run|resume|report``: model fault-injection campaigns into
an SQLite results database, their report (text) and plots (PNG next to the database).
``--model`` takes a shipped model's name or ``MODULE:FACTORY``, a function returning a
:class:`models.Workload` (the module importable, e.g. on ``PYTHONPATH``); ``resume``
and ``report`` take the database positionally or with ``--db``.
``gemmfi campaign run`` with no arguments runs a small default campaign (the CNN on
256 digits, a 16x16 systolic array, fp16, register-level faults, 385 trials for a 5 %
margin at 95 % confidence) into ``gemmfi-campaign.db`` and prints its report.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from models import ACCUMULATORS, INPUT_FORMATS, MODELS
from simulator import Fault, get_format

from ._executor import resume_model_campaign, run_model_campaign
from ._report import model_campaign_report
from ._spec import ModelCampaign, make_array
from ._store import ResultStore, StoreError

__all__ = ["main"]

DEFAULT_DB = "gemmfi-campaign.db"


def _shape(text: str) -> tuple:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ROWSxCOLS such as 16x16, not {text!r}")
    return r, c


def _pair(text: str) -> tuple:
    try:
        r, c = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ROW,COL such as 3,5, not {text!r}")
    return r, c


def _csv(text: str) -> tuple:
    return tuple(v for v in text.split(",") if v)


def _array_args(p, default_shape):
    p.add_argument("--array", type=_shape, default=default_shape, metavar="RxC", help="PE array shape")
    p.add_argument("--profile", default="systolic_fma", help="datapath profile (systolic_fma, hopper, ...)")
    p.add_argument("--dataflow", default="ws", choices=("ws", "os"), help="systolic dataflow")
    p.add_argument("--pipeline-depth", type=int, default=None, help="PE pipeline depth (systolic)")


def _db_args(p):
    p.add_argument("db_path", nargs="?", default=None, metavar="DB",
                   help=f"results database (or --db; default {DEFAULT_DB})")
    p.add_argument("--db", default=None, help="results database (same as the positional DB)")


def _db_of(args) -> str:
    """The database a resume/report names, positionally or with --db."""
    pos, opt = getattr(args, "db_path", None), args.db
    if pos is not None and opt is not None and pos != opt:
        raise ValueError(f"database must be given once, not both {pos!r} and --db {opt!r}")
    return pos or opt or DEFAULT_DB


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gemmfi", description="gemmfi: bit-accurate fault injection into matrix units")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("tile", help="simulate one GEMM tile with one fault and show what changed")
    _array_args(t, (8, 8))
    t.add_argument("--pe", type=_pair, default=(0, 0), metavar="ROW,COL")
    t.add_argument("--register", default="psum")
    t.add_argument("--bit", type=int, default=30)
    t.add_argument("--cycle", type=int, default=12)
    t.add_argument("--kind", default="flip", choices=("flip", "stuck0", "stuck1"))
    t.add_argument("--nbits", type=int, default=1)
    t.add_argument("--duration", type=int, default=None, help="cycles a stuck-at acts (default: to the end)")
    t.add_argument("--mkn", type=lambda s: tuple(int(v) for v in s.split(",")), default=None, metavar="M,K,N",
                   help="GEMM shape (default: rows,2*rows,cols of the array)")
    t.add_argument("--format", default="fp16", help="input format")
    t.add_argument("--accumulator", default="fp32")
    t.add_argument("--seed", type=int, default=0, help="seed of the random operands")

    c = sub.add_parser("campaign", help="model fault-injection campaigns")
    csub = c.add_subparsers(dest="action", required=True)
    r = csub.add_parser("run", help="run (or continue) a campaign and print its report")
    r.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")
    r.add_argument("--model", default="cnn",
                   help="mlp, cnn, transformer, or MODULE:FACTORY (a function returning a models.Workload, its "
                        "module importable, e.g. on PYTHONPATH)")
    _array_args(r, (16, 16))
    r.add_argument("--formats", type=_csv, default=("fp16",), help="input formats, comma separated")
    r.add_argument("--accumulator", default="fp32")
    r.add_argument("--batch", type=int, default=None,
                   help="evaluation examples, the first of the workload's (default: all of them; a shipped model: "
                        "the first 256 test images)")
    r.add_argument("--level", default="register", choices=("register", "value"))
    r.add_argument("--registers", type=_csv, default=None, help="registers to sample (default: all)")
    r.add_argument("--margin", type=float, default=0.05, help="error margin of the sample-size formula")
    r.add_argument("--confidence", type=float, default=0.95)
    r.add_argument("--p", type=float, default=0.5, help="anticipated proportion of the sample-size formula")
    r.add_argument("--trials", type=int, default=None, help="trials per stratum (default: from the formula)")
    r.add_argument("--stratify", default="format", choices=("format", "layer"))
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--tile", type=_shape, default=None, metavar="RxC", help="output tile (default: the array)")
    r.add_argument("--chunk", type=int, default=8, help="images per cached golden sub-run (0: whole batch)")
    r.add_argument("--detector", default=None, metavar="MODULE:FUNCTION", help="protection check on faulty tiles")
    for q in (r, csub.add_parser("resume", help="run the trials a campaign database is missing")):
        if q is not r:
            _db_args(q)
        q.add_argument("--executor", default="process", choices=("process", "serial", "dask"),
                       help="process pool (default), this process, or Dask (needs --scheduler)")
        q.add_argument("--workers", type=int, default=None)
        q.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
        q.add_argument("--max-trials", type=int, default=None, help="stop after this many new trials")
        q.add_argument("--batch-size", type=int, default=None, help="trials per task and per transaction")
        q.add_argument("--no-progress", action="store_true")
        q.add_argument("--no-report", action="store_true")
        q.add_argument("--no-plots", action="store_true")
    rep = csub.add_parser("report", help="print a campaign's report and save its plots")
    _db_args(rep)
    rep.add_argument("--method", default="wilson", choices=("wilson", "clopper-pearson"))
    rep.add_argument("--confidence", type=float, default=None)
    rep.add_argument("--by", type=_csv, default=("format", "layer", "register"),
                     help="groupings: format, layer, register, bit")
    rep.add_argument("--no-plots", action="store_true")
    return ap


def _make_array(args):
    rows, cols = args.array
    return make_array(rows, cols, args.profile, args.dataflow, args.pipeline_depth)


def _fmt_bits(x) -> str:
    w = x.dtype.itemsize * 8
    return f"0x{int(x.view(np.dtype(f'uint{w}'))):0{w // 4}x}"


def _ranges(v) -> str:
    """'3-7, 12, 20-25' of ascending ints."""
    out, v = [], [int(x) for x in v]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[j + 1] == v[j] + 1:
            j += 1
        out.append(f"{v[i]}" if i == j else f"{v[i]}-{v[j]}")
        i = j + 1
    return ", ".join(out[:8]) + (", ..." if len(out) > 8 else "") if out else "none"


def cmd_tile(args, out) -> int:
    arr = _make_array(args)
    m, k, n = args.mkn or (arr.rows, 2 * arr.rows, arr.cols)
    if args.format not in INPUT_FORMATS:
        raise ValueError(f"format must be one of {sorted(INPUT_FORMATS)}, not {args.format!r}")
    if args.accumulator not in ACCUMULATORS:
        raise ValueError(f"accumulator must be one of {sorted(ACCUMULATORS)}, not {args.accumulator!r}")
    in_dt, acc_dt = get_format(args.format).dtype, get_format(args.accumulator).dtype
    rng = np.random.default_rng(args.seed)
    a = rng.standard_normal((m, k)).astype(in_dt)
    b = rng.standard_normal((k, n)).astype(in_dt)
    fin = "tf32" if args.format == "tf32" else None
    c0 = np.zeros((m, n), acc_dt)
    sites = arr.fault_sites(m, k, n, args.format, args.accumulator)
    duration = 1 if args.kind == "flip" else args.duration
    fault = Fault(args.pe, args.register, args.bit, args.cycle, args.kind, args.nbits, duration)
    gold = arr.run(a, b, c0, input_format=fin)
    bad = arr.run(a, b, c0, faults=[fault], input_format=fin)
    regs = ", ".join(f"{name}[{w}]" for name, w, _ in sites.registers)
    print(f"{type(arr).__name__} {arr.rows}x{arr.cols} {arr.profile} {arr.dataflow}: ({m}x{k}) @ ({k}x{n}) "
          f"{args.format} -> {args.accumulator}, {gold.cycles} cycles, {gold.folds} folds", file=out)
    print(f"registers per PE: {regs}; fault sites: {sites.size}", file=out)
    live = sites.live_cycles(args.register, args.pe)
    print(f"fault: {fault}", file=out)
    print(f"{args.register} at PE {args.pe} is live in {len(live)} of {sites.cycles} cycles ({_ranges(live)}); "
          f"cycle {args.cycle} {'is' if args.cycle in set(live.tolist()) else 'is not'} live", file=out)
    w = gold.output.dtype.itemsize * 8
    ub = np.dtype(f"uint{w}")
    diff = np.argwhere(gold.output.view(ub) != bad.output.view(ub))
    if len(diff) == 0:
        print("masked: the faulty tile is bitwise equal to the fault-free one", file=out)
        return 0
    print(f"{len(diff)} of {m * n} outputs changed:", file=out)
    print(f"  {'(i, j)':>10} {'fault-free':>14} {'faulty':>14} {'bits':>12} {'faulty bits':>12}  flipped bits",
          file=out)
    for i, j in diff[:32]:
        g, f = gold.output[i, j], bad.output[i, j]
        x = int(g.view(ub)) ^ int(f.view(ub))
        flipped = [q for q in range(w) if x >> q & 1]
        print(f"  {f'({i}, {j})':>10} {float(g):>14.7g} {float(f):>14.7g} {_fmt_bits(g):>12} {_fmt_bits(f):>12}  "
              f"{flipped}", file=out)
    if len(diff) > 32:
        print(f"  ... {len(diff) - 32} more", file=out)
    changed = np.zeros((m, n), bool)
    changed[tuple(diff.T)] = True
    if m <= 64 and n <= 64:
        print("changed outputs (X):", file=out)
        for i in range(m):
            print("  " + "".join("X" if v else "." for v in changed[i]), file=out)
    return 0


def _campaign_from_args(args):
    tr, tc = args.tile or (None, None)
    return ModelCampaign(model=args.model, array=_make_array(args), formats=args.formats,
                         accumulator=args.accumulator, batch=args.batch, level=args.level,
                         registers=args.registers, margin=args.margin, confidence=args.confidence, p=args.p,
                         trials=args.trials, stratify=args.stratify, seed=args.seed, tile_rows=tr, tile_cols=tc,
                         chunk=args.chunk or None, detector=args.detector)


def _stored_workload(db):
    """The workload of a database's campaign rebuilt from its stored factory, to check
    its digest (None for a shipped model, an in-memory workload or an old database;
    a factory that cannot be imported here is reported on stderr and not checked)."""
    with ResultStore.open(db) as st:
        camp, wmeta = st.campaign, st.workload
    if not wmeta or not isinstance(camp.model, str) or camp.model in MODELS:
        return None
    try:
        return camp.workload()
    except (ValueError, TypeError) as e:
        print(f"gemmfi: note: workload {camp.model!r} not checked against {str(db)!r}: {e}", file=sys.stderr)
        return None


def _report(db, out, by=("format", "layer", "register"), method="wilson", confidence=None, plots=True,
            check=True):
    wl = _stored_workload(db) if check else None
    rep = model_campaign_report(db, confidence=confidence, method=method, workload=wl)
    print(rep.text(by), file=out)
    if plots and rep.done:
        for p in rep.plot():
            print(f"plot: {p}", file=out)


def cmd_campaign(args, out) -> int:
    kw = dict(executor=args.executor, workers=args.workers, scheduler=args.scheduler,
              progress=not args.no_progress, max_trials=args.max_trials, batch_size=args.batch_size)
    if args.executor == "dask" and args.scheduler is None:
        raise ValueError("--scheduler must be a Dask scheduler address (tcp://host:port) for --executor dask, "
                         "not missing")
    if args.action == "run":
        db = args.db
        res = run_model_campaign(_campaign_from_args(args), db, **kw)
    else:
        db = _db_of(args)
        res = resume_model_campaign(db, **kw)
    rate = res.ran / res.seconds if res.seconds > 0 else 0.0
    print(f"{res.ran} trials run in {res.seconds:.1f} s ({rate:.0f}/s, {res.executor}); "
          f"{res.done}/{res.total} stored in {res.path}", file=out)
    if not args.no_report:
        _report(db, out, plots=not args.no_plots, check=False)  # the run checked the workload already
    return 0


def main(argv=None, out=None) -> int:
    """Entry point of the ``gemmfi`` command; returns the exit status (0, or 2 on an error)."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "tile":
            return cmd_tile(args, out)
        if args.action == "report":
            _report(_db_of(args), out, args.by, args.method, args.confidence, not args.no_plots)
            return 0
        return cmd_campaign(args, out)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, StoreError) as e:
        print(f"gemmfi: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
