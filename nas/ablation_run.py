"""Running an ablation: every variant × seed of a plan trained alike, then its outputs written.

``run_ablation`` sends every variant × seed of an ``nas.ablation.AblationPlan`` to a trial
runner: by default the Ray Tune path of the search (``ray_runner``, through
``nas.ray_backend.run_fixed_trials``), in tests an in-process one (``local_runner``). The trial
itself is ``nas.trial.run_trial`` with the seed set (``ablation_trial``), so an ablation trial is
trained and measured exactly like a search trial. With a started
``dashboards.tracking.StudyTracker`` every trial is logged as a child run tagged with its variant
and seed, and the statistics and files of ``nas.ablation_report`` go to the parent run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from dashboards.records import Objective, StudySummary, TrialRecord
from nas.ablation import AblationError, AblationPlan, PlannedTrial, factor_text
from nas.ablation_report import AblationOutcome, aggregate, parent_metrics, write_outputs
from nas.config import StudyConfig
from nas.trial import TrialSettings, record_from_result, run_trial, spec_record
from trainers.featureset import FeatureSet

# MLflow tags on each child run (the tracker's own tags say status, spec, device, ...)
TAG_VARIANT = "ablation.variant"
TAG_SEED = "ablation.seed"
TAG_IS_BASE = "ablation.is_base"


# -- running ---------------------------------------------------------------------------------
ResultCallback = Callable[[int, "dict[str, Any] | None", str], None]
"""Called once per trial config: (index, final report or None, error text)."""


class TrialRunner(Protocol):
    """Runs trial configs (``AblationPlan.trial_config``) and reports each final report."""

    def __call__(self, configs: list[dict[str, Any]], on_result: ResultCallback) -> None: ...


def ablation_trial(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Return the final report of one variant × seed: ``run_trial`` with the config's seed."""
    seeded = dataclasses.replace(
        settings, train_config=dataclasses.replace(settings.train_config, seed=int(config["seed"]))
    )
    return run_trial(config, data, seeded, report, device)


def local_runner(
    data: FeatureSet, settings: TrialSettings, device: str | None = None
) -> TrialRunner:
    """Return a runner that trains the trials one after another in this process (no Ray)."""

    def run(configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        for index, config in enumerate(configs):
            on_result(index, ablation_trial(config, data, settings, None, device), "")

    return run


def ray_runner(study_config: StudyConfig, data: FeatureSet, settings: TrialSettings) -> TrialRunner:
    """Return a runner that sends the trials through Ray Tune, as the search does.

    ``study_config`` gives the cluster address, resources (GPU shares sized from each spec
    with ``gpus_per_trial=auto``), concurrency, actor reuse and Tune's storage folder.
    """

    def run(configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        from nas import ray_backend

        ray_backend.run_fixed_trials(
            configs,
            ablation_trial,
            config=study_config,
            data=data,
            settings=settings,
            name=f"ablation-{study_config.study}",
            on_result=on_result,
        )

    return run


def record_for(
    plan: AblationPlan, trial: PlannedTrial, result: dict[str, Any] | None, error: str
) -> TrialRecord:
    """Return the TrialRecord of one finished (or crashed) trial, numbered as planned."""
    record = record_from_result(result, trial.number) if result else None
    if record is not None and result is not None:
        record.ray_trial_id = str(result.get("trial_id", ""))  # Tune adds it to every report
    if record is None:
        spec = plan.variants[trial.variant].spec.to_dict()
        record = spec_record(trial.number, spec, error or "the trial returned no final report")
    return record


def _vram_source(records: Sequence[TrialRecord]) -> str:
    sources = {str(r.costs.get("vram_source", "")) for r in records if r.status == "complete"}
    sources.discard("")
    return sources.pop() if len(sources) == 1 else ("mixed" if sources else "")


def run_ablation(
    plan: AblationPlan,
    runner: TrialRunner,
    *,
    metric: str,
    out_dir: Path,
    tracker: Any = None,
    stream: TextIO | None = None,
) -> AblationOutcome:
    """Run every variant × seed of ``plan`` through ``runner`` and write the results.

    Each finished trial is printed as one line and, with a started ``tracker``
    (``dashboards.tracking.StudyTracker``), logged as a child run tagged with its variant and
    seed. At the end ``ablation.csv``, ``ablation_trials.csv``, the plan, a JSON summary and the
    plots are written to ``out_dir`` and attached to the tracker's parent run.

    Raises:
        AblationError: the runner did not account for every trial config.
    """
    out = stream or sys.stdout
    started = time.monotonic()
    trials = plan.trials()
    configs = [plan.trial_config(t) for t in trials]
    records: dict[int, TrialRecord] = {}

    def on_result(index: int, result: dict[str, Any] | None, error: str) -> None:
        trial = trials[index]
        record = record_for(plan, trial, result, error)
        records[trial.number] = record
        value = record.metrics.get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, (int, float)) else record.reason
        print(
            f"[{plan.name}] {len(records)}/{len(trials)} {plan.variants[trial.variant].name} "
            f"seed {trial.seed}: {record.status} · {shown} · {record.seconds:.0f} s",
            file=out,
            flush=True,
        )
        if tracker is not None:
            _log_trial(tracker, plan, trial, record)

    status = "KILLED"
    try:
        runner(configs, on_result)
        missing = [t.number for t in trials if t.number not in records]
        if missing:
            # Ray Tune catches Ctrl-C itself and returns with the unfinished trials unreported
            raise AblationError(
                f"ablation {plan.name!r}: {len(missing)} of {len(trials)} trials did not finish "
                f"(interrupted?): numbers {missing}; finished trials are logged"
            )
        status = "FINISHED"
    finally:
        if status != "FINISHED" and tracker is not None:
            tracker.finish(list(records.values()), _summary(plan, metric), status)
    ordered = [records[t.number] for t in trials]
    stats = aggregate(plan, ordered, metric)
    vram_source = _vram_source(ordered)
    outcome = AblationOutcome(plan, metric, ordered, stats, [], vram_source)
    outcome.files = write_outputs(outcome, out_dir)
    if tracker is not None:
        tracker.log_artifacts(outcome.files)
        _log_parent_summary(tracker, outcome)
        tracker.finish(ordered, _summary(plan, metric), "FINISHED")
        outcome.tracking_uri = getattr(tracker, "tracking_uri", None)
        outcome.parent_run_id = getattr(tracker, "parent_run_id", None)
    outcome.seconds = time.monotonic() - started
    return outcome


def _summary(plan: AblationPlan, metric: str) -> StudySummary:
    # one objective: the dashboards then draw no Pareto front for an ablation
    return StudySummary(
        study_name=plan.name,
        objectives=[Objective(metric, "maximize", metric)],
        config={"ablation": plan.name},
    )


def _log_trial(tracker: Any, plan: AblationPlan, trial: PlannedTrial, record: TrialRecord) -> None:
    """Log the child run, named and tagged by variant and seed (best effort, like the tracker)."""
    variant = plan.variants[trial.variant]
    tags = {
        TAG_VARIANT: variant.name,
        TAG_SEED: str(trial.seed),
        TAG_IS_BASE: str(variant.is_base).lower(),
    }
    for factor, value in variant.factors:
        tags[f"ablation.{factor}"] = "base" if value is None else factor_text(value)
    tracker.log_trial(record, run_name=f"{variant.name} · seed {trial.seed}", tags=tags)


def _log_parent_summary(tracker: Any, outcome: AblationOutcome) -> None:
    """Log ``parent_metrics`` and the base/metric tags on the parent run (best effort)."""
    tags = {
        "ablation.base": outcome.plan.base.name,
        "ablation.metric": outcome.metric,
        "ablation.factors": ",".join(outcome.plan.factors),
    }
    tracker.log_parent(parent_metrics(outcome), tags)


__all__ = [
    "TAG_IS_BASE",
    "TAG_SEED",
    "TAG_VARIANT",
    "ResultCallback",
    "TrialRunner",
    "ablation_trial",
    "local_runner",
    "ray_runner",
    "record_for",
    "run_ablation",
]
