"""Reliability, round 2: huge designs are refused, exploding losses diverge, a study keeps one
meaning (issue 21)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import trainers.train as train_module
from nas.cli import main
from nas.study import GPU_SHARE_ATTR
from search_spaces import ArchSpec, Branch, ConvBlock, Head
from tests.trainers.test_train import SPEC, toy_features
from trainers.cost import DesignTooLarge, refuse_too_large
from trainers.result import TrainConfig
from trainers.train import DIVERGENCE_FACTOR, chance_loss, fit

SYNTH = "synthetic:clips_per_class=4,seed=0"


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith(f"fsnas {command}: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[-1]


def _huge_spec(path: Path) -> Path:
    spec = ArchSpec(
        frontend=(Branch(3, 3, 64),),
        body=tuple(ConvBlock(3, 3, 65_536) for _ in range(4)),
        head=Head(time_pooling="max"),
        name="huge",
    )
    path.write_text(json.dumps(spec.to_dict()))
    return path


# -- huge designs -------------------------------------------------------------------------------
def test_a_huge_design_is_refused_by_cost_and_train_naming_params_and_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _huge_spec(tmp_path / "huge.json")
    argv = ["cost", str(spec), "--n-mels", "64", "--n-frames", "32", "--n-classes", "10"]
    assert main(argv) == 2
    line = _one_line_error(capsys, "cost")
    assert re.search(r"[\d,]{15,} parameters", line), line  # ~1.1e11 parameters
    assert "bytes" in line and "refused before allocating" in line and "MemAvailable" in line
    argv = ["train", "--spec", str(spec), "--data", SYNTH, "--epochs", "1"]
    assert main([*argv, "--tracking-uri", "none", "--cache-dir", str(tmp_path / "c")]) == 2
    assert "too large for this machine" in _one_line_error(capsys, "train")


def test_weights_that_fit_but_training_does_not_name_the_training_need() -> None:
    data = toy_features()
    with pytest.raises(DesignTooLarge, match=r"training needs about .* batch 16") as info:
        refuse_too_large(
            SPEC, data.n_mels, data.n_frames, data.n_classes, 16, available=(200_000, "test budget")
        )
    assert "test budget is 0.0 GiB" in str(info.value)
    refuse_too_large(SPEC, data.n_mels, data.n_frames, data.n_classes, 16)  # fits: no error


def test_in_a_trial_a_design_too_large_is_infeasible_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import trainers.cost as cost

    monkeypatch.setattr(cost, "memory_available", lambda *a, **k: (100_000, "test budget"))
    result = fit(SPEC, toy_features(), TrainConfig(epochs=1, batch_size=16))
    assert result.status == "infeasible", result.reason
    assert "too large for this machine" in result.reason and "parameters" in result.reason


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, total: int, free: int | None = None) -> None:
    """Make torch see one CUDA device of ``total`` bytes (``free`` of them free); no GPU used."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda, "mem_get_info", lambda *a: (total if free is None else free, total)
    )


def test_a_gpu_trial_too_large_for_its_share_is_refused_naming_the_share_and_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trainers.cost import MIB, train_vram_estimate

    data = toy_features()
    shape = (SPEC, data.n_mels, data.n_frames, data.n_classes, 16)
    need = int(train_vram_estimate(*shape)["train_vram_estimate_mb"] * MIB)
    total = 2 * need  # the whole device holds the design, a quarter of it does not
    _fake_gpu(monkeypatch, total)
    refuse_too_large(*shape, device="cuda")  # no share: the device's free memory
    refuse_too_large(*shape, device="cuda", gpu_share=0.75)  # 1.5x the need: fits
    with pytest.raises(DesignTooLarge) as info:
        refuse_too_large(*shape, device="cuda", gpu_share=0.25)
    text = str(info.value)
    assert "too large for its GPU share" in text, text
    assert f"its GPU share (0.25 of the {total:,} bytes of GPU cuda)" in text, text
    assert f"({total // 4:,} bytes)" in text and f"({need:,} bytes)" in text, text
    assert "resources.gpus_per_trial" in text
    # other processes already hold part of the share: the free memory decides, and says so
    _fake_gpu(monkeypatch, 4 * need, free=need // 2)
    with pytest.raises(DesignTooLarge, match=r"the free memory of GPU cuda \(its share: 0.5 of"):
        refuse_too_large(*shape, device="cuda", gpu_share=0.5)


def test_a_search_trial_passes_its_gpu_share_to_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainers.cost as cost
    from nas.trial import TrialSettings, record_from_result, run_trial

    asked: list[object] = []

    def budget(device: object = "cpu", gpu_share: float | None = None) -> tuple[int, str]:
        asked.append(gpu_share)
        return 100_000, f"its GPU share ({gpu_share:g} of the 400,000 bytes of GPU cuda)"

    monkeypatch.setattr(cost, "memory_available", budget)
    train = TrainConfig(epochs=1, batch_size=16)
    settings = TrialSettings(train, (), gpu_share=0.25)
    out = run_trial({"spec": SPEC.to_dict()}, toy_features(), settings, None, "cpu")
    record = record_from_result(out, 0)
    assert asked == [0.25]
    assert record is not None and record.status == "infeasible", record
    assert "its GPU share (0.25 of the 400,000 bytes" in record.reason, record.reason


@pytest.mark.parametrize(
    ("assigned", "cuda", "device", "share"),
    [(0.25, True, "cuda", 0.25), (1.0, True, "cuda", None), (0.5, False, "cpu", None)],
)
def test_the_worker_hands_a_fractional_gpu_share_to_the_trial(
    monkeypatch: pytest.MonkeyPatch, assigned: float, cuda: bool, device: str, share: object
) -> None:
    import torch

    import nas.ray_backend as backend
    from nas.trial import TrialSettings

    class Context:
        def get_assigned_resources(self) -> dict[str, float]:
            return {"CPU": 1.0, "GPU": assigned}

        def get_node_id(self) -> str:
            return "node"

    monkeypatch.setattr(backend.ray, "get_runtime_context", Context)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    seen: list[tuple[object, str]] = []

    def trial_fn(config: object, data: object, settings: TrialSettings, *rest: object) -> dict:
        seen.append((settings.gpu_share, str(rest[1])))
        return {}

    settings = TrialSettings(TrainConfig(epochs=1), ())
    final = backend._train_on_device(trial_fn, {}, toy_features(), settings)
    assert seen == [(share, device)] and final[GPU_SHARE_ATTR] == assigned


# -- exploding losses ---------------------------------------------------------------------------
def test_a_finite_exploding_loss_diverges_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    data = toy_features()
    chance = chance_loss("single_label", data.n_classes)
    real_evaluate = train_module.evaluate

    def exploding(*args: object, **kwargs: object) -> dict[str, float]:
        val = real_evaluate(*args, **kwargs)  # type: ignore[arg-type]
        return {**val, "loss": DIVERGENCE_FACTOR * chance * 1.5}  # finite, far above chance

    monkeypatch.setattr(train_module, "evaluate", exploding)
    result = fit(SPEC, data, TrainConfig(epochs=2, batch_size=16))
    assert result.status == "diverged"
    assert "validation loss" in result.reason and "loss of predicting chance" in result.reason


def test_training_loss_far_above_the_first_epoch_diverges() -> None:
    with pytest.raises(train_module._Diverged, match=r"100x the first epoch's"):
        train_module._check_exploding("training", 0.5 * 101, 3, 0.5, 1e9)
    train_module._check_exploding("training", 0.5 * 99, 3, 0.5, 1e9)  # within 100x: no error
    train_module._check_exploding("training", 0.5 * 101, 1, 0.5, 1e9)  # epoch 1 is the reference


def test_a_learning_rate_of_a_million_is_diverged_not_complete() -> None:
    result = fit(SPEC, toy_features(), TrainConfig(epochs=2, batch_size=16, lr=1e6))
    assert result.status == "diverged", (result.status, result.metrics)
    assert result.reason


# -- a study keeps one meaning ------------------------------------------------------------------
def _meaning_setup() -> tuple[object, object, list[object]]:
    import optuna

    from nas.config import load_config

    config = load_config(None, {"study": "m", "data.source": SYNTH, "train.epochs": 1})
    objectives = config.objectives("single_label")
    study = optuna.create_study(directions=[o.direction for o in objectives])
    return config, study, objectives


def test_a_resume_that_changes_the_meaning_is_refused_naming_each_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import dataclasses

    from nas.study import SearchError, check_meaning, study_meaning

    config, study, objectives = _meaning_setup()
    first = study_meaning(config, "abc", "val_accuracy", objectives)  # type: ignore[arg-type]
    check_meaning(study, config, first)  # type: ignore[arg-type]
    other = dataclasses.replace(
        config,  # type: ignore[type-var]
        data=dataclasses.replace(config.data, source="synthetic:clips_per_class=12"),  # type: ignore[attr-defined]
        train=dataclasses.replace(config.train, epochs=3),  # type: ignore[attr-defined]
    )
    changed = study_meaning(other, "def", "val_accuracy", objectives)  # type: ignore[arg-type]
    with pytest.raises(SearchError) as info:
        check_meaning(study, other, changed)  # type: ignore[arg-type]
    text = str(info.value)
    assert 'data.fingerprint: "abc" → "def"' in text and "train.epochs: 1 → 3" in text
    assert "clips_per_class=12" in text and "another --study name" in text


def test_neutral_changes_are_allowed_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses
    import io

    from nas.study import check_meaning, study_meaning

    config, study, objectives = _meaning_setup()
    meaning = study_meaning(config, "abc", "val_accuracy", objectives)  # type: ignore[arg-type]
    check_meaning(study, config, meaning)  # type: ignore[arg-type]
    study.set_user_attr("config", config.to_dict())  # type: ignore[attr-defined]
    more = dataclasses.replace(
        config,  # type: ignore[type-var]
        search=dataclasses.replace(config.search, trials=50, keep_weights="all"),  # type: ignore[attr-defined]
        tracking_uri="http://127.0.0.1:5000",
    )
    out = io.StringIO()
    check_meaning(study, more, study_meaning(more, "abc", "val_accuracy", objectives), out)  # type: ignore[arg-type]
    text = out.getvalue()
    assert "search.trials: 20 → 50" in text and "search.keep_weights" in text
    assert "tracking_uri: null → " in text


def test_an_old_study_without_a_stored_meaning_gets_it_on_first_resume() -> None:
    import io

    import optuna

    from nas.study import MEANING_ATTR, check_meaning, study_meaning

    config, study, objectives = _meaning_setup()
    study.add_trial(  # type: ignore[attr-defined]
        optuna.trial.create_trial(values=[0.5, 10.0])
    )
    out = io.StringIO()
    meaning = study_meaning(config, "abc", "val_accuracy", objectives)  # type: ignore[arg-type]
    check_meaning(study, config, meaning, out)  # type: ignore[arg-type]
    assert "made before fsnas stored what its trials mean" in out.getvalue()
    assert study.user_attrs[MEANING_ATTR] == meaning  # type: ignore[attr-defined]
