"""The Ray head, watched from the driver of a search joined to a cluster (``--address``).

``HeadWatchdog`` is a driver thread that connects to the head's GCS port every second; once the
head has not answered for ``$FSNAS_HEAD_LOST_S`` seconds (10) it waits for a trial being told
to Optuna, lets the caller flush what it must (``on_lost``), prints one line and ends the
process with ``HEAD_LOST_EXIT`` (3). ``nas.ray_backend.run`` starts it; it imports no Ray.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from nas.config import ConfigError
from search_spaces.errors import env_seconds

HEAD_LOST_EXIT = 3
"""Exit status of ``fsnas search`` when the Ray head stops answering mid-search."""
HEAD_LOST_ENV = "FSNAS_HEAD_LOST_S"
HEAD_LOST_AFTER_S = 10.0
"""Seconds without a connection to the head before the driver stops (``$FSNAS_HEAD_LOST_S``).

Ray's own core worker aborts the driver after ``gcs_rpc_server_reconnect_timeout_s`` (60 s)
with native log lines only; keep this below it (above 60 s Ray's abort comes first)."""
HEAD_PROBE_EVERY_S = 1.0
HEAD_TELL_WAIT_S = 10.0
"""The most the watchdog waits for a trial being told to Optuna before it exits."""


def head_lost_after_s() -> float:
    """Return the seconds the head may stay silent: ``$FSNAS_HEAD_LOST_S`` or 10.

    Raises:
        ConfigError: the variable is set to something other than seconds > 0.
    """
    return env_seconds(HEAD_LOST_ENV, HEAD_LOST_AFTER_S, ConfigError, allow_zero=False)


def _connects(target: tuple[str, int], timeout_s: float) -> bool:
    import socket

    try:
        with socket.create_connection(target, timeout=timeout_s):
            return True
    except OSError:
        return False


class HeadWatchdog:
    """A driver thread that probes the Ray head (a TCP connect every ``every_s``) and, once it
    has not answered for ``after_s``, prints one line and ends the process (``HEAD_LOST_EXIT``).

    Without it the driver's core worker waits 60 s for the lost head and then aborts the
    process with native log lines. Every finished trial is already in the Optuna storage (each
    is told as it ends); the watchdog takes ``lock`` (held while a trial is told) first, so it
    never leaves in the middle of one. ``on_lost(address, after_s)`` returns the line to print
    (the search's counts the stored trials and flushes MLflow); the trials a resume asks again
    are those still running.
    """

    def __init__(
        self,
        address: str,
        target: tuple[str, int],
        on_lost: Callable[[str, float], str] | None = None,
        *,
        lock: threading.Lock | None = None,
        after_s: float = HEAD_LOST_AFTER_S,
        every_s: float = HEAD_PROBE_EVERY_S,
        connects: Callable[[tuple[str, int], float], bool] = _connects,
        exit_process: Callable[[int], Any] = os._exit,
        stream: TextIO | None = None,
    ) -> None:
        self.address = address
        self.target = target
        self.on_lost = on_lost
        self.lock = lock if lock is not None else threading.Lock()
        self.after_s = after_s
        self.every_s = every_s
        self.fired = False
        self._connects = connects
        self._exit = exit_process
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fsnas-head-watchdog", daemon=True)

    def start(self) -> None:
        """Start probing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (the search is over); returns at once."""
        self._stop.set()

    def _run(self) -> None:
        answered = time.monotonic()
        failures = 0
        while not self._stop.wait(self.every_s):
            if self._connects(self.target, min(self.every_s, 2.0)):
                answered, failures = time.monotonic(), 0
                continue
            failures += 1
            if failures >= 2 and time.monotonic() - answered >= self.after_s:
                if not self._stop.is_set():
                    self.fire()
                return

    def fire(self) -> None:
        """Print the line, flush, and end the process with ``HEAD_LOST_EXIT``."""
        self.fired = True
        self.lock.acquire(timeout=HEAD_TELL_WAIT_S)  # never released: the process ends
        message = (
            f"fsnas: the Ray head at {self.address} stopped answering (no connection for "
            f"{self.after_s:g} s); the finished trials are in the study's storage: start the "
            "cluster again and run the same command to resume"
        )
        if self.on_lost is not None:
            try:
                message = self.on_lost(self.address, self.after_s)
            except Exception as exc:  # the line must come out whatever the count did
                message += f" (could not count them: {type(exc).__name__}: {exc})"
        out = self._stream or sys.stderr
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        print(message, file=out, flush=True)
        self._exit(HEAD_LOST_EXIT)
