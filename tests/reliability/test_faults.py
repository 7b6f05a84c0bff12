"""Faults: a full cache disk, a worker killed mid-trial, the driver killed, MLflow restarted.

Each fault ends either in a clear error (nothing half-written left behind) or in a search that
completes its requested trials with every result in the Optuna storage and in MLflow.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashboards.tracking import FINISH_WAIT_ENV
from nas.cli import main
from nas.config import from_dict
from nas.search import load_study, run_search
from nas.study import weights_folder
from tests.dashboards import servers
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import finished_trials, mlflow_study_runs, search_process, wait_for
from trainers import features as features_module
from trainers.errors import DataError
from trainers.features import load_features
from trainers.featureset import FeatureConfig

SMALL = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.5, n_fft=128, hop_length=64, n_mels=16)
DATA = "synthetic:clips_per_class=4,seed=3"


# -- no space left on the cache disk -----------------------------------------------------------
def _entries(cache: Path) -> list[str]:
    """Return everything in the cache folder, hidden build folders included."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_full_cache_disk_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    real_save = np.save

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(features_module.np, "save", full_disk)
    with pytest.raises(DataError) as info:
        load_features(DATA, SMALL, cache_dir=cache)
    message = str(info.value)
    assert f"feature cache {cache.resolve()}" in message
    assert "No space left on device" in message and "data.cache_dir" in message
    assert _entries(cache) == []  # no partial entry that a later run could trust

    monkeypatch.setattr(features_module.np, "save", real_save)
    built = load_features(DATA, SMALL, cache_dir=cache)
    assert not built.from_cache and len(built.train) > 0
    assert load_features(DATA, SMALL, cache_dir=cache).from_cache


@contextlib.contextmanager
def _tiny_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``folder`` (root only); skip where mounting is not allowed."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the ENOSPC case "
            "is covered by test_full_cache_disk_is_a_clear_error_and_leaves_nothing"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mount needs root")
def test_real_full_disk_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _tiny_tmpfs(tmp_path / "cache", "48k") as cache:
        # 40 clips x 16 mels x 126 frames x 4 bytes = 323 kB: more than the disk holds
        argv = ["data", "inspect", "--data", DATA, "--cache-dir", str(cache)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert f"feature cache {cache.resolve()}" in err and "No space left" in err
        assert _entries(cache) == []


# -- a trial worker killed with SIGKILL --------------------------------------------------------
# Attempts (in order, one trial at a time) whose worker kills itself: trial 0 dies once and its
# retry trains; trial 1 dies on both of its attempts and is recorded failed.
KILLED_ATTEMPTS = (1, 3, 4)


def _killing_trainable(markers: Path) -> Any:
    """Return a Ray trainable that SIGKILLs its own worker on the attempts in KILLED_ATTEMPTS."""
    from nas import ray_backend
    from nas.trial import run_trial

    def trainable(config: dict[str, Any], data: Any, settings: Any, store: Any = None) -> None:
        attempt = 1
        while True:  # claim the next attempt number atomically
            try:
                os.close(os.open(markers / str(attempt), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                attempt += 1
        if attempt in KILLED_ATTEMPTS:
            os.kill(os.getpid(), signal.SIGKILL)
        ray_backend._train_in_worker(run_trial, config, data, settings, store)

    return trainable


@pytest.mark.slow
def test_worker_killed_mid_trial_is_retried_or_recorded_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nas import ray_backend

    monkeypatch.chdir(tmp_path)
    markers = tmp_path / "attempts"
    markers.mkdir()
    # the trainable is a closure, so Ray ships it to the workers by value
    monkeypatch.setattr(ray_backend, "_trainable", _killing_trainable(markers))
    config = from_dict(
        tiny_config(
            tmp_path,
            study="sigkill",
            train={"epochs": 1, "batch_size": 16},
            search={"trials": 2, "max_failures": 1, "early_stopping": {"enabled": False}},
            resources={"max_concurrent": 1, "num_cpus": 1},
        )
    )
    with open(os.devnull, "w") as quiet:
        outcome = run_search(config, stream=quiet)
    assert sorted(int(p.name) for p in markers.iterdir()) == [1, 2, 3, 4]  # 3 workers died
    assert len(outcome.records) == 2  # the search completed its requested trials
    by_number = {r.number: r for r in outcome.records}
    assert len(by_number) == 2
    statuses = [by_number[n].status for n in sorted(by_number)]
    assert statuses == ["complete", "failed"]  # the retry of the first one trained
    # the retry's weights reached the driver like any trial's
    kept = Path(by_number[min(by_number)].costs["checkpoint"])
    assert kept.is_file() and kept.parent == weights_folder(config)
    failed = by_number[max(by_number)]
    assert failed.reason.startswith("crashed worker: "), failed.reason
    assert "died" in failed.reason, failed.reason
    print(f"reason of the failed trial: {failed.reason}")
    stored = load_study("sigkill", config.storage)
    assert [r.status for r in stored.records] == statuses


# -- the MLflow server restarted mid-search ----------------------------------------------------


@pytest.mark.slow
def test_mlflow_server_restarted_mid_search_loses_no_trial(tmp_path: Path) -> None:
    root = tmp_path / "mlflow"
    root.mkdir()
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    command = servers.mlflow_server_command(root, port)
    server = servers.start(command, url, root / "server-1.log")
    config = tiny_config(
        tmp_path,
        study="restart",
        tracking_uri=url,
        train={"epochs": 2, "batch_size": 16},
        search={"trials": 5, "early_stopping": {"enabled": False}},
        resources={"max_concurrent": 1, "num_cpus": 1},
    )
    path = write_config(tmp_path / "restart.yaml", config)
    storage = config["storage"]
    log_path = tmp_path / "search.log"
    try:
        # the end-of-study wait must outlast a restart on a busy 2-core machine
        with search_process(path, tmp_path, log_path, {FINISH_WAIT_ENV: "300"}) as search:
            wait_for(
                lambda: len(mlflow_study_runs(url, "restart")[1]) >= 1,
                "a first trial logged",
                300,
                search,
                log_path,
            )
            servers.stop(server)  # the server goes away mid-search ...
            down_at = len(finished_trials(storage, "restart"))
            # (on a fast machine the last trials may have finished already: then the search
            # is waiting at its end for the server, which is the other path under test)
            wait_for(
                lambda: down_at == 5 or len(finished_trials(storage, "restart")) > down_at,
                "a trial finished while the server was down",
                300,
                search,
                log_path,
            )
            server = servers.start(command, url, root / "server-2.log")  # ... and comes back
            search.wait(timeout=500)
        output = log_path.read_text(errors="replace")
        assert search.returncode == 0, output[-3000:]
        assert "failed (" in output and "queued trials are logged" in output  # the outage seen
        outcome = load_study("restart", storage)
        assert len(outcome.records) == 5
        parents, children = mlflow_study_runs(url, "restart")
        assert len(parents) == 1
        by_number = {int(r.data.tags["optuna_trial_number"]): r for r in children}
        assert len(by_number) == len(children)  # no trial logged twice
        assert sorted(by_number) == sorted(r.number for r in outcome.records)  # none lost
        for record in outcome.records:
            run = by_number[record.number]
            assert run.data.tags["status"] == record.status
            assert run.data.tags["fsnas.logged"] == "true"  # params and metrics complete
            if record.status == "complete":
                assert run.data.metrics["val_accuracy"] == pytest.approx(
                    record.metrics["val_accuracy"]
                )
    finally:
        servers.stop(server)


class _CrashedTrial:
    """A Tune trial right after its worker died: the error is only in the driver's local copy."""

    def __init__(self, error_file: Path) -> None:
        self.error_file = str(error_file)

    def get_error(self) -> None:
        return None  # not synced to the experiment storage yet


def test_crash_reason_is_read_before_tune_syncs_the_error(tmp_path: Path) -> None:
    from nas.trial_ledger import TrialLedger

    error_file = tmp_path / "error.txt"
    error_file.write_text(
        "Failure # 1 (occurred at 2026-11-28_05-40-00)\n"
        "The actor died unexpectedly before finishing this task.\n"
        "\tclass_name: ImplicitFunc\n"
        "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR\n",
        encoding="utf-8",
    )
    ledger = TrialLedger(lambda record: None)
    ledger.trials["t1"] = _CrashedTrial(error_file)
    reason = ledger.error_text("t1")
    assert reason.startswith(
        "crashed worker: The actor is dead because its worker process has died"
    )
