"""Export → load → predict round trip on a tiny model trained with ``fit`` on tone clips.

The data: three classes of noisy sine tones (low / mid / high pitch) at 8 kHz, featurised by the
one feature transform of fsnas, so a model trained on them must also classify audio files of
another sample rate and channel count that ``fsnas predict`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from nas.bundle import (
    BUNDLE_FILES,
    CARD_FILE,
    FEATURES_FILE,
    HASHED_FILES,
    LABELS_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    load_exported,
    sha256_file,
)
from nas.export import ExportError, Provenance, export_bundle
from search_spaces.build import build_model
from search_spaces.spec import ArchSpec, Branch, Head
from trainers.checkpoint import load_checkpoint
from trainers.featureset import FeatureConfig, FeatureSet, Split
from trainers.features import waveform_to_features
from trainers.metrics import task_metrics
from trainers.result import TrainConfig, TrialResult
from trainers.train import fit

TONE_LABELS = ["low", "mid", "high"]
TONE_HZ = {"low": 220.0, "mid": 700.0, "high": 2200.0}
TONE_CONFIG = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.5, n_fft=256, hop_length=80, n_mels=24)
TONE_SPEC = ArchSpec(
    name="tiny_vertical",
    frontend=(Branch(height="0.5M", width=3, channels=6, freq_reduce="none"),),
    head=Head(freq_reduce="max", time_pooling="max"),
)


def tone(label: str, sample_rate_hz: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Return a noisy sine at the label's pitch (±10 %), float32 (time,)."""
    t = np.arange(int(sample_rate_hz * seconds)) / sample_rate_hz
    hz = TONE_HZ[label] * rng.uniform(0.9, 1.1)
    wave = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
    return (wave + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _split(per_class: int, rng: np.random.Generator) -> Split:
    xs, ys = [], []
    for index, label in enumerate(TONE_LABELS):
        for _ in range(per_class):
            wave = torch.from_numpy(tone(label, TONE_CONFIG.sample_rate_hz, 0.5, rng))
            features = waveform_to_features(wave, TONE_CONFIG.sample_rate_hz, TONE_CONFIG)
            xs.append(features.reshape(1, TONE_CONFIG.n_mels, -1).numpy())
            ys.append(index)
    return Split(x=np.stack(xs).astype(np.float32), y=np.asarray(ys, dtype=np.int64))


def tone_feature_set(seed: int = 0) -> FeatureSet:
    """Return a small single-label FeatureSet of tones (train 8, valid 3, test 5 per class)."""
    rng = np.random.default_rng(seed)
    return FeatureSet(
        train=_split(8, rng),
        valid=_split(3, rng),
        test=_split(5, rng),
        labels=list(TONE_LABELS),
        task="single_label",
        feature_config=TONE_CONFIG,
        source="tones (test fixture)",
    )


def train_tone_model(data: FeatureSet, folder: Path, epochs: int = 4) -> TrialResult:
    """Return the TrialResult of ``fit`` on the tones with a best-weights checkpoint in ``folder``."""
    config = TrainConfig(
        epochs=epochs, batch_size=8, lr=3e-2, seed=0, checkpoint_dir=str(folder), num_threads=1
    )
    result = fit(TONE_SPEC, data, config, device="cpu")
    assert result.status == "complete", result.reason
    assert result.checkpoint is not None
    return result


def export_tone_bundle(data: FeatureSet, result: TrialResult, out_dir: Path) -> Path:
    """Export the trained tone model exactly as ``fsnas export`` does; return the directory."""
    state, _ = load_checkpoint(str(result.checkpoint))
    export_bundle(
        TONE_SPEC,
        state,
        feature_config=data.feature_config,
        labels=data.labels,
        task=data.task,
        out_dir=out_dir,
        n_frames=data.n_frames,
        metrics=result.metrics,
        costs={
            "gflops": result.gflops,
            "train_vram_mb": result.train_vram_mb,
            "vram_source": result.vram_source,
            "latency_ms": result.latency_ms,
            "device": result.device,
        },
        provenance=Provenance(
            study="unit-study",
            trial_number=7,
            seed=0,
            selection_rule="trial=7",
            weights_source=f"checkpoint {result.checkpoint}",
            data_source=data.source,
        ),
        examples=data.test.x,
    )
    return out_dir


@pytest.fixture(scope="module")
def tones() -> FeatureSet:
    return tone_feature_set()


@pytest.fixture(scope="module")
def trained(tones: FeatureSet, tmp_path_factory: pytest.TempPathFactory) -> TrialResult:
    return train_tone_model(tones, tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def bundle_dir(
    tones: FeatureSet, trained: TrialResult, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return export_tone_bundle(tones, trained, tmp_path_factory.mktemp("export") / "bundle")


def test_round_trip_reproduces_the_trial_test_metric(
    tones: FeatureSet, trained: TrialResult, bundle_dir: Path
) -> None:
    bundle = load_exported(bundle_dir)
    assert not bundle.model.training
    logits = bundle.logits(torch.from_numpy(tones.test.x)).numpy()
    metrics = task_metrics("single_label", tones.test.y, logits)
    assert metrics["accuracy"] == trained.metrics["test_accuracy"]
    assert metrics["macro_f1"] == trained.metrics["test_macro_f1"]

    # the weights are the checkpoint's, bit for bit; a fresh model would not give these logits
    state, _ = load_checkpoint(str(trained.checkpoint))
    reference = build_model(TONE_SPEC, tones.n_mels, tones.n_frames, 3)
    reference.load_state_dict(state)
    reference.eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(tones.test.x)).numpy()
        fresh = build_model(TONE_SPEC, tones.n_mels, tones.n_frames, 3).eval()
        untrained = fresh(torch.from_numpy(tones.test.x)).numpy()
    np.testing.assert_array_equal(logits, expected)
    assert not np.allclose(logits, untrained)


def test_onnx_matches_torch_with_another_batch_size(tones: FeatureSet, bundle_dir: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(bundle_dir / ONNX_FILE), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["logmel"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    x = tones.test.x[:7]
    (onnx_logits,) = session.run(["logits"], {"logmel": x})
    torch_logits = load_exported(bundle_dir).logits(torch.from_numpy(x)).numpy()
    assert onnx_logits.shape == (7, 3)
    assert float(np.max(np.abs(onnx_logits - torch_logits))) < 1e-4


def test_bundle_files_and_recorded_hashes(tones: FeatureSet, bundle_dir: Path) -> None:
    assert sorted(p.name for p in bundle_dir.iterdir()) == sorted(BUNDLE_FILES)
    with safe_open(str(bundle_dir / WEIGHTS_FILE), framework="pt") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())  # noqa: SIM118
    for name, key in HASHED_FILES.items():
        assert metadata[key] == sha256_file(bundle_dir / name)
    assert (metadata["n_mels"], metadata["n_frames"], metadata["n_classes"]) == ("24", "51", "3")
    assert metadata["task"] == "single_label"
    # BatchNorm running statistics travel with the weights
    assert any(k.endswith("running_mean") for k in keys)
    features = json.loads((bundle_dir / FEATURES_FILE).read_text())
    assert FeatureConfig.from_dict(features["feature_config"]) == TONE_CONFIG
    assert features["input"]["n_frames"] == tones.n_frames
    labels = json.loads((bundle_dir / LABELS_FILE).read_text())
    assert labels == {"labels": TONE_LABELS, "task": "single_label"}


def test_model_card_shows_the_real_numbers(trained: TrialResult, bundle_dir: Path) -> None:
    card = (bundle_dir / CARD_FILE).read_text()
    params = sum(p.numel() for p in load_exported(bundle_dir).model.parameters())
    assert f"| test_accuracy | {trained.metrics['test_accuracy']:.4f} |" in card
    assert f"| test_macro_f1 | {trained.metrics['test_macro_f1']:.4f} |" in card
    assert f"| params | {params:,} |" in card
    assert f"| gflops | {trained.gflops:.4f} |" in card
    assert f"| train_vram_mb | {trained.train_vram_mb:.4f} |" in card
    assert "| vram_source | estimated |" in card
    assert "| device | cpu |" in card
    for line in ("study: unit-study", "trial: 7", "seed: 0", "selection rule: trial=7"):
        assert f"- {line}" in card
    assert "fsnas version: 0.1.0" in card
    assert sha256_file(bundle_dir / WEIGHTS_FILE) in card


def test_predict_on_a_stereo_44k_waveform(bundle_dir: Path) -> None:
    bundle = load_exported(bundle_dir)
    rng = np.random.default_rng(5)
    for label in TONE_LABELS:
        mono = tone(label, 44100, 0.7, rng)
        stereo = np.stack([mono, 0.5 * mono])
        probabilities = bundle.predict(stereo, 44100)
        assert probabilities.shape == (3,)
        assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
        assert bundle.top_k(probabilities, 1)[0][0] == label


def test_export_refuses_weights_of_another_spec(
    tones: FeatureSet, trained: TrialResult, tmp_path: Path
) -> None:
    state, _ = load_checkpoint(str(trained.checkpoint))
    other = TONE_SPEC.replace(frontend=(Branch(height="0.5M", width=5, channels=6),))
    with pytest.raises(ExportError, match="do not fit"):
        export_bundle(
            other,
            state,
            feature_config=tones.feature_config,
            labels=tones.labels,
            task="single_label",
            out_dir=tmp_path / "bad",
        )
    assert not (tmp_path / "bad").exists()
