"""Pareto and hypervolume plots, and the artifact files a study's parent run receives."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
from pathlib import Path

from dashboards import artifacts, plots
from dashboards.records import StudySummary
from tests.dashboards.conftest import OBJECTIVES, THREE_OBJECTIVES, SyntheticStudy, build_study

ACC, VRAM = OBJECTIVES


def _traces(fig):  # name prefix -> trace
    return {t.name.split(" (")[0]: t for t in fig.data}


def test_each_group_is_its_own_trace_with_the_right_members(study: SyntheticStudy) -> None:
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC, study_name="s")
    traces = _traces(fig)
    front = [r for r in study.records if r.on_pareto_front]
    dominated = [r for r in study.records if r.status == "complete" and not r.on_pareto_front]
    assert len(traces["Pareto front"].x) == len(front) >= 2
    assert len(traces["dominated"].x) == len(dominated)
    assert len(traces["pruned"].x) == sum(r.status == "pruned" for r in study.records)
    assert len(traces["out of memory"].x) == 1
    # the failed trial has no objective values: not drawn, but the title says so
    assert "failed" not in traces
    assert fig.layout.title.subtitle.text == "11 of 12 trials shown; 1 without objective values"
    symbols = {name: t.marker.symbol for name, t in traces.items() if t.mode == "markers"}
    assert len(set(symbols.values())) == len(symbols), symbols


def test_front_line_joins_front_points_in_x_order(study: SyntheticStudy) -> None:
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC)
    line = _traces(fig)["front line"]
    front = sorted(
        (r.objectives["train_vram_mb"], r.objectives["val_accuracy"])
        for r in study.records
        if r.on_pareto_front
    )
    assert list(zip(line.x, line.y)) == front
    # a real 2-objective front: less VRAM never buys more accuracy along the line
    assert all(a2 > a1 for a1, a2 in zip(line.y, line.y[1:]))


def test_no_line_when_more_than_two_objectives(study: SyntheticStudy) -> None:
    fig = plots.pareto_figure(study.records, THREE_OBJECTIVES, VRAM, ACC)
    assert "front line" not in _traces(fig)
    assert "Pareto front" in _traces(fig)


def test_hover_shows_spec_summary_objectives_and_costs(study: SyntheticStudy) -> None:
    record = next(r for r in study.records if r.on_pareto_front)
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC)
    texts = list(_traces(fig)["Pareto front"].text)
    text = next(t for t in texts if f"trial {record.number}<" in t)
    assert record.spec_summary.split(" | ")[0] in text
    assert "on Pareto front" in text
    assert f"train_vram_mb: {record.objectives['train_vram_mb']:.5g}" in text
    assert f"params: {record.costs['params']:,}" in text
    assert "VRAM estimated" in text


def test_axes_name_objectives_with_direction(study: SyntheticStudy) -> None:
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC)
    # every synthetic trial's VRAM is estimated, and the axis says so
    assert fig.layout.xaxis.title.text == (
        "peak training VRAM (MiB), estimated (no GPU) (lower is better)"
    )
    assert fig.layout.yaxis.title.text == "validation accuracy (higher is better)"


def test_vram_axis_says_how_many_figures_are_estimated(study: SyntheticStudy) -> None:
    records = copy.deepcopy(study.records)
    plotted = [r for r in records if r.objectives.get("train_vram_mb") is not None]
    plotted[0].costs["vram_source"] = "measured"
    fig = plots.pareto_figure(records, OBJECTIVES, VRAM, ACC)
    title = fig.layout.xaxis.title.text
    assert title.startswith("peak training VRAM (MiB), estimated for ")
    n, total = re.findall(r"estimated for (\d+) of (\d+) trials", title)[0]
    assert int(n) == int(total) - 1 and int(total) > 1, title
    for record in plotted:
        record.costs["vram_source"] = "measured"
    fig = plots.pareto_figure(records, OBJECTIVES, VRAM, ACC)
    assert fig.layout.xaxis.title.text == "peak training VRAM (MiB) (lower is better)"


def test_knee_is_marked(study: SyntheticStudy) -> None:
    record = [r for r in study.records if r.on_pareto_front][1]
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC, knee_number=record.number)
    knee = next(t for t in fig.data if t.name == f"knee (trial {record.number})")
    assert (knee.x[0], knee.y[0]) == (
        record.objectives["train_vram_mb"],
        record.objectives["val_accuracy"],
    )


def test_warm_start_trials_are_marked(tmp_path: Path, study: SyntheticStudy) -> None:
    record = next(r for r in study.records if r.status == "complete" and not r.on_pareto_front)
    record.initial_spec = "vgg5_c128 (configs/specs/vgg5_c128.json)"
    fig = plots.pareto_figure(study.records, OBJECTIVES, VRAM, ACC)
    marks = [t for t in fig.data if t.name.startswith("warm start")]
    assert [t.name for t in marks] == [f"warm start vgg5_c128 (trial {record.number})"]
    assert (marks[0].x[0], marks[0].y[0]) == (
        record.objectives["train_vram_mb"],
        record.objectives["val_accuracy"],
    )
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    png = plots.write_pareto_png(tmp_path / "p.png", study.records, OBJECTIVES, VRAM, ACC)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(plt.get_fignums()) == before  # the figure is closed after saving


def test_html_is_self_contained(tmp_path: Path, study: SyntheticStudy) -> None:
    path = plots.write_pareto_html(tmp_path / "p.html", study.records, OBJECTIVES, VRAM, ACC)
    html = path.read_text(encoding="utf-8")
    assert path.stat().st_size > 1_000_000  # plotly.js is inlined
    assert not re.search(r"<script[^>]+src=", html), "external script in pareto.html"
    # plotly.js itself mentions map-tile URLs; the browser test proves none is requested
    assert not re.search(r"<link[^>]+href=[\"']https?:", html), "external stylesheet"


def test_png_files_are_images(tmp_path: Path, study: SyntheticStudy) -> None:
    png = plots.write_pareto_png(tmp_path / "p.png", study.records, OBJECTIVES, VRAM, ACC)
    hv = plots.write_hypervolume_png(tmp_path / "hv.png", study.summary)
    for path in (png, hv):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000


def test_hypervolume_figure_plots_the_history(study: SyntheticStudy) -> None:
    fig = plots.hypervolume_figure(study.summary)
    assert list(fig.data[0].x) == [n for n, _ in study.summary.hypervolume_history]
    assert list(fig.data[0].y) == [hv for _, hv in study.summary.hypervolume_history]
    assert "train_vram_mb=1000" in fig.layout.title.text


def test_study_artifacts_two_objectives(tmp_path: Path, study: SyntheticStudy) -> None:
    written = artifacts.write_study_artifacts(tmp_path, study.records, study.summary)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "trials.csv",
            "pareto.json",
            "best_spec.json",
            "pareto.html",
            "pareto.png",
            "hypervolume.html",
            "hypervolume.png",
        ]
    )
    with (tmp_path / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == list(range(12))
    assert rows[11]["status"] == "failed" and rows[11]["objective.val_accuracy"] == ""
    assert rows[11]["reason"] == "worker died"
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert [r["number"] for r in pareto["front"]] == [
        r.number for r in study.records if r.on_pareto_front
    ]
    assert pareto["hypervolume"] == study.summary.hypervolume_history[-1][1]
    best = json.loads((tmp_path / "best_spec.json").read_text())
    assert best["trial_number"] == study.summary.knee_number
    assert best["selected_by"] == "knee"
    assert best["spec"] == study.records[best["trial_number"]].spec


def test_study_artifacts_three_objectives_add_pairwise_plots(
    tmp_path: Path, study: SyntheticStudy
) -> None:
    summary = StudySummary(study_name="three", objectives=list(THREE_OBJECTIVES), knee_number=None)
    names = {p.name for p in artifacts.write_study_artifacts(tmp_path, study.records, summary)}
    for stem in (
        "pareto_val_accuracy_vs_train_vram_mb",
        "pareto_val_accuracy_vs_latency_ms",
        "pareto_train_vram_mb_vs_latency_ms",
    ):
        assert {f"{stem}.html", f"{stem}.png"} <= names
    # no knee: the best trial (records.best_record): the best complete one on the first objective
    best = json.loads((tmp_path / "best_spec.json").read_text())
    complete = [r for r in study.records if r.status == "complete"]
    top = max(complete, key=lambda r: r.objectives["val_accuracy"])
    assert best["trial_number"] == top.number and best["selected_by"] == "best val_accuracy"
    assert "hypervolume.html" not in names  # no history was given


def test_non_finite_values_become_null_in_json(tmp_path: Path) -> None:
    study = build_study(n_trials=4)
    study.records[0].metrics["val_loss"] = math.nan
    study.records[0].on_pareto_front = True
    artifacts.write_pareto_json(tmp_path / "p.json", study.records, study.summary)
    data = json.loads((tmp_path / "p.json").read_text())  # strict JSON: NaN would not parse
    assert data["front"][0]["metrics"]["val_loss"] is None


def test_no_best_spec_without_complete_trials(tmp_path: Path) -> None:
    study = build_study(n_trials=12)
    records = [r for r in study.records if r.status != "complete"]
    summary = StudySummary("s", list(OBJECTIVES))
    assert artifacts.write_best_spec_json(tmp_path / "b.json", records, summary) is None
