"""The search driver: trial function outcomes (fast) and one real end-to-end search (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from dashboards.records import Objective
from nas.cli import main
from nas.config import from_dict
from nas.search import (
    RECORD_JSON_KEY,
    TrialSettings,
    gpu_share,
    load_study,
    load_study_features,
    record_from_result,
    run_trial,
)
from search_spaces.spec import ArchSpec, Branch, ConvBlock
from tests.nas._study import tiny_config, write_config
from trainers.result import TrainConfig

OBJECTIVES = (Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize"))


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tiny_config(
        tmp_path,
        study="e2e",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        search={"trials": 6, "population_size": 3},
    )
    path = write_config(tmp_path / "e2e.yaml", config)
    # --trials overrides the file's 6
    assert main(["search", "--config", str(path), "--trials", "5"]) == 0
    out = capsys.readouterr().out
    assert "[e2e] done 5/5" in out  # the live progress line
    assert "Pareto front" in out and "hypervolume" in out and "knee: trial" in out

    outcome = load_study("e2e", config["storage"])
    assert len(outcome.records) == 5
    assert sorted(r.number for r in outcome.records) == sorted({r.number for r in outcome.records})
    assert outcome.front and all(r.status == "complete" for r in outcome.front)
    assert all(r.on_pareto_front == (r in outcome.front) for r in outcome.records)

    assert main(["pareto", "--study", "e2e", "--storage", config["storage"], "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["study_name"] == "e2e"
    assert printed["reference_point"]["val_accuracy"] == 0.0
    assert {r["number"] for r in printed["front"]} == {r.number for r in outcome.front}
    assert (tmp_path / "pareto.json").is_file()
    assert (tmp_path / "trials.csv").read_text().count("\n") == 6  # header + 5 trials

    # the MLflow store got a parent run and one child run per trial
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=config["tracking_uri"])
    experiment = client.get_experiment_by_name("e2e")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 6

    # the front's trained weights are kept (the rest tidied away) and attached in MLflow
    folder = tmp_path / "weights" / "e2e"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"trial-{r.number:05d}.safetensors" for r in outcome.front
    )
    assert "trained weights of" in out and str(folder) in out
    by_number = {int(r.data.tags.get("optuna_trial_number", -1)): r for r in runs}
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
