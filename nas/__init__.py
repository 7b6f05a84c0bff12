"""Search and ablation orchestration, Pareto analysis, export and the command line.

The public API, imported lazily (``fsnas --help`` must not load torch, Ray or Optuna):
``from nas import load_config, run_search, load_study, export_from_study``. The modules and
how one trial travels through them are in ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AblationError": "nas.ablation",
    "AblationPlan": "nas.ablation",
    "factor_plan": "nas.ablation",
    "study_plan": "nas.ablation",
    "AblationOutcome": "nas.ablation_report",
    "ablation_table": "nas.ablation_report",
    "local_runner": "nas.ablation_run",
    "ray_runner": "nas.ablation_run",
    "run_ablation": "nas.ablation_run",
    "BundleError": "nas.bundle",
    "ExportedModel": "nas.bundle",
    "load_exported": "nas.bundle",
    "ConfigError": "nas.config",
    "StudyConfig": "nas.config",
    "load_config": "nas.config",
    "ExportError": "nas.export",
    "export_bundle": "nas.export",
    "export_from_study": "nas.export",
    "select_trial": "nas.export",
    "SelectionError": "nas.pareto",
    "hypervolume": "nas.pareto",
    "knee_point": "nas.pareto",
    "pareto_front": "nas.pareto",
    "select": "nas.pareto",
    "SearchOutcome": "nas.search",
    "load_study": "nas.search",
    "outcome_text": "nas.search",
    "run_search": "nas.search",
    "SearchError": "nas.study",
    "StoredStudy": "nas.study",
    "read_study": "nas.study",
    "TrialSettings": "nas.trial",
    "run_trial": "nas.trial",
}

__all__ = [
    "AblationError",
    "AblationOutcome",
    "AblationPlan",
    "BundleError",
    "ConfigError",
    "ExportError",
    "ExportedModel",
    "SearchError",
    "SearchOutcome",
    "SelectionError",
    "StoredStudy",
    "StudyConfig",
    "TrialSettings",
    "__version__",
    "ablation_table",
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
    "study_plan",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nas' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
