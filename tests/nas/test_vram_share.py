"""gpus_per_trial=auto sizes shares from the reserved estimate; an overrun is flagged."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from dashboards.records import Objective, TrialRecord
from nas.config import from_dict
from nas.ray_backend import trial_resources
from nas.search import front_table
from nas.trial import (
    CUDA_CONTEXT_MB,
    ESTIMATE_RESERVED_KEY,
    SHARE_BUDGET_KEY,
    SHARE_EXCEEDED_KEY,
    SHARE_WARNING_KEY,
    TrialSettings,
    estimate_train_reserved_mb,
    estimate_train_vram_mb,
    flag_vram_share,
    gpu_share,
    record_from_result,
    run_trial,
    share_budget_mb,
)
from search_spaces.spec import ArchSpec, Branch, Head
from trainers import cost
from trainers import train as train_module
from trainers.featureset import FeatureConfig, FeatureSet, Split
from trainers.result import TrainConfig, TrialResult

OBJECTIVES = (Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize"))
SPEC = ArchSpec(frontend=(Branch(14, 3, 4, freq_reduce="max"),), head=Head(time_pooling="max"))
TRAIN = TrainConfig(epochs=1, batch_size=8, num_threads=1)


@pytest.fixture
def data() -> FeatureSet:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        return Split(rng.normal(size=(n, 1, 16, 12)).astype(np.float32), rng.integers(0, 3, n))

    return FeatureSet(
        split(24), split(12), split(12), ["a", "b", "c"], "single_label", FeatureConfig(n_mels=16)
    )


def _measured(reserved_mb: float) -> TrialRecord:
    return TrialRecord(
        number=3,
        status="complete",
        costs={"train_vram_mb": 100.0, "train_reserved_mb": reserved_mb, "vram_source": "measured"},
    )


def test_a_measured_reserved_peak_above_the_share_is_flagged() -> None:
    record = _measured(900.0)
    flag_vram_share(record, {SHARE_BUDGET_KEY: 800.0})
    assert record.costs[SHARE_EXCEEDED_KEY] == pytest.approx(100.0)
    assert "900 MiB > the 800 MiB" in record.costs[SHARE_WARNING_KEY]
    within = _measured(800.0)
    flag_vram_share(within, {SHARE_BUDGET_KEY: 800.0})
    assert SHARE_EXCEEDED_KEY not in within.costs
    estimated = _measured(900.0)
    estimated.costs["vram_source"] = "estimated"  # an estimate is not a measurement
    flag_vram_share(estimated, {SHARE_BUDGET_KEY: 800.0})
    assert SHARE_EXCEEDED_KEY not in estimated.costs
    fixed_share = _measured(900.0)
    flag_vram_share(fixed_share, {})  # a fixed --gpus-per-trial sets no budget
    assert SHARE_EXCEEDED_KEY not in fixed_share.costs


def test_the_flag_shows_in_the_front_table() -> None:
    record = _measured(900.0)
    record.objectives = {"val_accuracy": 0.9, "train_vram_mb": 100.0}
    flag_vram_share(record, {SHARE_BUDGET_KEY: 800.0})
    table = front_table([record], OBJECTIVES)
    assert "rsv MiB" in table.splitlines()[0]
    assert "   900.0! " in table.splitlines()[2]
    assert "above the trial's GPU share" in table


def test_run_trial_flags_a_fake_measurement_over_its_share(
    data: FeatureSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_fit(
        spec: Any, data: Any, config: Any, device: Any, report: Any = None, share: Any = None
    ) -> Any:
        return TrialResult(
            status="complete",
            metrics={"val_accuracy": 0.5},
            train_vram_mb=300.0,
            train_reserved_mb=700.0,
            vram_source="measured",
            device="cuda",
        )

    monkeypatch.setattr(train_module, "fit", fake_fit)
    settings = TrialSettings(TRAIN, OBJECTIVES)
    config = {"spec": SPEC.to_dict(), SHARE_BUDGET_KEY: 512.0}
    out = run_trial(config, data, settings, None, "cpu")
    record = record_from_result(out, 0)
    assert record is not None and record.status == "complete", record
    assert record.costs["train_reserved_mb"] == 700.0
    assert record.costs[SHARE_EXCEEDED_KEY] == pytest.approx(188.0)
    # the same trial in a share that holds it is not flagged
    out = run_trial({"spec": SPEC.to_dict(), SHARE_BUDGET_KEY: 704.0}, data, settings, None, "cpu")
    assert SHARE_EXCEEDED_KEY not in json.loads(out["fsnas_record_json"])["costs"]


def test_auto_shares_are_sized_from_the_reserved_estimate(data: FeatureSet) -> None:
    cost.STATIC_COST_CACHE.clear()
    reserved = estimate_train_reserved_mb(SPEC, data, TRAIN)
    allocated = estimate_train_vram_mb(SPEC, data, TRAIN)
    assert reserved is not None and allocated is not None and reserved >= allocated
    # a card on which the allocated estimate fits 1/8 but the reserved one needs 1/4
    gpu_mb = (allocated + CUDA_CONTEXT_MB) / 0.125 + 1
    assert (reserved + CUDA_CONTEXT_MB) / gpu_mb > 0.125, "pick a spec with reserved > allocated"
    assert gpu_share(allocated, gpu_mb) == 0.125
    study = from_dict({"resources": {"gpus_per_trial": "auto", "gpu_memory_mb": gpu_mb}})
    resources = trial_resources(study, data, TrialSettings(TRAIN, OBJECTIVES), 1.0)
    assert callable(resources)
    trial_config: dict[str, Any] = {"spec": SPEC.to_dict()}
    data_mb = sum(s.x.nbytes + s.y.nbytes for s in (data.train, data.valid, data.test)) / 2**20
    share = gpu_share(reserved, gpu_mb, data_mb)
    assert share == 0.25
    assert resources(trial_config).bundles == [{"CPU": 1.0, "GPU": share}]
    assert trial_config[ESTIMATE_RESERVED_KEY] == reserved
    assert trial_config[SHARE_BUDGET_KEY] == pytest.approx(share_budget_mb(share, gpu_mb, data_mb))
    assert trial_config[SHARE_BUDGET_KEY] == pytest.approx(
        0.25 * gpu_mb - CUDA_CONTEXT_MB - data_mb
    )
