"""Compare fsnas's VRAM estimate (CPU, meta device) with the measured GPU anchors and MemTracker.

For every network measured in DESIGN.md (five FSDD anchors, three literature presets) prints
and stores: the measured peak-minus-base (H200), fsnas's ``estimate_train_vram`` (its
``above_weights_and_batch_mb``, the same quantity), PyTorch's
``torch.distributed._tools.mem_tracker.MemTracker`` run under ``FakeTensorMode`` on the CPU
(the off-the-shelf baseline, two Adam steps, its peak minus weights and batch), the errors,
and the estimator's run time. Needs no GPU and no data.

Usage: python benchmarks/vram_estimator.py [--out benchmarks/results/vram_estimator_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from search_spaces import build_model, count_params
from trainers.cost import estimate_train_vram
from trainers.cost_anchors import VramAnchor, anchor_networks, preset_anchors
from trainers.cost_vram import MIB, loss_fn, make_targets

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "vram_estimator_cpu.json"


def memtracker_above_base_mb(anchor: VramAnchor) -> float | None:
    """Return MemTracker's peak (FakeTensorMode, CPU, 2 Adam steps) minus weights and batch."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    compute_loss = loss_fn(anchor.task)
    try:
        with FakeTensorMode():
            model = build_model(anchor.spec, anchor.n_mels, anchor.n_frames, anchor.n_classes)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x = torch.randn(anchor.batch_size, 1, anchor.n_mels, anchor.n_frames)
            y = make_targets(anchor.task, anchor.batch_size, anchor.n_classes, "cpu")
            tracker = MemTracker()
            tracker.track_external(model, opt)
            with tracker:
                for _ in range(2):
                    tracker.reset_mod_stats()  # it refuses a second iteration otherwise
                    opt.zero_grad(set_to_none=True)
                    compute_loss(model(x), y).backward()
                    opt.step()
            peak = tracker.get_tracker_snapshot("peak")
    except Exception as exc:  # the baseline is best effort; report why it did not run
        print(f"  MemTracker failed on {anchor.name}: {type(exc).__name__}: {exc}")
        return None
    total_b = sum(snap["Total"] for snap in peak.values())
    weights_b = sum(p.numel() * p.element_size() for p in model.parameters())
    weights_b += sum(b.numel() * b.element_size() for b in model.buffers())
    batch_b = x.numel() * x.element_size() + y.numel() * y.element_size()
    return (total_b - weights_b - batch_b) / MIB


def run() -> dict[str, Any]:
    """Return one row per measured network plus summary error statistics."""
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    # the first estimate pays one-off lazy imports inside torch.optim; keep it out of timings
    warm = anchor_networks()[-2]
    estimate_train_vram(warm.spec, warm.n_mels, warm.n_frames, warm.n_classes, 4, "adam")
    for anchor in anchor_networks() + preset_anchors():
        start = time.perf_counter()
        estimate = estimate_train_vram(
            anchor.spec,
            anchor.n_mels,
            anchor.n_frames,
            anchor.n_classes,
            anchor.batch_size,
            "adam",
            task=anchor.task,
        )
        seconds = time.perf_counter() - start
        baseline = memtracker_above_base_mb(anchor)
        measured = anchor.measured_above_base_mb
        model = build_model(anchor.spec, anchor.n_mels, anchor.n_frames, anchor.n_classes)
        rows.append(
            {
                "name": anchor.name,
                "params": count_params(model),
                "input": f"{anchor.batch_size}×1×{anchor.n_mels}×{anchor.n_frames}",
                "task": anchor.task,
                "measured_above_base_mb": measured,
                "estimate_above_base_mb": round(estimate.above_weights_and_batch_mb, 1),
                "estimate_error_pct": round(
                    100 * (estimate.above_weights_and_batch_mb / measured - 1), 1
                ),
                "estimate_train_vram_mb": round(estimate.train_vram_mb, 1),
                "estimate_breakdown_mb": {k: round(v, 1) for k, v in estimate.breakdown.items()},
                "estimate_peak_op": estimate.peak_op,
                "estimate_seconds": round(seconds, 3),
                "memtracker_above_base_mb": None if baseline is None else round(baseline, 1),
                "memtracker_error_pct": None
                if baseline is None
                else round(100 * (baseline / measured - 1), 1),
            }
        )
    return {
        "what": "fsnas estimate_train_vram vs measured anchors (DESIGN.md, H200) and MemTracker",
        "compared_quantity": "peak minus weights and batch (anchor protocol peak-minus-base), MiB",
        "method": estimate.method,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": rows,
        "summary": {
            "estimate": _errors([r["estimate_error_pct"] for r in rows]),
            "memtracker": _errors(
                [r["memtracker_error_pct"] for r in rows if r["memtracker_error_pct"] is not None]
            ),
        },
    }


def _errors(errors_pct: list[float]) -> dict[str, float | int]:
    if not errors_pct:
        return {"n": 0}
    absolute = [abs(e) for e in errors_pct]
    return {
        "n": len(errors_pct),
        "mean_abs_error_pct": round(statistics.mean(absolute), 2),
        "max_abs_error_pct": round(max(absolute), 2),
    }


def main() -> None:
    """Run the comparison, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = run()
    header = f"{'network':<24} {'params':>8} {'measured':>9} {'fsnas':>8} {'err':>7} "
    header += f"{'MemTracker':>10} {'err':>7} {'time':>6}"
    print(header)
    for r in result["rows"]:
        mt = r["memtracker_above_base_mb"]
        mt_text = "n/a" if mt is None else f"{mt:.1f}"
        mt_err = "" if mt is None else f"{r['memtracker_error_pct']:+.1f}%"
        print(
            f"{r['name']:<24} {r['params']:>8} {r['measured_above_base_mb']:>9.0f} "
            f"{r['estimate_above_base_mb']:>8.1f} {r['estimate_error_pct']:>+6.1f}% "
            f"{mt_text:>10} {mt_err:>7} {r['estimate_seconds']:>5.2f}s"
        )
    for name, stats in result["summary"].items():
        print(f"{name}: {stats}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
