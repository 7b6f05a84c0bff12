"""``fsnas ablate``: one factor (or two, ``--grid``) around a base spec, or a built-in study,
trained with several seeds through the search's Ray Tune path; a table with 95 % intervals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from search_spaces.space import ABLATION_FACTORS

# flag -> dotted study-config key (the rest of the config comes from --config or defaults)
FLAG_KEYS: dict[str, str] = {
    "data": "data.source",
    "epochs": "train.epochs",
    "batch": "train.batch_size",
    "lr": "train.lr",
    "tracking_uri": "tracking_uri",
    "address": "resources.address",
    "gpus_per_trial": "resources.gpus_per_trial",
    "cpus_per_trial": "resources.cpus_per_trial",
    "max_concurrent": "resources.max_concurrent",
    "cache_dir": "data.cache_dir",
}


def register(subparsers: Any) -> None:
    """Add the ``ablate`` sub-command."""
    from nas.ablation import STUDIES
    from search_spaces.anchors import STUDY_DEFAULT_CHANNELS

    parser = subparsers.add_parser(
        "ablate",
        help="ablation study: variants × seeds, mean and 95%% CI of the metric and costs",
        description=(
            "Train every variant of a base architecture (one factor changed, or two with "
            "--grid; or a built-in --study) with --seeds seeds through Ray Tune, then print the "
            "mean and 95 % confidence interval of the metric and of each cost, and the paired "
            "difference of every variant with the base (CI, p-value). Writes ablation.csv and "
            "plots to --out and logs everything to MLflow under one parent run."
        ),
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--base", metavar="preset:NAME|SPEC.json", help="the architecture the factor changes"
    )
    what.add_argument("--study", choices=sorted(STUDIES), help="a built-in ablation study")
    parser.add_argument(
        "--factor",
        choices=ABLATION_FACTORS,
        metavar="F",
        help=f"one of {', '.join(ABLATION_FACTORS)}",
    )
    parser.add_argument(
        "--values",
        metavar="V1,V2,...",
        help="factor values, e.g. 3,0.4M,0.9M (heights), 1,2,3 (depth), max,mean (pooling)",
    )
    parser.add_argument("--grid", choices=ABLATION_FACTORS, metavar="F2", help="second factor")
    parser.add_argument("--grid-values", metavar="V1,V2,...", help="values of --grid")
    parser.add_argument(
        "--channels",
        type=int,
        metavar="C",
        default=STUDY_DEFAULT_CHANNELS,
        help=f"channels of every layer of a --study ({STUDY_DEFAULT_CHANNELS})",
    )
    parser.add_argument("--seeds", type=int, default=3, metavar="K", help="seeds per variant (3)")
    parser.add_argument("--data", metavar="KIND[:PATH]", help="e.g. fsdd:DIR (default synthetic)")
    parser.add_argument("--epochs", type=int, metavar="E", help="epochs per trial")
    parser.add_argument("--batch", type=int, metavar="B", help="training batch size (64)")
    parser.add_argument("--lr", type=float, metavar="LR", help="learning rate (0.001)")
    parser.add_argument(
        "--metric",
        metavar="NAME",
        help="metric to compare (default: the task's test metric, e.g. test_accuracy)",
    )
    parser.add_argument("--config", metavar="FILE.yaml", help="study config (features, train…)")
    parser.add_argument("--out", metavar="DIR", help="output folder (.fsnas/ablations/NAME)")
    parser.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow store ('none' switches tracking off)"
    )
    parser.add_argument("--name", metavar="NAME", help="ablation name (MLflow experiment)")
    parser.add_argument("--address", metavar="ADDR", help="join a Ray cluster (auto, HOST:PORT)")
    parser.add_argument("--gpus-per-trial", metavar="auto|FRACTION|N", help="(auto)")
    parser.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial (1)")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once")
    parser.add_argument("--cache-dir", metavar="DIR", help="feature cache (.fsnas/cache)")
    parser.add_argument(
        "--local",
        action="store_true",
        help="train in this process one trial at a time, without Ray (debugging)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def read_base(text: str) -> Any:
    """Return the ArchSpec of ``--base``: ``preset:NAME`` or a spec JSON file.

    Raises:
        SpecError: unknown preset or an unreadable/invalid spec file.
    """
    from nas.commands.cost import read_spec
    from search_spaces.presets import get_preset

    if text.startswith("preset:"):
        preset = get_preset(text[len("preset:") :])
        return preset.spec.replace(name=preset.spec.name or preset.name)
    return read_spec(text)


def _check_flags(args: argparse.Namespace) -> None:
    from nas.ablation import AblationError

    if args.seeds < 1:
        raise AblationError(f"--seeds must be >= 1, got {args.seeds}")
    if args.base is not None and (args.factor is None or args.values is None):
        raise AblationError("--base needs --factor F and --values v1,v2,...")
    if args.study is not None and (args.factor or args.values or args.grid):
        raise AblationError(
            f"--study {args.study} fixes its variants: drop --factor/--values/--grid"
        )
    if (args.grid is None) != (args.grid_values is None):
        raise AblationError("--grid F2 and --grid-values v1,v2,... go together")


def run(args: argparse.Namespace) -> int:
    """Plan, train and summarise the ablation; print the table (or JSON); exit 0."""
    import dataclasses

    from dashboards.records import json_ready
    from nas import ablation, ablation_run
    from nas.config import load_config
    from nas.search import load_study_features
    from nas.trial import TrialSettings
    from trainers.metrics import METRIC_NAMES, PRIMARY_METRIC

    _check_flags(args)
    seeds = list(range(args.seeds))
    plan = None
    if args.base is not None:
        base = read_base(args.base)
        grid_values = ablation.parse_factor_values(args.grid, args.grid_values) if args.grid else ()
        plan = ablation.factor_plan(
            base,
            args.factor,
            ablation.parse_factor_values(args.factor, args.values),
            seeds,
            grid_factor=args.grid,
            grid_values=grid_values,
        )
    name = args.name or ablation.default_name(plan.name if plan is not None else args.study)
    overrides = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}
    overrides["study"] = name
    config = load_config(args.config, overrides)

    data = load_study_features(config)
    if plan is None:
        plan = ablation.study_plan(
            args.study, data.n_mels, data.n_frames, seeds, channels=args.channels, plan_name=name
        )
    else:
        plan = dataclasses.replace(plan, name=name)
    plan.validate(data.n_mels, data.n_frames)
    metric = args.metric or f"test_{PRIMARY_METRIC[data.task]}"
    allowed = [f"{split}_{m}" for split in ("test", "val") for m in METRIC_NAMES[data.task]]
    if metric not in allowed:
        raise ablation.AblationError(
            f"--metric {metric!r}: a {data.task} task reports {', '.join(allowed)}"
        )
    threads = max(1, int(config.resources.cpus_per_trial))
    settings = TrialSettings(
        train_config=dataclasses.replace(
            config.train, num_threads=config.train.num_threads or threads
        ),
        objectives=tuple(config.objectives(data.task)),
    )
    runner = (
        ablation_run.local_runner(data, settings)
        if args.local
        else ablation_run.ray_runner(config, data, settings)
    )
    out_dir = Path(args.out) if args.out else Path(".fsnas") / "ablations" / name
    tracker = _start_tracker(config, plan, metric)
    n_trials = len(plan.variants) * len(plan.seeds)
    if not args.json:
        print(
            f"ablation {name}: {len(plan.variants)} variants × {len(plan.seeds)} seeds = "
            f"{n_trials} trials on {data.source or config.data.source} "
            f"({data.n_mels} mel × {data.n_frames} frames, {config.train.epochs} epochs)",
            flush=True,
        )
        for variant in plan.variants:
            role = " (base)" if variant.is_base else ""
            print(f"  {variant.name}{role}: {variant.spec.summary()}", flush=True)
    outcome = ablation_run.run_ablation(
        plan,
        runner,
        metric=metric,
        out_dir=out_dir,
        tracker=tracker,
        stream=_devnull() if args.json else None,
    )
    if args.json:
        print(json.dumps(json_ready(outcome.to_dict())))
        return 0
    print(outcome.table())
    print(f"files: {out_dir}/ ({', '.join(p.name for p in outcome.files)})")
    if outcome.tracking_uri:
        print(
            f"MLflow: {outcome.tracking_uri} (experiment {name}, parent run "
            f"{outcome.parent_run_id}); browse with `fsnas ui`"
        )
    print(f"wall time {outcome.seconds:.0f} s")
    return 0


def _devnull() -> Any:
    import io

    return io.StringIO()


def _start_tracker(config: Any, plan: Any, metric: str) -> Any:
    """Return a started StudyTracker for the ablation (None with ``--tracking-uri none``)."""
    from dashboards import tracking
    from dashboards.mlflow_store import checked_tracking_uri

    uri = checked_tracking_uri(config.tracking_uri)
    if uri is None:
        return None
    tracker = tracking.StudyTracker(
        uri,
        plan.name,
        {
            "ablation": {
                "name": plan.name,
                "factors": list(plan.factors),
                "seeds": list(plan.seeds),
                "metric": metric,
                "variants": [v.name for v in plan.variants],
                "base": plan.base.name,
            },
            "data": config.to_dict()["data"],
            "train": config.to_dict()["train"],
            "resources": config.to_dict()["resources"],
        },
        kind="ablation",
    )
    tracker.start()
    return tracker


__all__ = ["FLAG_KEYS", "read_base", "register", "run"]
