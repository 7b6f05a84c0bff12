"""The driver's per-trial cost: the progress line at O(front), MLflow logging off the control loop.

(a) ``Progress`` (``pareto.RunningFront``) prints exactly the numbers the whole-study formulas
give (``pareto.front_records``, ``best_record``, ``records_hypervolume``) for every prefix of
random records, and ``summarise`` equals its former all-pairs computation. (b) ``TrackingThread``
logs every record exactly once, off the loop, and ``run_search`` finishes the tracker after the
thread drained, on a normal end and on an interrupt. (c) A tracker whose ``log_trial`` blocks
does not hold the control loop: counted calls and queue sizes, never wall time.
"""

from __future__ import annotations

import io
import itertools
import math
import random
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest

from dashboards.records import Objective, StudySummary, TrialRecord, best_record
from nas import pareto, ray_backend
from nas.config import ConfigError, from_dict
from nas.search import run_search, summarise
from nas.search_progress import (
    REFRESH_ENV,
    REFRESH_EVERY_S,
    REFRESH_SHARE,
    Progress,
    TrackingThread,
    refresh_every_s,
)
from nas.study import tell_record
from tests.nas._study import tiny_config

OBJECTIVE_SETS = {
    "metric+vram": [Objective("val_accuracy", "maximize"), Objective("train_vram_mb", "minimize")],
    "three": [
        Objective("val_accuracy", "maximize"),
        Objective("train_vram_mb", "minimize"),
        Objective("gflops", "minimize"),
    ],
    "metric only": [Objective("val_accuracy", "maximize")],
    "two costs": [Objective("latency_ms", "minimize"), Objective("params", "minimize")],
}
STATUSES = ["complete"] * 6 + ["pruned", "failed", "infeasible", "oom"]


def random_records(rng: random.Random, n: int, objectives: list[Objective]) -> list[TrialRecord]:
    """Return ``n`` records in a random finishing order: coarse values (ties, duplicates),
    missing and non-finite objectives, negative metrics and costs at or below zero."""
    numbers = list(range(n))
    rng.shuffle(numbers)
    out: list[TrialRecord] = []
    for number in numbers:
        values: dict[str, float] = {}
        if out and rng.random() < 0.1:  # an exact duplicate of an earlier trial's point
            values = dict(rng.choice(out).objectives)
        else:
            size = rng.random()  # bigger models score better: a front of many trade-offs
            for o in objectives:
                draw = rng.random()
                if draw < 0.03:
                    continue  # missing
                if draw < 0.06:
                    values[o.name] = rng.choice([math.nan, math.inf, -math.inf])
                elif draw < 0.08:
                    values[o.name] = rng.choice([0.0, -0.0, -1.0, -0.05])
                elif o.direction == "maximize":
                    values[o.name] = round(math.sqrt(size) * rng.uniform(0.8, 1.0), 2)
                else:
                    values[o.name] = float(round(size * rng.uniform(300, 400)))
        costs: dict[str, Any] = {}
        if rng.random() < 0.8:
            costs["train_vram_mb"] = float(rng.randint(0, 3))  # ties broken by VRAM, then number
        out.append(
            TrialRecord(number=number, status=rng.choice(STATUSES), objectives=values, costs=costs)
        )
    return out


def fixed_reference(
    records: list[TrialRecord], objectives: list[Objective]
) -> dict[str, float] | None:
    """The study's reference point: fixed by the first candidate in ``records``' order."""
    first = next((r for r in records if pareto.front_candidates([r], objectives)), None)
    fixed = pareto.study_reference(objectives, {}, first)
    return fixed[0] if fixed else None


def old_line(records: list[TrialRecord], objectives: list[Objective], total: int) -> str:
    """The progress line as the driver computed it before (over all records), without time."""
    statuses = [r.status for r in records]
    failed = len(statuses) - sum(statuses.count(s) for s in ("complete", "pruned", "infeasible"))
    front = pareto.front_records(records, objectives)
    first = objectives[0]
    top = best_record(records, objectives)
    best = f"{top.objectives[first.name]:.4f}" if top is not None else "-"
    hv, _ = pareto.records_hypervolume(records, objectives, fixed_reference(records, objectives))
    return (
        f"[s] done {len(statuses)}/{total} · running 0 · "
        f"pruned {statuses.count('pruned')} · failed {failed} · "
        f"infeasible {statuses.count('infeasible')} · "
        f"front {len(front)} · best {first.name} {best} · HV {hv:.4g}"
    )


def old_summarise(
    records: list[TrialRecord], objectives: list[Objective]
) -> tuple[list[int], float, dict[str, float], list[tuple[int, float]], int | None]:
    """``summarise`` as it was: all-pairs front, a hypervolume per complete prefix (against the
    reference fixed by the lowest-numbered candidate, as for a study that stored none)."""
    front = pareto.front_records(records, objectives)
    first = fixed_reference(sorted(records, key=lambda r: r.number), objectives)
    hv, ref = pareto.records_hypervolume(records, objectives, first)
    complete = sorted((r for r in records if r.status == "complete"), key=lambda r: r.number)
    history = [
        (k, pareto.records_hypervolume(complete[:k], objectives, ref)[0])
        for k in range(1, len(complete) + 1)
    ]
    knee = pareto.knee_record(records, objectives)
    return [r.number for r in front], hv, ref, history, knee.number if knee else None


# -- (a) the incremental progress line equals the whole-study formulas --------------------------
@pytest.mark.parametrize("name", sorted(OBJECTIVE_SETS))
@pytest.mark.parametrize("seed", range(4))
def test_progress_prints_the_numbers_of_the_whole_study_formulas(name: str, seed: int) -> None:
    objectives = OBJECTIVE_SETS[name]
    rng = random.Random(f"{name}-{seed}")
    records = random_records(rng, 90 if name == "three" else 140, objectives)
    resumed = rng.randint(0, 20)  # trials of an earlier run, counted without a line
    stream = io.StringIO()
    progress = Progress("s", len(records), objectives, stream=stream)
    progress.extend(records[:resumed])
    old_history = []
    for k in range(resumed, len(records) + 1):
        if k > resumed:
            progress.add(records[k - 1])
            prefix = records[:k]
            n_complete = sum(r.status == "complete" for r in prefix)
            fixed = fixed_reference(prefix, objectives)
            old_history.append(
                (n_complete, pareto.records_hypervolume(prefix, objectives, fixed)[0])
            )
        prefix = records[:k]
        front = pareto.front_records(prefix, objectives)
        hv, ref = pareto.records_hypervolume(
            prefix, objectives, fixed_reference(prefix, objectives)
        )
        assert progress._front.hypervolume() == hv, k  # exactly, not approximately
        assert progress._front.reference() == ref, k
        assert [r.number for r in progress._front.front] == [r.number for r in front], k
        assert progress._front.best is best_record(prefix, objectives), k
        assert progress.line().rsplit(" · ", 1)[0] == old_line(prefix, objectives, len(records))
    assert progress.hv_history == old_history
    # one reference point for the whole study: the live hypervolume never falls
    values = [hv for _, hv in progress.hv_history]
    assert all(b >= a for a, b in itertools.pairwise(values)), values
    printed = stream.getvalue().splitlines()
    assert len(printed) == len(records) - resumed
    assert [p.rsplit(" · ", 1)[0] for p in printed[-1:]] == [
        old_line(records, objectives, len(records))
    ]


@pytest.mark.parametrize("name", sorted(OBJECTIVE_SETS))
@pytest.mark.parametrize("seed", range(3))
def test_summarise_equals_the_all_pairs_computation(name: str, seed: int) -> None:
    objectives = OBJECTIVE_SETS[name]
    records = random_records(random.Random(f"sum-{name}-{seed}"), 120, objectives)
    summary, front, hv, knee = summarise("s", records, objectives, {})
    numbers, old_hv, old_ref, old_history, old_knee = old_summarise(records, objectives)
    assert [r.number for r in front] == numbers
    assert hv == old_hv and summary.reference_point == old_ref
    assert summary.hypervolume_history == old_history
    assert (knee.number if knee else None) == old_knee == summary.knee_number
    assert {r.number for r in records if r.on_pareto_front} == set(numbers)


def test_running_front_with_a_fixed_reference() -> None:
    objectives = OBJECTIVE_SETS["metric+vram"]
    records = random_records(random.Random(7), 60, objectives)
    ref = {"val_accuracy": 0.0, "train_vram_mb": 250.0}
    running = pareto.RunningFront(objectives, ref)
    for k, record in enumerate(records, start=1):
        running.add(record)
        assert running.reference() == ref
        assert running.hypervolume() == pareto.records_hypervolume(records[:k], objectives, ref)[0]


# -- (b) the tracking thread: every record once, refreshes by time ------------------------------
class FakeTracker:
    """Records what the driver asks of a tracker and on which thread; can block or fail."""

    def __init__(self, fail_on: set[int] | None = None, gate: threading.Event | None = None):
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on or set()
        self.gate = gate  # log_trial waits for it
        self.entered = threading.Event()  # log_trial was called at least once
        self.finish_saw_thread_alive: bool | None = None

    def start(self) -> str:
        self.calls.append(("start", None))
        return "parent"

    def log_trial(self, record: TrialRecord) -> bool:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(60)
        self.calls.append(("log_trial", record.number))
        if record.number in self.fail_on:
            raise RuntimeError(f"store refused {record.number}")
        return True

    def refresh(self, records: list[TrialRecord], summary: StudySummary) -> bool:
        self.threads.add(threading.current_thread().name)
        self.calls.append(("refresh", sorted(r.number for r in records)))
        return True

    def finish(self, records: list[TrialRecord], summary: StudySummary, status: str) -> bool:
        alive = [t.name for t in threading.enumerate() if t.name == "fsnas-tracking"]
        self.finish_saw_thread_alive = bool(alive)
        self.calls.append(("finish", (sorted(r.number for r in records), status)))
        return True

    def log_weights(self, records: list[TrialRecord]) -> int:
        self.calls.append(("log_weights", None))
        return 0

    def logged(self) -> list[int]:
        return [n for kind, n in self.calls if kind == "log_trial"]

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


def _summary_of(records: list[TrialRecord]) -> StudySummary:
    return StudySummary("s", list(OBJECTIVE_SETS["metric+vram"]))


def _records(numbers: range) -> list[TrialRecord]:
    return [
        TrialRecord(n, "complete", objectives={"val_accuracy": 0.5, "train_vram_mb": 10.0 + n})
        for n in numbers
    ]


def test_tracking_thread_logs_backlog_and_records_once_each() -> None:
    tracker = FakeTracker()
    thread = TrackingThread(tracker, _summary_of, _records(range(3)), refresh_every_s=1e9)
    thread.start()
    for record in _records(range(3, 40)):
        thread.submit(record)
    thread.close()
    assert tracker.logged() == list(range(40))  # the backlog first, then in arrival order
    assert "refresh" not in tracker.kinds()  # not due yet: the end refresh is finish's
    assert tracker.threads == {"fsnas-tracking"}
    assert [r.number for r in thread.records] == list(range(40))
    thread.submit(_records(range(40, 41))[0])  # after close: left to finish, never blocks
    assert thread.queued == 0


def test_tracking_thread_refreshes_by_elapsed_time() -> None:
    now = [0.0]

    class Ticking(FakeTracker):
        def log_trial(self, record: TrialRecord) -> bool:
            now[0] += 10.0  # each trial's logging "takes" 10 s of the fake clock
            return super().log_trial(record)

    tracker = Ticking()
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=25.0, clock=lambda: now[0])
    for record in _records(range(7)):
        thread.submit(record)  # queued before the thread starts: nothing waits on real time
    thread.start()
    thread.close()
    # due at 25 s: after the 3rd trial (30 s); then 25 s after that refresh: after the 6th
    refreshes = [payload for kind, payload in tracker.calls if kind == "refresh"]
    assert refreshes == [[0, 1, 2], [0, 1, 2, 3, 4, 5]]
    assert thread.refreshes == 2
    assert tracker.logged() == list(range(7))


def test_a_slow_refresh_stretches_the_gap_to_keep_its_share_of_the_time() -> None:
    now = [0.0]

    class SlowPlots(FakeTracker):
        def log_trial(self, record: TrialRecord) -> bool:
            now[0] += 10.0
            return super().log_trial(record)

        def refresh(self, records: list[TrialRecord], summary: StudySummary) -> bool:
            now[0] += 5.0  # the plots of a large study: 5 s, so the next gap is 5 / share
            return super().refresh(records, summary)

    tracker = SlowPlots()
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=25.0, clock=lambda: now[0])
    for record in _records(range(14)):
        thread.submit(record)
    thread.start()
    thread.close()
    gap = 5.0 / REFRESH_SHARE
    assert gap == 100.0  # > refresh_every_s: the refresh's cost sets the gap
    refreshes = [payload for kind, payload in tracker.calls if kind == "refresh"]
    # due at 25 s: after trial 2 (30 s), ending at 35 s; next due at 135 s, which trial 12's
    # logging reaches (35 + 10 * 10); without the stretch it would be after trial 5
    assert [r[-1] for r in refreshes] == [2, 12]
    assert tracker.logged() == list(range(14))


def test_refresh_every_trial_with_zero() -> None:
    tracker = FakeTracker()
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=0.0)
    for record in _records(range(4)):
        thread.submit(record)
    thread.start()
    thread.close()
    assert tracker.kinds() == ["log_trial", "refresh"] * 4


def test_a_tracker_that_raises_is_one_warning_and_logging_goes_on() -> None:
    tracker = FakeTracker(fail_on={1, 2})
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=1e9)
    thread.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for record in _records(range(5)):
            thread.submit(record)
        thread.close()
    assert tracker.logged() == [0, 1, 2, 3, 4]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "could not log trial 1" in messages[0]


def test_refresh_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REFRESH_ENV, raising=False)
    assert refresh_every_s() == REFRESH_EVERY_S == 30.0
    monkeypatch.setenv(REFRESH_ENV, "0")
    assert refresh_every_s() == 0.0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(REFRESH_ENV, bad)
        with pytest.raises(ConfigError, match=REFRESH_ENV):
            refresh_every_s()


# -- (c) a slow tracker does not hold the control loop ------------------------------------------
def test_submit_returns_while_log_trial_is_blocked() -> None:
    gate = threading.Event()
    tracker = FakeTracker(gate=gate)
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=1e9)
    thread.start()
    for record in _records(range(50)):
        thread.submit(record)  # the control loop's call: returns with log_trial still blocked
    assert tracker.entered.wait(60)
    assert tracker.logged() == []  # not one log_trial has returned yet
    assert thread.queued == 49  # one record is in the blocked log_trial, the rest wait
    gate.set()
    thread.close()
    assert tracker.logged() == list(range(50))


def test_a_full_queue_blocks_the_loop_and_drops_nothing() -> None:
    gate = threading.Event()
    tracker = FakeTracker(gate=gate)
    thread = TrackingThread(tracker, _summary_of, refresh_every_s=1e9, maxsize=2)
    thread.start()

    def control_loop() -> None:
        for record in _records(range(6)):
            thread.submit(record)

    loop = threading.Thread(target=control_loop)
    loop.start()
    assert tracker.entered.wait(60)
    for _ in range(600):  # until the queue is full (record 0 is in log_trial)
        if thread.queued == 2:
            break
        time.sleep(0.1)
    assert thread.queued == 2
    assert loop.is_alive()  # records 3..5 cannot be anywhere: the loop waits, it does not drop
    gate.set()
    loop.join(60)
    thread.close()
    assert tracker.logged() == list(range(6))


# -- run_search: queue from the loop, drain, then finish ----------------------------------------
def _fake_backend(
    count: int,
    interrupt: bool = False,
    during: Any = None,
) -> Any:
    """A ray_backend.run that tells Optuna ``count`` trials and hands each to ``on_record``."""

    def run(*, config: Any, storage: Any, objectives: Any, on_record: Any, **_: Any) -> str:
        study = optuna.load_study(study_name=config.study, storage=storage)
        names = [o.name for o in objectives]
        for i in range(count):
            trial = study.ask()
            record = TrialRecord(
                trial.number,
                "complete",
                objectives={names[0]: 0.1 * (i + 1), names[1]: 100.0 - i},
            )
            tell_record(study, trial, record, names)
            on_record(record)
        if during is not None:
            during()
        if interrupt:
            raise KeyboardInterrupt
        return "experiment"

    return run


def _config(tmp_path: Path, trials: int) -> Any:
    raw = tiny_config(
        tmp_path,
        study="loop",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        search={"trials": trials, "early_stopping": {"enabled": False}},
    )
    return from_dict(raw)


def test_run_search_logs_off_the_loop_and_finishes_after_the_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    tracker = FakeTracker(gate=gate)
    seen: dict[str, Any] = {}

    def while_blocked() -> None:  # still inside the "control loop", every on_record returned
        seen["logged"] = list(tracker.logged())
        seen["entered"] = tracker.entered.wait(60)
        gate.set()

    monkeypatch.setattr(ray_backend, "run", _fake_backend(5, during=while_blocked))
    monkeypatch.setenv(REFRESH_ENV, "1000000")
    outcome = run_search(
        _config(tmp_path, 5), stream=io.StringIO(), tracker_factory=lambda c: tracker
    )
    assert seen == {"logged": [], "entered": True}  # five on_record calls, none waited
    assert len(outcome.records) == 5
    assert tracker.logged() == [0, 1, 2, 3, 4]  # each exactly once
    assert tracker.threads == {"fsnas-tracking"}
    assert tracker.kinds() == ["start"] + ["log_trial"] * 5 + ["finish", "log_weights"]
    assert tracker.calls[-2] == ("finish", ([0, 1, 2, 3, 4], "FINISHED"))
    assert tracker.finish_saw_thread_alive is False  # finish only after the thread stopped


def test_an_interrupted_search_drains_before_finishing_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, 6)
    first = FakeTracker()
    monkeypatch.setattr(ray_backend, "run", _fake_backend(3, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        run_search(config, stream=io.StringIO(), tracker_factory=lambda c: first)
    assert first.logged() == [0, 1, 2]
    assert first.calls[-2] == ("finish", ([0, 1, 2], "KILLED"))
    assert first.finish_saw_thread_alive is False

    # the resume logs the kept trials again on the thread (the real tracker finds their runs)
    second = FakeTracker()
    monkeypatch.setattr(ray_backend, "run", _fake_backend(3))
    outcome = run_search(config, stream=io.StringIO(), tracker_factory=lambda c: second)
    assert len(outcome.records) == 6
    assert second.logged() == [0, 1, 2, 3, 4, 5]
    assert second.threads == {"fsnas-tracking"}
    assert second.calls[-2] == ("finish", ([0, 1, 2, 3, 4, 5], "FINISHED"))
