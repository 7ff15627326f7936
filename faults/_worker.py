"""The worker cache: trial runners kept per process, and the entry point workers call.

This module owns what a worker process keeps between tasks: one :class:`_Runner`
(golden runs of the model on every format) for the last campaign it ran.
"""
from __future__ import annotations

import numba

from models import Accelerator, accelerated, get_model, load_digits, load_params

from ._sites import SiteSpace
from ._spec import ModelCampaign
from ._trial import TrialResult, _Runner

__all__ = ["run_trials", "site_space"]

_RUNNERS: dict = {}


def _runner(campaign_json: str) -> _Runner:
    """This process's runner of a campaign (its canonical JSON), built on first use;
    a runner of another campaign is dropped."""
    r = _RUNNERS.get(campaign_json)
    if r is None:
        _RUNNERS.clear()
        r = _RUNNERS[campaign_json] = _Runner(ModelCampaign.from_json(campaign_json))
    return r


def run_trials(campaign_json: str, trials, threads: int | None = None) -> list[TrialResult]:
    """Worker entry point: the results of ``trials``.  ``threads``: Numba threads for
    this process (several workers on one machine: 1, else they oversubscribe the
    cores)."""
    if threads is not None and numba.get_num_threads() != threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return _runner(campaign_json).run_many(trials)


def site_space(campaign: ModelCampaign) -> SiteSpace:
    """The campaign's strata and trial -> site map (runs the model once per format to
    enumerate its GEMMs; reuses a runner cached in this process)."""
    r = _RUNNERS.get(campaign.to_json())
    if r is not None:
        return r.space
    model, params = get_model(campaign.model), load_params(campaign.model)
    x = load_digits("test")[0][:campaign.batch]
    gemms = {f: accelerated(model.apply, Accelerator(campaign.array.profile, f, campaign.accumulator)).gemms(
        params, x) for f in campaign.formats}
    return SiteSpace(campaign, gemms)
