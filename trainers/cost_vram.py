"""Estimated peak training/inference VRAM without a GPU: a meta-device trace of real steps.

The estimate replays a real training step of the built model on PyTorch's ``meta``
device (shapes and dtypes, no data) under a ``TorchDispatchMode`` that simulates what the CUDA
caching allocator counts in ``max_memory_allocated``:

* every storage an op returns is allocated, rounded up to 512 bytes (``kMinBlockSize``), and
  counted once however many views share it; it is freed when its last reference dies (a weakref
  on the storage), exactly when the eager CUDA run would return it to the allocator;
* the peak is taken after every op over the forward pass, the backward pass and the optimizer
  step of a step that runs with optimizer state (as in steady-state training; the state comes
  from one optimizer step on gradient-shaped tensors, without a forward or backward pass);
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

Library workspaces (``library_workspace`` in the breakdown): cuBLAS and cuBLASLt allocate their
workspaces through the caching allocator at a process's first matmul and keep them (one per
handle and stream; each thread has its own handle, so the forward and the autograd engine's
backward thread each hold one). They are allocation events of the traced first step and part of
both peaks, sized by device class in ``LIBRARY_WORKSPACES`` (the one table, with the source of
each number; H100/H200 class by default: 2 × 32 MiB + 1 MiB). ``above_weights_and_batch_mb``
leaves them out, like the anchor protocol's peak-minus-base.

Accuracy against the eight networks measured on an H200 (``trainers.cost_anchors``; run
``benchmarks/vram_estimator.py``): mean |error| 1.4 %, max 8.2 % (``pons_timbre``, −8 %: thin
tall convolutions whose default cuDNN algorithms are slow, probably with workspace), against
8.3 % / 17.7 % for PyTorch's MemTracker under FakeTensorMode. No per-network factor is fitted.
Against DESIGN.md's absolute peaks of the three presets (workspaces included): mean |error|
3.3 %, max 7.2 % (``pons_timbre``); without the workspace terms 12.1 % / 24.6 %.

Reserved memory (``train_reserved_mb``, ``estimate_infer_reserved``): the trace also records
every allocation and free it counts, in order (``_AllocatorSim.events``, op-internal workspace
included), and ``trainers.cuda_allocator`` replays them through a model of the CUDA caching
allocator (512-byte rounding, small and large pools, 2 MiB / 20 MiB / rounded segments, best-fit
reuse, splitting, coalescing) under the probe's protocol: weights in ``module.to`` order, the
batch, a first step (the traced forward and backward, then the optimizer step that creates the
state), two more warm-up steps, ``empty_cache``, then steps until the allocator state repeats.
The simulated allocator's own allocated peak is slightly higher than ``train_vram_mb`` (an
unsplit cached block counts whole); ``train_vram_mb`` keeps the trace's count.

Definitions: docs/vram.md. Sizes are MiB (2**20 bytes) although fields are named ``_mb``.
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
from trainers.cuda_allocator import Event, StepEvents, carry_pairs, simulate_reserved
from trainers.featureset import Task

Optimizer = Literal["adamw", "adam", "sgd"]

MIB = 2**20
ALLOC_GRANULARITY_B = 512  # CUDA caching allocator kMinBlockSize: every block is a multiple
CATEGORIES = (
    "weights",
    "gradients",
    "optimizer_state",
    "batch",
    "activations",
    "workspace",
    "library_workspace",
)
KIB = 2**10


@dataclass(frozen=True)
class LibraryWorkspace:
    """One workspace a CUDA library keeps in the caching allocator for the process's life.

    ``per_process`` is how many a training process holds: cuBLAS keys its workspace by
    (handle, stream) and hands each thread its own handle, so the forward (main thread) and the
    backward (the autograd engine's device thread) each get one. ``source`` says where the
    number comes from.
    """

    name: str
    nbytes: int
    per_process: int
    phase: Literal["forward", "backward"]
    source: str


_CUBLAS_SRC = (
    "aten/src/ATen/cuda/CublasHandlePool.cpp parseChosenWorkspaceSize (pytorch 26a3905): "
    "CUBLAS_WORKSPACE_CONFIG unset"
)
_CUBLASLT_SRC = (
    "aten/src/ATen/cuda/CublasHandlePool.cpp parseCUDABlasLtWorkspaceSize: CUBLASLT_WORKSPACE_SIZE "
    "unset, 1024 KiB; a separate map unless TORCH_CUBLASLT_UNIFIED_WORKSPACE=1 "
    "(getCUDABlasLtWorkspace); used by addmm with a bias (Linear) in the forward"
)
# The one table of library workspaces by device class (MiB = 2**20 bytes). Measured on an H200
# (DESIGN.md, torch 2.11, the presets): ~64 MiB per process outside "above state"; the table
# gives 2 x 32 + 1 = 65 MiB.
LIBRARY_WORKSPACES: dict[str, tuple[LibraryWorkspace, ...]] = {
    "hopper": (  # compute capability exactly 9.0: H100, H200, H800, GH200
        LibraryWorkspace("cublas", 4096 * 8 * KIB, 1, "forward", _CUBLAS_SRC + ", sm90: 32 MiB"),
        LibraryWorkspace("cublas", 4096 * 8 * KIB, 1, "backward", _CUBLAS_SRC + ", sm90: 32 MiB"),
        LibraryWorkspace("cublaslt", 1024 * KIB, 1, "forward", _CUBLASLT_SRC),
    ),
    "other": (  # every other NVIDIA GPU (Volta, Turing, Ampere, Ada, Blackwell)
        LibraryWorkspace(
            "cublas", 4096 * 2 * KIB + 16 * 8 * KIB, 1, "forward", _CUBLAS_SRC + ", :4096:2:16:8"
        ),
        LibraryWorkspace(
            "cublas", 4096 * 2 * KIB + 16 * 8 * KIB, 1, "backward", _CUBLAS_SRC + ", :4096:2:16:8"
        ),
        LibraryWorkspace("cublaslt", 1024 * KIB, 1, "forward", _CUBLASLT_SRC),
    ),
}
DEFAULT_DEVICE_CLASS = "hopper"  # the card the anchors were measured on (H200)
_HOPPER_NAMES = ("H100", "H200", "H800", "GH200")


def device_class_of(device_name: str | None = None) -> str:
    """Return the ``LIBRARY_WORKSPACES`` class of a GPU named ``device_name`` (CUDA's name).

    Unknown or no name: ``DEFAULT_DEVICE_CLASS`` (an H100/H200-class card).
    """
    if not device_name:
        return DEFAULT_DEVICE_CLASS
    name = device_name.upper()
    return "hopper" if any(h in name for h in _HOPPER_NAMES) else "other"


def library_workspace_bytes(klass: str = DEFAULT_DEVICE_CLASS) -> int:
    """Return the bytes the libraries' workspaces of one training process hold (``klass``).

    Raises:
        CostError: unknown device class.
    """
    return sum(round_allocation(w.nbytes) * w.per_process for w in _workspaces(klass))


def _workspaces(klass: str) -> tuple[LibraryWorkspace, ...]:
    if klass not in LIBRARY_WORKSPACES:
        raise CostError(
            f"device_class: expected one of {', '.join(LIBRARY_WORKSPACES)}, got {klass!r}"
        )
    return LIBRARY_WORKSPACES[klass]


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

    ``train_vram_mb``: the allocated peak (``max_memory_allocated``). ``train_reserved_mb``: the
    reserved peak (``max_memory_reserved``) of the same traced steps replayed through
    ``trainers.cuda_allocator.CachingAllocatorSim`` under the probe's protocol (three warm-up
    steps, ``empty_cache``, then steps until the allocator state repeats); always >= the
    allocated peak, and always set by ``estimate_train_vram``. ``breakdown`` keys:
    ``weights`` (parameters and buffers), ``gradients``, ``optimizer_state``, ``batch`` (input
    and targets), ``activations`` (saved activations and every temporary a step creates),
    ``workspace`` (modelled op-internal buffers), ``library_workspace`` (the cuBLAS/cuBLASLt
    workspaces a training process keeps, ``LIBRARY_WORKSPACES`` of the device class).
    """

    train_vram_mb: float
    breakdown: dict[str, float]
    method: str
    peak_op: str = ""
    train_reserved_mb: float | None = None  # None: made without the allocator simulation

    @property
    def above_weights_and_batch_mb(self) -> float:
        """Return the peak minus weights, batch and library workspaces: the anchor protocol's
        peak-minus-base (the workspaces are allocated before its reset)."""
        return (
            self.train_vram_mb
            - self.breakdown["weights"]
            - self.breakdown["batch"]
            - self.breakdown.get("library_workspace", 0.0)
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict including ``above_weights_and_batch_mb``."""
        return {
            "train_vram_mb": self.train_vram_mb,
            "train_reserved_mb": self.train_reserved_mb,
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
        # id(storage) -> [category, bytes, weakref, key]; the weakref's callback frees the bytes
        self._storages: dict[int, list[Any]] = {}
        # what the CUDA caching allocator would be asked, in order: (key, bytes) allocates,
        # (key, 0) frees; replayed by CachingAllocatorSim for the reserved estimate
        self.events: list[Event] = []
        self._next_key = 1

    def _new_key(self) -> int:
        key = self._next_key
        self._next_key += 1
        return key

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
        event_key = 0
        if nbytes:  # a 0-byte storage never reaches the allocator (a null pointer)
            event_key = self._new_key()
            self.events.append((event_key, nbytes))
        self._storages[key] = [
            category,
            nbytes,
            weakref.ref(storage, self._freer(key)),
            event_key,
        ]

    def key_of(self, tensor: torch.Tensor | None) -> int:
        """Return the event key of ``tensor``'s storage (0: none, or not counted)."""
        if tensor is None:
            return 0
        entry = self._storages.get(id(tensor.untyped_storage()))
        return 0 if entry is None else int(entry[3])

    def transient(self, nbytes: int) -> None:
        """Record an op-internal buffer of ``nbytes``, allocated and freed inside one op."""
        if nbytes:
            key = self._new_key()
            self.events += [(key, nbytes), (key, 0)]

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
                if entry[3]:
                    self.events.append((entry[3], 0))

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
        workspace_b = reduction_cast_bytes(func, args, out)
        self.transient(workspace_b)
        self.observe(str(func), workspace_b)
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


def _label_optimizer_state(sim: _AllocatorSim, opt: torch.optim.Optimizer) -> None:
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                sim.relabel(value, "optimizer_state")


def _to_mib(breakdown_b: dict[str, int]) -> dict[str, float]:
    return {k: breakdown_b[k] / MIB for k in CATEGORIES}


def _device_order(module: nn.Module) -> Iterator[torch.Tensor]:
    """Yield parameters and buffers in the order ``module.to(device)`` allocates them.

    ``Module._apply`` recurses into the children first, then moves the module's own
    parameters, then its own buffers.
    """
    for child in module.children():
        yield from _device_order(child)
    yield from module.parameters(recurse=False)
    yield from module.buffers(recurse=False)


# The probe (trainers.cost_measure.measure_train_vram) and fit (trainers.train) both run 3 warm-up
# steps, then zero_grad(set_to_none), gc, empty_cache, reset_peak_memory_stats, then measure;
# measure_infer_vram runs 2 warm-up forwards. See trainers.cuda_allocator.simulate_reserved.
_WARMUP_STEPS = 3  # measure_train_vram(warmup_steps=3), trainers.train._VRAM_WARMUP_STEPS
_INFER_WARMUP = 2  # measure_infer_vram(warmup=2)


def estimate_train_vram(
    spec: ArchSpec,
    n_mels: int,
    n_frames: int,
    n_classes: int,
    batch_size: int,
    optimizer: Optimizer = "adamw",
    amp: bool = False,
    task: Task = "single_label",
    gpu_class: str = DEFAULT_DEVICE_CLASS,
) -> VramEstimate:
    """Return the estimated peak training VRAM of ``spec`` (weights to workspace, in MiB).

    ``gpu_class`` (a ``LIBRARY_WORKSPACES`` key, see ``device_class_of``) sizes the library
    workspaces, which are allocation events of the first step (forward: cuBLAS and cuBLASLt;
    backward: the autograd thread's cuBLAS), held from then on, and part of both peaks.

    Runs one optimizer step on gradient-shaped tensors (to create the optimizer state), then
    one recorded training step (zero_grad(set_to_none) → forward → loss → backward → step) of
    the built model on the meta device; see the module docstring for the allocator model and
    the reserved estimate (``train_reserved_mb``). Takes well under a second for the anchor
    networks.

    Raises:
        SpecError: the spec does not fit the input.
        CostError: bad batch size, optimizer or task, or ``amp=True`` (autocast cannot run
            on the meta device, so a mixed-precision estimate would be a guess).
    """
    _check_batch(batch_size)
    libraries = _workspaces(gpu_class)
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
    for tensor in _device_order(model):
        sim.allocate(tensor, "weights")
    x = torch.empty(batch_size, 1, n_mels, n_frames, device="meta")
    y = make_targets(task, batch_size, n_classes, "meta")
    sim.allocate(x, "batch")
    sim.allocate(y, "batch")
    at_batch = len(sim.events)
    hooks = [
        p.register_post_accumulate_grad_hook(
            lambda p: sim.relabel(p.grad, "gradients") if p.grad is not None else None
        )
        for p in params
    ]
    try:
        with _CudaDropout(), sim:
            # step 1 only creates the optimizer state: gradients of the parameters' shapes
            # are all it reads, so its forward and backward (the costly half of the trace,
            # which records nothing) are skipped
            for p in params:
                p.grad = torch.empty_like(p)
            at_grads = len(sim.events)
            opt.step()
            _label_optimizer_state(sim, opt)
            sim.recording = True
            at_step = len(sim.events)
            grads_before = [sim.key_of(p.grad) for p in params]
            opt.zero_grad(set_to_none=True)
            at_zero_grad = len(sim.events)
            loss = compute_loss(model(x), y)
            at_forward = len(sim.events)
            loss.backward()
            del loss
            at_backward = len(sim.events)
            opt.step()
            _label_optimizer_state(sim, opt)
            at_end = len(sim.events)
            grads_after = [sim.key_of(p.grad) for p in params]
    finally:
        for hook in hooks:
            hook.remove()
    events = sim.events
    step = events[at_step:at_end]
    library: dict[str, list[Event]] = {"forward": [], "backward": []}
    for workspace in libraries:
        for _ in range(workspace.per_process):
            library[workspace.phase].append((sim._new_key(), round_allocation(workspace.nbytes)))
    library_b = sum(nbytes for phase in library.values() for _, nbytes in phase)
    trace = StepEvents(
        prefix=events[:at_batch],
        # the first real step: the library workspaces its first matmuls allocate, forward and
        # backward without gradients before it, then the optimizer step that creates the
        # state (traced without them, before the step)
        first=library["forward"]
        + events[at_zero_grad:at_forward]
        + library["backward"]
        + events[at_forward:at_backward]
        + events[at_grads:at_step],
        step=step,
        reset_at=at_zero_grad - at_step,
        carry=carry_pairs(events, step, list(zip(grads_before, grads_after))),
    )
    reserved_b = simulate_reserved(trace, _WARMUP_STEPS)
    method = (
        f"meta-device trace of a training step with optimizer state ({optimizer}, "
        f"foreach, {task}), storages counted once, "
        f"{ALLOC_GRANULARITY_B}-byte rounding, CUDA dropout; workspace: reduction input "
        "casts modelled, cuDNN convolution workspace not modelled; reserved: the traced "
        "allocations replayed through a CUDA caching-allocator simulation "
        f"(trainers.cuda_allocator), {_WARMUP_STEPS} warm-up steps, empty_cache, then steps "
        f"until the allocator state repeats; library workspaces: {gpu_class} "
        f"({library_b / MIB:g} MiB)"
    )
    breakdown_b = dict(sim.peak_breakdown_b)
    breakdown_b["library_workspace"] = library_b
    return VramEstimate(
        train_vram_mb=(sim.peak_b + library_b) / MIB,
        train_reserved_mb=reserved_b / MIB,
        breakdown=_to_mib(breakdown_b),
        method=method,
        peak_op=sim.peak_op,
    )


def _trace_infer(
    spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int, batch_size: int
) -> tuple[_AllocatorSim, int, int]:
    """Return the sim of one traced eval forward and where its events start and end.

    The events after the end are the frees of the weights and the input when they go.
    """
    _check_batch(batch_size)
    model = _meta_model(spec, n_mels, n_frames, n_classes).eval()
    sim = _AllocatorSim()
    for tensor in _device_order(model):
        sim.allocate(tensor, "weights")
    x = torch.empty(batch_size, 1, n_mels, n_frames, device="meta")
    sim.allocate(x, "batch")
    at_forward = len(sim.events)
    sim.recording = True
    sim.observe("input")
    with torch.no_grad(), sim:
        model(x)
    return sim, at_forward, len(sim.events)


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
    return _trace_infer(spec, n_mels, n_frames, n_classes, batch_size)[0].peak_b / MIB


def estimate_infer_reserved(
    spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int, batch_size: int = 1
) -> tuple[float, float]:
    """Return the estimated inference peaks (allocated, reserved) in MiB.

    The allocated peak is ``estimate_infer_vram``'s; the reserved one replays the traced
    forward through ``CachingAllocatorSim`` as ``trainers.cost_measure.measure_infer_vram`` runs it
    (2 warm-up forwards, ``empty_cache``, then forwards until the allocator state repeats).

    Raises:
        SpecError: the spec does not fit the input.
        CostError: bad batch size.
    """
    sim, at_forward, at_end = _trace_infer(spec, n_mels, n_frames, n_classes, batch_size)
    forward = sim.events[at_forward:at_end]
    trace = StepEvents(prefix=sim.events[:at_forward], first=forward, step=forward)
    reserved_b = simulate_reserved(trace, _INFER_WARMUP)
    return sim.peak_b / MIB, reserved_b / MIB
