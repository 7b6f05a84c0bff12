"""MLflow logging and plots of study results (imports search_spaces types only).

The public API, imported lazily (MLflow, plotly and matplotlib load only when a name is used):
``from dashboards import StudyTracker, TrialRecord``. What each module owns is in
``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "VariantPoint": "dashboards.ablation_plots",
    "write_ablation_plots": "dashboards.ablation_plots",
    "write_pareto_json": "dashboards.artifacts",
    "write_study_artifacts": "dashboards.artifacts",
    "write_trials_csv": "dashboards.artifacts",
    "TrackingError": "dashboards.mlflow_store",
    "checked_tracking_uri": "dashboards.mlflow_store",
    "resolve_tracking_uri": "dashboards.mlflow_store",
    "hypervolume_figure": "dashboards.plots",
    "pareto_figure": "dashboards.plots",
    "CHECKPOINT_KEY": "dashboards.records",
    "TRIAL_STATUSES": "dashboards.records",
    "Objective": "dashboards.records",
    "StudySummary": "dashboards.records",
    "TrialRecord": "dashboards.records",
    "best_record": "dashboards.records",
    "json_ready": "dashboards.records",
    "register_model": "dashboards.registry",
    "StudyTracker": "dashboards.tracking",
    "log_single_run": "dashboards.tracking",
    "mlflow_key": "dashboards.tracking",
}

__all__ = [
    "CHECKPOINT_KEY",
    "TRIAL_STATUSES",
    "Objective",
    "StudySummary",
    "StudyTracker",
    "TrackingError",
    "TrialRecord",
    "VariantPoint",
    "best_record",
    "checked_tracking_uri",
    "hypervolume_figure",
    "json_ready",
    "log_single_run",
    "mlflow_key",
    "pareto_figure",
    "register_model",
    "resolve_tracking_uri",
    "write_ablation_plots",
    "write_pareto_json",
    "write_study_artifacts",
    "write_trials_csv",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
