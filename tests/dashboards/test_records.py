"""TrialRecord, Objective and StudySummary: defaults are independent and JSON round-trips;
``best_record`` is the one definition of a study's best trial."""

from __future__ import annotations

import json
import math

from dashboards import artifacts
from dashboards.records import (
    TRIAL_STATUSES,
    Objective,
    StudySummary,
    TrialRecord,
    best_record,
)
from tests.dashboards.conftest import OBJECTIVES, SyntheticStudy


def test_default_containers_are_not_shared() -> None:
    a, b = TrialRecord(number=0, status="complete"), TrialRecord(number=1, status="pruned")
    a.metrics["val_accuracy"] = 0.9
    a.history.append({"epoch": 1.0})
    assert b.metrics == {} and b.history == []


def test_trial_record_round_trips_through_json(study: SyntheticStudy) -> None:
    for record in study.records:
        again = TrialRecord.from_dict(json.loads(json.dumps(record.to_dict())))
        assert again == record


def test_trial_record_from_dict_ignores_unknown_keys() -> None:
    record = TrialRecord.from_dict({"number": 3, "status": "oom", "added_later": 1})
    assert record.number == 3 and record.status == "oom"


def test_summary_round_trips_through_json(study: SyntheticStudy) -> None:
    data = json.loads(json.dumps(study.summary.to_dict()))
    again = StudySummary.from_dict(data)
    assert again == study.summary
    assert isinstance(again.hypervolume_history[0], tuple)


def test_objective_title_falls_back_to_name() -> None:
    assert Objective("latency_ms", "minimize").title == "latency_ms"
    assert Objective("latency_ms", "minimize", "latency (ms)").title == "latency (ms)"


def test_statuses_match_trainers_trial_status() -> None:
    # dashboards cannot import trainers, so the list is repeated; this keeps both in step
    from typing import get_args

    from trainers.result import TrialStatus

    assert set(TRIAL_STATUSES) == set(get_args(TrialStatus))


def _trial(number: int, accuracy: float, vram_mb: float, status: str = "complete") -> TrialRecord:
    return TrialRecord(
        number=number,
        status=status,
        objectives={"val_accuracy": accuracy, "train_vram_mb": vram_mb},
        costs={"train_vram_mb": vram_mb},
    )


def test_best_record_takes_the_best_first_objective_of_complete_finite_trials() -> None:
    records = [
        _trial(0, 0.90, 100.0),
        _trial(1, 0.99, 50.0, status="pruned"),  # partial values never count
        _trial(2, 0.95, 400.0),
        _trial(3, math.nan, 10.0),  # a non-finite objective never counts
        TrialRecord(number=4, status="complete"),  # no objectives at all
    ]
    best = best_record(records, OBJECTIVES)
    assert best is not None and best.number == 2
    minimize = [Objective("train_vram_mb", "minimize"), Objective("val_accuracy", "maximize")]
    best = best_record(records, minimize)
    assert best is not None and best.number == 0


def test_best_record_breaks_ties_by_lower_vram_then_lower_number() -> None:
    records = [_trial(5, 0.95, 300.0), _trial(3, 0.95, 200.0), _trial(4, 0.95, 200.0)]
    best = best_record(records, OBJECTIVES)
    assert best is not None and best.number == 3
    # the VRAM is read from costs, else from the objectives; a trial without one counts as 0
    accuracy_only = [Objective("val_accuracy", "maximize")]
    in_costs = TrialRecord(7, "complete", objectives={"val_accuracy": 0.95, "train_vram_mb": 1.0})
    in_costs.costs["train_vram_mb"] = 300.0
    in_objectives = TrialRecord(8, "complete", objectives={"val_accuracy": 0.95})
    in_objectives.objectives["train_vram_mb"] = 200.0
    best = best_record([in_costs, in_objectives], accuracy_only)
    assert best is not None and best.number == 8  # 200 MB beats the 300 MB of the costs
    without = TrialRecord(9, "complete", objectives={"val_accuracy": 0.95})
    best = best_record([in_costs, in_objectives, without], accuracy_only)
    assert best is not None and best.number == 9


def test_best_record_is_none_without_a_candidate() -> None:
    assert best_record([], OBJECTIVES) is None
    assert best_record([_trial(0, 0.9, 1.0, status="oom")], OBJECTIVES) is None
    assert best_record([_trial(0, 0.9, 1.0)], []) is None


def test_study_choice_without_a_knee_is_the_best_record() -> None:
    # a tie on accuracy: the lower VRAM wins even when the front flags say otherwise
    records = [_trial(0, 0.95, 300.0), _trial(1, 0.95, 200.0), _trial(2, 0.80, 50.0)]
    records[0].on_pareto_front = True
    summary = StudySummary("s", list(OBJECTIVES))
    chosen, why = artifacts.select_best(records, summary)
    assert (chosen.number, why) == (1, "best val_accuracy")
    assert chosen is best_record(records, OBJECTIVES)
    # no trial has every objective: the first complete trial, as before
    bare = [TrialRecord(number=6, status="complete"), TrialRecord(number=7, status="complete")]
    assert artifacts.select_best(bare, summary) == (bare[0], "first complete trial")
