"""SIGKILL the search driver while it refreshes the parent run's artifacts: no trial is lost.

The refresh runs on the driver's tracking thread (``nas.search_progress.TrackingThread``) while
trials go on, and once more at the end (``StudyTracker.finish``). A real search (tiny synthetic
data, a local SQLite MLflow store) is killed three times, each time the moment a refresh starts
writing its artifacts (its ``fsnas-artifacts-*`` folder appears in the driver's temp folder):
twice mid-search (a refresh after every trial, ``$FSNAS_MLFLOW_REFRESH_S=0``) and once in the
end-of-study refresh (mid-search refreshes off). After each kill MLflow holds no trial twice and
none Optuna lacks; the same command run once more then leaves Optuna with the requested trials
and MLflow with exactly one child run per trial under one parent.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from nas.search import load_study
from nas.search_progress import REFRESH_ENV
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import (
    FSNAS,
    finished_trials,
    mlflow_study_runs,
    search_process,
)

STUDY = "killrefresh"
TRIALS = 5


def _refresh_folders(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("fsnas-artifacts-*")}


def _kill_at_refresh(
    config_path: Path, cwd: Path, log: Path, driver_tmp: Path, refresh_s: str
) -> bool:
    """Run the search; SIGKILL it (and its Ray) when a refresh starts. True if it was killed."""
    before = _refresh_folders(driver_tmp)
    # the driver's temp files (the refresh's folder) in driver_tmp; Ray's session folder where
    # it always is (its socket paths must stay short)
    env = {"TMPDIR": str(driver_tmp), "RAY_TMPDIR": tempfile.gettempdir(), REFRESH_ENV: refresh_s}
    deadline = time.monotonic() + 400
    with search_process(config_path, cwd, log, env) as process:
        while process.poll() is None:
            if _refresh_folders(driver_tmp) - before:
                os.killpg(process.pid, signal.SIGKILL)  # mid-refresh: the driver and its Ray
                process.wait(timeout=30)
                return True
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.02)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]
    return False


def _check_stores(storage: str, tracking_uri: str) -> tuple[list[int], list[int]]:
    """Return (Optuna trial numbers, MLflow child numbers) after asserting nothing doubled."""
    numbers = [t.number for t in finished_trials(storage, STUDY)]
    parents, children = mlflow_study_runs(tracking_uri, STUDY)
    child_numbers = sorted(int(r.data.tags["optuna_trial_number"]) for r in children)
    assert len(parents) == 1
    assert len(child_numbers) == len(set(child_numbers)), child_numbers  # none logged twice
    assert set(child_numbers) <= set(numbers), (child_numbers, numbers)  # none Optuna lacks
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    return sorted(numbers), child_numbers


@pytest.mark.slow
def test_a_search_killed_mid_refresh_loses_no_trial(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(
        tmp_path,
        study=STUDY,
        tracking_uri=tracking_uri,
        train={"epochs": 2, "batch_size": 16},
        search={"trials": TRIALS, "early_stopping": {"enabled": False}},
        resources={"max_concurrent": 1, "num_cpus": 1},
    )
    path = write_config(tmp_path / f"{STUDY}.yaml", config)
    storage = config["storage"]
    driver_tmp = tmp_path / "driver-tmp"
    driver_tmp.mkdir()

    # 1 and 2: a refresh after every trial, killed at the first refresh of each run
    assert _kill_at_refresh(path, tmp_path, tmp_path / "run1.log", driver_tmp, "0")
    numbers, children = _check_stores(storage, tracking_uri)
    assert 1 <= len(numbers) < TRIALS  # killed mid-search
    _kill_at_refresh(path, tmp_path, tmp_path / "run2.log", driver_tmp, "0")
    numbers, children = _check_stores(storage, tracking_uri)
    # 3: no refresh mid-search; killed in the end-of-study refresh (every trial told Optuna)
    if _kill_at_refresh(path, tmp_path, tmp_path / "run3.log", driver_tmp, "1000000"):
        numbers, children = _check_stores(storage, tracking_uri)
        assert len(numbers) == TRIALS

    again = subprocess.run(
        [*FSNAS, "search", "--config", str(path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    numbers, children = _check_stores(storage, tracking_uri)
    outcome = load_study(STUDY, storage)
    assert len(outcome.records) == TRIALS == len(numbers)
    assert children == numbers == sorted(r.number for r in outcome.records)  # one child each
    parents, runs = mlflow_study_runs(tracking_uri, STUDY)
    assert parents[0].info.status == "FINISHED"
    for run in runs:
        assert run.data.tags.get("fsnas.logged") == "true"  # params and metrics complete
    # the last refresh (the finish of the rerun) wrote the whole study
    artifacts = Path(parents[0].info.artifact_uri.removeprefix("file://"))
    with (artifacts / "trials.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == TRIALS
