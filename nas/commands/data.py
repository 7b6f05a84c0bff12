"""``fsnas data inspect``: what a data source holds, and build (or validate) its feature cache."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from trainers.featureset import FeatureSet


def register(subparsers: Any) -> None:
    """Add the ``data`` sub-command with ``inspect``."""
    parser = subparsers.add_parser("data", help="inspect a data source and build its cache")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = actions.add_parser(
        "inspect",
        help="classes, counts per split, durations, sample rates, skipped files",
        description=(
            "Resolve --data, draw or read its split, and build the feature cache (or validate "
            "the existing one); then print classes, counts per split, clip durations, sample "
            "rates and skipped files."
        ),
    )
    inspect.add_argument(
        "--data",
        required=True,
        metavar="KIND:PATH",
        help="data source, e.g. synthetic, fsdd:DIR, folder:DIR, csv:FILE, pattern:DIR",
    )
    inspect.add_argument("--label-regex", metavar="R", help="for pattern:DIR, label regex")
    inspect.add_argument(
        "--on-bad-audio",
        choices=("fail", "skip"),
        default="fail",
        help="undecodable files: fail (default, listing them) or skip (and report them)",
    )
    inspect.add_argument(
        "--cache-dir", default=".fsnas/cache", metavar="D", help="feature cache (.fsnas/cache)"
    )
    inspect.add_argument("--seed", type=int, default=0, help="seed of a drawn split")
    inspect.add_argument("--device", default=None, help="where to compute features (default auto)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--progress", action="store_true", help="progress bar while building")
    inspect.set_defaults(func=run_inspect)


def summarise(features: FeatureSet, seconds: float) -> dict[str, Any]:
    """Return the inspection report of ``features`` as a JSON-ready dict."""
    splits = {"train": features.train, "valid": features.valid, "test": features.test}
    if features.task == "multi_label":
        per_class = np.zeros(features.n_classes, dtype=np.int64)
        for split in splits.values():
            per_class += np.asarray(split.y).sum(axis=0).astype(np.int64)
        class_counts = dict(zip(features.labels, per_class.tolist()))
    else:
        counts = Counter[int]()
        for split in splits.values():
            counts.update(np.asarray(split.y).tolist())
        class_counts = {label: counts[i] for i, label in enumerate(features.labels)}
    durations = features.durations_s if features.durations_s is not None else np.zeros(0)
    rates = features.sample_rates_hz if features.sample_rates_hz is not None else np.zeros(0)
    cfg = features.feature_config
    return {
        "source": features.source,
        "clips": int(sum(len(s) for s in splits.values())),
        "classes": features.n_classes,
        "labels": features.labels,
        "task": features.task,
        "splits": {name: len(split) for name, split in splits.items()},
        "split_note": features.split_note,
        "class_counts": class_counts,
        "skipped": features.skipped,
        "durations_s": {
            "min": float(durations.min()) if durations.size else None,
            "mean": float(durations.mean()) if durations.size else None,
            "max": float(durations.max()) if durations.size else None,
        },
        "sample_rates_hz": {str(k): int(v) for k, v in sorted(Counter(rates.tolist()).items())},
        "feature_config": cfg.to_dict(),
        "input_shape": [1, cfg.n_mels, cfg.n_frames],
        "cache_key": features.cache_key,
        "cache_path": features.cache_path,
        "from_cache": features.from_cache,
        "seconds": round(seconds, 3),
    }


def run_inspect(args: argparse.Namespace) -> int:
    """Build or validate the cache of ``--data`` and print its report (text or ``--json``)."""
    import warnings

    from search_spaces.errors import FsnasWarning
    from trainers.errors import DataError
    from trainers.features import load_features
    from trainers.sources import open_source
    from trainers.splits import assign_splits, check_classes

    started = time.perf_counter()
    features = load_features(
        args.data,
        cache_dir=args.cache_dir,
        on_bad_audio=args.on_bad_audio,
        label_regex=args.label_regex,
        seed=args.seed,
        device=args.device,
        progress=args.progress,
        trainable=False,  # inspecting is fine; say below what training would refuse
    )
    try:
        source = open_source(args.data, label_regex=args.label_regex)
        check_classes(source)
        assign_splits(source, seed=args.seed)  # a class missing from valid or test
    except DataError as exc:
        warnings.warn(f"training would refuse this data: {exc}", FsnasWarning, stacklevel=1)
    report = summarise(features, time.perf_counter() - started)
    if args.json:
        from dashboards.records import json_ready

        json.dump(json_ready(report), sys.stdout, allow_nan=False)
        print()
        return 0
    durations = report["durations_s"]
    print(f"source      {report['source']}  ({report['task']}, {report['split_note']})")
    print(f"clips       {report['clips']}  in {report['classes']} classes")
    print("splits      " + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    print("classes     " + ", ".join(f"{k} {v}" for k, v in report["class_counts"].items()))
    if durations["min"] is not None:
        print(
            f"durations   {durations['min']:.2f} / {durations['mean']:.2f} / "
            f"{durations['max']:.2f} s (min / mean / max)"
        )
    print("rates       " + ", ".join(f"{k} Hz: {v}" for k, v in report["sample_rates_hz"].items()))
    print(f"features    {report['input_shape']} (1 x mels x frames)")
    cached = "read from cache" if report["from_cache"] else "built"
    print(f"cache       {report['cache_path']}  ({cached} in {report['seconds']:.2f} s)")
    if report["skipped"]:
        print(f"skipped     {len(report['skipped'])} file(s):")
        for item in report["skipped"]:
            print(f"  {item['path']}: {item['reason']}")
    return 0
