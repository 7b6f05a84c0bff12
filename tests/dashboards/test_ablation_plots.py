"""Ablation plots: error bars come from the intervals given, files are written, NaN is safe."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dashboards.ablation_plots import (
    Interval,
    VariantPoint,
    factor_figure,
    plane_figure,
    write_ablation_plots,
)

NAN = math.nan


def _points() -> list[VariantPoint]:
    return [
        VariantPoint(
            "depth=5",
            "5",
            is_base=True,
            values={
                "test_accuracy": Interval(0.90, 0.85, 0.95),
                "train_vram_mb": Interval(100, 100, 100),
            },
        ),
        VariantPoint(
            "depth=3",
            "3",
            values={
                "test_accuracy": Interval(0.80, 0.70, 0.88),
                "train_vram_mb": Interval(50, 49, 51),
            },
        ),
        # one seed: no interval, drawn without a bar
        VariantPoint(
            "depth=1",
            "1",
            values={
                "test_accuracy": Interval(0.75, NAN, NAN),
                "train_vram_mb": Interval(10, NAN, NAN),
            },
        ),
    ]


def test_factor_figure_bars_are_the_intervals_in_plan_order() -> None:
    fig = factor_figure(_points(), "test_accuracy", x_title="depth", y_title="acc")
    (trace,) = fig.data
    assert list(trace.x) == ["5", "3", "1"]
    assert list(trace.error_y.array) == pytest.approx([0.05, 0.08, 0.0])
    assert list(trace.error_y.arrayminus) == pytest.approx([0.05, 0.10, 0.0])
    assert list(trace.marker.symbol) == ["star", "circle", "circle"]
    assert list(fig.layout.xaxis.categoryarray) == ["5", "3", "1"]


def test_factor_figure_one_line_per_grid_series() -> None:
    points = [
        VariantPoint(
            f"d={d}, c={c}",
            str(d),
            str(c),
            d == 2 and c == 8,
            {"m": Interval(d + c / 10, d, d + 1)},
        )
        for d in (1, 2)
        for c in (4, 8)
    ]
    fig = factor_figure(points, "m", x_title="depth", y_title="m", series_title="channels")
    assert [t.name for t in fig.data] == ["channels=4", "channels=8"]
    assert list(fig.data[1].y) == pytest.approx([1.8, 2.8])


def test_plane_figure_has_bars_on_both_axes() -> None:
    fig = plane_figure(
        _points(), x_key="train_vram_mb", y_key="test_accuracy", x_title="VRAM", y_title="acc"
    )
    assert [t.name for t in fig.data] == ["depth=5", "depth=3", "depth=1"]
    assert list(fig.data[1].error_x.arrayminus) == [1]
    assert list(fig.data[1].error_y.array) == pytest.approx([0.08])


def test_write_ablation_plots_writes_html_and_png(tmp_path: Path) -> None:
    paths = write_ablation_plots(
        tmp_path, _points(), metric="test_accuracy", x_title="depth", vram_estimated=True
    )
    names = sorted(p.name for p in paths)
    assert names == sorted(
        f"ablation_{stem}.{ext}" for stem in ("metric", "vram", "plane") for ext in ("html", "png")
    )
    for path in paths:
        assert path.stat().st_size > 1000
    assert (tmp_path / "ablation_metric.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_quantity_is_skipped(tmp_path: Path) -> None:
    points = [VariantPoint("a", "1", is_base=True, values={"m": Interval(1, 0, 2)})]
    paths = write_ablation_plots(tmp_path, points, metric="m", x_title="x")
    assert sorted(p.name for p in paths) == ["ablation_metric.html", "ablation_metric.png"]
