"""GPU benchmarks (one CUDA GPU, <= 8 minutes): extraction speed, VRAM estimator, GPU packing.

1. Features on the GPU (``features_bench.run_gpu``): FSDD log-mel extraction on the GPU versus
   the CPU of the same machine. Goal: >= 20x.
2. VRAM estimator accuracy: for every preset (at its own input, batch 32; multi-label BCE for the
   tagging presets, cross-entropy for the 8-class Ballroom ones) and ``--random-specs`` specs
   drawn from the default ``SearchSpace`` (seeded random sampler; FSDD's 64 × 101 input,
   10 classes, batch 64): the peak training VRAM measured by ``trainers.cost.measure_train_vram``
   through ``trainers.vram_probe`` (allocated and reserved peaks, docs/vram.md; 3 warm-up Adam
   steps, then 5 measured ones, float32, ``cudnn.benchmark`` off), the estimate
   of ``trainers.cost.estimate_train_vram`` and PyTorch's MemTracker under FakeTensorMode
   (``vram_estimator.memtracker_above_base_mb``, the baseline). Compared quantity: the peak
   minus weights and batch (DESIGN.md's anchor protocol; the totals are listed too).
   Goal: mean |error| <= 5 %, max <= 10 %, both better than MemTracker's.
3. GPU packing: the same ``fsnas search`` (small models on the synthetic data, random sampler,
   same seed, so the same specs) with ``--gpus-per-trial 1`` and ``auto``; trials per hour over
   the trial phase (first Optuna ask to last tell: Ray's start excluded) and end to end. Also
   checks that the same spec measures the same training VRAM in both runs (no neighbour's
   memory in a trial's figure). Goal: auto >= 3x.

Without CUDA every part is {"status": "not run", "reason": "no CUDA device"}.

Usage: python benchmarks/gpu_bench.py [--random-specs 30] [--pack-trials 16] [--out-dir DIR]
Writes gpu_bench.json into --out-dir, else $OUT when set, else benchmarks/results/.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib
import features_bench

VRAM_MEAN_GOAL_PCT = 5.0
VRAM_MAX_GOAL_PCT = 10.0
PACKING_GOAL_X = 3.0
PRESET_BATCH = 32
RANDOM_BATCH = 64
RANDOM_INPUT = (64, 101, 10)  # FSDD: n_mels, n_frames, classes


# -- 2. VRAM estimator accuracy ------------------------------------------------------------------
def vram_cases(n_random: int, seed: int = 0) -> list[dict[str, Any]]:
    """Return every preset and ``n_random`` default-space specs, each with input and task."""
    import optuna

    from search_spaces.presets import list_presets
    from search_spaces.space import SearchSpace

    cases: list[dict[str, Any]] = []
    for preset in list_presets():
        cases.append(
            {
                "name": preset.name,
                "spec": preset.spec,
                "n_mels": preset.n_mels,
                "n_frames": preset.n_frames,
                "n_classes": preset.n_classes,
                "batch_size": PRESET_BATCH,
                # the tagging presets (MTT 50 tags, AudioSet 527) are multi-label
                "task": "single_label" if preset.n_classes <= 10 else "multi_label",
            }
        )
    n_mels, n_frames, n_classes = RANDOM_INPUT
    space = SearchSpace(n_mels=n_mels, n_frames=n_frames)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for i in range(n_random):
        spec = space.sample(study.ask())
        cases.append(
            {
                "name": f"random{i:02d}",
                "spec": spec,
                "n_mels": n_mels,
                "n_frames": n_frames,
                "n_classes": n_classes,
                "batch_size": RANDOM_BATCH,
                "task": "single_label",
            }
        )
    return cases


def _pct(value: float | None, reference: float) -> float | None:
    return None if value is None or reference <= 0 else 100.0 * (value / reference - 1.0)


def vram_row(case: dict[str, Any]) -> dict[str, Any]:
    """Return estimate, MemTracker and CUDA measurement of one case (errors in %)."""
    import vram_estimator

    from search_spaces import build_model
    from trainers.cost import estimate_train_vram, measure_train_vram
    from trainers.cost_anchors import VramAnchor
    from trainers.cost_vram import device_class_of
    from trainers.train import is_out_of_memory, release_memory

    spec, m, t, k = case["spec"], case["n_mels"], case["n_frames"], case["n_classes"]
    batch, task = case["batch_size"], case["task"]
    row: dict[str, Any] = {
        "name": case["name"],
        "spec": spec.summary(),
        "input": f"{batch}×1×{m}×{t}",
        "task": task,
    }
    start = time.perf_counter()
    gpu_class = device_class_of(torch.cuda.get_device_name())
    estimate = estimate_train_vram(spec, m, t, k, batch, "adam", False, task, gpu_class)
    row["estimate_s"] = round(time.perf_counter() - start, 3)
    # what the anchor protocol's peak-minus-base leaves out: weights, batch, library workspaces
    base_mb = estimate.train_vram_mb - estimate.above_weights_and_batch_mb
    anchor = VramAnchor(case["name"], spec, m, t, k, batch, task, measured_above_base_mb=0.0)
    memtracker = vram_estimator.memtracker_above_base_mb(anchor)
    device = torch.device("cuda")
    release_memory(device)
    try:
        measured = measure_train_vram(
            build_model(spec, m, t, k),
            (batch, 1, m, t),
            k,
            task=task,
            optimizer="adam",
            amp=False,
            device=device,
        )
    except Exception as exc:
        row["error"] = ("oom: " if is_out_of_memory(exc) else "") + f"{type(exc).__name__}: {exc}"
        return row
    finally:
        gc.collect()  # the model and its optimizer die with measure_train_vram's frame
        release_memory(device)
    measured_above = measured.vram_mb - base_mb
    row.update(
        {
            "measured_mb": round(measured.vram_mb, 1),
            "measured_reserved_mb": round(measured.reserved_mb, 1),
            "estimate_mb": round(estimate.train_vram_mb, 1),
            "estimate_reserved_mb": _round(estimate.train_reserved_mb),
            "estimate_reserved_error_pct": _round(
                _pct(estimate.train_reserved_mb, measured.reserved_mb)
            ),
            "estimate_total_error_pct": _round(_pct(estimate.train_vram_mb, measured.vram_mb)),
            "measured_above_base_mb": round(measured_above, 1),
            "estimate_above_base_mb": round(estimate.above_weights_and_batch_mb, 1),
            "estimate_error_pct": _round(_pct(estimate.above_weights_and_batch_mb, measured_above)),
            "memtracker_above_base_mb": None if memtracker is None else round(memtracker, 1),
            "memtracker_error_pct": _round(_pct(memtracker, measured_above)),
            "cudnn_benchmark": measured.cudnn_benchmark,
        }
    )
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _errors(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    absolute = [abs(v) for v in values]
    return {
        "n": len(values),
        "mean_abs_error_pct": round(statistics.mean(absolute), 2),
        "max_abs_error_pct": round(max(absolute), 2),
    }


def vram_accuracy(n_random: int, budget_s: float) -> dict[str, Any]:
    """Return the rows and summary of the estimator-versus-CUDA comparison."""
    torch.backends.cudnn.benchmark = False
    started = time.monotonic()
    rows = []
    cases = vram_cases(n_random)
    # cuBLAS/cuDNN handles and workspaces are created once per process on first use; a
    # throwaway case keeps them out of the first recorded peak
    warm = cases[-1] if n_random else cases[0]
    vram_row({**warm, "name": "warm-up"})
    for case in cases:
        if time.monotonic() - started > budget_s:
            rows.append({"name": case["name"], "error": f"skipped: over the {budget_s:g} s budget"})
            continue
        rows.append(vram_row(case))
        print(rows[-1], file=sys.stderr, flush=True)
    measured = [r for r in rows if r.get("estimate_error_pct") is not None]
    both = [r for r in measured if r.get("memtracker_error_pct") is not None]
    return {
        "status": "run",
        "device": torch.cuda.get_device_name(0),
        "compared_quantity": "peak training VRAM minus weights and batch (MiB), Adam, float32",
        "rows": rows,
        "estimate": _errors([r["estimate_error_pct"] for r in measured]),
        "estimate_where_memtracker_ran": _errors([r["estimate_error_pct"] for r in both]),
        "memtracker": _errors([r["memtracker_error_pct"] for r in both]),
        "estimate_total": _errors([r["estimate_total_error_pct"] for r in measured]),
        # train_reserved_mb: the caching-allocator simulation against max_memory_reserved
        "estimate_reserved": _errors(
            [
                r["estimate_reserved_error_pct"]
                for r in measured
                if r.get("estimate_reserved_error_pct") is not None
            ]
        ),
        "cases": len(cases),
        "measured_cases": len(measured),
    }


# -- 3. GPU packing --------------------------------------------------------------------------
def packing_config(study: str, trials: int, epochs: int) -> dict[str, Any]:
    """Return the YAML keys of the small-model search both packing runs share."""
    return {
        "study": study,
        "tracking_uri": "none",
        "data": {"source": "synthetic", "cache_dir": str(benchlib.CACHE_DIR)},
        "space": {
            "max_branches": 1,
            "max_depth": 2,
            "branch_channels": [8, 16, 32],
            "block_channels": [8, 16, 32],
            "branch_widths": [1, 3, 7],
        },
        "train": {"epochs": epochs, "batch_size": 64},
        "search": {
            "trials": trials,
            "sampler": "random",
            "seed": 0,
            "early_stopping": {"enabled": False},
        },
        "resources": {"cpus_per_trial": 1, "reuse_actors": True},
    }


def packing(trials: int, epochs: int, options: tuple[str, str] = ("1", "auto")) -> dict[str, Any]:
    """Return trials/hour of the same search under two ``--gpus-per-trial`` settings."""
    import optuna

    from nas.search import load_study
    from trainers.features import load_features

    load_features("synthetic", cache_dir=benchlib.CACHE_DIR)  # neither run pays extraction
    workdir = benchlib.temp_workdir("packing")
    runs: dict[str, Any] = {}
    vram_by_spec: dict[str, dict[str, float]] = {}
    for option in options:
        name = "whole" if option == "1" else option.replace(".", "_")
        cli = benchlib.run_cli_search(
            packing_config(f"pack-{name}", trials, epochs),
            workdir / name,
            ["--gpus-per-trial", option],
        )
        outcome = load_study(cli.study, cli.storage)
        study = optuna.load_study(study_name=cli.study, storage=cli.storage)
        shares = [t.user_attrs.get("gpu_share") for t in study.trials]
        done = cli.done_at_s
        phase_s = _trial_phase_s(study)
        phase_rate = len(outcome.records) / phase_s * 3600 if phase_s else None
        for r in outcome.records:
            vram = r.costs.get("train_vram_mb")
            if r.status == "complete" and vram is not None:
                vram_by_spec.setdefault(r.spec_summary, {})[option] = float(vram)
        runs[option] = {
            "returncode": cli.returncode,
            "wall_s": round(cli.wall_s, 1),
            "done_at_s": [round(t, 2) for t in done],
            "statuses": [r.status for r in outcome.records],
            "gpu_shares": shares,
            "trial_phase_s": None if phase_s is None else round(phase_s, 2),
            "trial_phase_trials_per_hour": None if phase_rate is None else round(phase_rate),
            "end_to_end_trials_per_hour": round(len(done) / done[-1] * 3600) if done else None,
            "output_tail": cli.output_tail if cli.returncode else None,
        }
    first, second = options
    a, b = runs[first], runs[second]
    same_spec = [v for v in vram_by_spec.values() if len(v) == 2]
    diffs = [abs(v[first] - v[second]) for v in same_spec]
    return {
        "status": "run",
        "trials": trials,
        "epochs": epochs,
        "runs": runs,
        "trial_phase_speedup": None
        if not (a["trial_phase_trials_per_hour"] and b["trial_phase_trials_per_hour"])
        else round(b["trial_phase_trials_per_hour"] / a["trial_phase_trials_per_hour"], 2),
        "end_to_end_speedup": None
        if not (a["end_to_end_trials_per_hour"] and b["end_to_end_trials_per_hour"])
        else round(b["end_to_end_trials_per_hour"] / a["end_to_end_trials_per_hour"], 2),
        "same_spec_pairs": len(same_spec),
        "same_spec_max_vram_diff_mb": round(max(diffs), 2) if diffs else None,
    }


def _trial_phase_s(study: Any) -> float | None:
    """Return seconds from the first trial's ask to the last trial's tell (Ray start excluded)."""
    starts = [t.datetime_start for t in study.trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete is not None]
    if not starts or not ends:
        return None
    return float((max(ends) - min(starts)).total_seconds())


# -- summary -----------------------------------------------------------------------------------
def goals(parts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the summary rows of the three GPU parts ("not run" rows included)."""
    rows = features_bench.goals(None, parts["features_gpu"])
    vram = parts["vram_accuracy"]
    goal = (
        f"VRAM estimator vs CUDA: mean |error| <= {VRAM_MEAN_GOAL_PCT:g} %, "
        f"max <= {VRAM_MAX_GOAL_PCT:g} %, better than MemTracker"
    )
    if vram.get("status") == "run" and vram["estimate"].get("n"):
        est, mt = vram["estimate"], vram["memtracker"]
        est_both = vram["estimate_where_memtracker_ran"]
        met = (
            est["mean_abs_error_pct"] <= VRAM_MEAN_GOAL_PCT
            and est["max_abs_error_pct"] <= VRAM_MAX_GOAL_PCT
            and bool(mt.get("n"))
            and est_both["mean_abs_error_pct"] < mt["mean_abs_error_pct"]
            and est_both["max_abs_error_pct"] < mt["max_abs_error_pct"]
        )
        mt_text = (
            f"MemTracker {mt['mean_abs_error_pct']:.1f} % / {mt['max_abs_error_pct']:.1f} %"
            if mt.get("n")
            else "MemTracker did not run"
        )
        rows.append(
            benchlib.goal_row(
                goal,
                f"fsnas mean {est['mean_abs_error_pct']:.1f} %, max "
                f"{est['max_abs_error_pct']:.1f} % ({est['n']} networks); {mt_text}",
                met,
            )
        )
    else:
        rows.append(benchlib.goal_row(goal, f"not run ({vram.get('reason', 'no rows')})", None))
    pack = parts["packing"]
    goal = f"GPU packing: trials/hour with --gpus-per-trial auto >= {PACKING_GOAL_X:g}x with 1"
    if pack.get("status") == "run" and pack.get("trial_phase_speedup") is not None:
        rows.append(
            benchlib.goal_row(
                goal,
                f"{pack['trial_phase_speedup']:g}x over the trial phase "
                f"({pack['end_to_end_speedup']}x end to end), {pack['trials']} trials",
                pack["trial_phase_speedup"] >= PACKING_GOAL_X,
            )
        )
    else:
        rows.append(benchlib.goal_row(goal, f"not run ({pack.get('reason', 'failed')})", None))
    return rows


def _guarded(part: Any, *args: Any) -> dict[str, Any]:
    """Return ``part(*args)``, or a "failed" entry with the reason: one part never sinks all."""
    try:
        result: dict[str, Any] = part(*args)
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    print(f"{part.__name__}: {result}", file=sys.stderr, flush=True)
    return result


def out_dir(arg: Path | None) -> Path | None:
    """Return where gpu_bench.json goes: --out-dir, else $OUT, else the results folder."""
    if arg is not None:
        return arg
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the three GPU parts (or write "not run" for each without CUDA); return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="features data (default: FSDD)")
    parser.add_argument("--random-specs", type=int, default=30)
    parser.add_argument("--vram-budget-s", type=float, default=200.0)
    parser.add_argument("--pack-trials", type=int, default=16)
    parser.add_argument("--pack-epochs", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    run = benchlib.BenchRun("gpu_bench")
    parts: dict[str, dict[str, Any]]
    if not torch.cuda.is_available():
        parts = {
            name: dict(benchlib.NOT_RUN_NO_CUDA)
            for name in ("features_gpu", "vram_accuracy", "packing")
        }
    else:
        data = args.data or features_bench.default_data()
        parts = {
            "features_gpu": _guarded(features_bench.run_gpu, data),
            "vram_accuracy": _guarded(vram_accuracy, args.random_specs, args.vram_budget_s),
            "packing": _guarded(packing, args.pack_trials, args.pack_epochs),
        }
    benchlib.write_result(run, {**parts, "goals": goals(parts)}, out_dir(args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
