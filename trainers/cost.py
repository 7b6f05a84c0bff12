"""What an architecture costs: params, FLOPs, training/inference VRAM and latency.

Plain functions on plain data, one small frozen dataclass per report:

* ``count_params`` — trainable parameters (weights, biases, BN γ/β; no BN statistics).
* ``count_flops`` — forward FLOPs of one clip with fvcore. fvcore counts one multiply-add as
  one flop (a 3×3 conv costs ``3·3·C_in·C_out·H_out·W_out``), so ``gflops`` is half of what
  ``torch.utils.flop_counter`` (2 per multiply-add) reports for the same network.
* ``estimate_train_vram`` / ``estimate_infer_vram`` — without a GPU (``trainers.cost_vram``).
* ``measure_train_vram`` / ``measure_infer_vram`` — on CUDA, DESIGN.md's protocol, and
  ``measure_latency_ms`` / ``measure_latency`` — median forward time, on CPU or CUDA; with
  ``budget_s`` it stops early once the time budget is spent (what a trial uses): defined in
  ``trainers.cost_measure``, re-exported here.
* ``static_costs`` — params, GFLOPs and the training/inference VRAM estimates of one design,
  computed once per process: an LRU cache (``STATIC_COST_CACHE``) keyed by ``design_key``;
  ``train_vram_estimate`` fills only the training-VRAM part (a search's VRAM-limit check and
  GPU placement), ``seed_train_vram_estimate`` stores an estimate made elsewhere.
* ``cost_report`` — all of the above for one spec, ``vram_source`` saying which VRAM it is.
* ``refuse_too_large`` — raise ``DesignTooLarge`` (before any tensor of the design is
  allocated) when a design's weights, or its estimated training memory, exceed the memory this
  machine (``memory_available``: RAM, or the GPU's free memory and share) has.

VRAM figures are MiB (2**20 bytes) although named ``_mb``, as in the anchor protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from search_spaces import ArchSpec, build_model
from search_spaces.build import count_params
from trainers.cost_measure import (
    LatencyMeasurement,
    VramMeasurement,
    measure_infer_vram,
    measure_latency,
    measure_latency_ms,
    measure_train_vram,
    require_cuda,
)
from trainers.cost_vram import (
    MIB,
    CostError,
    Optimizer,
    Task,
    VramEstimate,
    estimate_infer_vram,
    estimate_train_vram,
)

if TYPE_CHECKING:
    from trainers.featureset import FeatureSet
    from trainers.result import TrainConfig

__all__ = [
    "STATIC_COST_CACHE",
    "CostError",
    "CostReport",
    "DesignKey",
    "DesignTooLarge",
    "FlopReport",
    "LatencyMeasurement",
    "StaticCostCache",
    "VramEstimate",
    "VramMeasurement",
    "cost_report",
    "count_flops",
    "count_params",
    "design_inputs",
    "design_key",
    "estimate_infer_vram",
    "estimate_train_vram",
    "measure_infer_vram",
    "measure_latency",
    "measure_latency_ms",
    "measure_train_vram",
    "memory_available",
    "refuse_too_large",
    "seed_train_vram_estimate",
    "static_costs",
    "train_vram_estimate",
]

# -- FLOPs -----------------------------------------------------------------------------------

# Ops fvcore has no handle for but that do arithmetic on every element: one comparison or
# addition per input element for pooling/reductions, one addition per output element for sums.
_POOL_AND_REDUCE_OPS = ("aten::max_pool2d", "aten::avg_pool2d", "aten::amax", "aten::mean")
_ELEMENTWISE_ADD_OPS = ("aten::add", "aten::add_")
# fvcore silently ignores these; they do no multiply-adds but move memory (ReLU, padding,
# concatenation), so the report lists them as skipped instead of hiding them.
_LISTED_AS_SKIPPED = {"aten::relu", "aten::relu_", "aten::constant_pad_nd", "aten::cat"}


@dataclass(frozen=True)
class FlopReport:
    """Forward GFLOPs of one clip (fvcore: 1 flop = 1 multiply-add), per operator and skipped.

    ``by_operator`` maps fvcore's operator names (``conv``, ``linear``, ``batch_norm``,
    ``max_pool2d``, ...) to flops; ``skipped_ops`` maps ops counted as zero to how often they ran.
    """

    gflops: float
    by_operator: dict[str, int]
    skipped_ops: dict[str, int]


def count_flops(model: nn.Module, n_mels: int, n_frames: int) -> FlopReport:
    """Return the forward FLOPs of ``model`` on one ``1 × n_mels × n_frames`` clip (eval mode).

    Counted: conv, linear/matmul, batch norm (fvcore's handles) plus max/avg pooling, ``amax``
    and ``mean`` (one per input element) and residual additions (one per output element).
    Listed in ``skipped_ops`` (zero flops): ReLU, padding, concatenation and anything else
    fvcore does not know.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore imports torch.jit.script
        from fvcore.nn import FlopCountAnalysis
        from fvcore.nn.jit_handles import elementwise_flop_counter

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    clip = torch.zeros(1, 1, n_mels, n_frames, device=device)
    analysis = FlopCountAnalysis(model, clip)
    analysis.set_op_handle(**dict.fromkeys(_POOL_AND_REDUCE_OPS, elementwise_flop_counter(1, 0)))
    analysis.set_op_handle(**dict.fromkeys(_ELEMENTWISE_ADD_OPS, elementwise_flop_counter(0, 1)))
    # fvcore keeps its ignore list in a private attribute; without this ReLU etc. vanish.
    analysis._ignored_ops = set(analysis._ignored_ops) - _LISTED_AS_SKIPPED
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit tracer deprecation/trace warnings
            total = int(analysis.total())
            by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
            skipped = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    finally:
        model.train(was_training)
    return FlopReport(total / 1e9, by_operator, skipped)


# -- static costs, once per design ------------------------------------------------------------


@dataclass(frozen=True)
class DesignKey:
    """Everything a design's static costs depend on, and nothing else (not the seed, lr, ...).

    ``amp`` is the precision the training-VRAM estimate models (always False today: the
    estimate traces float32 training, an upper bound under AMP).
    """

    spec_json: str
    n_mels: int
    n_frames: int
    n_classes: int
    batch_size: int
    optimizer: str
    task: str
    amp: bool = False

    def digest(self) -> str:
        """Return a short stable fingerprint (to check that an estimate sent along matches)."""
        text = json.dumps(dataclasses.astuple(self), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


DesignInputs = tuple[int, int, int, int, Optimizer, Task]
"""(n_mels, n_frames, n_classes, batch_size, optimizer, task): what follows ``spec`` in every
per-design cost function of this module."""


def design_inputs(data: FeatureSet, config: TrainConfig) -> DesignInputs:
    """Return the cost inputs of a design trained on ``data`` with ``config`` (``DesignInputs``):
    ``cost.static_costs(spec, *design_inputs(data, config))``."""
    return (
        data.n_mels,
        data.n_frames,
        data.n_classes,
        config.batch_size,
        config.optimizer,
        data.task,
    )


def design_key(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: str = "adamw",
    task: str = "single_label",
    amp: bool = False,
) -> DesignKey:
    """Return the cache key of one design at one input, batch size, optimizer and task."""
    return DesignKey(
        json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":")),
        int(n_mels),
        int(n_frames),
        int(n_classes),
        int(batch_size),
        str(optimizer),
        str(task),
        bool(amp),
    )


# the two parts of a cache entry (each filled on its own)
_TRAIN_VRAM_FIELDS = (
    "train_vram_estimate_mb",
    "train_reserved_estimate_mb",
    "train_vram_estimate_method",
)
_MODEL_FIELDS = ("params", "gflops", "infer_vram_estimate_mb")
STATIC_COST_FIELDS = _MODEL_FIELDS[:2] + _TRAIN_VRAM_FIELDS + _MODEL_FIELDS[2:]


class StaticCostCache:
    """A bounded, thread-safe LRU of per-design static costs (plain numbers and strings).

    An entry may hold only the training-VRAM part (from a VRAM-limit check, GPU placement, or
    an estimate another process made) until ``static_costs`` fills the rest. ``get`` returns
    a copy, so a caller cannot change what the next trial reads. ``hits`` / ``misses`` count
    lookups that found / lacked every field asked for.
    """

    def __init__(self, maxsize: int = 512) -> None:
        if maxsize < 1:
            raise CostError(f"cache maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._entries: OrderedDict[DesignKey, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: DesignKey, fields: Sequence[str] = ()) -> dict[str, Any] | None:
        """Return a copy of ``key``'s entry if it holds every one of ``fields``, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or any(f not in entry for f in fields):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return dict(entry)

    def update(self, key: DesignKey, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into ``key``'s entry (made most recent); evict the oldest past max."""
        with self._lock:
            entry = self._entries.setdefault(key, {})
            entry.update(values)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


STATIC_COST_CACHE = StaticCostCache(512)
"""The process's cache: a reused Ray actor keeps it across its trials."""


def train_vram_estimate(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: Optimizer = "adamw",
    task: Task = "single_label",
    cache: StaticCostCache | None = None,
) -> dict[str, Any]:
    """Return ``train_vram_estimate_mb``, ``train_reserved_estimate_mb`` and
    ``train_vram_estimate_method`` of a design, estimated once per cache.

    The float32 estimate of ``estimate_train_vram`` (an upper bound under AMP).

    Raises:
        SpecError: the spec does not fit the input (nothing is cached).
        CostError: bad batch size, optimizer or task.
    """
    store = STATIC_COST_CACHE if cache is None else cache
    key = design_key(spec, n_mels, n_frames, n_classes, batch_size, optimizer, task)
    cached = store.get(key, _TRAIN_VRAM_FIELDS)
    if cached is not None:
        return {f: cached[f] for f in _TRAIN_VRAM_FIELDS}
    estimate = estimate_train_vram(
        spec, n_mels, n_frames, n_classes, batch_size, optimizer, False, task
    )
    values = {
        "train_vram_estimate_mb": float(estimate.train_vram_mb),
        "train_reserved_estimate_mb": float(
            estimate.train_reserved_mb
            if estimate.train_reserved_mb is not None
            else estimate.train_vram_mb
        ),
        "train_vram_estimate_method": estimate.method,
    }
    store.update(key, values)
    return dict(values)


def seed_train_vram_estimate(
    key: DesignKey,
    mb: float,
    method: str,
    cache: StaticCostCache | None = None,
    reserved_mb: float | None = None,
) -> None:
    """Store a training-VRAM estimate made elsewhere (the driver) for ``key``; keep any entry.

    Without ``reserved_mb`` the entry is incomplete and the next ``train_vram_estimate``
    estimates again.
    """
    store = STATIC_COST_CACHE if cache is None else cache
    if key not in store:
        values = {"train_vram_estimate_mb": float(mb), "train_vram_estimate_method": str(method)}
        if reserved_mb is not None:
            values["train_reserved_estimate_mb"] = float(reserved_mb)
        store.update(key, values)


def static_costs(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: Optimizer = "adamw",
    task: Task = "single_label",
    cache: StaticCostCache | None = None,
) -> dict[str, Any]:
    """Return a design's ``params``, ``gflops``, training VRAM estimate (+ method) and inference
    VRAM estimate (batch 1), computing only what the cache does not hold yet.

    The returned dict is the caller's own copy.

    Raises:
        SpecError: the spec does not fit the input (nothing is cached).
        CostError: bad batch size, optimizer or task.
    """
    store = STATIC_COST_CACHE if cache is None else cache
    key = design_key(spec, n_mels, n_frames, n_classes, batch_size, optimizer, task)
    cached = store.get(key, STATIC_COST_FIELDS)
    if cached is not None:
        return cached
    values = train_vram_estimate(
        spec, n_mels, n_frames, n_classes, batch_size, optimizer, task, store
    )
    model = build_model(spec, n_mels, n_frames, n_classes)
    values.update(
        params=count_params(model),
        gflops=float(count_flops(model, n_mels, n_frames).gflops),
        infer_vram_estimate_mb=float(estimate_infer_vram(spec, n_mels, n_frames, n_classes)),
    )
    store.update(key, values)
    return {f: values[f] for f in STATIC_COST_FIELDS}


# -- does it fit? -----------------------------------------------------------------------------


class DesignTooLarge(CostError):
    """A design needs more memory than the machine (or the trial's GPU share) has."""


def memory_available(
    device: str | torch.device = "cpu", gpu_share: float | None = None
) -> tuple[int, str]:
    """Return the bytes a design may use on ``device`` and where the figure comes from.

    CPU: ``MemAvailable`` of /proc/meminfo (else free pages). CUDA: the device's free memory
    (``torch.cuda.mem_get_info``), at most ``gpu_share`` of its total when a share is given
    (a fractional ``gpus_per_trial``: the trial may use that part of the device's memory).
    """
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, total = (int(n) for n in torch.cuda.mem_get_info(dev))
        if gpu_share is not None and _is_share(gpu_share):
            share_bytes = int(total * gpu_share)
            of = f"{gpu_share:g} of the {total:,} bytes of GPU {dev}"
            if free < share_bytes:  # other processes hold part of the share already
                return free, f"the free memory of GPU {dev} (its share: {of})"
            return share_bytes, f"its GPU share ({of})"
        return free, f"free memory of GPU {dev}"
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "RAM available (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    import os

    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages), "free RAM"


def _is_share(gpu_share: float | None) -> bool:
    """Return True for a fraction of a GPU (0 < share < 1); a whole GPU has its free memory."""
    return gpu_share is not None and 0 < gpu_share < 1


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def refuse_too_large(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: Optimizer = "adamw",
    task: Task = "single_label",
    device: str | torch.device = "cpu",
    train: bool = True,
    gpu_share: float | None = None,
    available: tuple[int, str] | None = None,
) -> None:
    """Raise ``DesignTooLarge`` if ``spec`` cannot fit; allocates nothing of the design.

    The model is built on the meta device to count its parameters and their bytes; the need is
    the training estimate (``estimate_train_vram``: weights, gradients, optimizer state and one
    batch's activations) when ``train`` is true or the design is measured on CUDA, else the
    weights plus a batch-1 forward (``estimate_infer_vram``). ``available`` overrides
    ``memory_available(device, gpu_share)`` (tests).

    Raises:
        DesignTooLarge: the need exceeds the memory available, with both figures.
        SpecError: the spec does not fit the input.
    """
    with torch.device("meta"):
        model = build_model(spec, n_mels, n_frames, n_classes)
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(
        t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())
    )
    del model
    free, where = available if available is not None else memory_available(device, gpu_share)
    if weight_bytes > free:  # decided without tracing the (huge) activations
        need, what = weight_bytes, "its weights alone need"
    else:
        if train or torch.device(device).type == "cuda":
            est = train_vram_estimate(
                spec, n_mels, n_frames, n_classes, batch_size, optimizer, task
            )
            need = int(est["train_vram_estimate_mb"] * MIB)
            what = f"training needs about (estimated, batch {batch_size}, {optimizer})"
        else:
            need = int(estimate_infer_vram(spec, n_mels, n_frames, n_classes) * MIB)
            what = "its weights and a batch-1 forward need about"
        if need <= free:
            return
    shared = torch.device(device).type == "cuda" and _is_share(gpu_share)
    raise DesignTooLarge(
        f"design {spec.name or 'spec'!r} is too large for "
        f"{'its GPU share' if shared else 'this machine'}: {n_params:,} parameters "
        f"({_gib(weight_bytes)} of weights); {what} {_gib(need)} ({need:,} bytes) but "
        f"{where} is {_gib(free)} ({free:,} bytes); refused before allocating it: use fewer "
        "channels or layers"
        + (" or a smaller batch" if need > weight_bytes and train else "")
        + (" or a larger resources.gpus_per_trial" if shared else "")
    )


# -- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostReport:
    """Every cost of one spec at one input: params, GFLOPs, VRAM (measured or estimated), latency.

    ``train_vram_mb`` and ``train_reserved_mb`` (docs/vram.md), ``infer_vram_mb`` (batch 1)
    and ``infer_vram_batch_mb`` (inference at the training batch size) are MiB;
    ``vram_source`` is ``measured`` (CUDA) or ``estimated`` (``trainers.cost_vram``);
    ``latency_ms`` is the batch-1 forward median on ``device`` (None when not measured).
    """

    params: int
    gflops: float
    train_vram_mb: float
    train_reserved_mb: float | None
    infer_vram_mb: float
    infer_vram_batch_mb: float
    vram_source: str
    latency_ms: float | None
    skipped_ops: dict[str, int]
    flops_by_operator: dict[str, int]
    vram_breakdown: dict[str, float]
    n_mels: int
    n_frames: int
    n_classes: int
    batch_size: int
    optimizer: str
    task: str
    device: str
    vram_method: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return dataclasses.asdict(self)


def cost_report(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int = 64,
    optimizer: Optimizer = "adamw",
    device: str = "cpu",
    task: Task = "single_label",
    latency_repeats: int = 10,
) -> CostReport:
    """Return the cost report of ``spec``; VRAM is measured on CUDA devices, else estimated.

    ``latency_repeats=0`` skips the latency measurement (``latency_ms`` is then None).

    Raises:
        SpecError: the spec does not fit the input.
        DesignTooLarge: the design needs more memory than the machine has (nothing built).
        CostError: bad batch size/optimizer/task, or a CUDA device without CUDA.
    """
    refuse_too_large(  # before the model is built: a huge design is one error, not a crash
        spec, n_mels, n_frames, n_classes, batch_size, optimizer, task, device, train=False
    )
    model = build_model(spec, n_mels, n_frames, n_classes)
    params = count_params(model)
    flops = count_flops(model, n_mels, n_frames)
    dev = torch.device(device)
    extra: dict[str, Any] = {}
    if dev.type == "cuda":
        require_cuda(dev)
        train = measure_train_vram(
            build_model(spec, n_mels, n_frames, n_classes),
            (batch_size, 1, n_mels, n_frames),
            n_classes,
            task=task,
            optimizer=optimizer,
            device=dev,
        )
        infer = measure_infer_vram(model, (1, 1, n_mels, n_frames), device=dev)
        infer_batch = measure_infer_vram(model, (batch_size, 1, n_mels, n_frames), device=dev)
        train_mb, infer_mb, source = train.vram_mb, infer.vram_mb, "measured"
        reserved_mb: float | None = train.reserved_mb
        infer_batch_mb = infer_batch.vram_mb
        breakdown: dict[str, float] = {}
        method = (
            f"CUDA {train.device_name}: trainers.vram_probe, max_memory_allocated and "
            f"max_memory_reserved over {train.steps} steps after warm-up, "
            f"cudnn.benchmark={train.cudnn_benchmark}"
        )
        extra = {
            "train": dataclasses.asdict(train),
            "infer": dataclasses.asdict(infer),
            "infer_batch": dataclasses.asdict(infer_batch),
        }
    else:
        estimate = estimate_train_vram(
            spec, n_mels, n_frames, n_classes, batch_size, optimizer, task=task
        )
        train_mb, source = estimate.train_vram_mb, "estimated"
        reserved_mb = estimate.train_reserved_mb
        infer_mb = estimate_infer_vram(spec, n_mels, n_frames, n_classes)
        infer_batch_mb = estimate_infer_vram(spec, n_mels, n_frames, n_classes, batch_size)
        breakdown, method = estimate.breakdown, estimate.method
        extra = {"above_weights_and_batch_mb": estimate.above_weights_and_batch_mb}
    latency = (
        measure_latency_ms(model, (1, 1, n_mels, n_frames), dev, repeats=latency_repeats)
        if latency_repeats > 0
        else None
    )
    return CostReport(
        params=params,
        gflops=flops.gflops,
        train_vram_mb=train_mb,
        train_reserved_mb=reserved_mb,
        infer_vram_mb=infer_mb,
        infer_vram_batch_mb=infer_batch_mb,
        vram_source=source,
        latency_ms=latency,
        skipped_ops=flops.skipped_ops,
        flops_by_operator=flops.by_operator,
        vram_breakdown=breakdown,
        n_mels=n_mels,
        n_frames=n_frames,
        n_classes=n_classes,
        batch_size=batch_size,
        optimizer=optimizer,
        task=task,
        device=str(dev),
        vram_method=method,
        extra=extra,
    )
