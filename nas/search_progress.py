"""The driver's per-trial side of a search: the progress line and the MLflow thread.

``nas.search.run_search`` hands every finished trial (``on_record``, in Ray Tune's control loop)
to both: ``Progress`` counts it and keeps the front (``pareto.RunningFront``, O(front) per
trial) for the one-line status, and ``TrackingThread`` queues it for MLflow, logged on a driver
thread off the control loop, with the parent run's artifacts refreshed at most every
``REFRESH_EVERY_S`` (30 s, ``$FSNAS_MLFLOW_REFRESH_S``). Neither imports Ray, Optuna or MLflow
(the tracker is handed in).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from dashboards.records import Objective, StudySummary, TrialRecord
from nas import pareto
from nas.config import ConfigError
from search_spaces.errors import env_seconds


# -- progress -----------------------------------------------------------------------------------
@dataclass
class Progress:
    """The live state of a search: counts, records and the front; prints one compact line.

    Everything the line shows is kept up to date as records arrive (``pareto.RunningFront``),
    so a finished trial costs O(front), not a pass over the whole study.
    """

    study: str
    total: int
    objectives: list[Objective]
    records: list[TrialRecord] = field(default_factory=list)
    running: int = 0
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    # (complete trials so far, hypervolume against the study's fixed reference point)
    hv_history: list[tuple[int, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    # the study's reference point (stored with it), else fixed by ``pareto.study_reference``
    # from ``bounds`` and the first complete trial; ``on_reference(ref, source)`` is told once
    reference: dict[str, float] | None = None
    bounds: dict[str, float] = field(default_factory=dict)
    on_reference: Callable[[dict[str, float], dict[str, str]], None] | None = None
    _statuses: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _front: pareto.RunningFront = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._front = pareto.RunningFront(self.objectives, self.reference or None)
        self._fix_reference(None)
        given, self.records = self.records, []
        self.extend(given)

    def _fix_reference(self, record: TrialRecord | None) -> None:
        if self._front.fixed:
            return
        if record is not None and not pareto.front_candidates([record], self.objectives):
            return
        fixed = pareto.study_reference(self.objectives, self.bounds, record)
        if fixed is not None:
            self.reference = fixed[0]
            self._front.fix_reference(fixed[0])
            if self.on_reference is not None:
                self.on_reference(*fixed)

    def counts(self) -> dict[str, int]:
        """Return finished trials by outcome: done, complete, pruned, failed, infeasible."""
        c = self._statuses
        done = len(self.records)
        return {
            "done": done,
            "complete": c["complete"],
            "pruned": c["pruned"],
            "infeasible": c["infeasible"],
            "failed": done - c["complete"] - c["pruned"] - c["infeasible"],
        }

    def line(self) -> str:
        """Return the one-line status: done/total, running, pruned, failed, front, best, HV."""
        c = self.counts()
        first = self.objectives[0]
        top = self._front.best
        best = f"{top.objectives[first.name]:.4f}" if top is not None else "-"
        hv = self._front.hypervolume()
        elapsed = time.monotonic() - self.started
        return (
            f"[{self.study}] done {c['done']}/{self.total} · running {self.running} · "
            f"pruned {c['pruned']} · failed {c['failed']} · infeasible {c['infeasible']} · "
            f"front {len(self._front.members)} · best {first.name} {best} · HV {hv:.4g} · "
            f"{elapsed:.0f} s"
        )

    def extend(self, records: Sequence[TrialRecord]) -> None:
        """Count trials finished before this run (a resume): no line, no history entry."""
        for record in records:
            self._fix_reference(record)
            self.records.append(record)
            self._statuses[record.status] += 1
            self._front.add(record)

    def add(self, record: TrialRecord) -> None:
        """Add a finished trial, remember the hypervolume and print the line."""
        self.extend([record])
        self.hv_history.append((self._statuses["complete"], self._front.hypervolume()))
        self.print()

    def set_running(self, running: int) -> None:
        """Note how many trials are training now (the backend calls it as trials start/end)."""
        self.running = running

    def print(self) -> None:
        """Write the status line (one line per change, so logs stay readable)."""
        print(self.line(), file=self.stream, flush=True)


# -- tracking off the control loop --------------------------------------------------------------
# The parent run's artifacts (plots, trials.csv, pareto.json) are refreshed at most this often
# while a search runs (and always at its end); $FSNAS_MLFLOW_REFRESH_S overrides it (0: after
# every trial).
REFRESH_ENV = "FSNAS_MLFLOW_REFRESH_S"
REFRESH_EVERY_S = 30.0
# the most of the driver's time the periodic refreshes may take (the gap grows with their cost)
REFRESH_SHARE = 0.05
# finished trials waiting for the tracking thread; when full, the control loop waits (a trial
# is never dropped)
LOG_QUEUE_SIZE = 1000
_STOP = object()


def refresh_every_s() -> float:
    """Return the seconds between two refreshes of the parent run: $FSNAS_MLFLOW_REFRESH_S or 30.

    Raises:
        ConfigError: the variable is set to something other than seconds >= 0.
    """
    return env_seconds(REFRESH_ENV, REFRESH_EVERY_S, ConfigError)


class TrackingThread:
    """Logs finished trials to MLflow from a driver thread, off Ray Tune's control loop.

    The control loop only ``submit``s a record (it waits while ``maxsize`` records are queued,
    never drops one). The thread logs each with ``tracker.log_trial`` (first ``backlog``, the
    trials of a resumed study: the tracker finds their child runs, so none is logged twice)
    and refreshes the parent run's artifacts at most every ``refresh_every_s`` seconds when
    trials arrived since (less often once a refresh takes more than ``REFRESH_SHARE`` of that
    gap: the plots of a large study cost seconds of the driver's GIL). ``close`` logs what is
    queued and stops the thread; the caller then runs ``tracker.finish`` (the end-of-study
    refresh). Between ``start`` and ``close`` only
    this thread uses the tracker. A tracker that raises is a warning (once), never the end of
    logging: ``finish`` logs every record of the study that has no child run yet.
    """

    def __init__(
        self,
        tracker: Any,
        summary_of: Callable[[list[TrialRecord]], StudySummary],
        backlog: Sequence[TrialRecord] = (),
        *,
        refresh_every_s: float = REFRESH_EVERY_S,
        maxsize: int = LOG_QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.summary_of = summary_of
        self.refresh_every_s = refresh_every_s
        self.records: list[TrialRecord] = []  # what the thread logged; the refreshes' study
        self.refreshes = 0
        self._backlog = list(backlog)
        self._clock = clock
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name="fsnas-tracking", daemon=True)
        self._done = threading.Event()  # set when the thread has stopped
        self._warned = False

    @property
    def queued(self) -> int:
        """Return how many submitted records wait for the thread."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the thread (it logs the backlog first)."""
        self._thread.start()

    def submit(self, record: TrialRecord) -> None:
        """Queue a finished trial for logging; waits while the queue is full (never drops it).

        Once the thread has stopped, the record is not queued: ``tracker.finish`` logs it from
        the study's records.
        """
        self._put(record)

    def close(self) -> None:
        """Log every queued record, then stop the thread; returns when it has stopped."""
        self._put(_STOP)  # behind every record submitted before
        if self._thread.is_alive():
            self._thread.join()

    def close_within(self, timeout_s: float) -> bool:
        """``close``, waiting at most ``timeout_s``; return True when every record was logged.

        For a driver about to exit (a lost Ray head): what is not logged by then is logged by
        the next run (the tracker backfills every stored trial without a child run).
        """
        closer = threading.Thread(target=self.close, name="fsnas-tracking-close", daemon=True)
        closer.start()
        closer.join(timeout_s)
        return not closer.is_alive()

    def _put(self, item: object) -> None:
        while not self._done.is_set():
            try:
                self._queue.put(item, timeout=1.0)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for record in self._backlog:
                self._log(record)
            self._backlog = []
            self._loop()
        finally:
            self._done.set()

    def _loop(self) -> None:
        due = self._clock() + self.refresh_every_s
        fresh = False  # trials logged since the last refresh
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, due - self._clock()) if fresh else None)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if item is not None:
                self._log(item)
                fresh = True
            if fresh and self._clock() >= due:
                started = self._clock()
                self._call("refresh the parent run", self._refresh)
                fresh = False
                due = self._clock() + self._next_gap_s(self._clock() - started)

    def _next_gap_s(self, took_s: float) -> float:
        """Return the seconds until the next refresh: ``refresh_every_s``, or more when the last
        refresh took long. A refresh draws every plot of the study and holds the GIL while it
        does, so it is kept to about ``REFRESH_SHARE`` of the driver's time, however large the
        study grows (``refresh_every_s`` 0, "after every trial", is taken as asked)."""
        if self.refresh_every_s <= 0:
            return 0.0
        return max(self.refresh_every_s, took_s / REFRESH_SHARE)

    def _log(self, record: TrialRecord) -> None:
        self.records.append(record)
        self._call(f"log trial {record.number}", lambda: self.tracker.log_trial(record))

    def _refresh(self) -> None:
        self.refreshes += 1
        self.tracker.refresh(self.records, self.summary_of(self.records))

    def _call(self, what: str, action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # a tracking bug must not end hours of search, nor logging
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"MLflow tracking: could not {what} ({type(exc).__name__}: "
                    f"{str(exc)[:300]}); logging goes on and the end of the search logs "
                    "every trial still missing",
                    RuntimeWarning,
                    stacklevel=2,
                )
