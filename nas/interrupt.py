"""SIGINT and SIGTERM during a search: stop starting trials, then stop at once.

``Interrupt`` is installed by ``nas.ray_backend.run`` once Ray has started (Ray's core worker
installs its own SIGTERM handler, whose native stack dump this one replaces), in the main
thread only. The first signal asks the searcher to start no new trial (``requested``); running
trials finish and are recorded. A second one asks for a stop at once (``immediate``): Tune
stops the running trials, which are recorded interrupted (Optuna ``FAIL`` without an fsnas
record) and asked again by the next run. A third one exits at once (``os._exit``): every
finished trial is already in the Optuna storage (each is told as it ends). The search then
ends with ``SearchInterrupted`` (exit 128 + the signal: 130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from search_spaces.errors import FsnasError

__all__ = ["Interrupt", "SearchInterrupted", "signal_name"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """Return ``SIGINT`` / ``SIGTERM`` (or the number) of a signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SearchInterrupted(FsnasError):
    """A search stopped on a signal; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Interrupt:
    """Counts SIGINT/SIGTERM while installed; the search polls ``requested`` / ``immediate``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.signum: int | None = None
        self.count = 0
        self._stream = stream

    @property
    def requested(self) -> bool:
        """A signal came: start no new trial."""
        return self.count >= 1

    @property
    def immediate(self) -> bool:
        """A second signal came: stop the running trials now."""
        return self.count >= 2

    def handle(self, signum: int, frame: Any = None) -> None:
        """The signal handler (also callable directly, as tests do)."""
        self.count += 1
        if self.signum is None:
            self.signum = signum
        out = self._stream or sys.stderr
        name = signal_name(signum)
        if self.count == 1:
            print(
                f"fsnas: {name} received: starting no new trial; running trials finish and are "
                "recorded (send it again to stop them now)",
                file=out,
                flush=True,
            )
        elif self.count == 2:
            print(
                f"fsnas: {name} received again: stopping now; running trials are recorded "
                "interrupted and asked again by the next run",
                file=out,
                flush=True,
            )
        else:  # finished trials are already stored; nothing is lost by leaving now
            print(f"fsnas: {name} received a third time: exiting", file=out, flush=True)
            os._exit(128 + (self.signum or signum))

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interrupt]:
        """Handle SIGINT and SIGTERM inside the block (main thread only), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self.handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
