"""FSDD benchmark: does a ~30-trial search find >= 97 % test accuracy at <= 1/4 of the VGG's VRAM?

Runs the search of ``configs/fsdd.yaml`` (flags override it), then trains the reference 5-block
3×3 VGG (DESIGN.md's anchor: 5 × [3×3 conv, 128 ch, BN, ReLU, 2×2 max-pool], global max, dense)
on the same features with the same TrainConfig, and reports every complete trial that reaches
``--min-test-accuracy`` at no more than ``--vram-fraction`` of the VGG's peak training VRAM.
Meant for a CUDA machine (VRAM is then measured; on CPU both sides are estimates).

    python benchmarks/search_fsdd.py [--trials 30] [--epochs 20] [--study fsdd-bench]

Writes ``benchmarks/results/search_fsdd.json``; exit status 0 when such a design was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nas.config import load_config
from nas.search import load_study_features, outcome_text, run_search, trial_train_config
from search_spaces.spec import ArchSpec
from trainers.train import fit

REPO = Path(__file__).resolve().parents[1]


VGG_SPEC = REPO / "configs" / "specs" / "vgg5_c128.json"


def vgg5() -> ArchSpec:
    """Return the anchor's 5-block 3×3 VGG with 128 channels (DESIGN.md, first table row)."""
    return ArchSpec.from_json(VGG_SPEC.read_text(encoding="utf-8"))


def main() -> int:
    """Run the search and the VGG baseline; print and write the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "fsdd.yaml"))
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="stop each trial's training (and the VGG's) after this many seconds (CPU runs)",
    )
    parser.add_argument("--study", default=None)
    parser.add_argument(
        "--sampler", default=None, help="nsga2, tpe, gp, random (default: config's)"
    )
    parser.add_argument("--data", default=None, help="KIND:PATH (default: the config's)")
    parser.add_argument("--storage", default=None)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--min-test-accuracy", type=float, default=0.97)
    parser.add_argument("--vram-fraction", type=float, default=0.25)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "search_fsdd.json"))
    args = parser.parse_args()

    config = load_config(
        args.config,
        {
            "search.trials": args.trials,
            "train.epochs": args.epochs,
            "train.time_budget_s": args.time_budget_s,
            "study": args.study,
            "search.sampler": args.sampler,
            "data.source": args.data,
            "storage": args.storage,
            "tracking_uri": args.tracking_uri,
        },
    )
    started = time.monotonic()
    outcome = run_search(config)
    search_s = time.monotonic() - started
    print(outcome_text(outcome))

    data = load_study_features(config)
    # the same TrainConfig a trial gets (threads per trial included)
    vgg = fit(vgg5(), data, trial_train_config(config), "auto")
    if vgg.status != "complete" or vgg.train_vram_mb is None:
        print(f"VGG baseline did not complete: {vgg.status} {vgg.reason}", file=sys.stderr)
        return 2
    budget_mb = vgg.train_vram_mb * args.vram_fraction
    within = [
        r
        for r in outcome.records
        if r.status == "complete"
        and r.costs.get("train_vram_mb") is not None
        and float(r.costs["train_vram_mb"]) <= budget_mb
    ]
    winners = sorted(
        (r for r in within if r.metrics.get("test_accuracy", 0.0) >= args.min_test_accuracy),
        key=lambda r: (-r.metrics["test_accuracy"], float(r.costs["train_vram_mb"])),
    )
    print(
        f"\nVGG 5x(3x3,128): test accuracy {vgg.metrics.get('test_accuracy', float('nan')):.4f}, "
        f"train VRAM {vgg.train_vram_mb:.1f} MiB ({vgg.vram_source}) on {vgg.device}; "
        f"budget {args.vram_fraction:g} x = {budget_mb:.1f} MiB"
    )
    for r in winners:
        print(
            f"  trial {r.number}: test accuracy {r.metrics['test_accuracy']:.4f}, "
            f"train VRAM {float(r.costs['train_vram_mb']):.1f} MiB ({r.costs.get('vram_source')}) "
            f"= {float(r.costs['train_vram_mb']) / vgg.train_vram_mb:.1%} of the VGG  "
            f"{r.spec_summary}" + ("  (warm start)" if r.initial_spec else "")
        )
    if not winners:
        print(f"  no trial reached {args.min_test_accuracy:.0%} within the budget")
    result = {
        "study": config.study,
        "trials": len(outcome.records),
        "search_seconds": round(search_s, 1),
        "epochs": config.train.epochs,
        "sampler": config.search.sampler,
        "space": config.space,
        "initial_specs": list(config.search.initial_specs),
        "counts": {
            status: sum(r.status == status for r in outcome.records)
            for status in sorted({r.status for r in outcome.records})
        },
        # the best designs within the budget, whatever their accuracy (what the search found)
        "best_within_budget": [
            {
                "number": r.number,
                "test_accuracy": r.metrics.get("test_accuracy"),
                "train_vram_mb": r.costs.get("train_vram_mb"),
                "spec_summary": r.spec_summary,
            }
            for r in sorted(within, key=lambda r: -float(r.metrics.get("test_accuracy", 0.0)))[:3]
        ],
        "time_budget_s": config.train.time_budget_s,
        "device": vgg.device,
        "vgg": {
            "test_accuracy": vgg.metrics.get("test_accuracy"),
            "train_vram_mb": vgg.train_vram_mb,
            "vram_source": vgg.vram_source,
            "params": vgg.params,
        },
        "budget_mb": budget_mb,
        "winners": [
            {
                "number": r.number,
                "test_accuracy": r.metrics["test_accuracy"],
                "val_accuracy": r.metrics.get("val_accuracy"),
                "train_vram_mb": r.costs["train_vram_mb"],
                "vram_source": r.costs.get("vram_source"),
                "params": r.costs.get("params"),
                "spec_summary": r.spec_summary,
                "spec": r.spec,
                # a design of search.initial_specs (warm start), not one the search proposed
                "warm_start": bool(r.initial_spec),
            }
            for r in winners
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {out}")
    return 0 if winners else 1


if __name__ == "__main__":
    sys.exit(main())
