"""Pareto maths: sort, hypervolume (checked against inclusion-exclusion), knee, selection."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from dashboards.records import Objective, TrialRecord
from nas import pareto
from nas.pareto import SelectionError

MAX_MIN = ["maximize", "minimize"]
OBJECTIVES = [Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize")]


def _hv_inclusion_exclusion(points: list[list[float]], ref: list[float]) -> float:
    """Independent exact hypervolume for minimisation: union of boxes by inclusion-exclusion."""
    boxes = [p for p in points if all(x < r for x, r in zip(p, ref))]
    total = 0.0
    for k in range(1, len(boxes) + 1):
        for combo in itertools.combinations(boxes, k):
            corner = [max(vals) for vals in zip(*combo)]
            total += (-1) ** (k + 1) * math.prod(r - c for c, r in zip(corner, ref))
    return total


def test_non_dominated_sort_mixed_directions() -> None:
    points = [[0.9, 100.0], [0.95, 200.0], [0.8, 150.0], [0.9, 100.0], [0.7, 300.0]]
    fronts = pareto.non_dominated_sort(points, MAX_MIN)
    assert fronts[0] == [0, 1, 3]  # duplicates share the front
    assert fronts[1] == [2]
    assert fronts[2] == [4]
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))


def test_dominates_respects_direction() -> None:
    assert pareto.dominates([0.9, 100.0], [0.8, 100.0], MAX_MIN)
    assert not pareto.dominates([0.9, 100.0], [0.9, 100.0], MAX_MIN)
    assert pareto.dominates([0.8, 100.0], [0.9, 100.0], ["minimize", "minimize"])
    with pytest.raises(ValueError, match="direction"):
        pareto.dominates([1.0], [2.0], ["up"])


def test_hypervolume_2d_by_hand() -> None:
    # maximise accuracy, minimise VRAM; reference (0, 400)
    points = [[0.9, 100.0], [0.95, 200.0]]
    # boxes: 0.9 × 300 plus the extra 0.05 × 200 of the second point
    assert pareto.hypervolume(points, MAX_MIN, [0.0, 400.0]) == pytest.approx(280.0)
    # a point that does not beat the reference adds nothing
    assert pareto.hypervolume([[0.5, 500.0]], MAX_MIN, [0.0, 400.0]) == 0.0


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dims: int) -> None:
    rng = random.Random(dims)
    for _ in range(20):
        pts = [[rng.random() for _ in range(dims)] for _ in range(rng.randint(1, 7))]
        ref = [1.0] * dims
        expected = _hv_inclusion_exclusion(pts, ref)
        assert pareto.hypervolume(pts, ["minimize"] * dims, ref) == pytest.approx(expected)


def test_knee_is_the_elbow() -> None:
    # a clear elbow at (0.95, 120): near-best accuracy at a fraction of the VRAM
    points = [[0.99, 800.0], [0.97, 400.0], [0.95, 120.0], [0.80, 100.0], [0.60, 90.0]]
    assert pareto.knee_point(points, MAX_MIN) == 2
    assert pareto.knee_point([], MAX_MIN) is None
    assert pareto.knee_point([[0.5, 10.0]], MAX_MIN) == 0


def _record(number: int, acc: float, vram: float, status: str = "complete") -> TrialRecord:
    return TrialRecord(
        number=number,
        status=status,
        objectives={"val_accuracy": acc, "train_vram_mb": vram},
        costs={"train_vram_mb": vram},
    )


def test_pruned_and_failed_records_never_reach_the_front() -> None:
    records = [
        _record(0, 0.90, 300.0),
        _record(1, 0.99, 50.0, status="pruned"),  # would dominate everything
        _record(2, 0.95, 400.0),
        _record(3, 0.99, 10.0, status="infeasible"),
        TrialRecord(number=4, status="oom"),
    ]
    front = pareto.front_records(records, OBJECTIVES)
    assert [r.number for r in front] == [2, 0]
    hv, ref = pareto.records_hypervolume(records, OBJECTIVES)
    assert ref == {"val_accuracy": 0.0, "train_vram_mb": pytest.approx(440.0)}
    assert hv == pytest.approx(0.90 * 140.0 + 0.05 * 40.0)


def test_selection_rules() -> None:
    records = [_record(0, 0.99, 800.0), _record(1, 0.97, 120.0), _record(2, 0.80, 100.0)]
    assert pareto.select(records, "best", OBJECTIVES).number == 0
    assert pareto.select(records, "max-metric-under-vram=200", OBJECTIVES).number == 1
    assert pareto.select(records, "trial=2", OBJECTIVES).number == 2
    assert pareto.select(records, "knee", OBJECTIVES).number == 1
    with pytest.raises(SelectionError, match="train_vram_mb <= 50"):
        pareto.select(records, "max-metric-under-vram=50", OBJECTIVES)
    with pytest.raises(SelectionError, match="no trial number 9"):
        pareto.select(records, "trial=9", OBJECTIVES)
    with pytest.raises(SelectionError, match="unknown selection rule 'fastest'"):
        pareto.select(records, "fastest", OBJECTIVES)
    with pytest.raises(SelectionError, match="no complete trial"):
        pareto.select([_record(0, 0.9, 1.0, status="pruned")], "best", OBJECTIVES)
