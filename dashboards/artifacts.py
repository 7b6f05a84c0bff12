"""Study artifacts as files: trials table, front, chosen spec and every plot, in one folder.

``write_study_artifacts`` is what the MLflow parent run receives on each refresh; it needs no
MLflow, so a search without tracking can write the same folder.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dashboards import plots
from dashboards.records import StudySummary, TrialRecord, best_record, json_ready

TRIALS_CSV = "trials.csv"
PARETO_JSON = "pareto.json"
BEST_SPEC_JSON = "best_spec.json"
PARETO_HTML = "pareto.html"
PARETO_PNG = "pareto.png"
HYPERVOLUME_HTML = "hypervolume.html"
HYPERVOLUME_PNG = "hypervolume.png"


def write_trials_csv(path: Path, records: Sequence[TrialRecord]) -> Path:
    """Write one row per trial (status, front flag, objectives, costs, metrics); return the path.

    Objective, cost and metric columns are prefixed (``objective.``, ``cost.``, ``metric.``) and
    are the union over all trials, so a failed trial leaves its cells empty.
    """
    objective_keys = sorted({k for r in records for k in r.objectives})
    cost_keys = sorted({k for r in records for k in r.costs})
    metric_keys = sorted({k for r in records for k in r.metrics})
    header = [
        "number",
        "status",
        "on_pareto_front",
        "spec_summary",
        *[f"objective.{k}" for k in objective_keys],
        *[f"cost.{k}" for k in cost_keys],
        *[f"metric.{k}" for k in metric_keys],
        "epochs",
        "seconds",
        "device",
        "ray_trial_id",
        "reason",
        "initial_spec",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in sorted(records, key=lambda rec: rec.number):
            writer.writerow(
                [
                    r.number,
                    r.status,
                    r.on_pareto_front,
                    r.spec_summary,
                    *[r.objectives.get(k, "") for k in objective_keys],
                    *[r.costs.get(k, "") for k in cost_keys],
                    *[r.metrics.get(k, "") for k in metric_keys],
                    len(r.history),
                    round(r.seconds, 3),
                    r.device,
                    r.ray_trial_id,
                    r.reason,
                    r.initial_spec,
                ]
            )
    return path


def _front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    return sorted((r for r in records if r.on_pareto_front), key=lambda r: r.number)


def write_pareto_json(path: Path, records: Sequence[TrialRecord], summary: StudySummary) -> Path:
    """Write the front (full records), objectives, reference point and hypervolume as JSON."""
    last_hv = summary.hypervolume_history[-1][1] if summary.hypervolume_history else None
    data = {
        "study_name": summary.study_name,
        "objectives": [o.to_dict() for o in summary.objectives],
        "reference_point": summary.reference_point,
        "hypervolume": last_hv,
        "knee_number": summary.knee_number,
        "n_trials": len(records),
        "n_complete": sum(r.status == "complete" for r in records),
        "front": [r.to_dict() for r in _front(records)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_ready(data), indent=2), encoding="utf-8")
    return path


def select_best(records: Sequence[TrialRecord], summary: StudySummary) -> tuple[TrialRecord, str]:
    """Return the trial whose spec is reported as the study's choice, and why it was chosen.

    The knee point when the summary names one; otherwise the best trial (``best_record``: the
    complete trial best on the first objective, ties to the lower VRAM, then the lower number);
    the first complete trial when none has every objective. Raises ``LookupError`` when no
    trial completed.
    """
    by_number = {r.number: r for r in records}
    if summary.knee_number is not None and summary.knee_number in by_number:
        return by_number[summary.knee_number], "knee"
    complete = [r for r in records if r.status == "complete"]
    if not complete:
        raise LookupError(f"study {summary.study_name!r}: no complete trial to choose from")
    best = best_record(records, summary.objectives)
    if best is None:
        return complete[0], "first complete trial"
    return best, f"best {summary.objectives[0].name}"


def write_best_spec_json(
    path: Path, records: Sequence[TrialRecord], summary: StudySummary
) -> Path | None:
    """Write the chosen trial's spec with its objectives and costs; ``None`` if none completed."""
    try:
        best, why = select_best(records, summary)
    except LookupError:
        return None
    data = {
        "trial_number": best.number,
        "selected_by": why,
        "spec_summary": best.spec_summary,
        "objectives": best.objectives,
        "costs": best.costs,
        "spec": best.spec,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_ready(data), indent=2), encoding="utf-8")
    return path


def write_study_artifacts(
    out_dir: Path, records: Sequence[TrialRecord], summary: StudySummary
) -> list[Path]:
    """Write every parent-run artifact into ``out_dir`` and return the paths written.

    ``pareto.html``/``.png`` plot the first objective against the second; with three or more
    objectives every pair also gets ``pareto_<a>_vs_<b>.html``/``.png``. Studies with a single
    objective (some ablations) get no Pareto plot.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        write_trials_csv(out_dir / TRIALS_CSV, records),
        write_pareto_json(out_dir / PARETO_JSON, records, summary),
    ]
    best = write_best_spec_json(out_dir / BEST_SPEC_JSON, records, summary)
    if best is not None:
        written.append(best)
    objectives = summary.objectives
    kwargs: dict[str, Any] = {"study_name": summary.study_name, "knee_number": summary.knee_number}
    pairs = plots.objective_pairs(objectives)
    if pairs:
        y, x = pairs[0]
        written.append(
            plots.write_pareto_html(out_dir / PARETO_HTML, records, objectives, x, y, **kwargs)
        )
        written.append(
            plots.write_pareto_png(out_dir / PARETO_PNG, records, objectives, x, y, **kwargs)
        )
    if len(objectives) >= 3:
        for y, x in pairs:
            stem = plots.pair_file_stem(y, x)
            written.append(
                plots.write_pareto_html(
                    out_dir / f"{stem}.html", records, objectives, x, y, **kwargs
                )
            )
            written.append(
                plots.write_pareto_png(out_dir / f"{stem}.png", records, objectives, x, y, **kwargs)
            )
    for y, x in plots.receptive_pairs(records, objectives):  # metric against receptive field
        stem = plots.pair_file_stem(y, x)
        written.append(
            plots.write_pareto_html(out_dir / f"{stem}.html", records, objectives, x, y, **kwargs)
        )
        written.append(
            plots.write_pareto_png(out_dir / f"{stem}.png", records, objectives, x, y, **kwargs)
        )
    if summary.hypervolume_history:
        written.append(plots.write_hypervolume_html(out_dir / HYPERVOLUME_HTML, summary))
        written.append(plots.write_hypervolume_png(out_dir / HYPERVOLUME_PNG, summary))
    return written
