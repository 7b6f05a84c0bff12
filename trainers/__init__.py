"""Data, features, training, metrics and cost measurement (imports search_spaces only).

The public API, imported lazily (torch, torchaudio and fvcore load only when a name is used,
so the CLI starts fast): ``from trainers import fit, load_features, TrainConfig``.
"""

from __future__ import annotations

from typing import Any

# public name -> the module of trainers that defines it
_EXPORTS = {
    "pitch_shift": "audio",
    "read_audio": "audio",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CostReport": "cost",
    "cost_report": "cost",
    "DesignTooLarge": "cost",
    "refuse_too_large": "cost",
    "estimate_train_vram": "cost_vram",
    "measure_infer_vram": "cost_measure",
    "measure_latency_ms": "cost_measure",
    "measure_train_vram": "cost_measure",
    "CostError": "cost_vram",
    "VramEstimate": "cost_vram",
    "LIBRARY_WORKSPACES": "cost_vram",
    "device_class_of": "cost_vram",
    "estimate_infer_vram": "cost_vram",
    "AudioDecodeError": "errors",
    "BadAudioError": "errors",
    "CacheError": "errors",
    "DataError": "errors",
    "load_features": "features",
    "waveform_to_features": "features",
    "TASKS": "featureset",
    "FeatureConfig": "featureset",
    "FeatureSet": "featureset",
    "Split": "featureset",
    "Task": "featureset",
    "PITCH_ROBUSTNESS_METRIC": "metrics",
    "PRIMARY_METRIC": "metrics",
    "task_metrics": "metrics",
    "TrainConfig": "result",
    "TrialResult": "result",
    "KINDS": "sources",
    "Source": "sources",
    "open_source": "sources",
    "parse_data_arg": "sources",
    "TrainError": "train",
    "check_train_config": "train",
    "fit": "train",
    "pitch_robustness": "train",
    "resolve_device": "train",
    "VramPeaks": "vram_probe",
}

__all__ = [
    "KINDS",
    "LIBRARY_WORKSPACES",
    "PITCH_ROBUSTNESS_METRIC",
    "PRIMARY_METRIC",
    "TASKS",
    "AudioDecodeError",
    "BadAudioError",
    "CacheError",
    "CheckpointError",
    "CostError",
    "CostReport",
    "DataError",
    "DesignTooLarge",
    "FeatureConfig",
    "FeatureSet",
    "Source",
    "Split",
    "Task",
    "TrainConfig",
    "TrainError",
    "TrialResult",
    "VramEstimate",
    "VramPeaks",
    "check_train_config",
    "cost_report",
    "device_class_of",
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
    "pitch_robustness",
    "pitch_shift",
    "read_audio",
    "refuse_too_large",
    "resolve_device",
    "save_checkpoint",
    "task_metrics",
    "waveform_to_features",
]


def __getattr__(name: str) -> Any:
    # each submodule imported by a fixed statement (no import by computed name)
    module = _EXPORTS.get(name)
    if module == "audio":
        from trainers import audio

        return getattr(audio, name)
    if module == "checkpoint":
        from trainers import checkpoint

        return getattr(checkpoint, name)
    if module == "cost":
        from trainers import cost

        return getattr(cost, name)
    if module == "cost_measure":
        from trainers import cost_measure

        return getattr(cost_measure, name)
    if module == "cost_vram":
        from trainers import cost_vram

        return getattr(cost_vram, name)
    if module == "vram_probe":
        from trainers import vram_probe

        return getattr(vram_probe, name)
    if module == "errors":
        from trainers import errors

        return getattr(errors, name)
    if module == "features":
        from trainers import features

        return getattr(features, name)
    if module == "featureset":
        from trainers import featureset

        return getattr(featureset, name)
    if module == "metrics":
        from trainers import metrics

        return getattr(metrics, name)
    if module == "result":
        from trainers import result

        return getattr(result, name)
    if module == "sources":
        from trainers import sources

        return getattr(sources, name)
    if module == "train":
        from trainers import train

        return getattr(train, name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
