"""A real ``mlflow server`` (SQLite backend, served artifacts): a study's run tree and resume."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from dashboards.mlflow_store import TrackingError, check_tracking_reachable
from dashboards.tracking import StudyTracker
from tests.dashboards import servers
from tests.dashboards.conftest import build_study

pytestmark = pytest.mark.slow

STUDY = "server-study"
PARENT_ARTIFACTS = (
    "pareto.html",
    "pareto.png",
    "hypervolume.html",
    "hypervolume.png",
    "trials.csv",
    "pareto.json",
    "best_spec.json",
)


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of an ``mlflow server`` on a free localhost port, shared by this module's tests."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    command = servers.mlflow_server_command(root, port)
    process = servers.start(command, url, root / "server.log")
    try:
        yield url
    finally:
        servers.stop(process)


def _children(client: MlflowClient, experiment_id: str, parent_id: str) -> list:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def test_search_logs_one_parent_and_one_child_per_trial(server_uri: str, tmp_path: Path) -> None:
    study = build_study(n_trials=12, name=STUDY)
    tracker = StudyTracker(server_uri, STUDY, study.summary.config, device="cpu")
    parent_id = tracker.start()
    for record in study.records:
        assert tracker.log_trial(record)
        tracker.maybe_refresh(study.records, study.summary)
    assert tracker.finish(study.records, study.summary)

    client = MlflowClient(server_uri)
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`fsnas.role` = 'parent'"
    )
    assert [p.info.run_id for p in parents] == [parent_id]
    parent = parents[0]
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # served by the server
    assert {"fsnas.version", "fsnas.git_commit", "device"} <= set(parent.data.tags)

    children = _children(client, experiment.experiment_id, parent_id)
    assert len(children) == 12
    for run in children:
        record = study.records[int(run.data.tags["optuna_trial_number"])]
        assert run.data.tags["status"] == record.status
        assert run.data.tags["on_pareto_front"] == str(record.on_pareto_front).lower()
        assert run.data.tags["ray_trial_id"] == record.ray_trial_id
        assert run.data.tags["device"] == "cpu"
        if record.costs:
            assert run.data.tags["vram_source"] == "estimated"

    local = Path(client.download_artifacts(parent_id, "", str(tmp_path)))
    for name in PARENT_ARTIFACTS:
        assert (local / name).stat().st_size > 0, name
    assert (local / "pareto.html").stat().st_size > 1_000_000  # plotly.js inlined


def test_resume_adds_no_duplicates(server_uri: str) -> None:
    # the same 12 trials (same numbers) replayed after a restart, plus 2 new ones
    study = build_study(n_trials=14, name=STUDY)
    tracker = StudyTracker(server_uri, STUDY, study.summary.config, device="cpu")
    parent_id = tracker.start()
    assert tracker.resumed
    for record in study.records:
        tracker.log_trial(record)
    assert tracker.finish(study.records, study.summary)

    client = MlflowClient(server_uri)
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`fsnas.role` = 'parent'"
    )
    assert [p.info.run_id for p in parents] == [parent_id]
    children = _children(client, experiment.experiment_id, parent_id)
    numbers = [int(r.data.tags["optuna_trial_number"]) for r in children]
    assert len(numbers) == len(set(numbers)) == 14
    fronts = {
        int(r.data.tags["optuna_trial_number"]): r.data.tags["on_pareto_front"] for r in children
    }
    assert fronts == {r.number: str(r.on_pareto_front).lower() for r in study.records}


def test_unreachable_server_fails_fast_before_training() -> None:
    uri = f"http://127.0.0.1:{servers.free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=f"{uri} is unreachable"):
        check_tracking_reachable(uri)
    with pytest.raises(TrackingError, match=r"--tracking-uri sqlite:///mlflow\.db"):
        StudyTracker(uri, "never", {}, device="cpu").start()
    assert time.monotonic() - start < 15.0
