"""TrialRecord, Objective and StudySummary: defaults are independent and JSON round-trips."""

from __future__ import annotations

import json

from dashboards.records import TRIAL_STATUSES, Objective, StudySummary, TrialRecord
from tests.dashboards.conftest import SyntheticStudy


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
