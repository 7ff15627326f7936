"""The ``gemmfi`` command line.

``gemmfi tile``: simulate one GEMM tile on a PE array with one fault and show what
changed.  ``gemmfi campaign run|resume|report``: model fault-injection campaigns into
an SQLite results database, their report (text) and plots (PNG next to the database).
``--model`` takes a shipped model's name or ``MODULE:FACTORY``, a function returning a
:class:`models.Workload` (the module importable, e.g. on ``PYTHONPATH``); ``resume``
and ``report`` take the database positionally or with ``--db``.
``gemmfi campaign run`` with no arguments runs a small default campaign (the CNN on
256 digits, a 16x16 systolic array, fp16, register-level faults, 385 trials for a 5 %
margin at 95 % confidence) into ``gemmfi-campaign.db`` in the current directory and
prints its report.
``gemmfi campaign run --fault-model permanent --fault-rate R --trials N`` runs N chips
(per format and rate), each a sampled fault map of stuck-at bits through which the
whole evaluation set runs; its report is the distribution of the chips' accuracy and
critical fraction (median, 5-95 %) per rate, register and stuck value.

Every option is checked before anything is written: a bad value exits with status 2
and one line ``gemmfi: error: X must be Y, not Z`` (argparse's usage line first for
malformed options), never a traceback.
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
from ._report import CHIP_GROUPINGS, GROUPINGS
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


def _int_at_least(lo: int, what: str = "an int"):
    """An argparse type: an int >= lo."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"must be {what} >= {lo}, not {text!r}")
        return v
    parse.__name__ = f"int >= {lo}"
    return parse


_POSITIVE, _NONNEG = _int_at_least(1), _int_at_least(0)


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = None
    if v is None or not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), not {text!r}")
    return v


def _mkn(text: str) -> tuple:
    try:
        v = tuple(int(x) for x in text.split(","))
    except ValueError:
        v = ()
    if len(v) != 3 or min(v) < 1:
        raise argparse.ArgumentTypeError(f"must be M,K,N (three ints >= 1) such as 16,32,16, not {text!r}")
    return v


def _groupings(text: str) -> tuple:
    v = _csv(text)
    known = tuple(GROUPINGS) + tuple(g for g in CHIP_GROUPINGS if g not in GROUPINGS)
    bad = [g for g in v if g not in known]
    if not v or bad:
        raise argparse.ArgumentTypeError(f"must be groupings among {','.join(known)} (comma separated), "
                                         f"not {text!r}")
    return v


def _rates(text: str) -> tuple:
    """Fault rates: numbers in [0, 1], comma separated."""
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        v = ()
    if not v or not all(0.0 <= x <= 1.0 for x in v):
        raise argparse.ArgumentTypeError(f"must be fractions of faulty PEs in [0, 1] (comma separated) such as "
                                         f"0.01, not {text!r}")
    return v


def _bit_list(text: str) -> tuple:
    try:
        v = tuple(int(x) for x in text.split(","))
    except ValueError:
        v = ()
    if not v or min(v) < 0:
        raise argparse.ArgumentTypeError(f"must be bit positions >= 0 (comma separated) such as 14,15, not {text!r}")
    return v


def _db_args(p) -> None:
    """The results database: a positional path or ``--db`` (the same thing; give one)."""
    p.add_argument("db_path", nargs="?", default=None, metavar="DB",
                   help=f"results database (same as --db; default: {DEFAULT_DB} in the current directory)")
    p.add_argument("--db", default=None, help=f"results database (default: {DEFAULT_DB} in the current directory)")


def _resolve_db(args) -> None:
    if args.db_path is not None and args.db is not None and args.db_path != args.db:
        raise ValueError(f"the database must be given once (DB or --db), not both {args.db_path!r} and {args.db!r}")
    args.db = args.db_path or args.db or DEFAULT_DB


def _array_args(p, default_shape):
    p.add_argument("--array", type=_shape, default=default_shape, metavar="RxC", help="PE array shape")
    p.add_argument("--profile", default="systolic_fma", help="datapath profile (systolic_fma, hopper, ...)")
    p.add_argument("--dataflow", default="ws", choices=("ws", "os"), help="systolic dataflow")
    p.add_argument("--pipeline-depth", type=_POSITIVE, default=None,
                   help="PE pipeline depth (systolic; None: the profile's)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help with each option's default, except None (the help says what None means)."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    fmt = _Help
    ap = argparse.ArgumentParser(prog="gemmfi", description="gemmfi: bit-accurate fault injection into matrix units",
                                 formatter_class=fmt)
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("tile", help="simulate one GEMM tile with one fault and show what changed", formatter_class=fmt,
                       description="Simulate one GEMM tile of random operands on a PE array, once fault-free and "
                                   "once with one fault, and print which outputs changed. Writes nothing.")
    _array_args(t, (8, 8))
    t.add_argument("--pe", type=_pair, default=(0, 0), metavar="ROW,COL", help="the faulty PE")
    t.add_argument("--register", default="psum", help="the faulty register (the output lists the PE's registers)")
    t.add_argument("--bit", type=_NONNEG, default=30, help="first bit of the fault in the register")
    t.add_argument("--cycle", type=_NONNEG, default=12, help="cycle the fault strikes (the output says if it is live)")
    t.add_argument("--kind", default="flip", choices=("flip", "stuck0", "stuck1"), help="fault kind")
    t.add_argument("--nbits", type=_POSITIVE, default=1, help="adjacent bits the fault covers (a burst)")
    t.add_argument("--duration", type=_POSITIVE, default=None, help="cycles a stuck-at acts (None: to the end)")
    t.add_argument("--mkn", type=_mkn, default=None, metavar="M,K,N",
                   help="GEMM shape (None: rows,2*rows,cols of the array)")
    t.add_argument("--format", default="fp16", help="input format")
    t.add_argument("--accumulator", default="fp32", help="accumulator format (fp32 or fp16)")
    t.add_argument("--seed", type=_NONNEG, default=0, help="seed of the random operands")

    c = sub.add_parser("campaign", help="model fault-injection campaigns", formatter_class=fmt)
    csub = c.add_subparsers(dest="action", required=True)
    r = csub.add_parser("run", help="run (or continue) a campaign and print its report", formatter_class=fmt,
                        description="Run a model fault-injection campaign into an SQLite results database "
                                    f"(default: {DEFAULT_DB} in the current directory; an existing one holding the "
                                    "same campaign is continued), then print its report and save its plots as PNG "
                                    "files next to the database (DB_layer.png, DB_register.png, DB_bit.png).")
    _db_args(r)
    r.add_argument("--model", default="cnn",
                   help="mlp, cnn, transformer, minilm-retrieval, or MODULE:FACTORY (a function returning a "
                        "models.Workload, its "
                        "module importable, e.g. on PYTHONPATH)")
    _array_args(r, (16, 16))
    r.add_argument("--formats", type=_csv, default=("fp16",), help="input formats, comma separated")
    r.add_argument("--accumulator", default="fp32", help="accumulator format (fp32 or fp16)")
    r.add_argument("--scaling", default="none",
                   help="FP8 scaling recipe: none, tensor, row or block:N (block: --level value only)")
    r.add_argument("--batch", type=_POSITIVE, default=None,
                   help="evaluation examples, the first of the workload's (None: all of them; a shipped model: "
                        "the first 256 test images)")
    r.add_argument("--level", default="register", choices=("register", "value"),
                   help="register: flips in the PE array's registers; value: flips of one GEMM output")
    r.add_argument("--registers", type=_csv, default=None, help="registers to sample, comma separated (None: all)")
    r.add_argument("--margin", type=_probability, default=0.05, help="error margin of the sample-size formula")
    r.add_argument("--confidence", type=_probability, default=0.95,
                   help="confidence of the sample-size formula and of the report's intervals")
    r.add_argument("--p", type=_probability, default=0.5, help="anticipated proportion of the sample-size formula")
    r.add_argument("--trials", type=_POSITIVE, default=None, help="trials per stratum (None: from the formula)")
    r.add_argument("--stratify", default="format", choices=("format", "layer"),
                   help="one stratum per format, or per format and layer")
    r.add_argument("--seed", type=_NONNEG, default=0, help="campaign seed (trial i's fault depends on it and i)")
    r.add_argument("--tile", type=_shape, default=None, metavar="RxC", help="output tile (None: the array's shape)")
    r.add_argument("--chunk", type=_NONNEG, default=8, help="images per cached golden sub-run (0: whole batch)")
    r.add_argument("--detector", default=None, metavar="MODULE:FUNCTION", help="protection check on faulty tiles")
    r.add_argument("--fault-model", default="transient", choices=("transient", "permanent"),
                   help="transient: one flip per trial; permanent: one faulty chip (stuck-at bits on a fraction "
                        "--fault-rate of the PEs) per trial, running the whole evaluation set")
    r.add_argument("--fault-rate", type=_rates, default=None, metavar="R[,R...]",
                   help="permanent: fraction of faulty PEs per chip, in [0, 1] (several: one stratum each)")
    r.add_argument("--stuck", type=_csv, default=None,
                   help="permanent: stuck values, comma separated (None: stuck0,stuck1)")
    r.add_argument("--bits", type=_bit_list, default=None,
                   help="permanent: bit positions a fault may hit, comma separated (None: every bit)")
    res = csub.add_parser("resume", help="run the trials a campaign database is missing", formatter_class=fmt,
                          description="Run the trials a results database is missing (after a kill or --max-trials), "
                                      "then print its report and save its plots next to the database.")
    _db_args(res)
    for q in (r, res):
        q.add_argument("--executor", default="process", choices=("process", "serial", "dask"),
                       help="process: a local process pool; serial: this process; dask: the cluster at --scheduler")
        q.add_argument("--workers", type=_POSITIVE, default=None, help="pool processes (None: one per CPU)")
        q.add_argument("--scheduler", default=None,
                       help="Dask scheduler address (tcp://host:port): run on that cluster instead")
        q.add_argument("--max-trials", type=_POSITIVE, default=None,
                       help="stop after this many new trials (None: all)")
        q.add_argument("--batch-size", type=_POSITIVE, default=None,
                       help="trials per task and per transaction (None: about 8 tasks per worker)")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        q.add_argument("--no-report", action="store_true", help="do not print the report")
        q.add_argument("--no-plots", action="store_true", help="do not save the report's plots")
    rep = csub.add_parser("report", help="print a campaign's report and save its plots", formatter_class=fmt,
                          description="Print a results database's report (outcome rates per group, SDC and critical "
                                      "rates with confidence intervals, a legend of the outcomes; a permanent-fault "
                                      "campaign: the chips' accuracy and critical fraction, median and 5-95 % range, "
                                      "per rate, register and stuck value) and save its "
                                      "plots as PNG files next to the database. The database is only read.")
    _db_args(rep)
    rep.add_argument("--method", default="wilson", choices=("wilson", "clopper-pearson"), help="interval method")
    rep.add_argument("--confidence", type=_probability, default=None,
                     help="interval confidence (None: the campaign's)")
    rep.add_argument("--by", type=_groupings, default=None,
                     help=f"groupings, comma separated, among {', '.join(GROUPINGS)} (a permanent campaign: "
                          f"{', '.join(CHIP_GROUPINGS)}) (None: format,layer,register; permanent: all)")
    rep.add_argument("--no-plots", action="store_true", help="do not save the plots")
    return ap


def _make_array(args):
    rows, cols = args.array
    return make_array(rows, cols, args.profile, args.dataflow, args.pipeline_depth)


def _fmt_bits(x) -> str:
    w = x.dtype.itemsize * 8
    return f"0x{int(x.view(np.dtype(f'uint{w}'))):0{w // 4}x}"


def _ranges(v) -> str:
    """'3-7, 12, 20-25' of ascending ints (vectorised: live-cycle lists can hold millions)."""
    v = np.asarray(v, np.int64)
    if not len(v):
        return "none"
    breaks = np.flatnonzero(np.diff(v) != 1)
    starts = np.concatenate(([0], breaks + 1))[:9]
    ends = np.concatenate((breaks, [len(v) - 1]))[:9]
    out = [f"{v[i]}" if i == j else f"{v[i]}-{v[j]}" for i, j in zip(starts, ends)]
    return ", ".join(out[:8]) + (", ..." if len(out) > 8 else "")


def _is_in(x: int, v) -> bool:
    """Whether x is in the ascending int array v (binary search)."""
    i = int(np.searchsorted(v, x))
    return i < len(v) and int(v[i]) == x


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
          f"cycle {args.cycle} {'is' if _is_in(args.cycle, live) else 'is not'} live", file=out)
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
    perm = {}
    if args.fault_model == "permanent":
        if args.fault_rate is None:
            raise ValueError("--fault-rate must be given (a fraction of faulty PEs in [0, 1]) with --fault-model "
                             "permanent, not missing")
        if args.trials is None:
            raise ValueError("--trials must be given (chips per rate and format) with --fault-model permanent, "
                             "not missing")
        if args.level != "register":
            raise ValueError(f"--level must be register with --fault-model permanent, not {args.level}")
        rate = args.fault_rate[0] if len(args.fault_rate) == 1 else args.fault_rate
        perm = dict(fault_model="permanent", fault_rate=rate, bits=args.bits, chunk=None)
        if args.stuck is not None:
            perm["stuck"] = args.stuck
    else:
        for opt, v in (("--fault-rate", args.fault_rate), ("--stuck", args.stuck), ("--bits", args.bits)):
            if v is not None:
                raise ValueError(f"{opt} must not be given with --fault-model transient (it sets permanent "
                                 f"faults), not {','.join(map(str, v))}")
    kw = dict(chunk=args.chunk or None)
    kw.update(perm)
    return ModelCampaign(model=args.model, array=_make_array(args), formats=args.formats,
                         accumulator=args.accumulator, batch=args.batch, level=args.level,
                         registers=args.registers, margin=args.margin, confidence=args.confidence, p=args.p,
                         trials=args.trials, stratify=args.stratify, seed=args.seed, tile_rows=tr, tile_cols=tc,
                         detector=args.detector, scaling=args.scaling, **kw)


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


def _report(db, out, by=None, method="wilson", confidence=None, plots=True, check=True):
    wl = _stored_workload(db) if check else None
    rep = model_campaign_report(db, confidence=confidence, method=method, workload=wl)
    if by is None and not rep.campaign.permanent:
        by = ("format", "layer", "register")
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
        db = args.db
        res = resume_model_campaign(db, **kw)
    rate = res.ran / res.seconds if res.seconds > 0 else 0.0
    speed = f"{rate:.0f}" if rate >= 10 or not rate else f"{rate:.2g}"  # chips run at a few per second
    print(f"{res.ran} trials run in {res.seconds:.1f} s ({speed}/s, {res.executor}); "
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
        _resolve_db(args)
        if args.action == "report":
            _report(args.db, out, args.by, args.method, args.confidence, not args.no_plots)
            return 0
        return cmd_campaign(args, out)
    except (ValueError, TypeError, OSError, StoreError) as e:
        # OSError: a missing or unwritable file, an unreachable scheduler (ConnectionError)
        print(f"gemmfi: error: {'; '.join(str(e).splitlines())}", file=sys.stderr)  # one line
        return 2


if __name__ == "__main__":
    sys.exit(main())
