"""gemmfi.faults: fault-injection campaigns, their statistics, store, executors and reports.

Fault specifications live with the arrays that take them (:mod:`simulator`) and are
re-exported here (``faults.Fault is simulator.Fault``).

* Single-GEMM campaigns on a (protected) array: :func:`run_campaign`,
  :func:`compare_schemes`, :func:`count_false_alarms`, :func:`coverage_table`
  (outcomes: :data:`protection.PROTECTION_OUTCOMES`).
* Model campaigns: a :class:`ModelCampaign` (spec) whose trials land on
  :class:`TrialSite` s of a :class:`SiteSpace` (:func:`site_space`) and end as
  :class:`TrialResult` s (outcomes :data:`TRIAL_OUTCOMES`) in a :class:`ResultStore`;
  :func:`run_model_campaign` / :func:`resume_model_campaign` run them here, on a
  process pool or on Dask; :func:`model_campaign_report` summarises them.
* Permanent faults (``ModelCampaign(fault_model="permanent", fault_rate=R)``): each
  trial is one faulty chip (:class:`ChipSite`, a sampled :class:`simulator.FaultMap`)
  running the whole evaluation set, its result a :class:`ChipResult`; the report is
  a :class:`ChipReport` (distribution over chips).
* Statistics: :func:`sample_size` and proportion intervals.
* :class:`NativeValueInjector`: the native-JAX value-level baseline.
"""
from simulator import FAULT_KINDS, Fault, OutputFault, apply_output_faults  # the specs live with the arrays

from ._chip_trial import CHIP_OUTCOMES, ChipResult, ChipSite, ChipSpace, chip_seed
from ._campaign import CampaignResult, compare_schemes, count_false_alarms, coverage_table, run_campaign
from ._executor import EXECUTORS, CampaignRun, resume_model_campaign, run_model_campaign
from ._report import CHIP_GROUPINGS, GROUPINGS, CampaignReport, ChipReport, ChipRow, ReportRow, model_campaign_report
from ._sites import SiteSpace, Stratum, TrialSite
from ._spec import FAULT_MODELS, LEVELS, STRATIFY, ModelCampaign, WorkloadRef, make_array
from ._stats import CI_METHODS, clopper_pearson_interval, proportion_interval, sample_size, wilson_interval
from ._store import CampaignMismatchError, ResultStore, StoreCorruptError, StoreError
from ._trial import TRIAL_OUTCOMES, TileCheck, TrialResult
from ._value import NativeValueInjector
from ._worker import site_space

__all__ = [
    # fault specifications (simulator's)
    "FAULT_KINDS", "Fault", "OutputFault", "apply_output_faults",
    # single-GEMM campaigns
    "CampaignResult", "run_campaign", "compare_schemes", "count_false_alarms", "coverage_table",
    # model campaigns
    "ModelCampaign", "WorkloadRef", "make_array", "LEVELS", "STRATIFY", "SiteSpace", "Stratum", "TrialSite", "site_space",
    "TRIAL_OUTCOMES", "TrialResult", "TileCheck", "EXECUTORS", "CampaignRun", "run_model_campaign",
    "resume_model_campaign", "ResultStore", "StoreError", "StoreCorruptError", "CampaignMismatchError",
    "GROUPINGS", "CampaignReport",
    "ReportRow", "model_campaign_report",
    # permanent faults: chips
    "FAULT_MODELS", "CHIP_OUTCOMES", "ChipResult", "ChipSite", "ChipSpace", "chip_seed", "ChipReport", "ChipRow",
    "CHIP_GROUPINGS",
    # statistics
    "CI_METHODS", "sample_size", "wilson_interval", "clopper_pearson_interval", "proportion_interval",
    # native value-level baseline
    "NativeValueInjector",
]
