"""fit: training, metrics, determinism, early stopping, failures as results, checkpoints."""

from __future__ import annotations

import gc
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import trainers.train as train_module
from search_spaces import ArchSpec, Branch, ConvBlock, Head, SpectrogramCNN, build_model
from trainers.checkpoint import load_checkpoint, load_weights
from trainers.featureset import FeatureConfig, FeatureSet, Split, Task
from trainers.metrics import task_metrics
from trainers.result import TrainConfig
from trainers.train import StopTrial, fit, is_out_of_memory, lr_factor

N_MELS, N_FRAMES, N_CLASSES = 16, 12, 3

# one tall (vertical) layer with max over frequency: it spans the bands that tell the classes apart
SPEC = ArchSpec(frontend=(Branch(14, 3, 8, freq_reduce="max"),), head=Head(time_pooling="max"))


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _toy_split(n: int, task: Task, rng: np.random.Generator) -> Split:
    """Noise plus, per (active) class k, energy in mel bands 5k..5k+3 (a tall filter sees all)."""
    x = rng.normal(0.0, 1.0, size=(n, 1, N_MELS, N_FRAMES)).astype(np.float32)
    if task == "single_label":
        y = rng.integers(0, N_CLASSES, n)
        active = np.eye(N_CLASSES, dtype=bool)[y]
    else:
        active = rng.random((n, N_CLASSES)) < 0.4
        y = active.astype(np.float32)
    for k in range(N_CLASSES):
        x[active[:, k], 0, 5 * k : 5 * k + 4, :] += 1.5
    return Split(x, y)


def toy_features(task: Task = "single_label", n_train: int = 96, seed: int = 0) -> FeatureSet:
    """Return a small learnable FeatureSet built directly from random arrays."""
    rng = np.random.default_rng(seed)
    return FeatureSet(
        train=_toy_split(n_train, task, rng),
        valid=_toy_split(48, task, rng),
        test=_toy_split(48, task, rng),
        labels=[f"class{k}" for k in range(N_CLASSES)],
        task=task,
        feature_config=FeatureConfig(n_mels=N_MELS),
        source="toy",
    )


def _without_timings(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "step_ms")} for row in history]


FAST = TrainConfig(epochs=4, batch_size=16, lr=3e-2, seed=0)


def test_single_label_trial_learns_and_reports_every_figure() -> None:
    data = toy_features()
    result = fit(SPEC, data, FAST)
    assert result.status == "complete", result.reason
    m = result.metrics
    expected = {"val_loss", "val_accuracy", "val_macro_f1", "best_epoch"}
    assert expected | {"test_accuracy", "test_macro_f1"} <= set(m)
    assert m["test_accuracy"] >= 0.9  # chance is 1/3
    assert 1 <= m["best_epoch"] <= 4
    best_row = result.history[int(m["best_epoch"]) - 1]
    assert best_row["val_accuracy"] == m["val_accuracy"]
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert {"train_loss", "val_loss", "lr", "step_ms", "seconds"} <= set(result.history[0])
    assert result.history[0]["lr"] == pytest.approx(3e-2)  # cosine starts at the full rate
    assert result.history[-1]["lr"] < result.history[0]["lr"]
    assert result.params == sum(p.numel() for p in build_model(SPEC, 16, 12, 3).parameters())
    assert result.device == "cpu" and result.vram_source == "estimated"
    assert 0 < result.train_seconds <= result.seconds
    assert result.epochs_run == 4 and result.extra["stopped_by"] == "epochs"


def test_multi_label_trial_reports_roc_and_pr_auc() -> None:
    result = fit(SPEC, toy_features("multi_label"), FAST)
    assert result.status == "complete", result.reason
    for key in ("val_roc_auc", "val_pr_auc", "test_roc_auc", "test_pr_auc"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert result.metrics["test_roc_auc"] > 0.9  # chance is 0.5
    assert "test_accuracy" not in result.metrics


def test_same_seed_gives_identical_results_and_another_seed_does_not() -> None:
    data = toy_features()
    spec = ArchSpec(
        frontend=(Branch(4, 3, 8, freq_reduce="max"),),
        body=(ConvBlock(1, 3, 8, dropout=0.2),),  # dropout draws from the seeded generators too
        head=Head(time_pooling="max"),
    )
    config = TrainConfig(epochs=3, batch_size=16, seed=7)
    first, second = fit(spec, data, config), fit(spec, data, config)
    assert first.metrics == second.metrics
    assert _without_timings(first.history) == _without_timings(second.history)
    other = fit(spec, data, TrainConfig(epochs=3, batch_size=16, seed=8))
    assert _without_timings(other.history) != _without_timings(first.history)


def test_report_receives_every_epoch_and_stop_trial_prunes() -> None:
    seen: list[dict[str, float]] = []

    def report(row: dict[str, float]) -> None:
        seen.append(row)
        if row["epoch"] == 2:
            raise StopTrial("dominated at rung 2")

    result = fit(SPEC, toy_features(), FAST, report=report)
    assert result.status == "pruned" and result.reason == "dominated at rung 2"
    assert [row["epoch"] for row in seen] == [1, 2]
    assert result.epochs_run == 2
    # each report is the history row plus the costs known before training
    known = {"params", "gflops", "train_vram_estimate_mb", "infer_vram_estimate_mb"}
    assert [{k: v for k, v in row.items() if k not in known} for row in seen] == result.history
    assert all(row["params"] == result.params and row["gflops"] == result.gflops for row in seen)
    assert all(row["train_vram_estimate_mb"] == result.train_vram_mb for row in seen)
    assert not known & set(result.history[0])
    assert {"val_accuracy", "test_accuracy", "best_epoch"} <= set(result.metrics)


def test_early_stopping_keeps_the_best_epoch() -> None:
    # no BN and a learning rate too small to move a weight: validation never improves on epoch 1
    frozen = ArchSpec(frontend=(Branch(4, 3, 8, batch_norm=False),), head=Head(), input_norm="none")
    config = TrainConfig(
        epochs=10, batch_size=16, optimizer="sgd", lr=1e-30, early_stopping_patience=2
    )
    result = fit(frozen, toy_features(), config)
    assert result.status == "complete"
    assert result.epochs_run == 3 and result.extra["stopped_by"] == "early_stopping"
    assert result.metrics["best_epoch"] == 1


def test_time_budget_stops_after_the_running_epoch() -> None:
    result = fit(SPEC, toy_features(), TrainConfig(epochs=50, batch_size=16, time_budget_s=0.0))
    assert result.status == "complete"
    assert result.epochs_run == 1 and result.extra["stopped_by"] == "time_budget"
    assert "test_accuracy" in result.metrics


def test_invalid_spec_is_a_result_naming_the_layer() -> None:
    too_tall = ArchSpec(frontend=(Branch(40, 3, 8),))
    result = fit(too_tall, toy_features(), FAST)
    assert result.status == "invalid"
    assert "frontend[0]" in result.reason and "40" in result.reason
    assert result.metrics == {} and result.history == []


def test_huge_learning_rate_diverges() -> None:
    result = fit(SPEC, toy_features(), TrainConfig(epochs=3, batch_size=16, lr=1e6))
    assert result.status == "diverged"
    reason = result.reason.lower()
    assert "nan" in reason or "inf" in reason or "loss exploded" in reason


def test_poisoned_input_diverges() -> None:
    data = toy_features()
    data.train.x[5, 0, 3, 4] = np.nan
    result = fit(SPEC, data, TrainConfig(epochs=2, batch_size=16))
    assert result.status == "diverged" and "training loss" in result.reason


def test_an_unexpected_error_is_a_failed_result() -> None:
    def broken_report(row: dict[str, float]) -> None:
        raise KeyError("metric store unavailable")

    result = fit(SPEC, toy_features(), FAST, report=broken_report)
    assert result.status == "failed" and "KeyError" in result.reason


def _live_models() -> int:
    gc.collect()
    return sum(type(obj) is SpectrogramCNN for obj in gc.get_objects())


def test_simulated_oom_is_a_result_and_the_next_trial_is_unaffected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = toy_features()
    fresh = fit(SPEC, data, FAST)
    models_before = _live_models()
    # a trial whose step activations exceed 0.05 MiB "does not fit" (batch 96: ~0.2 MiB)
    monkeypatch.setattr(train_module, "_simulate_oom_above_mb", 0.05)
    oom = fit(SPEC, data, TrainConfig(epochs=4, batch_size=96))
    assert oom.status == "oom" and "out of memory" in oom.reason
    assert oom.params is not None and oom.metrics == {}
    # nothing of the failed trial survives it (its model was freed with its traceback)
    assert _live_models() == models_before
    monkeypatch.setattr(train_module, "_simulate_oom_above_mb", None)
    after = fit(SPEC, data, FAST)
    assert after.status == "complete"
    assert after.metrics == fresh.metrics
    assert _without_timings(after.history) == _without_timings(fresh.history)


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_best_weights_are_checkpointed_as_safetensors(tmp_path: Path) -> None:
    data = toy_features()
    config = TrainConfig(epochs=3, batch_size=16, checkpoint_dir=str(tmp_path / "trial0"))
    result = fit(SPEC, data, config)
    assert result.checkpoint is not None
    path = Path(result.checkpoint)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: JSON header
    assert path.read_bytes()[8 : 8 + header_len].lstrip().startswith(b"{")
    state, metadata = load_checkpoint(path)
    assert ArchSpec.from_json(metadata["spec"]) == SPEC
    assert int(metadata["best_epoch"]) == result.metrics["best_epoch"]
    model = build_model(SPEC, N_MELS, N_FRAMES, N_CLASSES)
    load_weights(model, path)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data.test.x)).numpy()
    again = task_metrics("single_label", data.test.y, logits)
    assert again["accuracy"] == result.metrics["test_accuracy"]
    assert set(state) == set(model.state_dict())


def test_memory_mapped_features_train_without_copies(tmp_path: Path) -> None:
    data = toy_features()
    for name in ("train", "valid", "test"):
        split = getattr(data, name)
        np.save(tmp_path / f"{name}.npy", split.x)
        split.x = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    with_mmap = fit(SPEC, data, FAST)
    assert with_mmap.status == "complete", with_mmap.reason
    assert with_mmap.metrics == fit(SPEC, toy_features(), FAST).metrics


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "train_config.epochs"),
        ({"optimizer": "lion"}, "train_config.optimizer"),
        ({"lr": -1.0}, "train_config.lr"),
    ],
)
def test_bad_train_config_is_a_failed_result(changes: dict[str, object], message: str) -> None:
    config = TrainConfig(**{**FAST.to_dict(), **changes})
    result = fit(SPEC, toy_features(), config)
    assert result.status == "failed" and message in result.reason


def test_lr_schedules() -> None:
    cosine = TrainConfig(epochs=4, lr=1.0, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(step, 10, cosine) for step in range(40)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[25] == pytest.approx(0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    step = TrainConfig(epochs=30, schedule="step", step_size_epochs=10, step_gamma=0.1)
    assert [lr_factor(e * 5, 5, step) for e in (0, 9, 10, 25)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01]
    )
    assert lr_factor(123, 5, TrainConfig(schedule="constant")) == 1.0


@pytest.mark.slow
@pytest.mark.fsdd
def test_fsdd_single_vertical_layer_reaches_95_percent(
    fsdd_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Acceptance: one vertical layer with max over frequency, >= 95 % on FSDD's official test
    split within 10 minutes on the 2-core CI machine (about 1 minute there when it is idle)."""
    from trainers.features import load_features

    data = load_features(f"fsdd:{fsdd_dir}", cache_dir=tmp_path_factory.mktemp("fsdd_cache"))
    assert (len(data.test), data.n_classes) == (300, 10)  # the official split: takes 0-4
    spec = ArchSpec(
        frontend=(Branch("0.9M", 1, 128, freq_reduce="max"),),
        head=Head(time_pooling="max"),
        input_norm="bn",
    )
    config = TrainConfig(epochs=5, batch_size=32, lr=1e-2, seed=0, num_threads=2)
    result = fit(spec, data, config)
    assert result.status == "complete", result.reason
    assert result.metrics["test_accuracy"] >= 0.95, result.metrics
    assert result.seconds <= 600
