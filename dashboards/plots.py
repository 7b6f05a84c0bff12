"""Pareto-front and hypervolume plots of a study: plotly (self-contained HTML) and matplotlib (PNG).

The caller (``nas.pareto``) decides which trials are on the front and computes the hypervolume;
these functions only draw what arrives in the records and the summary. The one ordering done
here is sorting the front points along the x axis so a line can be drawn through them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from dashboards.records import Objective, StudySummary, TrialRecord

# How each group of trials looks; plotly symbol, matplotlib marker, colour. Failure statuses
# each get their own legend entry so an OOM is not confused with a diverged trial.
_STYLES: dict[str, tuple[str, str, str]] = {
    "front": ("star", "*", "#d62728"),
    "dominated": ("circle", "o", "#1f77b4"),
    "pruned": ("triangle-down", "v", "#9e9e9e"),
    "infeasible": ("square-open", "s", "#8c564b"),
    "oom": ("x", "x", "#ff7f0e"),
    "diverged": ("cross", "+", "#9467bd"),
    "invalid": ("diamond-open", "D", "#e377c2"),
    "failed": ("x-thin", "1", "#17becf"),
}
_GROUP_LABELS: dict[str, str] = {
    "front": "Pareto front",
    "dominated": "dominated",
    "pruned": "pruned",
    "infeasible": "infeasible",
    "oom": "out of memory",
    "diverged": "diverged",
    "invalid": "invalid spec",
    "failed": "failed",
}
# Cost keys shown in the hover text, in this order, with their formatting.
_COST_FORMATS: tuple[tuple[str, str], ...] = (
    ("params", "{:,.0f}"),
    ("gflops", "{:.4g}"),
    ("train_vram_mb", "{:.1f} MiB"),
    ("train_reserved_mb", "{:.1f} MiB"),
    ("infer_vram_mb", "{:.1f} MiB"),
    ("latency_ms", "{:.3g}"),
)
_SUMMARY_WRAP_CHARS = 70
# A positive axis spanning more than this ratio is drawn on a log scale (params, VRAM).
_LOG_AXIS_RATIO = 30.0


@dataclass(frozen=True)
class _Point:
    record: TrialRecord
    x: float
    y: float


_WARM_START_COLOUR = "#6a3d9a"


def warm_start_label(record: TrialRecord) -> str:
    """Return the legend entry of a warm-start trial, e.g. ``warm start vgg5_c128 (trial 0)``."""
    name = record.initial_spec.split(" (")[0]  # "vgg5_c128 (configs/specs/...)" -> "vgg5_c128"
    return f"warm start {name} (trial {record.number})"


def trial_group(record: TrialRecord) -> str:
    """Return the plot group of a trial: front, dominated, pruned or its failure status."""
    if record.status == "complete":
        return "front" if record.on_pareto_front else "dominated"
    return record.status if record.status in _STYLES else "failed"


def pair_file_stem(y: Objective, x: Objective) -> str:
    """Return the artifact stem of a pairwise plot, ``pareto_<y>_vs_<x>``."""
    return f"pareto_{y.name}_vs_{x.name}"


RECEPTIVE_AXES: tuple[Objective, ...] = (
    Objective("receptive_freq_bins", "maximize", "mel bins one unit of the last block sees"),
    Objective(
        "receptive_whole_freq_depth",
        "minimize",
        "first block whose units see the whole frequency axis",
    ),
)
"""Axes a pairwise plot may use besides the objectives: the design's receptive field
(``search_spaces.receptive``), read from each trial's costs; plotted against the metric."""


def receptive_pairs(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[tuple[Objective, Objective]]:
    """Return (metric, receptive axis) pairs for the axes some record carries a value of."""
    if not objectives:
        return []
    return [
        (objectives[0], axis)
        for axis in RECEPTIVE_AXES
        if axis.name not in {o.name for o in objectives}
        and any(isinstance(r.costs.get(axis.name), (int, float)) for r in records)
    ]


def objective_pairs(objectives: Sequence[Objective]) -> list[tuple[Objective, Objective]]:
    """Return (y, x) pairs to plot: every pair of objectives, the earlier one on the y axis."""
    return [
        (objectives[i], objectives[j])
        for i in range(len(objectives))
        for j in range(i + 1, len(objectives))
    ]


def hover_text(record: TrialRecord, objectives: Sequence[Objective]) -> str:
    """Return the hover text of one trial: number, status, spec summary, objectives and costs."""
    head = f"<b>trial {record.number}</b> · {record.status}"
    if record.on_pareto_front:
        head += " · on Pareto front"
    lines = [head]
    if record.spec_summary:
        lines.extend(_wrap(record.spec_summary, _SUMMARY_WRAP_CHARS))
    if record.reason:
        lines.extend(_wrap(f"reason: {record.reason}", _SUMMARY_WRAP_CHARS))
    for obj in objectives:
        value = record.objectives.get(obj.name)
        if value is not None:
            lines.append(f"{obj.name}: {value:.5g}")
    costs = [
        f"{key}: {fmt.format(record.costs[key])}"
        for key, fmt in _COST_FORMATS
        if isinstance(record.costs.get(key), (int, float))
    ]
    if costs:
        lines.append(" · ".join(costs))
    if record.costs.get("vram_source"):
        lines.append(f"VRAM {record.costs['vram_source']}")
    return "<br>".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def _points(records: Sequence[TrialRecord], x: Objective, y: Objective) -> list[_Point]:
    points = []
    for rec in records:
        # an objective, or an axis of RECEPTIVE_AXES read from the costs
        xv, yv = (_axis_value(rec, axis.name) for axis in (x, y))
        if xv is None or yv is None or not (math.isfinite(xv) and math.isfinite(yv)):
            continue
        points.append(_Point(rec, float(xv), float(yv)))
    return points


def _axis_value(record: TrialRecord, name: str) -> float | None:
    value = record.objectives.get(name)
    if value is None:
        cost = record.costs.get(name)
        value = cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    if value is None and record.status != "complete":
        value = last_value(record, name)
    return value


def last_value(record: TrialRecord, name: str) -> float | None:
    """Return the last value a trial that did not complete knew of objective ``name``: its
    metric when stopped (``val_accuracy_at_stop``), the last epoch's, or its cost estimate
    (``train_vram_estimate_mb`` for ``train_vram_mb``); None when it has none."""
    found = [record.metrics.get(name), record.metrics.get(f"{name}_at_stop")]
    found.append(next((e[name] for e in reversed(record.history) if name in e), None))
    if name.endswith("_mb"):
        found.append(record.costs.get(f"{name[: -len('_mb')]}_estimate_mb"))
    for value in found:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


# opacity of the trials that did not complete (drawn at their last values)
_FADED = 0.35


def _front_line(points: Sequence[_Point]) -> list[_Point]:
    """Front points ordered along x, so the line through them reads left to right."""
    return sorted((p for p in points if trial_group(p.record) == "front"), key=lambda p: p.x)


def _use_log_axis(values: Sequence[float]) -> bool:
    return bool(values) and min(values) > 0 and max(values) / min(values) > _LOG_AXIS_RATIO


# objectives whose value is a VRAM figure: estimated (no GPU) or measured, per trial
_VRAM_OBJECTIVES = frozenset({"train_vram_mb", "train_reserved_mb", "infer_vram_mb"})


def axis_title(objective: Objective, points: Sequence[_Point]) -> str:
    """Return an axis title: the objective's title, whether its VRAM figures are estimated
    (all plotted trials, or how many of them) and which way is better."""
    title = objective.title
    if objective.name in _VRAM_OBJECTIVES and points:
        estimated = sum(1 for p in points if p.record.costs.get("vram_source") == "estimated")
        if estimated == len(points):
            title += ", estimated (no GPU)"
        elif estimated:
            title += f", estimated for {estimated} of {len(points)} trials"
    return f"{title} ({'lower' if objective.direction == 'minimize' else 'higher'} is better)"


def _title(study_name: str, x: Objective, y: Objective) -> str:
    return f"{study_name or 'study'}: {y.title} vs {x.title}"


def _count_note(n_total: int, n_shown: int) -> str:
    hidden = n_total - n_shown
    if not hidden:
        return f"{n_total} trials"
    return f"{n_shown} of {n_total} trials shown; {hidden} without objective values"


def pareto_figure(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    x: Objective,
    y: Objective,
    *,
    study_name: str = "",
    knee_number: int | None = None,
) -> go.Figure:
    """Return a plotly scatter of ``y`` against ``x`` with the front drawn as a line.

    Every group (front, dominated, pruned, each failure status) is its own trace with its own
    marker and colour; hovering shows the spec summary, objectives and costs. The line joins the
    front points only when the study has exactly these two objectives: with more, the front
    projected onto two axes is not a curve, so its points are marked without a line.
    """
    points = _points(records, x, y)
    fig = go.Figure()
    groups: dict[str, list[_Point]] = {}
    for p in points:
        groups.setdefault(trial_group(p.record), []).append(p)
    # Draw dominated and failed first so front markers stay on top.
    order = [g for g in _STYLES if g != "front"] + ["front"]
    for group in order:
        members = groups.get(group, [])
        if not members:
            continue
        symbol, _, colour = _STYLES[group]
        is_front = group == "front"
        fig.add_trace(
            go.Scatter(
                x=[p.x for p in members],
                y=[p.y for p in members],
                mode="markers",
                name=f"{_GROUP_LABELS[group]} ({len(members)})",
                marker={
                    "symbol": symbol,
                    "color": colour,
                    "size": 14 if is_front else 9,
                    "opacity": 1.0 if is_front else (0.75 if group == "dominated" else _FADED),
                    "line": {"width": 1, "color": "#333333"} if is_front else {"width": 1.5},
                },
                text=[hover_text(p.record, objectives) for p in members],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    line = _front_line(points)
    if len(objectives) == 2 and len(line) >= 2:
        fig.add_trace(
            go.Scatter(
                x=[p.x for p in line],
                y=[p.y for p in line],
                mode="lines",
                name="front line",
                line={"color": _STYLES["front"][2], "width": 2},
                hoverinfo="skip",
            )
        )
    knee = next((p for p in points if p.record.number == knee_number), None)
    if knee is not None:
        # a ring plus a legend entry rather than a text label, which would cover other trials
        fig.add_trace(
            go.Scatter(
                x=[knee.x],
                y=[knee.y],
                mode="markers",
                name=f"knee (trial {knee.record.number})",
                marker={
                    "symbol": "circle-open",
                    "size": 26,
                    "color": "#111111",
                    "line": {"width": 2},
                },
                hoverinfo="skip",
            )
        )
    for p in points:
        if p.record.initial_spec:  # a baseline the user queued: where does it sit?
            fig.add_trace(
                go.Scatter(
                    x=[p.x],
                    y=[p.y],
                    mode="markers",
                    name=warm_start_label(p.record),
                    marker={
                        "symbol": "square-open",
                        "size": 22,
                        "color": _WARM_START_COLOUR,
                        "line": {"width": 2},
                    },
                    hoverinfo="skip",
                )
            )
    # no fixed width: the page (or MLflow's artifact iframe) decides, with responsive=True
    fig.update_layout(
        title={
            "text": _title(study_name, x, y),
            "subtitle": {"text": _count_note(len(records), len(points))},
        },
        template="plotly_white",
        hoverlabel={"align": "left"},
        legend={"title": {"text": "trials"}},
        height=620,
        margin={"t": 90},
    )
    fig.update_xaxes(
        title_text=axis_title(x, points),
        type="log" if _use_log_axis([p.x for p in points]) else "linear",
    )
    fig.update_yaxes(
        title_text=axis_title(y, points),
        type="log" if _use_log_axis([p.y for p in points]) else "linear",
    )
    return fig


def write_figure_html(fig: go.Figure, path: Path) -> Path:
    """Write ``fig`` as one self-contained HTML file (plotly.js inlined: clusters are offline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(
        str(path),
        include_plotlyjs=True,
        include_mathjax=False,
        full_html=True,
        config={"displaylogo": False, "responsive": True},
    )
    return path


def write_pareto_html(
    path: Path,
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    x: Objective,
    y: Objective,
    *,
    study_name: str = "",
    knee_number: int | None = None,
) -> Path:
    """Write the Pareto scatter of ``y`` against ``x`` as self-contained HTML; return the path."""
    fig = pareto_figure(records, objectives, x, y, study_name=study_name, knee_number=knee_number)
    return write_figure_html(fig, path)


def write_pareto_png(
    path: Path,
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    x: Objective,
    y: Objective,
    *,
    study_name: str = "",
    knee_number: int | None = None,
    dpi: int = 120,
) -> Path:
    """Write the Pareto scatter of ``y`` against ``x`` as a PNG (matplotlib, no display)."""
    points = _points(records, x, y)
    fig, ax = _new_axes()
    for group in [g for g in _STYLES if g != "front"] + ["front"]:
        members = [p for p in points if trial_group(p.record) == group]
        if not members:
            continue
        _, marker, colour = _STYLES[group]
        is_front = group == "front"
        filled = marker not in ("x", "+", "1")
        ax.scatter(
            [p.x for p in members],
            [p.y for p in members],
            marker=marker,
            s=140 if is_front else 40,
            c=colour,
            edgecolors="#333333" if is_front and filled else None,
            alpha=1.0 if is_front else (0.75 if group == "dominated" else _FADED),
            label=f"{_GROUP_LABELS[group]} ({len(members)})",
            zorder=3 if is_front else 2,
        )
    line = _front_line(points)
    if len(objectives) == 2 and len(line) >= 2:
        ax.plot([p.x for p in line], [p.y for p in line], color=_STYLES["front"][2], zorder=2.5)
    for p in points:
        if p.record.number == knee_number:
            _ring(ax, p, "o", 500, "#111111", f"knee (trial {p.record.number})")
        if p.record.initial_spec:
            _ring(ax, p, "s", 320, _WARM_START_COLOUR, warm_start_label(p.record))
    if _use_log_axis([p.x for p in points]):
        ax.set_xscale("log")
    if _use_log_axis([p.y for p in points]):
        ax.set_yscale("log")
    ax.set_xlabel(axis_title(x, points))
    ax.set_ylabel(axis_title(y, points))
    ax.set_title(
        f"{_title(study_name, x, y)}\n{_count_note(len(records), len(points))}", fontsize=10
    )
    ax.grid(True, alpha=0.3)
    if points:
        legend = ax.legend(fontsize=8, loc="best")
        for handle in legend.legend_handles:  # one marker size in the legend, whatever the plot's
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([60])
    return _save(fig, path, dpi)


def _ring(ax: Any, p: _Point, marker: str, size: float, colour: str, label: str) -> None:
    """Draw an open marker around one trial's point (the knee, a warm start), with a legend."""
    ax.scatter(
        [p.x],
        [p.y],
        s=size,
        marker=marker,
        facecolors="none",
        edgecolors=colour,
        linewidths=1.5,
        label=label,
        zorder=4,
    )


def hypervolume_figure(summary: StudySummary) -> go.Figure:
    """Return a plotly line of the hypervolume against the number of completed trials."""
    n = [p[0] for p in summary.hypervolume_history]
    hv = [p[1] for p in summary.hypervolume_history]
    fig = go.Figure(
        go.Scatter(
            x=n,
            y=hv,
            mode="lines+markers",
            name="hypervolume",
            hovertemplate="%{x} completed trials<br>hypervolume %{y:.5g}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{summary.study_name}: hypervolume ({_reference_text(summary)})",
        template="plotly_white",
        height=500,
    )
    fig.update_xaxes(title_text="completed trials")
    fig.update_yaxes(title_text="hypervolume (higher is better)")
    return fig


def write_hypervolume_html(path: Path, summary: StudySummary) -> Path:
    """Write the hypervolume-versus-trials plot as self-contained HTML; return the path."""
    return write_figure_html(hypervolume_figure(summary), path)


def write_hypervolume_png(path: Path, summary: StudySummary, *, dpi: int = 120) -> Path:
    """Write the hypervolume-versus-trials plot as a PNG; return the path."""
    fig, ax = _new_axes(figsize=(8.0, 4.5))
    n = [p[0] for p in summary.hypervolume_history]
    hv = [p[1] for p in summary.hypervolume_history]
    ax.plot(n, hv, marker="o", markersize=3)
    ax.set_xlabel("completed trials")
    ax.set_ylabel("hypervolume (higher is better)")
    ax.set_title(f"{summary.study_name}: hypervolume ({_reference_text(summary)})", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _save(fig, path, dpi)


def _reference_text(summary: StudySummary) -> str:
    if not summary.reference_point:
        return "no reference point"
    ref = ", ".join(f"{k}={v:.4g}" for k, v in summary.reference_point.items())
    return f"reference {ref}"


def _new_axes(figsize: tuple[float, float] = (9.0, 6.0)) -> tuple[Any, Any]:
    # Figure + Agg canvas directly instead of pyplot: no global backend switch, no display,
    # and no figure registry to leak across many refreshes.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, path: Path, dpi: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), dpi=dpi)
    return path
