"""What one MLflow run holds: tag keys, a trial's params, tags and metrics, batch limits.

The run contents shared by every run fsnas writes: ``flatten`` (nested data as MLflow params),
``mlflow_key`` (a name as a valid key), a trial's ``trial_params`` / ``trial_tags`` /
``trial_metrics``, and writing them within MLflow's batch and size limits
(``write_run_contents``, ``log_params``, ``log_metric_batches``, ``run_tags``).
``log_single_run`` writes a whole ``fsnas train`` run with them. The run tree of a study
(parent run, child runs, outage queue) is ``dashboards.tracking.StudyTracker``; reaching the
store is ``dashboards.mlflow_store``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dashboards.mlflow_store import (
    TrackingError,
    artifact_location,
    check_tracking_reachable,
    describe_device,
    fsnas_version,
    git_commit,
    open_client,
)
from dashboards.records import TrialRecord

# Tag keys. The trial tags are the names users filter on in the MLflow UI, so they are short.
TAG_STUDY = "fsnas.study"
TAG_ROLE = "fsnas.role"  # "parent" | "trial" | "train"
TAG_KIND = "fsnas.kind"
TAG_VERSION = "fsnas.version"
TAG_GIT_COMMIT = "fsnas.git_commit"
TAG_DEVICE = "device"
TAG_STATUS = "status"
TAG_ON_FRONT = "on_pareto_front"
TAG_VRAM_SOURCE = "vram_source"
TAG_RAY_TRIAL_ID = "ray_trial_id"
TAG_TRIAL_NUMBER = "optuna_trial_number"
TAG_REASON = "reason"
TAG_SPEC_SUMMARY = "spec_summary"
TAG_INITIAL_SPEC = "fsnas.initial_spec"  # a warm-start trial: the search.initial_specs entry
# the units of every metric a trial logs (MLflow metrics carry no unit of their own)
TAG_UNITS = "fsnas.units"
UNITS_NOTE = (
    "*_mb: MiB (2**20 bytes); train_vram_mb: peak allocated, train_reserved_mb: peak reserved "
    "(docs/vram.md); *_ms: milliseconds; *_seconds/*_s: seconds; gflops: forward GFLOPs per clip"
)
# MLflow 3's UI opens experiments in its GenAI view unless told they hold model training.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# Status of a child run in the MLflow UI for each trial status.
RUN_STATUS = {"complete": "FINISHED", "infeasible": "FINISHED", "pruned": "KILLED"}

# MLflow's limits (mlflow.utils.validation) on one log_batch call and on one value.
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_VALUE_CHARS = 6000
_MAX_TAG_VALUE_CHARS = 8000
_MAX_KEY_CHARS = 250
_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


# -- what one trial's run holds -------------------------------------------------------------------
def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Return ``data`` as ``{"a.b.0.c": "value"}`` strings, the shape MLflow params take.

    Lists of objects are indexed (``body.0.height``); lists of plain values stay one JSON value.
    """
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{i}."))
                else:
                    out[f"{name}.{i}"] = _param_text(item)
            if not value:
                out[name] = "[]"
        else:
            out[name] = _param_text(value)
    return out


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return str(value)


def mlflow_key(name: str) -> str:
    """Return ``name`` as an MLflow metric/param/tag key: characters MLflow refuses become
    ``_`` (``[^A-Za-z0-9_\\-. /:]``), cut to MLflow's 250-character key limit."""
    return _KEY_BAD_CHARS.sub("_", name)[:_MAX_KEY_CHARS]


def trial_params(record: TrialRecord) -> dict[str, str]:
    """Return the params of a trial's run: the flattened spec (``spec.*``), train config and
    the design's receptive field (``receptive_*``, facts of the spec and input, when known)."""
    from search_spaces.receptive import RECEPTIVE_KEYS

    params = flatten(record.spec, "spec.")
    params.update(flatten(record.train_config, "train."))
    params.update({k: str(record.costs[k]) for k in RECEPTIVE_KEYS if k in record.costs})
    return params


def trial_tags(record: TrialRecord) -> dict[str, str]:
    """Return the tags of a trial's run: status, front flag, VRAM source, device, ids."""
    tags = {
        TAG_STATUS: record.status,
        TAG_ON_FRONT: str(record.on_pareto_front).lower(),
        TAG_VRAM_SOURCE: str(record.costs.get("vram_source", "")),
        TAG_DEVICE: record.device,
        TAG_RAY_TRIAL_ID: record.ray_trial_id,
        TAG_TRIAL_NUMBER: str(record.number),
        TAG_SPEC_SUMMARY: record.spec_summary,
        TAG_REASON: record.reason,
        TAG_INITIAL_SPEC: record.initial_spec,
        TAG_UNITS: UNITS_NOTE,
    }
    # an empty tag says nothing and clutters the UI's tag list
    return {k: v for k, v in tags.items() if v}


def trial_metrics(record: TrialRecord, timestamp_ms: int) -> list[Any]:
    """Return MLflow ``Metric``s of a trial: each epoch at ``step=epoch``, then final values.

    Final metrics, objectives and numeric costs are logged at the last epoch's step with a later
    timestamp, so MLflow shows them as the run's value (a restored best epoch can differ from
    the last one). Non-finite values are skipped: MLflow stores NaN but charts cannot use it.
    """
    from mlflow.entities import Metric

    metrics: list[Metric] = []
    last_step = 0
    for i, epoch in enumerate(record.history):
        step = int(epoch.get("epoch", i + 1))
        last_step = max(last_step, step)
        for key, value in epoch.items():
            if key != "epoch" and finite(value):
                metrics.append(Metric(mlflow_key(key), float(value), timestamp_ms, step))
    final: dict[str, float] = {}
    for source in (record.metrics, record.objectives, record.costs):
        for key, value in source.items():
            if finite(value):
                final[mlflow_key(key)] = float(value)
    final["trial_seconds"] = float(record.seconds)
    metrics.extend(Metric(k, v, timestamp_ms + 1, last_step) for k, v in final.items())
    return metrics


def finite(value: Any) -> bool:
    """Return True for an int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_metric_batches(client: Any, run_id: str, metrics: Sequence[Any]) -> None:
    """Log MLflow ``Metric``s on a run in as few ``log_batch`` calls as MLflow allows."""
    for start in range(0, len(metrics), _MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _MAX_METRICS_PER_BATCH])


def run_tags(tags: Mapping[str, str]) -> list[Any]:
    """Return MLflow ``RunTag``s of ``tags``: keys cleaned (``mlflow_key``), values cut to size."""
    from mlflow.entities import RunTag

    return [RunTag(mlflow_key(k), str(v)[:_MAX_TAG_VALUE_CHARS]) for k, v in tags.items()]


def _param_entities(
    params: Mapping[str, str], existing: Mapping[str, str]
) -> tuple[list[Any], dict[str, str]]:
    """Return the params not yet on a run, and ``param_changed.<key>`` tags for changed ones
    (a resumed study with another config: MLflow params cannot be overwritten)."""
    from mlflow.entities import Param

    new = []
    changed: dict[str, str] = {}
    for key, value in params.items():
        k, v = mlflow_key(key), value[:_MAX_PARAM_VALUE_CHARS]
        if k not in existing:
            new.append(Param(k, v))
        elif existing[k] != v:
            changed[f"param_changed.{k}"] = v
    return new, changed


def log_params(
    client: Any, run_id: str, params: Mapping[str, str], existing: Mapping[str, str]
) -> None:
    """Log the ``params`` a run does not have yet; changed ones become ``param_changed.*`` tags."""
    new, changed = _param_entities(params, existing)
    _log_batches(client, run_id, new, [], run_tags(changed))


def write_run_contents(
    client: Any,
    run_id: str,
    record: TrialRecord,
    existing_params: Mapping[str, str],
    tags: Mapping[str, str],
) -> None:
    """Log a trial's ``spec.json``, then its params, metrics and ``tags`` in as few calls as
    MLflow's batch limits allow (one for a typical trial); ``tags`` land in the last call."""
    if record.spec:
        client.log_dict(run_id, record.spec, "spec.json")
    params, changed = _param_entities(trial_params(record), existing_params)
    metrics = trial_metrics(record, int(time.time() * 1000))
    _log_batches(client, run_id, params, metrics, run_tags({**changed, **tags}))


def _log_batches(
    client: Any, run_id: str, params: Sequence[Any], metrics: Sequence[Any], tags: Sequence[Any]
) -> None:
    # each call: <= 100 params, <= 100 tags, <= 1000 entities in all
    metrics_per_call = _MAX_METRICS_PER_BATCH - 2 * _MAX_PARAMS_TAGS_PER_BATCH
    calls = max(
        1,
        math.ceil(len(params) / _MAX_PARAMS_TAGS_PER_BATCH),
        math.ceil(len(metrics) / metrics_per_call),
        math.ceil(len(tags) / _MAX_PARAMS_TAGS_PER_BATCH),
    )
    p, m, t = _MAX_PARAMS_TAGS_PER_BATCH, metrics_per_call, _MAX_PARAMS_TAGS_PER_BATCH
    for i in range(calls):
        # tags fill the last calls, so a marker tag arrives only with the data before it
        j = i - (calls - math.ceil(len(tags) / t)) if tags else -1
        client.log_batch(
            run_id,
            params=params[i * p : (i + 1) * p],
            metrics=metrics[i * m : (i + 1) * m],
            tags=tags[j * t : (j + 1) * t] if j >= 0 else [],
        )


def log_single_run(
    tracking_uri: str,
    experiment_name: str,
    record: TrialRecord,
    config: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    artifacts: Iterable[Path] = (),
    device: str | None = None,
) -> str:
    """Log one ``fsnas train`` run with a trial's params, metrics and tags; return its id.

    Raises:
        TrackingError: the store is unreachable or refuses the run.
    """
    check_tracking_reachable(tracking_uri)
    from mlflow.exceptions import MlflowException

    client = open_client(tracking_uri)
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            str(
                client.create_experiment(
                    experiment_name,
                    artifact_location=artifact_location(tracking_uri, experiment_name),
                    tags=EXPERIMENT_TAGS,
                )
            )
            if experiment is None
            else str(experiment.experiment_id)
        )
        tags = {
            TAG_STUDY: experiment_name,
            TAG_ROLE: "train",
            TAG_KIND: "train",
            TAG_VERSION: fsnas_version(),
            TAG_GIT_COMMIT: git_commit(),
            **trial_tags(record),
        }
        if device is not None or not record.device:
            tags[TAG_DEVICE] = device if device is not None else describe_device()
        run = client.create_run(
            experiment_id, run_name=run_name or record.spec_summary[:200] or None, tags=tags
        )
        run_id = str(run.info.run_id)
        params = flatten(config or {}, "config.")
        params.update(trial_params(record))
        if record.spec:
            client.log_dict(run_id, record.spec, "spec.json")
        new_params, _ = _param_entities(params, {})
        _log_batches(client, run_id, new_params, trial_metrics(record, int(time.time() * 1000)), [])
        for path in artifacts:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status=RUN_STATUS.get(record.status, "FAILED"))
    except MlflowException as exc:
        raise TrackingError(f"MLflow tracking store {tracking_uri}: {exc.message}") from None
    return run_id
