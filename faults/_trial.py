"""The trial runner: one trial of a model campaign, from its site to its result.

This module owns what a trial does and how it is classified.  The faulty tile is
computed by the cycle-level array on the tile's sub-GEMM, A[rows, :] @ B[:, cols]
(value level: one bit of the golden tile flipped); a tile bitwise equal to the golden
tile stops the trial (masked).  Otherwise the tile replaces the golden one and only
the layers after the GEMM are recomputed (:meth:`models.GoldenTrace.inject`), and
only for the images the changed rows belong to: the evaluation batch has a cached
golden run per chunk of ``chunk`` images, checked at start-up to be bitwise the full
batch's run sliced (else the whole batch is recomputed).

Outcomes (:data:`TRIAL_OUTCOMES`), against the workload's golden output (B, ...):
``masked`` (bitwise equal), ``benign_sdc`` (differ, no example critical by the
workload's outcome rule, :meth:`models.Workload.critical`), ``critical_sdc`` (some
example critical), ``nan_inf`` (a NaN or infinity in the output), ``detected`` (an
alarm reached the system and the tile was not silently accepted: a protection
scheme of a :class:`protection.ProtectedArray` alarmed without acting, ``detector``
returned True, or the array's result carries a truthy ``detected``), ``corrected``
(a scheme alarmed or corrected and the tile it delivered equals the golden tile).
A miscorrection -- a code corrected a word, or a re-computation ran, and the tile
still differs -- is classified by its effect (an SDC), never ``corrected`` or
``detected``.  ``effect`` keeps what the outcome would have been with the alarm
ignored (the delivered tile's effect).  A trial's result is a :class:`TrialResult`.
"""
from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models import Accelerator, ReplaceTile, Workload, accelerated
from simulator import Fault

from ._sites import SiteSpace, TrialSite
from ._spec import ModelCampaign

__all__ = ["TRIAL_OUTCOMES", "TrialResult", "TileCheck"]

#: Outcomes of a model-campaign trial (a trial's ``outcome``; ``effect`` never
#: ``"detected"``).  Single-GEMM protection campaigns have their own vocabulary,
#: :data:`protection.PROTECTION_OUTCOMES`.
TRIAL_OUTCOMES = ("masked", "benign_sdc", "critical_sdc", "nan_inf", "detected", "corrected")


class TrialResult(NamedTuple):
    """The result of one trial: one row of the results database's ``trials`` table
    (fields in column order).

    Attributes:
        trial, stratum, format, gemm, layer (the GEMM's name), grp (its group);
        row0, col0, rows, cols: the output tile (value level: the element, 1 x 1);
        register ("output" at value level), bit, pe_row, pe_col, cycle (-1, -1, -1 at
        value level): where the fault landed (:class:`TrialSite`);
        outcome: one of :data:`TRIAL_OUTCOMES`; effect: the outcome had nothing
        detected the fault; tile_diff: elements of the tile that differ from the
        golden tile; top1_changed: examples critical by the workload's outcome rule
        (for ``"top1"``: examples whose top-1 changed, against the labels when the
        workload has them); correct_delta: change in examples right against the labels
        (0 when the outcome has no labels); max_abs_err: largest finite |output error|.
    """

    trial: int
    stratum: int
    format: str
    gemm: int
    layer: str
    grp: int
    row0: int
    col0: int
    rows: int
    cols: int
    register: str
    bit: int
    pe_row: int
    pe_col: int
    cycle: int
    outcome: str
    effect: str
    tile_diff: int
    top1_changed: int
    correct_delta: int
    max_abs_err: float


@dataclass(frozen=True)
class TileCheck:
    """What a detector sees: one faulty tile.

    Attributes:
        a: (m, K) tile operands (input dtype); b: (K, n); d: (m, n) the faulty tile
        (accumulator dtype); result: the :class:`simulator.ArrayResult` (None at value
        level); site: the :class:`TrialSite`.
    """

    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    result: object
    site: TrialSite


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _resolve(path: str):
    mod, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"detector must name an importable function 'module:function', not {path!r} ({e})")
    if not callable(obj):
        raise TypeError(f"detector must be callable, not {type(obj).__name__}")
    return obj


class _FormatRun:
    """Golden runs of the model on one format: the full batch and its chunks."""

    def __init__(self, campaign: ModelCampaign, fmt: str, wl: Workload):
        self.acc = Accelerator(campaign.profile, fmt, campaign.accumulator, scaling=campaign.scaling)
        self.af = accelerated(wl.apply, self.acc)
        params, x = wl.params, wl.inputs
        self.golden = self.af.trace(params, x)
        out = self.golden.outputs
        if not hasattr(out, "shape") or np.ndim(out) < 1 or out.shape[0] != wl.batch:
            raise ValueError(f"the workload's apply must return an array with the batch axis ({wl.batch}, ...), "
                             f"not {type(out).__name__} {getattr(out, 'shape', '')}")
        self.logits = np.asarray(out)
        self.B = wl.batch
        self.ops = [self.golden.operands(g) for g in range(len(self.golden.gemms))]
        self._btiles: dict = {}
        self.chunks, self.cs = None, campaign.chunk
        if campaign.chunk is not None and campaign.chunk < self.B:
            self.chunks = self._make_chunks(campaign.chunk, wl)
            if self.chunks is not None:
                self.golden.drop_intermediates()  # faults recompute on the chunks' traces

    def _make_chunks(self, cs, wl):
        """Golden runs on images [k*cs, (k+1)*cs), or None when their GEMMs are not
        bitwise the full batch's (then faults recompute the whole batch)."""
        B = self.B
        runs = [self.af.trace(wl.params, wl.slice_inputs(k, k + cs)) for k in range(0, B, cs)]
        self.rpi = []
        self.chunk_outputs = []  # each chunk's fault-free outputs (numpy), read by every trial
        tail = 0.0  # largest difference between a chunk's outputs and the full batch's
        for g, site in enumerate(self.golden.gemms):
            if (site.groups * site.M) % B:
                return self._no_chunks(f"GEMM {g} has {site.groups * site.M} rows for {B} images")
            self.rpi.append(site.groups * site.M // B)
        for k, run in enumerate(runs):
            n = min(cs, B - k * cs)
            if len(run.gemms) != len(self.golden.gemms):
                return self._no_chunks("the GEMMs differ with the batch size")
            out = np.asarray(run.outputs)
            self.chunk_outputs.append(out)
            if out.shape != self.logits[k * cs:k * cs + n].shape:
                return self._no_chunks("a chunk's outputs do not have the full batch's shape")
            if not np.array_equal(_bits(out), _bits(self.logits[k * cs:k * cs + n])):
                with np.errstate(invalid="ignore"):
                    d = np.abs(out.astype(np.float64) - self.logits[k * cs:k * cs + n].astype(np.float64))
                tail = max(tail, float(np.nanmax(d)) if np.isfinite(d).any() else np.inf)
            for g, (site, csite) in enumerate(zip(self.golden.gemms, run.gemms)):
                a, b, d = self.ops[g]
                ca, cb, cd = run.operands(g)
                r = self.rpi[g]
                lo, hi = k * cs * r, (k * cs + n) * r
                if (csite.K, csite.N) != (site.K, site.N) or csite.groups * csite.M != n * r:
                    return self._no_chunks(f"GEMM {g}'s shape does not split by image")
                if site.groups > 1 and site.M != csite.M:
                    return self._no_chunks(f"GEMM {g}'s groups do not split by image")
                if not (np.array_equal(_bits(ca.reshape(-1, site.K)), _bits(a.reshape(-1, site.K)[lo:hi]))
                        and np.array_equal(_bits(cd.reshape(-1, site.N)), _bits(d.reshape(-1, site.N)[lo:hi]))):
                    return self._no_chunks(f"GEMM {g}'s rows are not the full batch's")
                if site.groups > 1:
                    g0, g1 = lo // site.M, hi // site.M
                    if not np.array_equal(_bits(cb), _bits(b[g0:g1])):
                        return self._no_chunks(f"GEMM {g}'s B operands are not the full batch's")
                elif not np.array_equal(_bits(cb), _bits(b)):
                    return self._no_chunks(f"GEMM {g}'s B operand depends on the batch")
        if tail:
            # every GEMM's rows are the full batch's: only native ops after them differ (XLA
            # vectorises a reduction by the array's shape, so it can round differently)
            warnings.warn(f"chunked recomputation: the chunks' outputs differ from the full batch's by up to "
                          f"{tail:.3g} (native ops after the GEMMs round differently at batch size {cs}); every "
                          f"GEMM matches bit for bit, and an example a fault leaves unchanged keeps the full "
                          f"batch's output, one it changes takes its chunk's", stacklevel=3)
        return runs

    def _no_chunks(self, why):
        warnings.warn(f"chunked recomputation is off ({why}): faults recompute the whole batch", stacklevel=3)
        return None

    def btile(self, gemm, group, c0, c1):
        key = (gemm, group, c0)
        t = self._btiles.get(key)
        if t is None:
            t = self._btiles[key] = np.ascontiguousarray(self.ops[gemm][1][group, :, c0:c1])
        return t

    def propagate(self, gemm: int, group: int, row0: int, col0: int, tile: np.ndarray) -> np.ndarray:
        """Logits (B, classes) with D[group, row0:row0+m, col0:col0+n] of GEMM ``gemm``
        replaced by ``tile`` (m, n), recomputing only the layers after it."""
        m, n = tile.shape
        if self.chunks is None:
            f = ReplaceTile(gemm, (row0, row0 + m), (col0, col0 + n), lambda *_: tile, group)
            return np.asarray(self.golden.inject([f]))
        site = self.golden.gemms[gemm]
        changed = ~(_bits(tile) == _bits(self.golden.operands(gemm)[2][group, row0:row0 + m, col0:col0 + n])
                    ).all(axis=1)
        rpi, cs = self.rpi[gemm], self.cs
        logits = self.logits.copy()
        flat0 = group * site.M + row0
        rows = np.nonzero(changed)[0]
        for k in np.unique((flat0 + rows) // (cs * rpi)):
            k = int(k)
            lo = max(flat0, k * cs * rpi)
            hi = min(flat0 + m, (k * cs + cs) * rpi)
            run = self.chunks[k]
            cm = run.gemms[gemm].M
            f0 = lo - k * cs * rpi
            g1, r1 = divmod(f0, cm)
            f = ReplaceTile(gemm, (r1, r1 + hi - lo), (col0, col0 + n),
                            (lambda t: (lambda *_: t))(tile[lo - flat0:hi - flat0]), g1)
            out = np.asarray(run.inject([f]))
            gold = self.chunk_outputs[k]
            # examples the fault changed (vs the chunk's own fault-free run) take the chunk's output
            hit = (_bits(out) != _bits(gold)).reshape(len(out), -1).any(axis=1)
            logits[k * cs:k * cs + len(out)][hit] = out[hit]
        return logits


class _Runner:
    """Runs trials of one campaign in this process (golden runs built once).

    ``workload``: the campaign's workload when the caller built it already."""

    def __init__(self, campaign: ModelCampaign, workload: Workload | None = None):
        self.campaign = campaign
        self.workload = wl = workload if workload is not None else campaign.workload()
        self.labels = wl.labels
        self.runs = {}
        for fmt in campaign.formats:
            run = _FormatRun(campaign, fmt, wl)
            run.correct = wl.correct(run.logits)
            self.runs[fmt] = run
        self.space = SiteSpace(campaign, {f: r.golden.gemms for f, r in self.runs.items()})
        self.detector = _resolve(campaign.detector) if campaign.detector else None

    def run(self, trial: int) -> TrialResult:
        """The result of one trial."""
        s = self.space.site(trial)
        run = self.runs[s.format]
        c = self.campaign
        a_all, _, d_all = run.ops[s.gemm]
        r0, r1, c0, c1 = s.row0, s.row0 + s.rows, s.col0, s.col0 + s.cols
        gold = d_all[s.group, r0:r1, c0:c1]
        a = a_all[s.group, r0:r1]
        b = run.btile(s.gemm, s.group, c0, c1)
        alarm = acted = False
        if c.level == "register":
            res = c.array.run(a, b, np.zeros((s.rows, s.cols), gold.dtype),
                              faults=[Fault(s.pe, s.register, s.bit, s.cycle)],
                              input_format="tf32" if s.format == "tf32" else None)
            tile = res.output
            if c.protected:  # a protection.ProtectedResult: judged by protection's one rule
                alarm = res.outcome == "detected"
                acted = res.outcome == "corrected"  # checked against the golden tile below
        else:
            res = None
            tile = gold.copy()
            _bits(tile)[0, 0] ^= _bits(tile).dtype.type(1 << s.bit)
        diff = int((_bits(tile) != _bits(gold)).sum())
        detected = bool(getattr(res, "detected", False))
        if self.detector is not None:
            detected = bool(self.detector(TileCheck(a, b, tile, res, s))) or detected
        if diff == 0:  # stop early: the tile is the golden tile
            effect, top1, dcorrect, err = "masked", 0, 0, 0.0
        else:
            logits = run.propagate(s.gemm, s.group, r0, c0, tile)
            effect, top1, dcorrect, err = self._classify(run, logits)
        if acted and diff == 0:  # corrected: the delivered tile is the golden tile (protection's rule)
            outcome = "corrected"
        else:  # an alarm that reached the system, else the effect (a miscorrection is an SDC)
            outcome = "detected" if detected or alarm else effect
        return TrialResult(trial, s.stratum, s.format, s.gemm, s.layer, s.group, s.row0, s.col0, s.rows, s.cols,
                           s.register, s.bit, s.pe[0], s.pe[1], s.cycle, outcome, effect, diff, top1, dcorrect, err)

    def _classify(self, run, logits):
        gold = run.logits
        if np.array_equal(_bits(logits), _bits(gold)):
            return "masked", 0, 0, 0.0
        crit = self.workload.critical(gold, logits)
        top1 = int(crit.sum())
        now = self.workload.correct(logits)
        dcorrect = 0 if now is None or run.correct is None else now - run.correct
        finite = np.isfinite(logits.astype(np.float64))
        with np.errstate(invalid="ignore", over="ignore"):
            err = float(np.abs(logits.astype(np.float64) - gold.astype(np.float64))[finite].max()) \
                if finite.any() else 0.0
        if not finite.all():
            return "nan_inf", top1, dcorrect, err
        return ("critical_sdc" if top1 else "benign_sdc"), top1, dcorrect, err

    def run_many(self, trials) -> list:
        return [self.run(int(t)) for t in trials]
