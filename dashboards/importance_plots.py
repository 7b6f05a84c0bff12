"""Factor importance per objective as grouped bars (plotly HTML, matplotlib PNG).

``nas.insight`` computes the importances with Optuna's evaluators; this module only draws the
plain numbers it gets: objective -> {search dimension: importance}.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import plotly.graph_objects as go

from dashboards.plots import write_figure_html


def _order(values: Mapping[str, Mapping[str, float]]) -> list[str]:
    first = next((v for v in values.values() if v), {})
    rest = sorted({p for v in values.values() for p in v} - set(first))
    return sorted(first, key=lambda p: (-first[p], p)) + rest


def importance_figure(values: Mapping[str, Mapping[str, float]], *, title: str = "") -> go.Figure:
    """Return horizontal grouped bars: one group per dimension, one bar per objective."""
    dims = _order(values)
    fig = go.Figure()
    for objective, imp in values.items():
        fig.add_trace(
            go.Bar(y=dims, x=[imp.get(d, 0.0) for d in dims], name=objective, orientation="h")
        )
    fig.update_layout(
        title={"text": title or "factor importance per objective (Optuna)"},
        template="plotly_white",
        barmode="group",
        height=max(360, 40 * len(dims) + 160),
        yaxis={"autorange": "reversed"},
        xaxis={"title": {"text": "importance (each objective sums to 1)"}},
    )
    return fig


def write_importance_plots(
    out_dir: Path, values: Mapping[str, Mapping[str, float]], *, title: str = "", dpi: int = 120
) -> list[Path]:
    """Write ``importance.html`` and ``importance.png``; return their paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    html = write_figure_html(importance_figure(values, title=title), out_dir / "importance.html")
    dims = _order(values)
    fig = Figure(figsize=(9.0, max(3.0, 0.45 * len(dims) + 1.5)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = max(1, len(values))
    height = 0.8 / n
    for k, (objective, imp) in enumerate(values.items()):
        ax.barh(
            [i + k * height for i in range(len(dims))],
            [imp.get(d, 0.0) for d in dims],
            height=height,
            label=objective,
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(dims))], dims, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("importance (each objective sums to 1)")
    ax.set_title(title or "factor importance per objective (Optuna)", fontsize=10)
    if values:
        ax.legend(fontsize=8)
    png = out_dir / "importance.png"
    fig.savefig(str(png), dpi=dpi)
    return [html, png]


__all__ = ["importance_figure", "write_importance_plots"]
