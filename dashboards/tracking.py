"""MLflow tracking of studies: one parent run per study, one nested child run per trial.

Everything is logged from the search driver through an explicit ``MlflowClient`` (no global
"active run"), so trial workers need no MLflow access. A tracking failure never stops a search:
the trial is kept and logged again later (backfill), and a warning names the reason once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from dashboards.artifacts import write_study_artifacts
from dashboards.records import CHECKPOINT_KEY, StudySummary, TrialRecord
from search_spaces.errors import FsnasError

DEFAULT_TRACKING_URI_FILE = "mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

StudyKind = Literal["search", "ablation", "train"]

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
# Set last when a child run has all its params and metrics; a child without it (the server
# went down half-way) is completed on the next attempt instead of being trusted.
TAG_LOGGED = "fsnas.logged"
TAG_INITIAL_SPEC = "fsnas.initial_spec"  # a warm-start trial: the search.initial_specs entry
TAG_WEIGHTS = "fsnas.weights"  # the artifact path of a child's kept weights, once logged
WEIGHTS_ARTIFACT_DIR = "weights"
_PARENT_RUN_ID_TAG = "mlflow.parentRunId"  # MLflow's own key: makes the UI show a tree
# MLflow 3's UI opens experiments in its GenAI view unless told they hold model training.
_EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

# MLflow's limits (mlflow.utils.validation) on one log_batch call and on one value.
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAM_VALUE_CHARS = 6000
_MAX_TAG_VALUE_CHARS = 8000
_MAX_KEY_CHARS = 250
_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")

# MLflow retries an HTTP request up to 7 times with exponential back-off (minutes in all); a
# search must not stall that long per trial while a server is down, so the tracker lowers these
# unless the user set them.
_HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# After a failure, queue trials for this long before trying the server again.
_RETRY_AFTER_S = 30.0
# At the end of a study, wait this long for a store that is down (a server restarting) before
# leaving queued trials to a resumed run; FSNAS_MLFLOW_FINISH_WAIT_S overrides it.
FINISH_WAIT_ENV = "FSNAS_MLFLOW_FINISH_WAIT_S"
_FINISH_WAIT_S = 120.0
_FINISH_POLL_S = 5.0

# Status of a child run in the MLflow UI for each trial status.
_RUN_STATUS = {
    "complete": "FINISHED",
    "infeasible": "FINISHED",
    "pruned": "KILLED",
}


class TrackingError(FsnasError):
    """The MLflow tracking store cannot be used; the message names the URI and what to do."""


# -- tracking URI ------------------------------------------------------------------------------
def resolve_tracking_uri(cli_value: str | None) -> str:
    """Return the tracking URI to use: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<cwd>/mlflow.db`` (absolute, so runs started elsewhere find the same store)."""
    if cli_value:
        return cli_value
    env_value = os.environ.get(TRACKING_URI_ENV, "").strip()
    if env_value:
        return env_value
    return f"sqlite:///{(Path.cwd() / DEFAULT_TRACKING_URI_FILE).resolve()}"


def check_tracking_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Return when the tracking store at ``uri`` can be used; raise ``TrackingError`` otherwise.

    For ``http(s)`` servers this is one request to ``/health`` (falling back to the REST API for
    servers behind a proxy without it), bounded by ``timeout_s`` and without MLflow's retry
    loop. For ``sqlite`` stores the folder of the database must exist and be writable.

    Raises:
        TrackingError: naming the URI, what failed, and how to start a server or fall back.
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri.rstrip("/"), timeout_s)
    elif uri_is_sqlite(uri):
        folder = _sqlite_path(uri).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(
                f"MLflow tracking store {uri}: folder {folder} does not exist or is not writable"
            )


def _check_http(base: str, timeout_s: float) -> None:
    hint = (
        "; start it with `mlflow server --backend-store-uri sqlite:///mlflow.db --host "
        "127.0.0.1 --port <port>` or pass --tracking-uri sqlite:///mlflow.db"
    )
    deadline = time.monotonic() + timeout_s
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        remaining = max(0.5, deadline - time.monotonic())
        try:
            with urllib.request.urlopen(base + path, timeout=remaining) as response:
                if 200 <= response.status < 300:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and path == "/health":
                continue  # a proxy that only forwards the API; ask the API itself
            raise TrackingError(
                f"MLflow tracking server {base} answered HTTP {exc.code} to {path}{hint}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {base} is unreachable: {reason}{hint}"
            ) from None
    raise TrackingError(
        f"MLflow tracking server {base} does not answer like an MLflow server{hint}"
    )


def artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """Return where a new experiment keeps its artifacts: beside the database for ``sqlite``.

    MLflow's own default is ``./mlruns`` in whatever folder the process started in, which
    scatters artifacts when runs start from different folders; a server decides for itself
    (``None``).
    """
    if not uri_is_sqlite(tracking_uri):
        return None
    folder = (
        _sqlite_path(tracking_uri).parent
        / "mlruns"
        / re.sub(r"[^A-Za-z0-9_.-]", "_", experiment_name)
    )
    return folder.resolve().as_uri()


def uri_is_sqlite(uri: str) -> bool:
    """Return True for ``sqlite:///`` tracking URIs (a local database file)."""
    return uri.startswith("sqlite:///")


def _sqlite_path(uri: str) -> Path:
    return Path(uri[len("sqlite:///") :] or DEFAULT_TRACKING_URI_FILE)


def _finish_wait_s() -> float:
    """Return the end-of-study wait for a store that is down: $FSNAS_MLFLOW_FINISH_WAIT_S or 120."""
    text = os.environ.get(FINISH_WAIT_ENV, "").strip()
    if not text:
        return _FINISH_WAIT_S
    try:
        value = float(text)
    except ValueError:
        raise TrackingError(f"${FINISH_WAIT_ENV}: expected seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise TrackingError(f"${FINISH_WAIT_ENV}: expected seconds >= 0, got {text!r}")
    return value


@contextlib.contextmanager
def _store_setup_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store (``<db>.lock``) while it is set up.

    MLflow creates or migrates a store's tables on first use; two processes doing that at once
    (two searches started together on one store) break each other's migration. Servers and
    platforms without ``fcntl`` go unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    if not uri_is_sqlite(uri) or fcntl is None:
        yield
        return
    db_path = _sqlite_path(uri).resolve()
    with open(db_path.with_name(db_path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_client(uri: str) -> Any:
    """Return an ``MlflowClient`` whose store is set up (tables created or migrated).

    Raises:
        TrackingError: the store cannot be opened; names the URI and the cause.
    """
    from mlflow import MlflowClient

    try:
        with _store_setup_lock(uri):
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # a SQLite store sets itself up here
    except TrackingError:
        raise
    except Exception as exc:  # MLflow, SQLAlchemy and alembic errors alike: say which store
        message = getattr(exc, "message", None) or str(exc)
        raise TrackingError(
            f"MLflow tracking store {uri}: cannot open it ({type(exc).__name__}: "
            f"{message.splitlines()[0][:300] if message else ''})"
        ) from None
    return client


def _lower_http_retries() -> None:
    for name, value in _HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


# -- flattening and provenance -------------------------------------------------------------------
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


def _key(name: str) -> str:
    return _KEY_BAD_CHARS.sub("_", name)[:_MAX_KEY_CHARS]


def fsnas_version() -> str:
    """Return the installed fsnas version, or ``"unknown"`` when it is not installed."""
    try:
        return metadata.version("fsnas")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit(folder: Path | None = None) -> str:
    """Return the git commit of the fsnas source tree (``+dirty`` if edited), or ``"unknown"``."""
    where = folder or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def describe_device() -> str:
    """Return the name of the device the driver sees: the first CUDA GPU's name, or ``cpu``."""
    try:
        import torch
    except ImportError:
        return "unknown"
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return "cpu"


# -- what one trial becomes in MLflow ------------------------------------------------------------
def trial_params(record: TrialRecord) -> dict[str, str]:
    """Return the params of a trial's run: the flattened spec (``spec.*``) and train config."""
    params = flatten(record.spec, "spec.")
    params.update(flatten(record.train_config, "train."))
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
            if key != "epoch" and _finite(value):
                metrics.append(Metric(_key(key), float(value), timestamp_ms, step))
    final: dict[str, float] = {}
    for source in (record.metrics, record.objectives, record.costs):
        for key, value in source.items():
            if _finite(value):
                final[_key(key)] = float(value)
    final["trial_seconds"] = float(record.seconds)
    metrics.extend(Metric(k, v, timestamp_ms + 1, last_step) for k, v in final.items())
    return metrics


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
        self.finish_wait_s = _finish_wait_s() if finish_wait_s is None else finish_wait_s
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
            _lower_http_retries()
        from mlflow.exceptions import MlflowException

        self._client = open_client(self.tracking_uri)
        try:
            self.experiment_id = self._experiment_id()
            parent = self._find_parent()
            if parent is None:
                run = self._client.create_run(
                    self.experiment_id,
                    run_name=self.study_name,
                    tags=self._parent_tags(),
                )
                self.parent_run_id = run.info.run_id
                self._log_params(self.parent_run_id, flatten(self.config), {})
            else:
                self.resumed = True
                self.parent_run_id = parent.info.run_id
                self._client.update_run(self.parent_run_id, status="RUNNING")
                self._client.log_batch(
                    self.parent_run_id,
                    tags=_run_tags({**self._parent_tags(), "fsnas.resumed": "true"}),
                )
                self._log_params(self.parent_run_id, flatten(self.config), parent.data.params)
                self._load_children()
        except MlflowException as exc:
            raise TrackingError(
                f"MLflow tracking store {self.tracking_uri}: {exc.message}"
            ) from None
        assert self.parent_run_id is not None
        return self.parent_run_id

    def log_trial(self, record: TrialRecord) -> bool:
        """Log (or update) the child run of one finished trial; return True if it is stored.

        On a tracking failure the trial is queued and retried on later calls and at ``finish``;
        a warning is issued once. The search never sees the exception.
        """
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
        tags = trial_tags(record)
        run_id = self._children.get(record.number)
        if run_id is None and self._warned:
            # after an outage, a create_run may have reached the store while its answer did
            # not reach us: adopt that run instead of creating a second one for this trial
            run_id = self._find_child(record.number)
        known = self._child_tags.get(record.number, {})
        if run_id is not None and known.get(TAG_LOGGED) == "true":
            changed = {k: v for k, v in tags.items() if known.get(k) != v}
            if changed:
                self._client.log_batch(run_id, tags=_run_tags(changed))
                self._child_tags[record.number] = {**known, **changed}
            return
        if run_id is None:
            run = self._client.create_run(
                self.experiment_id,
                run_name=f"trial-{record.number}",
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
            existing_params = self._client.get_run(run_id).data.params
        write_run_contents(
            self._client, run_id, record, existing_params, {**tags, TAG_LOGGED: "true"}
        )
        self._client.set_terminated(run_id, status=_RUN_STATUS.get(record.status, "FAILED"))
        self._child_tags[record.number] = {**tags, TAG_LOGGED: "true"}

    def _log_study_metrics(self, records: Sequence[TrialRecord], summary: StudySummary) -> None:
        from mlflow.entities import Metric

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
            if _finite(hv)
        ]
        for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
            self._client.log_batch(self.parent_run_id, metrics=chunk)
        if summary.knee_number is not None:
            self._client.set_tag(self.parent_run_id, "knee_trial_number", str(summary.knee_number))

    def _experiment_id(self) -> str:
        experiment = self._client.get_experiment_by_name(self.study_name)
        if experiment is None:
            return str(
                self._client.create_experiment(
                    self.study_name,
                    artifact_location=artifact_location(self.tracking_uri, self.study_name),
                    tags=_EXPERIMENT_TAGS,
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
        _log_params(self._client, run_id, params, existing)


# MLflow error codes that mean "the server answered and refuses this request".
_REJECTION_CODES = frozenset(
    {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE", "RESOURCE_ALREADY_EXISTS"}
)


def _is_rejection(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in _REJECTION_CODES


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _run_tags(tags: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(_key(k), str(v)[:_MAX_TAG_VALUE_CHARS]) for k, v in tags.items()]


def _param_entities(
    params: Mapping[str, str], existing: Mapping[str, str]
) -> tuple[list[Any], dict[str, str]]:
    """Return the params not yet on a run, and ``param_changed.<key>`` tags for changed ones
    (a resumed study with another config: MLflow params cannot be overwritten)."""
    from mlflow.entities import Param

    new = []
    changed: dict[str, str] = {}
    for key, value in params.items():
        k, v = _key(key), value[:_MAX_PARAM_VALUE_CHARS]
        if k not in existing:
            new.append(Param(k, v))
        elif existing[k] != v:
            changed[f"param_changed.{k}"] = v
    return new, changed


def _log_params(
    client: Any, run_id: str, params: Mapping[str, str], existing: Mapping[str, str]
) -> None:
    new, changed = _param_entities(params, existing)
    _log_batches(client, run_id, new, [], _run_tags(changed))


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
    _log_batches(client, run_id, params, metrics, _run_tags({**changed, **tags}))


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
                    tags=_EXPERIMENT_TAGS,
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
        client.set_terminated(run_id, status=_RUN_STATUS.get(record.status, "FAILED"))
    except MlflowException as exc:
        raise TrackingError(f"MLflow tracking store {tracking_uri}: {exc.message}") from None
    return run_id
