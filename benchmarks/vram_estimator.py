"""Compare fsnas's VRAM estimate (CPU, meta device) with the measured GPU anchors and MemTracker.

For every network measured in DESIGN.md (five FSDD anchors, three literature presets) prints
and stores: the measured peak-minus-base (H200), fsnas's ``estimate_train_vram`` (its
``above_weights_and_batch_mb``, the same quantity), PyTorch's
``torch.distributed._tools.mem_tracker.MemTracker`` run under ``FakeTensorMode`` on the CPU
(the off-the-shelf baseline, two Adam steps, its peak minus weights and batch), the errors,
and the estimator's run time. Needs no GPU and no data.

Both estimates (docs/vram.md): ``train_vram_mb`` (allocated peak, cuBLAS workspaces of the
H100/H200 class included) and ``train_reserved_mb`` (the caching-allocator simulation), beside
every CUDA figure DESIGN.md records (the anchors' peak-minus-base, the presets' absolute peaks,
the 1.2–1.6× reserved band), with the error; and both estimates for every preset at batch 32,
96 × 187, 50 outputs. ``--markdown`` prints the README's tables. ``--device cuda`` also
measures every network through ``trainers.vram_probe`` (the one probe).

Usage: python benchmarks/vram_estimator.py [--out benchmarks/results/vram_estimator_cpu.json]
       [--markdown] [--device cuda]
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
from trainers.cost_anchors import (
    RESERVED_BAND_NETWORKS,
    RESERVED_OVER_ALLOCATED,
    VramAnchor,
    anchor_networks,
    preset_anchors,
)
from trainers.cost_vram import DEFAULT_DEVICE_CLASS, MIB, loss_fn, make_targets

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


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return round(100 * (value / reference - 1), 1)


def _absolute_figures(anchor: VramAnchor, estimate: Any) -> dict[str, Any]:
    """Return both estimates beside DESIGN.md's absolute and reserved figures, with errors."""
    library = estimate.breakdown["library_workspace"]
    before = estimate.train_vram_mb - library  # the estimate without library workspaces
    absolute = anchor.measured_absolute_mb
    out: dict[str, Any] = {
        "estimate_reserved_mb": round(estimate.train_reserved_mb, 1),
        "estimate_library_workspace_mb": round(library, 3),
        "estimate_train_vram_before_mb": round(before, 1),
        "measured_absolute_mb": absolute,
        "absolute_error_pct": _pct(estimate.train_vram_mb, absolute),
        "absolute_error_before_pct": _pct(before, absolute),
        "reserved_over_allocated": round(estimate.train_reserved_mb / estimate.train_vram_mb, 2),
        "measured_reserved_band_mb": None,
        "reserved_in_band": None,
    }
    if absolute is not None and anchor.name in RESERVED_BAND_NETWORKS:
        lo, hi = (round(r * absolute) for r in RESERVED_OVER_ALLOCATED)
        out["measured_reserved_band_mb"] = [lo, hi]
        out["reserved_in_band"] = lo <= estimate.train_reserved_mb <= hi
    return out


def _measure_cuda(anchor: VramAnchor) -> dict[str, Any]:
    """Return the probe's two peaks of ``anchor`` on CUDA (cudnn.benchmark off)."""
    from trainers.cost import measure_train_vram
    from trainers.train import release_memory

    torch.backends.cudnn.benchmark = False
    device = torch.device("cuda")
    release_memory(device)
    measured = measure_train_vram(
        build_model(anchor.spec, anchor.n_mels, anchor.n_frames, anchor.n_classes),
        (anchor.batch_size, 1, anchor.n_mels, anchor.n_frames),
        anchor.n_classes,
        task=anchor.task,
        optimizer="adam",
        device=device,
    )
    release_memory(device)
    return {
        "cuda_device": measured.device_name,
        "cuda_train_vram_mb": round(measured.vram_mb, 1),
        "cuda_train_reserved_mb": round(measured.reserved_mb, 1),
        "cuda_above_state_mb": round(measured.above_base_mb, 1),
    }


def preset_rows() -> list[dict[str, Any]]:
    """Return both estimates for every preset at batch 32, 96 × 187, 50 outputs (BCE, Adam).

    A preset that does not fit 96 × 187 (its pooling needs a longer input) is estimated at its
    reference input, which the row names.
    """
    from search_spaces.errors import SpecError
    from search_spaces.presets import list_presets

    rows = []
    for preset in list_presets():
        shape = (96, 187, 50)
        try:
            estimate = estimate_train_vram(preset.spec, *shape, 32, "adam", task="multi_label")
        except SpecError:
            shape = (preset.n_mels, preset.n_frames, preset.n_classes)
            estimate = estimate_train_vram(preset.spec, *shape, 32, "adam", task="multi_label")
        reserved = estimate.train_reserved_mb
        rows.append(
            {
                "name": preset.name,
                "input": f"32×1×{shape[0]}×{shape[1]}, {shape[2]} outputs",
                "train_vram_mb": round(estimate.train_vram_mb, 1),
                "train_reserved_mb": None if reserved is None else round(reserved, 1),
                "library_workspace_mb": round(estimate.breakdown["library_workspace"], 3),
            }
        )
    return rows


def run(device: str = "cpu") -> dict[str, Any]:
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
                **_absolute_figures(anchor, estimate),
                **(_measure_cuda(anchor) if device == "cuda" else {}),
            }
        )
    return {
        "what": "fsnas estimate_train_vram vs measured anchors (DESIGN.md, H200) and MemTracker",
        "compared_quantity": "peak minus weights and batch (anchor protocol peak-minus-base), MiB",
        "device_class": DEFAULT_DEVICE_CLASS,
        "presets_batch32_96x187_50": preset_rows(),
        "method": estimate.method,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": rows,
        "summary": {
            "estimate": _errors([r["estimate_error_pct"] for r in rows]),
            "memtracker": _errors(
                [r["memtracker_error_pct"] for r in rows if r["memtracker_error_pct"] is not None]
            ),
            "absolute": _errors(
                [r["absolute_error_pct"] for r in rows if r["absolute_error_pct"] is not None]
            ),
            "absolute_before_workspaces": _errors(
                [
                    r["absolute_error_before_pct"]
                    for r in rows
                    if r["absolute_error_before_pct"] is not None
                ]
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


def _cell(value: Any, fmt: str = "{:.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def markdown(result: dict[str, Any]) -> str:
    """Return the README's two tables (MiB): estimates vs DESIGN.md's CUDA figures; presets."""
    lines = [
        "| network | estimate allocated | DESIGN.md absolute (error; before) | estimate above "
        "state | DESIGN.md above state (error) | estimate reserved | DESIGN.md reserved |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        absolute = "–"
        if r["measured_absolute_mb"] is not None:
            absolute = (
                f"{r['measured_absolute_mb']:.0f} ({r['absolute_error_pct']:+.1f} %; "
                f"{r['absolute_error_before_pct']:+.1f} %)"
            )
        band = r["measured_reserved_band_mb"]
        reserved = "not recorded"
        if band is not None:
            inside = "inside" if r["reserved_in_band"] else "outside"
            reserved = f"{band[0]}–{band[1]} (1.2–1.6× absolute; {inside})"
        lines.append(
            f"| `{r['name']}` | {r['estimate_train_vram_mb']:.1f} | {absolute} | "
            f"{r['estimate_above_base_mb']:.1f} | {r['measured_above_base_mb']:.0f} "
            f"({r['estimate_error_pct']:+.1f} %) | {r['estimate_reserved_mb']:.0f} | {reserved} |"
        )
    lines += [
        "",
        "| preset | input | train_vram_mb | train_reserved_mb |",
        "|---|---|---|---|",
    ]
    for p in result["presets_batch32_96x187_50"]:
        lines.append(
            f"| `{p['name']}` | {p['input']} | {p['train_vram_mb']:.1f} | "
            f"{p['train_reserved_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the comparison, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--markdown", action="store_true", help="also print the README tables")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    result = run(args.device)
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
    if args.markdown:
        print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
