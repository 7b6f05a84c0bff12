"""StudyTracker and the MLflow store helpers on a local SQLite store: run tree, tags, params,
metrics, resume, outages, child names and extra tags, parent metrics, the model registry."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from dashboards import mlflow_store
from dashboards.mlflow_store import TrackingError, check_tracking_reachable, resolve_tracking_uri
from dashboards.records import CHECKPOINT_KEY, TrialRecord
from dashboards.registry import register_model
from dashboards.run_contents import flatten, log_single_run, mlflow_key
from dashboards.tracking import TAG_WEIGHTS, StudyTracker
from tests.dashboards.conftest import build_study


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite tracking store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _children(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Any]:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def test_uri_precedence_cli_then_env_then_cwd_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5001"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_store_in_a_missing_folder_is_reported(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}"
    with pytest.raises(TrackingError, match="nope"):
        check_tracking_reachable(uri)


def test_flatten_indexes_lists_of_objects() -> None:
    flat = flatten({"body": [{"height": 3, "pool": [2, 2]}], "head": {"dense": [64]}, "x": None})
    assert flat == {
        "body.0.height": "3",
        "body.0.pool": "[2, 2]",
        "head.dense": "[64]",
        "x": "None",
    }


def test_parent_and_one_child_per_trial_with_tags_params_metrics(store: str) -> None:
    study = build_study(name="tree")
    tracker = StudyTracker(store, "tree", study.summary.config, device="cpu", refresh_every=5)
    parent_id = tracker.start()
    for record in study.records:
        assert tracker.log_trial(record)
        tracker.maybe_refresh(study.records, study.summary)
    assert tracker.finish(study.records, study.summary)

    client = MlflowClient(store)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fsnas.role"] == "parent"
    assert parent.data.tags["fsnas.version"] not in ("", None)
    assert parent.data.tags["fsnas.git_commit"]
    assert parent.data.tags["device"] == "cpu"
    assert parent.data.params["study.n_trials"] == "12"
    assert parent.data.metrics["hypervolume"] == pytest.approx(
        study.summary.hypervolume_history[-1][1]
    )
    artifacts = {a.path: a.file_size or 0 for a in client.list_artifacts(parent_id)}
    for name in ("pareto.html", "pareto.png", "hypervolume.html", "trials.csv", "pareto.json"):
        assert artifacts[name] > 0, name
    assert (
        Path(
            client.get_experiment(parent.info.experiment_id).artifact_location.removeprefix(
                "file://"
            )
        ).parent.parent
        == Path(store.removeprefix("sqlite:///")).parent
    )

    children = _children(client, parent.info.experiment_id, parent_id)
    assert len(children) == 12
    by_number = {int(r.data.tags["optuna_trial_number"]): r for r in children}
    for record in study.records:
        run = by_number[record.number]
        tags = run.data.tags
        assert tags["status"] == record.status
        assert tags["on_pareto_front"] == str(record.on_pareto_front).lower()
        assert tags["ray_trial_id"] == record.ray_trial_id
        assert tags["device"] == "cpu"
        assert run.data.params["spec.frontend.0.height"] == str(
            record.spec["frontend"][0]["height"]
        )
        assert run.data.params["train.optimizer"] == "adamw"
        expected_status = {"complete": "FINISHED", "pruned": "KILLED"}.get(record.status, "FAILED")
        assert run.info.status == expected_status
        if record.status != "failed":
            assert tags["vram_source"] == "estimated"
            assert run.data.metrics["train_vram_mb"] == pytest.approx(record.costs["train_vram_mb"])
            assert run.data.metrics["val_accuracy"] == pytest.approx(record.metrics["val_accuracy"])
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
            assert sorted(steps) == [int(h["epoch"]) for h in record.history]
        else:
            assert tags["reason"] == "worker died"


def test_resume_reuses_parent_and_never_duplicates(store: str) -> None:
    study = build_study(n_trials=10, name="resume")
    first = StudyTracker(store, "resume", study.summary.config, device="cpu")
    parent_id = first.start()
    for record in study.records[:8]:
        first.log_trial(record)
    # the process is killed here: no finish(), parent stays RUNNING

    more = build_study(n_trials=10, name="resume")  # same trials, same numbers
    moved = next(r for r in more.records if r.on_pareto_front)
    moved.on_pareto_front = False  # the front changed after the resume
    second = StudyTracker(store, "resume", more.summary.config, device="cpu")
    assert second.start() == parent_id and second.resumed
    for record in more.records:  # replays the 8 logged trials, then 2 new ones
        second.log_trial(record)
    assert second.finish(more.records, more.summary)

    client = MlflowClient(store)
    experiment_id = client.get_run(parent_id).info.experiment_id
    parents = client.search_runs([experiment_id], filter_string="tags.`fsnas.role` = 'parent'")
    assert len(parents) == 1
    children = _children(client, experiment_id, parent_id)
    numbers = [int(r.data.tags["optuna_trial_number"]) for r in children]
    assert sorted(numbers) == list(range(10))
    retagged = next(r for r in children if r.data.tags["optuna_trial_number"] == str(moved.number))
    assert retagged.data.tags["on_pareto_front"] == "false"


def test_outage_keeps_trials_and_backfills(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    study = build_study(n_trials=6, name="outage")
    tracker = StudyTracker(store, "outage", {}, device="cpu")
    parent_id = tracker.start()
    tracker.log_trial(study.records[0])

    real_create = tracker._client.create_run

    def down(*args: Any, **kwargs: Any) -> Any:
        raise MlflowException("API request to http://x failed: Connection refused")

    real_upload = tracker._client.log_artifacts
    monkeypatch.setattr(tracker._client, "create_run", down)
    monkeypatch.setattr(tracker._client, "log_artifacts", down)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not tracker.log_trial(study.records[1])
        assert not tracker.log_trial(study.records[2])
        assert tracker.pending == [1, 2]
        # a refresh queues every trial it was shown that is not stored yet
        assert not tracker.refresh(study.records, study.summary)
        assert tracker.pending == [1, 2, 3, 4, 5]
    outage_warnings = [w for w in caught if "Connection refused" in str(w.message)]
    assert len(outage_warnings) == 1  # warned once, not per trial

    monkeypatch.setattr(tracker._client, "create_run", real_create)
    monkeypatch.setattr(tracker._client, "log_artifacts", real_upload)
    assert tracker.finish(study.records, study.summary)  # backfills 1, 2 and the unlogged 3-5
    assert tracker.pending == []
    client = MlflowClient(store)
    assert "pareto.html" in {a.path for a in client.list_artifacts(parent_id)}
    experiment_id = client.get_run(parent_id).info.experiment_id
    assert len(_children(client, experiment_id, parent_id)) == 6


def test_rejected_trial_does_not_block_later_ones(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = build_study(n_trials=3, name="rejected")
    tracker = StudyTracker(store, "rejected", {}, device="cpu")
    tracker.start()
    real_log_batch = tracker._client.log_batch

    def refuse_trial_1(run_id: str, **kwargs: Any) -> Any:
        if run_id == tracker.child_run_id(1) and kwargs.get("params"):
            raise MlflowException("bad param", error_code=INVALID_PARAMETER_VALUE)
        return real_log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker._client, "log_batch", refuse_trial_1)
    with pytest.warns(RuntimeWarning, match="rejected trial 1"):
        for record in study.records:
            tracker.log_trial(record)
    assert tracker.rejected == [1]
    assert tracker.pending == []
    assert tracker.child_run_id(2) is not None


def test_log_before_start_is_an_error(store: str) -> None:
    tracker = StudyTracker(store, "nostart", {}, device="cpu")
    with pytest.raises(TrackingError, match="start"):
        tracker.log_trial(TrialRecord(number=0, status="complete"))


def test_single_training_run(store: str, tmp_path: Path) -> None:
    record = build_study(n_trials=1).records[0]
    extra = tmp_path / "model_card.md"
    extra.write_text("# card\n")
    run_id = log_single_run(
        store, "fsnas-train", record, config={"epochs": 3}, artifacts=[extra], device="cpu"
    )
    run = MlflowClient(store).get_run(run_id)
    assert run.data.tags["fsnas.role"] == "train"
    assert run.data.tags["status"] == "complete"
    assert run.data.params["config.epochs"] == "3"
    assert run.data.params["spec.head.time_pooling"] == "max"
    assert run.data.metrics["val_accuracy"] == pytest.approx(record.metrics["val_accuracy"])
    names = {a.path for a in MlflowClient(store).list_artifacts(run_id)}
    assert {"model_card.md", "spec.json"} <= names


def test_http_retry_settings_are_lowered_only_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    mlflow_store.lower_http_retries()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"


def test_front_weights_are_attached_to_their_child_runs_once(store: str, tmp_path: Path) -> None:
    study = build_study(n_trials=4, name="weights")
    front = [r for r in study.records if r.on_pareto_front]
    assert front
    for record in front:
        path = tmp_path / f"trial-{record.number:05d}.safetensors"
        path.write_bytes(b"weights of trial %d" % record.number)
        record.costs[CHECKPOINT_KEY] = str(path)
    gone = next(r for r in study.records if not r.on_pareto_front)
    gone.costs[CHECKPOINT_KEY] = str(tmp_path / "deleted.safetensors")  # tidied away: skipped

    tracker = StudyTracker(store, "weights", study.summary.config, device="cpu")
    tracker.start()
    assert tracker.finish(study.records, study.summary)
    assert tracker.log_weights(study.records) == len(front)
    assert tracker.log_weights(study.records) == 0  # already there: not uploaded again

    client = MlflowClient(store)
    for record in front:
        run_id = tracker.child_run_id(record.number)
        assert run_id is not None
        name = f"trial-{record.number:05d}.safetensors"
        assert client.get_run(run_id).data.tags[TAG_WEIGHTS] == f"weights/{name}"
        local = client.download_artifacts(run_id, f"weights/{name}", str(tmp_path / "dl"))
        assert Path(local).read_bytes() == b"weights of trial %d" % record.number
    gone_run = tracker.child_run_id(gone.number)
    assert gone_run is not None and TAG_WEIGHTS not in client.get_run(gone_run).data.tags


def _down(*args: Any, **kwargs: Any) -> Any:
    raise MlflowException("API request to http://x failed: Connection refused")


def test_mlflow_key_replaces_refused_characters_and_cuts_to_the_limit() -> None:
    assert mlflow_key("base.val_accuracy_mean") == "base.val_accuracy_mean"
    assert mlflow_key("a-b c/d:e.f_g") == "a-b c/d:e.f_g"  # every allowed character kept
    assert mlflow_key("channels=(4,8)·seed#1") == "channels__4_8__seed_1"
    assert mlflow_key("x" * 300) == "x" * 250


def test_child_runs_get_the_given_name_and_extra_tags(store: str) -> None:
    study = build_study(n_trials=3, name="named")
    tracker = StudyTracker(store, "named", {}, device="cpu")
    tracker.start()
    first, second, third = study.records
    assert tracker.log_trial(first, run_name="base · seed 0", tags={"ablation.variant": "base"})
    assert tracker.log_trial(second, tags={"ablation seed#": "1"})  # key cleaned like the rest
    assert tracker.log_trial(third)  # no name, no tags: as before
    assert tracker.finish(study.records, study.summary)

    client = MlflowClient(store)
    runs = {n: client.get_run(tracker.child_run_id(n) or "") for n in (0, 1, 2)}
    assert runs[0].info.run_name == "base · seed 0"
    assert runs[0].data.tags["ablation.variant"] == "base"
    assert runs[0].data.tags["status"] == first.status  # the trial's own tags are still there
    assert runs[1].info.run_name == "trial-1"
    assert runs[1].data.tags["ablation seed_"] == "1"
    assert runs[2].info.run_name == "trial-2"
    assert not any(k.startswith("ablation") for k in runs[2].data.tags)

    # a logged child is renamed and re-tagged in place; a call without them keeps them
    assert tracker.log_trial(first, run_name="renamed", tags={"ablation.variant": "other"})
    assert tracker.log_trial(first)
    again = client.get_run(tracker.child_run_id(0) or "")
    assert again.info.run_name == "renamed"
    assert again.data.tags["ablation.variant"] == "other"
    experiment_id = again.info.experiment_id
    assert len(_children(client, experiment_id, tracker.parent_run_id or "")) == 3


def test_name_and_tags_survive_an_outage_backfill(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = build_study(n_trials=3, name="named-outage")
    tracker = StudyTracker(store, "named-outage", {}, device="cpu")
    parent_id = tracker.start()
    real_create = tracker._client.create_run
    monkeypatch.setattr(tracker._client, "create_run", _down)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in study.records:
            name = f"variant · seed {record.number}"
            assert not tracker.log_trial(record, run_name=name, tags={"ablation.seed": "7"})
    assert tracker.pending == [0, 1, 2]

    monkeypatch.setattr(tracker._client, "create_run", real_create)
    assert tracker.finish(study.records, study.summary)  # the backfill writes them
    client = MlflowClient(store)
    children = _children(client, client.get_run(parent_id).info.experiment_id, parent_id)
    assert sorted(r.info.run_name for r in children) == [f"variant · seed {n}" for n in (0, 1, 2)]
    assert all(r.data.tags["ablation.seed"] == "7" for r in children)
    assert all(r.data.tags["fsnas.logged"] == "true" for r in children)


def test_a_half_created_child_gets_its_name_and_tags(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the pattern of tests/reliability: create_run reaches the store, its answer does not
    study = build_study(n_trials=1, name="named-lost-answer")
    tracker = StudyTracker(store, "named-lost-answer", {}, device="cpu")
    tracker.start()
    real_create = tracker._client.create_run

    def created_then_cut(*args: Any, **kwargs: Any) -> Any:
        kwargs["run_name"] = "left by the first attempt"
        real_create(*args, **kwargs)
        return _down()

    monkeypatch.setattr(tracker._client, "create_run", created_then_cut)
    record = study.records[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not tracker.log_trial(record, run_name="base · seed 0", tags={"ablation.x": "1"})
    monkeypatch.setattr(tracker._client, "create_run", real_create)
    assert tracker.finish(study.records, study.summary)
    run = MlflowClient(store).get_run(tracker.child_run_id(0) or "")
    assert run.info.run_name == "base · seed 0"
    assert run.data.tags["ablation.x"] == "1"
    assert run.data.tags["fsnas.logged"] == "true"


def test_parent_metrics_and_tags(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = StudyTracker(store, "parent-summary", {}, device="cpu")
    assert not tracker.log_parent({"a": 1.0}, {"b": "c"})  # before start: nothing to log to
    parent_id = tracker.start()
    metrics = {f"variant{i}.val_accuracy_mean": i / 1000 for i in range(1500)}  # > one batch
    metrics["base.p_value"] = math.nan
    metrics["base.diff"] = math.inf
    metrics["odd(name)"] = 2.5
    real_log_batch = tracker._client.log_batch
    batch_sizes: list[int] = []

    def counting(run_id: str, **kwargs: Any) -> Any:
        batch_sizes.append(len(kwargs.get("metrics", ())))
        return real_log_batch(run_id, **kwargs)

    monkeypatch.setattr(tracker._client, "log_batch", counting)
    assert tracker.log_parent(metrics, {"ablation.base": "base", "ablation.metric": "acc"})
    assert max(batch_sizes) <= 1000 and sum(batch_sizes) == 1501  # MLflow's per-call limit

    run = MlflowClient(store).get_run(parent_id)
    logged = run.data.metrics
    assert logged["variant1499.val_accuracy_mean"] == pytest.approx(1.499)
    assert sum(k.startswith("variant") for k in logged) == 1500
    assert "base.p_value" not in logged and "base.diff" not in logged  # non-finite: dropped
    assert logged["odd_name_"] == 2.5
    assert run.data.tags["ablation.base"] == "base"
    assert run.data.tags["ablation.metric"] == "acc"


def test_parent_metrics_on_a_store_that_is_down_warn_and_return_false(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = StudyTracker(store, "parent-down", {}, device="cpu")
    tracker.start()
    monkeypatch.setattr(tracker._client, "log_batch", _down)
    with pytest.warns(RuntimeWarning, match="Connection refused"):
        assert not tracker.log_parent({"a": 1.0}, {"b": "c"})


def test_register_model_versions_an_alias_and_finite_metrics(store: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "spec.json").write_text("{}")
    metrics = {"test_accuracy": 0.9, "test_loss": math.nan}
    first = register_model(
        store, bundle, name="reg-model", experiment="reg", alias="champion", metrics=metrics
    )
    assert first == "reg-model v1 (alias champion)"
    second = register_model(
        store,
        bundle,
        name="reg-model",
        experiment="reg",
        alias="candidate",
        tags={"fsnas.trial": "3"},
    )
    assert second == "reg-model v2 (alias candidate)"

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("reg-model", "champion")
    assert str(version.version) == "1"
    run = client.get_run(str(version.run_id))
    assert run.info.run_name == "export reg-model"
    assert run.data.tags["fsnas.role"] == "export" and run.data.tags["fsnas.study"] == "reg"
    assert run.data.metrics == {"test_accuracy": 0.9}  # NaN dropped
    assert {a.path for a in client.list_artifacts(run.info.run_id, "bundle")} == {
        "bundle/spec.json"
    }
    candidate = client.get_model_version_by_alias("reg-model", "candidate")
    assert client.get_run(str(candidate.run_id)).data.tags["fsnas.trial"] == "3"
