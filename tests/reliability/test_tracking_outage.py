"""MLflow outages seen from the tracker: wait for a restarting store, never log a trial twice.

Fast (a SQLite store, the outage simulated on the client); the real ``mlflow server`` stopped
and restarted under a running search is in test_faults.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from dashboards import tracking
from dashboards.mlflow_store import TrackingError
from dashboards.tracking import FINISH_WAIT_ENV, StudyTracker
from tests.dashboards.conftest import build_study


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite store for the module (creating one costs seconds); each test its own study."""

    # the plots are not under test here and take seconds per refresh on a small CPU
    def one_artifact(folder: Path, records: Any, summary: Any) -> None:
        (folder / "trials.csv").write_text(f"{len(list(records))} trials\n", encoding="utf-8")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking, "write_study_artifacts", one_artifact)
        yield f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _down(*args: Any, **kwargs: Any) -> Any:
    raise MlflowException("API request to http://127.0.0.1:1/ failed: Connection refused")


def _child_numbers(store: str, parent_id: str) -> list[int]:
    client = MlflowClient(store)
    experiment_id = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    return sorted(int(r.data.tags["optuna_trial_number"]) for r in runs)


def test_finish_waits_for_a_store_that_comes_back(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "_FINISH_POLL_S", 0.05)
    study = build_study(n_trials=4, name="comes-back")
    tracker = StudyTracker(store, "comes-back", {}, device="cpu", finish_wait_s=60.0)
    parent_id = tracker.start()
    real_create = tracker._client.create_run
    calls = {"n": 0}

    def restarting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 6:  # down for the search's last trials and the first finish attempts
            return _down()
        return real_create(*args, **kwargs)

    monkeypatch.setattr(tracker._client, "create_run", restarting)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for record in study.records:
            tracker.log_trial(record)
        assert tracker.pending  # queued while the store is down
        assert tracker.finish(study.records, study.summary)
    assert any("waiting up to 60 s" in str(w.message) for w in caught)
    assert tracker.pending == []
    assert _child_numbers(store, parent_id) == [0, 1, 2, 3]


def test_finish_gives_up_after_the_wait_and_keeps_the_queue(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "_FINISH_POLL_S", 0.05)
    study = build_study(n_trials=2, name="stays-down")
    tracker = StudyTracker(store, "stays-down", {}, device="cpu", finish_wait_s=0.3)
    tracker.start()
    monkeypatch.setattr(tracker._client, "create_run", _down)
    with pytest.warns(RuntimeWarning, match=r"2 trial\(s\) not logged"):
        assert not tracker.finish(study.records, study.summary)
    assert tracker.pending == [0, 1]  # a resumed search logs them from the Optuna storage


def test_a_refusal_is_not_waited_for(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    study = build_study(n_trials=2, name="refused")
    tracker = StudyTracker(store, "refused", {}, device="cpu", finish_wait_s=600.0)
    tracker.start()

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise MlflowException("no", error_code=INVALID_PARAMETER_VALUE)

    monkeypatch.setattr(tracker._client, "log_artifacts", refuse)
    with pytest.warns(RuntimeWarning, match="not logged"):
        assert not tracker.finish(study.records, study.summary)  # at once, not after 600 s


def test_a_lost_answer_to_create_run_does_not_duplicate_the_trial(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = build_study(n_trials=3, name="lost-answer")
    tracker = StudyTracker(store, "lost-answer", {}, device="cpu")
    parent_id = tracker.start()
    real_create = tracker._client.create_run

    def created_then_cut(*args: Any, **kwargs: Any) -> Any:
        real_create(*args, **kwargs)  # the store has the run ...
        return _down()  # ... but the connection drops before the answer arrives

    monkeypatch.setattr(tracker._client, "create_run", created_then_cut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not tracker.log_trial(study.records[0])
    monkeypatch.setattr(tracker._client, "create_run", real_create)
    assert tracker.finish(study.records, study.summary)
    assert _child_numbers(store, parent_id) == [0, 1, 2]  # trial 0 once, completed
    run = MlflowClient(store).get_run(tracker.child_run_id(0) or "")
    assert run.data.tags["fsnas.logged"] == "true"


def test_finish_wait_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FINISH_WAIT_ENV, "7")
    assert StudyTracker("sqlite:///x.db", "s", {}, device="cpu").finish_wait_s == 7.0
    monkeypatch.setenv(FINISH_WAIT_ENV, "soon")
    with pytest.raises(TrackingError, match=f"{FINISH_WAIT_ENV}: expected seconds, got 'soon'"):
        StudyTracker("sqlite:///x.db", "s", {}, device="cpu")
