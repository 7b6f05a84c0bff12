"""``fsnas confirm``: the CIs of ``fsnas ablate``, a resume without duplicates, Holm, importance,
the fixed hypervolume reference and the faded unfinished trials of the Pareto plot."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import optuna
import pytest

from dashboards.records import Objective, TrialRecord
from nas import pareto
from nas.cli import main
from nas.confirm import ConfirmError, parse_trials
from nas.insight import importance_table, study_importance
from nas.search_progress import Progress
from nas.stats import holm
from nas.study import read_study
from search_spaces.spec import ArchSpec, Branch
from tests.nas._confirm_study import make_study
from tests.nas._study import write_config

OBJECTIVES = [Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize")]


def _json_out(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_confirm_gives_the_cis_fsnas_ablate_computes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = make_study(tmp_path, trials=3, train={"epochs": 3, "batch_size": 8, "lr": 0.01})
    stored = read_study("tiny", raw["storage"])
    record = pareto.front_records(stored.records, stored.objectives)[0]
    spec = ArchSpec.from_dict(record.spec)
    spec_file = tmp_path / "design.json"
    spec_file.write_text(spec.to_json(), encoding="utf-8")
    common = ["--seeds", "3", "--local", "--tracking-uri", "none", "--json"]
    argv = ["confirm", "--study", "tiny", "--storage", raw["storage"], "--trials"]
    assert (
        main(
            [*argv, str(record.number), "--first-seed", "0", "--out", str(tmp_path / "c"), *common]
        )
        == 0
    )
    confirmed = _json_out(capsys)
    (design,) = confirmed["designs"]
    assert confirmed["seeds"] == [0, 1, 2] and design["n"] == 3
    # fsnas ablate of the same design (a factor set to its own value: the base alone), seeds 0..2
    config = write_config(tmp_path / "study.yaml", raw)
    pooling = spec.head.time_pooling
    assert (
        main(
            [
                "ablate",
                "--base",
                str(spec_file),
                "--factor",
                "head_pooling",
                "--values",
                pooling,
                "--metric",
                "val_accuracy",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "a"),
                *common,
            ]
        )
        == 0
    )
    (variant,) = _json_out(capsys)["variants"]
    for name in ("val_accuracy", "train_vram_mb"):
        got = design["summaries"][name]
        for stat in ("mean", "std", "ci_low", "ci_high"):
            assert got[stat] == pytest.approx(variant[f"{name}_{stat}"], rel=1e-12, abs=1e-12)
    # the seeds matter (the comparison is not vacuous): other seeds give other accuracies
    assert (
        main(
            [
                *argv,
                str(record.number),
                "--first-seed",
                "7",
                "--name",
                "other",
                "--out",
                str(tmp_path / "o"),
                *common,
            ]
        )
        == 0
    )
    assert _json_out(capsys)["designs"][0]["n"] == 3
    # the seeds reach training (the comparison is not vacuous): each run trained its own seeds,
    # one trial per seed. (Their accuracies may coincide: on this tiny data they come in steps
    # of 1/6, so comparing values across seeds would be a test that fails by chance.)
    for folder, seeds in (("c", {"0", "1", "2"}), ("o", {"7", "8", "9"})):
        with (tmp_path / folder / "ablation_trials.csv").open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["seed"] for r in rows] and {r["seed"] for r in rows} == seeds
        assert len(rows) == 3 and all(r["status"] == "complete" for r in rows)


@pytest.mark.slow
def test_a_resumed_confirm_trains_and_logs_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from dashboards.run_contents import TAG_TRIAL_NUMBER
    from dashboards.tracking import StudyTracker
    from nas import ablation_run

    raw = make_study(tmp_path, trials=3)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    search_parent = StudyTracker(uri, "tiny", {}, kind="search")
    search_parent.start()
    argv = [
        "confirm",
        "--study",
        "tiny",
        "--storage",
        raw["storage"],
        "--top",
        "2",
        "--seeds",
        "2",
        "--local",
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "c"),
    ]
    real = ablation_run.local_runner

    def dying(*args: Any, **kwargs: Any) -> Any:  # killed after two of the four trials
        inner = real(*args, **kwargs)

        def run(configs: list[dict[str, Any]], on_result: Any) -> None:
            def counted(i: int, result: Any, error: str) -> None:
                on_result(i, result, error)
                if i == 1:
                    raise KeyboardInterrupt

            inner(configs, counted)

        return run

    monkeypatch.setattr(ablation_run, "local_runner", dying)
    assert main(argv) == 130
    monkeypatch.setattr(ablation_run, "local_runner", real)
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resuming: 2 of 4 kept, 2 to train" in out
    assert "trained 2, kept from an earlier run 2" in out
    assert main(argv) == 0
    assert "trained 0, kept from an earlier run 4" in capsys.readouterr().out

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fsnas.confirm.of") == "tiny"]
    assert len(parents) == 1  # beside the study, in its experiment
    parent = parents[0]
    assert parent.data.tags["fsnas.kind"] == "confirm"
    assert parent.data.tags["fsnas.confirm.study_parent_run"] == search_parent.parent_run_id
    assert "Confirmation of study **tiny**" in parent.data.tags["mlflow.note.content"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    numbers = sorted(int(r.data.tags[TAG_TRIAL_NUMBER]) for r in children)
    assert numbers == [0, 1, 2, 3]  # four design × seeds, none twice
    assert all(r.data.tags["fsnas.confirm"] == "true" for r in children)
    assert all(r.info.run_name.startswith("confirm · trial ") for r in children)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"confirm.csv", "confirm_front.html", "confirm_front.png"} <= names


def test_bad_confirm_flags_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfirmError, match="'x' is not a trial number"):
        parse_trials("3,x")
    with pytest.raises(ConfirmError, match="given twice"):
        parse_trials("3,3")
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["confirm", "--study", "s", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fsnas confirm: error: storage")


def test_holm_adjusts_step_down() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    adjusted = holm([math.nan, 0.2])
    assert math.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.2)


@pytest.mark.parametrize("evaluator", ["fanova", "ped-anova"])
def test_importance_ranks_the_one_factor_that_sets_each_objective_first(evaluator: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # seeded random designs: the test must not depend on a sampler's unseeded choices, and
    # PED-ANOVA compares the top 10 %, which needs enough trials to be more than noise
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    rng = random.Random(0)
    for _ in range(200):
        trial = study.ask()
        height = trial.suggest_int("height", 1, 64)
        channels = trial.suggest_categorical("channels", [4, 8, 16, 32])
        trial.suggest_float("noise", 0.0, 1.0)  # sets nothing
        if trial.suggest_categorical("depth", [1, 2]) == 2:
            trial.suggest_int("block1_width", 1, 7)  # conditional: not in every trial
        study.tell(trial, [height / 64 + rng.uniform(0, 1e-3), float(channels)])
    accuracy, vram = study_importance(study, OBJECTIVES, evaluator)
    assert accuracy.ranked()[0] == "height"
    assert vram.ranked()[0] == "channels"
    assert accuracy.left_out == ["block1_width"]
    table = importance_table([accuracy, vram])
    assert "importance" in table.splitlines()[0] and "block1_width" in table


def test_importance_of_too_small_a_study_says_why() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"x": 1})
    study.optimize(lambda t: (t.suggest_int("x", 0, 3), 1.0), n_trials=1)
    items = study_importance(study, OBJECTIVES)
    assert all(not i.values and "at least 2" in i.note for i in items)


def _record(number: int, acc: float, vram: float, status: str = "complete") -> TrialRecord:
    return TrialRecord(number, status, objectives={"val_accuracy": acc, "train_vram_mb": vram})


def test_the_live_hypervolume_never_falls_when_a_new_worst_trial_arrives() -> None:
    # trial 2 is dominated and the worst VRAM so far: the front does not change, so neither
    # may the hypervolume (a reference that follows the worst trial jumps here)
    records = [
        _record(0, 0.5, 100.0),
        _record(1, 0.9, 300.0),
        _record(2, 0.4, 1500.0),
        _record(3, 0.6, 50.0, "pruned"),
        _record(4, 0.7, 80.0),
        _record(5, -0.1, 60.0),  # a negative metric moved the old reference too
    ]
    stored: list[dict[str, float]] = []
    progress = Progress(
        "s",
        len(records),
        OBJECTIVES,
        stream=io.StringIO(),
        on_reference=lambda ref, source: stored.append(ref),
    )
    for r in records:
        progress.add(r)
    values = [hv for _, hv in progress.hv_history]
    assert all(b >= a for a, b in itertools.pairwise(values)), values
    assert values[1] == values[2]  # the dominated worst trial adds nothing
    assert values[-1] == values[-2]
    assert stored == [{"val_accuracy": 0.0, "train_vram_mb": 400.0}]  # once: 4 x trial 0
    assert "HV" in progress.line()
    # the former reference (1.1 x the worst cost so far) changed the value without a new front
    moving = [pareto.records_hypervolume(records[:k], OBJECTIVES)[0] for k in (2, 3)]
    assert moving[1] != moving[0]
    bounded = pareto.study_reference(OBJECTIVES, {"train_vram_mb": 512.0})
    assert bounded is not None and bounded[0]["train_vram_mb"] == 512.0  # the constraint


def test_the_pareto_plot_fades_unfinished_trials_at_their_last_values() -> None:
    from dashboards.plots import pareto_figure

    pruned = TrialRecord(
        3,
        "pruned",
        objectives={},
        costs={"train_vram_mb": 70.0},
        history=[{"epoch": 1, "val_accuracy": 0.4}],
    )
    # as the search records a stopped trial: the metric at the stop, the VRAM estimate
    stopped = TrialRecord(
        4,
        "pruned",
        metrics={"val_accuracy_at_stop": 0.3},
        costs={"train_vram_estimate_mb": 60.0, "epochs_run": 1},
    )
    records = [_record(0, 0.5, 100.0), _record(1, 0.9, 300.0), pruned, stopped]
    for r in records[:2]:
        r.on_pareto_front = True
    fig = pareto_figure(records, OBJECTIVES, OBJECTIVES[1], OBJECTIVES[0])
    faded = [t for t in fig.data if str(t.name).startswith("pruned")]
    assert len(faded) == 1
    assert list(faded[0].x) == [70.0, 60.0] and list(faded[0].y) == [0.4, 0.3]
    assert faded[0].marker.opacity < 0.5


def test_the_held_out_test_metric_is_reported_beside_the_objectives(tmp_path: Path) -> None:
    from nas.ablation import AblationPlan, Variant
    from nas.confirm import confirm_stats, held_out_metric
    from nas.confirm_report import confirm_table, write_confirm_csv
    from nas.stats import paired_comparison, summarize

    assert held_out_metric("val_accuracy") == "test_accuracy"
    assert held_out_metric("val_roc_auc") == "test_roc_auc"
    assert held_out_metric("train_vram_mb") is None
    spec = ArchSpec(frontend=(Branch("0.9M", 3, 8, freq_reduce="max"),))
    plan = AblationPlan(
        name="c",
        variants=(
            Variant("trial 0", spec.replace(name="trial 0"), (("design", "trial 0"),), True),
            Variant("trial 5", spec.replace(name="trial 5"), (("design", "trial 5"),), False),
        ),
        seeds=(1, 2, 3),
    )
    val = {0: [0.90, 0.92, 0.94], 1: [0.95, 0.96, 0.99]}
    test = {0: [0.80, 0.85, 0.83], 1: [0.91, 0.86, 0.97]}
    records = [
        TrialRecord(
            number=t.number,
            status="complete",
            metrics={
                "val_accuracy": val[t.variant][t.seed - 1],
                "test_accuracy": test[t.variant][t.seed - 1],
            },
            objectives={"val_accuracy": val[t.variant][t.seed - 1], "train_vram_mb": 50.0},
            costs={"train_vram_mb": 50.0},
        )
        for t in plan.trials()
    ]
    base, other = confirm_stats(plan, records, OBJECTIVES)
    # the test split's numbers, not the objective's
    assert base.held_out == summarize(test[0]) and other.held_out == summarize(test[1])
    assert other.held_out_vs_base == paired_comparison(test[1], test[0])
    assert base.held_out_vs_base is None
    assert other.summaries["val_accuracy"] == summarize(val[1])
    table = confirm_table([base, other], OBJECTIVES, 3)
    assert "test_accuracy† [95% CI]" in table.splitlines()[0]
    assert "never used to choose or rank" in table
    row = next(line for line in table.splitlines() if line.startswith("trial 5"))
    assert f"{summarize(test[1]).mean:.4f}" in row
    with write_confirm_csv(tmp_path / "c.csv", [base, other], OBJECTIVES).open() as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["test_accuracy_mean"]) == pytest.approx(summarize(test[1]).mean)
    assert float(rows[1]["test_accuracy_diff"]) == pytest.approx(
        paired_comparison(test[1], test[0]).mean_diff
    )
    assert rows[0]["test_accuracy_diff"] == ""
