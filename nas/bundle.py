"""The small loader of exported bundles: ``load_exported(DIR)`` gives a ready-to-run model.

A bundle is a directory of plain files (``BUNDLE_FILES``); nothing in it is ever unpickled or
executed. ``spec.json``, ``features.json`` and ``labels.json`` are JSON, read with ``json``;
``model.safetensors`` holds the tensors (weights, biases, BatchNorm statistics) and, in its string
metadata, the SHA-256 of each JSON file, so an edited spec, feature config or label list is caught
before anything is built, and the SHA-256 of the tensors themselves (``weights_sha256``, see
``trainers.checkpoint.tensors_sha256``), so one flipped weight byte is caught too; NaN or
infinite weights, and NaN or infinite scores, are refused. A bundle of format version 1
(exported before the weights hash) loads with a warning. ``torch.load`` is never called.

This module depends on torch, torchaudio (through the feature transform), safetensors and fsnas's
``search_spaces.build_model``, ``trainers.features.waveform_to_features`` and
``trainers.checkpoint.weights_problem`` (the tensors' hash and finiteness) only: no Ray, Optuna
or MLflow, so a deployment needs none of the search machinery.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from search_spaces.build import build_model
from search_spaces.errors import FsnasError, FsnasWarning
from search_spaces.spec import ArchSpec
from trainers.audio import read_audio
from trainers.checkpoint import WEIGHTS_HASH_KEY, weights_problem
from trainers.features import waveform_to_features
from trainers.featureset import TASKS, FeatureConfig, Task

SPEC_FILE: Final = "spec.json"
WEIGHTS_FILE: Final = "model.safetensors"
ONNX_FILE: Final = "model.onnx"
FEATURES_FILE: Final = "features.json"
LABELS_FILE: Final = "labels.json"
CARD_FILE: Final = "model_card.md"
BUNDLE_FILES: Final = (SPEC_FILE, WEIGHTS_FILE, ONNX_FILE, FEATURES_FILE, LABELS_FILE, CARD_FILE)
"""Every file ``fsnas export`` writes; the first five are checked by ``load_exported``."""

BUNDLE_FORMAT: Final = "fsnas-bundle"
BUNDLE_FORMAT_VERSION: Final = 2
"""2: ``model.safetensors`` records the SHA-256 of its tensors (``weights_sha256``); 1: it
does not (such bundles load with a warning)."""

HASHED_FILES: Final[dict[str, str]] = {
    SPEC_FILE: "spec_sha256",
    FEATURES_FILE: "features_sha256",
    LABELS_FILE: "labels_sha256",
    ONNX_FILE: "onnx_sha256",
}
"""Bundle file -> the safetensors metadata key holding its SHA-256 (one place for both sides)."""

ONNX_INPUT_NAME: Final = "logmel"
ONNX_OUTPUT_NAME: Final = "logits"


# A JSON file of a bundle is a few KB; refusing huge ones keeps a hostile bundle from exhausting
# memory before its hash is even checked.
_MAX_JSON_BYTES: Final = 8 * 2**20


class BundleError(FsnasError):
    """A bundle is missing a file, was edited or damaged, or does not fit; names the file."""


def sha256_file(path: str | Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def features_document(config: FeatureConfig, n_frames: int) -> dict[str, Any]:
    """Return the content of ``features.json``: the FeatureConfig plus the waveform policy.

    ``feature_config`` is ``FeatureConfig.to_dict()`` (read back with ``from_dict``); the other
    keys state in words and numbers what happens before it, so a re-implementation outside
    Python can reproduce the model input.
    """
    return {
        "feature_config": config.to_dict(),
        "input": {
            "name": ONNX_INPUT_NAME,
            "layout": "batch x 1 x n_mels x n_frames",
            "n_mels": config.n_mels,
            "n_frames": n_frames,
            "dtype": "float32",
        },
        "waveform": {
            "channels": "mono: mean of the channels",
            "resample": "torchaudio.functional.resample (band-limited sinc) to sample_rate_hz",
            "length_samples": config.n_samples,
            "crop": f"{config.crop} crop when longer",
            "pad": "zeros at the end when shorter",
        },
        "log_mel": {
            "spectrogram": "torchaudio.transforms.MelSpectrogram defaults (power 2, centred "
            "reflect-padded STFT, Hann window, HTK mel scale, no mel norm) with the fields above",
            "compression": (
                f"log1p({config.log_gain:g} * mel)"
                if config.log_gain is not None
                else f"log(mel + {config.log_offset:g})"
            ),
        },
        "transform": "trainers.features.waveform_to_features(waveform, sample_rate_hz, cfg)",
    }


def labels_document(labels: list[str], task: Task) -> dict[str, Any]:
    """Return the content of ``labels.json``: the class names in output order and the task."""
    return {"labels": list(labels), "task": task}


class WaveformFeatures(nn.Module):
    """Turns one clip's waveform at any sample rate into the model input (1, 1, n_mels, n_frames).

    A thin wrapper that stores the bundle's FeatureConfig and calls the one feature transform
    of fsnas (``waveform_to_features``: mono downmix, resampling, crop/pad, log-mel), the same
    function that built the training features.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, waveform: torch.Tensor | np.ndarray, sample_rate_hz: int) -> torch.Tensor:
        """Return the (1, 1, n_mels, n_frames) log-mel of a (time,) or (channels, time) clip."""
        x = torch.as_tensor(waveform, dtype=torch.float32)
        if x.ndim not in (1, 2):
            raise BundleError(
                f"waveform: expected shape (time,) or (channels, time), got {tuple(x.shape)}"
            )
        return waveform_to_features(x, int(sample_rate_hz), self.config).float()


@dataclass
class ExportedModel:
    """A loaded bundle: the eval-mode model, its feature extractor, labels, task and spec."""

    model: nn.Module
    features: WaveformFeatures
    labels: list[str]
    task: Task
    spec: ArchSpec
    feature_config: FeatureConfig
    n_mels: int
    n_frames: int
    directory: Path
    metadata: dict[str, str] = field(default_factory=dict)

    @torch.no_grad()
    def logits(self, logmel: torch.Tensor) -> torch.Tensor:
        """Return the raw outputs (batch, n_classes) of inputs (batch, 1, n_mels, n_frames)."""
        self.model.eval()
        weight = next(self.model.parameters(), None)
        device = weight.device if weight is not None else torch.device("cpu")
        return self.model(logmel.to(device=device, dtype=torch.float32)).cpu()

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Return probabilities from logits: softmax (single-label) or sigmoid (multi-label)."""
        if self.task == "multi_label":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def predict_features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Return probabilities (batch, n_classes) for model inputs (batch, 1, n_mels, n_frames).

        Raises:
            BundleError: a score is NaN or infinite (broken weights or a broken input).
        """
        probabilities = self.scores(self.logits(logmel))
        if not bool(torch.isfinite(probabilities).all()):
            raise BundleError(
                f"bundle {self.directory}: the model gives NaN or infinite scores for this input "
                "(broken weights or a broken input); no prediction is made"
            )
        return probabilities

    def predict(self, waveform: torch.Tensor | np.ndarray, sample_rate_hz: int) -> torch.Tensor:
        """Return the probabilities (n_classes,) of one clip, (time,) or (channels, time)."""
        with torch.no_grad():
            logmel = self.features(waveform, sample_rate_hz)
        return self.predict_features(logmel)[0]

    def predict_file(self, path: str | Path) -> torch.Tensor:
        """Return the probabilities (n_classes,) of one audio file (any rate, any channels)."""
        samples, sample_rate_hz = read_audio(path)
        return self.predict(samples, sample_rate_hz)

    def top_k(self, probabilities: torch.Tensor, k: int) -> list[tuple[str, float]]:
        """Return the ``k`` most probable (label, probability) pairs, best first."""
        k = max(1, min(int(k), len(self.labels)))
        values, indices = torch.topk(probabilities, k)
        return [(self.labels[int(i)], float(v)) for v, i in zip(values, indices)]


# -- loading ----------------------------------------------------------------------------------
def _require(directory: Path, name: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise BundleError(f"bundle {directory}: {name} is missing")
    return path


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > _MAX_JSON_BYTES:
        raise BundleError(f"{path}: {size} bytes is too large for a bundle JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None


def _read_metadata(path: Path) -> dict[str, str]:
    """Return the safetensors metadata; a pickle, a truncated or a foreign file is refused."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: not a readable safetensors file ({exc})") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{path}: tensors cannot be read ({exc})") from None


def _meta_int(metadata: dict[str, str], key: str, path: Path) -> int:
    try:
        value = int(metadata[key])
    except KeyError:
        raise BundleError(f"{path}: metadata key {key!r} is missing") from None
    except ValueError:
        raise BundleError(f"{path}: metadata {key}={metadata[key]!r} is not an integer") from None
    if value < 1:
        raise BundleError(f"{path}: metadata {key}={value} must be >= 1")
    return value


def verify_hashes(directory: Path, metadata: dict[str, str], weights_path: Path) -> None:
    """Check every hashed file that is present against the SHA-256 recorded in the weights.

    Raises:
        BundleError: a required hash is missing or a file's content differs (names the file).
    """
    for name, key in HASHED_FILES.items():
        path = directory / name
        expected = metadata.get(key)
        if name == ONNX_FILE and (expected is None or not path.is_file()):
            continue  # the torch model does not need the ONNX file
        if expected is None:
            raise BundleError(f"{weights_path}: metadata key {key!r} (hash of {name}) is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{path}: content differs from the bundle as exported (sha256 {actual[:12]}…, "
                f"expected {expected[:12]}…); the file was edited or damaged"
            )


def _check_weights(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Refuse damaged or non-finite tensors; warn about a version-1 bundle without a hash.

    Raises:
        BundleError: the tensors differ from their recorded SHA-256, a bundle of format 2 or
            later has no hash (it was stripped), or a tensor holds NaN or infinity.
    """
    if WEIGHTS_HASH_KEY not in metadata:
        version = metadata.get("format_version", "1")
        if version != "1":
            raise BundleError(
                f"{path}: format_version {version} but metadata key {WEIGHTS_HASH_KEY!r} "
                "(hash of the tensors) is missing; the file was edited"
            )
        warnings.warn(
            f"{path}: exported before fsnas recorded a hash of the weights (format 1), so "
            "damaged tensors cannot be detected; re-export the bundle to add one",
            FsnasWarning,
            stacklevel=3,
        )
    problem = weights_problem(state, metadata)
    if problem is not None:
        raise BundleError(f"{path}: {problem}")


def _parse_labels(path: Path, data: Any) -> tuple[list[str], Task]:
    if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
        raise BundleError(f"{path}: expected an object with a 'labels' list")
    labels = data["labels"]
    if not labels or not all(isinstance(label, str) for label in labels):
        raise BundleError(f"{path}: 'labels' must be a non-empty list of strings")
    task = data.get("task")
    if task not in TASKS:
        raise BundleError(f"{path}: 'task' must be one of {list(TASKS)}, got {task!r}")
    return list(labels), task


def _parse_features(path: Path, data: Any) -> FeatureConfig:
    if not isinstance(data, dict) or not isinstance(data.get("feature_config"), dict):
        raise BundleError(f"{path}: expected an object with a 'feature_config' object")
    try:
        return FeatureConfig.from_dict(dict(data["feature_config"]))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: feature_config is not a valid FeatureConfig ({exc})") from None


def load_exported(directory: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """Return the bundle in ``directory`` as an eval-mode model with features and labels.

    Reads JSON and safetensors only (no pickle, no code). Checks, in order: every required file
    exists; ``model.safetensors`` is a safetensors file of this format; the recorded hashes of
    ``spec.json``, ``features.json``, ``labels.json`` (and ``model.onnx`` when present) match;
    the spec parses and builds for the recorded input; the tensors match their recorded hash
    and are finite; the weights fit the model exactly.

    Raises:
        BundleError: any check fails; the message names the file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BundleError(f"bundle {root}: no such directory")
    weights_path = _require(root, WEIGHTS_FILE)
    spec_path = _require(root, SPEC_FILE)
    features_path = _require(root, FEATURES_FILE)
    labels_path = _require(root, LABELS_FILE)

    metadata = _read_metadata(weights_path)
    if metadata.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{weights_path}: metadata format={metadata.get('format')!r}, expected "
            f"{BUNDLE_FORMAT!r} (not an fsnas bundle)"
        )
    verify_hashes(root, metadata, weights_path)

    try:
        spec = ArchSpec.from_dict(_read_json(spec_path))
    except FsnasError as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{spec_path}: {exc}") from None
    feature_config = _parse_features(features_path, _read_json(features_path))
    labels, task = _parse_labels(labels_path, _read_json(labels_path))

    n_mels = _meta_int(metadata, "n_mels", weights_path)
    n_frames = _meta_int(metadata, "n_frames", weights_path)
    n_classes = _meta_int(metadata, "n_classes", weights_path)
    if n_classes != len(labels):
        raise BundleError(
            f"{labels_path}: {len(labels)} labels but the weights have n_classes={n_classes}"
        )
    if metadata.get("task") != task:
        raise BundleError(
            f"{labels_path}: task {task!r} but the weights say {metadata.get('task')!r}"
        )
    if n_mels != feature_config.n_mels or n_frames != feature_config.n_frames:
        raise BundleError(
            f"{features_path}: features give {feature_config.n_mels} x {feature_config.n_frames} "
            f"(mels x frames) but the weights were trained on {n_mels} x {n_frames}"
        )

    try:
        model = build_model(spec, n_mels, n_frames, n_classes)
    except FsnasError as exc:
        raise BundleError(
            f"{spec_path}: does not build for {n_mels} x {n_frames} ({exc})"
        ) from None
    state = _read_tensors(weights_path)
    _check_weights(weights_path, state, metadata)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise BundleError(f"{weights_path}: weights do not fit {SPEC_FILE} ({detail})") from None
    model.to(device).eval()
    return ExportedModel(
        model=model,
        features=WaveformFeatures(feature_config),
        labels=labels,
        task=task,
        spec=spec,
        feature_config=feature_config,
        n_mels=n_mels,
        n_frames=n_frames,
        directory=root,
        metadata=metadata,
    )
