"""The ``fsnas`` command line: one sub-command per module in ``nas.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from search_spaces.errors import FsnasError

# Each module defines register(subparsers) which adds its parser and sets ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "export",
    "predict",
    "presets",
    "cost",
    "ui",
    "search",
    "pareto",
    "demo",
    "train",
    "ablate",
    "data",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    from nas import __version__

    parser = argparse.ArgumentParser(
        prog="fsnas",
        description="Filter-shape NAS for audio spectrogram CNNs: search, ablate, export.",
    )
    parser.add_argument("--version", action="version", version=f"fsnas {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"nas.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; errors that fsnas raises on purpose print one message and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FsnasError as exc:
        print(f"fsnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
