"""The trial function: ``fit`` trains one ArchSpec on a FeatureSet and returns a TrialResult.

One trial = build → costs → train (per-epoch validation, early stopping, report callback) →
test with the best validation epoch's weights → measured costs → optional checkpoint. Failures
are results, never exceptions: CUDA out-of-memory → ``oom``, NaN/inf or exploding loss
(``DIVERGENCE_FACTOR``) → ``diverged``, a design too large for the machine → ``infeasible``, a spec
that does not build → ``invalid``, a ``StopTrial`` raised by the report callback → ``pruned``,
anything else → ``failed``; each with a ``reason``. Whatever the outcome, the trial's model,
optimizer and tensors are released before ``fit`` returns, so the next trial in the same process
measures the same peak VRAM as in a fresh one.

Peak training VRAM on CUDA (``vram_source="measured"``), DESIGN.md's protocol inside the real
training, measured by ``trainers.vram_probe`` (definitions in docs/vram.md): ``_VRAM_WARMUP_STEPS``
training steps at the trial's batch size select the cuDNN/cuBLAS algorithms; then the gradients
are dropped and ``vram_probe.start`` runs (``gc.collect(); synchronize(); empty_cache();
reset_peak_memory_stats()``); the peaks of the rest of the first epoch's steps minus the feature
tensors kept on the device are ``train_vram_mb`` (weights, gradients, optimizer state, one batch,
everything a step creates and the cuBLAS workspaces the process keeps) and
``train_reserved_mb`` (reserved, minus the features' segments); ``extra
["train_vram_above_state_mb"]`` is the peak minus the allocation at the reset.
``cudnn.benchmark`` is set from the TrainConfig and recorded. On CPU the figure is the estimate
of ``trainers.cost``.

A trial's fixed cost (``extra["fixed_seconds"]``: everything but its epochs) stays small: the
static costs (params, GFLOPs, VRAM estimates) are computed once per design and process
(``trainers.cost.static_costs``), latency is timed within ``LATENCY_BUDGET_S``, and a CPU trial
that ended normally skips the full garbage collection a CUDA trial needs.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.build import build_model
from search_spaces.errors import FsnasError, SpecError
from search_spaces.spec import ArchSpec
from trainers import cost, cost_measure, vram_probe
from trainers.augment import BatchAugmenter, augmentation_enabled
from trainers.checkpoint import CHECKPOINT_FILENAME, save_checkpoint, state_to_cpu
from trainers.cost_vram import MIB
from trainers.featureset import FeatureSet, Split, Task
from trainers.metrics import (
    METRIC_NAMES,
    PITCH_ROBUSTNESS_METRIC,
    PRIMARY_METRIC,
    pitch_shift_metric_key,
    task_metrics,
)
from trainers.result import CHECKPOINT_ERROR_KEY, TrainConfig, TrialResult

ReportFn = Callable[[dict[str, float]], None]

_VRAM_WARMUP_STEPS = 3
"""Training steps before the peak statistics are reset (algorithm selection happens in them)."""

_FINITE_CHECK_EVERY_STEPS = 16
"""How often the running loss is synchronised to look for NaN/inf (each check is a GPU sync)."""

_DATA_SHARE_OF_FREE_VRAM = 0.5
"""The dataset stays on the GPU only if it and the estimated training peak fit in this share of
the free memory; otherwise batches stream from pinned host memory."""

# Testing knob (documented, never set in production): when not None, a training forward pass
# whose module outputs add up to more than this many MiB raises torch.OutOfMemoryError, so the
# out-of-memory path (status, cleanup, next trial) is exercised on machines without a GPU.
_simulate_oom_above_mb: float | None = None


class StopTrial(Exception):
    """Raise from a ``report`` callback to stop the trial now; ``fit`` returns status ``pruned``."""


class TrainError(FsnasError):
    """The training data cannot be used as given (empty split, wrong target shape)."""


class _Diverged(Exception):
    """The training or validation loss became NaN or infinite, or exploded."""


DIVERGENCE_FACTOR = 100.0
"""A finite loss "far above" its reference ends the trial ``diverged``: an epoch's training loss
more than this many times the first epoch's, or any epoch's training or validation loss more
than this many times the loss of predicting chance (``chance_loss``: ln C for C classes,
ln 2 for multi-label). A model that learns stays far below both (chance is where it starts)."""


def chance_loss(task: Task, n_classes: int) -> float:
    """Return the loss of a model that predicts chance: uniform scores (ln C), or 1/2 per label."""
    return math.log(max(n_classes, 2)) if task == "single_label" else math.log(2.0)


def _check_exploding(
    name: str, loss: float, epoch: int, first_train_loss: float | None, chance: float
) -> None:
    """Raise ``_Diverged`` naming the loss and its reference if ``loss`` is far above it."""
    if loss > DIVERGENCE_FACTOR * chance:
        raise _Diverged(
            f"{name} loss {loss:.4g} after epoch {epoch} is more than {DIVERGENCE_FACTOR:g}x "
            f"the loss of predicting chance ({chance:.4g}): the loss exploded "
            "(lower the learning rate)"
        )
    if first_train_loss is not None and epoch > 1 and loss > DIVERGENCE_FACTOR * first_train_loss:
        raise _Diverged(
            f"{name} loss {loss:.4g} after epoch {epoch} is more than {DIVERGENCE_FACTOR:g}x "
            f"the first epoch's ({first_train_loss:.4g}): the loss exploded "
            "(lower the learning rate)"
        )


def resolve_device(device: str | torch.device) -> torch.device:
    """Return a torch device; ``"auto"`` means CUDA when available, else the CPU.

    Raises:
        TrainError: ``cuda`` was asked for but no CUDA device is available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {str(device)!r}: CUDA is not available on this machine")
    return dev


def is_out_of_memory(exc: BaseException) -> bool:
    """Return True for a CUDA out-of-memory error (typed, or a RuntimeError saying so)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc)


def release_memory(device: torch.device | None = None) -> None:
    """Collect garbage and, on CUDA, return cached blocks and reset the peak statistics."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _release_trial_memory(dev: torch.device | None, raised: bool) -> None:
    """Free what a trial left behind, as thoroughly as the next trial's measurements need.

    A CUDA trial, or one that ended in an exception, gets ``release_memory`` (a full garbage
    collection, then the CUDA cache and peak statistics), so the next trial in the process
    measures the same peak VRAM as in a fresh one. A CPU trial that ended normally has freed
    its model and tensors by reference counting already; a full collection walks every live
    object of the process (0.1-0.3 s once torch is loaded, most of a small trial's fixed
    cost), so only the young generations are collected.
    """
    if raised or dev is None or dev.type == "cuda":
        release_memory()
    else:
        gc.collect(1)


# -- costs ------------------------------------------------------------------------------------
def _static_costs(spec: ArchSpec, data: FeatureSet, config: TrainConfig) -> dict[str, Any]:
    """Return params, gflops and the estimated training/inference VRAM, without training.

    Computed once per design and process (``trainers.cost.static_costs``: a later trial of the
    same spec, input, batch size, optimizer and task reads them back, and a VRAM estimate made
    before ``fit`` by the VRAM-limit check or the driver's GPU placement is reused). It runs
    before the trial seeds its generators, so it cannot change the trial's results. The
    estimate models float32 training (``trainers.cost_vram``), an upper bound under AMP.

    Raises:
        SpecError: the spec does not fit the data's input shape.
    """
    return cost.static_costs(spec, *cost.design_inputs(data, config))


LATENCY_BUDGET_S = 0.25
"""Seconds a trial spends timing its trained model's latency (at least 1 warm-up + 3 runs)."""
LATENCY_REPEATS = 10
"""Most timed latency runs a trial makes (fewer when the budget is spent first)."""


def _device_costs(model: nn.Module, data: FeatureSet, dev: torch.device) -> dict[str, Any]:
    """Return the trained model's batch-1 ``latency_ms`` (median of ``latency_runs`` timed
    runs, within ``LATENCY_BUDGET_S``) and, on CUDA, its ``infer_vram_mb``."""
    shape = (1, 1, data.n_mels, data.n_frames)
    latency = cost_measure.measure_latency(
        model, shape, dev, repeats=LATENCY_REPEATS, budget_s=LATENCY_BUDGET_S
    )
    costs: dict[str, Any] = {
        "latency_ms": float(latency.latency_ms),
        "latency_runs": latency.runs,
    }
    if dev.type == "cuda":
        costs["infer_vram_mb"] = float(cost_measure.measure_infer_vram(model, shape, dev).vram_mb)
    return costs


# -- data on the device -----------------------------------------------------------------------
def _as_tensor(array: np.ndarray, dtype: np.dtype[Any]) -> torch.Tensor:
    """Return a CPU tensor sharing memory with ``array`` (a memmap stays a memmap) when it can."""
    arr = np.asarray(array)
    if arr.dtype != dtype or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    with warnings.catch_warnings():
        # read-only memmaps: the tensor is only ever read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(arr)


@dataclass
class _SplitTensors:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _split_tensors(split: Split, task: Task, name: str, n_classes: int) -> _SplitTensors:
    y_dtype = np.dtype(np.int64) if task == "single_label" else np.dtype(np.float32)
    x = _as_tensor(split.x, np.dtype(np.float32))
    y = _as_tensor(split.y, y_dtype)
    if x.dim() != 4 or x.shape[1] != 1:
        raise TrainError(f"{name}.x: expected shape (N, 1, n_mels, n_frames), got {tuple(x.shape)}")
    expected_y = (len(x),) if task == "single_label" else (len(x), n_classes)
    if tuple(y.shape) != expected_y:
        raise TrainError(f"{name}.y: expected shape {expected_y} for {task}, got {tuple(y.shape)}")
    return _SplitTensors(x, y)


@dataclass
class _Data:
    train: _SplitTensors
    valid: _SplitTensors
    test: _SplitTensors
    on_device: bool

    def device_tensors(self) -> list[torch.Tensor]:
        """Return the feature tensors kept on the device (shared, not the trial's)."""
        if not self.on_device:
            return []
        return [t for s in (self.train, self.valid, self.test) for t in (s.x, s.y)]


def _place_data(data: FeatureSet, dev: torch.device, reserve_bytes: float) -> _Data:
    """Return the splits as tensors: on the device when they fit, else in host memory."""
    splits = {
        name: _split_tensors(getattr(data, name), data.task, name, data.n_classes)
        for name in ("train", "valid", "test")
    }
    for name in ("train", "valid"):
        if len(splits[name]) == 0:
            raise TrainError(f"the {name} split of {data.source or 'the data'} is empty")
    if dev.type != "cuda":
        return _Data(**splits, on_device=True)
    needed = sum(s.x.nbytes + s.y.nbytes for s in splits.values())
    free_bytes, _total = torch.cuda.mem_get_info(dev)
    if needed + reserve_bytes <= _DATA_SHARE_OF_FREE_VRAM * free_bytes:
        moved = {k: _SplitTensors(s.x.to(dev), s.y.to(dev)) for k, s in splits.items()}
        return _Data(**moved, on_device=True)
    return _Data(**splits, on_device=False)


def _batches(
    split: _SplitTensors,
    order: torch.Tensor,
    batch_size: int,
    dev: torch.device,
    on_device: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches in ``order``; from host memory, prefetch one batch ahead.

    Host batches are gathered into pinned memory and copied on a side CUDA stream while the
    previous batch computes.
    """
    starts = range(0, len(order), batch_size)
    if on_device:
        order = order.to(split.x.device)
        for start in starts:
            idx = order[start : start + batch_size]
            yield split.x[idx], split.y[idx]
        return
    copy_stream = torch.cuda.Stream(dev)

    def fetch(start: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = order[start : start + batch_size]
        xb, yb = split.x[idx].pin_memory(), split.y[idx].pin_memory()
        with torch.cuda.stream(copy_stream):
            return xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)

    pending = fetch(0) if len(order) else None
    for start in starts:
        assert pending is not None
        torch.cuda.current_stream(dev).wait_stream(copy_stream)
        xb, yb = pending
        xb.record_stream(torch.cuda.current_stream(dev))
        yb.record_stream(torch.cuda.current_stream(dev))
        nxt = start + batch_size
        pending = fetch(nxt) if nxt < len(order) else None
        yield xb, yb


# -- training pieces --------------------------------------------------------------------------
def _seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return the CPU generator that shuffles the batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    raise TrainError(
        f"train_config.optimizer: expected adamw, adam or sgd, got {config.optimizer!r}"
    )


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Return the learning-rate multiplier before optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs``, then ``cosine`` decay to 0 at the last step of
    ``epochs``, ``step`` decay by ``step_gamma`` every ``step_size_epochs``, or ``constant``.
    """
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / total)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return float(config.step_gamma ** ((step // steps_per_epoch) // config.step_size_epochs))
    return 1.0


def check_train_config(config: TrainConfig) -> None:
    """Raise TrainError naming the first field of ``config`` that fit cannot train with."""
    for name in ("epochs", "batch_size", "step_size_epochs"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrainError(f"train_config.{name} must be an integer >= 1, got {value!r}")
    if config.warmup_epochs < 0 or (config.warmup_epochs and config.warmup_epochs >= config.epochs):
        raise TrainError(
            f"train_config.warmup_epochs must be in [0, epochs={config.epochs}), "
            f"got {config.warmup_epochs!r}"
        )
    if config.optimizer not in ("adamw", "adam", "sgd"):
        raise TrainError(
            f"train_config.optimizer: expected adamw, adam or sgd, got {config.optimizer!r}"
        )
    if config.schedule not in ("cosine", "step", "constant"):
        raise TrainError(
            f"train_config.schedule: expected cosine, step or constant, got {config.schedule!r}"
        )
    if not config.lr > 0:
        raise TrainError(f"train_config.lr must be > 0, got {config.lr!r}")
    for name in ("freq_mask_bins", "time_mask_frames", "masks_per_axis"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TrainError(f"train_config.{name} must be an integer >= 0, got {value!r}")
    if not (math.isfinite(config.mixup_alpha) and config.mixup_alpha >= 0):
        raise TrainError(f"train_config.mixup_alpha must be >= 0, got {config.mixup_alpha!r}")


def _loss(task: Task, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if task == "single_label":
        return F.cross_entropy(logits.float(), targets)
    return F.binary_cross_entropy_with_logits(logits.float(), targets)


def _autocast(dev: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=dev.type, dtype=torch.float16)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: _SplitTensors,
    task: Task,
    batch_size: int,
    dev: torch.device,
    on_device: bool,
    amp: bool = False,
) -> dict[str, float]:
    """Return ``loss`` and the task's metrics on one split, in eval mode, in batches."""
    model.eval()
    logits_parts: list[torch.Tensor] = []
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    order = torch.arange(len(split))
    for xb, yb in _batches(split, order, batch_size, dev, on_device):
        with _autocast(dev, amp):
            logits = model(xb)
        loss_sum += _loss(task, logits, yb).double() * len(xb)
        logits_parts.append(logits.float().cpu())
    n = len(split)
    loss = float(loss_sum.item()) / n if n else float("nan")
    if n == 0:
        return {"loss": loss, **{name: float("nan") for name in METRIC_NAMES[task]}}
    logits_all = torch.cat(logits_parts).numpy()
    return {"loss": loss, **task_metrics(task, split.y.cpu().numpy(), logits_all)}


def pitch_robustness(
    model: nn.Module, data: FeatureSet, batch_size: int, dev: torch.device, amp: bool = False
) -> dict[str, float]:
    """Return the primary metric on each pitch-shifted valid split and their mean.

    Keys: ``pitch_shift_metric_key(shift, metric)`` per shift of ``data.valid_shifted`` and
    ``val_pitch_robustness``, the mean over those shifts (the study metric of issue 18).
    """
    metric = PRIMARY_METRIC[data.task]
    out: dict[str, float] = {}
    for semitones, split in sorted(data.valid_shifted.items()):
        tensors = _split_tensors(split, data.task, f"valid@{semitones:+g}", data.n_classes)
        placed = _SplitTensors(tensors.x.to(dev), tensors.y.to(dev))
        values = evaluate(model, placed, data.task, batch_size, dev, True, amp)
        out[pitch_shift_metric_key(semitones, metric)] = values[metric]
    out[PITCH_ROBUSTNESS_METRIC] = float(np.mean(list(out.values())))
    return out


class _SimulatedMemoryLimit:
    """Forward hooks that raise torch.OutOfMemoryError past ``limit_mb`` of module outputs."""

    def __init__(self, model: nn.Module, limit_mb: float) -> None:
        self.limit_bytes = limit_mb * MIB
        self.used_bytes = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()]

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if module.training and isinstance(output, torch.Tensor):
            self.used_bytes += output.nelement() * output.element_size()
            if self.used_bytes > self.limit_bytes:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory (simulated): step activations "
                    f"{self.used_bytes / MIB:.1f} MiB > limit {self.limit_bytes / MIB:.1f} MiB"
                )

    def new_step(self) -> None:
        self.used_bytes = 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class _Best:
    key: tuple[float, float] = (-math.inf, -math.inf)
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None


def _improvement_key(task: Task, val: dict[str, float]) -> tuple[float, float]:
    """Return what early stopping maximises: the primary metric, then the lower loss."""
    metric = val[PRIMARY_METRIC[task]]
    loss = val["loss"]
    return (
        metric if math.isfinite(metric) else -math.inf,
        -loss if math.isfinite(loss) else -math.inf,
    )


# -- the trial --------------------------------------------------------------------------------
def fit(
    spec: ArchSpec,
    data: FeatureSet,
    train_config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    report: ReportFn | None = None,
    gpu_share: float | None = None,
) -> TrialResult:
    """Return the TrialResult of training ``spec`` on ``data``; never raises for a failed trial.

    Args:
        spec: the architecture; its head is built for ``data.n_classes`` and its input for
            ``data.n_mels × data.n_frames``.
        data: the featurised train/valid/test splits.
        train_config: optimiser, schedule, epochs, seed, ... (defaults: ``TrainConfig()``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` or a torch.device.
        report: called after every epoch with ``epoch``, ``train_loss``, ``val_loss``,
            ``val_<metric>``, ``lr`` (at the epoch's start), ``step_ms`` (mean training step,
            batch gathering included), ``seconds`` (the epoch's, validation included) and
            the costs known before training (``params``, ``gflops``,
            ``train_vram_estimate_mb``, ``infer_vram_estimate_mb``); raising ``StopTrial``
            from it ends the trial with status ``pruned``.
        gpu_share: the fraction of the CUDA device this trial was given (a fractional
            ``gpus_per_trial``); a design whose estimated training memory exceeds that part of
            the device's memory is refused before it is built (status ``infeasible``,
            ``trainers.cost.refuse_too_large``). None: the device's free memory.

    Returns:
        A TrialResult. ``metrics`` holds the best validation epoch's ``val_*`` values,
        ``best_epoch`` and the ``test_*`` values of that epoch's weights (not for ``oom``,
        ``diverged``, ``invalid`` or ``failed``). ``seconds`` is the trial's wall time,
        ``train_seconds`` the time spent in training epochs (validation included) and
        ``extra["fixed_seconds"]`` the rest (costs, data placement, test pass, checkpoint,
        cleanup); ``extra["static_costs_seconds"]`` / ``["device_costs_seconds"]`` are the
        cost parts of it and ``extra["latency_runs"]`` the timed latency runs.
    """
    started = time.perf_counter()
    config = train_config or TrainConfig()
    result = TrialResult(status="complete", spec=spec.to_dict(), device=str(device))
    previous_threads = torch.get_num_threads()
    dev: torch.device | None = None
    raised = True
    try:
        dev = resolve_device(device)
        result.device = str(dev)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        _run_trial(spec, data, config, dev, report, result, gpu_share)
        raised = False
    except SpecError as exc:
        _fail(result, "invalid", exc)
    except _Diverged as exc:
        _fail(result, "diverged", exc)
    except cost.DesignTooLarge as exc:
        _fail(result, "infeasible", exc)
    except Exception as exc:
        _fail(result, "oom" if is_out_of_memory(exc) else "failed", exc)
    finally:
        torch.set_num_threads(previous_threads)
        _release_trial_memory(dev, raised)
    result.seconds = time.perf_counter() - started
    result.extra["fixed_seconds"] = max(0.0, result.seconds - result.train_seconds)
    return result


def _fail(result: TrialResult, status: Any, exc: BaseException) -> None:
    """Record a failed trial and drop the traceback's frames (they hold the trial's tensors)."""
    result.status = status
    if isinstance(exc, (SpecError, _Diverged, FsnasError)):
        result.reason = str(exc)
    else:
        result.reason = f"{type(exc).__name__}: {exc}".strip()
    if exc.__traceback__ is not None:
        traceback.clear_frames(exc.__traceback__)
    exc.__traceback__ = None


def _run_trial(
    spec: ArchSpec,
    data: FeatureSet,
    config: TrainConfig,
    dev: torch.device,
    report: ReportFn | None,
    result: TrialResult,
    gpu_share: float | None = None,
) -> None:
    """Train and evaluate, filling ``result`` in place (so a failure keeps what was recorded)."""
    check_train_config(config)
    task: Task = data.task
    costs_started = time.perf_counter()
    cost.refuse_too_large(  # raises DesignTooLarge before any tensor of the design exists
        spec,
        *cost.design_inputs(data, config),
        dev,
        gpu_share=gpu_share,
    )
    static = _static_costs(spec, data, config)  # raises SpecError for an invalid spec
    result.extra["static_costs_seconds"] = time.perf_counter() - costs_started
    result.params = static["params"]
    result.gflops = static["gflops"]
    result.train_vram_mb = static["train_vram_estimate_mb"]
    result.train_reserved_mb = static["train_reserved_estimate_mb"]
    result.vram_source = "estimated"
    # costs known before training, sent with every epoch's report (an early-stopping
    # scheduler compares trials on them); never written to the history
    known_costs = {
        "params": float(static["params"]),
        "gflops": static["gflops"],
        "train_vram_estimate_mb": static["train_vram_estimate_mb"],
        "infer_vram_estimate_mb": static["infer_vram_estimate_mb"],
    }
    result.extra.update(
        train_vram_estimate_mb=static["train_vram_estimate_mb"],
        train_reserved_estimate_mb=static["train_reserved_estimate_mb"],
        train_vram_estimate_method=static["train_vram_estimate_method"],
        n_mels=data.n_mels,
        n_frames=data.n_frames,
        n_classes=data.n_classes,
        task=task,
        train_config=config.to_dict(),
    )
    cuda = dev.type == "cuda"
    amp = bool(config.amp and cuda)
    if cuda:
        torch.backends.cudnn.benchmark = config.cudnn_benchmark
        result.extra["cudnn_benchmark"] = config.cudnn_benchmark
        result.extra["device_name"] = torch.cuda.get_device_name(dev)
    result.extra["amp"] = amp

    if cuda:  # a clean allocator for the peak; a CPU trial has nothing to measure
        release_memory(dev)
    tensors = _place_data(data, dev, reserve_bytes=static["train_vram_estimate_mb"] * MIB)
    result.extra["data_on_device"] = tensors.on_device
    shared = tensors.device_tensors() if cuda else []

    generator = _seed_everything(config.seed)
    model = build_model(spec, data.n_mels, data.n_frames, data.n_classes).to(dev)
    optimizer = _make_optimizer(model, config)
    n_train = len(tensors.train)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, config)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    simulated = (
        _SimulatedMemoryLimit(model, _simulate_oom_above_mb)
        if _simulate_oom_above_mb is not None
        else None
    )
    augmenter = (
        BatchAugmenter(config, task, data.n_classes) if augmentation_enabled(config) else None
    )
    best = _Best()
    first_train_loss: float | None = None
    chance = chance_loss(task, data.n_classes)
    epochs_without_improvement = 0
    train_started = time.perf_counter()
    stopped_by = "epochs"
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            lr_now = float(optimizer.param_groups[0]["lr"])
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            seen = 0
            order = torch.randperm(n_train, generator=generator)
            batches = _batches(tensors.train, order, config.batch_size, dev, tensors.on_device)
            for step, (xb, yb) in enumerate(batches):
                if cuda and epoch == 1 and step == min(_VRAM_WARMUP_STEPS, steps_per_epoch - 1):
                    # warm-up done: start like the anchor (optimizer state, no gradients)
                    optimizer.zero_grad(set_to_none=True)
                    window = vram_probe.start(dev, shared)
                if simulated is not None:
                    simulated.new_step()
                optimizer.zero_grad(set_to_none=True)
                if augmenter is not None:
                    xb, yb = augmenter(xb, yb)
                with _autocast(dev, amp):
                    logits = model(xb)
                loss = _loss(task, logits, yb)
                scaler.scale(loss).backward()
                if config.grad_clip_norm:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach().double() * len(xb)
                seen += len(xb)
                del logits, loss, xb, yb
                if (step + 1) % _FINITE_CHECK_EVERY_STEPS == 0 and not torch.isfinite(loss_sum):
                    raise _Diverged(f"training loss became non-finite in epoch {epoch}")
            if cuda and epoch == 1:
                peaks = vram_probe.finish(window)
                result.train_vram_mb = peaks.train_vram_mb
                result.train_reserved_mb = peaks.train_reserved_mb
                result.vram_source = "measured"
                result.extra["train_vram_above_state_mb"] = peaks.above_state_mb
                result.extra["vram_measured_steps"] = steps_per_epoch - min(
                    _VRAM_WARMUP_STEPS, steps_per_epoch - 1
                )
            train_loss = float(loss_sum.item()) / max(seen, 1)  # synchronises the device
            step_ms = (time.perf_counter() - epoch_started) / steps_per_epoch * 1e3
            if not math.isfinite(train_loss):
                raise _Diverged(f"training loss is {train_loss} after epoch {epoch}")
            _check_exploding("training", train_loss, epoch, first_train_loss, chance)
            if first_train_loss is None:
                first_train_loss = train_loss
            val = evaluate(
                model, tensors.valid, task, config.batch_size, dev, tensors.on_device, amp
            )
            if not math.isfinite(val["loss"]):
                raise _Diverged(f"validation loss is {val['loss']} after epoch {epoch}")
            _check_exploding("validation", val["loss"], epoch, None, chance)
            row: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
            row.update({f"val_{k}": v for k, v in val.items()})
            row["lr"] = lr_now
            row["step_ms"] = step_ms
            row["seconds"] = time.perf_counter() - epoch_started
            result.history.append(row)
            result.epochs_run = epoch
            key = _improvement_key(task, val)
            if best.state is None or key > best.key:
                best = _Best(
                    key, epoch, {f"val_{k}": v for k, v in val.items()}, state_to_cpu(model)
                )
                epochs_without_improvement = 0
            else:
                epochs_without_improvement += 1
            if report is not None:
                try:
                    report({**row, **known_costs})
                except StopTrial as exc:
                    result.status = "pruned"
                    result.reason = (
                        str(exc) or f"stopped by the report callback after epoch {epoch}"
                    )
                    stopped_by = "report"
                    break
            patience = config.early_stopping_patience
            if patience is not None and epochs_without_improvement >= patience:
                stopped_by = "early_stopping"
                break
            elapsed = time.perf_counter() - train_started
            if config.time_budget_s is not None and elapsed >= config.time_budget_s:
                stopped_by = "time_budget"
                break
    finally:
        if simulated is not None:
            simulated.remove()
    result.train_seconds = time.perf_counter() - train_started
    result.extra["stopped_by"] = stopped_by

    assert best.state is not None  # at least one epoch ran, or an exception left the function
    model.load_state_dict(best.state)
    test = evaluate(model, tensors.test, task, config.batch_size, dev, tensors.on_device, amp)
    result.metrics = dict(best.metrics)
    result.metrics["best_epoch"] = best.epoch
    result.metrics.update({f"test_{k}": v for k, v in test.items()})
    result.metrics.pop("test_loss", None)
    result.extra["test_loss"] = test["loss"]
    if data.valid_shifted:
        result.metrics.update(pitch_robustness(model, data, config.batch_size, dev, amp))

    del optimizer, scheduler, scaler
    model.eval()
    costs_started = time.perf_counter()
    measured = _device_costs(model, data, dev)
    result.extra["device_costs_seconds"] = time.perf_counter() - costs_started
    result.latency_ms = measured["latency_ms"]
    result.extra["latency_runs"] = measured["latency_runs"]
    result.infer_vram_mb = measured.get("infer_vram_mb", static["infer_vram_estimate_mb"])

    if config.checkpoint_dir:
        path = Path(config.checkpoint_dir) / CHECKPOINT_FILENAME
        metadata = {
            "spec": spec.to_json(indent=None),
            "n_mels": data.n_mels,
            "n_frames": data.n_frames,
            "n_classes": data.n_classes,
            "labels": list(data.labels),
            "task": task,
            "best_epoch": best.epoch,
            "feature_config": data.feature_config.to_dict(),
        }
        try:
            result.checkpoint = str(save_checkpoint(path, best.state, metadata))
        except OSError as exc:  # a full or read-only disk costs the file, not the result
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)  # a half-written file must not be trusted
            result.extra[CHECKPOINT_ERROR_KEY] = f"cannot write {path} ({exc.strerror or exc})"
