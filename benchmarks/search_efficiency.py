"""Search efficiency: hypervolume after 20 and 40 trials for nsga2, tpe and random, 3 seeds each.

What runs (cheap but real): the shipped config for the embedded default (``configs/demo.yaml``:
its space, objectives ``val_accuracy`` vs estimated ``train_vram_mb``, batch 32, lr 0.003,
NSGA-II generations of 8; TPE, multivariate and grouped, starts with 10 random trials) on a
smaller draw of the synthetic data (``synthetic:clips_per_class=40`` = 400 one-second clips,
seeded 80/10/10 split) and
``--epochs`` 2 epochs per trial, with a per-trial training time budget of ``--trial-budget-s``
seconds as a guard. Each (sampler, seed) study asks 40 trials of a sampler built by
``nas.study.make_sampler`` (as ``fsnas search`` builds it for a 40-trial study), samples specs
with the config's ``SearchSpace``, trains each with the real trial function
``nas.trial.run_trial`` (one CPU thread) and tells Optuna each record as the search does
(``nas.study.tell_record``), one trial at a time
(a proposal repeating a trained design is answered by ``nas.study.RepeatGuard`` and the sampler
asked again, as in ``fsnas search``, so each study trains 40 distinct designs)
in-process: Ray is left out because it changes nothing the samplers see when trials run one at
a time, and it would cost the CPU budget. The 9 studies run in two processes. Hypervolume
(``nas.pareto.records_hypervolume``) uses one reference point for every study: 0 accuracy and
1.1 × the largest VRAM of any complete trial of any study.

Goal: the better of nsga2 and tpe at 20 trials (mean over seeds) >= random at 40 trials.

Usage: python benchmarks/search_efficiency.py [--trials 40] [--seeds 3] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

SAMPLERS = ("nsga2", "tpe", "random")
DATA = "synthetic:clips_per_class=40,seed=0"
CONFIG = benchlib.REPO / "configs" / "demo.yaml"


def study_overrides(
    sampler: str, seed: int, trials: int, data: str, epochs: int, budget_s: float
) -> dict[str, Any]:
    """Return the dotted config overrides of one (sampler, seed) study."""
    return {
        "search.sampler": sampler,
        "search.seed": seed,
        "search.trials": trials,
        "data.source": data,
        "data.cache_dir": str(benchlib.CACHE_DIR),
        "train.epochs": epochs,
        "train.time_budget_s": budget_s,
        "train.num_threads": 1,
        "tracking_uri": "none",
    }


def run_study(job: dict[str, Any]) -> dict[str, Any]:
    """Run one (sampler, seed) study of ``job["trials"]`` trials; return its records as dicts."""
    import optuna
    import torch

    from nas.config import load_config
    from nas.search import build_space, load_study_features
    from nas.study import MAX_REDRAWS, RepeatGuard, make_sampler, redraw_sampler, tell_record
    from nas.trial import TrialSettings, record_from_result, run_trial

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = load_config(CONFIG, job["overrides"])
    data = load_study_features(config)
    space = build_space(config, data)
    objectives = config.objectives(data.task)
    settings = TrialSettings(
        train_config=dataclasses.replace(config.train, num_threads=1),
        objectives=tuple(objectives),
    )
    study = optuna.create_study(
        directions=[o.direction for o in objectives], sampler=make_sampler(config)
    )
    records = []
    repeats = RepeatGuard(study)  # as fsnas search does: a repeated design is not retrained
    started = time.monotonic()
    for _ in range(config.search.trials):
        trial = study.ask()
        spec = space.sample(trial)
        for _ in range(MAX_REDRAWS):
            if not repeats.answer(trial):
                break
            with redraw_sampler(study, trial.number):
                trial = study.ask()
                spec = space.sample(trial)
        final = run_trial({"spec": spec.to_dict()}, data, settings, None, "cpu")
        record = record_from_result(final, trial.number)
        assert record is not None  # run_trial always returns its record
        state, told = tell_record(study, trial, record, [o.name for o in objectives])
        repeats.finished(None, trial, state, told)
        records.append(record.to_dict())
    return {
        "sampler": job["sampler"],
        "seed": job["seed"],
        "seconds": time.monotonic() - started,
        "repeats": repeats.count,
        "records": records,
    }


def hypervolumes(
    studies: list[dict[str, Any]], checkpoints: list[int]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Return (the common reference point, one row per study with HV at each checkpoint)."""
    from dashboards.records import Objective, TrialRecord
    from nas.pareto import default_reference, front_candidates, records_hypervolume

    objectives = [
        Objective("val_accuracy", "maximize", "val_accuracy"),
        Objective("train_vram_mb", "minimize", "peak training VRAM (MiB)"),
    ]
    parsed = [[TrialRecord.from_dict(r) for r in s["records"]] for s in studies]
    everyone = [r for records in parsed for r in records]
    points = [
        [float(everyone[i].objectives[o.name]) for o in objectives]
        for i in front_candidates(everyone, objectives)
    ]
    ref_list = default_reference(points, [o.direction for o in objectives])
    reference = {o.name: v for o, v in zip(objectives, ref_list)}
    rows = []
    for study, records in zip(studies, parsed):
        row: dict[str, Any] = {"sampler": study["sampler"], "seed": study["seed"]}
        for k in checkpoints:
            row[f"hv_{k}"] = records_hypervolume(records[:k], objectives, reference)[0]
        statuses = [r.status for r in records]
        row["complete"] = statuses.count("complete")
        row["not_complete"] = {s: statuses.count(s) for s in set(statuses) if s != "complete"}
        row["hit_time_budget"] = sum(
            1
            for r in records
            if r.status == "complete" and int(r.costs.get("epochs_run") or 0) < study["epochs"]
        )
        row["seconds"] = round(study["seconds"], 1)
        # proposals that repeated a design already trained: answered, not counted as trials
        row["repeats_answered"] = int(study.get("repeats", 0))
        rows.append(row)
    return reference, rows


def summarise(rows: list[dict[str, Any]], checkpoints: list[int]) -> dict[str, dict[str, float]]:
    """Return mean and standard deviation of the hypervolume per sampler and checkpoint."""
    out: dict[str, dict[str, float]] = {}
    for sampler in sorted({r["sampler"] for r in rows}):
        mine = [r for r in rows if r["sampler"] == sampler]
        stats: dict[str, float] = {}
        for k in checkpoints:
            values = [r[f"hv_{k}"] for r in mine]
            stats[f"hv_{k}_mean"] = statistics.mean(values)
            stats[f"hv_{k}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out[sampler] = stats
    return out


def goals(summary: dict[str, dict[str, float]], early: int, late: int) -> list[dict[str, Any]]:
    """Return the summary row: best of nsga2/tpe at ``early`` trials vs random at ``late``."""
    guided = {s: summary[s][f"hv_{early}_mean"] for s in ("nsga2", "tpe") if s in summary}
    if not guided or "random" not in summary:
        return []
    best = max(guided, key=lambda s: guided[s])
    random_late = summary["random"][f"hv_{late}_mean"]
    parts = ", ".join(f"{s}@{early} {v:.2f}" for s, v in guided.items())
    return [
        benchlib.goal_row(
            f"search efficiency: nsga2 or tpe at {early} trials >= random at {late} "
            "(hypervolume, mean of seeds)",
            f"{parts} vs random@{late} {random_late:.2f}",
            guided[best] >= random_late,
        )
    ]


def main(argv: list[str] | None = None) -> int:
    """Run every (sampler, seed) study and write ``search_efficiency.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trial-budget-s", type=float, default=10.0)
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--workers", type=int, default=2, help="parallel studies")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny settings")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.seeds, args.epochs, args.workers = 2, 1, 1, 1
        args.data = "synthetic:clips_per_class=3,seed=0"
    early = args.trials // 2
    checkpoints = [early, args.trials]
    run = benchlib.BenchRun("search_efficiency")
    jobs = [
        {
            "sampler": sampler,
            "seed": seed,
            "epochs": args.epochs,
            "overrides": study_overrides(
                sampler, seed, args.trials, args.data, args.epochs, args.trial_budget_s
            ),
        }
        for seed in range(args.seeds)
        for sampler in args.samplers
    ]
    # build the feature cache once, before the workers race to build it
    from nas.config import load_config
    from nas.search import load_study_features

    load_study_features(load_config(CONFIG, jobs[0]["overrides"]))
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            studies = list(pool.map(run_study, jobs))
    else:
        studies = [run_study(job) for job in jobs]
    for study, job in zip(studies, jobs):
        study["epochs"] = job["epochs"]
    reference, rows = hypervolumes(studies, checkpoints)
    summary = summarise(rows, checkpoints)
    for sampler, stats in summary.items():
        print(sampler, {k: round(v, 3) for k, v in stats.items()}, file=sys.stderr)
    payload = {
        "quick": args.quick,
        "what": __doc__.split("\n\n")[1].strip() if __doc__ else "",
        "data": args.data,
        "config": str(CONFIG.relative_to(benchlib.REPO)),
        "trials": args.trials,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "trial_budget_s": args.trial_budget_s,
        "reference_point": reference,
        "studies": rows,
        "summary": summary,
        "goals": goals(summary, early, args.trials),
        "trials_detail": [
            {
                "sampler": s["sampler"],
                "seed": s["seed"],
                "trials": [
                    {
                        "status": r["status"],
                        "objectives": r["objectives"],
                        "spec": r["spec_summary"],
                        "seconds": round(r["seconds"], 2),
                    }
                    for r in s["records"]
                ],
            }
            for s in studies
        ],
    }
    benchlib.write_result(run, payload, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
