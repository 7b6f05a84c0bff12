"""The outputs of ``fsnas confirm``: the table, ``confirm.csv``, JSON and the front plot.

``nas.confirm`` plans, runs and computes the statistics (``DesignResult``); this module turns
them into what a user reads: the terminal table, the CSV and JSON, the front of the means with
95 % CI error bars (``dashboards.confirm_plots``) and the MLflow run's description.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards.records import Objective, json_ready
from nas.ablation_report import AblationOutcome
from nas.confirm import ALPHA, DesignResult, held_out_metric
from nas.stats import Summary

CONFIRM_CSV = "confirm.csv"


# -- output ----------------------------------------------------------------------------------
def _cell(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    digits = ".4f" if abs(summary.mean) < 10 else ".1f"
    if summary.n < 2 or not math.isfinite(summary.ci_low):
        return format(summary.mean, digits)
    low, high = format(summary.ci_low, digits), format(summary.ci_high, digits)
    return f"{format(summary.mean, digits)} [{low}, {high}]"


def confirm_table(
    results: Sequence[DesignResult],
    objectives: Sequence[Objective],
    seeds: int,
    vram_source: str = "",
) -> str:
    """Return the terminal table: per design the mean [95 % CI] of every objective, the paired
    difference of the first objective with the baseline and Holm's p, and the flags."""
    metric = objectives[0].name
    held = held_out_metric(metric) if any(r.held_out for r in results) else None
    header = [
        "design",
        "n",
        *(f"{o.name}{_mark(o.name, vram_source)} [95% CI]" for o in objectives),
        *([f"{held}† [95% CI]"] if held else []),
        f"Δ {metric} vs baseline [95% CI]",
        "p (Holm)",
        "differs in",
        "front",
    ]
    rows = []
    for res in results:
        comparison = res.versus_base.get(metric)
        if res.is_base:
            diff, p = "(baseline)", ""
        elif comparison is None:
            diff, p = "-", "-"
        else:
            diff = (
                f"{comparison.mean_diff:+.4f} [{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}]"
            )
            p = f"{res.adjusted_p.get(metric, math.nan):.3g}"
        differs = ",".join(o.name for o in objectives if res.differs(o.name)) or "-"
        rows.append(
            [
                res.name,
                f"{res.stats.n}/{seeds}",
                *(_cell(res.summaries.get(o.name)) for o in objectives),
                *([_cell(res.held_out)] if held else []),
                diff,
                p,
                "" if res.is_base else differs,
                "yes" if res.on_front else "",
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [line(header), "-" * len(line(header)), *(line(r) for r in rows)]
    lines.append(
        "mean [95% CI] over seeds (Student t); Δ and p: paired over seeds vs the baseline, "
        f"two-sided paired t-test, Holm-corrected over the designs per objective (α = {ALPHA:g}); "
        "front: Pareto-optimal on the means"
    )
    if held:
        lines.append(
            f"† {held}: the held-out test split, reported only (never used to choose or rank)"
        )
    if vram_source == "estimated" and any(_mark(o.name, vram_source) for o in objectives):
        lines.append("* VRAM estimated (no GPU); measured on CUDA")
    failed = [f"{res.name}: {f}" for res in results for f in res.stats.failures]
    if failed:
        lines.append(f"{len(failed)} trial(s) did not complete:")
        lines.extend(f"  {f}" for f in failed)
    return "\n".join(lines)


def _mark(name: str, vram_source: str) -> str:
    return "*" if vram_source == "estimated" and name.endswith("vram_mb") else ""


def write_confirm_csv(
    path: Path, results: Sequence[DesignResult], objectives: Sequence[Objective]
) -> Path:
    """Write one row per design: every objective's mean, std, CI, Δ, p, Holm p, differs."""
    rows = []
    for res in results:
        row: dict[str, Any] = {
            "design": res.name,
            "is_baseline": res.is_base,
            "spec_summary": res.stats.variant.spec.summary(),
            "n": res.stats.n,
            "on_front_of_means": res.on_front,
        }
        for o in objectives:
            s, c = res.summaries.get(o.name), res.versus_base.get(o.name)
            row[f"{o.name}_mean"] = "" if s is None else s.mean
            row[f"{o.name}_std"] = "" if s is None else s.std
            row[f"{o.name}_ci_low"] = "" if s is None else s.ci_low
            row[f"{o.name}_ci_high"] = "" if s is None else s.ci_high
            row[f"{o.name}_diff"] = "" if c is None else c.mean_diff
            row[f"{o.name}_p"] = "" if c is None else c.p_value
            row[f"{o.name}_p_holm"] = res.adjusted_p.get(o.name, "")
            row[f"{o.name}_differs"] = res.differs(o.name)
        held = held_out_metric(objectives[0].name)
        if held and any(r.held_out for r in results):
            h, c = res.held_out, res.held_out_vs_base
            row[f"{held}_mean"] = "" if h is None else h.mean
            row[f"{held}_ci_low"] = "" if h is None else h.ci_low
            row[f"{held}_ci_high"] = "" if h is None else h.ci_high
            row[f"{held}_diff"] = "" if c is None else c.mean_diff
            row[f"{held}_p"] = "" if c is None else c.p_value
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _held_out_dict(result: DesignResult, objectives: Sequence[Objective]) -> dict[str, Any]:
    """Return the JSON fields of a design's held-out metric (none when it has none)."""
    held = held_out_metric(objectives[0].name)
    if held is None or result.held_out is None:
        return {}
    comparison = result.held_out_vs_base
    return {
        "held_out": {
            "metric": held,
            "summary": vars(result.held_out),
            "versus_base": None if comparison is None else vars(comparison),
        }
    }


def write_confirm_outputs(
    out_dir: Path,
    results: Sequence[DesignResult],
    objectives: Sequence[Objective],
    study: str,
) -> list[Path]:
    """Write ``confirm.csv``, ``confirm.json`` and the front with error bars (HTML, PNG)."""
    from dashboards.ablation_plots import Interval
    from dashboards.confirm_plots import ConfirmPoint, write_confirm_plots

    files = [write_confirm_csv(out_dir / CONFIRM_CSV, results, objectives)]
    summary = out_dir / "confirm.json"
    summary.write_text(
        json.dumps(
            json_ready(
                [
                    {
                        "design": r.name,
                        "is_baseline": r.is_base,
                        "on_front_of_means": r.on_front,
                        "summaries": {k: vars(v) for k, v in r.summaries.items()},
                        "versus_base": {k: vars(v) for k, v in r.versus_base.items()},
                        "p_holm": r.adjusted_p,
                        **_held_out_dict(r, objectives),
                    }
                    for r in results
                ]
            ),
            indent=2,
        ),
        encoding="utf-8",
    )
    files.append(summary)
    if len(objectives) >= 2:
        y, x = objectives[0], objectives[1]
        points = [
            ConfirmPoint(
                label=r.name,
                values={k: Interval(s.mean, s.ci_low, s.ci_high) for k, s in r.summaries.items()},
                on_front=r.on_front,
                is_base=r.is_base,
                differs=r.differs(y.name),
            )
            for r in results
        ]
        files.extend(
            write_confirm_plots(
                out_dir,
                points,
                x,
                y,
                title=f"{study}: {y.title} vs {x.title}, mean and 95 % CI over seeds",
            )
        )
    return files


@dataclass
class ConfirmOutcome:
    """What ``fsnas confirm`` computed: the ablation outcome, the per-design results, files."""

    ablation: AblationOutcome
    results: list[DesignResult]
    objectives: list[Objective]
    files: list[Path]
    replayed: int = 0
    trained: int = 0

    def table(self) -> str:
        """Return the terminal table."""
        return confirm_table(
            self.results, self.objectives, len(self.ablation.plan.seeds), self.ablation.vram_source
        )


def outcome_dict(outcome: ConfirmOutcome) -> dict[str, Any]:
    """Return a JSON-ready summary: per design every objective's statistics, files, run."""
    rows = []
    for r in outcome.results:
        rows.append(
            {
                "design": r.name,
                "is_baseline": r.is_base,
                "spec_summary": r.stats.variant.spec.summary(),
                "n": r.stats.n,
                "on_front_of_means": r.on_front,
                "summaries": {k: vars(v) for k, v in r.summaries.items()},
                "versus_base": {k: vars(v) for k, v in r.versus_base.items()},
                "p_holm": r.adjusted_p,
                "differs": [o.name for o in outcome.objectives if r.differs(o.name)],
                **_held_out_dict(r, outcome.objectives),
            }
        )
    return {
        "name": outcome.ablation.plan.name,
        "seeds": list(outcome.ablation.plan.seeds),
        "objectives": [o.name for o in outcome.objectives],
        "designs": rows,
        "trained": outcome.trained,
        "replayed": outcome.replayed,
        "files": [str(p) for p in outcome.files],
        "tracking_uri": outcome.ablation.tracking_uri,
        "parent_run_id": outcome.ablation.parent_run_id,
    }


def description(outcome: ConfirmOutcome, study: str) -> str:
    """Return the Markdown description of the confirmation's parent run."""
    return (
        f"Confirmation of study **{study}**: {len(outcome.results)} design(s) × "
        f"{len(outcome.ablation.plan.seeds)} seed(s) {list(outcome.ablation.plan.seeds)}.\n\n"
        f"```\n{outcome.table()}\n```\n\n"
        "Artifacts: `confirm_front.html` / `confirm_front.png` (front with 95 % CI error bars), "
        "`confirm.csv`, `ablation.csv`, `ablation_trials.csv`."
    )


__all__ = [
    "CONFIRM_CSV",
    "ConfirmOutcome",
    "confirm_table",
    "description",
    "outcome_dict",
    "write_confirm_csv",
    "write_confirm_outputs",
]
