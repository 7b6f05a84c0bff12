"""MLflow logging and plots of study results (imports search_spaces types only).

The public API, imported lazily (MLflow, plotly and matplotlib load only when a name is used):
``from dashboards import StudyTracker, TrialRecord``. What each module owns is in
``docs/architecture.md``.
"""

from __future__ import annotations

from typing import Any

# public name -> the module of dashboards that defines it
_EXPORTS = {
    "ConfirmTracker": "confirm_tracking",
    "write_confirm_plots": "confirm_plots",
    "write_importance_plots": "importance_plots",
    "VariantPoint": "ablation_plots",
    "write_ablation_plots": "ablation_plots",
    "write_pareto_json": "artifacts",
    "write_study_artifacts": "artifacts",
    "write_trials_csv": "artifacts",
    "TrackingError": "mlflow_store",
    "checked_tracking_uri": "mlflow_store",
    "resolve_tracking_uri": "mlflow_store",
    "hypervolume_figure": "plots",
    "pareto_figure": "plots",
    "CHECKPOINT_KEY": "records",
    "TRIAL_STATUSES": "records",
    "Objective": "records",
    "StudySummary": "records",
    "TrialRecord": "records",
    "best_record": "records",
    "json_ready": "records",
    "register_model": "registry",
    "StudyTracker": "tracking",
    "log_single_run": "run_contents",
    "mlflow_key": "run_contents",
}

__all__ = [
    "CHECKPOINT_KEY",
    "TRIAL_STATUSES",
    "ConfirmTracker",
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
    "write_confirm_plots",
    "write_importance_plots",
    "write_pareto_json",
    "write_study_artifacts",
    "write_trials_csv",
]


def __getattr__(name: str) -> Any:
    # each submodule imported by a fixed statement (no import by computed name)
    module = _EXPORTS.get(name)
    if module == "ablation_plots":
        from dashboards import ablation_plots

        return getattr(ablation_plots, name)
    if module == "artifacts":
        from dashboards import artifacts

        return getattr(artifacts, name)
    if module == "mlflow_store":
        from dashboards import mlflow_store

        return getattr(mlflow_store, name)
    if module == "plots":
        from dashboards import plots

        return getattr(plots, name)
    if module == "records":
        from dashboards import records

        return getattr(records, name)
    if module == "registry":
        from dashboards import registry

        return getattr(registry, name)
    if module == "run_contents":
        from dashboards import run_contents

        return getattr(run_contents, name)
    if module == "tracking":
        from dashboards import tracking

        return getattr(tracking, name)
    if module == "confirm_plots":
        from dashboards import confirm_plots

        return getattr(confirm_plots, name)
    if module == "confirm_tracking":
        from dashboards import confirm_tracking

        return getattr(confirm_tracking, name)
    if module == "importance_plots":
        from dashboards import importance_plots

        return getattr(importance_plots, name)
    raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
