"""Chip trials: one trial of a permanent-fault campaign is one faulty chip.

This module owns what a trial of a ``fault_model="permanent"`` :class:`ModelCampaign`
is and does.  Strata: one per input format and fault rate (in that order: formats
outer).  Chip ``j`` of a stratum (trial ``first + j``) takes its register and stuck
value from ``registers x stuck`` in order, ``(registers[j // len(stuck) % R],
stuck[j % len(stuck)])`` -- so every combination gets the same number of chips,
give or take one -- and its fault map from
``FaultMap.sample(array, rate=rate, registers=(register,), kinds=(stuck,), bits=bits,
seed=map_seed)`` with ``map_seed`` derived from ``(campaign seed, trial)``
(:func:`chip_seed`): the faulty PEs (``round(rate * rows * cols)`` of them, without
replacement) and each one's bit are drawn uniformly.  The whole evaluation set then
runs through the chip, every GEMM, every tile, every fold
(:func:`models.run_on_chip` with :func:`models.array_gemm`), and the chip's output is
judged against the fault-free accelerated output, example by example, by the
workload's outcome rule (:meth:`models.Workload.critical`, :meth:`~models.Workload.correct`).

A chip's result is a :class:`ChipResult`; its ``outcome`` (:data:`CHIP_OUTCOMES`)
summarises the whole output: ``masked`` (bitwise the fault-free output),
``benign_sdc`` (differs, no example critical), ``critical_sdc`` (some example
critical), ``nan_inf`` (a NaN or infinity in the output).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models import Workload, array_gemm, run_on_chip
from simulator import FaultMap

from ._spec import ModelCampaign
from ._sites import Stratum
from ._trial import _FormatRun

__all__ = ["CHIP_OUTCOMES", "ChipResult", "ChipSite", "ChipSpace", "chip_seed"]

#: Outcomes of a chip (a :class:`ChipResult`'s ``outcome``).
CHIP_OUTCOMES = ("masked", "benign_sdc", "critical_sdc", "nan_inf")


class ChipResult(NamedTuple):
    """The result of one chip: one row of a permanent campaign's ``trials`` table
    (fields in column order).

    Attributes:
        trial, stratum, format; rate: the fraction of faulty PEs asked for;
        register, stuck (``"stuck0"``/``"stuck1"``): of every fault of the chip;
        map_seed: the seed of its :meth:`simulator.FaultMap.sample` (the chip is
        ``FaultMap.sample(array, rate=rate, registers=(register,), kinds=(stuck,),
        bits=campaign.bits, seed=map_seed, input_format=format, accumulator=...)``);
        faulty_pes: PEs with a fault; outcome: one of :data:`CHIP_OUTCOMES`;
        examples: evaluation examples B; critical: examples critical by the
        workload's outcome rule against the fault-free output; critical_frac:
        critical / examples; accuracy: examples right against the labels / B on the
        chip (None: the workload has no such metric, :meth:`models.Workload.correct`);
        fault_free_accuracy: the same on the fault-free accelerator; out_diff: output
        elements that differ bitwise from the fault-free output; max_abs_err: largest
        finite |output error|.
    """

    trial: int
    stratum: int
    format: str
    rate: float
    register: str
    stuck: str
    map_seed: int
    faulty_pes: int
    outcome: str
    examples: int
    critical: int
    critical_frac: float
    accuracy: float | None
    fault_free_accuracy: float | None
    out_diff: int
    max_abs_err: float


@dataclass(frozen=True)
class ChipSite:
    """Which chip trial ``trial`` runs: its stratum, format, rate, register, stuck value
    and fault-map seed (:func:`chip_seed`)."""

    trial: int
    stratum: int
    format: str
    rate: float
    register: str
    stuck: str
    map_seed: int


def chip_seed(seed: int, trial: int) -> int:
    """The fault-map seed of trial ``trial`` of a campaign with seed ``seed``: 63 bits of
    ``numpy.random.SeedSequence((seed, trial))`` (independent streams per trial)."""
    lo, hi = np.random.SeedSequence((int(seed), int(trial))).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) & ((1 << 63) - 1)


def _registers(campaign: ModelCampaign, fmt: str) -> tuple:
    """The registers a chip of format ``fmt`` can have its faults in, in the PE's order."""
    names = [n for n, _ in campaign.array.registers(input_format=fmt, accumulator=campaign.accumulator)]
    return tuple(names) if campaign.registers is None else tuple(n for n in names if n in campaign.registers)


class ChipSpace:
    """The strata of a permanent campaign and the map trial index -> :class:`ChipSite`.

    ``gemms[format]``: the model's GEMM sites on that format (a stratum covers all of
    them).  A stratum's ``population`` is its number of chips: chips are drawn
    independently (with replacement) from a space far too large to enumerate."""

    def __init__(self, campaign: ModelCampaign, gemms: dict):
        if not campaign.permanent:
            raise ValueError(f"campaign fault_model must be 'permanent' for a ChipSpace, not {campaign.fault_model!r}")
        self.campaign = campaign
        self.gemms = gemms
        strata, first, self._combo = [], 0, {}
        for fmt in campaign.formats:
            regs = _registers(campaign, fmt)
            self._combo[fmt] = [(r, k) for r in regs for k in campaign.stuck]
            for rate in campaign.fault_rates:
                n = campaign.trials
                strata.append(Stratum(len(strata), fmt, tuple(range(len(gemms[fmt]))), n, n, first))
                first += n
        self.rates = tuple(r for _ in campaign.formats for r in campaign.fault_rates)
        self.strata = tuple(strata)
        self.total = first

    def site(self, trial: int) -> ChipSite:
        """The chip of trial ``trial`` (0 <= trial < total): a pure function of (campaign, trial)."""
        if not 0 <= trial < self.total:
            raise ValueError(f"trial must be in [0, {self.total}), not {trial}")
        s = self.strata[trial // self.campaign.trials]
        combos = self._combo[s.format]
        reg, kind = combos[(trial - s.first) % len(combos)]
        return ChipSite(trial, s.index, s.format, self.rates[s.index], reg, kind, chip_seed(self.campaign.seed, trial))


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


class _ChipRunner:
    """Runs chip trials of one permanent campaign in this process (the fault-free
    trace of every format built once; ``workload``: when the caller built it)."""

    def __init__(self, campaign: ModelCampaign, workload: Workload | None = None):
        self.campaign = campaign
        self.workload = wl = workload if workload is not None else campaign.workload()
        # the transient runner's golden run of a format (its accelerator, trace and
        # output): one definition of "the campaign's accelerator" for both fault models
        golden = campaign.with_(chunk=None)
        self.runs = {f: _FormatRun(golden, f, wl) for f in campaign.formats}
        self.fault_free = {}
        for f, run in self.runs.items():
            c = wl.correct(run.logits)
            self.fault_free[f] = None if c is None else c / wl.batch
        self.space = ChipSpace(campaign, {f: r.golden.gemms for f, r in self.runs.items()})

    def fault_map(self, site: ChipSite) -> FaultMap:
        """The chip of a site (see the module docstring)."""
        c = self.campaign
        return FaultMap.sample(c.array, rate=site.rate, registers=(site.register,), bits=c.bits, kinds=(site.stuck,),
                               seed=site.map_seed, input_format=site.format, accumulator=c.accumulator)

    def run(self, trial: int) -> ChipResult:
        """The result of one chip."""
        s = self.space.site(trial)
        run = self.runs[s.format]
        fm = self.fault_map(s)
        out = np.asarray(run_on_chip(run.golden, array_gemm(self.campaign.array, fm, run.acc)))
        gold = run.logits
        B = self.workload.batch
        diff = int((_bits(out) != _bits(gold)).sum()) if out.shape == gold.shape else int(gold.size)
        crit = np.asarray(self.workload.critical(gold, out))
        ncrit = int(crit.sum())
        now = self.workload.correct(out)
        acc = None if now is None else now / B
        o64, g64 = out.astype(np.float64), gold.astype(np.float64)
        finite = np.isfinite(o64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = float(np.abs(o64 - g64)[finite].max()) if finite.any() else 0.0
        if diff == 0:
            outcome = "masked"
        elif not finite.all():
            outcome = "nan_inf"
        else:
            outcome = "critical_sdc" if ncrit else "benign_sdc"
        return ChipResult(trial, s.stratum, s.format, s.rate, s.register, s.stuck, s.map_seed, len(fm.pes), outcome,
                          B, ncrit, ncrit / B, acc, self.fault_free[s.format], diff, err)

    def run_many(self, trials) -> list:
        return [self.run(int(t)) for t in trials]
