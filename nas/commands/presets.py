"""``fsnas presets list|show``: the literature architectures and what they cost."""

from __future__ import annotations

import argparse
from typing import Any

from nas.commands.cost import add_cost_arguments, report_cost
from search_spaces.presets import PRESETS, get_preset


def run_list(args: argparse.Namespace) -> int:
    """Print one row per preset: name, source, reference input, reference params."""
    rows = [
        (p.name, f"{p.n_mels}×{p.n_frames}, {p.n_classes}", f"{p.reference_params:,}", p.source)
        for p in PRESETS.values()
    ]
    header = ("name", "input (mel×frames, outputs)", "params", "source")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print one preset's spec, layer shapes and cost at the given (or reference) input."""
    preset = get_preset(args.name)
    n_mels = preset.n_mels if args.n_mels is None else args.n_mels
    n_frames = preset.n_frames if args.n_frames is None else args.n_frames
    n_classes = preset.n_classes if args.n_classes is None else args.n_classes
    return report_cost(preset.spec, args, n_mels, n_frames, n_classes, source=preset.source)


def register(subparsers: Any) -> None:
    """Add the ``presets`` sub-command with ``list`` and ``show``."""
    parser = subparsers.add_parser("presets", help="literature architectures (list, show)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lister = actions.add_parser("list", help="table of presets: source, input, params")
    lister.set_defaults(func=run_list)
    shower = actions.add_parser(
        "show", help="a preset's spec, layer shapes and cost (params, GFLOPs, VRAM, latency)"
    )
    shower.add_argument("name", help="preset name (see `fsnas presets list`)")
    add_cost_arguments(shower, input_required=False)
    shower.set_defaults(func=run_show)
