"""GPU throughput: trials/hour and sampled GPU utilisation, ``--gpus-per-trial auto`` against 1.

Two searches through the real driver ``nas.search.run_search``, each in its own fresh Python
process (``throughput.run_driver``, the code of throughput.py's fsnas parts): FSDD (the
features of ``configs/fsdd.yaml``: 8 kHz, 64 mels × 101 frames, official split), a small space
of small designs (at most one front-end branch and two blocks of 8-32 channels), 20 epochs
without early stopping, multi-objective TPE (seed 0), no warm start, no kept weights,
``tracking_uri: none``, one CPU per trial, reused actors, ``N`` trials (``--trials``) and a
time budget per search (``--search-budget-s``; trials in flight finish). The first search has
``resources.gpus_per_trial: auto`` (each trial's share from its VRAM estimate, 1/8 to 1 GPU),
the second ``1`` (one trial at a time per GPU). FSDD's features are computed once beforehand
(a separate process), so neither search pays the extraction.

For each: trials/hour over the steady middle half (3600 / steady s/trial, throughput.py's
quarter statistics of the ``done K/N`` finish times) and end to end (finished trials over the
``run_search`` call's wall time, Ray's start included); the most and the time-weighted mean of
the trials training at once; and the GPU as ``nvidia-smi --query-gpu=timestamp,index,
utilization.gpu,memory.used -lms 500`` sees it in the background during the search: mean,
median and p90 of utilization.gpu (the share of each 0.5 s sample in which a kernel ran; the
mean over the GPUs of a sample) over the steady window and over the whole search, and the
peak memory.used (MiB, summed over GPUs; before the search too). Goal (gpu_bench.py's packing
goal): auto >= 3x the trials/hour of 1.

Without CUDA it exits 2 (one line) unless ``--cpu-smoke`` asks for a tiny CPU run of the same
pipeline (synthetic data, 1 epoch, 6 trials, ``auto`` against ``0``, no utilisation unless
``--nvidia-smi`` names a command).

Usage: python benchmarks/gpu_throughput.py [--trials 32] [--epochs 20] [--data fsdd:DIR]
       [--search-budget-s 150] [--options auto 1] [--out-dir DIR | --out FILE] [--cpu-smoke]
Writes gpu_throughput.json into --out-dir, else $OUT when set, else benchmarks/results/ (after
each search, so a run stopped half-way keeps the first search's figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
import throughput

DEFAULT_TRIALS = 32
DEFAULT_EPOCHS = 20
SEARCH_BUDGET_S = 150.0
OPTIONS = ("auto", "1")
SMOKE_OPTIONS = ("auto", "0")  # no GPU in a CPU-only Ray cluster: "1" is refused there
SMOKE_TRIALS = throughput.MIN_TRIALS
KIT_FSDD = Path("/tmp/fsdd/recordings")  # where benchmarks/device/run.sh install puts FSDD
FSDD_CONFIG = benchlib.REPO / "configs" / "fsdd.yaml"
SAMPLE_MS = 500
SMI_QUERY = "timestamp,index,utilization.gpu,memory.used"
# gpu_bench.py's packing space: small vertical / VGG-ish designs (FSDD 64 × 101 input)
SPACE: dict[str, Any] = {
    "max_branches": 1,
    "max_depth": 2,
    "branch_channels": [8, 16, 32],
    "block_channels": [8, 16, 32],
    "branch_widths": [1, 3, 7],
}
PACKING_GOAL_X = 3.0  # gpu_bench.PACKING_GOAL_X (not imported: that module imports torch)
NO_CUDA = (
    "gpu_throughput.py needs a CUDA GPU; run it on the device machine via "
    "benchmarks/device/run.sh throughput (or pass --cpu-smoke for a tiny CPU run)"
)


def default_data() -> str:
    """Return the kit's FSDD (``/tmp/fsdd/recordings``) if it is there, else ``../shared``'s."""
    return f"fsdd:{KIT_FSDD if KIT_FSDD.is_dir() else benchlib.FSDD_DIR}"


def part_name(option: str) -> str:
    """Return the part's name for a ``gpus_per_trial`` value: ``gpus-auto``, ``gpus-1``."""
    return f"gpus-{option}"


# -- nvidia-smi in the background --------------------------------------------------------------
@dataclass
class GpuTick:
    """One sample of every GPU: monotonic time, mean utilization.gpu (%), summed memory.used."""

    t: float
    util_pct: float | None
    memory_mib: float | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_smi_line(line: str) -> tuple[float | None, int, float | None, float | None] | None:
    """Return (epoch seconds or None, GPU index, utilization %, memory MiB) of one CSV line.

    The line is ``2026/12/02 05:21:34.123, 0, 37, 1234`` (``SMI_QUERY``, no header, no units);
    anything else (an error message) gives None.
    """
    fields = [f.strip() for f in line.strip().split(",")]
    if len(fields) != 4 or not fields[1].isdigit():
        return None
    stamp, index, util, memory = fields
    try:
        # nvidia-smi writes local time, which naive datetime.timestamp() reads as local time
        epoch: float | None = dt.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
    except ValueError:
        epoch = None
    return epoch, int(index), _number(util), _number(memory)


class GpuSampler:
    """``nvidia-smi -lms 500`` in a background process; a thread reads and timestamps its lines.

    A sample's time is nvidia-smi's own timestamp (so a pipe that delivers lines late does not
    shift them), converted to ``time.monotonic()``; the arrival time where it has none. One
    tick holds every GPU's line of one query (a repeated GPU index starts the next tick).
    """

    def __init__(self, command: str = "nvidia-smi", period_ms: int = SAMPLE_MS) -> None:
        self.command = command
        self.period_ms = period_ms
        self.error: str | None = None
        self.returncode: int | None = None
        self.other_lines: list[str] = []
        self._rows: list[tuple[float, int, float | None, float | None]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._first = threading.Event()
        self._offset = 0.0  # time.time() - time.monotonic()

    def start(self) -> bool:
        """Start sampling; False (with ``error``) when the command is not there."""
        exe = shutil.which(self.command)
        if exe is None:
            self.error = f"{self.command} not found"
            return False
        argv = [
            exe,
            f"--query-gpu={SMI_QUERY}",
            "--format=csv,noheader,nounits",
            "-lms",
            str(self.period_ms),
        ]
        stdbuf = shutil.which("stdbuf")
        if stdbuf is not None:  # line-buffered even into a pipe
            argv = [stdbuf, "-oL", *argv]
        self._offset = time.time() - time.monotonic()
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._thread = threading.Thread(target=self._read, name="gpu-sampler", daemon=True)
        self._thread.start()
        return True

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            arrived = time.monotonic()
            row = parse_smi_line(line)
            if row is None:
                if line.strip() and len(self.other_lines) < 10:
                    self.other_lines.append(line.strip()[:200])
                continue
            epoch, index, util, memory = row
            t = arrived if epoch is None else epoch - self._offset
            self._rows.append((min(t, arrived), index, util, memory))
            self._first.set()

    def wait_first(self, timeout_s: float) -> bool:
        """Wait for the first sample (the baseline before the search); True when it came."""
        return self._first.wait(timeout_s)

    def stop(self) -> list[GpuTick]:
        """Stop nvidia-smi and return the ticks (every GPU's line of a query in one tick)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
            try:
                self.returncode = self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self.returncode = self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._proc is not None and not self._rows and self.error is None:
            said = " | ".join(self.other_lines[:3])
            self.error = f"{self.command} gave no samples (exit {self.returncode}): {said}"
        return ticks_of(self._rows)


def ticks_of(rows: list[tuple[float, int, float | None, float | None]]) -> list[GpuTick]:
    """Group per-GPU rows into ticks: mean utilisation over the GPUs, memory summed."""
    ticks: list[GpuTick] = []
    current: dict[int, tuple[float, float | None, float | None]] = {}

    def flush() -> None:
        if not current:
            return
        utils = [u for _, u, _ in current.values() if u is not None]
        memory = [m for _, _, m in current.values() if m is not None]
        ticks.append(
            GpuTick(
                t=min(t for t, _, _ in current.values()),
                util_pct=statistics.fmean(utils) if utils else None,
                memory_mib=sum(memory) if memory else None,
            )
        )
        current.clear()

    for t, index, util, memory in rows:
        if index in current:
            flush()
        current[index] = (t, util, memory)
    flush()
    return ticks


def percentile(values: list[float], pct: float) -> float | None:
    """Return the nearest-rank ``pct`` percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def window_stats(ticks: list[GpuTick], start_s: float, end_s: float) -> dict[str, Any]:
    """Return the utilisation and memory figures of the ticks in [start_s, end_s] (tick.t in s)."""
    inside = [k for k in ticks if start_s <= k.t <= end_s]
    utils = [k.util_pct for k in inside if k.util_pct is not None]
    memory = [k.memory_mib for k in inside if k.memory_mib is not None]

    def r(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "from_s": round(start_s, 2),
        "to_s": round(end_s, 2),
        "samples": len(inside),
        "util_mean_pct": r(statistics.fmean(utils) if utils else None),
        "util_median_pct": r(statistics.median(utils) if utils else None),
        "util_p90_pct": r(percentile(utils, 90)),
        "memory_used_mib_peak": r(max(memory) if memory else None, 0),
        "memory_used_mib_mean": r(statistics.fmean(memory) if memory else None, 0),
    }


def utilisation_report(
    ticks: list[GpuTick], started: float, wall_s: float, done_at_s: list[float]
) -> dict[str, Any]:
    """Return the sampled GPU figures of a search (tick times made relative to ``started``).

    Windows: ``search`` (the ``run_search`` call) and ``steady`` (the finish times' middle
    half, the window of the steady s/trial); ``memory_used_mib_before``: the last sample
    before the search started.
    """
    rel = [GpuTick(k.t - started, k.util_pct, k.memory_mib) for k in ticks]
    before = [k.memory_mib for k in rel if k.t < 0 and k.memory_mib is not None]
    gaps = [b.t - a.t for a, b in itertools.pairwise(rel)]
    report: dict[str, Any] = {
        "status": "sampled",
        "samples": len(rel),
        "sample_interval_s_median": round(statistics.median(gaps), 3) if gaps else None,
        "memory_used_mib_before": before[-1] if before else None,
        "search": window_stats(rel, 0.0, wall_s),
        "steady": None,
    }
    t = sorted(done_at_s)
    n = len(t)
    if n >= throughput.MIN_TRIALS:
        q = max(2, n // 4)
        report["steady"] = window_stats(rel, t[q - 1], t[n - q - 1])
    return report


# -- one search (``--child gpus-OPTION``) --------------------------------------------------------
def study_overrides(
    option: str, args: argparse.Namespace, workdir: Path
) -> tuple[str | None, dict[str, Any]]:
    """Return the base config file and the ``load_config`` overrides of one search."""
    overrides: dict[str, Any] = {
        "study": "gpu-throughput",
        "storage": f"sqlite:///{workdir / 'studies.db'}",
        "tracking_uri": args.tracking_uri,
        "ray_dir": str(workdir / "ray"),
        "weights_dir": str(workdir / "weights"),
        "data.source": args.data,
        # absolute: a child's cwd is its own folder; shared by both searches and the prepare step
        "data.cache_dir": str(benchlib.CACHE_DIR),
        "space": dict(SPACE),
        "train.epochs": args.epochs,
        "search.trials": args.trials,
        "search.sampler": "tpe",
        "search.seed": 0,
        "search.initial_specs": [],
        "search.keep_weights": "none",
        "search.early_stopping.enabled": False,
        "search.time_budget_s": args.search_budget_s or None,
        "resources.gpus_per_trial": option,
        "resources.cpus_per_trial": 1,
        "resources.reuse_actors": True,
    }
    if args.cpu_smoke:
        # throughput.py's near-zero-work trials on 2 CPUs
        overrides.update(
            {
                "data.features.n_mels": 16,
                "data.features.clip_seconds": 0.5,
                "space": dict(throughput.SPACE),
                "resources.num_cpus": 2,
            }
        )
        return None, overrides
    return str(FSDD_CONFIG), overrides


def study_config(option: str, args: argparse.Namespace, workdir: Path) -> tuple[Any, dict]:
    """Return the StudyConfig of one search and its overrides."""
    from nas.config import load_config

    base, overrides = study_overrides(option, args, workdir)
    return load_config(base, overrides), overrides


def gpu_shares(config: Any) -> dict[str, int]:
    """Return how many trials got each GPU share (the study's ``gpu_share`` attribute)."""
    import optuna

    from nas.study import GPU_SHARE_ATTR

    study = optuna.load_study(study_name=config.study, storage=config.storage)
    counts: dict[str, int] = {}
    for trial in study.trials:
        share = trial.user_attrs.get(GPU_SHARE_ATTR)
        key = "none" if share is None else f"{float(share):g}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def smi_command(args: argparse.Namespace) -> str | None:
    """Return the nvidia-smi command to sample with (None: no sampling, a --cpu-smoke run)."""
    if args.nvidia_smi:
        return str(args.nvidia_smi)
    return None if args.cpu_smoke else "nvidia-smi"


def child_main(args: argparse.Namespace) -> int:
    """The body of ``--child gpus-OPTION``: one search, sampled; its raw result as JSON."""
    option = args.child.removeprefix("gpus-")
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    config, overrides = study_config(option, args, workdir)
    command = smi_command(args)
    sampler = GpuSampler(command) if command else None
    if sampler is not None and sampler.start():
        sampler.wait_first(5.0)  # a baseline sample before the search
    try:
        result = throughput.run_driver(
            config,
            args.child,
            args.trials,
            workdir,
            {"gpus_per_trial": option, "config": overrides},
        )
    finally:
        ticks = sampler.stop() if sampler is not None else []
    result.extra["gpu_shares"] = gpu_shares(config)
    if sampler is None:
        result.extra["gpu_utilisation"] = {"status": "not sampled", "reason": "--cpu-smoke"}
    elif not ticks:
        result.extra["gpu_utilisation"] = {"status": "not sampled", "reason": sampler.error}
    else:
        report = utilisation_report(
            ticks, result.started_monotonic, result.wall_s, result.done_at_s
        )
        report["command"] = f"{command} --query-gpu={SMI_QUERY} -lms {SAMPLE_MS}"
        result.extra["gpu_utilisation"] = report
    args.raw_out.write_text(json.dumps(result.__dict__), encoding="utf-8")
    return 0


def prepare_main(args: argparse.Namespace) -> int:
    """The body of ``--prepare``: compute (or find) the study's features in the cache."""
    from nas.search import load_study_features

    config, _ = study_config(args.options[0], args, args.workdir)
    started = time.monotonic()
    data = load_study_features(config)
    print(
        f"features of {config.data.source}: {data.n_mels} × {data.n_frames}, "
        f"{len(data.train)}/{len(data.valid)}/{len(data.test)} clips, "
        f"{'from the cache' if data.from_cache else 'computed'} in "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0


# -- the parent ----------------------------------------------------------------------------------
def child_args(args: argparse.Namespace) -> list[str]:
    """Return the flags a child process gets besides ``--child/--trials/--workdir/--raw-out``."""
    out = [
        "--epochs",
        str(args.epochs),
        "--data",
        args.data,
        "--tracking-uri",
        args.tracking_uri,
        "--search-budget-s",
        str(args.search_budget_s),
        "--options",
        *args.options,
    ]
    if args.cpu_smoke:
        out.append("--cpu-smoke")
    if args.nvidia_smi:
        out += ["--nvidia-smi", str(args.nvidia_smi)]
    return out


def prepare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Compute the features once, in a process of its own (no CUDA context left in this one)."""
    log_path = workdir / "prepare.log"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--prepare",
        "--trials",
        str(args.trials),
        "--workdir",
        str(workdir / "prepare"),
        *child_args(args),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(benchlib.REPO), env.get("PYTHONPATH")]))
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            returncode: int | str = subprocess.run(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            returncode = "timeout"
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-10:]
    print(f"-- features: {' | '.join(tail[-1:])}", file=sys.stderr)
    return {
        "returncode": returncode,
        "seconds": round(time.monotonic() - started, 1),
        "output_tail": "\n".join(tail),
    }


def _per_hour(seconds: float | None) -> float | None:
    return None if not seconds else round(3600.0 / seconds, 1)


def summarise(part: dict[str, Any]) -> dict[str, Any]:
    """Return the headline figures of one search's summary (``throughput.spawn_part``'s)."""
    if not part.get("ok"):
        return {"ok": False, "returncode": part.get("returncode")}
    util = part.get("gpu_utilisation") or {}
    window = util.get("steady") or util.get("search") or {}
    wall = part.get("wall_s")
    finished = part.get("finished") or 0
    return {
        "ok": True,
        "finished": finished,
        "trials_per_hour_steady": _per_hour(part.get("steady_s_per_trial")),
        "trials_per_hour_end_to_end": round(finished / wall * 3600, 1) if wall else None,
        "s_per_trial_steady": part.get("steady_s_per_trial"),
        "max_running": part.get("max_running"),
        "mean_running": part.get("mean_running"),
        "util_window": "steady" if util.get("steady") else "search" if window else None,
        "util_mean_pct": window.get("util_mean_pct"),
        "util_median_pct": window.get("util_median_pct"),
        "util_p90_pct": window.get("util_p90_pct"),
        "memory_used_mib_peak": (util.get("search") or {}).get("memory_used_mib_peak"),
        "wall_s": wall,
    }


def comparisons(headline: dict[str, dict[str, Any]], options: list[str]) -> dict[str, Any]:
    """Return the first option's trials/hour over each other's (auto over 1 by default)."""
    out: dict[str, Any] = {}
    first = headline.get(part_name(options[0]), {})
    for option in options[1:]:
        other = headline.get(part_name(option), {})
        for key in ("trials_per_hour_steady", "trials_per_hour_end_to_end"):
            a, b = first.get(key), other.get(key)
            out[f"{key}_{options[0]}_over_{option}"] = round(a / b, 2) if a and b else None
    return out


def goals(comp: dict[str, Any], options: list[str], trials: int, epochs: int) -> list[dict]:
    """Return the packing goal's row (auto over 1, steady trials/hour; None: not both ran)."""
    if options[:2] != ["auto", "1"]:
        return []
    steady = comp.get("trials_per_hour_steady_auto_over_1")
    end = comp.get("trials_per_hour_end_to_end_auto_over_1")
    return [
        benchlib.goal_row(
            f"GPU packing on FSDD ({epochs} epochs, TPE): trials/hour with --gpus-per-trial "
            f"auto >= {PACKING_GOAL_X:g}x with 1",
            "n/a (not run)"
            if steady is None
            else f"{steady:g}x steady ({end}x end to end), N={trials}",
            None if steady is None else steady >= PACKING_GOAL_X,
        )
    ]


def markdown_table(headline: dict[str, dict[str, Any]], options: list[str]) -> str:
    """Return the stdout table: one row per search."""
    f = throughput._fmt
    lines = [
        "| gpus/trial | trials | trials/h steady | trials/h end to end | s/trial steady | "
        "running max / mean | GPU util % mean / median / p90 | peak MiB | wall s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for option in options:
        h = headline.get(part_name(option))
        if h is None:
            continue
        if not h["ok"]:
            lines.append(f"| {option} | failed ({h['returncode']}) |  |  |  |  |  |  |  |")
            continue
        util = (
            "not sampled"
            if h["util_mean_pct"] is None
            else f"{f(h['util_mean_pct'], 1)} / {f(h['util_median_pct'], 1)} / "
            f"{f(h['util_p90_pct'], 1)}" + (" (search)" if h["util_window"] == "search" else "")
        )
        lines.append(
            f"| {option} | {h['finished']} | {f(h['trials_per_hour_steady'], 0)} | "
            f"{f(h['trials_per_hour_end_to_end'], 0)} | {f(h['s_per_trial_steady'], 2)} | "
            f"{f(h['max_running'])} / {f(h['mean_running'], 2)} | {util} | "
            f"{f(h['memory_used_mib_peak'], 0)} | {f(h['wall_s'], 1)} |"
        )
    return "\n".join(lines)


def out_file(args: argparse.Namespace) -> Path:
    """Return the JSON's path: --out, else --out-dir, $OUT or the results folder."""
    if args.out is not None:
        return Path(args.out)
    folder = args.out_dir or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    return (folder or benchlib.RESULTS_DIR) / "gpu_throughput.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Return the parsed flags (defaults filled in)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=None, help=f"default {DEFAULT_TRIALS}")
    parser.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULT_EPOCHS}")
    parser.add_argument("--data", default=None, help="KIND:PATH (default: FSDD, the kit's first)")
    parser.add_argument("--options", nargs="+", default=None, help="gpus_per_trial values")
    parser.add_argument(
        "--search-budget-s",
        type=float,
        default=None,
        help=f"per search (trials in flight finish); 0: none; default {SEARCH_BUDGET_S:g}",
    )
    parser.add_argument("--tracking-uri", default="none")
    parser.add_argument("--nvidia-smi", default=None, help="the sampling command")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run, no utilisation")
    parser.add_argument("--out", type=Path, default=None, help="the JSON result file")
    parser.add_argument("--out-dir", type=Path, default=None, help="write gpu_throughput.json")
    parser.add_argument("--timeout-s", type=float, default=None, help="per search process")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp folder")
    # internal: one search, or the features, in this process
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke
    if args.trials is None:
        args.trials = SMOKE_TRIALS if smoke else DEFAULT_TRIALS
    if args.epochs is None:
        args.epochs = 1 if smoke else DEFAULT_EPOCHS
    if args.data is None:
        args.data = throughput.DATA if smoke else default_data()
    if args.options is None:
        args.options = list(SMOKE_OPTIONS if smoke else OPTIONS)
    if args.search_budget_s is None:
        args.search_budget_s = 0.0 if smoke else SEARCH_BUDGET_S
    if args.timeout_s is None:
        args.timeout_s = (args.search_budget_s or 3600.0) + 240.0
    if args.trials < throughput.MIN_TRIALS:
        parser.error(f"--trials: at least {throughput.MIN_TRIALS} (quarters of 2 or more)")
    if (args.child or args.prepare) and args.workdir is None:
        parser.error("--child and --prepare need --workdir")
    if args.child and args.raw_out is None:
        parser.error("--child needs --raw-out")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the searches, print the table, write the JSON; 2 without CUDA (unless --cpu-smoke)."""
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    if args.prepare:
        return prepare_main(args)
    if not args.cpu_smoke:
        import torch

        if not torch.cuda.is_available():
            print(NO_CUDA, file=sys.stderr)
            return 2
    out = out_file(args)
    run = benchlib.BenchRun(out.stem)
    workdir = benchlib.temp_workdir("gpu-throughput")
    features = prepare(args, workdir)
    script = Path(__file__).resolve()
    parts: dict[str, dict[str, Any]] = {}
    headline: dict[str, dict[str, Any]] = {}
    comp: dict[str, Any] = {}
    rows: list[dict] = []
    for option in args.options:
        name = part_name(option)
        parts[name] = throughput.spawn_part(
            name, args.trials, workdir, args.timeout_s, script=script, child_args=child_args(args)
        )
        headline[name] = summarise(parts[name])
        comp = comparisons(headline, args.options)
        rows = goals(comp, args.options, args.trials, args.epochs)
        payload = {
            "cpu_smoke": args.cpu_smoke,
            "complete": len(parts) == len(args.options),
            "what": __doc__.split("\n\n")[1].strip() if __doc__ else "",
            "trials": args.trials,
            "epochs": args.epochs,
            "data": args.data,
            "options": args.options,
            "search_budget_s": args.search_budget_s or None,
            "space": dict(throughput.SPACE if args.cpu_smoke else SPACE),
            "features": features,
            "headline": headline,
            "comparisons": comp,
            "parts": parts,
            "goals": rows,
            "workdir": str(workdir),
        }
        benchlib.write_result(run, payload, out.parent)  # after each search
    failed = [name for name, p in parts.items() if not p.get("ok")]
    if not (args.keep_workdir or failed):
        shutil.rmtree(workdir, ignore_errors=True)
        payload["workdir"] = None
        benchlib.write_result(run, payload, out.parent)
    print(markdown_table(headline, args.options))
    print()
    for key, value in comp.items():
        print(f"{key}: {throughput._fmt(value, 2)}")
    for row in rows:
        verdict = {True: "PASS", False: "FAIL", None: "NOT RUN"}[row["met"]]
        print(f"{verdict}: {row['goal']}: {row['measured']}")
    if payload["workdir"]:
        print(f"kept {workdir}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
