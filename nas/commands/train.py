"""``fsnas train``: train one architecture (a preset or a spec file) and print metrics and costs."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from search_spaces.errors import SpecError
from search_spaces.spec import ArchSpec
from search_spaces.validate import validate


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``train`` sub-command."""
    from trainers.result import TrainConfig

    parser = subparsers.add_parser(
        "train",
        help="train one architecture and print its metrics and costs",
        description=(
            "Load (or compute and cache) the features of --data, train one architecture on the "
            "train split, keep the weights of its best epoch on the valid split (early stopping "
            "with --patience), evaluate them on the test split and print metrics and costs "
            "(params, GFLOPs, training/inference VRAM, latency). A preset's head is built for "
            "the data's classes and its input for the data's n_mels x n_frames. Exit status 0 "
            "for a complete (or pruned) trial, 1 for a failed one (oom, diverged, invalid), "
            "2 for a usage error."
        ),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--preset", metavar="NAME", help="a literature preset (fsnas presets)")
    which.add_argument("--spec", metavar="FILE", help="an ArchSpec JSON file")
    parser.add_argument(
        "--data",
        required=True,
        metavar="KIND:PATH",
        help="data source, e.g. synthetic, fsdd:../data/fsdd/recordings, folder:DIR, csv:FILE",
    )
    defaults = TrainConfig()
    parser.add_argument(
        "--epochs", type=_positive_int, default=None, metavar="N", help=f"default {defaults.epochs}"
    )
    parser.add_argument(
        "--batch",
        type=_positive_int,
        default=None,
        metavar="B",
        help=f"default {defaults.batch_size}",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help=f"learning rate (default {defaults.lr:g})"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    parser.add_argument(
        "--patience",
        type=_positive_int,
        default=None,
        metavar="E",
        help="early-stopping patience (epochs)",
    )
    parser.add_argument(
        "--time-budget-s", type=float, default=None, metavar="S", help="stop training after S s"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="T",
        help="torch CPU threads (default: all)",
    )
    parser.add_argument(
        "--checkpoint-dir", default=None, metavar="D", help="save the best weights (safetensors)"
    )
    parser.add_argument(
        "--cache-dir", default=".fsnas/cache", metavar="D", help="feature cache (.fsnas/cache)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db; 'none' = off)",
    )
    parser.add_argument(
        "--experiment",
        default="fsnas-train",
        metavar="NAME",
        help="MLflow experiment of the run (default fsnas-train)",
    )
    parser.add_argument(
        "--freq-mask-bins",
        type=int,
        metavar="F",
        help="SpecAugment: mask up to F mel bins, twice per clip (default off)",
    )
    parser.add_argument(
        "--time-mask-frames",
        type=int,
        metavar="T",
        help="SpecAugment: mask up to T frames, twice per clip (default off)",
    )
    parser.add_argument(
        "--mixup-alpha", type=float, metavar="A", help="mixup with Beta(A, A) (default off)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the TrialResult as one JSON object on stdout"
    )
    parser.set_defaults(func=run)


def load_spec(args: argparse.Namespace) -> tuple[ArchSpec, str]:
    """Return ``(spec, description)`` of ``--preset`` or ``--spec``.

    Raises:
        SpecError: unknown preset, unreadable file or malformed spec (naming which).
    """
    if args.preset:
        from search_spaces.presets import get_preset

        preset = get_preset(args.preset)
        return preset.spec, (
            f"preset {preset.name!r} (made for {preset.n_mels} x {preset.n_frames} input)"
        )
    from nas.commands.cost import read_spec

    path = Path(args.spec)
    try:
        # one reader for every spec file: size limit, UTF-8, JSON (see fsnas cost)
        return read_spec(str(path)), f"spec file {str(path)!r}"
    except SpecError as exc:
        raise SpecError(f"--spec {exc}") from None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(result: Any) -> str:
    """Return the metrics and costs of a TrialResult as a two-column text table."""
    rows: list[tuple[str, str]] = [("status", result.status)]
    if result.reason:
        rows.append(("reason", result.reason))
    for key, value in result.metrics.items():
        rows.append((key, _fmt(value, 0) if key == "best_epoch" else _fmt(value)))
    rows += [
        ("params", _fmt(result.params)),
        ("gflops", _fmt(result.gflops, 4)),
        ("train_vram_mb", f"{_fmt(result.train_vram_mb, 1)} MiB ({result.vram_source})"),
        ("train_reserved_mb", f"{_fmt(result.train_reserved_mb, 1)} MiB ({result.vram_source})"),
        ("infer_vram_mb", f"{_fmt(result.infer_vram_mb, 1)} MiB"),
        ("latency_ms", _fmt(result.latency_ms, 3)),
        ("epochs_run", _fmt(result.epochs_run)),
        ("train_seconds", _fmt(result.train_seconds, 1)),
        ("seconds", _fmt(result.seconds, 1)),
        ("device", result.device),
    ]
    if result.checkpoint:
        rows.append(("checkpoint", result.checkpoint))
    elif result.extra.get("checkpoint_error"):
        rows.append(("checkpoint", f"not written: {result.extra['checkpoint_error']}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    """Train; usage errors are FsnasErrors (one line, exit 2), a failed trial exits 1."""
    from tqdm import tqdm

    from dashboards.mlflow_store import checked_tracking_uri
    from dashboards.records import json_ready
    from trainers.features import load_features
    from trainers.result import TrainConfig
    from trainers.train import check_train_config, fit, resolve_device

    spec, described = load_spec(args)
    tracking_uri = checked_tracking_uri(args.tracking_uri)  # before any training
    device = resolve_device(args.device)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch,
        "lr": args.lr,
        "early_stopping_patience": args.patience,
        "time_budget_s": args.time_budget_s,
        "checkpoint_dir": args.checkpoint_dir,
        "num_threads": args.threads,
        "freq_mask_bins": args.freq_mask_bins,
        "time_mask_frames": args.time_mask_frames,
        "mixup_alpha": args.mixup_alpha,
    }
    config = TrainConfig(seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
    check_train_config(config)  # a bad flag is a usage error (exit 2), not a failed trial
    data = load_features(args.data, cache_dir=args.cache_dir, seed=args.seed)
    try:
        validate(spec, data.n_mels, data.n_frames)
    except SpecError as exc:
        raise SpecError(
            f"{described} does not fit the data's {data.n_mels} x {data.n_frames} input "
            f"(n_mels x n_frames): {exc}"
        ) from None
    from trainers.cost import design_inputs, refuse_too_large

    # exit 2 before the model is built (a trial would record infeasible)
    refuse_too_large(spec, *design_inputs(data, config), device)
    print(
        f"training {spec.summary()} on {args.data}: {len(data.train)}/{len(data.valid)}/"
        f"{len(data.test)} clips (train/valid/test), {data.n_mels} x {data.n_frames}, "
        f"{data.n_classes} classes, {config.epochs} epochs on {device}",
        file=sys.stderr,
    )
    with tqdm(total=config.epochs, unit="epoch", file=sys.stderr, desc="train") as bar:

        def report(row: dict[str, float]) -> None:
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in row.items() if k == "train_loss" or k.startswith("val")}
            )
            bar.update(1)

        result = fit(spec, data, config, device, report)
    if args.json:
        print(json.dumps(json_ready(result.to_dict()), allow_nan=False))
    else:
        print(format_table(result))
    if tracking_uri is not None:
        _log_run(tracking_uri, args, spec, config, result)
    return 0 if result.status in ("complete", "pruned") else 1


def _log_run(
    tracking_uri: str, args: argparse.Namespace, spec: ArchSpec, config: Any, result: Any
) -> None:
    """Log the trained run to MLflow; a tracking failure warns and keeps the printed result."""
    from dashboards.run_contents import log_single_run
    from nas.trial import record_from_fit
    from search_spaces.errors import FsnasError

    record = record_from_fit(spec, result, config)
    artifacts = [Path(result.checkpoint)] if result.checkpoint else []
    try:
        run_id = log_single_run(
            tracking_uri,
            args.experiment,
            record,
            config={"data": args.data, "preset": args.preset or "", "spec_file": args.spec or ""},
            run_name=args.preset or spec.name or Path(args.spec or "spec").stem,
            artifacts=artifacts,
        )
    except FsnasError as exc:
        print(f"warning: the run was not logged to MLflow: {exc}", file=sys.stderr)
        return
    print(
        f"logged to MLflow {tracking_uri}: experiment {args.experiment!r}, run {run_id}",
        file=sys.stderr,
    )
