"""Two searches at once on one Optuna storage and one MLflow store; one driver SIGKILLed, resumed.

Study A and study B (different names) run at the same time against the same SQLite Optuna
storage, MLflow store and feature cache. A's driver is killed with SIGKILL mid-study and the same
command is run again. Afterwards each study has exactly its requested trials, each trial one
MLflow child run under its study's single parent run, and nothing of one study in the other.
(tests/nas/test_resume.py proves the Optuna side of a resume on its own.)
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nas.search import load_study
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import (
    FSNAS,
    finished_trials,
    mlflow_study_runs,
    search_process,
    wait_for,
)

TRIALS = {"conc-a": 10, "conc-b": 3}  # A: enough that some are unfinished at the kill


@pytest.mark.slow
def test_two_searches_share_stores_and_a_killed_one_resumes(tmp_path: Path) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    paths = {}
    for study, trials in TRIALS.items():
        config = tiny_config(
            tmp_path,
            study=study,
            tracking_uri=tracking_uri,
            train={"epochs": 2, "batch_size": 16},
            search={"trials": trials, "early_stopping": {"enabled": False}},
            resources={"max_concurrent": 1, "num_cpus": 1},
        )
        paths[study] = write_config(tmp_path / f"{study}.yaml", config)
    storage = config["storage"]  # the same file for both (tiny_config puts it in tmp_path)
    logs = {study: tmp_path / f"{study}.log" for study in TRIALS}

    with (
        search_process(paths["conc-a"], tmp_path, logs["conc-a"]) as a,
        search_process(paths["conc-b"], tmp_path, logs["conc-b"]) as b,
    ):
        wait_for(
            lambda: len(finished_trials(storage, "conc-a")) >= 2,
            "two trials of study A finished",
            300,
            a,
            logs["conc-a"],
        )
        os.killpg(a.pid, signal.SIGKILL)  # the driver and its local Ray, mid-study
        a.wait(timeout=30)
        b.wait(timeout=400)
        assert b.returncode == 0, logs["conc-b"].read_text()[-3000:]
    kept = {t.number: t.user_attrs["fsnas_record"] for t in finished_trials(storage, "conc-a")}
    assert 2 <= len(kept) < TRIALS["conc-a"]

    again = subprocess.run(
        [*FSNAS, "search", "--config", str(paths["conc-a"])],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming: {len(kept)} finished trial(s) kept" in again.stdout

    for study, trials in TRIALS.items():
        outcome = load_study(study, storage)
        numbers = [r.number for r in outcome.records]
        assert len(numbers) == len(set(numbers)) == trials, (study, numbers)
        assert outcome.summary.config["study"] == study  # each study kept its own config
        parents, children = mlflow_study_runs(tracking_uri, study)
        assert len(parents) == 1, study
        child_numbers = [int(r.data.tags["optuna_trial_number"]) for r in children]
        # one child per trial: none lost in the kill, none logged twice by the resume
        assert sorted(child_numbers) == sorted(numbers), (study, child_numbers, numbers)
        for run in children:
            assert run.data.tags["fsnas.study"] == study
            assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            assert run.data.tags.get("fsnas.logged") == "true"
    by_number = {r.number: r for r in load_study("conc-a", storage).records}
    for number, record in kept.items():  # the trials finished before the kill are unchanged
        assert by_number[number].to_dict()["objectives"] == record["objectives"]


def test_two_drivers_creating_a_new_storage_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the loser of the race to create a fresh SQLite file's tables sees "table already exists"
    import optuna
    import sqlalchemy.exc

    from nas.study_storage import open_storage

    real = optuna.storages.RDBStorage
    calls = {"n": 0}

    def racing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            real(*args, **kwargs)  # the other driver's tables ...
            raise sqlalchemy.exc.OperationalError(
                "CREATE TABLE studies", {}, Exception("table studies already exists")
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert calls["n"] == 2 and storage.get_all_studies() == []
