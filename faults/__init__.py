"""gemmfi.faults: fault specifications, fault sites, campaigns and outcome classes."""
from simulator import FAULT_KINDS, Fault, OutputFault, apply_output_faults  # the specs live with the arrays
from ._campaign import CampaignResult, compare_schemes, count_false_alarms, coverage_table, run_campaign

__all__: list[str] = ["FAULT_KINDS", "Fault", "OutputFault", "apply_output_faults",
                      "CampaignResult", "run_campaign", "compare_schemes", "count_false_alarms", "coverage_table"]

# ---- model campaigns (issue 5): statistics, campaigns, results store, executors, reports ----
from ._executor import EXECUTORS, CampaignRun, resume_model_campaign, run_model_campaign  # noqa: E402
from ._model_campaign import (LEVELS, OUTCOMES, STRATIFY, TRIAL_COLUMNS, ModelCampaign, SiteSpace,  # noqa: E402
                              Stratum, TileCheck, TrialSite, make_array, site_space)
from ._report import GROUPINGS, CampaignReport, ReportRow, model_campaign_report  # noqa: E402
from ._stats import (CI_METHODS, KeyedPermutation, clopper_pearson_interval, proportion_interval,  # noqa: E402
                     sample_size, wilson_interval)
from ._store import SCHEMA_VERSION, CampaignMismatchError, ResultStore, StoreError  # noqa: E402
from ._value import NativeValueInjector  # noqa: E402

__all__ += ["EXECUTORS", "CampaignRun", "resume_model_campaign", "run_model_campaign", "LEVELS", "OUTCOMES",
            "STRATIFY", "TRIAL_COLUMNS", "ModelCampaign", "SiteSpace", "Stratum", "TileCheck", "TrialSite",
            "make_array", "site_space", "GROUPINGS", "CampaignReport", "ReportRow", "model_campaign_report",
            "CI_METHODS", "KeyedPermutation", "clopper_pearson_interval", "proportion_interval", "sample_size",
            "wilson_interval", "SCHEMA_VERSION", "CampaignMismatchError", "ResultStore", "StoreError",
            "NativeValueInjector"]
