"""Vulnerability reports of a campaign's results database, with confidence intervals.

Each trial weighs ``population / trials`` of its stratum, so groups that span strata
(a format's rate under layer stratification) are population-weighted estimates; a
rate's interval uses the effective sample size ``(sum w)^2 / sum w^2`` (Kish), which
is the plain count when the weights are equal.

A permanent-fault campaign (one chip per trial) is summarised as a distribution over
chips instead (:class:`ChipReport`): per format and rate, register and stuck value,
the median and the 5-95 % range (linear-interpolated percentiles) of the chips'
accuracy and of their fraction of critical examples.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from models import Workload

from ._chip_trial import CHIP_OUTCOMES
from ._trial import TRIAL_OUTCOMES
from ._stats import CI_METHODS, proportion_interval
from ._store import ResultStore

__all__ = ["CampaignReport", "ReportRow", "model_campaign_report", "GROUPINGS", "OUTCOME_LEGEND", "ChipReport",
           "ChipRow", "CHIP_GROUPINGS"]

#: What each outcome of :data:`faults.TRIAL_OUTCOMES` and each summary column of a
#: report means; :meth:`CampaignReport.text` prints it under the tables.
OUTCOME_LEGEND = MappingProxyType({
    "masked": "the model's output bitwise equal to the fault-free run's (no alarm was needed)",
    "benign_sdc": "silent data corruption: outputs differ, no example critical by the workload's outcome rule",
    "critical_sdc": "silent data corruption: some example critical (top1: its top-1 class changed or went wrong)",
    "nan_inf": "a NaN or infinity in the outputs",
    "detected": "an alarm reached the system (a protection scheme or --detector) and the tile was not restored",
    "corrected": "a protection scheme acted and the delivered tile equals the fault-free one",
    "SDC": "benign_sdc + critical_sdc + nan_inf, with its confidence interval",
    "critical": "critical_sdc + nan_inf, with its confidence interval",
})

#: Report groupings: name -> the :class:`faults.TrialResult` fields that form a group's key.
GROUPINGS = MappingProxyType({"format": ("format",), "layer": ("format", "layer"),
                              "register": ("format", "register"), "bit": ("format", "register", "bit")})


@dataclass(frozen=True)
class ReportRow:
    """One group of trials.

    Attributes:
        key: the group's values of the grouping's columns.
        n: trials; rates: outcome -> estimated fraction (population-weighted);
        sdc: fraction with an undetected corrupted output (benign + critical + NaN/Inf),
        sdc_ci: its (lo, hi); critical: critical SDC + NaN/Inf fraction (a wrong or
        non-finite prediction), critical_ci: its (lo, hi).
    """

    key: tuple
    n: int
    rates: dict
    sdc: float
    sdc_ci: tuple
    critical: float
    critical_ci: tuple


@dataclass(frozen=True)
class CampaignReport:
    """A campaign's results summarised by :data:`GROUPINGS`.

    Attributes:
        path: the database; campaign: its :class:`faults.ModelCampaign`;
        total, done: trials planned and stored; confidence, method: of the intervals;
        tables: grouping name -> tuple of :class:`ReportRow`.
        workload: the stored workload description (ref, name, digest, batch,
            outcome) or None (a database from before workloads).
    """

    path: Path
    campaign: object
    total: int
    done: int
    confidence: float
    method: str
    tables: dict
    workload: dict | None = None

    def text(self, groupings=("format", "layer", "register")) -> str:
        """A plain-text table per grouping."""
        c = self.campaign
        pct = int(round(self.confidence * 100))
        wl = self.workload or {}
        batch = wl.get("batch", c.batch)
        what = f"{c.model_name} on {batch} images" if not wl else (
            f"{wl.get('name')} ({c.model_name}, digest {wl.get('digest')}, outcome {wl.get('outcome')}) "
            f"on {batch} examples")
        arr = c.array.array if c.protected else c.array
        prot = f" protected by {c.array.label}" if c.protected else ""
        scaled = "" if c.scaling == "none" else f" (scaling {c.scaling})"
        lines = [f"campaign {c.digest}: {what}, {type(arr).__name__} "
                 f"{arr.rows}x{arr.cols} {arr.profile}{prot}, {c.level}-level faults, "
                 f"formats {','.join(c.formats)}{scaled}; {self.done}/{self.total} trials; "
                 f"{pct}% {self.method} intervals"]
        groupings = _check_groupings(groupings)
        width = {o: max(8, len(o)) for o in TRIAL_OUTCOMES}  # whole outcome names, never cut
        for g in groupings:
            rows = self.tables[g]
            lines.append("")
            head = f"{'/'.join(GROUPINGS[g]):<40} {'n':>6}  " + " ".join(f"{o:>{width[o]}}" for o in TRIAL_OUTCOMES)
            lines.append(head + f"  {'SDC [CI]':>22}  {'critical [CI]':>22}")
            for r in rows:
                key = "/".join(str(k) for k in r.key)
                rates = " ".join(f"{f'{100 * r.rates[o]:.2f}%':>{width[o]}}" for o in TRIAL_OUTCOMES)
                lines.append(f"{key[:40]:<40} {r.n:>6}  {rates}  "
                             f"{_ci(r.sdc, r.sdc_ci):>22}  {_ci(r.critical, r.critical_ci):>22}")
        lines.append("")
        lines.append("outcomes (% of trials, population-weighted; intervals at the confidence above):")
        lines.extend(f"  {k:<13} {v}" for k, v in OUTCOME_LEGEND.items())
        return "\n".join(lines)

    def plot(self, directory=None) -> list:
        """Bar charts (per layer, per register) and per-bit curves with error bars,
        saved as PNG next to the database (or in ``directory``); returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = []
        base = Path(directory) if directory else self.path.parent
        stem = self.path.stem
        for g in ("layer", "register"):
            rows = self.tables[g]
            if not rows:
                continue
            fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) + 2), 4))
            x = np.arange(len(rows))
            for off, (name, get, ci) in zip((-0.2, 0.2), (("SDC", "sdc", "sdc_ci"),
                                                          ("critical", "critical", "critical_ci"))):
                v = np.array([getattr(r, get) for r in rows]) * 100
                lo = np.array([getattr(r, ci)[0] for r in rows]) * 100
                hi = np.array([getattr(r, ci)[1] for r in rows]) * 100
                ax.bar(x + off, v, 0.4, yerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)], capsize=3, label=name)
            ax.set_xticks(x, ["/".join(str(k) for k in r.key).replace("/conv_general_dilated", "")
                              .replace("/dot_general", "") for r in rows], rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("% of trials")
            ax.set_title(f"vulnerability per {g} ({int(self.confidence * 100)}% CI)")
            ax.legend()
            fig.tight_layout()
            p = base / f"{stem}_{g}.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            out.append(p)
        rows = self.tables["bit"]
        if rows:
            fig, ax = plt.subplots(figsize=(7, 4))
            series: dict = {}
            for r in rows:
                series.setdefault(r.key[:2], []).append(r)
            for (fmt, reg), rs in series.items():
                b = np.array([r.key[2] for r in rs])
                v = np.array([r.sdc for r in rs]) * 100
                lo = np.array([r.sdc_ci[0] for r in rs]) * 100
                hi = np.array([r.sdc_ci[1] for r in rs]) * 100
                ax.errorbar(b, v, yerr=[np.maximum(v - lo, 0), np.maximum(hi - v, 0)], marker="o", ms=3, capsize=2, label=f"{fmt} {reg}")
            ax.set_xlabel("bit position")
            ax.set_ylabel("SDC % of trials")
            ax.set_title("SDC rate per bit position")
            ax.legend(fontsize=7)
            fig.tight_layout()
            p = base / f"{stem}_bit.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            out.append(p)
        return out


def _check_groupings(groupings, allowed=GROUPINGS, what="") -> tuple:
    if isinstance(groupings, str):
        groupings = (groupings,)
    if not isinstance(groupings, (tuple, list)) or not groupings:
        raise TypeError(f"groupings must be a non-empty tuple of str, not {groupings!r}")
    bad = [g for g in groupings if g not in allowed]
    if bad:
        raise ValueError(f"groupings must be among {tuple(allowed)}{what}, not {bad}")
    return tuple(groupings)


#: Groupings of a permanent campaign's chips: name -> the :class:`faults.ChipResult`
#: fields that form a group's key.
CHIP_GROUPINGS = MappingProxyType({"rate": ("format", "rate"), "register": ("format", "rate", "register"),
                                   "stuck": ("format", "rate", "register", "stuck")})

#: What a chip report's columns mean (printed under its tables).
CHIP_LEGEND = MappingProxyType({
    "chips": "chips (fault maps) in the group; each ran the whole evaluation set",
    "faulty PEs": "median faulty PEs per chip (round(rate * rows * cols))",
    "accuracy": "the chips' accuracy against the labels: median [5th, 95th percentile] over chips",
    "critical": "the chips' fraction of critical examples (the workload's outcome rule against the fault-free "
                "output): median [5th, 95th percentile]",
    "masked/SDC/NaN": "chips whose output is bitwise fault-free / differs (finite) / holds a NaN or infinity",
})


def _dist(v) -> tuple:
    """(median, 5th, 95th percentile) of the finite values (None when there are none)."""
    v = np.asarray([x for x in v if x is not None], np.float64)
    if not len(v):
        return None
    lo, med, hi = np.percentile(v, [5, 50, 95])
    return float(med), float(lo), float(hi)


@dataclass(frozen=True)
class ChipRow:
    """One group of chips of a permanent campaign.

    Attributes:
        key: the group's values of the grouping's columns; n: chips;
        faulty_pes: median faulty PEs per chip; accuracy: (median, 5th, 95th
        percentile) of the chips' accuracy, or None (no labels); critical: the same
        of their fraction of critical examples; outcomes: outcome
        (:data:`faults.CHIP_OUTCOMES`) -> chips.
    """

    key: tuple
    n: int
    faulty_pes: float
    accuracy: tuple | None
    critical: tuple
    outcomes: dict


def _pct3(d) -> str:
    if d is None:
        return "n/a"
    med, lo, hi = d
    return f"{100 * med:6.2f}% [{100 * lo:6.2f},{100 * hi:6.2f}]"


@dataclass(frozen=True)
class ChipReport:
    """A permanent campaign's chips summarised by :data:`CHIP_GROUPINGS`.

    Attributes:
        path, campaign, total, done (chips planned and stored), workload (as
        :class:`CampaignReport`); fault_free: format -> the fault-free accelerator's
        accuracy (None: no labels, or no chip stored yet); tables: grouping name ->
        tuple of :class:`ChipRow`.
    """

    path: Path
    campaign: object
    total: int
    done: int
    fault_free: dict
    tables: dict
    workload: dict | None = None

    def text(self, groupings=None) -> str:
        """A plain-text table per grouping (None: all of :data:`CHIP_GROUPINGS`)."""
        c = self.campaign
        wl = self.workload or {}
        batch = wl.get("batch", c.batch)
        what = f"{c.model_name} on {batch} images" if not wl else (
            f"{wl.get('name')} ({c.model_name}, digest {wl.get('digest')}, outcome {wl.get('outcome')}) "
            f"on {batch} examples")
        arr = c.array
        rates = ",".join(f"{r:g}" for r in c.fault_rates)
        bits = "all bits" if c.bits is None else "bits " + ",".join(map(str, c.bits))
        lines = [f"campaign {c.digest}: {what}, {type(arr).__name__} {arr.rows}x{arr.cols} {arr.profile} "
                 f"{getattr(arr, 'dataflow', 'ws')}, permanent faults (stuck-at, {bits}) at rates {rates}, formats "
                 f"{','.join(c.formats)}; {self.done}/{self.total} chips"]
        ff = ", ".join(f"{f} {'n/a' if v is None else f'{100 * v:.2f}%'}" for f, v in self.fault_free.items())
        lines.append(f"fault-free accuracy: {ff or 'n/a (no chip stored)'}")
        groupings = CHIP_GROUPINGS if groupings is None else _check_groupings(
            groupings, CHIP_GROUPINGS, " for a permanent-fault campaign")
        for g in groupings:
            lines.append("")
            lines.append(f"{'/'.join(CHIP_GROUPINGS[g]):<30} {'chips':>6} {'faulty PEs':>10}  "
                         f"{'accuracy: median [5%, 95%]':>28}  {'critical: median [5%, 95%]':>28}  "
                         f"{'masked/SDC/NaN':>14}")
            for r in self.tables[g]:
                key = "/".join(f"{k:g}" if isinstance(k, float) else str(k) for k in r.key)
                o = r.outcomes
                counts = f"{o['masked']}/{o['benign_sdc'] + o['critical_sdc']}/{o['nan_inf']}"
                lines.append(f"{key[:30]:<30} {r.n:>6} {r.faulty_pes:>10g}  {_pct3(r.accuracy):>28}  "
                             f"{_pct3(r.critical):>28}  {counts:>14}")
        lines.append("")
        lines.append("columns (the distribution over chips):")
        lines.extend(f"  {k:<15} {v}" for k, v in CHIP_LEGEND.items())
        return "\n".join(lines)

    def plot(self, directory=None) -> list:
        """Accuracy (or, without labels, critical fraction) per rate and register:
        median with the 5-95 % range as error bars, saved as ``DB_chips.png`` next to
        the database (or in ``directory``); returns the paths."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.tables["register"]
        if not rows:
            return []
        use_acc = all(r.accuracy is not None for r in rows)
        fig, ax = plt.subplots(figsize=(7, 4))
        series: dict = {}
        for r in rows:
            series.setdefault((r.key[0], r.key[2]), []).append(r)
        rates = sorted({r.key[1] for r in rows})
        pos = {v: i for i, v in enumerate(rates)}  # rates side by side (they may span decades)
        for k, ((fmt, reg), rs) in enumerate(series.items()):
            x = np.array([pos[r.key[1]] for r in rs]) + 0.6 * (k + 0.5) / len(series) - 0.3
            d = np.array([r.accuracy if use_acc else r.critical for r in rs]) * 100
            ax.errorbar(x, d[:, 0], yerr=[d[:, 0] - d[:, 1], d[:, 2] - d[:, 0]], marker="o", ms=4, capsize=3,
                        ls="none" if len(rates) == 1 else "-", label=f"{fmt} {reg}")
        ax.set_xticks(range(len(rates)), [f"{100 * v:g} %" for v in rates])
        ax.set_xlim(-0.5, len(rates) - 0.5)
        ax.set_xlabel("faulty PEs")
        ax.set_ylabel("accuracy (%)" if use_acc else "critical examples (%)")
        ax.set_title("chips: median and 5-95 % range")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = (Path(directory) if directory else self.path.parent) / f"{self.path.stem}_chips.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        return [p]


def _chip_report(path, rows, campaign, total, wmeta) -> ChipReport:
    fault_free = {}
    for r in rows:
        fault_free.setdefault(r.format, r.fault_free_accuracy)
    tables = {}
    for g, cols in CHIP_GROUPINGS.items():
        groups: dict = {}
        for r in rows:
            groups.setdefault(tuple(getattr(r, c) for c in cols), []).append(r)
        out = []
        for key in sorted(groups):
            rs = groups[key]
            outcomes = {o: sum(r.outcome == o for r in rs) for o in CHIP_OUTCOMES}
            out.append(ChipRow(key, len(rs), float(np.median([r.faulty_pes for r in rs])),
                               _dist([r.accuracy for r in rs]), _dist([r.critical_frac for r in rs]), outcomes))
        tables[g] = tuple(out)
    return ChipReport(Path(path), campaign, total, len(rows), fault_free, tables, wmeta)


def _ci(v, ci):
    return f"{100 * v:5.1f}% [{100 * ci[0]:4.1f},{100 * ci[1]:5.1f}]"


def model_campaign_report(path, confidence: float | None = None, method: str = "wilson",
                          workload=None) -> CampaignReport | ChipReport:
    """Summarise a results database (no workload needed: the trials hold everything):
    a :class:`CampaignReport`, or a :class:`ChipReport` for a permanent campaign
    (``confidence`` and ``method`` are then not used: it reports percentiles).

    Args:
        path: the database.
        confidence: interval confidence (default: the campaign's).
        method: ``"wilson"`` or ``"clopper-pearson"``.
        workload: a :class:`models.Workload` the results are meant to describe
            (optional): its digest must be the stored one, else
            :class:`faults.CampaignMismatchError` naming both.

    The database is opened read-only and verified first (:class:`faults.StoreError`
    naming the file and what failed when it is not a whole gemmfi database).
    """
    if workload is not None and not isinstance(workload, Workload):
        raise TypeError(f"workload must be a models.Workload or None, not {type(workload).__name__}")
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, not {method!r}")
    if confidence is not None and (not isinstance(confidence, (int, float)) or isinstance(confidence, bool)
                                   or not 0 < confidence < 1):
        raise ValueError(f"confidence must be a number in (0, 1) or None, not {confidence!r}")
    with ResultStore.open(path, workload_digest=None if workload is None else workload.digest,
                          readonly=True) as store:
        rows = store.rows()
        strata = store.strata()
        campaign, total, wmeta = store.campaign, store.total, store.workload
    if campaign.permanent:
        return _chip_report(path, rows, campaign, total, wmeta)
    confidence = campaign.confidence if confidence is None else confidence
    done_per = {}
    for r in rows:
        done_per[r.stratum] = done_per.get(r.stratum, 0) + 1
    weight = {s: pop / done_per[s] for s, _, _, pop, _, _ in strata if done_per.get(s)}
    tables = {}
    for g, cols in GROUPINGS.items():
        groups: dict = {}
        for r in rows:
            groups.setdefault(tuple(getattr(r, c) for c in cols), []).append(r)
        out = []
        for key in sorted(groups):
            rs = groups[key]
            w = np.array([weight[r.stratum] for r in rs])
            w = w / w.sum()
            n_eff = 1.0 / float((w ** 2).sum())
            oc = np.array([r.outcome for r in rs])
            rates = {o: float(w[oc == o].sum()) for o in TRIAL_OUTCOMES}
            sdc = rates["benign_sdc"] + rates["critical_sdc"] + rates["nan_inf"]
            crit = rates["critical_sdc"] + rates["nan_inf"]
            out.append(ReportRow(key, len(rs), rates, sdc, proportion_interval(sdc * n_eff, n_eff, confidence, method),
                                 crit, proportion_interval(crit * n_eff, n_eff, confidence, method)))
        tables[g] = tuple(out)
    return CampaignReport(Path(path), campaign, total, len(rows), confidence, method, tables, wmeta)
