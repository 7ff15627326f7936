"""The worker cache: trial runners kept per process, and the entry point workers call.

This module owns what a worker process keeps between tasks: one runner (golden runs
of the model on every format: a :class:`_Runner` of transient trials, or a
:class:`_ChipRunner` of chips for a permanent campaign) for the last campaign it ran.
"""
from __future__ import annotations

import numba

from models import Accelerator, Workload, accelerated

from ._chip_trial import ChipSpace, _ChipRunner
from ._sites import SiteSpace
from ._spec import ModelCampaign
from ._store import CampaignMismatchError
from ._trial import _Runner

__all__ = ["run_trials", "site_space", "check_workload", "make_runner"]

_RUNNERS: dict = {}


def check_workload(wl: Workload, digest: str | None, where: str) -> None:
    """Raise :class:`faults.CampaignMismatchError` when a rebuilt workload's digest is
    not the stored one (``digest`` None: nothing stored to check against)."""
    if digest is not None and wl.digest != digest:
        raise CampaignMismatchError(
            f"workload digest must be the stored {digest}, not {wl.digest} ({where}: the workload's parameters or "
            f"data changed since the campaign was created)")


def make_runner(campaign: ModelCampaign, workload: Workload | None = None):
    """The runner of a campaign's trials in this process: a :class:`_ChipRunner` for a
    permanent campaign, else a :class:`_Runner` (``run(i)``, ``run_many(trials)``, ``space``)."""
    return (_ChipRunner if campaign.permanent else _Runner)(campaign, workload)


def _runner(campaign_json: str, workload_digest: str | None = None):
    """This process's runner of a campaign (its canonical JSON), built on first use;
    a runner of another campaign is dropped.  The rebuilt workload's digest must be
    ``workload_digest`` (when given)."""
    r = _RUNNERS.get(campaign_json)
    if r is None:
        _RUNNERS.clear()
        campaign = ModelCampaign.from_json(campaign_json)
        wl = campaign.workload()
        check_workload(wl, workload_digest, f"workload {campaign.model_name!r} rebuilt in a worker")
        r = _RUNNERS[campaign_json] = make_runner(campaign, wl)
    return r


def run_trials(campaign_json: str, trials, threads: int | None = None,
               workload_digest: str | None = None) -> list:
    """Worker entry point: the results of ``trials``.  ``threads``: Numba threads for
    this process (several workers on one machine: 1, else they oversubscribe the
    cores).  ``workload_digest``: the stored digest the rebuilt workload must have.
    Returns :class:`TrialResult` values (:class:`faults.ChipResult` for a permanent campaign)."""
    if threads is not None and numba.get_num_threads() != threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return _runner(campaign_json, workload_digest).run_many(trials)


def site_space(campaign: ModelCampaign, workload: Workload | None = None) -> SiteSpace | ChipSpace:
    """The campaign's strata and trial -> site map (runs the model once per format to
    enumerate its GEMMs; reuses a runner cached in this process): a :class:`SiteSpace`,
    or a :class:`faults.ChipSpace` (trial -> chip) for a permanent campaign.
    ``workload``: the campaign's workload when the caller built it already."""
    if isinstance(campaign.model, str):
        r = _RUNNERS.get(campaign.to_json())
        if r is not None:
            return r.space
    wl = workload if workload is not None else campaign.workload()
    accs = {f: Accelerator(campaign.profile, f, campaign.accumulator, scaling=campaign.scaling)
            for f in campaign.formats}
    gemms = {f: accelerated(wl.apply, acc).gemms(wl.params, wl.inputs) for f, acc in accs.items()}
    return (ChipSpace if campaign.permanent else SiteSpace)(campaign, gemms)
