"""Data, features, training, metrics and cost measurement (imports search_spaces only).

The public API, imported lazily (torch, torchaudio and fvcore load only when a name is used,
so the CLI starts fast): ``from trainers import fit, load_features, TrainConfig``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it (the one place each is listed)
_EXPORTS = {
    "read_audio": "trainers.audio",
    "CheckpointError": "trainers.checkpoint",
    "load_checkpoint": "trainers.checkpoint",
    "save_checkpoint": "trainers.checkpoint",
    "CostReport": "trainers.cost",
    "cost_report": "trainers.cost",
    "estimate_train_vram": "trainers.cost_vram",
    "measure_infer_vram": "trainers.cost",
    "measure_latency_ms": "trainers.cost",
    "measure_train_vram": "trainers.cost",
    "CostError": "trainers.cost_vram",
    "VramEstimate": "trainers.cost_vram",
    "estimate_infer_vram": "trainers.cost_vram",
    "AudioDecodeError": "trainers.errors",
    "BadAudioError": "trainers.errors",
    "CacheError": "trainers.errors",
    "DataError": "trainers.errors",
    "load_features": "trainers.features",
    "waveform_to_features": "trainers.features",
    "TASKS": "trainers.featureset",
    "FeatureConfig": "trainers.featureset",
    "FeatureSet": "trainers.featureset",
    "Split": "trainers.featureset",
    "Task": "trainers.featureset",
    "PRIMARY_METRIC": "trainers.metrics",
    "task_metrics": "trainers.metrics",
    "TrainConfig": "trainers.result",
    "TrialResult": "trainers.result",
    "KINDS": "trainers.sources",
    "Source": "trainers.sources",
    "open_source": "trainers.sources",
    "parse_data_arg": "trainers.sources",
    "TrainError": "trainers.train",
    "check_train_config": "trainers.train",
    "fit": "trainers.train",
    "resolve_device": "trainers.train",
}

__all__ = [
    "KINDS",
    "PRIMARY_METRIC",
    "TASKS",
    "AudioDecodeError",
    "BadAudioError",
    "CacheError",
    "CheckpointError",
    "CostError",
    "CostReport",
    "DataError",
    "FeatureConfig",
    "FeatureSet",
    "Source",
    "Split",
    "Task",
    "TrainConfig",
    "TrainError",
    "TrialResult",
    "VramEstimate",
    "check_train_config",
    "cost_report",
    "estimate_infer_vram",
    "estimate_train_vram",
    "fit",
    "load_checkpoint",
    "load_features",
    "measure_infer_vram",
    "measure_latency_ms",
    "measure_train_vram",
    "open_source",
    "parse_data_arg",
    "read_audio",
    "resolve_device",
    "save_checkpoint",
    "task_metrics",
    "waveform_to_features",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
