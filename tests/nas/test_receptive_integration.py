"""The receptive field travels with a trial: record costs, MLflow params, front table, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboards import artifacts, plots
from dashboards.records import StudySummary
from dashboards.run_contents import trial_params
from nas.search import front_table
from nas.trial import record_from_fit
from search_spaces.anchors import vertical_anchor, vgg_anchor
from tests.dashboards.conftest import OBJECTIVES, build_study
from trainers.result import TrainConfig, TrialResult


def _record(spec_fn, number: int = 0):  # type: ignore[no-untyped-def]
    result = TrialResult(status="complete", metrics={"val_accuracy": 0.9}, params=10, gflops=0.1)
    return record_from_fit(spec_fn, result, TrainConfig(epochs=1), number, input_shape=(64, 101))


def test_records_carry_the_receptive_field_and_mlflow_params_show_it() -> None:
    vgg, vertical = _record(vgg_anchor(5, 128)), _record(vertical_anchor(7), 1)
    assert vgg.costs["receptive_freq_bins"] == 64 and vgg.costs["receptive_time_frames"] == 94
    assert vgg.costs["receptive_whole_freq_block"] == "body[4]"
    assert vertical.costs["receptive_whole_freq_depth"] == 1
    assert vertical.costs["receptive_time_frames"] == 7
    params = trial_params(vgg)
    assert params["receptive_whole_freq_depth"] == "5"
    assert params["receptive_whole_freq_block"] == "body[4]"
    # without an input shape (or for an invalid spec) there is no receptive field
    bare = record_from_fit(vgg_anchor(3, 8), TrialResult(status="complete"), TrainConfig())
    assert not any(k.startswith("receptive") for k in bare.costs)
    assert not any(k.startswith("receptive") for k in trial_params(bare))


def test_front_table_has_a_receptive_field_column() -> None:
    vgg3, vertical = _record(vgg_anchor(3, 64)), _record(vertical_anchor(1), 1)
    for r in (vgg3, vertical):
        r.objectives = {"val_accuracy": 0.9}
    table = front_table([vgg3, vertical], OBJECTIVES)
    assert "RF f×t" in table.splitlines()[0]
    assert " 22×22 " in table.splitlines()[2]  # a 3-block VGG: no block sees the axis
    assert " 64×1+ " in table.splitlines()[3]


def test_the_metric_is_plotted_against_the_receptive_field(tmp_path: Path) -> None:
    study = build_study(n_trials=6)
    for i, record in enumerate(study.records):
        record.costs["receptive_freq_bins"] = 10 * (i + 1)
        record.costs["receptive_whole_freq_depth"] = None if i % 2 else i + 1
    summary = StudySummary(study_name="rf", objectives=list(OBJECTIVES))
    names = {p.name for p in artifacts.write_study_artifacts(tmp_path, study.records, summary)}
    assert "pareto_val_accuracy_vs_receptive_freq_bins.html" in names
    assert "pareto_val_accuracy_vs_receptive_whole_freq_depth.png" in names
    fig = plots.pareto_figure(
        study.records, OBJECTIVES, plots.RECEPTIVE_AXES[0], OBJECTIVES[0], study_name="rf"
    )
    xs = {x for trace in fig.data for x in (trace.x or ()) if x is not None}  # line + markers
    finite = [r for r in study.records if r.objectives.get("val_accuracy") is not None]
    assert xs == {float(r.costs["receptive_freq_bins"]) for r in finite}
    # records without the costs: no receptive plot
    plain = build_study(n_trials=4)
    assert plots.receptive_pairs(plain.records, OBJECTIVES) == []


def test_fsnas_cost_json_has_the_receptive_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nas.cli import main

    spec = tmp_path / "vgg.json"
    spec.write_text(vgg_anchor(5, 8).to_json(), encoding="utf-8")
    args = ["cost", str(spec), "--n-mels", "64", "--n-frames", "101", "--n-classes", "10"]
    assert main([*args, "--latency-repeats", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k for k in out if "receptive" in k} == {
        "receptive_freq_bins",
        "receptive_time_frames",
        "receptive_whole_freq_block",
        "receptive_whole_freq_depth",
        "receptive_blocks",
    }
    assert [b["nominal_freq_bins"] for b in out["receptive_blocks"]] == [4, 10, 22, 46, 94]
    assert out["receptive_whole_freq_depth"] == 5
    assert main([*args, "--latency-repeats", "1"]) == 0
    assert "whole frequency axis is first seen by body[4]" in capsys.readouterr().out


def test_front_table_shows_pitch_robustness_when_trials_report_it() -> None:
    vertical = _record(vertical_anchor(1))
    vertical.objectives = {"val_accuracy": 0.9}
    assert "pitch-robust" not in front_table([vertical], OBJECTIVES)
    vertical.metrics["val_pitch_robustness"] = 0.8125
    table = front_table([vertical], OBJECTIVES)
    assert "pitch-robust" in table.splitlines()[0] and " 0.8125 " in table.splitlines()[2]
