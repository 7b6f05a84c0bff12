"""The ``fsnas`` command line: one sub-command per module in ``nas.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from search_spaces.errors import FsnasError, FsnasWarning

# Each module defines register(subparsers) which adds its parser and sets ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "export",
    "predict",
    "evaluate",
    "presets",
    "cost",
    "ui",
    "search",
    "pareto",
    "demo",
    "train",
    "ablate",
    "confirm",
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
    """Run the CLI; errors that fsnas raises on purpose print one message and exit 2.

    Warnings fsnas raises on purpose (``FsnasWarning``) print as one line each,
    ``fsnas COMMAND: warning: ...``, on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a command's own resume line
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("default", FsnasWarning)
        warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
        try:
            return int(args.func(args) or 0)
        except FsnasError as exc:
            print(f"fsnas {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _one_line_warnings(command: str, fallback: Any) -> Any:
    """Return a ``warnings.showwarning`` printing FsnasWarnings as one line (others unchanged)."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, FsnasWarning):
            text = " ".join(str(message).split())
            print(f"fsnas {command}: warning: {text}", file=file or sys.stderr)
        else:
            fallback(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":
    sys.exit(main())
