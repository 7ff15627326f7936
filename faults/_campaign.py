"""Fault-injection campaigns: N random single-bit register faults against one GEMM.

A campaign draws faults uniformly over a configuration's fault sites x bits x live
cycles (datapath registers and the protection schemes' check bits and checker
registers alike; :meth:`protection.ProtectedSites.draw`), runs each against one GEMM
on a shared golden run (only the fold and rows a fault touches are recomputed), and
counts outcomes (:data:`protection.PROTECTION_OUTCOMES`): masked, detected-and-corrected,
detected-uncorrected, silent data corruption.  False alarms are counted on fault-free
runs.  Costs (added cycles, added register bits) come with the ratio to the
unprotected array.

Fault i of a campaign depends only on (seed, i), and with ``store`` each finished trial
is appended to a JSON-lines file at once, so a killed campaign resumes where it stopped.
The store's header names the campaign by the configuration, the seed and a digest of
the GEMM itself (the bytes, dtypes and shapes of a, b, c and the input format), so a
store of another GEMM of the same shape is refused; each line carries a digest of its
own fields, checked when the store is read; a partial last line (a kill mid-write) is
dropped with a warning and its trial runs again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from protection import PROTECTION_OUTCOMES as _PROTECTION_OUTCOMES
from protection import ProtectedArray

__all__ = ["CampaignResult", "run_campaign", "compare_schemes", "count_false_alarms", "coverage_table"]


@dataclass(frozen=True)
class CampaignResult:
    """Outcome counts and costs of one campaign.

    Attributes:
        scheme: the protected configuration's label, e.g. ``"parity(psum; flag)"``
            (``"none"``: unprotected).
        n: injections; counts: outcome -> count (read-only mapping).
        false_alarms: fault-free runs that raised an alarm; clean_runs: how many ran.
        base_cycles, cycles: of the GEMM without / with the schemes' stages (no re-runs).
        recompute_cycles: mean cycles re-computing after a detection, per injection.
        base_bits, added_bits: register bits of the array and what the schemes add.
        sites: live fault points (bits x cycles) the faults were drawn from.
        seconds: wall time of the injections.
        by_register: register -> (outcome -> count): where the faults landed.
        miscorrected: injections whose D differs although a code "corrected" a word or
            a re-computation ran (all counted as ``sdc``, unless an alarm still
            reached the system: a column of their own for study).
    """

    scheme: str
    n: int
    counts: MappingProxyType
    false_alarms: int
    clean_runs: int
    base_cycles: int
    cycles: int
    recompute_cycles: float
    base_bits: int
    added_bits: int
    sites: int
    seconds: float
    by_register: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    miscorrected: int = 0

    def fraction(self, outcome: str) -> float:
        """Share of injections with that outcome."""
        if outcome not in _PROTECTION_OUTCOMES:
            raise ValueError(f"outcome must be one of {_PROTECTION_OUTCOMES}, not {outcome!r}")
        return self.counts.get(outcome, 0) / self.n if self.n else 0.0

    @property
    def added_cycles(self) -> int:
        return self.cycles - self.base_cycles

    @property
    def cycles_ratio(self) -> float:
        return self.cycles / self.base_cycles if self.base_cycles else 1.0

    @property
    def bits_ratio(self) -> float:
        return (self.base_bits + self.added_bits) / self.base_bits if self.base_bits else 1.0

    @property
    def rate(self) -> float:
        """Injections per second."""
        return self.n / self.seconds if self.seconds else float("inf")


def _protected(array):
    return array if isinstance(array, ProtectedArray) else ProtectedArray(array, ())


def run_campaign(array, a, b, c=None, *, n: int = 1000, seed: int = 0, input_format=None, golden=None,
                 store: str | None = None, clean=()) -> CampaignResult:
    """Inject n random single-bit transient flips into one GEMM and count outcomes.

    Args:
        array: a SystolicArray / TensorCoreArray (unprotected) or a
            :class:`protection.ProtectedArray`.
        a, b, c: the GEMM (as ``array.run``).
        n: injections (>= 0); seed: the fault stream (fault i depends on (seed, i)).
        golden: a :class:`simulator.ArrayGoldenRun` of this GEMM on the array, to share
            across campaigns (built here when None); one of another GEMM (other
            operands, shape or format) raises ValueError.
        store: JSON-lines file: each trial is appended as it finishes; trials already
            there (same configuration, seed and GEMM: see :func:`gemm_digest`) are not
            re-run; a store of another campaign raises ValueError.
        clean: extra fault-free GEMMs ((a, b, c) tuples) whose false alarms are counted,
            besides this GEMM's own fault-free run.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be an int >= 0, not {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, not {seed!r}")
    _check_gemm(a, b, c)
    parray = _protected(array)
    if golden is None:
        golden = parray.array.golden(a, b, c, input_format=input_format)
    else:
        _check_golden(golden, parray, a, b, c, input_format)
    ev = parray.evaluator(golden)
    M, K, N = golden.shape
    sites = parray.fault_sites(M, K, N, golden.fmt.name, golden.acc_fmt.name)
    done = {}
    header = {"version": _STORE_VERSION, "config": repr(parray), "seed": seed, "shape": [M, K, N],
              "format": golden.fmt.name, "gemm": gemm_digest(a, b, c, input_format)}
    if store is not None:
        done = _load(store, header)
    counts = dict.fromkeys(_PROTECTION_OUTCOMES, 0)
    by_reg = {}
    rec = miscorrected = 0
    t0 = time.perf_counter()
    fh = None
    try:
        for i in range(n):
            if i in done:
                outcome, cyc, reg, mis = done[i]
            else:
                fault = sites.draw(seed, i)
                res = ev.evaluate((fault,))
                outcome, cyc, reg, mis = res.outcome, res.recompute_cycles, fault.register, res.miscorrected
                if store is not None:
                    if fh is None:
                        fh = open(store, "a")
                        if os.path.getsize(store) == 0:
                            fh.write(json.dumps({"header": header}) + "\n")
                    fh.write(json.dumps(_line(i, outcome, int(cyc), reg, mis)) + "\n")
                    fh.flush()
            counts[outcome] += 1
            br = by_reg.setdefault(reg, dict.fromkeys(_PROTECTION_OUTCOMES, 0))
            br[outcome] += 1
            rec += cyc
            miscorrected += bool(mis)
    finally:
        if fh is not None:
            fh.close()
    seconds = time.perf_counter() - t0
    fa = int(bool(ev.false_alarms)) + count_false_alarms(parray, clean, input_format=input_format)
    cost = parray.cost(M, K, N, golden.fmt.name, golden.acc_fmt.name)
    return CampaignResult(parray.label, n, MappingProxyType(counts), fa, 1 + len(clean), cost.base_cycles,
                          cost.cycles, rec / n if n else 0.0, cost.base_bits, cost.added_bits, sites.size, seconds,
                          MappingProxyType({k: MappingProxyType(v) for k, v in by_reg.items()}), miscorrected)


#: Version of the JSON-lines store layout (2: GEMM digest in the header, line digests;
#: 3: miscorrections stored).
_STORE_VERSION = 3


def gemm_digest(a, b, c=None, input_format=None) -> str:
    """SHA-256 (hex, 16 digits) of a GEMM: the dtype, shape and bytes of ``a``, ``b``
    and ``c`` (None: no C) and the input format; the key of a campaign store."""
    h = hashlib.sha256()
    for name, x in (("a", a), ("b", b), ("c", c)):
        if x is None:
            h.update(f"{name}:None;".encode())
            continue
        x = np.ascontiguousarray(x)
        h.update(f"{name}:{x.dtype.str}:{x.shape};".encode())
        h.update(x.tobytes())
    h.update(f"input_format:{input_format};".encode())
    return h.hexdigest()[:16]


def _check_gemm(a, b, c) -> None:
    """Shapes a campaign can run: 2-D a (M, K), b (K, N), M, K, N >= 1."""
    sa, sb = np.shape(a), np.shape(b)
    if len(sa) != 2 or len(sb) != 2:
        raise ValueError(f"a and b must be 2-D (M, K) and (K, N), not shapes {sa} and {sb}")
    if sa[1] != sb[0]:
        raise ValueError(f"b must have K = {sa[1]} rows (a is {sa}), not {sb[0]}")
    for name, v in (("M", sa[0]), ("K", sa[1]), ("N", sb[1])):
        if v < 1:
            raise ValueError(f"{name} must be >= 1 for a fault campaign, not {v} (a {sa}, b {sb})")
    if c is not None and np.shape(c) != (sa[0], sb[1]):
        raise ValueError(f"c must have shape {(sa[0], sb[1])}, not {np.shape(c)}")


def _same_bits(x, y) -> bool:
    x, y = np.asarray(x), np.asarray(y)
    return x.dtype == y.dtype and x.shape == y.shape and np.ascontiguousarray(x).tobytes() == \
        np.ascontiguousarray(y).tobytes()


def _check_golden(golden, parray, a, b, c, input_format) -> None:
    """``golden`` must be the fault-free run of this GEMM on this array."""
    want = (np.shape(a)[0], np.shape(a)[1], np.shape(b)[1])
    if tuple(golden.shape) != want:
        raise ValueError(f"golden must be a run of this GEMM {want}, not of shape {tuple(golden.shape)}")
    if golden.array != parray.array:
        raise ValueError(f"golden must be a run on {parray.array!r}, not on {golden.array!r}")
    same = _same_bits(golden.a, a) and _same_bits(golden.b, b)
    if same and c is not None:
        same = _same_bits(golden.c, np.asarray(c).astype(golden.c.dtype, copy=False))
    elif same:  # no C: the golden run's C must be +0 everywhere
        same = not np.ascontiguousarray(golden.c).view(np.uint8).any()
    if same and input_format is not None and golden.fmt.name != input_format:
        same = False
    if not same:
        raise ValueError("golden must be the fault-free run of these a, b, c (and input_format), not of another "
                         f"GEMM of the same shape {want}")


def _line_digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _line(i, outcome, recompute, register, miscorrected) -> dict:
    x = {"i": i, "outcome": outcome, "recompute": recompute, "register": register, "mis": int(miscorrected)}
    x["sha"] = _line_digest(x)
    return x


def _load(path, header):
    """The trials stored in a JSON-lines store: {i: (outcome, recompute cycles, register,
    miscorrected)}.

    A partial last line (no newline: the writer was killed mid-line) is removed from
    the file with a warning; its trial runs again.  Anything else that is not a line
    this module wrote raises ValueError naming the file and the line."""
    done = {}
    if not os.path.exists(path):
        return done
    with open(path, "rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        warnings.warn(f"store {str(path)!r}: dropped a partial last line ({len(data) - keep} bytes, an interrupted "
                      f"write); its trial runs again", RuntimeWarning, stacklevel=3)
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    stored = first.get("header") if isinstance(first, dict) else None
    if stored != header:
        raise ValueError(f"store must hold trials of this campaign ({header}), not {stored} (in {str(path)!r}: "
                         "use another store path for another campaign)")
    for n, text in enumerate(lines[1:], 2):
        try:
            x = json.loads(text)
            fields = {k: x[k] for k in ("i", "outcome", "recompute", "register", "mis")}
            ok = x.get("sha") == _line_digest(fields) and fields["outcome"] in _PROTECTION_OUTCOMES
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise ValueError(f"store {str(path)!r} line {n} must be a trial this module wrote, not {text[:80]!r} "
                             f"(use another store path or delete this one)")
        done[int(fields["i"])] = (fields["outcome"], int(fields["recompute"]), fields["register"], bool(fields["mis"]))
    return done


def count_false_alarms(array, gemms, *, input_format=None) -> int:
    """Fault-free GEMMs ((a, b, c) tuples) on which a scheme raises an alarm."""
    parray = _protected(array)
    if not parray.schemes:
        return 0
    n = 0
    for g in gemms:
        a, b, c = (tuple(g) + (None,))[:3]
        ev = parray.evaluator(parray.array.golden(a, b, c, input_format=input_format))
        n += bool(ev.false_alarms)
    return n


def compare_schemes(array, schemes, a, b, c=None, *, n: int = 1000, seed: int = 0, input_format=None,
                    clean=()) -> tuple:
    """One campaign on the unprotected array and one per scheme (or tuple of schemes),
    sharing one golden run.  Returns (baseline, *per-scheme) CampaignResults."""
    golden = array.golden(a, b, c, input_format=input_format)
    out = [run_campaign(array, a, b, c, n=n, seed=seed, input_format=input_format, golden=golden)]
    for s in schemes:
        s = s if isinstance(s, tuple) else (s,)
        out.append(run_campaign(ProtectedArray(array, s), a, b, c, n=n, seed=seed, input_format=input_format,
                                golden=golden, clean=clean))
    return tuple(out)


def coverage_table(results) -> str:
    """A Markdown table: scheme x outcome shares x added cycles x added bits (ratios to
    the first row's unprotected array)."""
    head = ("| scheme | masked | corrected | detected | SDC | of which miscorrected | false alarms "
            "| added cycles (ratio) | re-run cycles/inj. | added bits (ratio) | inj./s |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        mis = r.miscorrected / r.n if r.n else 0.0
        lines.append(f"| {r.scheme} | {r.fraction('masked'):.3f} | {r.fraction('corrected'):.3f} | "
                     f"{r.fraction('detected'):.3f} | {r.fraction('sdc'):.3f} | {mis:.3f} | "
                     f"{r.false_alarms}/{r.clean_runs} | "
                     f"{r.added_cycles} ({r.cycles_ratio:.3f}) | {r.recompute_cycles:.0f} | "
                     f"{r.added_bits} ({r.bits_ratio:.3f}) | {r.rate:.0f} |")
    return "\n".join(lines)
