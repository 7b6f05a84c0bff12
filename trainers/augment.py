"""Training-time augmentation of log-mel batches: SpecAugment masks and mixup.

Both act on the batch already on the training device, so they cost no host transfer, and both
draw their randomness from their own generator seeded by ``TrainConfig.seed``: turning them on
does not change the batch order, and a run is reproducible on the CPU.

* SpecAugment (Park et al., 2019): ``masks_per_axis`` bands of up to ``freq_mask_bins`` mel bins
  and as many of up to ``time_mask_frames`` frames are set to the clip's mean, independently per
  clip. Only training batches are masked; validation and test never are.
* mixup (Zhang et al., 2018): each batch is blended with a shuffled copy of itself,
  ``λ ~ Beta(mixup_alpha, mixup_alpha)``; targets become the same blend of one-hot (or
  multi-hot) labels, which cross-entropy and BCE both take as soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainers.featureset import Task
from trainers.result import TrainConfig

# keeps the augmentation's stream apart from the seed's other uses (init, batch order)
_SEED_OFFSET = 7919


def augmentation_enabled(config: TrainConfig) -> bool:
    """Return True when ``config`` asks for any training-time augmentation."""
    masks = config.masks_per_axis > 0 and (config.freq_mask_bins > 0 or config.time_mask_frames > 0)
    return masks or config.mixup_alpha > 0


@dataclass
class BatchAugmenter:
    """Masks and mixes training batches per ``TrainConfig`` (see the module docstring)."""

    config: TrainConfig
    task: Task
    n_classes: int

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.config.seed + _SEED_OFFSET)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the augmented batch and its targets (soft targets when mixup is on).

        ``x`` is (batch, 1, mels, frames); ``y`` class indices (single-label) or multi-hot
        floats (multi-label). ``x`` itself is never written to.
        """
        config = self.config
        hit: torch.Tensor | None = None
        if config.masks_per_axis > 0 and config.freq_mask_bins > 0:
            hit = self._bands(x, axis=2, max_width=config.freq_mask_bins)
        if config.masks_per_axis > 0 and config.time_mask_frames > 0:
            frames = self._bands(x, axis=3, max_width=config.time_mask_frames)
            hit = frames if hit is None else hit | frames
        if hit is not None:
            # one mean per clip, of the clip as it came (not of a half-masked one)
            x = torch.where(hit, x.mean(dim=(1, 2, 3), keepdim=True), x)
        if config.mixup_alpha > 0 and len(x) > 1:
            x, y = self._mixup(x, y)
        return x, y

    def _bands(self, x: torch.Tensor, axis: int, max_width: int) -> torch.Tensor:
        """Return a mask broadcastable to ``x``: True in each clip's masked bands of ``axis``."""
        size = x.shape[axis]
        batch = x.shape[0]
        n = self.config.masks_per_axis
        widths = self._rng.integers(0, min(max_width, size) + 1, size=(batch, n))
        starts = self._rng.integers(0, size - widths + 1)
        positions = torch.arange(size, device=x.device)
        lo = torch.as_tensor(starts, device=x.device).unsqueeze(-1)  # (batch, n, 1)
        hi = lo + torch.as_tensor(widths, device=x.device).unsqueeze(-1)
        hit = ((positions >= lo) & (positions < hi)).any(dim=1)  # (batch, size)
        shape = [batch, 1, 1, 1]
        shape[axis] = size
        return hit.view(shape)

    def _mixup(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = self.config.mixup_alpha
        lam = float(self._rng.beta(alpha, alpha))
        perm = torch.as_tensor(self._rng.permutation(len(x)), device=x.device)
        if self.task == "single_label":
            target = F.one_hot(y, self.n_classes).to(torch.float32)
        else:
            target = y.to(torch.float32)
        mixed_x = lam * x + (1.0 - lam) * x[perm]
        mixed_y = lam * target + (1.0 - lam) * target[perm]
        return mixed_x, mixed_y
