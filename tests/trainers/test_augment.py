"""SpecAugment masks and mixup on training batches, and their wiring into ``fit``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nas.config import ConfigError, from_dict
from tests.trainers.test_train import FAST, SPEC, toy_features
from trainers.augment import BatchAugmenter, augmentation_enabled
from trainers.result import TrainConfig
from trainers.train import fit


def _batch(n: int = 6, mels: int = 16, frames: int = 20) -> torch.Tensor:
    return torch.randn(n, 1, mels, frames, generator=torch.Generator().manual_seed(0)) + 3.0


def test_masks_set_whole_bands_to_the_clip_mean_and_leave_the_input_alone() -> None:
    x = _batch()
    before = x.clone()
    config = TrainConfig(freq_mask_bins=4, time_mask_frames=5, masks_per_axis=2, seed=1)
    out, y = BatchAugmenter(config, "single_label", 3)(x, torch.zeros(6, dtype=torch.long))
    assert torch.equal(x, before) and torch.equal(y, torch.zeros(6, dtype=torch.long))
    changed = out != x
    masked_bins = masked_frames = 0
    for i in range(len(x)):
        mean = x[i].mean()
        rows = changed[i, 0].all(dim=1)  # a masked bin is masked across every frame
        cols = changed[i, 0].all(dim=0)
        # every changed value lies in a masked row or column and holds the clip's mean
        assert torch.equal(changed[i, 0], rows[:, None] | cols[None, :])
        assert torch.allclose(out[i, 0][changed[i, 0]], mean.expand(int(changed[i].sum())))
        assert int(rows.sum()) <= 2 * 4 and int(cols.sum()) <= 2 * 5
        masked_bins += int(rows.sum())
        masked_frames += int(cols.sum())
    assert masked_bins > 0 and masked_frames > 0  # six clips: some masks are not empty


def test_the_stream_is_seeded() -> None:
    x = _batch()
    y = torch.zeros(6, dtype=torch.long)
    config = TrainConfig(freq_mask_bins=6, masks_per_axis=1, seed=3)
    a = BatchAugmenter(config, "single_label", 3)(x, y)[0]
    b = BatchAugmenter(config, "single_label", 3)(x, y)[0]
    c = BatchAugmenter(dataclasses.replace(config, seed=4), "single_label", 3)(x, y)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mixup_blends_clips_and_one_hot_targets_alike() -> None:
    n = 6
    x = _batch(n)
    y = torch.arange(n)  # clip i is class i, so each target row shows its partner and λ
    config = TrainConfig(mixup_alpha=0.4, seed=0)
    mixed, target = BatchAugmenter(config, "single_label", n)(x, y)
    assert target.shape == (n, n) and target.dtype == torch.float32
    assert torch.allclose(target.sum(dim=1), torch.ones(n))
    partners = []
    for i in range(n):
        lam = float(target[i, i]) if target[i, i] > 0 else 0.0
        others = [j for j in range(n) if j != i and target[i, j] > 0]
        if not others:  # paired with itself: nothing changes
            assert torch.allclose(mixed[i], x[i])
            partners.append(i)
            continue
        (j,) = others
        partners.append(j)
        assert torch.allclose(mixed[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
    assert sorted(partners) == list(range(n))  # a permutation of the batch

    multi = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    _, soft = BatchAugmenter(config, "multi_label", 2)(_batch(3), multi)
    assert soft.shape == (3, 2) and float(soft.min()) >= 0 and float(soft.max()) <= 1


def test_fit_trains_with_augmentation_and_is_unchanged_without() -> None:
    data = toy_features()
    plain = fit(SPEC, data, FAST)
    # masks of width 0 and mixup 0 are "off": the same run, exactly
    off = fit(SPEC, data, dataclasses.replace(FAST, masks_per_axis=5))
    assert not augmentation_enabled(dataclasses.replace(FAST, masks_per_axis=5))
    assert (
        off.metrics == plain.metrics
        and off.history[-1]["train_loss"] == (plain.history[-1]["train_loss"])
    )
    augmented = dataclasses.replace(FAST, freq_mask_bins=3, time_mask_frames=4, mixup_alpha=0.2)
    result = fit(SPEC, data, augmented)
    assert result.status == "complete", result.reason
    assert result.history[-1]["train_loss"] != plain.history[-1]["train_loss"]
    assert result.metrics["test_accuracy"] > 1 / data.n_classes  # still learns the toy task


def test_bad_augmentation_settings_are_named() -> None:
    result = fit(SPEC, toy_features(), dataclasses.replace(FAST, freq_mask_bins=-1))
    assert result.status == "failed" or result.status == "invalid"
    assert "freq_mask_bins must be an integer >= 0, got -1" in result.reason
    with pytest.raises(ConfigError, match=r"train\.mixup_alpha: must be >= 0"):
        from_dict({"train": {"mixup_alpha": -0.5}})
