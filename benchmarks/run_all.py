"""``make bench``: run every benchmark, write its JSON and the summary table SUMMARY.md.

CPU parts (<= 20 minutes on the 2-core machine): the VRAM estimator against DESIGN.md's
measured anchors, features first run versus cache, framework overhead, search efficiency; then
throughput (fsnas per-trial cost against Ray Tune's and Optuna's floors, 2000 trials per part:
roughly half an hour more on 2 cores; ``throughput.py --trials`` sizes it) and the timbre /
FSDD pitch-shift study (``timbre_pitch.py``: the vgg-to-vertical walk, 5 seeds, about 12
minutes on 2 cores; as root it installs fluidsynth and the GM soundfonts); ``--only`` picks
parts. The GPU parts (``gpu_bench.py``) run where CUDA is available; without it they report
"not run", and an earlier GPU result in the results folder is kept rather than overwritten by
"not run".

Usage: python benchmarks/run_all.py [--only NAME ...] [--quick] [--summary-only] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
import features_bench
import gpu_bench
import overhead
import search_efficiency
import throughput
import timbre_pitch
import vram_estimator

# result file name -> what it measures, in the table's order
RESULT_NAMES: dict[str, str] = {
    "vram_estimator_cpu": "VRAM estimate vs DESIGN.md anchors",
    "features": "features",
    "overhead": "framework overhead",
    "search_efficiency": "search efficiency",
    "throughput": "throughput vs Ray/Optuna floors",
    "timbre_pitch": "timbre + FSDD under pitch shift",
    "gpu_bench": "GPU",
}


def run_vram_estimator(out_dir: Path | None, quick: bool) -> int:
    """Compare the estimator with DESIGN.md's measured anchors and write its JSON."""
    run = benchlib.BenchRun("vram_estimator_cpu")
    result = vram_estimator.run()
    est, mt = result["summary"]["estimate"], result["summary"]["memtracker"]
    met = (
        est["mean_abs_error_pct"] <= gpu_bench.VRAM_MEAN_GOAL_PCT
        and est["max_abs_error_pct"] <= gpu_bench.VRAM_MAX_GOAL_PCT
        and bool(mt.get("n"))
        and est["mean_abs_error_pct"] < mt["mean_abs_error_pct"]
        and est["max_abs_error_pct"] < mt["max_abs_error_pct"]
    )
    result["goals"] = [
        benchlib.goal_row(
            f"VRAM estimator vs the {est['n']} anchors measured on an H200 (DESIGN.md, recorded): "
            f"mean |error| <= {gpu_bench.VRAM_MEAN_GOAL_PCT:g} %, max <= "
            f"{gpu_bench.VRAM_MAX_GOAL_PCT:g} %, better than MemTracker",
            f"fsnas mean {est['mean_abs_error_pct']:.1f} %, max {est['max_abs_error_pct']:.1f} %; "
            f"MemTracker {mt['mean_abs_error_pct']:.1f} % / {mt['max_abs_error_pct']:.1f} %",
            met,
        )
    ]
    benchlib.write_result(run, result, out_dir)
    return 0


def run_gpu(out_dir: Path | None, quick: bool) -> int:
    """Run gpu_bench.py; without CUDA keep an earlier real GPU result if there is one."""
    existing = (out_dir or benchlib.RESULTS_DIR) / "gpu_bench.json"
    if not torch.cuda.is_available() and existing.exists():
        try:
            earlier = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = {}
        if any(isinstance(part, dict) and part.get("status") == "run" for part in earlier.values()):
            print(f"no CUDA here: keeping the GPU result in {existing}", file=sys.stderr)
            return 0
    argv = ["--random-specs", "2", "--pack-trials", "3", "--pack-epochs", "1"] if quick else []
    return gpu_bench.main([*argv, *_out(out_dir)])


def _out(out_dir: Path | None) -> list[str]:
    return [] if out_dir is None else ["--out-dir", str(out_dir)]


def _quick(quick: bool) -> list[str]:
    return ["--quick"] if quick else []


STEPS: dict[str, Callable[[Path | None, bool], int]] = {
    "vram_estimator_cpu": run_vram_estimator,
    "features": lambda out, quick: features_bench.main([*_quick(quick), *_out(out)]),
    "overhead": lambda out, quick: overhead.main([*_quick(quick), *_out(out)]),
    "search_efficiency": lambda out, quick: search_efficiency.main([*_quick(quick), *_out(out)]),
    "throughput": lambda out, quick: throughput.main([*_quick(quick), *_out(out)]),
    "timbre_pitch": lambda out, quick: timbre_pitch.main(
        [*(["--smoke"] if quick else []), *([] if out is None else ["--out", str(out)])]
    ),
    "gpu_bench": run_gpu,
}


# -- the summary table -------------------------------------------------------------------------
def _machine_text(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    text = f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores"
    if machine.get("gpu"):
        text = f"{machine['gpu']} ({text})"
    return text


def _load_text(result: dict[str, Any]) -> str:
    start, end = result.get("load_average_start") or [], result.get("load_average_end") or []
    if not start or not end:
        return "?"
    return f"{start[0]:.1f} → {end[0]:.1f}"


def summary_markdown(out_dir: Path | None = None) -> str:
    """Return the README table of every result in the results folder (goal, measured, met)."""
    folder = out_dir or benchlib.RESULTS_DIR
    lines = [
        "| benchmark | goal | measured | met | machine | load (1 min, start → end) | date (UTC) |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for name, title in RESULT_NAMES.items():
        path = folder / f"{name}.json"
        if not path.exists():
            lines.append(f"| {title} | – | no result yet (`{path.name}`) | – | – | – | – |")
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        if result.get("quick"):
            notes.append(f"`{path.name}` comes from a --quick smoke run, not a benchmark run.")
        for row in result.get("goals", []):
            met = {True: "yes", False: "**no**", None: "not run"}[row["met"]]
            goal, measured = (str(row[k]).replace("|", "\\|") for k in ("goal", "measured"))
            lines.append(
                f"| {title} | {goal} | {measured} | {met} | "
                f"{_machine_text(result)} | {_load_text(result)} | "
                f"{str(result.get('date_utc', '?'))[:16].replace('T', ' ')} |"
            )
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def write_summary(out_dir: Path | None = None) -> Path:
    """Write SUMMARY.md (the table plus how to regenerate it) beside the JSON results."""
    folder = out_dir or benchlib.RESULTS_DIR
    path = folder / "SUMMARY.md"
    body = (
        "# Benchmark results\n\n"
        "Regenerate with `make bench` (CPU parts, <= 20 min on 2 cores) and, on a CUDA "
        "machine, `python benchmarks/gpu_bench.py` (<= 8 min); details per figure in "
        "`benchmarks/results/<name>.json` (machine, load average, date, every raw number).\n\n"
        + summary_markdown(out_dir)
    )
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks (all by default), then write SUMMARY.md; 1 if one failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(STEPS), default=None)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny settings")
    parser.add_argument("--summary-only", action="store_true", help="rewrite SUMMARY.md only")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    failed: list[str] = []
    if not args.summary_only:
        started = time.monotonic()
        threads = torch.get_num_threads()
        for name in args.only or list(STEPS):
            step_start = time.monotonic()
            print(f"== {name} (load {benchlib.load_average()})", file=sys.stderr, flush=True)
            try:
                if STEPS[name](args.out_dir, args.quick):
                    failed.append(name)
            except Exception:
                traceback.print_exc()
                failed.append(name)
            finally:
                # steps set torch's thread count for themselves; the next starts from the default
                torch.set_num_threads(threads)
            print(f"== {name}: {time.monotonic() - step_start:.0f} s", file=sys.stderr)
        print(f"== all: {time.monotonic() - started:.0f} s", file=sys.stderr)
    write_summary(args.out_dir)
    print(summary_markdown(args.out_dir))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
