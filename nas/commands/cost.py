"""``fsnas cost SPEC.json --n-mels M --n-frames T --n-classes K``: what one architecture costs.

The rendering here is shared with ``fsnas presets show`` (one place for the cost output).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import ArchSpec, trace
from search_spaces.errors import SpecError
from search_spaces.spec import MAX_SPEC_JSON_CHARS
from trainers.featureset import TASKS

if TYPE_CHECKING:  # torch and fvcore are imported when a cost is computed, not at CLI start
    from trainers.cost import CostReport


def add_cost_arguments(parser: argparse.ArgumentParser, input_required: bool) -> None:
    """Add the input-shape and cost options shared by ``cost`` and ``presets show``."""
    note = "" if input_required else " (default: the preset's reference input)"
    parser.add_argument("--n-mels", type=int, required=input_required, help="mel bins" + note)
    parser.add_argument("--n-frames", type=int, required=input_required, help="frames" + note)
    parser.add_argument("--n-classes", type=int, required=input_required, help="outputs" + note)
    parser.add_argument("--batch", type=int, default=64, help="training batch size (64)")
    parser.add_argument(
        "--optimizer", choices=("adamw", "adam", "sgd"), default="adamw", help="(adamw)"
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="single_label",
        help="loss for the VRAM figure: cross-entropy or BCE (single_label)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (VRAM estimated) or cuda[:N] (VRAM measured by trainers.vram_probe); "
        "latency runs here (cpu)",
    )
    parser.add_argument(
        "--latency-repeats",
        type=int,
        default=10,
        help="timed batch-1 forward passes for the median latency; 0 skips (10)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def read_spec(path: str) -> ArchSpec:
    """Return the ArchSpec stored as JSON at ``path``.

    Raises:
        SpecError: the file is missing/unreadable or is not a valid spec (message names it).
    """
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror or exc})") from None
    if size > 4 * MAX_SPEC_JSON_CHARS:  # checked again in characters once read
        raise SpecError(
            f"{path}: {size:,} bytes > the spec limit of {MAX_SPEC_JSON_CHARS:,} characters "
            "(MAX_SPEC_JSON_CHARS); a spec is a few kB"
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); save the spec "
            "as UTF-8 JSON"
        ) from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def report_cost(
    spec: ArchSpec,
    args: argparse.Namespace,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    source: str = "",
) -> int:
    """Print the spec, its layer shapes and its cost report (text or one JSON object).

    Everything is computed before the first line is printed, so an error prints nothing else.
    """
    shapes = trace(spec, n_mels, n_frames)  # SpecError before anything is built
    from trainers.cost import cost_report

    report = cost_report(
        spec,
        n_mels,
        n_frames,
        n_classes,
        batch_size=args.batch,
        optimizer=args.optimizer,
        device=args.device,
        task=args.task,
        latency_repeats=args.latency_repeats,
    )
    from search_spaces.receptive import receptive_field

    field = receptive_field(spec, n_mels, n_frames)
    if args.json:
        payload: dict[str, Any] = {"name": spec.name, **report.to_dict(), **field.to_dict()}
        if source:
            payload["source"] = source
        payload["spec"] = spec.to_dict()
        from dashboards.records import json_ready

        print(json.dumps(json_ready(payload), allow_nan=False))
        return 0
    if source:
        print(f"source     {source}")
    print(f"spec       {spec.name or '(unnamed)'}: {spec.summary()}")
    print(f"input      {n_mels} mel × {n_frames} frames, {n_classes} outputs")
    print("layers     (channels × freq × time)")
    for layer in shapes.layers:
        print(f"  {layer.name:<16} {layer.channels:>6} × {layer.freq:>4} × {layer.time:>5}")
    print(format_report(report))
    whole = field.whole_freq_block or "no block (only the head's frequency pooling)"
    print(
        f"receptive  {field.final.freq_bins} mel bins x {field.final.time_frames} frames per unit "
        f"of the last block; the whole frequency axis is first seen by {whole}"
    )
    return 0


def format_report(report: CostReport) -> str:
    """Return the human-readable lines of a cost report."""
    breakdown = ", ".join(f"{k} {v:.1f}" for k, v in report.vram_breakdown.items() if v)
    lines = [
        f"params     {report.params:,}",
        f"GFLOPs     {report.gflops:.4f} per clip (fvcore: 1 flop = 1 multiply-add)",
        f"train VRAM {report.train_vram_mb:.1f} MiB {report.vram_source} "
        f"(batch {report.batch_size}, {report.optimizer}, {report.task}; peak allocated)",
    ]
    if report.train_reserved_mb is not None:
        lines.append(
            f"           {report.train_reserved_mb:.1f} MiB reserved (caching allocator peak)"
        )
    if breakdown:
        lines.append(f"           at the peak: {breakdown} MiB")
    lines.append(
        f"infer VRAM {report.infer_vram_mb:.1f} MiB (batch 1), "
        f"{report.infer_vram_batch_mb:.1f} MiB (batch {report.batch_size}) {report.vram_source}"
    )
    if report.latency_ms is not None:
        lines.append(f"latency    {report.latency_ms:.2f} ms (batch 1, median, {report.device})")
    if report.skipped_ops:
        skipped = ", ".join(f"{op} ×{n}" for op, n in sorted(report.skipped_ops.items()))
        lines.append(f"0 FLOPs    {skipped}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``fsnas cost``."""
    spec = read_spec(args.spec)
    return report_cost(spec, args, args.n_mels, args.n_frames, args.n_classes)


def register(subparsers: Any) -> None:
    """Add the ``cost`` sub-command."""
    parser = subparsers.add_parser(
        "cost",
        help="params, FLOPs, VRAM and latency of one architecture (spec JSON)",
        description="Print what one architecture costs: params, forward GFLOPs, peak training "
        "and inference VRAM in MiB (measured on CUDA, estimated otherwise; allocated and "
        "reserved peaks, see docs/vram.md) and latency.",
    )
    parser.add_argument("spec", help="ArchSpec JSON file")
    add_cost_arguments(parser, input_required=True)
    parser.set_defaults(func=run)
