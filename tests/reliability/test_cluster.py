"""The README's cluster recipe, run as a user would, on this one machine (issue 21).

``ray start --head`` and ``ray start --address`` (a second node, fake ``GPU`` resources via
``--num-gpus``) as separate processes, then ``fsnas search --address HOST:PORT`` from a third.
The worker node is stopped mid-search (its raylet killed: ``ray stop`` would stop every Ray
node of this machine, the head too): its trials are retried or recorded with the reason and
the search finishes. With the head gone, the same command is a one-line error (exit 2); once
a cluster is back it resumes the study to the requested trials.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nas.study import NODE_ATTR, RECORD_ATTR, STATUS_ATTR
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import FSNAS, finished_trials, wait_for

RAY = [str(Path(sys.executable).parent / "ray")]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
STUDY = "cluster"
TRIALS = 6
WORKER_RESOURCE = "fsnas_test_worker"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pids(*needles: str) -> list[int]:
    """Return the pids of this machine's processes whose command line holds every needle."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if all(n in args for n in needles):
            pids.append(int(entry.name))
    return pids


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _ray_start(*args: str) -> None:
    done = subprocess.run(
        [*RAY, "start", *args, "--disable-usage-stats"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@contextlib.contextmanager
def _cluster(port: int, temp_dir: str) -> Iterator[None]:
    """A head (1 CPU, 1 fake GPU) and a worker node (1 CPU, 1 fake GPU); killed on exit."""
    _ray_start(
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        "--num-gpus=1",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=false",
    )
    _ray_start(
        f"--address=127.0.0.1:{port}",
        "--num-cpus=1",
        "--num-gpus=1",
        f'--resources={{"{WORKER_RESOURCE}": 1}}',
    )
    try:
        yield
    finally:
        _kill(_pids(temp_dir))  # this cluster's processes only (by pid)
        time.sleep(1)


def _search(config: Path, cwd: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*FSNAS, "search", "--config", str(config), "--address", f"127.0.0.1:{port}"],
        cwd=cwd,
        env=ENV,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_the_readme_cluster_recipe_survives_a_lost_worker_and_a_lost_head(tmp_path: Path) -> None:
    if shutil.which(RAY[0]) is None:
        pytest.fail(f"{RAY[0]} not found: the cluster recipe needs Ray's CLI")
    config = tiny_config(
        tmp_path,
        study=STUDY,
        train={"epochs": 3, "batch_size": 16},
        search={"trials": TRIALS, "max_failures": 2, "early_stopping": {"enabled": False}},
        resources={"gpus_per_trial": "1", "cpus_per_trial": 1, "max_concurrent": 2},
    )
    path = write_config(tmp_path / f"{STUDY}.yaml", config)
    storage = config["storage"]
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="fr", dir="/tmp")  # Ray's socket paths must stay short
    try:
        with _cluster(port, temp_dir):
            log = tmp_path / "run1.log"
            process = _search(path, tmp_path, port, log)
            try:
                wait_for(
                    lambda: len(finished_trials(storage, STUDY)) >= 1,
                    "a trial finished",
                    300,
                    process,
                    log,
                )
                worker = _pids(temp_dir, "raylet", WORKER_RESOURCE)
                assert worker, "the worker node's raylet is not running"
                _kill(worker)  # the worker node is gone mid-search
                rc = process.wait(timeout=500)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            text = log.read_text(errors="replace")
            assert rc == 0, text[-3000:]
            trials = finished_trials(storage, STUDY)
            assert len(trials) == TRIALS, text[-3000:]
            # two trials at once need both nodes (1 CPU and 1 fake GPU each, 1 GPU per trial)
            assert "running 2" in text, text[-3000:]
            assert len({t.user_attrs.get(NODE_ATTR) for t in trials} - {None}) >= 1
            for t in trials:  # retried, or recorded with the reason
                status = t.user_attrs[STATUS_ATTR]
                record = t.user_attrs.get(RECORD_ATTR, {})
                assert status == "complete" or record.get("reason"), (status, record)

        # the head is gone: one line, exit 2, nothing lost
        more = [
            *FSNAS,
            "search",
            "--config",
            str(path),
            "--address",
            f"127.0.0.1:{port}",
            "--trials",
            str(TRIALS + 1),
        ]
        gone = subprocess.run(
            more, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert gone.returncode == 2, gone.stdout[-2000:] + gone.stderr[-2000:]
        assert f"--address 127.0.0.1:{port}: cannot start/join Ray" in gone.stderr
        assert "Traceback" not in gone.stderr
        assert len(finished_trials(storage, STUDY)) == TRIALS

        with _cluster(port, temp_dir):  # a cluster is back: the same command resumes
            back = subprocess.run(
                more, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=400
            )
            assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
            assert len(finished_trials(storage, STUDY)) == TRIALS + 1
    finally:
        _kill(_pids(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
