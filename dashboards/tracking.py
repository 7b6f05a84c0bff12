"""MLflow tracking of studies: one parent run per study, one nested child run per trial.

This module owns ``StudyTracker``: the run tree of a study (parent run, child run per trial),
the queue of trials not yet stored, retries and the end-of-study wait. What a run holds (tags,
a trial's params/metrics, ``flatten``, ``mlflow_key``, batch limits, ``write_run_contents``,
``log_single_run``) is ``dashboards.run_contents``; reaching the store is
``dashboards.mlflow_store``. Everything is logged from the search driver through an explicit
``MlflowClient`` (no global "active run"), so trial workers need no MLflow access. A tracking
failure never stops a search: the trial is kept and logged again later (backfill), and a
warning names the reason once.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from dashboards.artifacts import write_study_artifacts
from dashboards.mlflow_store import (
    FINISH_WAIT_ENV,
    TrackingError,
    artifact_location,
    check_tracking_reachable,
    default_finish_wait_s,
    describe_device,
    fsnas_version,
    git_commit,
    lower_http_retries,
    open_client,
)
from dashboards.records import CHECKPOINT_KEY, StudySummary, TrialRecord
from dashboards.run_contents import (
    EXPERIMENT_TAGS,
    RUN_STATUS,
    TAG_DEVICE,
    TAG_GIT_COMMIT,
    TAG_KIND,
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_VERSION,
    finite,
    flatten,
    log_metric_batches,
    log_params,
    mlflow_key,
    run_tags,
    trial_tags,
    write_run_contents,
)

StudyKind = Literal["search", "ablation", "train", "confirm"]

# Set last when a child run has all its params and metrics; a child without it (the server
# went down half-way) is completed on the next attempt instead of being trusted.
TAG_LOGGED = "fsnas.logged"
TAG_WEIGHTS = "fsnas.weights"  # the artifact path of a child's kept weights, once logged
WEIGHTS_ARTIFACT_DIR = "weights"
_PARENT_RUN_ID_TAG = "mlflow.parentRunId"  # MLflow's own key: makes the UI show a tree
_RUN_NAME_TAG = "mlflow.runName"  # MLflow keeps a run's name as this tag too

_RETRY_AFTER_S = 30.0  # after a failure, queue trials for this long before trying the server again
_FINISH_POLL_S = 5.0  # while waiting at the end of a study for a store that is down


# -- the study tracker ----------------------------------------------------------------------------
class StudyTracker:
    """Logs one study to MLflow: a parent run, a nested child run per trial, plot artifacts.

    Typical use from the search driver::

        tracker = StudyTracker(uri, "fsdd-vram", config, kind="search")
        tracker.start()                      # raises TrackingError before any training
        for record in finished_trials:
            tracker.log_trial(record)
            tracker.maybe_refresh(records, summary)
        tracker.finish(records, summary, status="FINISHED")

    ``start`` reuses the parent run of a study of the same name, and ``log_trial`` updates the
    child of an already-logged trial number instead of adding another, so a resumed search
    never duplicates runs.
    """

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        config: Mapping[str, Any],
        kind: StudyKind = "search",
        refresh_every: int = 5,
        device: str | None = None,
        finish_wait_s: float | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.finish_wait_s = default_finish_wait_s() if finish_wait_s is None else finish_wait_s
        self.study_name = study_name
        self.config = dict(config)
        self.kind = kind
        self.refresh_every = max(1, refresh_every)
        self.device = device if device is not None else describe_device()
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.resumed = False
        self._client: Any = None
        self._children: dict[int, str] = {}  # trial number -> run id
        self._child_tags: dict[int, dict[str, str]] = {}  # last tags known to be logged
        self._pending: dict[int, TrialRecord] = {}  # trials not (fully) logged yet
        # run name and extra tags a caller gave for a trial's child, written with every attempt
        self._child_extras: dict[int, tuple[str | None, dict[str, str]]] = {}
        self._logged_since_refresh = 0
        self._refresh_pending = False
        self._retry_at = 0.0
        self._warned = False
        self._outage = False  # the last failure was the store not answering (not a refusal)
        self.rejected: list[int] = []  # trial numbers the store refused (bad data, not outage)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> str:
        """Create or reuse the study's parent run; return its run id.

        Raises:
            TrackingError: the store is unreachable or refuses the experiment or run.
        """
        check_tracking_reachable(self.tracking_uri)
        if self.tracking_uri.startswith(("http://", "https://")):
            lower_http_retries()
        from mlflow.exceptions import MlflowException

        self._client = open_client(self.tracking_uri)
        try:
            self.experiment_id = self._experiment_id()
            parent = self._find_parent()
            if parent is None:
                run = self._client.create_run(
                    self.experiment_id, run_name=self.study_name, tags=self._parent_tags()
                )
                self.parent_run_id = run.info.run_id
                self._log_params(self.parent_run_id, flatten(self.config), {})
            else:
                self.resumed = True
                self.parent_run_id = parent.info.run_id
                self._client.update_run(self.parent_run_id, status="RUNNING")
                self._client.log_batch(
                    self.parent_run_id,
                    tags=run_tags({**self._parent_tags(), "fsnas.resumed": "true"}),
                )
                self._log_params(self.parent_run_id, flatten(self.config), parent.data.params)
                self._load_children()
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow tracking store {self.tracking_uri}: {exc.message}"
            ) from None
        assert self.parent_run_id is not None
        return self.parent_run_id

    def log_trial(
        self,
        record: TrialRecord,
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> bool:
        """Log (or update) the child run of one finished trial; return True if it is stored.

        ``run_name`` names the child (default ``trial-<number>``) and ``tags`` are added to the
        trial's own tags (which win on a clash); both are kept for the trial number, so a retry,
        a backfill or a later re-tag writes them too, and a later call without them keeps them.
        On a tracking failure the trial is queued and retried on later calls and at ``finish``;
        a warning is issued once. The search never sees the exception.
        """
        if run_name is not None or tags:
            name, extra = self._child_extras.get(record.number, (None, {}))
            extra = {**extra, **{mlflow_key(k): str(v) for k, v in (tags or {}).items()}}
            self._child_extras[record.number] = (run_name if run_name is not None else name, extra)
        self._pending[record.number] = record
        self._logged_since_refresh += 1
        return self._flush()

    def update_front(self, records: Iterable[TrialRecord]) -> bool:
        """Re-tag ``on_pareto_front`` (and status) of every trial; return True if all stored.

        A finished trial in ``records`` that was never logged is logged now (backfill).
        """
        for record in records:
            if record.number not in self._pending and record.number not in self.rejected:
                known = self._child_tags.get(record.number, {})
                if any(known.get(k) != v for k, v in trial_tags(record).items()):
                    self._pending[record.number] = record
        return self._flush()

    def maybe_refresh(self, records: Sequence[TrialRecord], summary: StudySummary) -> bool:
        """Refresh the parent's artifacts if ``refresh_every`` trials were logged since the last."""
        if self._logged_since_refresh >= self.refresh_every or self._refresh_pending:
            return self.refresh(records, summary)
        return False

    def refresh(self, records: Sequence[TrialRecord], summary: StudySummary) -> bool:
        """Re-tag the front and write every parent artifact and study metric; True on success."""
        self.update_front(records)
        self._logged_since_refresh = 0
        if not self._ready() or time.monotonic() < self._retry_at:
            self._refresh_pending = True
            return False
        with tempfile.TemporaryDirectory(prefix="fsnas-artifacts-") as tmp:
            try:
                write_study_artifacts(Path(tmp), records, summary)
            except Exception as exc:  # a plot must not end hours of search; say what broke
                warnings.warn(
                    f"study {self.study_name!r}: could not write the parent-run artifacts "
                    f"({type(exc).__name__}: {exc})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            try:
                self._client.log_artifacts(self.parent_run_id, tmp)
                self._log_study_metrics(records, summary)
            except Exception as exc:  # any store/network failure; a refresh is retried later
                self._failed(exc)
                self._refresh_pending = True
                return False
        self._refresh_pending = False
        return True

    def log_parent(self, metrics: Mapping[str, float], tags: Mapping[str, str]) -> bool:
        """Log ``metrics`` (at step 0) and ``tags`` on the parent run; True if stored.

        Keys are cleaned with ``mlflow_key``; non-finite metric values are dropped. Metrics go in
        batches of MLflow's limit, then the tags in one call. A store failure is a warning (once,
        like every tracking failure) and returns False; it never raises.
        """
        if self._client is None or self.parent_run_id is None:  # not started
            return False
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        entities = [
            Metric(mlflow_key(k), float(v), now_ms, 0) for k, v in metrics.items() if finite(v)
        ]
        try:
            log_metric_batches(self._client, self.parent_run_id, entities)
            if tags:
                self._client.log_batch(self.parent_run_id, tags=run_tags(tags))
        except Exception as exc:
            self._failed(exc)
            return False
        return True

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> bool:
        """Attach extra files (e.g. ablation plots) to the parent run; True if stored."""
        if not self._ready():
            return False
        try:
            for path in paths:
                self._client.log_artifact(self.parent_run_id, str(path), artifact_path)
        except Exception as exc:
            self._failed(exc)
            return False
        return True

    def log_weights(self, records: Iterable[TrialRecord]) -> int:
        """Attach each record's kept weights file to its child run (once); return how many.

        Records without a kept file (``costs["checkpoint"]``), or whose file is gone, are
        skipped; so are trials with no child run yet. A store failure is a warning: the
        files stay on disk and ``fsnas export`` still finds them.
        """
        if not self._ready():
            return 0
        logged = 0
        for record in records:
            path = Path(str(record.costs.get(CHECKPOINT_KEY) or ""))
            run_id = self._children.get(record.number)
            if run_id is None or not path.name or not path.is_file():
                continue
            target = f"{WEIGHTS_ARTIFACT_DIR}/{path.name}"
            known = self._child_tags.setdefault(record.number, {})
            if known.get(TAG_WEIGHTS) == target:
                continue
            try:
                self._client.log_artifact(run_id, str(path), WEIGHTS_ARTIFACT_DIR)
                self._client.set_tag(run_id, TAG_WEIGHTS, target)
            except Exception as exc:
                self._failed(exc)
                return logged
            known[TAG_WEIGHTS] = target
            logged += 1
        return logged

    def finish(
        self,
        records: Sequence[TrialRecord],
        summary: StudySummary,
        status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED",
    ) -> bool:
        """Backfill queued trials, refresh artifacts and close the parent run; True if all stored.

        A store that does not answer (a server restarting) is retried for up to
        ``finish_wait_s`` seconds. When it is still down, a warning says how many trials could
        not be logged; they remain in ``pending`` so a caller may try ``finish`` again, and a
        resumed search logs them from the Optuna storage.
        """
        for record in records:
            if record.number not in self._children and record.number not in self.rejected:
                self._pending.setdefault(record.number, record)
        deadline = time.monotonic() + self.finish_wait_s
        waiting = False
        while True:
            self._retry_at = 0.0
            self._outage = False
            ok = self.refresh(records, summary) and not self._pending
            if ok and self.parent_run_id is not None:
                try:
                    self._client.set_terminated(self.parent_run_id, status=status)
                except Exception as exc:
                    self._failed(exc)
                    ok = False
            if ok or not self._outage or time.monotonic() >= deadline:
                break
            if not waiting:
                waiting = True
                warnings.warn(
                    f"MLflow tracking store {self.tracking_uri} is not answering; waiting up to "
                    f"{self.finish_wait_s:g} s ({FINISH_WAIT_ENV}) to log "
                    f"{len(self._pending)} queued trial(s)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            time.sleep(max(0.0, min(_FINISH_POLL_S, deadline - time.monotonic())))
        if not ok:
            warnings.warn(
                f"MLflow tracking store {self.tracking_uri}: study {self.study_name!r} finished "
                f"with {len(self._pending)} trial(s) not logged; the Optuna storage still has "
                "them and a resumed run logs them",
                RuntimeWarning,
                stacklevel=2,
            )
        return ok

    @property
    def pending(self) -> list[int]:
        """Return the trial numbers that are not yet stored in MLflow."""
        return sorted(self._pending)

    def child_run_id(self, number: int) -> str | None:
        """Return the run id of a logged trial, or None."""
        return self._children.get(number)

    # -- internals --------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self._client is not None and self.parent_run_id is not None

    def _flush(self) -> bool:
        if not self._ready():
            raise TrackingError(f"StudyTracker({self.study_name!r}): call start() before logging")
        if time.monotonic() < self._retry_at:
            return False
        for number in sorted(self._pending):
            try:
                self._write_trial(self._pending[number])
            except Exception as exc:
                if _is_rejection(exc):
                    # the store answered but refuses this trial's data: retrying cannot help,
                    # and keeping it queued would block every later trial
                    warnings.warn(
                        f"MLflow tracking store {self.tracking_uri} rejected trial {number} of "
                        f"study {self.study_name!r}: {str(exc)[:300]}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    self.rejected.append(number)
                else:  # an outage: keep the trial; a later call retries it (backfill)
                    self._failed(exc)
                    return False
            del self._pending[number]
        return True

    def _failed(self, exc: Exception) -> None:
        self._retry_at = time.monotonic() + _RETRY_AFTER_S
        # waiting helps a store that is down, never one that refuses the request
        self._outage = not _is_rejection(exc)
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"MLflow tracking store {self.tracking_uri} failed ({type(exc).__name__}: "
                f"{str(exc)[:300]}); the search goes on and queued trials are logged when it "
                "answers again",
                RuntimeWarning,
                stacklevel=3,
            )

    def _write_trial(self, record: TrialRecord) -> None:
        run_name, extra = self._child_extras.get(record.number, (None, {}))
        tags = {**extra, **trial_tags(record)}
        run_id = self._children.get(record.number)
        if run_id is None and self._warned:
            # after an outage, a create_run may have reached the store while its answer did
            # not reach us: adopt that run instead of creating a second one for this trial
            run_id = self._find_child(record.number)
        known = self._child_tags.get(record.number, {})
        if run_id is not None and known.get(TAG_LOGGED) == "true":
            changed = {k: v for k, v in tags.items() if known.get(k) != v}
            if changed:
                self._client.log_batch(run_id, tags=run_tags(changed))
                known = self._child_tags[record.number] = {**known, **changed}
            if run_name is not None and known.get(_RUN_NAME_TAG) != run_name:
                self._client.update_run(run_id, name=run_name)
                self._child_tags[record.number] = {**known, _RUN_NAME_TAG: run_name}
            return
        if run_id is None:
            name = run_name or f"trial-{record.number}"
            run = self._client.create_run(
                self.experiment_id,
                run_name=name,
                tags={
                    _PARENT_RUN_ID_TAG: self.parent_run_id,
                    TAG_STUDY: self.study_name,
                    TAG_ROLE: "trial",
                    TAG_KIND: self.kind,
                    **tags,
                },
            )
            run_id = run.info.run_id
            self._children[record.number] = run_id
            existing_params: Mapping[str, str] = {}
        else:  # created before but not completed: fill in what is missing
            existing = self._client.get_run(run_id)
            existing_params = existing.data.params
            name = existing.info.run_name
            if run_name is not None and name != run_name:
                self._client.update_run(run_id, name=run_name)
                name = run_name
        write_run_contents(
            self._client, run_id, record, existing_params, {**tags, TAG_LOGGED: "true"}
        )
        self._client.set_terminated(run_id, status=RUN_STATUS.get(record.status, "FAILED"))
        self._child_tags[record.number] = {**tags, TAG_LOGGED: "true", _RUN_NAME_TAG: name}

    def _log_study_metrics(self, records: Sequence[TrialRecord], summary: StudySummary) -> None:
        from mlflow.entities import Metric

        assert self.parent_run_id is not None  # refresh() logs only once started

        now_ms = int(time.time() * 1000)
        n_complete = sum(r.status == "complete" for r in records)
        metrics = [
            Metric("n_trials", float(len(records)), now_ms, n_complete),
            Metric("n_complete", float(n_complete), now_ms, n_complete),
            Metric(
                "n_pareto_front", float(sum(r.on_pareto_front for r in records)), now_ms, n_complete
            ),
        ]
        metrics += [
            Metric("hypervolume", hv, now_ms, n)
            for n, hv in summary.hypervolume_history
            if finite(hv)
        ]
        log_metric_batches(self._client, self.parent_run_id, metrics)
        if summary.knee_number is not None:
            self._client.set_tag(self.parent_run_id, "knee_trial_number", str(summary.knee_number))

    def _experiment_id(self) -> str:
        experiment = self._client.get_experiment_by_name(self.study_name)
        if experiment is None:
            return str(
                self._client.create_experiment(
                    self.study_name,
                    artifact_location=artifact_location(self.tracking_uri, self.study_name),
                    tags=EXPERIMENT_TAGS,
                )
            )
        if experiment.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.study_name!r} in {self.tracking_uri} is deleted; "
                "restore it (`mlflow experiments restore`) or choose another study name"
            )
        return str(experiment.experiment_id)

    def _find_parent(self) -> Any:
        runs = self._client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{TAG_STUDY}` = '{_quote(self.study_name)}' and tags.`{TAG_ROLE}` = 'parent'"
            ),
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0] if runs else None

    def _load_children(self) -> None:
        token = None
        while True:
            page = self._client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{_PARENT_RUN_ID_TAG}` = '{self.parent_run_id}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                number = run.data.tags.get(TAG_TRIAL_NUMBER)
                if number is not None and number.lstrip("-").isdigit():
                    # the first child of a number wins; later duplicates cannot be created
                    self._children.setdefault(int(number), run.info.run_id)
                    self._child_tags.setdefault(int(number), dict(run.data.tags))
            token = page.token
            if not token:
                break

    def _find_child(self, number: int) -> str | None:
        """Return the run id of trial ``number``'s child run in the store (remembered), or None."""
        runs = self._client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{_PARENT_RUN_ID_TAG}` = '{self.parent_run_id}' and "
                f"tags.`{TAG_TRIAL_NUMBER}` = '{number}'"
            ),
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if not runs:
            return None
        self._children[number] = runs[0].info.run_id
        self._child_tags[number] = dict(runs[0].data.tags)
        return str(runs[0].info.run_id)

    def _parent_tags(self) -> dict[str, str]:
        return {
            TAG_STUDY: self.study_name,
            TAG_ROLE: "parent",
            TAG_KIND: self.kind,
            TAG_VERSION: fsnas_version(),
            TAG_GIT_COMMIT: git_commit(),
            TAG_DEVICE: self.device,
        }

    def _log_params(
        self, run_id: str, params: Mapping[str, str], existing: Mapping[str, str]
    ) -> None:
        log_params(self._client, run_id, params, existing)


# MLflow error codes that mean "the server answered and refuses this request".
_REJECTION_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "RESOURCE_ALREADY_EXISTS"}
)


def _is_rejection(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _REJECTION_CODES


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
