"""Ablation plots: a quantity versus the ablated factor with CI bars, and the metric–VRAM plane.

The caller (``nas.ablation``) computes every mean and confidence interval; these functions get
plain points and only draw them, as self-contained plotly HTML and matplotlib PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from dashboards.plots import write_figure_html

METRIC_STEM = "ablation_metric"
VRAM_STEM = "ablation_vram"
PLANE_STEM = "ablation_plane"
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
_BASE_COLOUR = "#000000"


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval (NaN bounds: undefined, e.g. one seed)."""

    mean: float
    low: float
    high: float

    @property
    def minus(self) -> float:
        """Return the bar length below the mean (0 when the interval is undefined)."""
        return self.mean - self.low if math.isfinite(self.low) else 0.0

    @property
    def plus(self) -> float:
        """Return the bar length above the mean (0 when the interval is undefined)."""
        return self.high - self.mean if math.isfinite(self.high) else 0.0


@dataclass(frozen=True)
class VariantPoint:
    """One variant: its label, its factor value (x), its grid series and its intervals."""

    label: str
    x: str  # the factor value as text; the x axis keeps the order the points arrive in
    series: str = ""  # value of the second (grid) factor; "" without a grid
    is_base: bool = False
    values: dict[str, Interval] = field(default_factory=dict)  # quantity name -> interval


def _series(points: Sequence[VariantPoint], key: str) -> dict[str, list[VariantPoint]]:
    groups: dict[str, list[VariantPoint]] = {}
    for p in points:
        if key in p.values and math.isfinite(p.values[key].mean):
            groups.setdefault(p.series, []).append(p)
    return groups


def factor_figure(
    points: Sequence[VariantPoint],
    key: str,
    *,
    x_title: str,
    y_title: str,
    series_title: str = "",
    title: str = "",
) -> go.Figure:
    """Return a plotly figure of ``key`` against the factor: mean with CI bars, one line per
    grid series; the base variant is drawn as a black star."""
    fig = go.Figure()
    order = list(dict.fromkeys(p.x for p in points))
    for i, (series, members) in enumerate(_series(points, key).items()):
        colour = _COLOURS[i % len(_COLOURS)]
        name = f"{series_title}={series}" if series_title else (series or key)
        fig.add_trace(
            go.Scatter(
                x=[p.x for p in members],
                y=[p.values[key].mean for p in members],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [p.values[key].plus for p in members],
                    "arrayminus": [p.values[key].minus for p in members],
                },
                mode="lines+markers",
                name=name,
                marker={
                    "size": [14 if p.is_base else 9 for p in members],
                    "symbol": ["star" if p.is_base else "circle" for p in members],
                    "color": [_BASE_COLOUR if p.is_base else colour for p in members],
                },
                line={"color": colour},
                text=[_hover(p, key) for p in members],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis={
            "title": x_title,
            "type": "category",
            "categoryorder": "array",
            "categoryarray": order,
        },
        yaxis={"title": y_title},
        template="plotly_white",
        showlegend=bool(series_title),
    )
    return fig


def plane_figure(
    points: Sequence[VariantPoint],
    *,
    x_key: str,
    y_key: str,
    x_title: str,
    y_title: str,
    title: str = "",
) -> go.Figure:
    """Return the variants on the (x_key, y_key) plane with CI bars on both axes, labelled."""
    shown = [p for p in points if x_key in p.values and y_key in p.values]
    fig = go.Figure()
    for p in shown:
        x, y = p.values[x_key], p.values[y_key]
        fig.add_trace(
            go.Scatter(
                x=[x.mean],
                y=[y.mean],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [x.plus],
                    "arrayminus": [x.minus],
                },
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [y.plus],
                    "arrayminus": [y.minus],
                },
                mode="markers+text",
                text=[p.label],
                textposition="top center",
                name=p.label,
                marker={
                    "size": 14 if p.is_base else 10,
                    "symbol": "star" if p.is_base else "circle",
                    "color": _BASE_COLOUR if p.is_base else None,
                },
                hovertext=[_hover(p, y_key) + "<br>" + _hover(p, x_key)],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title, xaxis={"title": x_title}, yaxis={"title": y_title}, template="plotly_white"
    )
    return fig


def _hover(point: VariantPoint, key: str) -> str:
    value = point.values.get(key)
    if value is None:
        return f"<b>{point.label}</b>"
    if math.isfinite(value.low):
        return (
            f"<b>{point.label}</b><br>{key}: {value.mean:.5g} [{value.low:.5g}, {value.high:.5g}]"
        )
    return f"<b>{point.label}</b><br>{key}: {value.mean:.5g}"


# -- PNG (matplotlib, no display) ---------------------------------------------------------------
def _axes() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 6.0))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path, dpi: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(str(path), dpi=dpi)
    return path


def write_factor_png(
    path: Path,
    points: Sequence[VariantPoint],
    key: str,
    *,
    x_title: str,
    y_title: str,
    series_title: str = "",
    title: str = "",
) -> Path:
    """Write ``factor_figure``'s content as a PNG; return the path."""
    fig, ax = _axes()
    order = list(dict.fromkeys(p.x for p in points))
    position = {x: i for i, x in enumerate(order)}
    for i, (series, members) in enumerate(_series(points, key).items()):
        colour = _COLOURS[i % len(_COLOURS)]
        xs = [position[p.x] for p in members]
        ys = [p.values[key].mean for p in members]
        errors = [[p.values[key].minus for p in members], [p.values[key].plus for p in members]]
        label = f"{series_title}={series}" if series_title else None
        ax.errorbar(xs, ys, yerr=errors, color=colour, marker="o", capsize=4, label=label)
        for p, x, y in zip(members, xs, ys):
            if p.is_base:
                ax.plot([x], [y], marker="*", markersize=16, color=_BASE_COLOUR, linestyle="")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=20, ha="right")
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series_title:
        ax.legend()
    return _save(fig, path)


def write_plane_png(
    path: Path,
    points: Sequence[VariantPoint],
    *,
    x_key: str,
    y_key: str,
    x_title: str,
    y_title: str,
    title: str = "",
) -> Path:
    """Write ``plane_figure``'s content as a PNG; return the path."""
    fig, ax = _axes()
    for i, p in enumerate(p for p in points if x_key in p.values and y_key in p.values):
        x, y = p.values[x_key], p.values[y_key]
        colour = _BASE_COLOUR if p.is_base else _COLOURS[i % len(_COLOURS)]
        ax.errorbar(
            [x.mean],
            [y.mean],
            xerr=[[x.minus], [x.plus]],
            yerr=[[y.minus], [y.plus]],
            marker="*" if p.is_base else "o",
            markersize=14 if p.is_base else 8,
            color=colour,
            capsize=4,
        )
        ax.annotate(p.label, (x.mean, y.mean), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_ablation_plots(
    out_dir: Path,
    points: Sequence[VariantPoint],
    *,
    metric: str,
    vram_key: str = "train_vram_mb",
    x_title: str,
    series_title: str = "",
    title: str = "",
    vram_estimated: bool = False,
) -> list[Path]:
    """Write the metric and VRAM versus the factor, and the metric–VRAM plane (HTML and PNG).

    Returns the paths written: ``ablation_metric``, ``ablation_vram`` and ``ablation_plane``,
    each as ``.html`` and ``.png`` (a quantity no variant has is skipped).
    """
    vram_title = "peak training VRAM (MiB)" + (", estimated" if vram_estimated else "")
    written: list[Path] = []
    for stem, key, y_title in ((METRIC_STEM, metric, metric), (VRAM_STEM, vram_key, vram_title)):
        if not _series(points, key):
            continue
        kwargs: dict[str, Any] = {
            "x_title": x_title,
            "y_title": f"{y_title} (mean, 95% CI)",
            "series_title": series_title,
            "title": title,
        }
        written.append(
            write_figure_html(factor_figure(points, key, **kwargs), out_dir / f"{stem}.html")
        )
        written.append(write_factor_png(out_dir / f"{stem}.png", points, key, **kwargs))
    if any(metric in p.values and vram_key in p.values for p in points):
        plane: dict[str, Any] = {
            "x_key": vram_key,
            "y_key": metric,
            "x_title": vram_title,
            "y_title": metric,
            "title": title,
        }
        written.append(
            write_figure_html(plane_figure(points, **plane), out_dir / f"{PLANE_STEM}.html")
        )
        written.append(write_plane_png(out_dir / f"{PLANE_STEM}.png", points, **plane))
    return written
