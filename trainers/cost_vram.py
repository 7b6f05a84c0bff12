"""Estimated peak training/inference VRAM without a GPU: a meta-device trace of real steps.

The estimate replays two real training steps of the built model on PyTorch's ``meta``
device (shapes and dtypes, no data) under a ``TorchDispatchMode`` that simulates what the CUDA
caching allocator counts in ``max_memory_allocated``:

* every storage an op returns is allocated, rounded up to 512 bytes (``kMinBlockSize``), and
  counted once however many views share it; it is freed when its last reference dies (a weakref
  on the storage), exactly when the eager CUDA run would return it to the allocator;
* the peak is taken after every op over the forward pass, the backward pass and the optimizer
  step of the *second* step (so optimizer state exists, as in steady-state training);
* weights, BN statistics and one batch are allocated before the steps.

Where a meta trace and a CUDA run differ, the CUDA behaviour is reproduced on purpose:

* dropout: CUDA runs the fused ``native_dropout`` (a 1-byte mask); the meta/CPU path of
  ``F.dropout`` would build a float mask (4 bytes), so ``F.dropout`` is redirected;
* optimizers: CUDA defaults to the ``foreach`` implementation (one parameter-sized temporary
  in Adam/AdamW); the meta device would default to the per-tensor loop, so ``foreach=True``;
* op-internal workspace that no dispatch-level trace can see, because kernels allocate it
  through the caching allocator inside one op (``workspace`` in the breakdown). Modelled:
  a reduction whose input dtype differs from its output dtype casts the *whole input* first
  (``make_reduction`` in ATen's ReduceOps calls ``self.to(dtype)``). The backward of ``amax``
  (max over frequency) sums a bool mask into int64, i.e. 8 bytes per element of the feature
  map it reduces. This one term brings the single-layer vertical anchors from −16 % (what
  MemTracker and this trace without it give) to 0 %; it is the gap DESIGN.md attributed to
  convolution workspace.
* not modelled (0 bytes): cuDNN convolution workspace (its size depends on the algorithm
  cuDNN's heuristics pick on the actual GPU and on the allocator's free blocks; with the
  term above the FSDD anchors need none), multi-block reduction scratch buffers, and the
  allocator's block-splitting slack (up to 1 MiB for an allocation served from a larger
  cached block).

Accuracy against the eight networks measured on an H200 (``trainers.cost_anchors``; run
``benchmarks/vram_estimator.py``): mean |error| 1.4 %, max 8.2 % (``pons_timbre``, −8 %: thin
tall convolutions whose default cuDNN algorithms are slow, probably with workspace), against
8.3 % / 17.7 % for PyTorch's MemTracker under FakeTensorMode. No per-network factor is fitted.

Sizes are MiB (2**20 bytes) although fields are named ``_mb``, as in the anchor protocol.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

from search_spaces import ArchSpec, build_model
from search_spaces.errors import FsnasError
from trainers.featureset import Task

Optimizer = Literal["adamw", "adam", "sgd"]

MIB = 2**20
ALLOC_GRANULARITY_B = 512  # CUDA caching allocator kMinBlockSize: every block is a multiple
CATEGORIES = ("weights", "gradients", "optimizer_state", "batch", "activations", "workspace")
_ESTIMATED_STEPS = 2  # step 2 runs with optimizer state, like every later step

# CUDA casts low-precision input to float inside the reduction kernel (no full-size copy).
_IN_KERNEL_UPCASTS = {(torch.float16, torch.float32), (torch.bfloat16, torch.float32)}
_REDUCTIONS = {
    torch.ops.aten.sum.default,
    torch.ops.aten.sum.dim_IntList,
    torch.ops.aten.mean.default,
    torch.ops.aten.mean.dim,
    torch.ops.aten.prod.default,
    torch.ops.aten.prod.dim_int,
}


class CostError(FsnasError, ValueError):
    """A cost measurement cannot run as asked (no CUDA, unsupported option); says which."""


@dataclass(frozen=True)
class VramEstimate:
    """Estimated peak VRAM (MiB) with its breakdown at the peak and how it was obtained.

    ``breakdown`` keys: ``weights`` (parameters and buffers), ``gradients``,
    ``optimizer_state``, ``batch`` (input and targets), ``activations`` (saved activations and
    every temporary a step creates), ``workspace`` (modelled op-internal buffers).
    """

    train_vram_mb: float
    breakdown: dict[str, float]
    method: str
    peak_op: str = ""

    @property
    def above_weights_and_batch_mb(self) -> float:
        """Return the peak minus weights and batch: the anchor protocol's peak-minus-base."""
        return self.train_vram_mb - self.breakdown["weights"] - self.breakdown["batch"]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict including ``above_weights_and_batch_mb``."""
        return {
            "train_vram_mb": self.train_vram_mb,
            "above_weights_and_batch_mb": self.above_weights_and_batch_mb,
            "breakdown": dict(self.breakdown),
            "method": self.method,
            "peak_op": self.peak_op,
        }


def round_allocation(nbytes: int) -> int:
    """Return the bytes the CUDA caching allocator counts for a request of ``nbytes``."""
    return -(-nbytes // ALLOC_GRANULARITY_B) * ALLOC_GRANULARITY_B


def reduction_cast_bytes(func: Any, args: tuple[Any, ...], out: Any) -> int:
    """Return the bytes of the full-size input cast a reduction makes inside its kernel (else 0).

    ATen's ``make_reduction`` reduces ``self.to(out_dtype)`` when the dtypes differ, e.g. the
    ``sum`` of a bool mask into int64 in the backward of ``amax``.
    """
    if func not in _REDUCTIONS or not args or not isinstance(out, torch.Tensor):
        return 0
    source = args[0]
    if not isinstance(source, torch.Tensor) or source.dtype == out.dtype:
        return 0
    if (source.dtype, out.dtype) in _IN_KERNEL_UPCASTS:
        return 0
    return round_allocation(source.numel() * out.element_size())


class _AllocatorSim(TorchDispatchMode):
    """Live and peak bytes of the CUDA caching allocator, replayed on meta-device ops."""

    def __init__(self) -> None:
        super().__init__()
        self.live_b = dict.fromkeys(CATEGORIES, 0)
        self.peak_b = 0
        self.peak_breakdown_b = dict(self.live_b)
        self.peak_op = ""
        self.recording = False
        # id(storage) -> [category, bytes, weakref]; the weakref's callback frees the bytes
        self._storages: dict[int, list[Any]] = {}

    def allocate(self, tensor: torch.Tensor, category: str) -> None:
        """Count ``tensor``'s storage once under ``category`` (no-op for storages seen before)."""
        if tensor.device.type != "meta":
            return  # e.g. Adam's step counters, which live on the host on CUDA too
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._storages:
            return
        nbytes = round_allocation(storage.nbytes()) if storage.nbytes() else 0
        self.live_b[category] += nbytes
        self._storages[key] = [category, nbytes, weakref.ref(storage, self._freer(key))]

    def relabel(self, tensor: torch.Tensor, category: str) -> None:
        """Move ``tensor``'s storage (already counted) to ``category``."""
        entry = self._storages.get(id(tensor.untyped_storage()))
        if entry is None:
            self.allocate(tensor, category)
            return
        self.live_b[entry[0]] -= entry[1]
        self.live_b[category] += entry[1]
        entry[0] = category

    def _freer(self, key: int) -> Callable[[Any], None]:
        def free(_ref: Any) -> None:
            entry = self._storages.pop(key, None)
            if entry is not None:
                self.live_b[entry[0]] -= entry[1]

        return free

    def observe(self, op: str, workspace_b: int = 0) -> None:
        """Take the peak now, with ``workspace_b`` transiently held inside the current op."""
        if not self.recording:
            return
        total = sum(self.live_b.values()) + workspace_b
        if total > self.peak_b:
            self.peak_b = total
            self.peak_breakdown_b = dict(self.live_b)
            self.peak_breakdown_b["workspace"] += workspace_b
            self.peak_op = op

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, lambda t: self.allocate(t, "activations"), out)
        self.observe(str(func), reduction_cast_bytes(func, args, out))
        return out


class _CudaDropout(TorchFunctionMode):
    """Run ``F.dropout`` as CUDA does: the fused ``native_dropout`` with a 1-byte mask."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            names = ("input", "p", "training", "inplace")
            bound = {**dict(zip(names, args)), **kwargs}
            p = float(bound.get("p", 0.5))
            if bound.get("training", True) and 0.0 < p < 1.0:
                return torch.ops.aten.native_dropout(bound["input"], p, True)[0]
        return func(*args, **kwargs)


def make_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter],
    optimizer: str,
    foreach: bool | None = None,
) -> torch.optim.Optimizer:
    """Return the optimizer the trainer uses for ``optimizer`` (hyper-parameters do not matter
    for memory except SGD's momentum buffer, taken from ``TrainConfig``'s default).

    Raises:
        CostError: unknown optimizer name.
    """
    from trainers.result import TrainConfig

    defaults = TrainConfig()
    params = list(params)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=defaults.lr, foreach=foreach)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=defaults.lr, foreach=foreach)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=defaults.lr, momentum=defaults.momentum, foreach=foreach)
    raise CostError(f"optimizer: expected one of adamw, adam, sgd, got {optimizer!r}")


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return the training loss of ``task`` (cross-entropy or BCE-with-logits).

    Raises:
        CostError: unknown task.
    """
    if task == "single_label":
        return F.cross_entropy
    if task == "multi_label":
        return F.binary_cross_entropy_with_logits
    raise CostError(f"task: expected 'single_label' or 'multi_label', got {task!r}")


def make_targets(task: str, batch_size: int, n_classes: int, device: Any) -> torch.Tensor:
    """Return zero targets of the right dtype/shape for ``task`` (class indices or multi-hot)."""
    if task == "multi_label":
        return torch.zeros(batch_size, n_classes, device=device)
    return torch.zeros(batch_size, dtype=torch.long, device=device)


def _check_batch(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CostError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _meta_model(spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int) -> nn.Module:
    """Return the model built directly on the meta device (no weight memory, no init cost)."""
    with torch.device("meta"):
        return build_model(spec, n_mels, n_frames, n_classes)


def _to_mib(breakdown_b: dict[str, int]) -> dict[str, float]:
    return {k: breakdown_b[k] / MIB for k in CATEGORIES}


def estimate_train_vram(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: Optimizer = "adamw",
    amp: bool = False,
    task: Task = "single_label",
) -> VramEstimate:
    """Return the estimated peak training VRAM of ``spec`` (weights to workspace, in MiB).

    Runs two training steps (zero_grad(set_to_none) → forward → loss → backward → step) of the
    built model on the meta device; see the module docstring for the allocator model. Takes
    well under a second for the anchor networks.

    Raises:
        SpecError: the spec does not fit the input.
        CostError: bad batch size, optimizer or task, or ``amp=True`` (autocast cannot run
            on the meta device, so a mixed-precision estimate would be a guess).
    """
    _check_batch(batch_size)
    if amp:
        raise CostError(
            "amp=True: the VRAM estimate models float32 training only (autocast does not run "
            "on the meta device); the float32 estimate is an upper bound"
        )
    compute_loss = loss_fn(task)
    model = _meta_model(spec, n_mels, n_frames, n_classes).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, foreach=True)
    sim = _AllocatorSim()
    for tensor in [*model.parameters(), *model.buffers()]:
        sim.allocate(tensor, "weights")
    x = torch.empty(batch_size, 1, n_mels, n_frames, device="meta")
    y = make_targets(task, batch_size, n_classes, "meta")
    sim.allocate(x, "batch")
    sim.allocate(y, "batch")
    hooks = [
        p.register_post_accumulate_grad_hook(
            lambda p: sim.relabel(p.grad, "gradients") if p.grad is not None else None
        )
        for p in params
    ]
    try:
        with _CudaDropout(), sim:
            for step in range(_ESTIMATED_STEPS):
                sim.recording = step == _ESTIMATED_STEPS - 1
                opt.zero_grad(set_to_none=True)
                loss = compute_loss(model(x), y)
                loss.backward()
                del loss
                opt.step()
                for state in opt.state.values():
                    for value in state.values():
                        if isinstance(value, torch.Tensor):
                            sim.relabel(value, "optimizer_state")
    finally:
        for hook in hooks:
            hook.remove()
    method = (
        f"meta-device trace of {_ESTIMATED_STEPS} training steps ({optimizer}, foreach, "
        f"{task}), peak of step {_ESTIMATED_STEPS}, storages counted once, "
        f"{ALLOC_GRANULARITY_B}-byte rounding, CUDA dropout; workspace: reduction input "
        "casts modelled, cuDNN convolution workspace not modelled"
    )
    return VramEstimate(sim.peak_b / MIB, _to_mib(sim.peak_breakdown_b), method, sim.peak_op)


def estimate_infer_vram(
    spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int, batch_size: int = 1
) -> float:
    """Return the estimated peak inference VRAM (MiB; eval mode, no_grad) of ``spec``.

    Weights, the input batch and the live activations of one forward pass, traced like
    ``estimate_train_vram`` (cuDNN convolution workspace not modelled).

    Raises:
        SpecError: the spec does not fit the input.
        CostError: bad batch size.
    """
    _check_batch(batch_size)
    model = _meta_model(spec, n_mels, n_frames, n_classes).eval()
    sim = _AllocatorSim()
    for tensor in [*model.parameters(), *model.buffers()]:
        sim.allocate(tensor, "weights")
    x = torch.empty(batch_size, 1, n_mels, n_frames, device="meta")
    sim.allocate(x, "batch")
    sim.recording = True
    sim.observe("input")
    with torch.no_grad(), sim:
        model(x)
    return sim.peak_b / MIB
