"""The anchor networks of DESIGN.md and the vgg-to-vertical walk between them, as ArchSpecs.

Each family is built in one place:

* ``vgg_spec``: 3×3 conv blocks, each followed by a 2×2 max-pool (optionally clipped to what
  remains of an input), max over frequency then over time;
* ``vertical_spec``: one layer of tall filters, each max-pooled over frequency (Pons), the
  branches concatenated, max over time.

From them come DESIGN.md's measured anchors (``design_anchors``: VGG 5×(3×3, 128 ch, 2×2 pool),
VGG 3×(3×3, 64 ch), the single 0.9M×1 and 0.9M×7 128-channel vertical layers and the musicnn-like
front end; ``trainers.cost_anchors`` pairs them with their measured VRAM) and the built-in
ablation study's walk from a 5-block 3×3 VGG to one vertical layer (``vgg_to_vertical_walk``;
``nas.ablation`` turns its steps into variants). Pure data: nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from search_spaces.receptive import receptive_field
from search_spaces.spec import (
    ArchSpec,
    Branch,
    ConvBlock,
    Head,
    Height,
    InputNorm,
    Padding,
    resolve_height,
)
from search_spaces.validate import conv_out, pool_out

VGG_DEPTH = 5
VERTICAL_HEIGHT = "0.9M"  # Pons' timbral filter height, DESIGN.md's anchor
STUDY_DEFAULT_CHANNELS = 32
STUDY_WIDTH = 3
VERTICAL_WIDTH = 7  # the width of Pons' vertical anchor (DESIGN.md: 0.9M × 7)
MUSICNN_FRONT_SHAPES: tuple[tuple[Height, int], ...] = (
    ("0.4M", 7),
    ("0.7M", 7),
    (1, 33),
    (1, 65),
    (1, 129),
)
"""The musicnn-like front end's filter shapes (height × width): two timbral, three temporal."""

VGG_HEAD = Head(freq_reduce="max", time_pooling="max")
"""A VGG's head: global max over frequency, then over time."""
VERTICAL_HEAD = Head(freq_reduce="none", time_pooling="max")
"""A vertical layer's head: its branches already reduced frequency; max over time."""


# -- the two families ----------------------------------------------------------------------------
def vgg_spec(
    depth: int,
    channels: int,
    *,
    first_height: int = 3,
    width: int = 3,
    input_shape: tuple[int, int] | None = None,
    input_norm: InputNorm = "bn",
    name: str = "",
) -> ArchSpec:
    """Return ``depth`` conv blocks of ``channels``, each followed by a 2×2 max-pool.

    The first block has ``first_height``, the others 3; every filter is ``width`` wide. A
    3-high first block is the classic VGG ("same" padding); a taller one uses "valid"
    frequency padding as Pons' tall filters do (padding a filter that spans most of the axis
    would mostly convolve zeros). With ``input_shape`` (n_mels, n_frames) each pool is clipped
    to what remains of that input, so the stack fits any input of at least 2 × 2.
    """
    blocks: list[ConvBlock] = []
    freq, time = input_shape or (0, 0)
    for i in range(depth):
        height = first_height if i == 0 else 3
        padding: Padding = "valid" if i == 0 and first_height != 3 else "same"
        pool = (2, 2)
        if input_shape is not None:
            freq = conv_out(freq, height, 1, padding)
            time = conv_out(time, width, 1, "same")
            pool = (min(2, freq), min(2, time))
            freq, time = pool_out(freq, pool[0], pool[0]), pool_out(time, pool[1], pool[1])
        blocks.append(ConvBlock(height, width, channels, freq_padding=padding, pool=pool))
    return ArchSpec(name=name, input_norm=input_norm, body=tuple(blocks), head=VGG_HEAD)


def vertical_spec(
    shapes: Sequence[tuple[Height, int]],
    channels: int,
    *,
    head: Head = VERTICAL_HEAD,
    input_norm: InputNorm = "bn",
    name: str = "",
) -> ArchSpec:
    """Return one layer of ``height × width`` filters per shape, each max-pooled over frequency.

    Each branch has ``channels`` filters ("valid" over frequency, "same" over time); their maps
    are concatenated and ``head`` makes the class scores (by default: max over time).
    """
    return ArchSpec(
        name=name,
        input_norm=input_norm,
        frontend=tuple(Branch(h, w, channels, freq_reduce="max") for h, w in shapes),
        head=head,
    )


# -- DESIGN.md's measured anchors ----------------------------------------------------------------
def vgg_anchor(depth: int, channels: int) -> ArchSpec:
    """Return the anchor VGG ``vgg<depth>_c<channels>`` (anchor_gpu.py VGG).

    [3×3 conv pad 1 → BN → ReLU → 2×2 max-pool] × depth, global max, dense; no input norm.
    """
    return vgg_spec(depth, channels, input_norm="none", name=f"vgg{depth}_c{channels}")


def vertical_anchor(width: int, channels: int = 128) -> ArchSpec:
    """Return the anchor vertical layer ``vertical_0.9M_x<width>_c<channels>`` (anchor_gpu.py
    Vertical): a 0.9M × ``width`` conv (frequency valid) → BN → ReLU → max over frequency, max
    over time, dense; no input norm."""
    return vertical_spec(
        [(VERTICAL_HEIGHT, width)],
        channels,
        input_norm="none",
        name=f"vertical_{VERTICAL_HEIGHT}_x{width}_c{channels}",
    )


def musicnn_like_front(channels: int = 64) -> ArchSpec:
    """Return the anchor musicnn-like front end: ``MUSICNN_FRONT_SHAPES``, ``channels`` each."""
    return vertical_spec(
        MUSICNN_FRONT_SHAPES, channels, input_norm="none", name="musicnn_like_front"
    )


def design_anchors() -> list[ArchSpec]:
    """Return the five networks of DESIGN.md's measured anchor table, in its row order."""
    return [
        vgg_anchor(5, 128),
        vgg_anchor(3, 64),
        vertical_anchor(1),
        vertical_anchor(VERTICAL_WIDTH),
        musicnn_like_front(),
    ]


# -- the vgg-to-vertical walk --------------------------------------------------------------------
def receptive_field_height(spec: ArchSpec, n_mels: int) -> int:
    """Return how many mel bins one unit of the last body conv sees (pools before it count).

    Only plain body stacks (no front end, stride-1 convs) are handled: that is all the
    ``vgg-to-vertical`` walk needs.
    """
    # the last pool comes after the last conv: the receptive field of the stack without it
    last = dataclasses.replace(spec.body[-1], pool=(1, 1), pool_stride=None)
    stack = spec.replace(body=(*spec.body[:-1], last))
    return receptive_field(stack, n_mels, 1).final.nominal_freq_bins


@dataclass(frozen=True)
class WalkStep:
    """One network of the vgg-to-vertical walk: its label, spec and the values that define it."""

    name: str
    spec: ArchSpec
    depth: int
    frequency_height: int  # the first filter's height in mel bins
    width: int


def vgg_to_vertical_walk(
    n_mels: int,
    n_frames: int,
    *,
    channels: int = STUDY_DEFAULT_CHANNELS,
    width: int = STUDY_WIDTH,
) -> list[WalkStep]:
    """Return the walk from a 5-block 3×3 VGG to one vertical layer, depth 5, 4, ..., 1.

    Depth 5 is the VGG: 3×3 convs, each followed by a 2×2 max-pool. At depth 4, 3 and 2 the
    first filter grows to the smallest height at which one unit of the last conv sees the whole
    frequency axis (capped at 0.9 × n_mels); the later blocks stay 3×3. Depth 1 is one layer of
    ``0.9M × width`` filters max-pooled over frequency (Pons). Channels, widths, input
    normalisation and the head (max over frequency, then over time) are the same along that
    walk, so it changes depth and filter height only. A last step then changes the width alone,
    to the ``0.9M × 7`` of DESIGN.md's vertical anchor (left out when ``width`` is already 7).
    Valid for any input of at least 2 × 2.
    """
    shape = (n_mels, n_frames)
    cap = max(1, resolve_height(VERTICAL_HEIGHT, n_mels))
    steps: list[WalkStep] = []
    for depth in range(VGG_DEPTH, 1, -1):
        first = 3 if depth == VGG_DEPTH else cap
        if depth != VGG_DEPTH:
            for height in range(min(3, n_mels), cap + 1):
                stack = vgg_spec(
                    depth, channels, first_height=height, width=width, input_shape=shape
                )
                if receptive_field_height(stack, n_mels) >= n_mels:
                    first = height
                    break
        label = f"vgg{depth} 3x3" if depth == VGG_DEPTH else f"depth{depth} {first}x{width}"
        spec = vgg_spec(
            depth,
            channels,
            first_height=min(first, n_mels),
            width=width,
            input_shape=shape,
            name=label,
        )
        steps.append(WalkStep(label, spec, depth, first, width))
    for step_width in dict.fromkeys((width, VERTICAL_WIDTH)):  # width, then 7 (once)
        label = f"vertical {VERTICAL_HEIGHT}x{step_width}"
        vertical = vertical_spec(
            [(VERTICAL_HEIGHT, step_width)], channels, head=VGG_HEAD, name=label
        )
        steps.append(WalkStep(label, vertical, 1, cap, step_width))
    return steps


__all__ = [
    "MUSICNN_FRONT_SHAPES",
    "STUDY_DEFAULT_CHANNELS",
    "STUDY_WIDTH",
    "VERTICAL_HEAD",
    "VERTICAL_HEIGHT",
    "VERTICAL_WIDTH",
    "VGG_DEPTH",
    "VGG_HEAD",
    "WalkStep",
    "design_anchors",
    "musicnn_like_front",
    "receptive_field_height",
    "vertical_anchor",
    "vertical_spec",
    "vgg_anchor",
    "vgg_spec",
    "vgg_to_vertical_walk",
]
