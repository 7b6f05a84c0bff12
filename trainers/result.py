"""TrainConfig (how one architecture is trained) and TrialResult (what came out, with costs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

TrialStatus = Literal[
    "complete",  # trained to the end (or early-stopped by its own patience)
    "pruned",  # stopped early by the search scheduler; never on the Pareto front
    "oom",  # CUDA out of memory
    "diverged",  # NaN/inf loss
    "invalid",  # the spec does not build for this input
    "infeasible",  # violates a constraint (e.g. --max-train-vram-mb)
    "failed",  # anything else (crashed worker, ...), with the reason
]
VramSource = Literal["measured", "estimated"]
# TrialResult.extra key: why fit could not write the checkpoint it was asked for (the path and
# the system's reason, e.g. a full disk); the result itself is complete and kept
CHECKPOINT_ERROR_KEY = "checkpoint_error"


@dataclass(frozen=True)
class TrainConfig:
    """How one architecture is trained; every field has a default a user can override."""

    epochs: int = 20
    batch_size: int = 64
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    step_size_epochs: int = 10  # step schedule
    step_gamma: float = 0.1
    warmup_epochs: int = 0
    grad_clip_norm: float | None = 5.0
    early_stopping_patience: int | None = None  # epochs without validation improvement
    amp: bool = True  # CUDA only; ignored on CPU
    seed: int = 0
    time_budget_s: float | None = None  # stop training after this many seconds
    checkpoint_dir: str | None = None  # save best weights (safetensors) here
    cudnn_benchmark: bool = False
    num_threads: int | None = None  # torch CPU threads; None leaves torch's default
    # training-time augmentation (trainers.augment); all off by default
    freq_mask_bins: int = 0  # SpecAugment: widest frequency mask in mel bins (0: none)
    time_mask_frames: int = 0  # SpecAugment: widest time mask in frames (0: none)
    masks_per_axis: int = 2  # SpecAugment: masks drawn per axis and clip
    mixup_alpha: float = 0.0  # mixup's Beta(α, α); 0: off

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**data)


@dataclass
class TrialResult:
    """Everything one trial produced: status, metrics, per-epoch history and costs.

    ``metrics`` holds final ``val_*`` and ``test_*`` values (``accuracy``/``macro_f1`` for
    single-label, ``roc_auc``/``pr_auc`` for multi-label). ``history`` has one dict per epoch
    (``epoch``, ``train_loss``, ``val_<metric>``, ``lr``, ``step_ms``, ``seconds``).
    """

    status: TrialStatus
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    params: int | None = None
    gflops: float | None = None  # forward GFLOPs per clip (fvcore, multiply-adds)
    train_vram_mb: float | None = None  # MiB; docs/vram.md
    train_reserved_mb: float | None = None  # MiB; peak reserved, docs/vram.md
    infer_vram_mb: float | None = None
    vram_source: VramSource = "estimated"
    latency_ms: float | None = None  # batch-1 forward on the trial's device
    seconds: float = 0.0
    train_seconds: float = 0.0  # training epochs with their validation passes
    epochs_run: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cost_summary(self) -> dict[str, Any]:
        """Return the costs a trial record keeps: params, GFLOPs, VRAM (+ source), latency."""
        return {
            "params": self.params,
            "gflops": self.gflops,
            "train_vram_mb": self.train_vram_mb,
            "train_reserved_mb": self.train_reserved_mb,
            "infer_vram_mb": self.infer_vram_mb,
            "latency_ms": self.latency_ms,
            "vram_source": self.vram_source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
