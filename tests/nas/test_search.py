"""The search driver: trial function outcomes (fast) and one real end-to-end search (slow)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import re
import threading
from pathlib import Path

import optuna
import pytest

from dashboards.records import Objective
from nas.cli import main
from nas.config import ConfigError, from_dict
from nas.search import build_space, initial_params, load_study, load_study_features
from nas.study import (
    INITIAL_SPEC_ATTR,
    RECORD_ATTR,
    close_orphans,
    enqueue_initial,
    read_study,
    weights_folder,
)
from nas.trial import RECORD_JSON_KEY, TrialSettings, gpu_share, record_from_result, run_trial
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Head
from tests.nas._study import tiny_config, write_config
from trainers.result import TrainConfig

OBJECTIVES = (Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize"))
# a point of the tiny test space: one tall branch max-pooled over frequency
WARM_START = ArchSpec(
    frontend=(Branch("0.9M", 3, 8, freq_reduce="max"),),
    head=Head(time_pooling="max"),
    input_norm="none",
    name="tall",
)


def test_gpu_share_rounds_up_to_the_grid() -> None:
    assert gpu_share(100.0, 80_000.0) == 0.125  # 600 MB with the CUDA context
    assert gpu_share(15_000.0, 80_000.0) == 0.25
    assert gpu_share(30_000.0, 80_000.0) == 0.5
    assert gpu_share(60_000.0, 80_000.0) == 1.0
    assert gpu_share(None, 80_000.0) == 1.0  # unknown need: a whole GPU
    assert gpu_share(100.0, 16_000.0, data_mb=3000.0) == 0.25


@pytest.fixture(scope="module")
def tiny_features(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("features")
    return load_study_features(from_dict(tiny_config(tmp)))


def _spec() -> ArchSpec:
    return ArchSpec(frontend=(Branch(height="0.9M", width=3, channels=4),))


def test_trial_over_the_vram_limit_is_infeasible_untrained(tiny_features) -> None:  # type: ignore[no-untyped-def]
    reports: list[dict[str, float]] = []
    settings = TrialSettings(TrainConfig(epochs=1, batch_size=16), OBJECTIVES, 0.001)
    final = run_trial({"spec": _spec().to_dict()}, tiny_features, settings, reports.append)
    record = record_from_result(final, 7)
    assert record is not None and record.number == 7
    assert record.status == "infeasible"
    assert "> --max-train-vram-mb 0.001; not trained" in record.reason
    assert reports == []  # no epoch ran
    assert record.costs["vram_source"] == "estimated"
    # the violation the sampler's constraint handling gets
    assert record.costs["fsnas_constraint"] == pytest.approx(record.costs["train_vram_mb"] - 0.001)


def test_trial_reports_epochs_and_objectives(tiny_features) -> None:  # type: ignore[no-untyped-def]
    reports: list[dict[str, float]] = []
    settings = TrialSettings(TrainConfig(epochs=2, batch_size=16, num_threads=1), OBJECTIVES)
    final = run_trial({"spec": _spec().to_dict()}, tiny_features, settings, reports.append)
    record = record_from_result(final, 0)
    assert record is not None and record.status == "complete", record
    assert [r["epoch"] for r in reports] == [1, 2]
    # the scheduler sees the metric so far and every cost known before training, the VRAM
    # as the estimate (the same footing for every trial at a rung)
    assert all("val_accuracy" in r and r["train_vram_mb"] > 0 for r in reports)
    assert all(r["params"] == record.costs["params"] for r in reports)
    assert all(r["gflops"] == record.costs["gflops"] > 0 for r in reports)
    assert all(r["infer_vram_mb"] > 0 for r in reports)
    assert all(r["train_vram_mb"] == record.costs["train_vram_estimate_mb"] for r in reports)
    assert not any("train_vram_estimate_mb" in r for r in reports)
    assert set(record.objectives) == {"val_accuracy", "train_vram_mb"}
    assert final["val_accuracy"] == record.objectives["val_accuracy"]
    assert record.spec_summary.startswith("F[0.9Mx3x4")


def test_invalid_and_broken_trials_are_results_not_exceptions(tiny_features) -> None:  # type: ignore[no-untyped-def]
    settings = TrialSettings(TrainConfig(epochs=1, batch_size=16), OBJECTIVES)
    too_tall = ArchSpec(body=(ConvBlock(height=99, width=3, channels=4, freq_padding="valid"),))
    record = record_from_result(run_trial({"spec": too_tall.to_dict()}, tiny_features, settings), 1)
    assert record is not None and record.status == "invalid"
    assert "99" in record.reason
    broken = record_from_result(run_trial({"spec": {"nonsense": 1}}, tiny_features, settings), 2)
    assert broken is not None and broken.status == "failed"
    assert "nonsense" in broken.reason


@pytest.mark.slow
def test_search_end_to_end_and_pareto_command(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tiny_config(
        tmp_path,
        study="e2e",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        search={"trials": 6, "population_size": 3},
    )
    path = write_config(tmp_path / "e2e.yaml", config)
    warm = tmp_path / "tall.json"
    warm.write_text(WARM_START.to_json())
    # the threads alive when Ray shuts down: MLflow's has stopped by then
    from nas import ray_backend

    at_shutdown: list[set[str]] = []
    real_shutdown = ray_backend.shutdown_ray

    def shutdown_ray() -> None:
        at_shutdown.append({t.name for t in threading.enumerate()})
        real_shutdown()

    monkeypatch.setattr(ray_backend, "shutdown_ray", shutdown_ray)
    # --trials overrides the file's 6; the warm-start design is the study's first trial
    assert (
        main(["search", "--config", str(path), "--trials", "5", "--initial-spec", str(warm)]) == 0
    )
    captured = capsys.readouterr()
    out = captured.out
    # Tune's per-trial result files are off: its end-of-run warning about them is dropped
    noise = "Failed to fetch metrics for"
    assert noise not in out + captured.err
    assert not [r for r in caplog.records if r.getMessage().startswith(noise)]
    assert f"[e2e] warm start: 1 design(s) run first (tall ({warm}))" in out
    assert "[e2e] done 5/5" in out  # the live progress line
    assert len(at_shutdown) == 1 and "fsnas-tracking" not in at_shutdown[0], at_shutdown
    # one reference point for the study, fixed once: the live hypervolume never falls
    live = [float(v) for v in re.findall(r" · HV (\S+) · ", out)]
    assert len(live) == 5 and all(b >= a for a, b in itertools.pairwise(live)), live
    assert out.count("hypervolume reference point, fixed for the study:") == 1
    assert "Pareto front" in out and "hypervolume" in out and "knee: trial" in out

    outcome = load_study("e2e", config["storage"])
    assert len(outcome.records) == 5
    first = next(r for r in outcome.records if r.number == 0)
    assert ArchSpec.from_dict(first.spec) == dataclasses.replace(WARM_START, name="")
    assert first.status in ("complete", "pruned")
    assert first.initial_spec == f"tall ({warm})"
    assert {r.initial_spec for r in outcome.records if r.number != 0} == {""}
    assert sorted(r.number for r in outcome.records) == sorted({r.number for r in outcome.records})
    assert outcome.front and all(r.status == "complete" for r in outcome.front)
    assert all(r.on_pareto_front == (r in outcome.front) for r in outcome.records)

    assert main(["pareto", "--study", "e2e", "--storage", config["storage"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["study_name"] == "e2e"
    assert printed["reference_point"]["val_accuracy"] == 0.0
    assert read_study("e2e", config["storage"]).reference == printed["reference_point"]
    assert {r["number"] for r in printed["front"]} == {r.number for r in outcome.front}
    assert (tmp_path / "pareto.json").is_file()
    assert (tmp_path / "trials.csv").read_text().count("\n") == 6  # header + 5 trials
    with (tmp_path / "trials.csv").open() as fh:
        rows = {row["number"]: row for row in csv.DictReader(fh)}
    assert rows["0"]["initial_spec"] == f"tall ({warm})" and rows["1"]["initial_spec"] == ""

    # the MLflow store got a parent run and one child run per trial
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=config["tracking_uri"])
    experiment = client.get_experiment_by_name("e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 6

    # the front's trained weights are kept (the rest tidied away) and attached in MLflow
    folder = weights_folder(from_dict(config))  # <weights_dir>/<study>/<storage key>
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"trial-{r.number:05d}.safetensors" for r in outcome.front
    )
    assert "trained weights of" in out and str(folder) in out
    by_number = {int(r.data.tags.get("optuna_trial_number", -1)): r for r in runs}
    assert by_number[0].data.tags["fsnas.initial_spec"] == f"tall ({warm})"
    assert "fsnas.initial_spec" not in by_number[1].data.tags
    for record in outcome.front:
        assert by_number[record.number].data.tags["fsnas.weights"] == (
            f"weights/trial-{record.number:05d}.safetensors"
        )

    study = optuna.load_study(study_name="e2e", storage=config["storage"])
    stored = [json.loads(json.dumps(t.user_attrs["fsnas_record"])) for t in study.trials]
    assert all(RECORD_JSON_KEY not in r for r in stored)


def test_unknown_study_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["pareto", "--study", "nope", "--storage", storage]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_fixed_trials_run_through_ray(tmp_path: Path) -> None:
    from nas import ray_backend

    config = from_dict(tiny_config(tmp_path, study="fixed"))
    data = load_study_features(config)
    settings = TrialSettings(TrainConfig(epochs=1, batch_size=16), OBJECTIVES)
    configs = [{"spec": _spec().to_dict()}, {"spec": {"nonsense": 1}}]
    got: dict[int, tuple[str | None, str]] = {}

    def on_result(index: int, final: dict[str, object] | None, error: str) -> None:
        record = record_from_result(final, index) if final else None
        got[index] = (record.status if record else None, error)

    ray_backend.run_fixed_trials(
        configs,
        run_trial,
        config=config,
        data=data,
        settings=settings,
        name="fixed",
        on_result=on_result,
    )
    assert got == {0: ("complete", ""), 1: ("failed", "")}


def test_warm_start_entries_resolve_or_name_the_bad_one(tmp_path: Path) -> None:
    data = load_study_features(from_dict(tiny_config(tmp_path)))
    warm = tmp_path / "tall.json"
    warm.write_text(WARM_START.to_json())
    config = from_dict(tiny_config(tmp_path, search={"initial_specs": [str(warm)]}))
    [(label, params)] = initial_params(config, build_space(config, data))
    assert label == f"tall ({warm})"
    assert params["branch0_height"] == "0.9M" and params["branch0_channels"] == 8

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cases = {
        "nope.json": r"initial_specs\[1\]: 'nope\.json' is neither a preset \(pons_vgg, ",
        "musicnn": r"initial_specs\[1\] = 'musicnn': spec 'musicnn': activation_order",
        str(broken): r"initial_specs\[1\] = '.*broken\.json': ",
    }
    for entry, message in cases.items():
        config = from_dict(tiny_config(tmp_path, search={"initial_specs": [str(warm), entry]}))
        with pytest.raises(ConfigError, match=message):
            initial_params(config, build_space(config, data))


def test_enqueued_designs_run_first_and_never_twice() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    designs = [("a", {"depth": 1}), ("b", {"depth": 2}), ("c", {"depth": 3})]
    # at most `remaining` are queued: the rest would outlive the run
    assert enqueue_initial(study, designs, remaining=2) == (["a", "b"], ["c"])
    trial = study.ask()
    assert trial.suggest_int("depth", 0, 5) == 1
    assert trial.user_attrs[INITIAL_SPEC_ATTR] == "a"
    trial.set_user_attr(RECORD_ATTR, {"number": trial.number, "status": "complete"})
    study.tell(trial, [0.5, 10.0])
    # "b" starts, then the driver is killed: the resume closes it as an orphan
    assert study.ask().suggest_int("depth", 0, 5) == 2
    assert close_orphans(storage, study) == 1
    # the resume: "a" finished and is never run again; the interrupted "b" and the new "c" are
    assert enqueue_initial(study, designs, remaining=5) == (["b", "c"], ["a"])
    assert [study.ask().suggest_int("depth", 0, 5) for _ in range(2)] == [2, 3]


@pytest.mark.slow
def test_repeated_proposals_are_not_trained_through_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nas.study import MAX_REDRAWS

    monkeypatch.chdir(tmp_path)
    # a space of exactly two designs (with or without input batch norm)
    two_designs = {
        "max_branches": 0,
        "max_depth": 1,
        "block_heights": [1],
        "block_widths": [1],
        "block_channels": [4],
        "pool_axes": ["none"],
        "head_freq_reduce": ["max"],
        "head_time_pooling": ["max"],
        "input_norm": ["none", "bn"],
    }
    config = tiny_config(
        tmp_path, study="repeats", space=two_designs, search={"trials": 3, "sampler": "random"}
    )
    path = write_config(tmp_path / "repeats.yaml", config)
    assert main(["search", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    outcome = load_study("repeats", config["storage"])
    # both designs trained once; the third trial found nothing new after MAX_REDRAWS
    # proposals and trained a repeat rather than spin
    assert len(outcome.records) == 3
    assert len({json.dumps(r.spec, sort_keys=True) for r in outcome.records}) == 2
    assert outcome.repeats >= MAX_REDRAWS
    assert f"{outcome.repeats} proposal(s) repeated a design already trained or training" in out
