"""Ablation planning, the vgg-to-vertical study, statistics against hand values, outputs, runs.

The statistics tests feed ``aggregate`` hand-made records whose means, intervals and p-values
follow from closed forms (Student t with 1 or 2 degrees of freedom), so they can be checked
without scipy. The end-to-end tests train tiny networks on random features: in-process with
MLflow, and through Ray Tune with the command line.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dashboards.records import Objective, TrialRecord
from nas import ablation, ablation_report, ablation_run
from nas.ablation import AblationError, AblationPlan, Variant
from nas.trial import TrialSettings
from search_spaces import ArchSpec, Branch, ConvBlock, Head, anchors, resolve_height, validate
from trainers.featureset import FeatureConfig, FeatureSet, Split
from trainers.result import TrainConfig

BASE = ArchSpec(
    name="tiny",
    frontend=(Branch(5, 3, 4, freq_reduce="none", freq_padding="same"),),
    body=(ConvBlock(3, 3, 4, pool=(2, 2)), ConvBlock(3, 3, 4, pool=(2, 2))),
    head=Head(),
)


# -- planning -------------------------------------------------------------------------------------
def test_parse_factor_values_types() -> None:
    assert ablation.parse_factor_values("frequency_height", "3, 0.4M,0.9M") == [3, "0.4M", "0.9M"]
    assert ablation.parse_factor_values("depth", "1,2,3") == [1, 2, 3]
    assert ablation.parse_factor_values("time_pooling", "2,2/4") == [2, (2, 4)]
    assert ablation.parse_factor_values("head_pooling", "max,mean") == ["max", "mean"]


@pytest.mark.parametrize(
    ("factor", "text", "message"),
    [
        ("depth", "1,x", "expected a whole number"),
        ("depth", "2,2", "given twice"),
        ("frequency_height", "0.4Q", "fraction"),
        ("nonsense", "1", "unknown factor"),
        ("channels", " , ", "no values"),
    ],
)
def test_parse_factor_values_errors_name_the_value(factor: str, text: str, message: str) -> None:
    with pytest.raises(AblationError, match=message):
        ablation.parse_factor_values(factor, text)


def test_factor_plan_adds_the_base_when_no_value_gives_it() -> None:
    plan = ablation.factor_plan(BASE, "channels", [8, 16], [0, 1, 2])
    assert [v.name for v in plan.variants] == ["base", "channels=8", "channels=16"]
    assert plan.base.spec == BASE and plan.base_index == 0
    assert plan.variants[2].spec.body[1].channels == 16
    trials = plan.trials()
    assert len(trials) == 9
    assert [(t.variant, t.seed) for t in trials[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    config = plan.trial_config(trials[4])
    assert config["seed"] == 1 and config["variant"] == "channels=8"
    assert ArchSpec.from_dict(config["spec"]).frontend[0].channels == 8


def test_factor_plan_marks_the_value_equal_to_the_base() -> None:
    plan = ablation.factor_plan(BASE, "frequency_height", [5, "0.5M"], [0, 1])
    assert [v.name for v in plan.variants] == ["frequency_height=5", "frequency_height=0.5M"]
    assert plan.base.name == "frequency_height=5"


def test_factor_plan_grid_is_the_product() -> None:
    plan = ablation.factor_plan(
        BASE, "depth", [1, 2], [0, 1], grid_factor="channels", grid_values=[4, 8]
    )
    assert plan.factors == ("depth", "channels")
    assert [v.name for v in plan.variants] == [
        "depth=1, channels=4",
        "depth=1, channels=8",
        "depth=2, channels=4",
        "depth=2, channels=8",
    ]
    assert plan.base.name == "depth=2, channels=4"
    assert plan.variants[1].factor_value("channels") == 8


def test_factor_plan_refuses_same_network_twice_and_bad_values() -> None:
    # depth 3 and 4 both extend a 2-block base by repeating its last block: distinct networks;
    # a repeated value passed programmatically gives one network twice
    assert len(ablation.factor_plan(BASE, "depth", [3, 4], [0]).variants) == 3
    with pytest.raises(AblationError, match="same network"):
        ablation.factor_plan(BASE, "depth", [2, 2], [0])
    with pytest.raises(AblationError, match="freq_reduce"):
        ablation.factor_plan(ArchSpec(body=BASE.body), "freq_reduce", ["max"], [0])
    with pytest.raises(AblationError, match="must differ"):
        ablation.factor_plan(BASE, "depth", [1], [0], grid_factor="depth", grid_values=[1])


def test_plan_validate_names_the_variant_and_layer() -> None:
    plan = ablation.factor_plan(BASE, "frequency_height", [5, 99], [0])
    for v in plan.variants:
        assert isinstance(v, Variant)
    plan = ablation.factor_plan(
        BASE.replace(frontend=(Branch(5, 3, 4, freq_reduce="max"),), body=()),
        "frequency_height",
        [5, 99],
        [0],
    )
    with pytest.raises(AblationError, match=r"frequency_height=99.*frontend\[0\] filter height 99"):
        plan.validate(64, 50)


def test_plan_checks_seeds_and_base() -> None:
    variant = Variant("a", BASE, is_base=True)
    with pytest.raises(AblationError, match="seed"):
        AblationPlan("x", (variant,), ())
    with pytest.raises(AblationError, match="repeat"):
        AblationPlan("x", (variant,), (0, 0))
    with pytest.raises(AblationError, match="exactly one"):
        AblationPlan("x", (Variant("a", BASE),), (0,))


# -- the built-in study ---------------------------------------------------------------------------
@pytest.mark.parametrize(("n_mels", "n_frames"), [(64, 101), (96, 187), (128, 431), (40, 80)])
def test_vgg_to_vertical_walks_from_vgg_to_one_vertical_layer(n_mels: int, n_frames: int) -> None:
    plan = ablation.study_plan("vgg-to-vertical", n_mels, n_frames, [0, 1, 2])
    plan.validate(n_mels, n_frames)
    variants = plan.variants
    assert [v.factor_value("depth") for v in variants] == [5, 4, 3, 2, 1, 1]
    assert [v.factor_value("width") for v in variants] == [3, 3, 3, 3, 3, 7]
    vgg, vertical, anchor = variants[0], variants[-2], variants[-1]
    assert vgg.is_base and not vgg.spec.frontend
    assert [(b.height, b.width, b.pool) for b in vgg.spec.body] == [(3, 3, (2, 2))] * 5
    assert not vertical.spec.body and len(vertical.spec.frontend) == 1
    branch = vertical.spec.frontend[0]
    assert (branch.height, branch.freq_reduce, branch.freq_padding) == ("0.9M", "max", "valid")
    heights = [v.factor_value("frequency_height") for v in variants]
    assert heights == sorted(heights), "filter height grows as depth shrinks"
    cap = resolve_height("0.9M", n_mels)
    for v in variants[1:-2]:
        first = v.spec.body[0]
        assert first.height == v.factor_value("frequency_height")
        # the walk's rule: the stack sees the whole frequency axis, unless capped at 0.9M
        rf = anchors.receptive_field_height(v.spec, n_mels)
        assert rf >= n_mels or first.height == cap
        if first.height > 3:
            smaller = anchors.vgg_spec(
                len(v.spec.body),
                32,
                first_height=first.height - 1,
                width=3,
                input_shape=(n_mels, n_frames),
            )
            assert anchors.receptive_field_height(smaller, n_mels) < n_mels
    # one controlled change per step: channels, widths and head are the same along the walk
    for v in variants[:-1]:
        layers = [*v.spec.frontend, *v.spec.body]
        assert {layer.channels for layer in layers} == {32}
        assert {layer.width for layer in layers} == {3}
        assert v.spec.head == vgg.spec.head
    # ... and the last step widens the vertical filter alone, to DESIGN.md's 0.9M × 7 anchor
    assert anchor.spec.replace(name="") == vertical.spec.replace(
        name="", frontend=(dataclasses.replace(branch, width=7),)
    )


def test_vgg_to_vertical_on_fsdd_input_has_known_heights() -> None:
    # 64 mels, 2×2 pools: a 3-high conv after k pools adds 2·2^k rows, a pool 2^k, so the
    # depth-4 stack sees h + 35 rows (h = 29), depth 3 h + 15 (49), depth 2 h + 5 (59 > 57 cap)
    variants = ablation.vgg_to_vertical(64, 101, channels=8)
    assert [v.name for v in variants] == [
        "vgg5 3x3",
        "depth4 29x3",
        "depth3 49x3",
        "depth2 57x3",
        "vertical 0.9Mx3",
        "vertical 0.9Mx7",
    ]
    # already at width 7, the walk ends at the anchor without a duplicate step
    wide = ablation.vgg_to_vertical(64, 101, channels=8, width=7)
    assert [v.name for v in wide][-2:] == ["depth2 57x7", "vertical 0.9Mx7"]
    assert anchors.receptive_field_height(variants[0].spec, 64) == 78
    assert {b.channels for v in variants for b in (*v.spec.body, *v.spec.frontend)} == {8}


@pytest.mark.parametrize(("n_mels", "n_frames"), [(16, 20), (8, 8), (3, 5)])
def test_vgg_to_vertical_fits_small_inputs(n_mels: int, n_frames: int) -> None:
    for variant in ablation.vgg_to_vertical(n_mels, n_frames):
        validate(variant.spec, n_mels, n_frames)


def test_unknown_study_lists_the_known_ones() -> None:
    with pytest.raises(AblationError, match="vgg-to-vertical"):
        ablation.study_plan("nope", 64, 101, [0])


# -- statistics against hand values ---------------------------------------------------------------
T975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95**2))  # closed form for df=2: 4.302653
T975_DF1 = math.tan(0.475 * math.pi)  # closed form for df=1: 12.706205


def _record(
    number: int, accuracy: float | None, params: int, status: str = "complete"
) -> TrialRecord:
    metrics = {} if accuracy is None else {"test_accuracy": accuracy}
    costs = {"params": params, "gflops": 0.01, "train_vram_mb": 10.0 + params / 100}
    costs.update({"latency_ms": 1.0, "vram_source": "estimated"})
    history = [{"epoch": 1, "seconds": 1.5}, {"epoch": 2, "seconds": 0.5}]
    return TrialRecord(number, status, metrics=metrics, costs=costs, history=history, seconds=9.0)


def _two_variant_plan() -> AblationPlan:
    return AblationPlan(
        "known",
        (
            Variant("base", BASE, (("channels", None),), True),
            Variant("wide", BASE.replace(name="w")),
        ),
        (0, 1, 2),
        ("channels",),
    )


def test_aggregate_matches_closed_form_values() -> None:
    plan = _two_variant_plan()
    base_acc, wide_acc = [0.80, 0.83, 0.83], [0.90, 0.92, 0.94]
    records = [_record(i, a, 100) for i, a in enumerate(base_acc)]
    records += [_record(3 + i, a, 200) for i, a in enumerate(wide_acc)]
    base, wide = ablation_report.aggregate(plan, records, "test_accuracy")
    s = wide.values["test_accuracy"]
    assert (s.n, s.mean, s.std) == (3, pytest.approx(0.92), pytest.approx(0.02))
    assert s.half_width == pytest.approx(T975_DF2 * 0.02 / math.sqrt(3), rel=1e-9)
    # paired differences 0.10, 0.09, 0.11: mean 0.10, sd 0.01, t = 10·sqrt(3); with df=2 the
    # two-sided p is 1 - t / sqrt(t² + 2) = 1 - sqrt(300 / 302)
    d = wide.versus_base["test_accuracy"]
    assert d.mean_diff == pytest.approx(0.10)
    assert d.ci_low == pytest.approx(0.10 - T975_DF2 * 0.01 / math.sqrt(3), rel=1e-9)
    assert d.ci_high == pytest.approx(0.10 + T975_DF2 * 0.01 / math.sqrt(3), rel=1e-9)
    assert d.p_value == pytest.approx(1 - math.sqrt(300 / 302), rel=1e-6)
    # a cost every seed agrees on: zero-width interval, difference exact, p = 0
    assert wide.values["params"].ci_low == wide.values["params"].ci_high == 200
    assert wide.versus_base["params"].mean_diff == 100 and wide.versus_base["params"].p_value == 0
    assert wide.values["seconds"].mean == 2.0  # training epochs, not the trial's 9 s
    assert base.versus_base == {} and base.n == 3 and not base.failures


def test_aggregate_pairs_only_seeds_both_completed() -> None:
    plan = _two_variant_plan()
    records = [_record(i, a, 100) for i, a in enumerate([0.80, 0.83, 0.83])]
    records += [_record(3, 0.90, 200), _record(4, 0.92, 200), _record(5, None, 200, "oom")]
    records[5].reason = "CUDA out of memory"
    _, wide = ablation_report.aggregate(plan, records, "test_accuracy")
    assert wide.seeds == (0, 1) and wide.failures == ("seed 2: oom: CUDA out of memory",)
    # differences 0.10, 0.09 over seeds 0 and 1: mean 0.095, sd sqrt(0.00005), t = 19 (df 1):
    # p = 1 - (2/π)·atan(19)
    d = wide.versus_base["test_accuracy"]
    assert d.n == 2 and d.mean_diff == pytest.approx(0.095)
    half = T975_DF1 * math.sqrt(0.00005) / math.sqrt(2)
    assert d.ci_high - d.mean_diff == pytest.approx(half, rel=1e-9)
    assert d.p_value == pytest.approx(1 - 2 / math.pi * math.atan(19), rel=1e-6)


def test_aggregate_one_seed_has_no_interval_and_no_comparison() -> None:
    plan = AblationPlan(
        "one", (Variant("base", BASE, is_base=True), Variant("b", BASE.replace(name="b"))), (0,)
    )
    stats = ablation_report.aggregate(
        plan, [_record(0, 0.5, 1), _record(1, 0.6, 2)], "test_accuracy"
    )
    assert math.isnan(stats[1].values["test_accuracy"].ci_low)
    assert stats[1].versus_base == {}
    table = ablation_report.ablation_table(stats, "test_accuracy")
    assert "0.6000" in table


def test_table_csv_and_summary_rows(tmp_path: Path) -> None:
    plan = _two_variant_plan()
    records = [_record(i, a, 100) for i, a in enumerate([0.80, 0.83, 0.83])]
    records += [_record(3 + i, a, 200) for i, a in enumerate([0.90, 0.92, 0.94])]
    stats = ablation_report.aggregate(plan, records, "test_accuracy")
    table = ablation_report.ablation_table(stats, "test_accuracy", "estimated", seeds=3)
    wide_line = next(line for line in table.splitlines() if line.startswith("wide"))
    hw = T975_DF2 * 0.02 / math.sqrt(3)
    assert f"0.9200 [{0.92 - hw:.4f}, {0.92 + hw:.4f}]" in wide_line
    assert "+0.1000 [+0.0752, +0.1248]" in wide_line and "3/3" in wide_line
    assert "(base)" in table and "* VRAM estimated" in table
    path = ablation_report.write_ablation_csv(
        tmp_path / "ablation.csv", plan, stats, "test_accuracy"
    )
    rows = list(csv.DictReader(path.open()))
    assert [r["variant"] for r in rows] == ["base", "wide"]
    assert rows[0]["channels"] == "" and rows[1]["n"] == "3"
    assert float(rows[1]["test_accuracy_vs_base_diff"]) == pytest.approx(0.1)
    assert float(rows[1]["params_mean"]) == 200
    assert rows[0]["test_accuracy_vs_base_p_value"] == ""


def test_plot_points_x_is_the_factor_value_or_a_study_variant_name() -> None:
    plan = ablation.factor_plan(BASE, "channels", [8], [0])
    records = [_record(0, 0.5, 1), _record(1, 0.6, 2)]
    points = ablation_report.plot_points(
        plan, ablation_report.aggregate(plan, records, "test_accuracy"), "test_accuracy"
    )
    assert [(p.x, p.is_base) for p in points] == [("base", True), ("8", False)]
    assert points[1].values["test_accuracy"].mean == 0.6
    study = ablation.study_plan("vgg-to-vertical", 64, 101, [0])
    points = ablation_report.plot_points(
        study, ablation_report.aggregate(study, [], "test_accuracy"), "m"
    )
    assert [p.x for p in points] == [v.name for v in study.variants]
    assert all(not p.values for p in points)


# -- runs ------------------------------------------------------------------------------------------
def _features(n_mels: int = 16, n_frames: int = 20, seed: int = 0) -> FeatureSet:
    """Random features with a class-dependent offset (learnable in one epoch, not trivially)."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        y = rng.integers(0, 3, n)
        x = rng.normal(size=(n, 1, n_mels, n_frames)).astype(np.float32)
        return Split(x + 0.5 * y[:, None, None, None].astype(np.float32), y.astype(np.int64))

    config = FeatureConfig(n_mels=n_mels)
    return FeatureSet(split(48), split(24), split(24), ["a", "b", "c"], "single_label", config)


SETTINGS = TrialSettings(
    TrainConfig(epochs=1, batch_size=16, num_threads=1),
    (Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize")),
)
SMALL = ArchSpec(body=(ConvBlock(3, 3, 4, pool=(2, 2)),), head=Head())


def test_ablation_trial_sets_the_seed() -> None:
    data = _features()
    config = {"spec": SMALL.to_dict(), "seed": 7}
    record = ablation_run.record_for(
        AblationPlan("s", (Variant("v", SMALL, is_base=True),), (7,)),
        ablation.PlannedTrial(0, 0, 7),
        ablation_run.ablation_trial(config, data, SETTINGS),
        "",
    )
    assert record.status == "complete", record.reason
    assert record.train_config["seed"] == 7


def test_crashed_trial_becomes_a_failed_record() -> None:
    plan = AblationPlan("s", (Variant("v", SMALL, is_base=True),), (0,))
    record = ablation_run.record_for(plan, plan.trials()[0], None, "crashed worker: boom")
    assert (record.status, record.reason) == ("failed", "crashed worker: boom")
    assert record.spec == SMALL.to_dict()


@pytest.mark.slow
def test_run_ablation_in_process_logs_one_parent_and_a_child_per_trial(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from dashboards.tracking import StudyTracker

    data = _features()
    plan = ablation.factor_plan(SMALL, "channels", [4, 8], [0, 1], name="e2e-local")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = StudyTracker(uri, plan.name, {"ablation": plan.name}, kind="ablation")
    tracker.start()
    outcome = ablation_run.run_ablation(
        plan,
        ablation_run.local_runner(data, SETTINGS),
        metric="test_accuracy",
        out_dir=tmp_path / "out",
        tracker=tracker,
    )
    assert [r.status for r in outcome.records] == ["complete"] * 4
    assert [s.n for s in outcome.stats] == [2, 2]
    assert "test_accuracy" in outcome.stats[1].versus_base
    names = {p.name for p in outcome.files}
    assert {
        "ablation.csv",
        "ablation_metric.png",
        "ablation_vram.html",
        "ablation_plane.png",
    } <= names
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(plan.name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fsnas.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(
        (r.data.tags[ablation_run.TAG_VARIANT], r.data.tags[ablation_run.TAG_SEED])
        for r in children
    ) == [
        ("channels=4", "0"),
        ("channels=4", "1"),
        ("channels=8", "0"),
        ("channels=8", "1"),
    ]
    parent_metrics = parents[0].data.metrics
    wide = outcome.stats[1].values["test_accuracy"]
    assert parent_metrics["channels_8.test_accuracy_mean"] == pytest.approx(wide.mean)
    assert "channels_8.test_accuracy_p_value" in parent_metrics
    assert parents[0].data.tags["ablation.base"] == "channels=4"
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"ablation.csv", "ablation_metric.html", "ablation_plane.png"} <= artifacts
    summary = json.loads((tmp_path / "out" / ablation_report.SUMMARY_JSON).read_text())
    assert summary["variants"][1]["n"] == 2


# -- the command line, through Ray Tune ---------------------------------------------------------
def test_cli_refuses_incomplete_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from nas.cli import main

    assert main(["ablate", "--base", "preset:pons_vgg", "--seeds", "2", "--data", "x:y"]) == 2
    assert "--base needs --factor" in capsys.readouterr().err
    assert main(["ablate", "--study", "vgg-to-vertical", "--factor", "depth"]) == 2
    assert "fixes its variants" in capsys.readouterr().err
    args = ["ablate", "--base", "preset:nope", "--factor", "depth", "--values", "1"]
    assert main(args) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_ablation_runs_through_ray_tune_and_logs_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    from nas.cli import main

    monkeypatch.chdir(tmp_path)
    spec_path = tmp_path / "small.json"
    spec_path.write_text(SMALL.replace(name="small").to_json())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["ablate", "--base", str(spec_path), "--factor", "channels", "--values", "4,8"]
    args += ["--seeds", "2", "--data", "synthetic:clips_per_class=8", "--epochs", "1"]
    args += ["--batch", "16", "--tracking-uri", uri, "--name", "cli-e2e", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [v["variant"] for v in summary["variants"]] == ["channels=4", "channels=8"]
    assert [v["n"] for v in summary["variants"]] == [2, 2]
    assert summary["variants"][1]["test_accuracy_vs_base_p_value"] is not None
    assert Path(summary["files"][0]).name == "ablation.csv"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cli-e2e").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(runs) == 5 and len(children) == 4
    # every trial ran in a Ray worker (the record carries Tune's trial id), not in this process
    assert all(r.data.tags.get("ray_trial_id") for r in children)
