"""The front of a confirmation with error bars: each design's mean and 95 % CI over seeds.

``nas.confirm`` computes the statistics and which designs are on the front of the means; these
functions only draw them (plotly HTML, self-contained, and a matplotlib PNG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from dashboards.ablation_plots import Interval
from dashboards.plots import write_figure_html
from dashboards.records import Objective


@dataclass(frozen=True)
class ConfirmPoint:
    """One confirmed design: its label, mean and CI per objective, and its role."""

    label: str
    values: dict[str, Interval] = field(default_factory=dict)
    on_front: bool = False  # on the Pareto front of the means
    is_base: bool = False
    differs: bool = False  # differs from the baseline in the y objective (Holm-corrected)


def _errors(points: Sequence[ConfirmPoint], key: str) -> tuple[list[float], list[float]]:
    return [p.values[key].minus for p in points], [p.values[key].plus for p in points]


def _drawable(points: Sequence[ConfirmPoint], x: Objective, y: Objective) -> list[ConfirmPoint]:
    return [p for p in points if x.name in p.values and y.name in p.values]


def confirm_figure(
    points: Sequence[ConfirmPoint], x: Objective, y: Objective, *, title: str = ""
) -> go.Figure:
    """Return a plotly scatter of the means of ``y`` against ``x`` with 95 % CI error bars."""
    fig = go.Figure()
    shown = _drawable(points, x, y)
    groups = [
        ("front of the means", [p for p in shown if p.on_front and not p.is_base], "#d62728"),
        ("dominated", [p for p in shown if not p.on_front and not p.is_base], "#1f77b4"),
        ("baseline", [p for p in shown if p.is_base], "#6a3d9a"),
    ]
    for name, members, colour in groups:
        if not members:
            continue
        xm, xp = _errors(members, x.name)
        ym, yp = _errors(members, y.name)
        fig.add_trace(
            go.Scatter(
                x=[p.values[x.name].mean for p in members],
                y=[p.values[y.name].mean for p in members],
                mode="markers+text",
                text=[p.label + (" *" if p.differs else "") for p in members],
                textposition="top right",
                name=f"{name} ({len(members)})",
                marker={"color": colour, "size": 11},
                error_x={"type": "data", "symmetric": False, "array": xp, "arrayminus": xm},
                error_y={"type": "data", "symmetric": False, "array": yp, "arrayminus": ym},
            )
        )
    fig.update_layout(
        title={
            "text": title or f"{y.title} vs {x.title}: mean and 95 % CI over seeds",
            "subtitle": {"text": "* differs from the baseline (paired over seeds, Holm)"},
        },
        template="plotly_white",
        height=620,
        margin={"t": 90},
    )
    fig.update_xaxes(
        title_text=f"{x.title} ({'lower' if x.direction == 'minimize' else 'higher'} is better)"
    )
    fig.update_yaxes(
        title_text=f"{y.title} ({'lower' if y.direction == 'minimize' else 'higher'} is better)"
    )
    return fig


def write_confirm_plots(
    out_dir: Path,
    points: Sequence[ConfirmPoint],
    x: Objective,
    y: Objective,
    *,
    title: str = "",
    dpi: int = 120,
) -> list[Path]:
    """Write ``confirm_front.html`` and ``confirm_front.png``; return their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    html = write_figure_html(
        confirm_figure(points, x, y, title=title), out_dir / "confirm_front.html"
    )
    fig = Figure(figsize=(9.0, 6.0), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: no global backend, no figure registry
    ax = fig.add_subplot()
    shown = _drawable(points, x, y)
    for p in shown:
        colour = "#6a3d9a" if p.is_base else ("#d62728" if p.on_front else "#1f77b4")
        xm, xp = _errors([p], x.name)
        ym, yp = _errors([p], y.name)
        ax.errorbar(
            [p.values[x.name].mean],
            [p.values[y.name].mean],
            xerr=[xm, xp],
            yerr=[ym, yp],
            fmt="o",
            color=colour,
            capsize=4,
        )
        ax.annotate(
            p.label + (" *" if p.differs else ""),
            (p.values[x.name].mean, p.values[y.name].mean),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    ax.set_xlabel(x.title)
    ax.set_ylabel(y.title)
    ax.set_title(
        (title or f"{y.title} vs {x.title}: mean and 95 % CI over seeds")
        + "\nred: front of the means · purple: baseline · *: differs from it (Holm)",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    png = out_dir / "confirm_front.png"
    fig.savefig(str(png), dpi=dpi)
    return [html, png]


__all__ = ["ConfirmPoint", "confirm_figure", "write_confirm_plots"]
