"""Throughput: fsnas's own per-trial cost against Ray Tune's and Optuna's floors, in one run.

Four parts, each in its own fresh Python process (Ray starts fresh; nothing is shared), the
same number of trials ``N`` (``--trials``, default 2000) and the same kind of sampler
(multi-objective TPE, ``multivariate=True, group=True``, seed 0):

1. ``fsnas-mlflow``: near-zero-work trials through the real driver ``nas.search.run_search``:
   the embedded synthetic data (4 clips per class, 16 mels, 0.5 s clips), 1 epoch, a tiny
   space (the tests' one), the TPE sampler, a fresh SQLite study, 2 CPUs with 1 per trial
   (2 slots), reused actors, no early stopping, no kept weights, and MLflow tracking on (a
   local SQLite store). A trial's finish time is when its ``[study] done K/N · running R``
   progress line is written (``run_search(stream=...)`` gets a writer that timestamps lines).
2. ``fsnas-no-mlflow``: the same with ``tracking_uri: none``.
3. ``ray-floor``: Ray Tune + ``ray.tune.search.optuna.OptunaSearch`` (in-memory storage,
   metric ["a", "b"], mode ["max", "min"], a define-by-run space with fsnas-like conditional
   categorical/int parameters), a trainable that only calls ``tune.report``, reused actors,
   ``max_concurrent_trials=2`` on 2 CPUs; finish time from a ``tune.Callback``.
4. ``optuna``: the same sampler and space, ask + tell on an in-memory study, no Ray, no fsnas.

Every part yields the finish times ``t_1 .. t_N`` (seconds since the part's start: the
``run_search`` call, ``ray.init``, or the first ask). With ``q = max(2, N // 4)``:
start-up = ``t_1``; first quarter = ``(t_q - t_1) / (q - 1)``; steady (middle half) =
``(t_{N-q} - t_q) / (N - 2q)``; last quarter = ``(t_N - t_{N-q}) / q`` seconds per trial
(wall time per finished trial, both slots together). Goals of the issue (printed, never
asserted): fsnas steady <= 0.25 s/trial and <= 5x the Ray floor, with MLflow on; last / first
quarter <= 1.25, or its growth in seconds no more than Optuna alone's own growth.

Usage: python benchmarks/throughput.py [--trials N] [--parts PART ...] [--out FILE] [--quick]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

DEFAULT_TRIALS = 2000
QUICK_TRIALS = 8
MIN_TRIALS = 6
SLOTS = 2  # resources.num_cpus 2 / cpus_per_trial 1; the floor's max_concurrent_trials
PARTS = ("fsnas-mlflow", "fsnas-no-mlflow", "ray-floor", "optuna")
# the order they run in: cheapest first, so a broken fsnas part still leaves the floors
RUN_ORDER = ("optuna", "ray-floor", "fsnas-mlflow", "fsnas-no-mlflow")
STEADY_GOAL_S = 0.25
FLOOR_RATIO_GOAL = 5.0
GROWTH_GOAL = 1.25
DATA = "synthetic:clips_per_class=4,seed=0"
# tests/nas/_study.py's TINY_SPACE: a front end of at most one branch, a body of 0-2 blocks
SPACE: dict[str, Any] = {
    "max_branches": 1,
    "max_depth": 2,
    "branch_channels": [4, 8],
    "block_channels": [4, 8],
    "branch_widths": [1, 3, 7],
}
# Progress.line in nas/search_progress.py: "[study] done K/N · running R · pruned ..."
DONE_LINE = re.compile(r"\bdone (\d+)/(\d+)\b")
RUNNING = re.compile(r"\brunning (\d+)\b")


# -- statistics of finish times ------------------------------------------------------------------
def quarter_stats(done_at_s: list[float]) -> dict[str, float | None]:
    """Return start-up and s/trial in the first quarter, middle half and last quarter.

    ``done_at_s``: finish times in seconds since the part started, in finish order. The first
    finish carries the start-up; each quarter's cost is the wall time between finish events
    whose later event lies in it, divided by their number (see the module docstring).
    """
    t = sorted(done_at_s)
    n = len(t)
    out: dict[str, float | None] = {
        "startup_s": t[0] if n else None,
        "first_quarter_s_per_trial": None,
        "steady_s_per_trial": None,
        "last_quarter_s_per_trial": None,
        "last_over_first": None,
    }
    if n < MIN_TRIALS:
        return out
    q = max(2, n // 4)
    first = (t[q - 1] - t[0]) / (q - 1)
    steady = (t[n - q - 1] - t[q - 1]) / (n - 2 * q)
    last = (t[n - 1] - t[n - q - 1]) / q
    out["first_quarter_s_per_trial"] = first
    out["steady_s_per_trial"] = steady
    out["last_quarter_s_per_trial"] = last
    out["last_over_first"] = last / first if first > 0 else None
    return out


def middle_mean(values: list[float]) -> float | None:
    """Return the mean of the middle half of ``values`` (all of them below ``MIN_TRIALS``)."""
    n = len(values)
    if n == 0:
        return None
    q = max(2, n // 4) if n >= MIN_TRIALS else 0
    return statistics.fmean(values[q : n - q])


def running_stats(events: list[tuple[float, int]], end_s: float | None) -> dict[str, Any]:
    """Return the most trials seen running at once and the time-weighted mean until ``end_s``.

    ``events``: (seconds, trials running from then on), in time order; the mean runs from the
    first event to ``end_s`` (the last finish).
    """
    if not events:
        return {"max_running": None, "mean_running": None}
    peak = max(n for _, n in events)
    if end_s is None or end_s <= events[0][0]:
        return {"max_running": peak, "mean_running": None}
    area = 0.0
    for (t0, n), (t1, _) in zip(events, [*events[1:], (end_s, 0)]):
        area += n * max(0.0, min(t1, end_s) - t0)
    return {"max_running": peak, "mean_running": area / (end_s - events[0][0])}


class StampedStream(io.TextIOBase):
    """A text stream that notes when each ``done K/N`` progress line is written.

    ``run_search(stream=...)`` prints its progress line once per finished trial; this keeps
    ``done_at[K]`` (seconds since ``started``) and the ``running R`` count of each line, and
    passes every line on to ``echo`` (a log file) if given.
    """

    def __init__(self, started: float, echo: Any = None) -> None:
        super().__init__()
        self.started = started
        self.echo = echo
        self.done_at: dict[int, float] = {}
        self.running: list[int] = []
        self.total: int | None = None
        self.other_lines = 0
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.monotonic() - self.started
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self._line(line, now)
        return len(text)

    def _line(self, line: str, now: float) -> None:
        if self.echo is not None:
            self.echo.write(f"{now:10.3f} {line}\n")
        done = DONE_LINE.search(line)
        if done is None:
            self.other_lines += 1
            return
        k = int(done.group(1))
        self.total = int(done.group(2))
        self.done_at.setdefault(k, now)
        running = RUNNING.search(line)
        if running is not None:
            self.running.append(int(running.group(1)))

    def done_times(self) -> list[float]:
        """Return the finish times in order of K."""
        return [self.done_at[k] for k in sorted(self.done_at)]


# -- the define-by-run space of the floors -----------------------------------------------------
def floor_space(trial: Any) -> None:
    """Sample fsnas-like conditional parameters (8-17 per trial, like the tiny fsnas space)."""
    trial.suggest_categorical("input_norm", ["none", "bn"])
    branches = trial.suggest_int("n_branches", 0, 1)
    for i in range(branches):
        trial.suggest_categorical("frontend_freq_reduce", ["max", "mean"])
        trial.suggest_categorical(f"branch{i}_height", [1, 3, 5, 7])
        trial.suggest_categorical(f"branch{i}_width", [1, 3, 7])
        trial.suggest_categorical(f"branch{i}_channels", [4, 8])
    depth = trial.suggest_int("depth" if branches else "depth_no_frontend", 0 if branches else 1, 2)
    for j in range(depth):
        trial.suggest_categorical(f"block{j}_height", [1, 3, 5])
        trial.suggest_categorical(f"block{j}_width", [1, 3, 5])
        trial.suggest_categorical(f"block{j}_channels", [4, 8])
        trial.suggest_categorical(f"block{j}_pool_type", ["max", "mean"])
        trial.suggest_int(f"block{j}_pool_size", 2, 4)
    trial.suggest_categorical("head_time_pooling", ["max", "mean", "max+mean"])


def tpe_sampler(seed: int = 0) -> Any:
    """Return the floors' sampler: multi-objective TPE, multivariate and grouped, seeded."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed)


# -- the parts (each runs in its own process: ``--child PART``) ---------------------------------
@dataclass
class PartResult:
    """What a part's process hands back: finish times and what else it saw."""

    part: str
    trials: int
    done_at_s: list[float]
    wall_s: float
    running_events: list[tuple[float, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() when the part's clock started (done_at_s counts from it)
    started_monotonic: float = 0.0


def fsnas_overrides(trials: int, workdir: Path, mlflow: bool) -> dict[str, Any]:
    """Return the ``load_config`` overrides of an fsnas part (all state under ``workdir``)."""
    return {
        "study": "throughput",
        "storage": f"sqlite:///{workdir / 'studies.db'}",
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}" if mlflow else "none",
        "ray_dir": str(workdir / "ray"),
        "weights_dir": str(workdir / "weights"),
        "data.source": DATA,
        "data.features.n_mels": 16,
        "data.features.clip_seconds": 0.5,
        "data.cache_dir": str(workdir / "cache"),
        "space": dict(SPACE),
        "train.epochs": 1,
        "search.trials": trials,
        "search.sampler": "tpe",
        "search.seed": 0,
        "search.keep_weights": "none",
        "search.early_stopping.enabled": False,
        "resources.num_cpus": 2,
        "resources.cpus_per_trial": 1,
        "resources.reuse_actors": True,
    }


def run_fsnas(trials: int, workdir: Path, mlflow: bool) -> PartResult:
    """Run a search of ``trials`` near-zero-work trials through ``run_search``; time each."""
    from nas.config import load_config

    overrides = fsnas_overrides(trials, workdir, mlflow)
    part = "fsnas-mlflow" if mlflow else "fsnas-no-mlflow"
    return run_driver(load_config(None, overrides), part, trials, workdir, {"config": overrides})


def run_driver(
    config: Any, part: str, trials: int, workdir: Path, extra: dict[str, Any] | None = None
) -> PartResult:
    """Run the search of ``config`` through ``run_search``; time each finished trial.

    The fsnas parts here and ``gpu_throughput.py``'s share it; ``extra`` is added to the
    result's ``extra``. The progress lines go to ``<workdir>/progress.log``, timestamped.
    """
    from nas import search, search_progress

    events: list[tuple[float, int]] = []
    started = 0.0  # set at the run_search call below (set_running reads it when called)
    # how many trials train, as the backend tells the driver (fuller than the progress line,
    # which shows the count at each finish); a benchmark-side wrapper, nas is not changed
    original = getattr(search_progress.Progress, "set_running", None)
    if original is not None:

        def set_running(self: Any, running: int) -> None:
            if not events or events[-1][1] != running:
                events.append((time.monotonic() - started, running))
            original(self, running)

        search_progress.Progress.set_running = set_running  # type: ignore[method-assign]
    with (workdir / "progress.log").open("w", encoding="utf-8") as log:
        stream = StampedStream(started, echo=log)
        started = stream.started = time.monotonic()
        outcome = search.run_search(config, stream=stream)  # type: ignore[arg-type]
        wall_s = time.monotonic() - started
    statuses: dict[str, int] = {}
    for record in outcome.records:
        statuses[record.status] = statuses.get(record.status, 0) + 1
    done = stream.done_times()
    # the trial function's own time in the worker (fit with its costs) and its epochs' time,
    # in Optuna trial order (about the finish order)
    ordered = sorted(outcome.records, key=lambda r: r.number)
    seconds = [r.seconds for r in ordered]
    epochs = [sum(float(row.get("seconds", 0.0)) for row in r.history) for r in ordered]
    # proposals that repeated a known design are Optuna trials too: the sampler's study is
    # this much larger than the trial count (RepeatGuard answers them without training)
    import optuna

    optuna_trials = len(optuna.load_study(study_name=config.study, storage=config.storage).trials)
    return PartResult(
        part=part,
        trials=trials,
        done_at_s=done,
        wall_s=wall_s,
        running_events=events,
        started_monotonic=started,
        extra={
            "statuses": statuses,
            "records": len(outcome.records),
            "repeats_answered": getattr(outcome, "repeats", None),
            "optuna_trials_in_study": optuna_trials,
            "trial_function_s_mean": statistics.fmean(seconds) if seconds else None,
            "trial_function_s_median": statistics.median(seconds) if seconds else None,
            # the middle half, as the steady s/trial (the first trials pay worker warm-up)
            "trial_function_s_steady": middle_mean(seconds),
            "epochs_s_steady": middle_mean(epochs),
            "max_running_in_progress_line": max(stream.running, default=None),
            "return_after_last_finish_s": wall_s - done[-1] if done else None,
            **(extra or {}),
        },
    )


def run_ray_floor(trials: int, workdir: Path) -> PartResult:
    """Run ``trials`` trivial trials on Ray Tune + OptunaSearch (TPE); time each completion."""
    import random

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    warnings.filterwarnings("ignore", message="Define-by-run function passed", category=UserWarning)
    started = time.monotonic()
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    done_at: list[float] = []
    events: list[tuple[float, int]] = []

    class Stamp(tune.Callback):
        def on_trial_start(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            self._running(trials)

        def on_step_end(self, iteration: int, trials: Any, **info: Any) -> None:
            self._running(trials)

        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            done_at.append(time.monotonic() - started)

        def _running(self, trials: Any) -> None:
            running = sum(1 for t in trials if t.status == "RUNNING")
            if not events or events[-1][1] != running:
                events.append((time.monotonic() - started, running))

    def trivial(config: dict[str, Any]) -> None:
        tune.report({"a": random.random(), "b": random.random()})

    ray.init(
        address="local",  # never a cluster already running here (see benchlib.run_cli_search)
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    init_s = time.monotonic() - started
    try:
        searcher = OptunaSearch(
            space=floor_space, metric=["a", "b"], mode=["max", "min"], sampler=tpe_sampler(0)
        )
        tuner = tune.Tuner(
            tune.with_resources(trivial, {"CPU": 1}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=trials,
                max_concurrent_trials=2,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=str(workdir / "ray"), verbose=0, callbacks=[Stamp()]
            ),
        )
        errors = tuner.fit().num_errors
    finally:
        ray.shutdown()
    return PartResult(
        part="ray-floor",
        trials=trials,
        done_at_s=done_at,
        wall_s=time.monotonic() - started,
        running_events=events,
        extra={"ray_init_s": init_s, "errors": errors},
    )


def run_optuna(trials: int) -> PartResult:
    """Ask and tell ``trials`` trials of an in-memory TPE study; time each ask + tell."""
    import random

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=tpe_sampler(0))
    done_at: list[float] = []
    started = time.monotonic()
    for _ in range(trials):
        trial = study.ask()
        floor_space(trial)
        study.tell(trial, [rng.random(), rng.random()])
        done_at.append(time.monotonic() - started)
    return PartResult(
        part="optuna", trials=trials, done_at_s=done_at, wall_s=time.monotonic() - started
    )


def run_part(part: str, trials: int, workdir: Path) -> PartResult:
    """Run one part in this process (the parent starts a fresh process per part)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if part in ("fsnas-mlflow", "fsnas-no-mlflow"):
        return run_fsnas(trials, workdir, mlflow=part == "fsnas-mlflow")
    if part == "ray-floor":
        return run_ray_floor(trials, workdir)
    if part == "optuna":
        return run_optuna(trials)
    raise ValueError(f"unknown part {part!r}")


def child_main(part: str, trials: int, workdir: Path, raw_out: Path) -> int:
    """The body of ``--child``: run the part, write its raw finish times as JSON."""
    result = run_part(part, trials, workdir)
    raw_out.write_text(json.dumps(result.__dict__), encoding="utf-8")
    return 0


# -- the parent: a fresh process per part, the table, the JSON ---------------------------------
def spawn_part(
    part: str,
    trials: int,
    workdir: Path,
    timeout_s: float,
    script: Path | None = None,
    child_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run one part as ``python throughput.py --child PART`` and return its summary.

    ``script`` (default this file) and its extra ``child_args``: ``gpu_throughput.py`` runs
    its parts the same way.
    """
    part_dir = workdir / part
    part_dir.mkdir(parents=True, exist_ok=True)
    raw = part_dir / "raw.json"
    log_path = part_dir / "output.log"
    argv = [
        sys.executable,
        str(script or Path(__file__).resolve()),
        "--child",
        part,
        "--trials",
        str(trials),
        "--workdir",
        str(part_dir),
        "--raw-out",
        str(raw),
        *(child_args or []),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_ADDRESS="local")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(benchlib.REPO), env.get("PYTHONPATH")]))
    print(f"-- {part}: {trials} trials, log {log_path}", file=sys.stderr)
    load_start = benchlib.load_average()
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            # cwd: an MLflow store's default artifact folder and Ray's files stay in the temp dir
            proc = subprocess.run(
                argv, cwd=part_dir, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s
            )
            returncode: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = "timeout"
    process_s = time.monotonic() - started
    summary: dict[str, Any] = {
        "part": part,
        "trials": trials,
        "returncode": returncode,
        "process_s": round(process_s, 2),
        "load_average_start": load_start,
        "load_average_end": benchlib.load_average(),
    }
    if returncode != 0 or not raw.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        summary["ok"] = False
        summary["output_tail"] = "\n".join(tail)
        print(
            f"-- {part} failed ({returncode}); log {log_path}:\n" + "\n".join(tail), file=sys.stderr
        )
        return summary
    result = json.loads(raw.read_text(encoding="utf-8"))
    done = result["done_at_s"]
    stats = quarter_stats(done)
    events = [(float(t), int(n)) for t, n in result["running_events"]]
    extra = result["extra"]
    complete = len(done) == trials
    if "statuses" in extra:
        complete = complete and extra["statuses"].get("complete", 0) == trials
    if "errors" in extra:
        complete = complete and extra["errors"] == 0
    summary.update(
        {
            "ok": True,
            "all_trials_finished_cleanly": complete,
            "finished": len(done),
            "wall_s": round(result["wall_s"], 3),
            **{k: None if v is None else round(v, 5) for k, v in stats.items()},
            **running_stats(events, done[-1] if done else None),
            **extra,
            "done_at_s": [round(t, 4) for t in done],
        }
    )
    if summary["mean_running"] is not None:
        summary["mean_running"] = round(summary["mean_running"], 3)
    print(f"-- {part}: {process_s:.0f} s", file=sys.stderr)
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(parts: dict[str, dict[str, Any]]) -> str:
    """Return the stdout table: one row per part that ran."""
    head = (
        f"{'part':<16} {'N':>6} {'start-up s':>10} {'first ¼ s/tr':>12} {'steady s/tr':>11} "
        f"{'last ¼ s/tr':>11} {'last/first':>10} {'max run':>7} {'mean run':>8} {'wall s':>8}"
    )
    lines = [head, "-" * len(head)]
    for name in PARTS:
        p = parts.get(name)
        if p is None:
            continue
        if not p.get("ok"):
            lines.append(f"{name:<16} {p['trials']:>6} failed ({p['returncode']})")
            continue
        lines.append(
            f"{name:<16} {p['finished']:>6} {_fmt(p['startup_s'], 2):>10} "
            f"{_fmt(p['first_quarter_s_per_trial'], 4):>12} {_fmt(p['steady_s_per_trial'], 4):>11} "
            f"{_fmt(p['last_quarter_s_per_trial'], 4):>11} {_fmt(p['last_over_first'], 2):>10} "
            f"{_fmt(p['max_running']):>7} {_fmt(p['mean_running'], 2):>8} "
            f"{_fmt(p['wall_s'], 1):>8}"
        )
    return "\n".join(lines)


def _value(parts: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    p = parts.get(name)
    if not p or not p.get("ok"):
        return None
    value = p.get(key)
    return float(value) if value is not None else None


def comparisons(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return fsnas's steady cost over the Ray floor's and each part's growth in seconds."""
    floor = _value(parts, "ray-floor", "steady_s_per_trial")
    out: dict[str, Any] = {}
    for name in ("fsnas-mlflow", "fsnas-no-mlflow"):
        steady = _value(parts, name, "steady_s_per_trial")
        out[f"{name}_steady_over_ray_floor"] = (
            None if steady is None or not floor else round(steady / floor, 3)
        )
        trial_s = _value(parts, name, "trial_function_s_steady")
        # 2 slots: a slot turns over every 2 x steady seconds; what the trial function does not
        # spend of that is framework time (driver, Ray, Optuna, MLflow, worker set-up)
        out[f"{name}_slot_s"] = None if steady is None else round(SLOTS * steady, 4)
        out[f"{name}_slot_outside_trial_function_s"] = (
            None if steady is None or trial_s is None else round(SLOTS * steady - trial_s, 4)
        )
    for name in PARTS:
        first = _value(parts, name, "first_quarter_s_per_trial")
        last = _value(parts, name, "last_quarter_s_per_trial")
        out[f"{name}_growth_s_per_trial"] = (
            None if first is None or last is None else round(last - first, 5)
        )
    return out


def goals(parts: dict[str, dict[str, Any]], comp: dict[str, Any], trials: int) -> list[dict]:
    """Return the issue's three acceptance rows (fsnas with MLflow on; None: did not run)."""
    on, off = "fsnas-mlflow", "fsnas-no-mlflow"
    steady = _value(parts, on, "steady_s_per_trial")
    steady_off = _value(parts, off, "steady_s_per_trial")
    floor = _value(parts, "ray-floor", "steady_s_per_trial")
    ratio = comp.get(f"{on}_steady_over_ray_floor")
    growth = _value(parts, on, "last_over_first")
    added = comp.get(f"{on}_growth_s_per_trial")
    optuna_growth = _value(parts, "optuna", "last_over_first")
    optuna_added = comp.get("optuna_growth_s_per_trial")
    off_text = "" if steady_off is None else f" (MLflow off {steady_off:.3f})"
    rows = [
        benchlib.goal_row(
            f"fsnas steady cost <= {STEADY_GOAL_S} s/trial, MLflow on (near-zero-work trials, "
            "2 slots, TPE)",
            "n/a (not run)" if steady is None else f"{steady:.3f} s/trial{off_text}, N={trials}",
            None if steady is None else steady <= STEADY_GOAL_S,
        ),
        benchlib.goal_row(
            f"fsnas steady cost <= {FLOOR_RATIO_GOAL:g}x the Ray Tune + OptunaSearch floor, "
            "MLflow on",
            "n/a (not run)"
            if ratio is None or steady is None or floor is None
            else f"{ratio:.2f}x ({steady:.3f} vs {floor:.3f} s/trial), N={trials}",
            None if ratio is None else ratio <= FLOOR_RATIO_GOAL,
        ),
    ]
    growth_met: bool | None = None
    if growth is not None:
        growth_met = growth <= GROWTH_GOAL or (
            added is not None and optuna_added is not None and added <= optuna_added
        )
    optuna_text = (
        ""
        if optuna_growth is None or optuna_added is None
        else f"; Optuna alone {optuna_growth:.2f} ({optuna_added:+.4f} s)"
    )
    rows.append(
        benchlib.goal_row(
            f"no slow-down with study size: fsnas last / first quarter <= {GROWTH_GOAL}, or its "
            "growth in s/trial <= Optuna alone's (MLflow on)",
            "n/a (not run)"
            if growth is None or added is None
            else f"{growth:.2f} ({added:+.4f} s/trial){optuna_text}, N={trials}",
            growth_met,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts (all by default), print the table and goals, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=None, help=f"default {DEFAULT_TRIALS}")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="default: all")
    parser.add_argument("--out", type=Path, default=None, help="the JSON result file")
    parser.add_argument("--out-dir", type=Path, default=None, help="write throughput.json here")
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_TRIALS} trials")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per part")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp folder")
    # internal: run one part in this process
    parser.add_argument("--child", choices=PARTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    trials = args.trials or (QUICK_TRIALS if args.quick else DEFAULT_TRIALS)
    if trials < MIN_TRIALS:
        parser.error(f"--trials: at least {MIN_TRIALS} (quarters of 2 or more trials)")
    if args.child:
        if args.workdir is None or args.raw_out is None:
            parser.error("--child needs --workdir and --raw-out")
        return child_main(args.child, trials, args.workdir, args.raw_out)

    out = args.out or (args.out_dir or benchlib.RESULTS_DIR) / "throughput.json"
    chosen = [p for p in RUN_ORDER if p in (args.parts or PARTS)]
    run = benchlib.BenchRun(out.stem)
    workdir = benchlib.temp_workdir("throughput")
    parts = {part: spawn_part(part, trials, workdir, args.timeout_s) for part in chosen}
    comp = comparisons(parts)
    rows = goals(parts, comp, trials)
    print(table(parts))
    print()
    for name in ("fsnas-mlflow", "fsnas-no-mlflow"):
        ratio = comp[f"{name}_steady_over_ray_floor"]
        slot = comp[f"{name}_slot_s"]
        outside = comp[f"{name}_slot_outside_trial_function_s"]
        if slot is not None and outside is not None:
            trial_s = parts[name]["trial_function_s_steady"]
            epochs_s = parts[name].get("epochs_s_steady") or 0.0
            print(
                f"{name}: slot turnover {SLOTS} x steady = {slot:.3f} s = trial function "
                f"{trial_s:.3f} s (its 1 epoch {epochs_s:.3f} s) + {outside:.3f} s outside it "
                "(middle half)"
            )
        if ratio is not None:
            print(f"{name} steady / ray-floor steady: {ratio:.2f}x")
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "NOT RUN"}[row["met"]]
        print(f"{verdict}: {row['goal']}: {row['measured']}")
    failed = [name for name, p in parts.items() if not p.get("ok")]
    payload = {
        "quick": args.quick or trials < DEFAULT_TRIALS,
        "what": __doc__.split("\n\n")[1].strip() if __doc__ else "",
        "trials": trials,
        "parts_run": chosen,
        "parts": parts,
        "comparisons": comp,
        "goals": rows,
        "workdir": str(workdir) if args.keep_workdir or failed else None,
    }
    benchlib.write_result(run, payload, out.parent)
    if args.keep_workdir or failed:
        print(f"kept {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
