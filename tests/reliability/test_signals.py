"""SIGTERM / SIGINT to a running search: it stops cleanly and the same command resumes it.

A real search (tiny synthetic data, a local SQLite MLflow store) gets SIGTERM (to the driver
only, as Kubernetes and ``kill PID`` send it) once its first trial is in the Optuna storage. It
must start no new trial, exit 143 with fsnas's own resume command, no native stack dump
(``*** SIGTERM received ***``) and no ``Tuner.restore`` hint; the same command run again must
end with exactly the requested trials, none twice, in Optuna and in MLflow.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from nas.interrupt import Interrupt, SearchInterrupted
from nas.search import load_study
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import (
    FSNAS,
    finished_trials,
    mlflow_study_runs,
    search_process,
    wait_for,
)

STUDY = "sigterm"
TRIALS = 10  # enough that a SIGTERM after the first still finds some not started (trials take ~1 s)


def test_the_first_signal_asks_to_stop_and_the_second_to_stop_now() -> None:
    import io

    out = io.StringIO()
    interrupt = Interrupt(out)
    assert not interrupt.requested
    interrupt.handle(signal.SIGTERM)
    assert interrupt.requested and not interrupt.immediate
    interrupt.handle(signal.SIGINT)
    assert interrupt.immediate and interrupt.signum == signal.SIGTERM  # the first one's code
    assert "starting no new trial" in out.getvalue() and "stopping now" in out.getvalue()
    assert SearchInterrupted(signal.SIGTERM, "x").exit_code == 143
    assert SearchInterrupted(signal.SIGINT, "x").exit_code == 130


@pytest.mark.slow
def test_sigterm_then_the_same_command_ends_with_exactly_the_requested_trials(
    tmp_path: Path,
) -> None:
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
    log = tmp_path / "run1.log"
    with search_process(path, tmp_path, log) as process:
        wait_for(
            lambda: len(finished_trials(storage, STUDY)) >= 1,
            "one trial finished",
            400,
            process,
            log,
        )
        os.kill(process.pid, signal.SIGTERM)  # the driver only
        rc = process.wait(timeout=300)
    text = log.read_text(errors="replace")
    assert rc == 143, text[-3000:]
    assert "SIGTERM received" in text and "resume with the same command: fsnas search" in text
    assert "*** SIGTERM received" not in text and "Tuner.restore" not in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    first = [t.number for t in finished_trials(storage, STUDY)]
    assert 1 <= len(first) < TRIALS, first

    again = subprocess.run(
        [*FSNAS, "search", "--config", str(path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    numbers = sorted(t.number for t in finished_trials(storage, STUDY))
    outcome = load_study(STUDY, storage)
    assert len(outcome.records) == TRIALS == len(numbers) == len(set(numbers))
    assert set(first) <= set(numbers)  # the trials finished before SIGTERM were kept
    parents, children = mlflow_study_runs(tracking_uri, STUDY)
    child_numbers = sorted(int(r.data.tags["optuna_trial_number"]) for r in children)
    assert len(parents) == 1
    assert child_numbers == numbers  # exactly one child run per trial
