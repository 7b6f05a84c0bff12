"""Measured costs: peak training and inference VRAM on CUDA, and forward latency.

``measure_train_vram`` / ``measure_infer_vram`` run DESIGN.md's protocol through
``trainers.vram_probe`` (the one CUDA measurement; docs/vram.md); ``measure_latency`` /
``measure_latency_ms`` time batch-1 forwards on CPU or CUDA, within a time budget when a trial
asks for one. ``trainers.cost`` re-exports every public name here (``cost_report`` uses them).
VRAM figures are MiB (2**20 bytes) although named ``_mb``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainers import vram_probe
from trainers.cost_vram import CostError, Optimizer, Task, loss_fn, make_optimizer, make_targets

__all__ = [
    "MIN_BUDGET_RUNS",
    "MIN_BUDGET_WARMUP",
    "LatencyMeasurement",
    "VramMeasurement",
    "measure_infer_vram",
    "measure_latency",
    "measure_latency_ms",
    "measure_train_vram",
    "require_cuda",
]


# -- measured VRAM (CUDA) ---------------------------------------------------------------------


@dataclass(frozen=True)
class VramMeasurement:
    """Peak VRAM measured on CUDA (MiB) through ``trainers.vram_probe`` and its conditions.

    ``vram_mb``: peak allocated minus the shared tensors passed in (docs/vram.md's
    ``train_vram_mb``: weights, gradients, optimizer state, the batch, everything a step creates
    and the library workspaces the process keeps). ``above_base_mb``: peak minus the
    allocation just before the timed steps, which for training already holds weights,
    optimizer state, the batch and the workspaces (not gradients: the steps start after
    ``zero_grad(set_to_none=True)``). ``reserved_mb``: the allocator's peak reserved minus the
    shared tensors' segments (``train_reserved_mb``).
    """

    vram_mb: float
    above_base_mb: float
    reserved_mb: float
    batch_size: int
    steps: int
    cudnn_benchmark: bool
    device_name: str


def require_cuda(device: str | torch.device) -> torch.device:
    """Return ``device`` as a CUDA device; raise ``CostError`` when it is not one or CUDA is
    not available."""
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise CostError(
            f"VRAM measurement needs a CUDA device, got {str(device)!r} "
            f"(cuda available: {torch.cuda.is_available()}); use estimate_train_vram instead"
        )
    return dev


def measure_train_vram(
    model: nn.Module,
    batch_shape: tuple[int, int, int, int],
    n_classes: int,
    task: Task = "single_label",
    optimizer: Optimizer = "adamw",
    amp: bool = False,
    steps: int = 5,
    warmup_steps: int = 3,
    device: str | torch.device = "cuda",
    shared: Sequence[torch.Tensor] = (),
) -> VramMeasurement:
    """Return the peak training VRAM of ``model`` measured on CUDA with DESIGN.md's protocol.

    ``warmup_steps`` full steps at the exact shape (cuDNN/cuBLAS selection), then the probe's
    ``start`` (``gc.collect(); synchronize(); empty_cache(); reset_peak_memory_stats()``), then
    ``steps`` timed full steps (zero_grad(set_to_none) → forward → loss → backward → step,
    autocast and a GradScaler when ``amp``), then ``finish``. ``shared``: tensors on the device
    that are not the trial's (features); nothing else is subtracted. Moves ``model`` to the
    device and leaves it there.

    Raises:
        CostError: no CUDA device, or a bad task/optimizer.
    """
    dev = require_cuda(device)
    compute_loss = loss_fn(task)
    model.to(dev).train()
    x = torch.randn(batch_shape, device=dev)
    y = make_targets(task, batch_shape[0], n_classes, dev)
    opt = make_optimizer(model.parameters(), optimizer)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", enabled=amp):
            loss = compute_loss(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup_steps):
        step()
    opt.zero_grad(set_to_none=True)  # start like the anchor: optimizer state, no gradients
    window = vram_probe.start(dev, shared)
    for _ in range(steps):
        step()
    return _measurement(vram_probe.finish(window), batch_shape[0], steps)


def measure_infer_vram(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    device: str | torch.device = "cuda",
    repeats: int = 3,
    warmup: int = 2,
    shared: Sequence[torch.Tensor] = (),
) -> VramMeasurement:
    """Return the peak inference VRAM (eval, no_grad) of ``model`` at ``input_shape`` on CUDA.

    Warmed up at the exact shape first, so a ``cudnn.benchmark`` algorithm search (which tries
    large workspaces) does not count; measured through ``trainers.vram_probe`` like training.
    Moves ``model`` to the device and leaves it there.

    Raises:
        CostError: no CUDA device.
    """
    dev = require_cuda(device)
    model.to(dev).eval()
    x = torch.randn(input_shape, device=dev)
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        window = vram_probe.start(dev, shared)
        for _ in range(repeats):
            model(x)
    return _measurement(vram_probe.finish(window), input_shape[0], repeats)


def _measurement(peaks: vram_probe.VramPeaks, batch_size: int, steps: int) -> VramMeasurement:
    """Return the ``VramMeasurement`` of a probe window's ``VramPeaks``."""
    return VramMeasurement(
        vram_mb=peaks.train_vram_mb,
        above_base_mb=peaks.above_state_mb,
        reserved_mb=peaks.train_reserved_mb,
        batch_size=batch_size,
        steps=steps,
        cudnn_benchmark=peaks.cudnn_benchmark,
        device_name=peaks.device_name,
    )


# -- latency ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyMeasurement:
    """A batch-1 forward timing: the median of ``runs`` timed runs after ``warmup_runs``.

    ``seconds`` is the wall time of the whole measurement, warm-up included.
    """

    latency_ms: float
    runs: int
    warmup_runs: int
    seconds: float


MIN_BUDGET_WARMUP = 1
"""Warm-up runs made under a time budget whatever the budget (1 or ``warmup``, the fewer)."""
MIN_BUDGET_RUNS = 3
"""Timed runs made under a time budget whatever the budget (3 or ``repeats``, the fewer)."""


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    budget_s: float | None = None,
) -> LatencyMeasurement:
    """Return the median forward time (ms) of ``model`` in eval mode and how it was timed.

    Without ``budget_s``: ``warmup`` untimed runs at the exact shape, then ``repeats`` timed
    ones. With ``budget_s`` the clock starts at the first warm-up; at least
    ``MIN_BUDGET_WARMUP`` warm-ups and ``MIN_BUDGET_RUNS`` timed runs are made (never more
    than ``warmup`` / ``repeats``), and no further run starts once ``budget_s`` seconds have
    passed, so a slow model costs about ``(1 + 3) ×`` one forward and a fast one at most
    ``budget_s`` plus one forward. CUDA runs are synchronised around each timed run. Moves
    ``model`` to ``device`` and leaves it there.

    Raises:
        CostError: ``repeats`` < 1, ``budget_s`` < 0, or a CUDA device without CUDA.
    """
    if repeats < 1:
        raise CostError(f"latency repeats must be >= 1, got {repeats}")
    if budget_s is not None and not budget_s >= 0:
        raise CostError(f"latency budget_s must be >= 0 seconds, got {budget_s}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CostError(f"latency on {str(device)!r}: CUDA is not available")
    model.to(dev).eval()
    x = torch.randn(input_shape, device=dev)
    cuda = dev.type == "cuda"
    times_s: list[float] = []
    warmed = 0
    started = time.perf_counter()

    def spent() -> bool:
        return budget_s is not None and time.perf_counter() - started >= budget_s

    with torch.no_grad():
        while warmed < warmup and not (warmed >= MIN_BUDGET_WARMUP and spent()):
            model(x)
            warmed += 1
        if cuda:
            torch.cuda.synchronize(dev)
        while len(times_s) < repeats and not (len(times_s) >= MIN_BUDGET_RUNS and spent()):
            if cuda:
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(dev)
            times_s.append(time.perf_counter() - start)
    return LatencyMeasurement(
        latency_ms=statistics.median(times_s) * 1e3,
        runs=len(times_s),
        warmup_runs=warmed,
        seconds=time.perf_counter() - started,
    )


def measure_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    device: str | torch.device = "cpu",
    repeats: int = 20,
    warmup: int = 3,
    budget_s: float | None = None,
) -> float:
    """Return the median forward time (ms) of ``model`` in eval mode on ``device``.

    ``warmup`` untimed runs at the exact shape first, then ``repeats`` timed runs; CUDA runs
    are synchronised around each timed run. ``budget_s`` bounds the time spent (at least one
    warm-up and three timed runs; see ``measure_latency``, which also says how many runs were
    timed). Moves ``model`` to ``device`` and leaves it there.

    Raises:
        CostError: ``repeats`` < 1, ``budget_s`` < 0, or a CUDA device without CUDA.
    """
    return measure_latency(model, input_shape, device, repeats, warmup, budget_s).latency_ms
