"""Helpers of the end-to-end reliability tests: searches as subprocesses, what the stores hold."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna

from nas.study import STATUS_ATTR

FSNAS = [sys.executable, "-m", "nas.cli"]


def finished_trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    """Return the study's trials that carry an fsnas outcome ([] before the study exists)."""
    try:
        loaded = optuna.load_study(study_name=study, storage=storage)
    except Exception:  # not created yet, or the driver holds the write lock this instant
        return []
    return [t for t in loaded.get_trials(deepcopy=False) if STATUS_ATTR in t.user_attrs]


@contextlib.contextmanager
def search_process(
    config_path: Path, cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``fsnas search --config`` in its own session; kill what is left of it on exit."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [*FSNAS, "search", "--config", str(config_path)],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        # the driver's local Ray processes share its session
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float,
    alive: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``condition`` every 0.5 s; fail naming ``what`` on timeout or if ``alive`` exits."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if alive is not None and alive.poll() is not None:
            log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise AssertionError(f"search exited ({alive.returncode}) before {what}:\n{log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout_s:.0f} s")
        time.sleep(0.5)


def mlflow_study_runs(tracking_uri: str, study: str) -> tuple[list[Any], list[Any]]:
    """Return (parent runs, child runs) of a study's MLflow experiment (empty if none yet)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return [], []
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fsnas.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("fsnas.role") == "trial"]
    return parents, children
