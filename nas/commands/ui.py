"""``fsnas ui [--tracking-uri URI] [--port P] [--host H]``: the MLflow UI over fsnas's runs."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

# How long to wait for the UI to answer before saying so (MLflow 3 takes ~25 s on 2 cores).
_READY_TIMEOUT_S = 120.0


def register(subparsers: Any) -> None:
    """Add the ``ui`` sub-command."""
    parser = subparsers.add_parser(
        "ui",
        help="start the MLflow UI over the tracking store and print its URL",
        description=(
            "Start the MLflow UI on this machine over the tracking store that fsnas search, "
            "ablate and train log to (--tracking-uri, else $MLFLOW_TRACKING_URI, else "
            "sqlite:///mlflow.db in this folder). Each study is an experiment named after it; "
            "open a study's parent run (under 'Model training') and its Artifacts tab for "
            "pareto.html. For an http(s) tracking URI the server already has a UI: its URL is "
            "printed. Ctrl-C stops the UI."
        ),
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="tracking store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (5000)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (127.0.0.1: this machine only; the UI has no login)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start ``mlflow ui`` over the resolved store, print the URL, wait until it stops."""
    from dashboards.mlflow_store import (
        TrackingError,
        check_tracking_reachable,
        resolve_tracking_uri,
        uri_is_sqlite,
    )

    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking_reachable(uri)
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {uri.rstrip('/')}  (served by the tracking server itself)", flush=True)
        return 0
    if uri_is_sqlite(uri) and not Path(uri[len("sqlite:///") :]).exists():
        print(f"note: {uri} does not exist yet; the UI starts empty", file=sys.stderr)
    _check_port_free(args.host, args.port)
    url = f"http://{args.host}:{args.port}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"MLflow UI: {url}  (tracking store {uri}; Ctrl-C stops it)", flush=True)
    process = subprocess.Popen(command)
    # a plain `kill` must not leave the UI server running without its parent
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if _wait_ready(url, process):
            print(f"ready: open {url} in a browser", flush=True)
        code = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    if code != 0:
        raise TrackingError(f"mlflow ui over {uri} on {url} exited with status {code}")
    return 0


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _check_port_free(host: str, port: int) -> None:
    from dashboards.mlflow_store import TrackingError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise TrackingError(
                f"cannot start the MLflow UI on {host}:{port}: {exc.strerror or exc}; "
                "pass another --port"
            ) from None


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False
