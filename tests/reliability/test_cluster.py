"""The README's cluster recipe, run as a user would, on this one machine (issue 21).

``ray start --head`` and ``ray start --address`` (a second node, fake ``GPU`` resources via
``--num-gpus``) as separate processes, then ``fsnas search --address HOST:PORT`` from a third.
The worker node is stopped mid-search (its raylet killed: ``ray stop`` would stop every Ray
node of this machine, the head too): its trials are retried or recorded with the reason and
the search finishes. With the head gone, the same command is a one-line error (exit 2); once
a cluster is back it resumes the study. The head lost mid-search (its processes killed) ends
the driver within seconds with one line and exit 3 (``HEAD_LOST_EXIT``), no native output;
with a cluster back on the same port the same command ends the study with exactly the
requested trials, none twice.
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
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

import nas.head_watchdog as watchdog
import nas.ray_backend as backend
from nas.config import ConfigError, from_dict
from nas.head_watchdog import HEAD_LOST_EXIT, HeadWatchdog, head_lost_after_s
from nas.ray_backend import head_target
from nas.search import head_lost_message
from nas.study import NODE_ATTR, RECORD_ATTR, STATUS_ATTR
from tests.nas._study import tiny_config, write_config
from tests.reliability._searches import FSNAS, finished_trials, wait_for

RAY = [str(Path(sys.executable).parent / "ray")]
# a lost head is noticed after 4 s (not 10): the resumed search must still be running by then
ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "disabled",
    "PYTHONUNBUFFERED": "1",
    "FSNAS_HEAD_LOST_S": "4",
}
STUDY = "cluster"
TRIALS = 6
WORKER_RESOURCE = "fsnas_test_worker"
MORE = 30  # trials the second command adds: the head is lost after the first of them (on a
# quiet machine a trial takes about 1 s, so a few more would end before the loss is noticed)
NATIVE = ("*** SIGTERM received", "absl", "Failed to connect to GCS", "Traceback")


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


def _children(pid: int) -> list[int]:
    """Return the pids of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _head_pids(temp_dir: str) -> list[int]:
    """Return the head node's processes: every Ray process of ``temp_dir`` but the worker
    node's raylet and the agents it started (GCS, the head's raylet, dashboard, monitors)."""
    worker = _pids(temp_dir, "raylet", WORKER_RESOURCE)
    assert worker, "the worker node's raylet is not running"
    keep = set(worker) | {c for w in worker for c in _children(w)}
    return [p for p in _pids(temp_dir) if p not in keep]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


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


def _search(config: Path, cwd: Path, port: int, log: Path, *more: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*FSNAS, "search", "--config", str(config), "--address", f"127.0.0.1:{port}", *more],
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
        total = TRIALS + MORE
        more = [
            *FSNAS,
            "search",
            "--config",
            str(path),
            "--address",
            f"127.0.0.1:{port}",
            "--trials",
            str(total),
        ]
        gone = subprocess.run(
            more, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert gone.returncode == 2, gone.stdout[-2000:] + gone.stderr[-2000:]
        assert f"--address 127.0.0.1:{port}: cannot start/join Ray" in gone.stderr
        assert "Traceback" not in gone.stderr
        assert len(finished_trials(storage, STUDY)) == TRIALS

        with _cluster(port, temp_dir):  # a cluster is back: the same command resumes ...
            log = tmp_path / "run2.log"
            process = _search(path, tmp_path, port, log, "--trials", str(total))
            try:
                wait_for(
                    lambda: len(finished_trials(storage, STUDY)) >= TRIALS + 1,
                    "a trial of the resumed search finished",
                    300,
                    process,
                    log,
                )
                head = _head_pids(temp_dir)
                assert any("gcs_server" in _cmdline(p) for p in head), head
                _kill(head)  # ... and the head is lost mid-search
                lost = time.monotonic()
                rc = process.wait(timeout=90)
                took = time.monotonic() - lost
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            text = log.read_text(errors="replace")
            assert rc == HEAD_LOST_EXIT, text[-3000:]
            assert took < 60, f"the driver took {took:.0f} s to notice the lost head"
            before = {t.number: t.user_attrs for t in finished_trials(storage, STUDY)}
            kept = sorted(before)
            lines = [ln for ln in text.splitlines() if "stopped answering" in ln]
            assert len(lines) == 1, text[-3000:]
            assert lines[0].startswith(
                f"fsnas search: error: the Ray head at 127.0.0.1:{port} stopped answering "
                "mid-search"
            ), lines
            stored = f"{len(kept)} of {total} trial(s) finished and are stored in {storage}"
            assert stored in lines[0], lines
            assert f"ray start --head --port={port}" in lines[0]
            assert "run the same command to resume: fsnas search --config" in lines[0]
            assert TRIALS + 1 <= len(kept) < total, kept
            assert not [n for n in NATIVE if n in text], text[-3000:]

        with _cluster(port, temp_dir):  # a cluster is back on that port: the same command
            back = subprocess.run(
                more, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=400
            )
            assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
            after = {t.number: t.user_attrs for t in finished_trials(storage, STUDY)}
            assert len(after) == total, sorted(after)  # not one more: nothing ran twice
            # the trials finished before the loss are kept, unchanged
            assert {n: after.get(n) for n in before} == before
    finally:
        _kill(_pids(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)


# -- the head watchdog, without a cluster ---------------------------------------------------------
class _Exit(Exception):
    pass


def _watchdog(target: tuple[str, int], **kwargs: Any) -> tuple[HeadWatchdog, list[int], StringIO]:
    codes: list[int] = []
    stream = StringIO()
    kwargs = {"after_s": 0.4, "every_s": 0.05, **kwargs}
    dog = HeadWatchdog("127.0.0.1:1", target, exit_process=codes.append, stream=stream, **kwargs)
    return dog, codes, stream


def test_the_watchdog_exits_once_a_real_head_port_stops_answering() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)  # a head's GCS: accepts every probe
    target = ("127.0.0.1", int(server.getsockname()[1]))

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                server.accept()[0].close()

    threading.Thread(target=accept, daemon=True).start()
    dog, codes, stream = _watchdog(target, on_lost=lambda address, s: f"lost {address} {s:g}")
    dog.start()
    time.sleep(1.0)  # answering: no exit (the listen backlog accepts the probes)
    assert codes == [] and not dog.fired
    with contextlib.suppress(OSError):
        server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
    server.close()
    lost = time.monotonic()
    dog._thread.join(5)
    assert codes == [HEAD_LOST_EXIT] and stream.getvalue() == "lost 127.0.0.1:1 0.4\n"
    assert 0.4 - 0.05 <= time.monotonic() - lost < 3  # silent for after_s (less one probe)


def test_the_watchdog_waits_for_a_trial_being_told_and_stops_when_asked() -> None:
    lock = threading.Lock()
    lock.acquire()  # a trial is being told to Optuna
    dog, codes, stream = _watchdog(("127.0.0.1", 1), lock=lock, connects=lambda *a: False)
    dog.start()
    time.sleep(1.0)
    assert dog.fired and codes == []  # waiting for the lock, nothing printed yet
    lock.release()
    dog._thread.join(5)
    assert codes == [HEAD_LOST_EXIT] and "stopped answering" in stream.getvalue()
    quiet, codes, _ = _watchdog(("127.0.0.1", 1), connects=lambda *a: False, after_s=0.5)
    quiet.start()
    quiet.stop()  # the search ended first
    quiet._thread.join(5)
    assert codes == [] and not quiet.fired


def test_the_watchdog_line_survives_a_count_that_fails() -> None:
    def broken(address: str, silent_s: float) -> str:
        raise OSError("database is locked")

    dog, codes, stream = _watchdog(("127.0.0.1", 1), on_lost=broken, connects=lambda *a: False)
    dog.start()
    dog._thread.join(5)
    assert codes == [HEAD_LOST_EXIT]
    assert "could not count them: OSError: database is locked" in stream.getvalue()


def test_only_a_joined_cluster_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    assert head_target(None) is None and head_target("local") is None
    assert head_target("ray://10.0.0.1:10001") is None
    assert head_target("10.0.0.1:6379") == ("10.0.0.1", 6379)
    started: list[tuple[str, tuple[str, int]]] = []

    class Recorder:
        def __init__(self, address: str, target: tuple[str, int], *a: Any, **k: Any) -> None:
            started.append((address, target))

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr(backend, "HeadWatchdog", Recorder)
    monkeypatch.setattr(backend, "init_ray", lambda address, num_cpus: True)
    monkeypatch.setattr(backend, "_run", lambda *a: "experiment")
    monkeypatch.setattr(backend.ray, "shutdown", lambda: None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    kwargs: dict[str, Any] = dict.fromkeys(
        ("data", "space", "settings", "storage", "sampler", "objectives", "on_record")
    )
    backend.run(config=from_dict({}), n_trials=1, **kwargs)  # local Ray: never watched
    assert started == []
    config = from_dict({"resources": {"address": "127.0.0.1:6379"}})
    backend.run(config=config, n_trials=1, **kwargs)
    assert started == [("127.0.0.1:6379", ("127.0.0.1", 6379))]


def test_the_silence_allowed_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(watchdog.HEAD_LOST_ENV, raising=False)
    assert head_lost_after_s() == watchdog.HEAD_LOST_AFTER_S
    monkeypatch.setenv(watchdog.HEAD_LOST_ENV, "25")
    assert head_lost_after_s() == 25.0
    for bad in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv(watchdog.HEAD_LOST_ENV, bad)
        with pytest.raises(ConfigError, match=rf"\$FSNAS_HEAD_LOST_S: expected seconds.*{bad}"):
            head_lost_after_s()


def test_the_head_lost_line_names_the_count_the_storage_and_how_to_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["fsnas", "search", "--address", "10.0.0.1:6379"])
    config = from_dict({"storage": "sqlite:///s.db", "search": {"trials": 9}})
    line = head_lost_message(config, "10.0.0.1:6379", 10.0, 4)
    assert line == (
        "fsnas search: error: the Ray head at 10.0.0.1:6379 stopped answering mid-search (no "
        "connection for 10 s); 4 of 9 trial(s) finished and are stored in sqlite:///s.db; start "
        "a cluster again (`ray start --head --port=6379`) and run the same command to resume: "
        "fsnas search --address 10.0.0.1:6379"
    )
