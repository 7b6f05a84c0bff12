"""``fsnas train``: JSON and table output, presets built for the data, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import trainers.features
from dashboards import mlflow_store
from nas.cli import main
from search_spaces import ArchSpec, Branch, Head
from trainers.featureset import FeatureConfig, FeatureSet, Split

N_MELS, N_FRAMES = 40, 24
SPEC = ArchSpec(frontend=(Branch("0.9M", 3, 8, freq_reduce="max"),), head=Head())


def _toy_features(n_classes: int = 3) -> FeatureSet:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        y = rng.integers(0, n_classes, n)
        x = rng.normal(size=(n, 1, N_MELS, N_FRAMES)).astype(np.float32)
        for k in range(n_classes):
            x[y == k, 0, 8 * k : 8 * k + 6, :] += 1.5
        return Split(x, y)

    return FeatureSet(
        split(48), split(24), split(24), [f"c{k}" for k in range(n_classes)], "single_label",
        FeatureConfig(n_mels=N_MELS), source="toy",
    )  # fmt: skip


@pytest.fixture
def toy_data(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Replace load_features with a small in-memory FeatureSet; record how it was called."""
    calls: list[dict[str, Any]] = []

    def fake_load_features(data: str, *args: Any, **kwargs: Any) -> FeatureSet:
        calls.append({"data": data, **kwargs})
        return _toy_features()

    monkeypatch.setattr(trainers.features, "load_features", fake_load_features)
    # MLflow logging has its own test below; the others leave tracking off
    monkeypatch.setattr(mlflow_store, "checked_tracking_uri", lambda cli_value: None)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(previous)


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(SPEC.to_json())
    return path


def test_json_output_is_one_trial_result_object(
    toy_data: list[dict[str, Any]], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = "--data toy:x --epochs 2 --batch 16 --device cpu --cache-dir somewhere --seed 3"
    code = main(["train", "--spec", str(spec_file), *args.split(), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert result["status"] == "complete"
    metrics = set(result["metrics"])
    assert {"test_accuracy", "test_macro_f1", "val_accuracy", "best_epoch"} <= metrics
    for key in ("params", "gflops", "train_vram_mb", "seconds", "latency_ms"):
        assert isinstance(result[key], (int, float)) and result[key] > 0
    assert result["vram_source"] == "estimated" and result["epochs_run"] == 2
    assert result["extra"]["train_config"]["seed"] == 3
    assert toy_data == [{"data": "toy:x", "cache_dir": "somewhere", "seed": 3}]
    assert "epoch" in err  # the progress bar went to stderr


def test_preset_is_built_for_the_data_and_printed_as_a_table(
    toy_data: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    # pons_cbmi_frequency was made for 40 x 80 input and 8 classes; the data has 24 frames, 3
    code = main(["train", "--preset", "pons_cbmi_frequency", "--data", "toy:x", "--epochs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    table = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert table["status"] == "complete"
    assert 0.0 <= float(table["test_accuracy"]) <= 1.0
    assert table["train_vram_mb"].endswith("(estimated)")
    # 32 filters of 32 x 1 (+ bias); 40 - 32 + 1 = 9 frequency positions stay (no reduction),
    # so the dense layer maps 32 x 9 features to the data's 3 classes
    assert table["params"] == f"{32 * 32 + 32 + 32 * 9 * 3 + 3:,}"


def test_a_preset_that_does_not_fit_the_data_says_so(
    toy_data: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--preset", "won_fcn", "--data", "toy:x"])
    _, err = capsys.readouterr()
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert "preset 'won_fcn' (made for 96 x 1813 input) does not fit" in line
    assert f"{N_MELS} x {N_FRAMES}" in line and "body[" in line


def test_bad_spec_file_is_a_one_line_error(
    toy_data: list[dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--spec", str(tmp_path / "missing.json"), "--data", "toy:x"]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"frontend": [], "body": [], "colour": 1}')
    assert main(["train", "--spec", str(bad), "--data", "toy:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "colour" in err and "bad.json" in err


def test_a_failed_trial_exits_1_with_its_status(
    toy_data: list[dict[str, Any]], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "--spec", str(spec_file), "--data", "toy:x", "--lr", "1e6", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["status"] == "diverged" and result["reason"]


def test_augmentation_flags_train_and_bad_ones_are_usage_errors(
    toy_data: list[dict[str, Any]], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--spec", str(spec_file), "--data", "toy:x", "--epochs", "2", "--json"]
    flags = ["--freq-mask-bins", "4", "--time-mask-frames", "3", "--mixup-alpha", "0.3"]
    assert main([*argv, *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "complete"
    assert result["extra"]["train_config"]["mixup_alpha"] == 0.3
    assert result["extra"]["train_config"]["freq_mask_bins"] == 4
    toy_data.clear()
    assert main([*argv, "--time-mask-frames", "-2"]) == 2
    assert "time_mask_frames must be an integer >= 0, got -2" in capsys.readouterr().err
    assert toy_data == []  # refused before any data was loaded


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error(
    toy_data: list[dict[str, Any]], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--spec", str(spec_file), "--data", "toy:x", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_the_run_is_logged_to_mlflow(
    toy_data: list[dict[str, Any]],
    spec_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.undo()  # real tracking, but keep the toy data and one thread
    monkeypatch.setattr(trainers.features, "load_features", lambda *a, **k: _toy_features())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--data", "toy:x", "--epochs", "1", "--tracking-uri", uri, "--experiment", "toy-exp"]
    code = main(["train", "--spec", str(spec_file), *args])
    _, err = capsys.readouterr()
    assert code == 0, err
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("toy-exp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["status"] == "complete"
    assert run.data.tags["vram_source"] == "estimated"
    assert "test_accuracy" in run.data.metrics and "params" in run.data.metrics
    assert "logged to MLflow" in err


def test_an_unreachable_tracking_server_stops_before_training(
    spec_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def must_not_load(*args: Any, **kwargs: Any) -> FeatureSet:
        raise AssertionError("features were loaded although tracking is unreachable")

    monkeypatch.setattr(trainers.features, "load_features", must_not_load)
    uri = "http://127.0.0.1:9"  # discard port: nothing listens
    code = main(["train", "--spec", str(spec_file), "--data", "toy:x", "--tracking-uri", uri])
    _, err = capsys.readouterr()
    assert code == 2
    assert "127.0.0.1:9" in err and "Traceback" not in err
