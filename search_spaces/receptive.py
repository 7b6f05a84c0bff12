"""Receptive fields of a design, from its spec alone: what one unit of each block sees.

The thesis fsnas tests is about this number: one layer of tall filters max-pooled over frequency
sees the whole frequency axis at once, while a VGG of 3×3 filters must go deep before any unit
does. ``receptive_field(spec, n_mels, n_frames)`` walks the network with the usual recurrence
(per axis: a conv or pooling window of size ``k`` adds ``(k - 1) × jump``, its stride multiplies
``jump``) and returns, for every front-end branch and body block, the mel bins and frames one
unit of its output sees, and the first block whose units see the whole frequency axis.

Conventions (one place for each):

* a block's unit is its output, after its convs and its pooling;
* a frequency reduction over all remaining positions (a branch's ``freq_reduce`` ``max`` or
  ``mean``, Pons' pitch invariance) counts as seeing the whole axis;
* ``freq_bins`` / ``time_frames`` are clipped to the input (a unit cannot see more bins than
  exist); ``nominal_*`` are the unclipped textbook numbers;
* the front end is one block: its units see what its widest branch sees;
* a residual block's shortcut sees less than its main path, so the main path decides;
* the head's own frequency reduction is not a block (``whole_freq_block`` stays ``None`` for a
  VGG too shallow to see the whole axis before its head).

Shapes are not checked here; ``validate`` does that (call it first for a one-line error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search_spaces.spec import ArchSpec, resolve_height


@dataclass(frozen=True)
class BlockField:
    """What one unit of one block's output sees of the input (mel bins × frames)."""

    name: str  # "frontend" or "body[i]"
    freq_bins: int
    time_frames: int
    nominal_freq_bins: int
    nominal_time_frames: int
    whole_freq: bool


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of every block of a design, and where the whole axis is first seen."""

    n_mels: int
    n_frames: int
    blocks: tuple[BlockField, ...]
    whole_freq_block: str | None  # first block whose units see every mel bin
    whole_freq_depth: int | None  # its 1-based position among the blocks

    @property
    def final(self) -> BlockField:
        return self.blocks[-1]

    def scalars(self) -> dict[str, Any]:
        """Return the ``RECEPTIVE_KEYS`` (records' costs, MLflow params, the front table)."""
        return {
            "receptive_freq_bins": self.final.freq_bins,
            "receptive_time_frames": self.final.time_frames,
            "receptive_whole_freq_block": self.whole_freq_block,
            "receptive_whole_freq_depth": self.whole_freq_depth,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the ``scalars`` and every block's field (``fsnas cost --json``)."""
        return {
            **self.scalars(),
            "receptive_blocks": [
                {
                    "name": b.name,
                    "freq_bins": b.freq_bins,
                    "time_frames": b.time_frames,
                    "nominal_freq_bins": b.nominal_freq_bins,
                    "nominal_time_frames": b.nominal_time_frames,
                    "whole_freq": b.whole_freq,
                }
                for b in self.blocks
            ],
        }


RECEPTIVE_KEYS = (
    "receptive_freq_bins",
    "receptive_time_frames",
    "receptive_whole_freq_block",
    "receptive_whole_freq_depth",
)
"""The scalar receptive-field keys (records, MLflow params, front table, plot axes)."""


@dataclass
class _Axis:
    size: int  # nominal receptive field along the axis
    jump: int = 1  # input positions between neighbouring units
    whole: bool = False  # a reduction over every remaining position was applied

    def window(self, kernel: int, stride: int) -> None:
        self.size += (kernel - 1) * self.jump
        self.jump *= stride


def receptive_field(spec: ArchSpec, n_mels: int, n_frames: int) -> ReceptiveField:
    """Return what one unit of each front-end and body block of ``spec`` sees.

    Args:
        spec: the design (shapes assumed valid for ``n_mels × n_frames``).
        n_mels: input mel bins.
        n_frames: input frames.

    Returns:
        One ``BlockField`` per block (the front end counts as one block) and the first block
        whose units see all ``n_mels`` bins.
    """
    freq, time = _Axis(1), _Axis(1)
    blocks: list[BlockField] = []

    def add(name: str) -> None:
        whole = freq.whole or freq.size >= n_mels
        blocks.append(
            BlockField(
                name,
                n_mels if whole else freq.size,
                min(time.size, n_frames),
                freq.size,
                time.size,
                whole,
            )
        )

    if spec.frontend:
        heights = [resolve_height(br.height, n_mels) for br in spec.frontend]
        widths = [br.width for br in spec.frontend]
        freq.window(max(heights), 1)
        time.window(max(widths), 1)
        if any(br.freq_reduce != "none" for br in spec.frontend):
            freq.whole = True
        add("frontend")
    for i, blk in enumerate(spec.body):
        height = resolve_height(blk.height, n_mels)
        freq.window(height, blk.stride[0])
        time.window(blk.width, blk.stride[1])
        for _ in range(blk.convs - 1):
            freq.window(height, 1)
            time.window(blk.width, 1)
        pool_stride = blk.pool_stride or blk.pool
        freq.window(blk.pool[0], pool_stride[0])
        time.window(blk.pool[1], pool_stride[1])
        add(f"body[{i}]")
    first = next((i for i, b in enumerate(blocks) if b.whole_freq), None)
    return ReceptiveField(
        n_mels,
        n_frames,
        tuple(blocks),
        None if first is None else blocks[first].name,
        None if first is None else first + 1,
    )


__all__ = ["RECEPTIVE_KEYS", "BlockField", "ReceptiveField", "receptive_field"]
