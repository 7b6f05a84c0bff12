"""Start and stop local MLflow servers for the slow dashboard tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

# MLflow 3 needs ~25 s to answer on an idle 2-core machine; more while other tests run.
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_server_command(root: Path, port: int) -> list[str]:
    """Return the command of an ``mlflow server`` on 127.0.0.1:``port`` keeping its data in root.

    One worker, a SQLite backend store and served artifacts (``root/artifacts``), so clients
    upload through the server as they would to a shared tracking server.
    """
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'db.sqlite'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start(command: Sequence[str], url: str, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group and return once ``url``/health answers."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        list(command), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{command[0]} exited with {process.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(
        f"{url} not ready after {READY_TIMEOUT_S:.0f} s: {log_path.read_text()[-2000:]}"
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and every worker it started (its whole process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
