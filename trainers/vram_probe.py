"""The one CUDA measurement of training VRAM: ``train_vram_mb`` and ``train_reserved_mb``.

Definitions (docs/vram.md, MiB = 2**20 bytes):

* ``train_vram_mb``: the peak that the trial's process holds in the caching allocator during
  training steps (``max_memory_allocated``: weights, gradients, optimizer state, the batch,
  activations, and the library workspaces it keeps, e.g. cuBLAS's), minus only the feature
  tensors shared on the device. The CUDA context is outside the allocator.
* ``train_reserved_mb``: the peak reserved (``max_memory_reserved``) minus the segments that
  hold the shared features.

Protocol (DESIGN.md): warm-up steps at the exact shape, then ``start`` (``gc.collect();
synchronize(); empty_cache(); reset_peak_memory_stats()``), the measured steps, then ``finish``.
``fit`` (in its first epoch), ``trainers.cost_measure.measure_train_vram`` (``fsnas cost --device
cuda``), ``benchmarks/gpu_bench.py``, ``benchmarks/gpu_check.py`` and
``benchmarks/vram_estimator.py --device cuda`` all measure through these functions. The
bookkeeping (``shared_bytes``, ``shared_reserved_bytes``, ``peaks``) is plain arithmetic on
numbers the CUDA calls return, tested without a GPU.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

MIB = 2**20
_BLOCK = 512  # kMinBlockSize: what the allocator counts for a storage


@dataclass(frozen=True)
class VramPeaks:
    """One measurement window's peaks (MiB) under the definitions above.

    ``above_state_mb``: peak allocated minus the allocation at ``start`` (weights, optimizer
    state, the batch, features, workspaces), DESIGN.md's "above state".
    """

    train_vram_mb: float
    train_reserved_mb: float
    above_state_mb: float
    shared_mb: float
    device_name: str
    cudnn_benchmark: bool


@dataclass(frozen=True)
class ProbeWindow:
    """What ``start`` read: the allocation at the reset and the shared features' footprint."""

    device: torch.device
    state_b: int
    shared_b: int
    shared_reserved_b: int


def shared_bytes(device: torch.device, tensors: Iterable[torch.Tensor]) -> int:
    """Return the allocator bytes of the distinct storages among ``tensors`` on ``device``."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.device == device:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = -(-storage.nbytes() // _BLOCK) * _BLOCK
    return sum(seen.values())


def shared_reserved_bytes(snapshot: Sequence[dict[str, Any]], pointers: Iterable[int]) -> int:
    """Return the bytes of the segments in ``snapshot`` that hold any of ``pointers``.

    ``snapshot``: ``torch.cuda.memory_snapshot()`` (segments with ``address`` and
    ``total_size``); each segment counts once however many shared tensors it holds.
    """
    ptrs = sorted(set(pointers))
    total = 0
    for segment in snapshot:
        lo = int(segment["address"])
        hi = lo + int(segment["total_size"])
        if any(lo <= p < hi for p in ptrs):
            total += int(segment["total_size"])
    return total


def peaks(
    window: ProbeWindow,
    max_allocated_b: int,
    max_reserved_b: int,
    device_name: str,
    cudnn_benchmark: bool,
) -> VramPeaks:
    """Return the window's ``VramPeaks`` from the allocator's peak statistics."""
    return VramPeaks(
        train_vram_mb=(max_allocated_b - window.shared_b) / MIB,
        train_reserved_mb=(max_reserved_b - window.shared_reserved_b) / MIB,
        above_state_mb=(max_allocated_b - window.state_b) / MIB,
        shared_mb=window.shared_b / MIB,
        device_name=device_name,
        cudnn_benchmark=cudnn_benchmark,
    )


def start(device: torch.device, shared: Sequence[torch.Tensor] = ()) -> ProbeWindow:
    """Empty the cache, reset the peak statistics and return the window (CUDA only).

    ``shared``: the feature tensors kept on the device for every trial (not the trial's).
    """
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    on_device = [t for t in shared if t.device == device]
    reserved = (
        shared_reserved_bytes(torch.cuda.memory_snapshot(), (t.data_ptr() for t in on_device))
        if on_device
        else 0
    )
    return ProbeWindow(
        device=device,
        state_b=int(torch.cuda.memory_allocated(device)),
        shared_b=shared_bytes(device, on_device),
        shared_reserved_b=reserved,
    )


def finish(window: ProbeWindow) -> VramPeaks:
    """Return the peaks since ``start`` (synchronises the device)."""
    dev = window.device
    torch.cuda.synchronize(dev)
    return peaks(
        window,
        int(torch.cuda.max_memory_allocated(dev)),
        int(torch.cuda.max_memory_reserved(dev)),
        torch.cuda.get_device_name(dev),
        bool(torch.backends.cudnn.benchmark),
    )
