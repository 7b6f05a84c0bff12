"""``fsnas evaluate DIR --data KIND:PATH``: a bundle's metrics on any labelled data and shifts."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of an exported bundle on any labelled data (optionally pitch-shifted)",
        description=(
            "Featurise labelled data with the bundle's features.json, match its labels to the "
            "bundle's by name (labels the bundle does not know are an error naming them) and "
            "print the task's metrics. With --pitch-shift, one row per shift in semitones "
            "(the waveform is shifted before the log-mel; each shift is cached like any "
            "feature set) and the drop of each metric against shift 0."
        ),
    )
    parser.add_argument("bundle", metavar="DIR", help="bundle directory written by fsnas export")
    parser.add_argument(
        "--data", required=True, metavar="KIND:PATH", help="labelled data, e.g. csv:clips.csv"
    )
    parser.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="the data's test split (official, or drawn as training draws it; default) or all",
    )
    parser.add_argument(
        "--pitch-shift",
        metavar="S,S,...",
        default=None,
        help="semitones, e.g. -4,-2,0,2,4 (0 is added when missing)",
    )
    parser.add_argument(
        "--cache-dir", default=".fsnas/cache", metavar="D", help="feature cache (.fsnas/cache)"
    )
    parser.add_argument(
        "--on-bad-audio", choices=("fail", "skip"), default="fail", help="undecodable files"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of a drawn split (0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    # `--pitch-shift -4,-2,0,2,4` as the issue writes it: argparse takes only "-4"-like words for
    # negative numbers, so widen its matcher to comma-separated lists (or write --pitch-shift=-4,…)
    parser._negative_number_matcher = re.compile(r"^-\d[\d.,+-]*$")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics; bad input raises an FsnasError (one line, exit 2)."""
    from nas.bundle import load_exported
    from nas.evaluate import evaluate_bundle, parse_shifts

    shifts = parse_shifts(args.pitch_shift)  # before anything is loaded
    bundle = load_exported(args.bundle)
    result = evaluate_bundle(
        bundle,
        args.data,
        split=args.split,
        shifts=shifts,
        cache_dir=args.cache_dir,
        on_bad_audio=args.on_bad_audio,
        seed=args.seed,
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    names = list(result.at_zero.metrics)
    print(f"bundle  {result.bundle}")
    print(f"data    {result.data} ({result.split}, {result.at_zero.n_clips} clips)")
    print(f"labels  {len(result.labels)} of the bundle's {len(bundle.labels)}")
    header = f"{'shift':>6}  " + "  ".join(f"{n:>9}" for n in names)
    if len(result.rows) > 1:
        header += "  " + "  ".join(f"{'drop ' + n:>14}" for n in names)
    print(header)
    for row in result.rows:
        cells = "  ".join(f"{row.metrics[n]:>9.4f}" for n in names)
        line = f"{row.pitch_shift_semitones:>+6g}  {cells}"
        if len(result.rows) > 1:
            line += "  " + "  ".join(f"{row.drop[n]:>+14.4f}" for n in names)
        print(line)
    return 0
