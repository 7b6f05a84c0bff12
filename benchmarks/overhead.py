"""Framework overhead: a trial through ``fsnas search`` versus ``trainers.train.fit`` alone.

Two measurements, both through the real command line (``fsnas search``: the driver, Ray Tune,
Optuna with its SQLite storage, local Ray, per-epoch reports), on the embedded ``synthetic``
data with a one-point search space (every choice fixed, so each trial trains the same spec):

1. Ratio for ~30-second trials. One epoch of ``fit`` is timed first and the epoch count is
   chosen so the bare trial takes about ``--target-s`` seconds. Then ``fit`` runs directly
   (before and after the search, 1 thread, as the search's trials) and ``fsnas search`` runs
   ``--ratio-trials`` trials one at a time (``max_concurrent 1``, MLflow tracking on, as by
   default). A trial's wall time through the search is the interval between two consecutive
   "done k/N" progress lines (the first trial, which also pays Ray's start, is reported apart).
   Goal: search / bare <= 1.10.
2. Fixed per-trial overhead: ``--tiny-trials`` tiny trials (1 epoch on 40 clips, an 8-channel
   layer), two at a time on local Ray with reused actors, like DESIGN.md's floor measurement.
   Slot time = 2 × (last completion − first completion) / (completions − 1); the overhead is
   the slot time minus the same trial's bare ``fit`` time (median of repeated runs). Ray
   Tune's own floor (a trivial trainable, same settings, same formula) is measured beside it.
   Goal: overhead <= 0.75 s (with MLflow tracking on, the default; without it reported too).

Usage: python benchmarks/overhead.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

from search_spaces import ArchSpec
from trainers.features import load_features
from trainers.featureset import FeatureSet
from trainers.result import TrainConfig
from trainers.train import fit

RATIO_GOAL = 1.10
OVERHEAD_GOAL_S = 0.75
RATIO_DATA = "synthetic"
TINY_DATA = "synthetic:clips_per_class=4,seed=0"


def one_point_space(channels: int) -> dict[str, Any]:
    """Return SearchSpace keys that fix every choice: one tall layer max-pooled over frequency."""
    return {
        "min_branches": 1,
        "max_branches": 1,
        "frontend_freq_reduce": ["max"],
        "branch_heights": ["0.9M"],
        "branch_widths": [7],
        "branch_channels": [channels],
        "min_depth": 0,
        "max_depth": 0,
        "head_time_pooling": ["max"],
        "input_norm": ["bn"],
    }


def one_point_spec(data: FeatureSet, channels: int) -> ArchSpec:
    """Return the spec the one-point space samples (the search records it; checked below)."""
    import optuna

    from search_spaces.space import SearchSpace

    space = SearchSpace.from_dict(
        {**one_point_space(channels), "n_mels": data.n_mels, "n_frames": data.n_frames}
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study().ask()
    spec = space.sample(trial)
    assert not trial.params, "the one-point space must not ask anything"
    return spec


def study_config(
    study: str, data: str, channels: int, train: TrainConfig, resources: dict[str, Any]
) -> dict[str, Any]:
    """Return the YAML keys of a search over the one-point space."""
    return {
        "study": study,
        "data": {"source": data, "cache_dir": str(benchlib.CACHE_DIR)},
        "space": one_point_space(channels),
        "train": {
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "num_threads": train.num_threads,
        },
        "search": {
            "trials": 0,  # set by the caller
            "sampler": "random",
            "seed": 0,
            # a scheduler stop would shorten a trial; its decision costs microseconds
            "early_stopping": {"enabled": False},
        },
        "resources": {"cpus_per_trial": 1, "reuse_actors": True, **resources},
    }


def bare_fit_s(spec: ArchSpec, data: FeatureSet, config: TrainConfig) -> tuple[float, str]:
    """Return (wall seconds of ``fit``, its status), timed from outside like a trial."""
    start = time.perf_counter()
    result = fit(spec, data, config, "cpu")
    return time.perf_counter() - start, result.status


def measure_ratio(target_s: float, n_trials: int, workdir: Path) -> dict[str, Any]:
    """Return the search-versus-bare figures for trials of about ``target_s`` seconds."""
    from nas.search import load_study

    data = load_features(RATIO_DATA, cache_dir=benchlib.CACHE_DIR)
    channels = 32
    spec = one_point_spec(data, channels)
    one = TrainConfig(epochs=1, num_threads=1)
    calib = fit(spec, data, one, "cpu")
    fixed_s = max(0.0, calib.seconds - calib.train_seconds)
    epochs = int(min(60, max(1, round((target_s - fixed_s) / max(calib.train_seconds, 1e-3)))))
    config = TrainConfig(epochs=epochs, num_threads=1)
    loads = {"before_bare": benchlib.load_average()}
    bare_before, status_before = bare_fit_s(spec, data, config)
    loads["before_search"] = benchlib.load_average()
    cfg = study_config(
        "overhead-ratio", RATIO_DATA, channels, config, {"num_cpus": 2, "max_concurrent": 1}
    )
    cfg["search"]["trials"] = n_trials
    cli = benchlib.run_cli_search(cfg, workdir / "ratio")
    loads["after_search"] = benchlib.load_average()
    bare_after, status_after = bare_fit_s(spec, data, config)
    loads["end"] = benchlib.load_average()
    outcome = load_study(cli.study, cli.storage)
    statuses = [r.status for r in outcome.records]
    specs_match = all(r.spec == spec.to_dict() for r in outcome.records)
    intervals = [b - a for a, b in zip(cli.done_at_s, cli.done_at_s[1:])]
    bare_mean = (bare_before + bare_after) / 2
    per_trial = statistics.mean(intervals) if intervals else None
    ratio = per_trial / bare_mean if per_trial else None
    ok = (
        cli.returncode == 0
        and statuses == ["complete"] * n_trials
        and specs_match
        and status_before == status_after == "complete"
    )
    return {
        "spec": spec.summary(),
        "data": RATIO_DATA,
        "epochs": epochs,
        "calibration_epoch_s": round(calib.train_seconds, 2),
        "bare_fit_s": [round(bare_before, 2), round(bare_after, 2)],
        "search_trials": n_trials,
        "search_returncode": cli.returncode,
        "search_wall_s": round(cli.wall_s, 2),
        "search_done_at_s": [round(t, 2) for t in cli.done_at_s],
        "search_trial_intervals_s": [round(t, 2) for t in intervals],
        "search_statuses": statuses,
        "search_specs_match_bare": specs_match,
        "trial_function_s": [round(r.seconds, 2) for r in outcome.records],
        "first_trial_with_startup_s": round(cli.done_at_s[0], 2) if cli.done_at_s else None,
        "per_trial_search_s": None if per_trial is None else round(per_trial, 2),
        "ratio": None if ratio is None else round(ratio, 3),
        "load_average": loads,
        "valid": ok,
        "output_tail": None if ok else cli.output_tail,
    }


def ray_floor_slot_s(n_trials: int) -> dict[str, Any]:
    """Return Ray Tune's own per-slot time for a trivial trainable (2 at a time, reused actors)."""
    import os

    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    done_at: list[float] = []

    class Stamp(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            done_at.append(time.monotonic())

    def trivial(config: dict[str, Any]) -> None:
        tune.report({"score": 1.0})

    started = time.monotonic()
    ray.init(
        address="local",  # never a cluster already running here (see benchlib.run_cli_search)
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        tuner = tune.Tuner(
            tune.with_resources(trivial, {"CPU": 1}),
            param_space={"i": tune.grid_search(list(range(n_trials)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
            run_config=tune.RunConfig(
                storage_path=str(benchlib.temp_workdir("rayfloor")), verbose=0, callbacks=[Stamp()]
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()
    rel = [t - started for t in done_at]
    slot = benchlib.steady_slot_s(rel, 2, skip=2)  # as for fsnas's trials
    return {
        "trials": n_trials,
        "done_at_s": [round(t, 2) for t in rel],
        "slot_s": None if slot is None else round(slot, 3),
    }


def measure_fixed(n_trials: int, workdir: Path, repeats: int) -> dict[str, Any]:
    """Return the per-trial overhead of tiny trials, with and without MLflow, and Ray's floor."""
    data = load_features(TINY_DATA, cache_dir=benchlib.CACHE_DIR)
    channels = 8
    spec = one_point_spec(data, channels)
    config = TrainConfig(epochs=1, num_threads=1)
    bare_fit_s(spec, data, config)  # first call pays lazy imports
    bare = [bare_fit_s(spec, data, config)[0] for _ in range(repeats)]
    bare_s = statistics.median(bare)
    out: dict[str, Any] = {
        "spec": spec.summary(),
        "data": TINY_DATA,
        "epochs": 1,
        "bare_fit_s": [round(b, 3) for b in bare],
        "bare_fit_median_s": round(bare_s, 3),
    }
    for label, tracking in (("mlflow", None), ("no_tracking", "none")):
        cfg = study_config(
            f"overhead-fixed-{label}",
            TINY_DATA,
            channels,
            config,
            {"num_cpus": 2, "max_concurrent": 2},
        )
        cfg["search"]["trials"] = n_trials
        if tracking:
            cfg["tracking_uri"] = tracking
        cli = benchlib.run_cli_search(cfg, workdir / f"fixed-{label}")
        # the first two completions include actor start-up (fresh processes, imports)
        slot = benchlib.steady_slot_s(cli.done_at_s, 2, skip=2)
        out[label] = {
            "trials": n_trials,
            "returncode": cli.returncode,
            "wall_s": round(cli.wall_s, 2),
            "done_at_s": [round(t, 2) for t in cli.done_at_s],
            "slot_s": None if slot is None else round(slot, 3),
            "overhead_s": None if slot is None else round(slot - bare_s, 3),
            "output_tail": cli.output_tail if cli.returncode else None,
        }
    out["ray_floor"] = ray_floor_slot_s(n_trials)
    return out


def goals(ratio: dict[str, Any], fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the summary rows of this benchmark."""
    r = ratio.get("ratio")
    rows = [
        benchlib.goal_row(
            f"framework overhead: search / bare trial wall time <= {RATIO_GOAL:.2f} (~30 s trials)",
            "n/a (run failed)"
            if r is None or not ratio["valid"]
            else f"{r:.3f} ({ratio['per_trial_search_s']:.1f} s vs "
            f"{statistics.mean(ratio['bare_fit_s']):.1f} s, {ratio['epochs']} epochs)",
            None if r is None or not ratio["valid"] else r <= RATIO_GOAL,
        )
    ]
    default = fixed["mlflow"]["overhead_s"]
    plain = fixed["no_tracking"]["overhead_s"]
    floor = fixed["ray_floor"]["slot_s"]
    rows.append(
        benchlib.goal_row(
            f"fixed per-trial overhead on local Ray <= {OVERHEAD_GOAL_S} s",
            "n/a (run failed)"
            if default is None
            else f"{default:.2f} s with MLflow (default), "
            + ("n/a" if plain is None else f"{plain:.2f} s")
            + " without; Ray Tune floor "
            + ("n/a" if floor is None else f"{floor:.2f} s"),
            None if default is None else default <= OVERHEAD_GOAL_S,
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and write ``overhead.json``; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-s", type=float, default=30.0, help="bare trial length")
    parser.add_argument("--ratio-trials", type=int, default=3)
    parser.add_argument("--tiny-trials", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny settings")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.target_s, args.ratio_trials, args.tiny_trials = 1.0, 2, 4
    torch.set_num_threads(1)
    run = benchlib.BenchRun("overhead")
    workdir = benchlib.temp_workdir("overhead")
    ratio = measure_ratio(args.target_s, args.ratio_trials, workdir)
    print(f"ratio: {ratio}", file=sys.stderr)
    fixed = measure_fixed(args.tiny_trials, workdir, repeats=2 if args.quick else 5)
    print(f"fixed: {fixed}", file=sys.stderr)
    payload = {
        "quick": args.quick,
        "what": __doc__.split("\n\n")[1].strip() if __doc__ else "",
        "ratio": ratio,
        "fixed": fixed,
        "goals": goals(ratio, fixed),
    }
    benchlib.write_result(run, payload, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
