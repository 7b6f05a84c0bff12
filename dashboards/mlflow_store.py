"""The connection to the MLflow store: where it is, whether it answers, how it is opened.

This module owns reaching a tracking store: resolving and checking the tracking URI
(``checked_tracking_uri``, ``check_tracking_reachable``), where a new experiment keeps its
artifacts, opening a client (with the SQLite set-up lock), lowering MLflow's HTTP retries, how
long to wait for a store that is down (``default_finish_wait_s``), and the provenance a run is
tagged with (fsnas version, git commit, device). What a run holds and a study's run tree live in
``dashboards.tracking``, which builds on this module (never the other way round). MLflow itself
is imported lazily, inside the functions that talk to the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from search_spaces.errors import FsnasError, env_seconds

DEFAULT_TRACKING_URI_FILE = "mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# MLflow retries an HTTP request up to 7 times with exponential back-off (minutes in all); a
# search must not stall that long per trial while a server is down, so the tracker lowers these
# unless the user set them.
_HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

# At the end of a study, wait this long for a store that is down (a server restarting) before
# leaving queued trials to a resumed run; FSNAS_MLFLOW_FINISH_WAIT_S overrides it.
FINISH_WAIT_ENV = "FSNAS_MLFLOW_FINISH_WAIT_S"
_FINISH_WAIT_S = 120.0


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


def checked_tracking_uri(value: str | None) -> str | None:
    """Return the tracking URI to log to, checked to answer; None when tracking is off.

    ``value`` is ``--tracking-uri`` / the config's ``tracking_uri``: "none" (any case) turns
    tracking off; empty or None falls back as in ``resolve_tracking_uri``.

    Raises:
        TrackingError: the store cannot be reached (checked before any work is done).
    """
    if value is not None and value.lower() == "none":
        return None
    uri = resolve_tracking_uri(value)
    check_tracking_reachable(uri)
    return uri


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


def lower_http_retries() -> None:
    """Set MLflow's HTTP retry/back-off/timeout variables to short values, unless already set."""
    for name, value in _HTTP_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def default_finish_wait_s() -> float:
    """Return the end-of-study wait for a store that is down: $FSNAS_MLFLOW_FINISH_WAIT_S or 120."""
    return env_seconds(FINISH_WAIT_ENV, _FINISH_WAIT_S, TrackingError)


# -- provenance -----------------------------------------------------------------------------------
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
