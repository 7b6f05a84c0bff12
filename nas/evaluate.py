"""Evaluating an exported bundle on any labelled data, optionally under pitch shift.

``evaluate_bundle(bundle, data)`` featurises ``data`` with the bundle's own feature config
(``features.json``), matches its labels to the bundle's by name, and returns the task's metrics,
one row per pitch shift in semitones (each shift is its own feature-cache entry: data × feature
config × shift), with the drop of every metric against shift 0. It is the robustness test of
Won et al. (SMC 2020, ``training/robustness.py``), for any model fsnas exports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nas.bundle import ExportedModel
from search_spaces.errors import FsnasError

EvalSplit = Literal["test", "all"]
EVAL_SPLITS: tuple[str, ...] = ("test", "all")
MAX_PITCH_SHIFT_SEMITONES = 24.0
_BATCH = 256


class EvaluationError(FsnasError):
    """The data cannot be evaluated by this bundle (unknown labels, no clips, bad shifts)."""


@dataclass
class ShiftRow:
    """The bundle's metrics at one pitch shift, and their drop against shift 0."""

    pitch_shift_semitones: float
    n_clips: int
    metrics: dict[str, float]
    drop: dict[str, float] = field(default_factory=dict)  # metric at 0 minus metric here
    from_cache: bool = False


@dataclass
class Evaluation:
    """What ``evaluate_bundle`` returns: one row per shift, shift 0 first among equals."""

    bundle: str
    data: str
    split: str
    task: str
    metric: str  # the task's primary metric (trainers.metrics.PRIMARY_METRIC)
    labels: list[str]  # the data's labels, all known to the bundle
    rows: list[ShiftRow]

    @property
    def at_zero(self) -> ShiftRow:
        return next(row for row in self.rows if row.pitch_shift_semitones == 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``--json`` object (metrics undefined on this data are ``None``)."""
        from dashboards.records import json_ready

        return dict(
            json_ready(
                {
                    "bundle": self.bundle,
                    "data": self.data,
                    "split": self.split,
                    "task": self.task,
                    "metric": self.metric,
                    "labels": self.labels,
                    "metrics": self.at_zero.metrics,
                    "pitch_shift": [
                        {
                            "semitones": row.pitch_shift_semitones,
                            "n_clips": row.n_clips,
                            "metrics": row.metrics,
                            "drop": row.drop,
                        }
                        for row in self.rows
                    ],
                }
            )
        )


def parse_shifts(text: str | None) -> list[float]:
    """Return the semitone shifts of ``--pitch-shift -4,-2,0,2,4`` (0 added when missing).

    Raises:
        EvaluationError: a value is not a number, is repeated or exceeds
            ``MAX_PITCH_SHIFT_SEMITONES``.
    """
    if text is None:
        return [0.0]
    shifts: list[float] = []
    for item in (p.strip() for p in text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise EvaluationError(
                f"--pitch-shift {text!r}: {item!r} is not a number of semitones "
                "(write e.g. -4,-2,0,2,4)"
            ) from None
        if not math.isfinite(value) or abs(value) > MAX_PITCH_SHIFT_SEMITONES:
            raise EvaluationError(
                f"--pitch-shift {text!r}: {item} semitones is beyond ±"
                f"{MAX_PITCH_SHIFT_SEMITONES:g} (two octaves)"
            )
        if value in shifts:
            raise EvaluationError(f"--pitch-shift {text!r}: {item} is listed twice")
        shifts.append(value)
    if 0.0 not in shifts:
        shifts.append(0.0)  # the drop is measured against it
    return sorted(shifts)


def _label_map(data_labels: Sequence[str], bundle: ExportedModel, data: str) -> np.ndarray:
    """Return the bundle index of each data label.

    Raises:
        EvaluationError: some data labels are unknown to the bundle (all are named).
    """
    index = {label: i for i, label in enumerate(bundle.labels)}
    unknown = [label for label in data_labels if label not in index]
    if unknown:
        shown = ", ".join(repr(label) for label in unknown[:20])
        more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
        raise EvaluationError(
            f"--data {data}: {len(unknown)} label(s) the bundle does not know: {shown}{more}; "
            f"the bundle {bundle.directory} knows {len(bundle.labels)}: "
            + ", ".join(repr(label) for label in bundle.labels[:20])
            + ("…" if len(bundle.labels) > 20 else "")
            + "; relabel the data or evaluate another bundle"
        )
    return np.array([index[label] for label in data_labels], dtype=np.int64)


def _logits(bundle: ExportedModel, x: np.ndarray) -> np.ndarray:
    import torch

    out = [
        bundle.logits(torch.from_numpy(np.ascontiguousarray(x[i : i + _BATCH]))).numpy()
        for i in range(0, len(x), _BATCH)
    ]
    logits = np.concatenate(out) if out else np.zeros((0, len(bundle.labels)), np.float32)
    if not np.isfinite(logits).all():
        raise EvaluationError(
            f"bundle {bundle.directory}: the model gives NaN or infinite scores on this data "
            "(broken weights or broken input); no metric is computed"
        )
    return logits


def evaluate_bundle(
    bundle: ExportedModel,
    data: str,
    *,
    split: EvalSplit = "test",
    shifts: Sequence[float] = (0.0,),
    cache_dir: str | Path = ".fsnas/cache",
    on_bad_audio: Literal["fail", "skip"] = "fail",
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Evaluation:
    """Return the bundle's metrics on ``data`` (``KIND:PATH``), one row per pitch shift.

    Args:
        bundle: a loaded bundle (``load_exported``).
        data: any labelled data fsnas reads; its labels must all be the bundle's.
        split: ``test`` (the data's test split: official, or drawn with ``seed`` and
            ``split_ratios`` as training draws it) or ``all`` (every clip).
        shifts: semitones; must contain 0 (``parse_shifts`` adds it).
        cache_dir, on_bad_audio: as for training (``trainers.features.load_features``).

    Raises:
        EvaluationError: unknown labels (before any feature is computed), an empty split.
        DataError: the data cannot be read.
    """
    from trainers.features import load_features
    from trainers.metrics import PRIMARY_METRIC, task_metrics
    from trainers.sources import open_source

    if split not in EVAL_SPLITS:
        raise EvaluationError(f"--split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if 0.0 not in shifts:
        raise EvaluationError("shifts must include 0 (the drop is measured against it)")
    source = open_source(data)  # labels are checked before any feature is computed
    if source.task != bundle.task:
        raise EvaluationError(
            f"--data {data}: a {source.task.replace('_', '-')} data set, but the bundle "
            f"{bundle.directory} is {bundle.task.replace('_', '-')}"
        )
    mapping = _label_map(source.labels, bundle, data)
    rows: list[ShiftRow] = []
    for semitones in shifts:
        features = load_features(
            data,
            bundle.feature_config,
            cache_dir=cache_dir,
            on_bad_audio=on_bad_audio,
            split_ratios=split_ratios,
            seed=seed,
            trainable=False,
            pitch_shift_semitones=semitones,
        )
        parts = (
            [features.test] if split == "test" else [features.train, features.valid, features.test]
        )
        x = np.concatenate([np.asarray(p.x) for p in parts])
        y = np.concatenate([np.asarray(p.y) for p in parts])
        if len(x) == 0:
            raise EvaluationError(
                f"--data {data}: the {split} split holds no clips; pass --split all"
            )
        if bundle.task == "single_label":
            targets = mapping[y]
        else:
            targets = np.zeros((len(y), len(bundle.labels)), dtype=np.float32)
            targets[:, mapping] = y
        metrics = task_metrics(bundle.task, targets, _logits(bundle, x))
        rows.append(ShiftRow(float(semitones), len(x), metrics, from_cache=features.from_cache))
    base = next(row for row in rows if row.pitch_shift_semitones == 0).metrics
    for row in rows:
        row.drop = {name: base[name] - value for name, value in row.metrics.items()}
    return Evaluation(
        bundle=str(bundle.directory),
        data=data,
        split=split,
        task=bundle.task,
        metric=PRIMARY_METRIC[bundle.task],
        labels=list(source.labels),
        rows=rows,
    )


__all__ = [
    "EVAL_SPLITS",
    "Evaluation",
    "EvaluationError",
    "ShiftRow",
    "evaluate_bundle",
    "parse_shifts",
]
