"""Measured VRAM reference points (DESIGN.md, "Measured anchor" and "Literature presets").

One place for these facts: the VRAM estimator's test and ``benchmarks/vram_estimator.py``
compare against them. Every figure is the anchor protocol's *peak minus base*:
``max_memory_allocated`` over full Adam steps minus the allocation just before them, when the
weights and the data (the batch is a slice of it) were already on the GPU; so it holds
gradients, Adam state, activations and workspace, and it compares with
``VramEstimate.above_weights_and_batch_mb``. Measured on an H200 (torch 2.11, cudnn.benchmark
off), in MiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces import ArchSpec
from search_spaces.anchors import design_anchors
from trainers.cost_vram import Task


@dataclass(frozen=True)
class VramAnchor:
    """One measured network: its spec, input, task and measured peak-minus-base (MiB)."""

    name: str
    spec: ArchSpec
    n_mels: int
    n_frames: int
    n_classes: int
    batch_size: int
    task: Task
    measured_above_base_mb: float
    params: int | None = None  # the anchor network's count where it is stated exactly
    # DESIGN.md's absolute peak (max_memory_allocated, cuBLAS workspaces included), where given
    measured_absolute_mb: float | None = None


# DESIGN.md: "The allocator's reserved peak was 1.2–1.6× the allocated peak" (pons_vgg,
# musicnn; H200, torch 2.11). No per-network reserved figure is recorded.
RESERVED_OVER_ALLOCATED = (1.2, 1.6)
RESERVED_BAND_NETWORKS = ("pons_vgg", "musicnn")


def anchor_networks() -> list[VramAnchor]:
    """Return the five FSDD anchors of DESIGN.md (batch 64, 64 × 101, Adam, 10 classes).

    The networks are ``search_spaces.anchors.design_anchors`` (anchor_gpu.py's VGG and
    Vertical), in DESIGN.md's row order.
    """
    measured = {
        "vgg5_c128": 815,
        "vgg3_c64": 406,
        "vertical_0.9M_x1_c128": 120,
        "vertical_0.9M_x7_c128": 120,
        "musicnn_like_front": 1050,
    }
    return [
        VramAnchor(spec.name, spec, 64, 101, 10, 64, "single_label", measured[spec.name])
        for spec in design_anchors()
    ]


def preset_anchors() -> list[VramAnchor]:
    """Return the three literature presets measured in DESIGN.md (batch 32, 96 × 187, BCE)."""
    from search_spaces.presets import get_preset

    measured = {"pons_vgg": 1076.0, "pons_timbre": 304.0, "musicnn": 1797.0}
    absolute = {"pons_vgg": 1152.0, "pons_timbre": 374.0, "musicnn": 1877.0}
    return [
        VramAnchor(
            name,
            get_preset(name).spec,
            96,
            187,
            50,
            32,
            "multi_label",
            mb,
            params=get_preset(name).reference_params,
            measured_absolute_mb=absolute[name],
        )
        for name, mb in measured.items()
    ]
