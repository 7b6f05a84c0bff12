"""Search and ablation orchestration, Pareto analysis, export and the command line.

The public API, imported lazily (``fsnas --help`` must not load torch, Ray or Optuna):
``from nas import load_config, run_search, load_study, export_from_study``. The modules and
how one trial travels through them are in ``docs/architecture.md``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# public name -> the module of nas that defines it
_EXPORTS = {
    "ConfirmError": "confirm",
    "confirm_stats": "confirm",
    "study_importance": "insight",
    "AblationError": "ablation",
    "AblationPlan": "ablation",
    "factor_plan": "ablation",
    "study_plan": "ablation",
    "AblationOutcome": "ablation_report",
    "ablation_table": "ablation_report",
    "local_runner": "ablation_run",
    "ray_runner": "ablation_run",
    "run_ablation": "ablation_run",
    "BundleError": "bundle",
    "ExportedModel": "bundle",
    "load_exported": "bundle",
    "ConfigError": "config",
    "StudyConfig": "config",
    "load_config": "config",
    "Evaluation": "evaluate",
    "EvaluationError": "evaluate",
    "evaluate_bundle": "evaluate",
    "ExportError": "export",
    "export_bundle": "export",
    "export_from_study": "export",
    "select_trial": "export",
    "SelectionError": "pareto",
    "hypervolume": "pareto",
    "knee_point": "pareto",
    "pareto_front": "pareto",
    "select": "pareto",
    "SearchInterrupted": "interrupt",
    "SearchOutcome": "search",
    "load_study": "search",
    "outcome_text": "search",
    "run_search": "search",
    "SearchError": "study_storage",
    "StoredStudy": "study",
    "read_study": "study",
    "TrialSettings": "trial",
    "run_trial": "trial",
}

__all__ = [
    "AblationError",
    "AblationOutcome",
    "AblationPlan",
    "BundleError",
    "ConfigError",
    "ConfirmError",
    "Evaluation",
    "EvaluationError",
    "ExportError",
    "ExportedModel",
    "SearchError",
    "SearchInterrupted",
    "SearchOutcome",
    "SelectionError",
    "StoredStudy",
    "StudyConfig",
    "TrialSettings",
    "__version__",
    "ablation_table",
    "confirm_stats",
    "evaluate_bundle",
    "export_bundle",
    "export_from_study",
    "factor_plan",
    "hypervolume",
    "knee_point",
    "load_config",
    "load_exported",
    "load_study",
    "local_runner",
    "outcome_text",
    "pareto_front",
    "ray_runner",
    "read_study",
    "run_ablation",
    "run_search",
    "run_trial",
    "select",
    "select_trial",
    "study_importance",
    "study_plan",
]


def __getattr__(name: str) -> Any:
    # each submodule imported by a fixed statement (no import by computed name)
    module = _EXPORTS.get(name)
    if module == "ablation":
        from nas import ablation

        return getattr(ablation, name)
    if module == "ablation_report":
        from nas import ablation_report

        return getattr(ablation_report, name)
    if module == "ablation_run":
        from nas import ablation_run

        return getattr(ablation_run, name)
    if module == "bundle":
        from nas import bundle

        return getattr(bundle, name)
    if module == "config":
        from nas import config

        return getattr(config, name)
    if module == "evaluate":
        from nas import evaluate

        return getattr(evaluate, name)
    if module == "export":
        from nas import export

        return getattr(export, name)
    if module == "pareto":
        from nas import pareto

        return getattr(pareto, name)
    if module == "search":
        from nas import search

        return getattr(search, name)
    if module == "interrupt":
        from nas import interrupt

        return getattr(interrupt, name)
    if module == "study":
        from nas import study

        return getattr(study, name)
    if module == "study_storage":
        from nas import study_storage

        return getattr(study_storage, name)
    if module == "trial":
        from nas import trial

        return getattr(trial, name)
    if module == "confirm":
        from nas import confirm

        return getattr(confirm, name)
    if module == "insight":
        from nas import insight

        return getattr(insight, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
