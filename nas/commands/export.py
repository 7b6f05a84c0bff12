"""``fsnas export``: write the chosen trial of a study as a deployable bundle."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command."""
    from nas.config import DEFAULT_STORAGE, RETRAIN_ON
    from nas.pareto import SELECTION_RULES

    parser = subparsers.add_parser(
        "export",
        help="export the chosen architecture of a study as a deployable bundle",
        description=(
            "Pick a trial of a search with a selection rule, take its checkpoint or retrain it "
            "(same TrainConfig and seed), and write spec.json, model.safetensors, model.onnx "
            "(checked with onnxruntime), features.json, labels.json and model_card.md to DIR; "
            "then register the bundle in the MLflow Model Registry (alias 'champion') unless "
            "--tracking-uri none."
        ),
    )
    parser.add_argument("--study", required=True, help="study name (as given to fsnas search)")
    parser.add_argument(
        "--select",
        required=True,
        metavar="RULE",
        help=f"selection rule: {' | '.join(SELECTION_RULES)}",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="bundle directory to write")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default {DEFAULT_STORAGE})"
    )
    parser.add_argument(
        "--retrain-epochs",
        type=int,
        default=None,
        metavar="E",
        help="retrain for E epochs (default: use the trial's checkpoint, else its epochs)",
    )
    parser.add_argument(
        "--retrain-on",
        choices=RETRAIN_ON,
        default="train",
        help="train+valid adds the valid clips to training (early stopping off; epochs default "
        "to the trial's best epoch)",
    )
    parser.add_argument(
        "--data", default=None, metavar="KIND:PATH", help="data source, if moved since the search"
    )
    parser.add_argument(
        "--device", default="auto", help="device for retraining: auto, cpu, cuda (default auto)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI for the registry ('none' skips registration; default: the "
        "study's, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--register-name", default=None, help="registered model name (default <study>-model)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export; every expected failure is an FsnasError (one line, exit 2)."""
    import io
    import sys
    import warnings

    from dashboards.records import json_ready
    from nas.export import export_from_study

    stream = io.StringIO() if args.json else sys.stdout
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        outcome = export_from_study(
            args.study,
            args.select,
            args.out,
            storage=args.storage,
            retrain_epochs=args.retrain_epochs,
            retrain_on=args.retrain_on,
            data=args.data,
            device=args.device,
            tracking_uri=args.tracking_uri,
            register_name=args.register_name,
            stream=stream,
        )
    from search_spaces.errors import FsnasWarning

    for warning in caught:
        if issubclass(warning.category, (RuntimeWarning, FsnasWarning)):
            print(f"warning: {warning.message}", file=sys.stderr)
    if args.json:
        report = {
            "directory": str(outcome.directory),
            "metrics": outcome.metrics,
            "onnx_max_abs_diff": outcome.onnx_max_abs_diff,
            "sha256": outcome.sha256,
            "registered": outcome.registered,
        }
        # strict JSON: an undefined metric (NaN, e.g. ROC-AUC of a class absent from test)
        # is null, never a bare NaN
        print(json.dumps(json_ready(report), allow_nan=False))
    return 0
