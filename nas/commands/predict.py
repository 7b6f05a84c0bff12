"""``fsnas predict DIR AUDIO...``: the top labels of each audio file under an exported bundle."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``predict`` sub-command."""
    parser = subparsers.add_parser(
        "predict",
        help="classify audio files with an exported bundle",
        description=(
            "Load the bundle written by `fsnas export` and print the top-k labels with their "
            "probabilities (softmax for single-label, sigmoid for multi-label) for each file. "
            "Any sample rate and channel count is accepted: the audio is downmixed to mono, "
            "resampled and cropped/padded as the bundle's features.json says."
        ),
    )
    parser.add_argument("bundle", metavar="DIR", help="bundle directory written by fsnas export")
    parser.add_argument("audio", metavar="AUDIO", nargs="+", help="audio files to classify")
    parser.add_argument("--top-k", type=int, default=3, help="labels per file (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the predictions; a bad bundle or unreadable audio raises an FsnasError (exit 2).

    Damaged weights (their SHA-256 differs from the recorded one), NaN weights and NaN scores
    are refused by the loader, so every printed score is a finite number and ``--json`` is
    strict JSON.
    """
    from nas.bundle import BundleError, load_exported
    from search_spaces.errors import FsnasError

    if args.top_k < 1:
        raise FsnasError(f"--top-k must be >= 1, got {args.top_k}")
    bundle = load_exported(args.bundle)
    predictions = []
    for path in args.audio:
        try:
            probabilities = bundle.predict_file(path)
        except BundleError as exc:
            raise BundleError(f"{path}: {exc}") from None
        top = bundle.top_k(probabilities, args.top_k)
        predictions.append(
            {"path": path, "top": [{"label": label, "score": score} for label, score in top]}
        )
    if args.json:
        json.dump({"predictions": predictions}, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    for item in predictions:
        print(item["path"])
        for entry in item["top"]:
            print(f"  {entry['label']:<24} {entry['score']:.4f}")
    return 0
