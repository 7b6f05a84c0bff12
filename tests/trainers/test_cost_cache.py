"""Static costs once per design (LRU cache) and the latency time budget."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from search_spaces import ArchSpec, Branch, Head
from search_spaces.errors import SpecError
from trainers import cost
from trainers.cost import (
    STATIC_COST_CACHE,
    CostError,
    StaticCostCache,
    design_key,
    seed_train_vram_estimate,
    static_costs,
    train_vram_estimate,
)
from trainers.cost_measure import measure_latency, measure_latency_ms

SPEC = ArchSpec(frontend=(Branch(14, 3, 4, freq_reduce="max"),), head=Head(time_pooling="max"))
OTHER = ArchSpec(frontend=(Branch(14, 3, 6, freq_reduce="max"),), head=Head(time_pooling="max"))
SHAPE = (16, 12, 3)  # n_mels, n_frames, n_classes


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    STATIC_COST_CACHE.clear()
    yield
    STATIC_COST_CACHE.clear()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the calls of the three computations behind the static costs (still real)."""
    counts = {"estimate_train_vram": 0, "count_flops": 0, "estimate_infer_vram": 0}
    for name in counts:
        real = getattr(cost, name)

        def counting(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(cost, name, counting)
    return counts


def test_design_key_depends_on_the_inputs_of_the_costs_and_nothing_else() -> None:
    base = design_key(SPEC, 16, 12, 3, 8, "adamw", "single_label")
    rebuilt = ArchSpec.from_json(SPEC.to_json())
    assert design_key(rebuilt, 16, 12, 3, 8, "adamw", "single_label") == base
    assert design_key(rebuilt, 16, 12, 3, 8, "adamw", "single_label").digest() == base.digest()
    changed = [
        design_key(OTHER, 16, 12, 3, 8, "adamw", "single_label"),
        design_key(SPEC, 20, 12, 3, 8, "adamw", "single_label"),
        design_key(SPEC, 16, 13, 3, 8, "adamw", "single_label"),
        design_key(SPEC, 16, 12, 4, 8, "adamw", "single_label"),
        design_key(SPEC, 16, 12, 3, 16, "adamw", "single_label"),
        design_key(SPEC, 16, 12, 3, 8, "sgd", "single_label"),
        design_key(SPEC, 16, 12, 3, 8, "adamw", "multi_label"),
        design_key(SPEC, 16, 12, 3, 8, "adamw", "single_label", amp=True),
    ]
    assert len({base, *changed}) == len(changed) + 1
    assert len({k.digest() for k in (base, *changed)}) == len(changed) + 1


def test_same_design_twice_is_computed_once(calls: dict[str, int]) -> None:
    first = static_costs(SPEC, *SHAPE, batch_size=8)
    second = static_costs(SPEC, *SHAPE, batch_size=8)
    assert first == second
    assert calls == {"estimate_train_vram": 1, "count_flops": 1, "estimate_infer_vram": 1}
    assert set(first) == {
        "params",
        "gflops",
        "train_vram_estimate_mb",
        "train_reserved_estimate_mb",
        "train_vram_estimate_method",
        "infer_vram_estimate_mb",
    }
    # the cached figures are the direct computations' figures
    direct = cost.estimate_train_vram(SPEC, *SHAPE, 8)
    assert first["train_vram_estimate_mb"] == direct.train_vram_mb
    assert first["train_reserved_estimate_mb"] == direct.train_reserved_mb
    assert first["train_vram_estimate_method"] == direct.method
    assert first["infer_vram_estimate_mb"] == cost.estimate_infer_vram(SPEC, *SHAPE)
    assert STATIC_COST_CACHE.hits >= 1 and len(STATIC_COST_CACHE) == 1


def test_a_different_batch_size_or_input_misses(calls: dict[str, int]) -> None:
    static_costs(SPEC, *SHAPE, batch_size=8)
    static_costs(SPEC, *SHAPE, batch_size=16)
    assert calls["estimate_train_vram"] == 2
    static_costs(SPEC, 20, 12, 3, batch_size=8)
    assert calls["estimate_train_vram"] == 3 and calls["count_flops"] == 3
    static_costs(SPEC, *SHAPE, batch_size=8, optimizer="sgd")
    assert calls["estimate_train_vram"] == 4
    assert len(STATIC_COST_CACHE) == 4


def test_the_vram_check_and_the_full_costs_share_one_estimate(calls: dict[str, int]) -> None:
    vram = train_vram_estimate(SPEC, *SHAPE, batch_size=8)
    assert calls == {"estimate_train_vram": 1, "count_flops": 0, "estimate_infer_vram": 0}
    full = static_costs(SPEC, *SHAPE, batch_size=8)
    assert calls == {"estimate_train_vram": 1, "count_flops": 1, "estimate_infer_vram": 1}
    assert full["train_vram_estimate_mb"] == vram["train_vram_estimate_mb"]
    assert train_vram_estimate(SPEC, *SHAPE, batch_size=8) == vram
    assert calls["estimate_train_vram"] == 1


def test_a_seeded_estimate_is_used_and_the_rest_still_computed(calls: dict[str, int]) -> None:
    key = design_key(SPEC, *SHAPE, 8, "adamw", "single_label")
    seed_train_vram_estimate(key, 123.0, "from the driver", reserved_mb=150.0)
    full = static_costs(SPEC, *SHAPE, batch_size=8)
    assert full["train_vram_estimate_mb"] == 123.0
    assert full["train_reserved_estimate_mb"] == 150.0
    assert full["train_vram_estimate_method"] == "from the driver"
    assert calls == {"estimate_train_vram": 0, "count_flops": 1, "estimate_infer_vram": 1}
    # seeding never overwrites what the process knows already
    seed_train_vram_estimate(key, 1.0, "late")
    assert static_costs(SPEC, *SHAPE, batch_size=8)["train_vram_estimate_mb"] == 123.0


def test_a_seed_without_the_reserved_estimate_is_estimated_again(calls: dict[str, int]) -> None:
    key = design_key(SPEC, *SHAPE, 8, "adamw", "single_label")
    seed_train_vram_estimate(key, 123.0, "from an old driver")  # no reserved figure
    full = static_costs(SPEC, *SHAPE, batch_size=8)
    assert calls["estimate_train_vram"] == 1
    assert full["train_reserved_estimate_mb"] >= full["train_vram_estimate_mb"] != 123.0


def test_returned_dicts_are_copies() -> None:
    first = static_costs(SPEC, *SHAPE, batch_size=8)
    first["params"] = -1
    first["train_vram_estimate_mb"] = -1.0
    vram = train_vram_estimate(SPEC, *SHAPE, batch_size=8)
    vram["train_vram_estimate_mb"] = -2.0
    again = static_costs(SPEC, *SHAPE, batch_size=8)
    assert again["params"] > 0 and again["train_vram_estimate_mb"] > 0
    key = design_key(SPEC, *SHAPE, 8, "adamw", "single_label")
    entry = STATIC_COST_CACHE.get(key)
    assert entry is not None
    entry["gflops"] = -3.0
    assert static_costs(SPEC, *SHAPE, batch_size=8)["gflops"] > 0


def test_the_cache_is_a_bounded_lru() -> None:
    cache = StaticCostCache(maxsize=2)
    keys = [design_key(SPEC, *SHAPE, b, "adamw", "single_label") for b in (1, 2, 3)]
    cache.update(keys[0], {"params": 0})
    cache.update(keys[1], {"params": 1})
    assert cache.get(keys[0]) == {"params": 0}  # keys[0] is now the most recent
    cache.update(keys[2], {"params": 2})
    assert len(cache) == 2
    assert keys[1] not in cache and keys[0] in cache and keys[2] in cache
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0], ("params", "gflops")) is None  # a partial entry is a miss
    assert cache.misses == 2 and cache.hits == 1
    with pytest.raises(CostError, match="maxsize"):
        StaticCostCache(0)
    assert STATIC_COST_CACHE.maxsize == 512


def test_process_cache_stays_bounded(calls: dict[str, int]) -> None:
    small = StaticCostCache(maxsize=3)
    for batch in range(1, 6):
        train_vram_estimate(SPEC, *SHAPE, batch_size=batch, cache=small)
    assert len(small) == 3 and calls["estimate_train_vram"] == 5
    train_vram_estimate(SPEC, *SHAPE, batch_size=5, cache=small)  # still there
    train_vram_estimate(SPEC, *SHAPE, batch_size=1, cache=small)  # evicted: again
    assert calls["estimate_train_vram"] == 6
    assert len(STATIC_COST_CACHE) == 0  # a given cache leaves the process's alone


def test_an_invalid_spec_raises_every_time_and_is_not_cached() -> None:
    too_tall = ArchSpec(frontend=(Branch(40, 3, 4),))
    for _ in range(2):
        with pytest.raises(SpecError):
            static_costs(too_tall, *SHAPE, batch_size=8)
    assert len(STATIC_COST_CACHE) == 0


# -- latency within a time budget ----------------------------------------------------------------


class _Sleepy(nn.Module):
    """A model whose forward sleeps ``delay_s`` and counts its calls."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.calls = 0
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return x * self.scale


def test_a_slow_model_gets_one_warmup_and_three_timed_runs_under_a_budget() -> None:
    model = _Sleepy(0.03)
    m = measure_latency(model, (1, 1, 4, 4), "cpu", repeats=10, warmup=3, budget_s=0.02)
    # the budget is spent by the first warm-up: the minimum (1 + 3 runs), no more
    assert (m.warmup_runs, m.runs, model.calls) == (1, 3, 4)
    assert m.latency_ms >= 30.0
    assert m.seconds >= 4 * 0.03


def test_a_zero_budget_still_times_the_minimum() -> None:
    model = _Sleepy(0.0)
    m = measure_latency(model, (1, 1, 4, 4), "cpu", repeats=10, warmup=3, budget_s=0.0)
    assert (m.warmup_runs, m.runs, model.calls) == (1, 3, 4)
    fewer = measure_latency(_Sleepy(0.0), (1, 1, 4, 4), "cpu", repeats=2, warmup=0, budget_s=0.0)
    assert (fewer.warmup_runs, fewer.runs) == (0, 2)  # never more than asked for


def test_a_fast_model_stops_at_repeats_within_a_generous_budget() -> None:
    model = _Sleepy(0.0)
    m = measure_latency(model, (1, 1, 4, 4), "cpu", repeats=10, warmup=3, budget_s=60.0)
    assert (m.warmup_runs, m.runs, model.calls) == (3, 10, 13)


def test_budget_runs_stay_between_the_minimum_and_repeats() -> None:
    model = _Sleepy(0.01)
    m = measure_latency(model, (1, 1, 4, 4), "cpu", repeats=200, warmup=3, budget_s=0.1)
    # 10 ms a run, 0.1 s budget: about 10 runs; far fewer than 200 even on a loaded machine
    assert 3 <= m.runs < 200 and 1 <= m.warmup_runs <= 3
    assert model.calls == m.runs + m.warmup_runs


def test_without_a_budget_every_run_is_made() -> None:
    model = _Sleepy(0.0)
    assert measure_latency_ms(model, (1, 1, 4, 4), "cpu", repeats=7, warmup=2) >= 0.0
    assert model.calls == 9
    with pytest.raises(CostError, match="budget"):
        measure_latency(model, (1, 1, 4, 4), "cpu", budget_s=-1.0)
