"""``fsnas search --config FILE.yaml [flags]``: the multi-objective architecture search."""

from __future__ import annotations

import argparse
from typing import Any

# flag -> dotted config key; one table so the parser, the help and the override agree
FLAG_KEYS: dict[str, str] = {
    "data": "data.source",
    "trials": "search.trials",
    "epochs": "train.epochs",
    "study": "study",
    "sampler": "search.sampler",
    "seed": "search.seed",
    "storage": "storage",
    "tracking_uri": "tracking_uri",
    "address": "resources.address",
    "gpus_per_trial": "resources.gpus_per_trial",
    "cpus_per_trial": "resources.cpus_per_trial",
    "max_concurrent": "resources.max_concurrent",
    "max_train_vram_mb": "search.max_train_vram_mb",
    "time_budget_s": "train.time_budget_s",
    "search_time_budget_s": "search.time_budget_s",
    "batch_size": "train.batch_size",
    "keep_weights": "search.keep_weights",
    "initial_spec": "search.initial_specs",
}


def add_study_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags that override study-config keys (shared by ``search`` and ``demo``)."""
    from nas.config import KEEP_WEIGHTS, SAMPLERS

    parser.add_argument("--config", metavar="FILE.yaml", help="study config (YAML)")
    parser.add_argument(
        "--data", metavar="KIND[:PATH]", help="e.g. synthetic, fsdd:DIR, folder:DIR"
    )
    parser.add_argument("--trials", type=int, metavar="N", help="finished trials to reach")
    parser.add_argument("--epochs", type=int, metavar="E", help="epochs per trial")
    parser.add_argument("--study", metavar="NAME", help="study name (with --storage: its id)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="Optuna sampler (default nsga2)")
    parser.add_argument("--seed", type=int, metavar="S", help="sampler and training seed")
    parser.add_argument("--storage", metavar="URL", help="Optuna storage (SQLAlchemy URL)")
    parser.add_argument(
        "--tracking-uri", metavar="URI", help="MLflow store ('none' switches tracking off)"
    )
    parser.add_argument("--address", metavar="ADDR", help="join a Ray cluster (auto, HOST:PORT)")
    parser.add_argument(
        "--gpus-per-trial", metavar="auto|FRACTION|N", help="GPU share per trial (default auto)"
    )
    parser.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once")
    parser.add_argument(
        "--max-train-vram-mb",
        type=float,
        metavar="MB",
        help="constraint: larger designs are recorded infeasible",
    )
    parser.add_argument(
        "--time-budget-s", type=float, metavar="S", help="training time limit per trial"
    )
    parser.add_argument(
        "--search-time-budget-s", type=float, metavar="S", help="wall-time limit of the search"
    )
    parser.add_argument("--batch-size", type=int, metavar="B", help="training batch size")
    parser.add_argument(
        "--keep-weights",
        choices=KEEP_WEIGHTS,
        help="trained weights kept for export: the final front's (default), all, none",
    )
    parser.add_argument(
        "--initial-spec",
        action="append",
        metavar="PRESET|FILE.json",
        help="warm start: evaluate this design first, as a trial of the study (a preset name or "
        "an ArchSpec JSON file; repeatable; must be a point of the search space)",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the dotted-key overrides of the flags the user gave."""
    return {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}


def register(subparsers: Any) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser(
        "search",
        help="search filter shapes: the accuracy-versus-VRAM Pareto front of your data",
        description=(
            "Run (or resume) a multi-objective search with Ray Tune and Optuna. Flags override "
            "the config file's keys. Re-running the same command (same --study and --storage) "
            "continues an interrupted search. Results: `fsnas pareto --study NAME`, MLflow "
            "(`fsnas ui`)."
        ),
    )
    add_study_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run the search, print the front; exit 0."""
    from nas.config import load_config
    from nas.search import outcome_text, run_search

    config = load_config(args.config, overrides(args))
    outcome = run_search(config)
    print(outcome_text(outcome))
    print(f"details: fsnas pareto --study {config.study} --storage {config.storage}")
    if outcome.tracking_uri:
        print(f"MLflow: {outcome.tracking_uri} (experiment {config.study}); browse with `fsnas ui`")
    return 0
