"""``fsnas search --config FILE.yaml [flags]``: the multi-objective architecture search."""

from __future__ import annotations

import argparse
import shlex
import sys
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
    "space": "space.base",
    "space_around": "space_around",
    "space_around_moves": "space_around_moves",
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
        "--gpus-per-trial",
        metavar="auto|FRACTION|N",
        help="GPU share per trial (default auto: the reserved-VRAM estimate + CUDA context + "
        "features, rounded up to 1/8, 1/4, 1/2 or 1 GPU)",
    )
    parser.add_argument("--cpus-per-trial", type=float, metavar="C", help="CPUs per trial")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="trials at once")
    parser.add_argument(
        "--max-train-vram-mb",
        type=float,
        metavar="MiB",
        help="constraint on train_vram_mb (peak allocated training VRAM, MiB): larger designs "
        "are recorded infeasible",
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
    parser.add_argument(
        "--space",
        metavar="NAME|FILE.yaml",
        help="search space to start from: a named space (literature: every preset) or a YAML "
        "file of search space keys; the config's space keys change it",
    )
    parser.add_argument(
        "--space-around",
        metavar="PRESET|FILE.json",
        help="search the designs near this one (each setting one step away, at most "
        "--space-around-moves of them); the design is the first trial; replaces the config's "
        "space",
    )
    parser.add_argument(
        "--space-around-moves",
        type=int,
        metavar="N",
        help="settings a design of --space-around may change (default 3)",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Return the dotted-key overrides of the flags the user gave.

    Raises:
        ConfigError: ``--space`` and ``--space-around`` together (they name two spaces).
    """
    from nas.config import ConfigError

    flags = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}
    if getattr(args, "space_around", None) is not None:
        if getattr(args, "space", None) is not None:
            raise ConfigError(
                f"--space {args.space} and --space-around {args.space_around}: give one of them"
            )
        flags = {"space": {}, **flags}  # the flag's space replaces the config file's
    return flags


def register(subparsers: Any) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser(
        "search",
        help="search filter shapes: the accuracy-versus-VRAM Pareto front of your data",
        description=(
            "Run (or resume) a multi-objective search with Ray Tune and Optuna. Flags override "
            "the config file's keys. Re-running the same command (same --study and --storage) "
            "continues an interrupted search. Exit 0 done, 2 bad input, 3 the Ray head of "
            "--address stopped answering mid-search, 130/143 SIGINT/SIGTERM. Results: "
            "`fsnas pareto --study NAME`, MLflow (`fsnas ui`)."
        ),
    )
    add_study_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, run the search, print the front; exit 0 (130 / 143 on SIGINT / SIGTERM,
    after printing what finished and the command that resumes; 3 when the Ray head of
    ``--address`` stops answering mid-search, ``nas.head_watchdog.HEAD_LOST_EXIT``)."""
    from nas.config import config_label, load_config
    from nas.search import SearchInterruptedWithOutcome, outcome_text, run_search
    from nas.spaces import study_space

    flags = overrides(args)
    config = load_config(args.config, flags)
    # a bad space name, file or design fails before any work, named as load_config names it
    study_space(config, where=config_label(args.config, flags))
    try:
        outcome = run_search(config)
    except SearchInterruptedWithOutcome as stopped:  # SIGINT / SIGTERM: what finished, how on
        print(outcome_text(stopped.outcome))
        argv = getattr(args, "argv", None) or ["search", "..."]
        again = shlex.join(["fsnas", *argv])
        print(f"fsnas search: {stopped}; resume with the same command: {again}", file=sys.stderr)
        return stopped.exit_code
    print(outcome_text(outcome))
    print(f"details: fsnas pareto --study {config.study} --storage {config.storage}")
    if outcome.tracking_uri:
        print(f"MLflow: {outcome.tracking_uri} (experiment {config.study}); browse with `fsnas ui`")
    return 0
