"""Confirming a study's designs: retrain them with new seeds, then trust only what holds.

A front point is one training run. ``fsnas confirm`` takes designs of a stored study (its front,
its top K by the first objective, or trial numbers), retrains each with N new seeds as an
ablation (``nas.ablation.AblationPlan``: one variant per design, the baseline as the base) run
by ``nas.ablation_run.run_ablation`` through the search's Ray path
(``nas.ray_backend.run_fixed_trials``, resources and GPU packing included), and reports for
every objective the mean and 95 % CI over seeds (``nas.ablation_report.aggregate``, the very
statistics of ``fsnas ablate``), the Pareto front of the means, and which designs differ from
the baseline: paired over seeds (``nas.stats.paired_comparison``) with Holm's correction
(``nas.stats.holm``) across the designs, per objective.

Resumable like a search: every finished design × seed is stored in the study's Optuna storage
(a study user attribute ``fsnas_confirm:<name>:<design>:<seed>`` holding the trial's final
report), and a rerun of the same command replays those and trains only the rest; its MLflow
runs (``dashboards.confirm_tracking``) are found again, never doubled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from dashboards.records import Objective, TrialRecord, json_ready
from nas.ablation import AblationError, AblationPlan, Variant
from nas.ablation_report import VariantStats, aggregate
from nas.ablation_run import ResultCallback, TrialRunner
from nas.pareto import front_candidates, pareto_front
from nas.stats import PairedComparison, Summary, holm, paired_comparison, summarize
from search_spaces.errors import FsnasError
from search_spaces.spec import ArchSpec

CONFIRM_ATTR = "fsnas_confirm"  # study user-attribute prefix of a stored design × seed
ALPHA = 0.05  # family-wise error of "differs from the baseline" (1 - the CIs' confidence)
SEED_OFFSET = 1  # new seeds start at the search's train.seed + 1 (the search trained with it)


class ConfirmError(FsnasError):
    """A confirmation cannot be planned: the message names the flag, the value and the fix."""


# -- what to confirm -------------------------------------------------------------------------
def parse_trials(text: str) -> list[int]:
    """Return the trial numbers of ``--trials 3,7`` (order kept, no repeats).

    Raises:
        ConfirmError: a value that is not a whole number, or a repeat.
    """
    numbers: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit():
            raise ConfirmError(f"--trials {text!r}: {part!r} is not a trial number (e.g. 3,7)")
        if int(part) in numbers:
            raise ConfirmError(f"--trials {text!r}: trial {part} is given twice")
        numbers.append(int(part))
    if not numbers:
        raise ConfirmError(f"--trials {text!r}: no trial number given (e.g. --trials 3,7)")
    return numbers


def choose(
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    *,
    top: int | None = None,
    trials: Sequence[int] = (),
) -> list[TrialRecord]:
    """Return the designs to confirm: ``trials`` by number, else the ``top`` complete trials by
    the first objective, else the front (``front`` as ``nas.pareto.front_records`` orders it).

    Raises:
        ConfirmError: a trial number the study lacks or one that did not complete, or a top K
            below 1.
    """
    complete = [records[i] for i in front_candidates(records, objectives)]
    if trials:
        by_number = {r.number: r for r in records}
        out = []
        for n in trials:
            record = by_number.get(n)
            if record is None:
                raise ConfirmError(
                    f"--trials: the study has no trial {n} (it has 0..{len(records) - 1})"
                )
            if record not in complete:
                raise ConfirmError(
                    f"--trials: trial {n} is {record.status} ({record.reason or 'no values'}); "
                    "confirm complete trials only"
                )
            out.append(record)
        return out
    if top is not None:
        if top < 1:
            raise ConfirmError(f"--top must be >= 1, got {top}")
        first = objectives[0]
        sign = -1.0 if first.direction == "maximize" else 1.0
        ranked = sorted(complete, key=lambda r: (sign * float(r.objectives[first.name]), r.number))
        return ranked[:top]
    return list(front)


def design_label(record: TrialRecord) -> str:
    """Return the variant name of a study trial: ``trial N``."""
    return f"trial {record.number}"


def baseline_variant(
    text: str | None, records: Sequence[TrialRecord], chosen: Sequence[TrialRecord]
) -> tuple[int | None, Variant | None]:
    """Return (the chosen index that is the baseline, or a variant to add as the baseline).

    ``text``: None (the first chosen design: the best first objective on the front), a trial
    number, ``preset:NAME`` or a preset name (``fsnas presets list``), or an ArchSpec JSON file.

    Raises:
        ConfirmError: no such trial, preset or file, or a spec that does not parse.
    """
    from nas.spaces import read_design

    if text is None:
        return 0, None
    value = text.strip()
    if value.isdigit():
        number = int(value)
        for i, r in enumerate(chosen):
            if r.number == number:
                return i, None
        record = next((r for r in records if r.number == number), None)
        if record is None or record.status != "complete":
            why = "no such trial" if record is None else f"it is {record.status}"
            raise ConfirmError(f"--baseline {text!r}: {why}; give a complete trial number")
        spec = ArchSpec.from_dict(record.spec)
        return None, Variant(design_label(record), spec, (("design", design_label(record)),))
    name = value[len("preset:") :] if value.startswith("preset:") else value
    try:
        spec, label = read_design(name, "--baseline")
    except FsnasError as exc:
        raise ConfirmError(
            f"--baseline {text!r}: {exc} (a trial number, preset:NAME or a spec JSON file)"
        ) from None
    short = f"baseline {label.split(' (')[0]}"
    return None, Variant(short, spec, (("design", short),))


def confirm_plan(
    name: str,
    chosen: Sequence[TrialRecord],
    seeds: Sequence[int],
    base_index: int | None,
    extra_base: Variant | None,
) -> AblationPlan:
    """Return the plan: one variant per chosen design (``trial N``), the baseline as the base.

    Raises:
        ConfirmError: no design chosen.
    """
    if not chosen:
        raise ConfirmError("no design to confirm: the study has no complete trial on its front")
    variants = []
    if extra_base is not None:
        variants.append(Variant(extra_base.name, extra_base.spec, extra_base.factors, True))
    for i, record in enumerate(chosen):
        label = design_label(record)
        spec = ArchSpec.from_dict(record.spec).replace(name=label)
        variants.append(Variant(label, spec, (("design", label),), i == base_index))
    try:
        return AblationPlan(
            name=name,
            variants=tuple(variants),
            seeds=tuple(seeds),
            factors=("design",),
            description=f"confirmation of {len(chosen)} design(s) with {len(seeds)} seed(s)",
        )
    except AblationError as exc:
        raise ConfirmError(str(exc)) from None


def new_seeds(train_seed: int, n: int, first: int | None = None) -> list[int]:
    """Return ``n`` seeds the search did not train with: from ``first`` (default
    ``train_seed + SEED_OFFSET``).

    Raises:
        ConfirmError: ``n`` below 1.
    """
    if n < 1:
        raise ConfirmError(f"--seeds must be >= 1, got {n}")
    start = train_seed + SEED_OFFSET if first is None else first
    return list(range(start, start + n))


# -- resuming --------------------------------------------------------------------------------
def attr_key(name: str, variant: str, seed: int) -> str:
    """Return the study user attribute that stores one design × seed of confirmation ``name``."""
    return f"{CONFIRM_ATTR}:{name}:{variant}:{seed}"


def stored_results(study: optuna.Study, name: str) -> dict[str, dict[str, Any]]:
    """Return the stored final reports of confirmation ``name``, by attribute key."""
    prefix = f"{CONFIRM_ATTR}:{name}:"
    return {
        k: v for k, v in study.user_attrs.items() if k.startswith(prefix) and isinstance(v, dict)
    }


class ResumingRunner:
    """A runner that replays the design × seeds already stored and trains the rest.

    Each new final report is stored in the study as it arrives (a crash without a report is
    not stored, so it is trained again on the next run). ``replayed`` and ``trained`` count
    what the last call did.
    """

    def __init__(self, inner: TrialRunner, study: optuna.Study, name: str) -> None:
        self.inner = inner
        self.study = study
        self.name = name
        self.replayed = 0
        self.trained = 0

    def __call__(self, configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        done = stored_results(self.study, self.name)
        todo: list[int] = []
        self.replayed = self.trained = 0
        for index, config in enumerate(configs):
            key = attr_key(self.name, str(config["variant"]), int(config["seed"]))
            if key in done:
                self.replayed += 1
                on_result(index, done[key], "")
            else:
                todo.append(index)
        if not todo:
            return

        def forward(j: int, result: dict[str, Any] | None, error: str) -> None:
            index = todo[j]
            config = configs[index]
            if result is not None:
                key = attr_key(self.name, str(config["variant"]), int(config["seed"]))
                self.study.set_user_attr(key, json_ready(result))
            self.trained += 1
            on_result(index, result, error)

        self.inner([configs[i] for i in todo], forward)


def resuming_runner(inner: TrialRunner, study: optuna.Study, name: str) -> ResumingRunner:
    """Return a ``ResumingRunner`` around ``inner`` for confirmation ``name`` of ``study``."""
    return ResumingRunner(inner, study, name)


def fixed_runner(study_config: Any, data: Any, settings: Any, name: str) -> TrialRunner:
    """Return the runner of the search's Ray path (``ray_backend.run_fixed_trials``)."""
    from nas.ablation_run import ablation_trial

    def run(configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        from nas import ray_backend

        ray_backend.run_fixed_trials(
            configs,
            ablation_trial,
            config=study_config,
            data=data,
            settings=settings,
            name=name,
            on_result=on_result,
        )

    return run


# -- statistics ------------------------------------------------------------------------------
@dataclass
class DesignResult:
    """One confirmed design: per objective its summary, the comparison with the baseline and
    Holm's adjusted p; whether it is on the front of the means."""

    stats: VariantStats
    summaries: dict[str, Summary] = field(default_factory=dict)
    versus_base: dict[str, PairedComparison] = field(default_factory=dict)
    adjusted_p: dict[str, float] = field(default_factory=dict)
    on_front: bool = False
    # the first objective's held-out counterpart (val_accuracy -> test_accuracy): reported
    # beside the objectives, never used to choose or rank (the test split stays unseen)
    held_out: Summary | None = None
    held_out_vs_base: PairedComparison | None = None

    @property
    def name(self) -> str:
        return self.stats.variant.name

    @property
    def is_base(self) -> bool:
        return self.stats.variant.is_base

    def differs(self, objective: str, alpha: float = ALPHA) -> bool:
        """Return True when the Holm-adjusted paired p of ``objective`` is below ``alpha``."""
        p = self.adjusted_p.get(objective, math.nan)
        return not math.isnan(p) and p < alpha


def held_out_metric(metric: str) -> str | None:
    """Return the test-split counterpart of a validation metric (``val_accuracy`` ->
    ``test_accuracy``), or None for an objective that is not one."""
    return "test_" + metric.removeprefix("val_") if metric.startswith("val_") else None


def _objective_samples(
    plan: AblationPlan, records: Sequence[TrialRecord], name: str, *, metrics: bool = False
) -> list[dict[int, float]]:
    """Per variant, seed -> finite value of objective ``name`` of the complete trials (of the
    metric ``name`` with ``metrics``)."""
    by_number = {r.number: r for r in records}
    out: list[dict[int, float]] = [{} for _ in plan.variants]
    for trial in plan.trials():
        r = by_number.get(trial.number)
        v = None
        if r is not None and r.status == "complete":
            v = (r.metrics if metrics else r.objectives).get(name)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            out[trial.variant][trial.seed] = float(v)
    return out


def confirm_stats(
    plan: AblationPlan, records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[DesignResult]:
    """Return one ``DesignResult`` per variant (plan order).

    The first objective and the costs ``fsnas ablate`` summarises come from
    ``ablation_report.aggregate`` (identical numbers); another objective (``infer_vram_mb``)
    is summarised from the trials' objective values with the same ``nas.stats`` functions.
    Holm's correction runs per objective over the designs compared with the baseline.
    """
    metric = objectives[0].name
    stats = aggregate(plan, records, metric)
    results = [DesignResult(s) for s in stats]
    base = plan.base_index
    for o in objectives:
        if all(o.name in s.values or not s.n for s in stats) and any(
            o.name in s.values for s in stats
        ):
            for res in results:
                if o.name in res.stats.values:
                    res.summaries[o.name] = res.stats.values[o.name]
                if o.name in res.stats.versus_base:
                    res.versus_base[o.name] = res.stats.versus_base[o.name]
        else:  # an objective ablate does not summarise: same statistics, from the objectives
            per_variant = _per_variant(_objective_samples(plan, records, o.name), base)
            for res, (summary, comparison) in zip(results, per_variant, strict=True):
                if summary is not None:
                    res.summaries[o.name] = summary
                if comparison is not None:
                    res.versus_base[o.name] = comparison
        compared = [res for res in results if o.name in res.versus_base]
        for res, p in zip(compared, holm([res.versus_base[o.name].p_value for res in compared])):
            res.adjusted_p[o.name] = p
    _held_out(plan, records, metric, results)
    with_means = [res for res in results if all(o.name in res.summaries for o in objectives)]
    points = [[res.summaries[o.name].mean for o in objectives] for res in with_means]
    for k in pareto_front(points, [o.direction for o in objectives]):
        with_means[k].on_front = True
    return results


def _held_out(
    plan: AblationPlan, records: Sequence[TrialRecord], metric: str, results: list[DesignResult]
) -> None:
    """Set each result's held-out summary and its paired comparison with the baseline."""
    name = held_out_metric(metric)
    if name is None:
        return
    samples = _objective_samples(plan, records, name, metrics=True)
    for res, (summary, comparison) in zip(
        results, _per_variant(samples, plan.base_index), strict=True
    ):
        res.held_out, res.held_out_vs_base = summary, comparison


def _per_variant(
    samples: list[dict[int, float]], base: int
) -> list[tuple[Summary | None, PairedComparison | None]]:
    """Per variant, the summary of its seeds' values and (not for the base) the paired
    comparison with the base over the seeds both have, when at least two are."""
    out: list[tuple[Summary | None, PairedComparison | None]] = []
    for i, values in enumerate(samples):
        summary = summarize(list(values.values())) if values else None
        paired = [s for s in values if s in samples[base]]
        comparison = None
        if i != base and len(paired) >= 2:
            comparison = paired_comparison(
                [values[s] for s in paired], [samples[base][s] for s in paired]
            )
        out.append((summary, comparison))
    return out


def front_of(stored: Any) -> list[TrialRecord]:
    """Return the Pareto front of a stored study (``nas.study.StoredStudy``)."""
    from nas.pareto import front_records

    return front_records(stored.records, stored.objectives)


__all__ = [
    "ALPHA",
    "CONFIRM_ATTR",
    "ConfirmError",
    "DesignResult",
    "ResumingRunner",
    "attr_key",
    "baseline_variant",
    "choose",
    "confirm_plan",
    "confirm_stats",
    "fixed_runner",
    "front_of",
    "held_out_metric",
    "new_seeds",
    "parse_trials",
    "resuming_runner",
    "stored_results",
]
