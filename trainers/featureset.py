"""The data every trial trains on: feature configuration and the featurised splits.

``FeatureConfig`` says how a waveform becomes a log-mel spectrogram (one place for the defaults);
``FeatureSet`` holds the cached features of the train/valid/test splits, ready for ``fit``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

Task = Literal["single_label", "multi_label"]
TASKS: tuple[Task, ...] = get_args(Task)  # the one list of task names


MAX_CLIP_SECONDS = 600.0
"""The longest clip a FeatureConfig may ask for: every clip is padded or cut to ``clip_seconds``,
so an hour would turn each half-second clip into 92 MB of mostly silent features."""


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes the model input: resample, fix the length, log-mel."""

    sample_rate_hz: int = 16000
    clip_seconds: float = 1.0
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    # log(mel + log_offset); a small offset keeps silence finite
    log_offset: float = 1e-6
    # when set, log1p(log_gain * mel) instead (the FSDD anchor, anchor_gpu.py, uses 100)
    log_gain: float | None = None
    # how a clip longer than clip_seconds is cut when features are cached
    # ("center" crop; "start" keeps the beginning); shorter clips are zero-padded at the end
    crop: Literal["center", "start"] = "center"

    @property
    def n_samples(self) -> int:
        """Samples per clip after resampling and crop/pad."""
        return round(self.sample_rate_hz * self.clip_seconds)

    @property
    def n_frames(self) -> int:
        """Frames per clip (torchaudio's centred STFT: 1 + n_samples // hop)."""
        return 1 + self.n_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        return cls(**data)


@dataclass
class Split:
    """One split's features ``x`` (N, 1, n_mels, n_frames) float32 and targets ``y``.

    ``y`` is int64 (N,) class indices for single-label tasks, float32 (N, K) multi-hot for
    multi-label tasks. Arrays may be memory-mapped from the cache.
    """

    x: np.ndarray
    y: np.ndarray
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class FeatureSet:
    """The featurised dataset shared by every trial of a study."""

    train: Split
    valid: Split
    test: Split
    labels: list[str]
    task: Task
    feature_config: FeatureConfig
    source: str = ""
    cache_key: str = ""
    # what trainers.features.load_features adds: where the cache lives, what was left out
    cache_path: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    # per clip in train, valid, test order: duration and sample rate of the decoded file
    durations_s: np.ndarray | None = None
    sample_rates_hz: np.ndarray | None = None
    split_note: str = ""
    from_cache: bool = False
    seconds: float = 0.0
    # the valid split pitch-shifted by each semitone count (data.pitch_shifts): fit reports the
    # metric on each and val_pitch_robustness, their mean (trainers.train.pitch_robustness)
    valid_shifted: dict[float, Split] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def n_mels(self) -> int:
        return int(self.train.x.shape[2])

    @property
    def n_frames(self) -> int:
        return int(self.train.x.shape[3])
