"""A trial's costs are computed once per design; the driver's placement estimate reaches it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dashboards.records import Objective
from nas.config import from_dict
from nas.ray_backend import trial_resources
from nas.trial import (
    ESTIMATE_DESIGN_KEY,
    ESTIMATE_MB_KEY,
    ESTIMATE_METHOD_KEY,
    TrialSettings,
    estimate_train_vram_mb,
    record_from_result,
    run_trial,
)
from search_spaces.spec import ArchSpec, Branch, Head
from trainers import cost
from trainers.cost_vram import CATEGORIES, VramEstimate
from trainers.featureset import FeatureConfig, FeatureSet, Split
from trainers.result import TrainConfig
from trainers.train import LATENCY_REPEATS, fit

OBJECTIVES = (Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize"))
SPEC = ArchSpec(frontend=(Branch(14, 3, 4, freq_reduce="max"),), head=Head(time_pooling="max"))
TRAIN = TrainConfig(epochs=1, batch_size=8, num_threads=1)


def _features() -> FeatureSet:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        x = rng.normal(size=(n, 1, 16, 12)).astype(np.float32)
        return Split(x, rng.integers(0, 3, n))

    return FeatureSet(
        split(24), split(12), split(12), ["a", "b", "c"], "single_label", FeatureConfig(n_mels=16)
    )


@pytest.fixture
def data() -> FeatureSet:
    return _features()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    cost.STATIC_COST_CACHE.clear()
    yield
    cost.STATIC_COST_CACHE.clear()
    torch.set_num_threads(previous)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the (still real) VRAM estimates and FLOP counts, where every caller finds them."""
    counts = {"estimate_train_vram": 0, "count_flops": 0}
    for name in counts:
        real = getattr(cost, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(cost, name, counting)
    return counts


def _settings(limit_mb: float | None = 1e6, train: TrainConfig = TRAIN) -> TrialSettings:
    return TrialSettings(train, OBJECTIVES, limit_mb)


def _record(final: dict[str, Any]) -> Any:
    record = record_from_result(final, 0)
    assert record is not None
    return record


def test_the_vram_limit_check_and_fit_estimate_once(
    data: FeatureSet, calls: dict[str, int]
) -> None:
    final = run_trial({"spec": SPEC.to_dict()}, data, _settings(), None, "cpu")
    record = _record(final)
    assert record.status == "complete", record.reason
    assert calls == {"estimate_train_vram": 1, "count_flops": 1}  # first sight: once each
    direct = cost.estimate_train_vram(SPEC, 16, 12, 3, 8)
    assert record.costs["train_vram_estimate_mb"] == direct.train_vram_mb


def test_a_repeated_design_is_not_costed_again(data: FeatureSet, calls: dict[str, int]) -> None:
    # an ablation: the same spec with several seeds, in one (reused) worker process
    records = []
    for seed in (0, 1, 2):
        train = dataclasses.replace(TRAIN, seed=seed)
        records.append(_record(run_trial({"spec": SPEC.to_dict()}, data, _settings(None, train))))
    assert calls == {"estimate_train_vram": 1, "count_flops": 1}
    assert len({r.costs["params"] for r in records}) == 1
    assert len({r.costs["train_vram_mb"] for r in records}) == 1


def test_fit_records_fixed_seconds_and_latency_runs(data: FeatureSet) -> None:
    result = fit(SPEC, data, TRAIN, "cpu")
    assert result.status == "complete", result.reason
    extra = result.extra
    assert extra["fixed_seconds"] == pytest.approx(result.seconds - result.train_seconds)
    assert 0 <= extra["static_costs_seconds"] <= extra["fixed_seconds"]
    assert 0 <= extra["device_costs_seconds"] <= extra["fixed_seconds"]
    assert 3 <= extra["latency_runs"] <= LATENCY_REPEATS
    again = fit(SPEC, data, dataclasses.replace(TRAIN, seed=1), "cpu")
    assert again.gflops == result.gflops and again.params == result.params
    assert again.extra["fixed_seconds"] >= 0


def test_placement_estimate_travels_in_the_config_and_is_reused(
    data: FeatureSet, calls: dict[str, int]
) -> None:
    settings = _settings()
    study = from_dict({"resources": {"gpus_per_trial": "auto", "gpu_memory_mb": 16_000.0}})
    resources = trial_resources(study, data, settings, 1.0)
    assert callable(resources)
    trial_config: dict[str, Any] = {"spec": SPEC.to_dict()}
    assert resources(trial_config).bundles == [{"CPU": 1.0, "GPU": 0.125}]
    assert calls["estimate_train_vram"] == 1
    assert trial_config[ESTIMATE_MB_KEY] == estimate_train_vram_mb(SPEC, data, TRAIN)
    assert isinstance(trial_config[ESTIMATE_METHOD_KEY], str)
    assert calls["estimate_train_vram"] == 1  # the driver estimates a spec once
    shipped = json.loads(json.dumps(trial_config))  # what a worker in another process gets
    cost.STATIC_COST_CACHE.clear()  # ... with an empty cache of its own
    record = _record(run_trial(shipped, data, settings, None, "cpu"))
    assert record.status == "complete", record.reason
    assert calls["estimate_train_vram"] == 1  # neither the limit check nor fit estimated again
    assert calls["count_flops"] == 1  # FLOPs are still counted in the worker
    assert record.costs["train_vram_estimate_mb"] == trial_config[ESTIMATE_MB_KEY]


def test_an_estimate_for_another_design_is_not_trusted(
    data: FeatureSet, calls: dict[str, int]
) -> None:
    config: dict[str, Any] = {"spec": SPEC.to_dict()}
    other = dataclasses.replace(TRAIN, batch_size=4)
    estimate_train_vram_mb(SPEC, data, other, into=config)
    cost.STATIC_COST_CACHE.clear()
    record = _record(run_trial(config, data, _settings(), None, "cpu"))
    assert calls["estimate_train_vram"] == 2  # made for batch 4, the trial trains batch 8
    assert record.costs["train_vram_estimate_mb"] == estimate_train_vram_mb(SPEC, data, TRAIN)
    assert record.costs["train_vram_estimate_mb"] != config[ESTIMATE_MB_KEY]
    # a malformed estimate is ignored, never a failure
    bad = {"spec": SPEC.to_dict(), ESTIMATE_MB_KEY: "lots", ESTIMATE_DESIGN_KEY: "x"}
    assert _record(run_trial(bad, data, _settings(), None, "cpu")).status == "complete"


def test_no_estimate_is_attached_for_a_spec_that_does_not_build(data: FeatureSet) -> None:
    study = from_dict({"resources": {"gpus_per_trial": "auto", "gpu_memory_mb": 16_000.0}})
    resources = trial_resources(study, data, _settings(), 1.0)
    assert callable(resources)
    too_tall: dict[str, Any] = {"spec": ArchSpec(frontend=(Branch(40, 3, 4),)).to_dict()}
    assert resources(too_tall).bundles == [{"CPU": 1.0, "GPU": 1.0}]
    assert set(too_tall) == {"spec"}
    broken: dict[str, Any] = {"spec": {"bad": 1}}
    assert resources(broken).bundles == [{"CPU": 1.0, "GPU": 1.0}]
    assert set(broken) == {"spec"}


@pytest.mark.slow
def test_tune_ships_the_placement_estimate_to_the_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through Ray Tune (a fake GPU): the worker trains with the driver's estimate.

    The driver's estimator is replaced by one that answers a marker value; the workers
    (other processes) keep the real one, so a record carrying the marker was not re-estimated.
    """
    import ray

    from nas.search import run_search
    from tests.nas._study import tiny_config

    marker = VramEstimate(7.25, dict.fromkeys(CATEGORIES, 0.0), "marker")
    monkeypatch.setattr(cost, "estimate_train_vram", lambda *args, **kwargs: marker)
    config = from_dict(
        tiny_config(
            tmp_path,
            study="placement",
            train={"epochs": 1},
            search={"trials": 2, "early_stopping": {"enabled": False}},
            resources={"gpus_per_trial": "auto", "gpu_memory_mb": 16_000.0, "max_concurrent": 1},
        )
    )
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_search(config)
    finally:
        ray.shutdown()
    complete = [r for r in outcome.records if r.status == "complete"]
    assert complete
    for record in complete:
        assert record.costs["train_vram_estimate_mb"] == 7.25
        assert record.costs["train_vram_mb"] == 7.25  # CPU worker: the (shipped) estimate
    # Tune's own per-trial files (params.json, result.json, ...) are off in fsnas's runs
    assert not list((tmp_path / "ray").rglob("params.json"))
    assert not list((tmp_path / "ray").rglob("progress.csv"))


@pytest.mark.slow
def test_fixed_trials_ship_the_placement_estimate_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_fixed_trials`` (ablations) places by the estimate and the worker reuses it."""
    import ray

    from nas import ray_backend
    from tests.nas._study import tiny_config

    marker = VramEstimate(5.5, dict.fromkeys(CATEGORIES, 0.0), "marker")
    monkeypatch.setattr(cost, "estimate_train_vram", lambda *args, **kwargs: marker)
    config = from_dict(
        tiny_config(
            tmp_path,
            study="fixed-placement",
            resources={"gpus_per_trial": "auto", "gpu_memory_mb": 16_000.0, "max_concurrent": 1},
        )
    )
    data = _features()
    settings = TrialSettings(train_config=TRAIN, objectives=OBJECTIVES)
    finals: dict[int, dict[str, Any] | None] = {}
    ray.init(address="local", num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ray_backend.run_fixed_trials(
            [{"spec": SPEC.to_dict()}, {"spec": SPEC.to_dict()}],
            run_trial,
            config=config,
            data=data,
            settings=settings,
            name="fixed-placement",
            on_result=lambda index, final, error: finals.__setitem__(index, final),
        )
    finally:
        ray.shutdown()
    assert sorted(finals) == [0, 1]
    for final in finals.values():
        record = record_from_result(final, 0)
        assert record is not None and record.status == "complete", final
        assert record.costs["train_vram_estimate_mb"] == 5.5  # the driver's, not re-estimated
