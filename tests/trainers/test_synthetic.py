"""The embedded synthetic set: seeded, sized as configured, and it separates filter shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces import ArchSpec, Branch, build_model
from trainers.features import load_features
from trainers.featureset import FeatureConfig
from trainers.sources import open_source
from trainers.synthetic import (
    CLASSES,
    F0_RANGE_HZ,
    TEMPORAL_CLASSES,
    TIMBRE_CLASSES,
    SyntheticConfig,
    render,
    render_clip,
)


def test_clips_are_seeded_and_distinct() -> None:
    cfg = SyntheticConfig()
    a = render("clarinet", 3, cfg)
    assert a.dtype == np.float32 and a.shape == (16000,)
    np.testing.assert_array_equal(a, render("clarinet", 3, cfg))
    assert not np.allclose(a, render("clarinet", 4, cfg))
    assert not np.allclose(a, render("clarinet", 3, SyntheticConfig(seed=1)))
    assert 0.05 < np.abs(a).max() <= 0.9


def test_source_has_ten_classes_of_200_one_second_clips() -> None:
    source = open_source("synthetic")
    assert source.labels == sorted(CLASSES) and len(CLASSES) == 10
    assert len(source.clips) == 2000
    samples, rate_hz = render_clip(source.clips[0].path, **source.options)
    assert samples.shape == (1, 16000) and rate_hz == 16000


def test_pitch_range_spans_at_least_two_octaves() -> None:
    assert F0_RANGE_HZ[1] / F0_RANGE_HZ[0] >= 4.0
    # the lowest strong spectral peak of plain temporal-class tones moves over the range
    peaks = []
    for index in range(40):
        wave = render("tremolo_slow", index, SyntheticConfig())
        spectrum = np.abs(np.fft.rfft(wave))
        peaks.append(int(np.argmax(spectrum[:2000] > 0.3 * spectrum.max())))
    assert max(peaks) / max(1, min(peaks)) >= 4.0


def _train_and_score(
    spec: ArchSpec, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, epochs: int
) -> np.ndarray:
    """Return the test predictions of ``spec`` after a short Adam training run."""
    torch.manual_seed(0)
    model = build_model(spec, x.shape[2], x.shape[3], len(CLASSES))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        return model(x_test).argmax(dim=1).numpy()


@pytest.mark.slow
def test_vertical_filters_win_on_timbre_and_time_filters_on_temporal_pattern(
    tmp_path: Path,
) -> None:
    torch.set_num_threads(2)
    # scaled down from the default (64 mels, hop 10 ms) to keep the test short on a CPU
    cfg = FeatureConfig(sample_rate_hz=16000, clip_seconds=1.0, hop_length=320, n_mels=32)
    data = load_features(
        "synthetic:clips_per_class=60", cfg, cache_dir=tmp_path, split_ratios=(0.75, 0.0, 0.25)
    )
    x, y = torch.from_numpy(np.array(data.train.x)), torch.from_numpy(np.array(data.train.y))
    x_test, y_test = torch.from_numpy(np.array(data.test.x)), np.array(data.test.y)
    timbre = np.isin(y_test, [data.labels.index(c) for c in TIMBRE_CLASSES])
    temporal = np.isin(y_test, [data.labels.index(c) for c in TEMPORAL_CLASSES])
    designs = {
        # Pons-style single layer of tall filters, max over frequency: timbre, not time
        "vertical": Branch(height="0.8M", width=3, channels=16, freq_reduce="max"),
        # 1 x w filters, max over frequency: temporal pattern, not spectral shape
        "time_only": Branch(height=1, width=13, channels=16, freq_reduce="max"),
    }
    accuracy = {}
    for name, branch in designs.items():
        predictions = _train_and_score(ArchSpec(frontend=(branch,)), x, y, x_test, epochs=10)
        correct = predictions == y_test
        accuracy[name] = (correct[timbre].mean(), correct[temporal].mean())
    (vertical_timbre, vertical_temporal) = accuracy["vertical"]
    (time_timbre, time_temporal) = accuracy["time_only"]
    print(f"per-group test accuracy (timbre, temporal): {accuracy}")
    assert vertical_timbre > time_timbre + 0.2, accuracy
    assert time_temporal > vertical_temporal + 0.2, accuracy
    # and neither design solves everything: the set is not trivially separable
    assert min(vertical_temporal, time_timbre) < 0.7, accuracy
