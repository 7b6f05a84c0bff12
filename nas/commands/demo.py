"""``fsnas demo``: a real, short search on the embedded synthetic dataset (CPU, < 10 minutes)."""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_CONFIG = "configs/demo.yaml"  # inside the nas package (configs/demo.yaml links to it)


def demo_config_path() -> Path:
    """Return the path of the packaged demo config."""
    return Path(str(resources.files("nas").joinpath(DEMO_CONFIG)))


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="a real 20-trial search on the embedded synthetic dataset (CPU, < 10 min)",
        description=(
            "Search filter shapes on the embedded synthetic dataset with the packaged demo "
            "config (nas/configs/demo.yaml): Ray Tune + Optuna NSGA-II, accuracy versus peak "
            "training VRAM, a fresh study each run. Ends with the Pareto table and where to "
            "look in MLflow. Flags override the config like `fsnas search`."
        ),
    )
    from nas.commands.search import add_study_flags

    add_study_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo search and print the front and the MLflow pointers; exit 0."""
    from nas.commands.search import overrides
    from nas.config import load_config
    from nas.search import outcome_text, run_search
    from nas.spaces import study_space

    flags = overrides(args)
    if flags.get("study") is None:
        flags["study"] = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    config = load_config(args.config or demo_config_path(), flags)
    study_space(config)  # a bad space name, file or design fails before any work
    print(
        f"fsnas demo: study {config.study}, {config.search.trials} trials x "
        f"{config.train.epochs} epochs on {config.data.source} "
        "(CPU is fine; 3-6 min on 2 cores)",
        flush=True,
    )
    started = time.monotonic()
    outcome = run_search(config)
    print(outcome_text(outcome))
    print(f"search took {time.monotonic() - started:.0f} s")
    print(f"again: fsnas pareto --study {config.study} --storage {config.storage}")
    if outcome.tracking_uri:
        print(
            f"MLflow: tracking URI {outcome.tracking_uri}, experiment '{config.study}' (parent run "
            f"'{config.study}', one child run per trial; pareto.html under the parent's "
            "Artifacts). Open it with `fsnas ui` (training runs are under 'Model training')."
        )
    return 0
