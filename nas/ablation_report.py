"""Ablation statistics and outputs: per-variant summaries, the table, CSVs, JSON and plot points.

Statistics per variant (``aggregate``): mean, standard deviation and 95 % confidence interval
of the metric and of each cost (``COST_KEYS``), and the paired comparison of the variant with the
base over the seeds both completed (difference, its CI and a two-sided p-value; ``nas.stats``).
Outputs: ``ablation_table`` (terminal), ``write_ablation_csv``, ``write_trials_csv``, the plan and
a JSON summary (``write_outputs``), the points ``dashboards.ablation_plots`` draws
(``plot_points``) and the figures of the MLflow parent run (``parent_metrics``).
``nas.ablation_run.run_ablation`` returns an ``AblationOutcome`` holding all of them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dashboards.records import TrialRecord, json_ready
from dashboards.run_contents import mlflow_key
from nas.ablation import AblationPlan, Variant, factor_text
from nas.stats import PairedComparison, Summary, paired_comparison, summarize

COST_KEYS: tuple[str, ...] = ("train_vram_mb", "gflops", "params", "latency_ms", "seconds")
"""The costs summarised per variant. ``seconds`` is the training time (the epochs with their
validation passes, summed from the history), so a worker's first-trial start-up does not count;
the rest come from ``TrialRecord.costs``."""

COST_LABELS: dict[str, str] = {
    "train_vram_mb": "train VRAM MiB",
    "gflops": "GFLOPs",
    "params": "params",
    "latency_ms": "latency ms",
    "seconds": "train s",
}
EXTRA_KEYS: tuple[str, ...] = (
    "val_pitch_robustness",
    "receptive_freq_bins",
    "receptive_whole_freq_depth",
)
"""Quantities summarised like the costs when the trials carry them: the metric under pitch
shift (``data.pitch_shifts``; ``TrialRecord.metrics``) and the design's receptive field
(``search_spaces.receptive``; ``TrialRecord.costs``). Tables and CSVs show only those present."""
EXTRA_LABELS: dict[str, str] = {
    "val_pitch_robustness": "pitch-robust",
    "receptive_freq_bins": "RF bins",
    "receptive_whole_freq_depth": "whole-freq block",
}
_EXTRA_FORMATS = {
    "val_pitch_robustness": ".4f",
    "receptive_freq_bins": ".0f",
    "receptive_whole_freq_depth": ".0f",
}
CONFIDENCE = 0.95
ABLATION_CSV = "ablation.csv"
TRIALS_CSV = "ablation_trials.csv"
PLAN_JSON = "ablation_plan.json"
SUMMARY_JSON = "ablation_summary.json"


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantStats:
    """What the seeds of one variant gave: summaries, comparisons with the base, failures."""

    variant: Variant
    seeds: tuple[int, ...]  # seeds that completed
    failures: tuple[str, ...]  # "seed S: status: reason" of the trials that did not
    values: dict[str, Summary] = field(default_factory=dict)  # metric and costs
    versus_base: dict[str, PairedComparison] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Return the number of completed seeds."""
        return len(self.seeds)


def trial_values(record: TrialRecord, metric: str) -> dict[str, float]:
    """Return the finite metric and cost values of a completed trial (empty otherwise)."""
    if record.status != "complete":
        return {}
    raw: dict[str, Any] = {metric: record.metrics.get(metric)}
    for key in COST_KEYS:
        raw[key] = record.costs.get(key)
    for key in EXTRA_KEYS:
        raw[key] = record.metrics.get(key, record.costs.get(key))
    epoch_seconds = [e.get("seconds") for e in record.history]
    if epoch_seconds and all(isinstance(v, (int, float)) for v in epoch_seconds):
        raw["seconds"] = math.fsum(float(v) for v in epoch_seconds if v is not None)
    return {
        k: float(v)
        for k, v in raw.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def aggregate(
    plan: AblationPlan,
    records: Sequence[TrialRecord],
    metric: str,
    confidence: float = CONFIDENCE,
) -> list[VariantStats]:
    """Return one ``VariantStats`` per variant (plan order).

    Each quantity (the metric and ``COST_KEYS``) is summarised over the seeds that completed.
    The comparison with the base pairs seed with seed and uses only seeds where both trials
    completed; it needs two such pairs and is left out for the base itself.
    """
    by_number = {r.number: r for r in records}
    per_variant: list[dict[int, dict[str, float]]] = [{} for _ in plan.variants]
    failures: list[list[str]] = [[] for _ in plan.variants]
    for trial in plan.trials():
        record = by_number.get(trial.number)
        if record is None:
            failures[trial.variant].append(f"seed {trial.seed}: missing: no record")
            continue
        values = trial_values(record, metric)
        if metric in values:
            per_variant[trial.variant][trial.seed] = values
        else:
            value = record.metrics.get(metric)
            why = record.reason or (f"{metric} is {value}" if value is not None else f"no {metric}")
            failures[trial.variant].append(f"seed {trial.seed}: {record.status}: {why}")
    base = per_variant[plan.base_index]
    out: list[VariantStats] = []
    for i, variant in enumerate(plan.variants):
        by_seed = per_variant[i]
        summaries: dict[str, Summary] = {}
        comparisons: dict[str, PairedComparison] = {}
        for key in (metric, *COST_KEYS, *EXTRA_KEYS):
            sample = [v[key] for v in by_seed.values() if key in v]
            if sample:
                summaries[key] = summarize(sample, confidence)
            if i == plan.base_index:
                continue
            paired = [s for s in by_seed if key in by_seed[s] and key in base.get(s, {})]
            if len(paired) >= 2:
                comparisons[key] = paired_comparison(
                    [by_seed[s][key] for s in paired], [base[s][key] for s in paired], confidence
                )
        out.append(
            VariantStats(variant, tuple(by_seed), tuple(failures[i]), summaries, comparisons)
        )
    return out


# -- output ----------------------------------------------------------------------------------
def _interval(summary: Summary | None, fmt: str) -> str:
    if summary is None:
        return "-"
    if summary.n < 2 or not math.isfinite(summary.ci_low):
        return format(summary.mean, fmt)
    return f"{format(summary.mean, fmt)} ± {format(summary.half_width, fmt)}"


def _metric_interval(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    if summary.n < 2 or not math.isfinite(summary.ci_low):
        return f"{summary.mean:.4f}"
    return f"{summary.mean:.4f} [{summary.ci_low:.4f}, {summary.ci_high:.4f}]"


def _difference(comparison: PairedComparison | None) -> tuple[str, str]:
    if comparison is None:
        return "-", "-"
    text = f"{comparison.mean_diff:+.4f} [{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}]"
    return text, f"{comparison.p_value:.3g}"


def _cost_header(key: str, vram_source: str) -> str:
    estimated = key == "train_vram_mb" and vram_source == "estimated"
    return COST_LABELS[key] + ("*" if estimated else "")


# GFLOPs of small spectrogram CNNs span 1e-4 to 1: significant digits, not decimals
_COST_FORMATS = {
    "train_vram_mb": ".1f",
    "gflops": ".3g",
    "params": ",.0f",
    "latency_ms": ".2f",
    "seconds": ".1f",
}


def extra_keys(stats: Sequence[VariantStats]) -> list[str]:
    """Return the ``EXTRA_KEYS`` some variant has a value of (table and CSV columns)."""
    return [k for k in EXTRA_KEYS if any(k in s.values for s in stats)]


def ablation_table(
    stats: Sequence[VariantStats], metric: str, vram_source: str = "", seeds: int | None = None
) -> str:
    """Return the terminal table: per variant, the metric's mean with its 95 % CI, the paired
    difference with the base (CI, p-value), each cost as mean ± CI half-width, then the
    ``EXTRA_KEYS`` the trials carry (pitch robustness, receptive field)."""
    extras = extra_keys(stats)
    header = [
        "variant",
        "n",
        f"{metric} [95% CI]",
        "Δ vs base [95% CI]",
        "p",
        *(_cost_header(k, vram_source) for k in COST_KEYS),
        *(EXTRA_LABELS[k] for k in extras),
    ]
    rows: list[list[str]] = []
    for s in stats:
        diff, p = ("(base)", "") if s.variant.is_base else _difference(s.versus_base.get(metric))
        n = f"{s.n}" if seeds is None else f"{s.n}/{seeds}"
        rows.append(
            [
                s.variant.name,
                n,
                _metric_interval(s.values.get(metric)),
                diff,
                p,
                *(_interval(s.values.get(k), _COST_FORMATS[k]) for k in COST_KEYS),
                *(_interval(s.values.get(k), _EXTRA_FORMATS[k]) for k in extras),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    left = {0}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [line(header), "-" * len(line(header))]
    lines.extend(line(r) for r in rows)
    lines.append(
        "mean [95% CI] over seeds (Student t); Δ: paired over seeds vs the base, two-sided "
        "paired t-test p; costs: mean ± CI half-width"
    )
    if vram_source == "estimated":
        lines.append("* VRAM estimated (no GPU); measured on CUDA")
    failed = [f"{s.variant.name}: {f}" for s in stats for f in s.failures]
    if failed:
        lines.append(f"{len(failed)} trial(s) did not complete:")
        lines.extend(f"  {f}" for f in failed)
    return "\n".join(lines)


def _summary_fields(prefix: str, summary: Summary | None) -> dict[str, Any]:
    if summary is None:
        return {f"{prefix}_{k}": "" for k in ("mean", "std", "ci_low", "ci_high")}
    return {
        f"{prefix}_mean": summary.mean,
        f"{prefix}_std": summary.std,
        f"{prefix}_ci_low": summary.ci_low,
        f"{prefix}_ci_high": summary.ci_high,
    }


def _comparison_fields(prefix: str, comparison: PairedComparison | None) -> dict[str, Any]:
    if comparison is None:
        return {f"{prefix}_{k}": "" for k in ("diff", "diff_ci_low", "diff_ci_high", "p_value")}
    return {
        f"{prefix}_diff": comparison.mean_diff,
        f"{prefix}_diff_ci_low": comparison.ci_low,
        f"{prefix}_diff_ci_high": comparison.ci_high,
        f"{prefix}_p_value": comparison.p_value,
    }


def stats_rows(
    plan: AblationPlan, stats: Sequence[VariantStats], metric: str
) -> list[dict[str, Any]]:
    """Return one flat row per variant: factor values, n, every summary and comparison."""
    rows = []
    for s in stats:
        row: dict[str, Any] = {"variant": s.variant.name, "is_base": s.variant.is_base}
        for factor in plan.factors:
            value = s.variant.factor_value(factor)
            row[factor] = "" if value is None else factor_text(value)
        row["spec_summary"] = s.variant.spec.summary()
        row["n"] = s.n
        row["n_failed"] = len(s.failures)
        for key in (metric, *COST_KEYS, *extra_keys(stats)):
            row.update(_summary_fields(key, s.values.get(key)))
            row.update(_comparison_fields(f"{key}_vs_base", s.versus_base.get(key)))
        rows.append(row)
    return rows


def write_ablation_csv(
    path: Path, plan: AblationPlan, stats: Sequence[VariantStats], metric: str
) -> Path:
    """Write ``ablation.csv``: one row per variant (see ``stats_rows``); return the path."""
    rows = stats_rows(plan, stats, metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_trials_csv(
    path: Path, plan: AblationPlan, records: Sequence[TrialRecord], metric: str
) -> Path:
    """Write one row per variant × seed (status, metric, costs); return the path."""
    by_number = {r.number: r for r in records}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "variant", "seed", "status", metric, *COST_KEYS, "reason"])
        for trial in plan.trials():
            record = by_number.get(trial.number)
            values = trial_values(record, metric) if record else {}
            writer.writerow(
                [
                    trial.number,
                    plan.variants[trial.variant].name,
                    trial.seed,
                    record.status if record else "missing",
                    values.get(metric, ""),
                    *(values.get(k, "") for k in COST_KEYS),
                    record.reason if record else "",
                ]
            )
    return path


def plot_points(plan: AblationPlan, stats: Sequence[VariantStats], metric: str) -> list[Any]:
    """Return the plain points ``dashboards.ablation_plots`` draws (one per variant)."""
    from dashboards.ablation_plots import Interval, VariantPoint

    points = []
    x_factor = plan.factors[0] if plan.factors else ""
    series_factor = plan.factors[1] if len(plan.factors) > 1 else None
    for s in stats:
        # a study's variants change more than its named factor: their names say what changed
        x = s.variant.name if plan.study else s.variant.factor_value(x_factor)
        series = s.variant.factor_value(series_factor) if series_factor else None
        intervals = {
            key: Interval(summary.mean, summary.ci_low, summary.ci_high)
            for key, summary in s.values.items()
        }
        points.append(
            VariantPoint(
                label=s.variant.name,
                x="base" if x is None else factor_text(x),
                series=""
                if series_factor is None
                else ("base" if series is None else factor_text(series)),
                is_base=s.variant.is_base,
                values=intervals,
            )
        )
    return points


# -- the outcome of a whole ablation --------------------------------------------------------
@dataclass
class AblationOutcome:
    """What ``run_ablation`` returns: the records, the statistics and the files written."""

    plan: AblationPlan
    metric: str
    records: list[TrialRecord]
    stats: list[VariantStats]
    files: list[Path]
    vram_source: str
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    seconds: float = 0.0

    def table(self) -> str:
        """Return the terminal table of this outcome."""
        return ablation_table(self.stats, self.metric, self.vram_source, len(self.plan.seeds))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary: plan, per-variant rows, files, tracking run."""
        return {
            "name": self.plan.name,
            "metric": self.metric,
            "seeds": list(self.plan.seeds),
            "vram_source": self.vram_source,
            "variants": stats_rows(self.plan, self.stats, self.metric),
            "files": [str(p) for p in self.files],
            "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id,
            "seconds": self.seconds,
        }


def parent_metrics(outcome: AblationOutcome) -> dict[str, float]:
    """Return the per-variant figures shown on the parent run: ``<variant>.<quantity>_<stat>``
    for the metric's mean and CI, its difference with the base and p-value, and mean costs."""
    out: dict[str, float] = {}
    metric = outcome.metric
    for s in outcome.stats:
        prefix = mlflow_key(s.variant.name)
        summary = s.values.get(metric)
        if summary is not None:
            out[f"{prefix}.{metric}_mean"] = summary.mean
            out[f"{prefix}.{metric}_ci_low"] = summary.ci_low
            out[f"{prefix}.{metric}_ci_high"] = summary.ci_high
        comparison = s.versus_base.get(metric)
        if comparison is not None:
            out[f"{prefix}.{metric}_diff_vs_base"] = comparison.mean_diff
            out[f"{prefix}.{metric}_p_value"] = comparison.p_value
        for key in (*COST_KEYS, *EXTRA_KEYS):
            if key in s.values:
                out[f"{prefix}.{key}_mean"] = s.values[key].mean
    return {k: v for k, v in out.items() if math.isfinite(v)}


def write_outputs(outcome: AblationOutcome, out_dir: Path) -> list[Path]:
    """Write the CSVs, plan, JSON summary and plots into ``out_dir``; return their paths."""
    from dashboards.ablation_plots import write_ablation_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    plan, metric = outcome.plan, outcome.metric
    files = [
        write_ablation_csv(out_dir / ABLATION_CSV, plan, outcome.stats, metric),
        write_trials_csv(out_dir / TRIALS_CSV, plan, outcome.records, metric),
    ]
    plan_path = out_dir / PLAN_JSON
    plan_path.write_text(json.dumps(plan.to_dict(), indent=2), encoding="utf-8")
    files.append(plan_path)
    summary_path = out_dir / SUMMARY_JSON
    summary_path.write_text(json.dumps(json_ready(outcome.to_dict()), indent=2), encoding="utf-8")
    files.append(summary_path)
    x_title = plan.factors[0] if plan.factors else "variant"
    if plan.study:
        x_title = f"{plan.study}: variant (depth, first filter height × width)"
    files.extend(
        write_ablation_plots(
            out_dir,
            plot_points(plan, outcome.stats, metric),
            metric=metric,
            vram_key="train_vram_mb",
            x_title=x_title,
            series_title=plan.factors[1] if len(plan.factors) > 1 else "",
            title=plan.name,
            vram_estimated=outcome.vram_source == "estimated",
        )
    )
    return files


__all__ = [
    "ABLATION_CSV",
    "CONFIDENCE",
    "COST_KEYS",
    "COST_LABELS",
    "EXTRA_KEYS",
    "PLAN_JSON",
    "SUMMARY_JSON",
    "TRIALS_CSV",
    "AblationOutcome",
    "VariantStats",
    "ablation_table",
    "aggregate",
    "parent_metrics",
    "plot_points",
    "stats_rows",
    "trial_values",
    "write_ablation_csv",
    "write_outputs",
    "write_trials_csv",
]
