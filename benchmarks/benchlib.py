"""Shared pieces of the benchmarks: machine facts, result files, and ``fsnas search`` runs.

Every benchmark writes ``benchmarks/results/<name>.json`` through ``write_result``, which adds
the machine (CPU model, cores, torch version, GPU if any), the UTC date, the load average at the
start and the end, and the wall time. Each result carries a ``goals`` list of
``{"goal", "measured", "met"}`` rows (``met`` is None when the part did not run), from which
``run_all.write_summary`` builds the table.

``run_cli_search`` runs the real command line (``fsnas search --config FILE``) in a subprocess
and timestamps each progress line as it arrives, so per-trial wall times are measured from the
outside, exactly as a user sees them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
FSDD_DIR = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
CACHE_DIR = REPO / ".fsnas" / "cache"
NOT_RUN_NO_CUDA = {"status": "not run", "reason": "no CUDA device"}
_DONE = re.compile(r"\bdone (\d+)/(\d+)\b")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Return the facts a figure depends on: CPU model, cores, torch, Python, GPU if any."""
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float]:
    """Return the 1, 5 and 15-minute load averages (empty where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class BenchRun:
    """A benchmark in progress: what ``write_result`` needs about when and where it ran."""

    name: str
    started_utc: str = field(default_factory=utc_now)
    load_start: list[float] = field(default_factory=load_average)
    started: float = field(default_factory=time.monotonic)


def goal_row(goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    """Return one row of the summary table (``met`` None: the part did not run)."""
    return {"goal": goal, "measured": measured, "met": met}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_result(run: BenchRun, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``payload`` plus machine, date, load and wall time to ``<out_dir>/<name>.json``."""
    out = (out_dir or RESULTS_DIR) / f"{run.name}.json"
    full: dict[str, Any] = {
        "benchmark": run.name,
        "date_utc": run.started_utc,
        "machine": machine_info(),
        "load_average_start": run.load_start,
        "load_average_end": load_average(),
        "seconds": round(time.monotonic() - run.started, 1),
    }
    # these facts are the harness's; a payload's own "machine" (a bare arch name) yields
    full.update({k: v for k, v in payload.items() if k not in full})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite(full), indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}", file=sys.stderr)
    return out


# -- fsnas search through the command line -----------------------------------------------------
@dataclass
class CliSearch:
    """One ``fsnas search`` run: exit code, wall time and when each trial finished."""

    returncode: int
    wall_s: float
    # seconds since the command started at which the progress line "done k/N" appeared
    done_at_s: list[float]
    output_tail: str
    study: str
    storage: str


def fsnas_command() -> list[str]:
    """Return the argv prefix of the installed ``fsnas`` command (beside this Python)."""
    script = Path(sys.executable).parent / "fsnas"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nas.cli"]


def run_cli_search(
    config: dict[str, Any], workdir: Path, flags: list[str] | None = None, timeout_s: float = 900
) -> CliSearch:
    """Run ``fsnas search --config <workdir>/study.yaml [flags]`` and time its progress lines.

    ``config`` is a study config (YAML keys); its storage, Ray folder and (unless given) MLflow
    store are put in ``workdir`` so runs never share state.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config.setdefault("storage", f"sqlite:///{workdir / 'studies.db'}")
    config.setdefault("ray_dir", str(workdir / "ray"))
    config.setdefault("tracking_uri", f"sqlite:///{workdir / 'mlflow.db'}")
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [*fsnas_command(), "search", "--config", str(path), *(flags or [])]
    # "local": a fresh Ray instance; without it ray.init joins any cluster already running on
    # the machine (another user's `ray start`, a test's simulated cluster)
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_ADDRESS="local")
    done_at: dict[int, float] = {}
    lines: list[str] = []
    started = time.monotonic()
    with subprocess.Popen(
        argv,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - started
            lines.append(line.rstrip())
            match = _DONE.search(line)
            if match and int(match.group(1)) not in done_at:
                done_at[int(match.group(1))] = now
            if now > timeout_s:
                proc.kill()
                break
        returncode = proc.wait()
    wall_s = time.monotonic() - started
    return CliSearch(
        returncode=returncode,
        wall_s=wall_s,
        done_at_s=[done_at[k] for k in sorted(done_at)],
        output_tail="\n".join(lines[-15:]),
        study=str(config["study"]),
        storage=str(config["storage"]),
    )


def steady_slot_s(done_at_s: list[float], concurrency: int, skip: int = 0) -> float | None:
    """Return the steady-state wall time of one trial slot from completion times.

    With ``concurrency`` trials running at once, ``n`` completions after the first (after
    skipping ``skip`` warm-up completions) take ``n × slot / concurrency`` seconds.
    """
    times = done_at_s[skip:]
    if len(times) < 2:
        return None
    return concurrency * (times[-1] - times[0]) / (len(times) - 1)


def temp_workdir(prefix: str) -> Path:
    """Return a fresh temporary folder for one benchmark run (left for inspection)."""
    return Path(tempfile.mkdtemp(prefix=f"fsnas-bench-{prefix}-"))
