"""``fsnas confirm --study S [--front | --top K | --trials 3,7] [--seeds N] [--baseline B]``.

Retrains a study's designs with new seeds (``nas.confirm``) and reports the mean and 95 % CI of
every objective, the front of the means and which designs differ from the baseline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# flag -> dotted config key (the study's own config is the default of each)
FLAG_KEYS: dict[str, str] = {
    "tracking_uri": "tracking_uri",
    "address": "resources.address",
    "gpus_per_trial": "resources.gpus_per_trial",
    "cpus_per_trial": "resources.cpus_per_trial",
    "max_concurrent": "resources.max_concurrent",
    "cache_dir": "data.cache_dir",
}


def register(subparsers: Any) -> None:
    """Add the ``confirm`` sub-command."""
    parser = subparsers.add_parser(
        "confirm",
        help="retrain a study's designs with new seeds: mean and 95%% CI, front of the means",
        description=(
            "Retrain designs of a stored study (its Pareto front by default, --top K by the "
            "first objective, or --trials N,M) with --seeds new seeds through the search's Ray "
            "path and resources, then print the mean and 95 % confidence interval of every "
            "objective, the Pareto front of the means, and which designs differ from the "
            "baseline (paired over seeds, Holm-corrected). Writes confirm.csv, the ablation "
            "files and a front-with-error-bars plot (HTML, PNG) to --out and logs to MLflow "
            "beside the study. Rerun the same command to resume: finished design × seeds are "
            "kept in the study's storage and never trained or logged twice."
        ),
    )
    parser.add_argument("--study", required=True, metavar="NAME", help="study name")
    parser.add_argument(
        "--storage", metavar="URL", help="Optuna storage (default sqlite:///.fsnas/studies.db)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--front", action="store_true", help="the study's Pareto front (default)")
    which.add_argument("--top", type=int, metavar="K", help="the K best by the first objective")
    which.add_argument("--trials", metavar="N,M", help="these trial numbers, e.g. 3,7")
    parser.add_argument("--seeds", type=int, default=3, metavar="N", help="new seeds (3)")
    parser.add_argument(
        "--first-seed",
        type=int,
        metavar="S",
        help="first new seed (default: the study's train.seed + 1; seeds S..S+N-1)",
    )
    parser.add_argument(
        "--baseline",
        metavar="TRIAL|PRESET|FILE",
        help="what every design is compared with: a trial number, preset:NAME or a spec JSON "
        "(default: the first design, the best first objective)",
    )
    parser.add_argument("--name", metavar="NAME", help="confirmation name (STUDY-confirm)")
    parser.add_argument("--out", metavar="DIR", help="output folder (.fsnas/confirm/NAME)")
    parser.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow store ('none' switches tracking off)"
    )
    parser.add_argument("--address", metavar="ADDR", help="join a Ray cluster (auto, HOST:PORT)")
    parser.add_argument("--gpus-per-trial", metavar="auto|FRACTION|N", help="(the study's)")
    parser.add_argument("--cpus-per-trial", type=float, metavar="C", help="(the study's)")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once")
    parser.add_argument("--cache-dir", metavar="DIR", help="feature cache (the study's)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="train in this process one trial at a time, without Ray (debugging, tests)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan, train (or resume) and summarise the confirmation; print the table; exit 0."""
    import io
    import sys

    from dashboards.records import json_ready
    from nas import ablation_run, confirm, confirm_report
    from nas.config import apply_overrides, from_dict
    from nas.search import load_study_features, trial_train_config
    from nas.study import read_study
    from nas.trial import TrialSettings

    stored = read_study(args.study, args.storage)
    overrides = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}
    config = apply_overrides(from_dict(stored.config, f"study {args.study!r}"), overrides)
    objectives = stored.objectives
    study_front = confirm.front_of(stored)
    trials = confirm.parse_trials(args.trials) if args.trials else ()
    chosen = confirm.choose(stored.records, study_front, objectives, top=args.top, trials=trials)
    base_index, extra = confirm.baseline_variant(args.baseline, stored.records, chosen)
    seeds = confirm.new_seeds(config.train.seed, args.seeds, args.first_seed)
    name = args.name or f"{args.study}-confirm"
    plan = confirm.confirm_plan(name, chosen, seeds, base_index, extra)
    data = load_study_features(config)
    plan.validate(data.n_mels, data.n_frames)
    settings = TrialSettings(train_config=trial_train_config(config), objectives=tuple(objectives))
    inner = (
        ablation_run.local_runner(data, settings)
        if args.local
        else confirm.fixed_runner(config, data, settings, f"confirm-{name}")
    )
    runner = confirm.resuming_runner(inner, stored.study, name)
    out_dir = Path(args.out) if args.out else Path(".fsnas") / "confirm" / name
    tracker = _start_tracker(config, name, args.study, plan, objectives)
    n = len(plan.variants) * len(plan.seeds)
    kept = sum(
        confirm.attr_key(name, v.name, s) in confirm.stored_results(stored.study, name)
        for v in plan.variants
        for s in plan.seeds
    )
    stream = io.StringIO() if args.json else sys.stdout
    print(
        f"confirm {name}: {len(plan.variants)} design(s) of study {args.study} × "
        f"{len(seeds)} new seed(s) {seeds} = {n} trials ({config.train.epochs} epochs each, "
        f"{'in this process' if args.local else 'through Ray Tune'}); baseline {plan.base.name}"
        + (f"; resuming: {kept} of {n} kept, {n - kept} to train" if kept else ""),
        file=stream,
        flush=True,
    )
    for variant in plan.variants:
        role = " (baseline)" if variant.is_base else ""
        print(f"  {variant.name}{role}: {variant.spec.summary()}", file=stream, flush=True)
    ablation = ablation_run.run_ablation(
        plan, runner, metric=objectives[0].name, out_dir=out_dir, tracker=tracker, stream=stream
    )
    results = confirm.confirm_stats(plan, ablation.records, objectives)
    files = confirm_report.write_confirm_outputs(out_dir, results, objectives, args.study)
    outcome = confirm_report.ConfirmOutcome(
        ablation,
        results,
        list(objectives),
        [*ablation.files, *files],
        runner.replayed,
        runner.trained,
    )
    if tracker is not None:
        from dashboards.confirm_tracking import set_description

        tracker.log_artifacts(files)
        set_description(tracker, confirm_report.description(outcome, args.study))
    if args.json:
        print(json.dumps(json_ready(confirm_report.outcome_dict(outcome))))
        return 0
    print(outcome.table())
    print(f"trained {outcome.trained}, kept from an earlier run {outcome.replayed}")
    print(f"files: {out_dir}/ ({', '.join(p.name for p in outcome.files)})")
    if ablation.tracking_uri:
        print(
            f"MLflow: {ablation.tracking_uri} (experiment {args.study}, confirm parent run "
            f"{ablation.parent_run_id}); browse with `fsnas ui`"
        )
    return 0


def _start_tracker(config: Any, name: str, study: str, plan: Any, objectives: Any) -> Any:
    """Return a started ConfirmTracker (None with ``--tracking-uri none``)."""
    from dashboards.confirm_tracking import ConfirmTracker
    from dashboards.mlflow_store import checked_tracking_uri

    uri = checked_tracking_uri(config.tracking_uri)
    if uri is None:
        return None
    tracker = ConfirmTracker(
        uri,
        name,
        study,
        {
            "confirm": {
                "name": name,
                "of_study": study,
                "seeds": list(plan.seeds),
                "designs": [v.name for v in plan.variants],
                "baseline": plan.base.name,
                "objectives": [o.name for o in objectives],
            },
            "train": config.to_dict()["train"],
            "resources": config.to_dict()["resources"],
        },
    )
    tracker.start()
    return tracker


__all__ = ["FLAG_KEYS", "register", "run"]
