"""Export → load → predict round trip on a tiny model trained with ``fit`` on tone clips.

The data: three classes of noisy sine tones (low / mid / high pitch) at 8 kHz, featurised by the
one feature transform of fsnas, so a model trained on them must also classify audio files of
another sample rate and channel count that ``fsnas predict`` reads.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
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
from nas.config import StudyConfig
from nas.export import ExportError, Provenance, export_bundle, format_value
from search_spaces.build import build_model
from search_spaces.spec import ArchSpec, Branch, Head
from trainers.checkpoint import load_checkpoint
from trainers.features import waveform_to_features
from trainers.featureset import FeatureConfig, FeatureSet, Split
from trainers.metrics import task_metrics
from trainers.result import TrainConfig, TrialResult
from trainers.train import fit

TONE_LABELS = ["low", "mid", "high"]
TONE_HZ = {"low": 220.0, "mid": 700.0, "high": 2200.0}
TONE_CONFIG = FeatureConfig(
    sample_rate_hz=8000, clip_seconds=0.5, n_fft=256, hop_length=80, n_mels=24
)
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
    """Return the TrialResult of ``fit`` on the tones, best weights checkpointed in ``folder``."""
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
        split_sizes={"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
    )
    return out_dir


@dataclass(frozen=True)
class ToneBundle:
    data: FeatureSet
    result: TrialResult
    directory: Path


@functools.cache
def _tone_bundle(base: Path) -> ToneBundle:
    data = tone_feature_set()
    result = train_tone_model(data, base / "tone-checkpoint")
    return ToneBundle(data, result, export_tone_bundle(data, result, base / "tone-bundle"))


def tone_bundle(tmp_path_factory: pytest.TempPathFactory) -> ToneBundle:
    """Return the trained and exported tone model, made once per test session (read-only)."""
    return _tone_bundle(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> FeatureSet:
    return tone_bundle(tmp_path_factory).data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrialResult:
    return tone_bundle(tmp_path_factory).result


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory).directory


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

    session = ort.InferenceSession(str(bundle_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
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
        keys = set(handle.keys())
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
    assert f"| gflops | {format_value(trained.gflops)} |" in card
    assert f"| train_vram_mb | {format_value(trained.train_vram_mb)} MiB |" in card
    assert f"| latency_ms | {format_value(trained.latency_ms)} |" in card
    assert "| vram_source | estimated |" in card
    assert "| device | cpu |" in card
    for line in ("study: unit-study", "trial: 7", "seed: 0", "selection rule: trial=7"):
        assert f"- {line}" in card
    assert "fsnas version: 0.1.0" in card
    assert "- clips per split: train 24, valid 9, test 15" in card
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


def test_export_fails_when_onnx_disagrees_and_writes_nothing(
    tones: FeatureSet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import nas.export

    monkeypatch.setattr(nas.export, "ONNX_TOLERANCE", -1.0)  # no difference is small enough
    model = build_model(TONE_SPEC, tones.n_mels, tones.n_frames, 3)
    with pytest.raises(ExportError, match=r"model\.onnx: onnxruntime output differs"):
        export_bundle(
            TONE_SPEC,
            model.state_dict(),
            feature_config=tones.feature_config,
            labels=tones.labels,
            task="single_label",
            out_dir=tmp_path / "bundle",
        )
    assert list(tmp_path.iterdir()) == []


def test_loader_needs_no_search_machinery(bundle_dir: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from nas.bundle import load_exported\n"
        f"bundle = load_exported({str(bundle_dir)!r})\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'optuna', 'mlflow'})\n"
        "print(heavy, bundle.labels)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == f"[] {TONE_LABELS}"


# -- fsnas export --study: a tiny study written the way the Ray backend writes one ---------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, FeatureSet]:
    """Two CPU trials of the tone data stored in a SQLite Optuna study, as ``fsnas search`` does.

    Each trial runs through the search's own trial function (``nas.trial.run_trial``); only
    Ray is left out: its backend's sole storage work is these user attributes and ``tell``.
    """
    import optuna

    from nas.config import StudyConfig
    from nas.study import RECORD_ATTR
    from nas.study_storage import open_storage
    from nas.trial import TrialSettings, record_from_result, run_trial

    folder = tmp_path_factory.mktemp("study")
    data = tone_bundle(tmp_path_factory).data
    config = StudyConfig(
        study="tiny",
        storage=f"sqlite:///{folder}/studies.db",
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        train=TrainConfig(epochs=4, batch_size=8, lr=3e-2, seed=3, num_threads=1),
    )
    objectives = config.objectives(data.task)
    storage = open_storage(config.storage)
    study = optuna.create_study(
        study_name=config.study, storage=storage, directions=[o.direction for o in objectives]
    )
    study.set_user_attr("objectives", [o.name for o in objectives])
    study.set_user_attr("objective_labels", [o.label for o in objectives])
    study.set_user_attr("config", config.to_dict())
    settings = TrialSettings(train_config=config.train, objectives=tuple(objectives))
    narrow = TONE_SPEC.replace(frontend=(Branch(height="0.3M", width=1, channels=2),))
    for spec in (narrow, TONE_SPEC):
        trial = study.ask()
        out = run_trial({"spec": spec.to_dict()}, data, settings, device="cpu")
        record = record_from_result(out, trial.number)
        assert record is not None and record.status == "complete", record
        trial.set_user_attr(RECORD_ATTR, record.to_dict())
        study.tell(trial, [record.objectives[o.name] for o in objectives])
    return config, data


def test_fsnas_export_study_retrains_the_trial_exactly(
    tiny_study: tuple[StudyConfig, FeatureSet],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import nas.search
    from nas.cli import main
    from nas.study import load_records
    from nas.study_storage import open_storage

    config, data = tiny_study
    monkeypatch.setattr(nas.search, "load_study_features", lambda cfg: data)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    out = tmp_path / "bundle"
    argv = ["export", "--study", "tiny", "--select", "trial=0", "--out", str(out)]
    argv += ["--storage", config.storage, "--tracking-uri", str(config.tracking_uri), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)

    import optuna

    record = load_records(
        optuna.load_study(study_name="tiny", storage=open_storage(config.storage))
    )[0]
    bundle = load_exported(out)
    logits = bundle.logits(torch.from_numpy(data.test.x)).numpy()
    # the search kept no weights: fsnas export retrained with the trial's config and seed on the
    # CPU, which must give the trial's own test metrics exactly (an imperfect 0.73 here, so other
    # weights would show)
    assert 0.5 < record.metrics["test_accuracy"] < 1.0
    metrics = task_metrics("single_label", data.test.y, logits)
    assert metrics["accuracy"] == record.metrics["test_accuracy"]
    assert metrics["macro_f1"] == record.metrics["test_macro_f1"]
    assert report["metrics"]["test_accuracy"] == record.metrics["test_accuracy"]
    assert report["onnx_max_abs_diff"] < 1e-4

    card = (out / CARD_FILE).read_text()
    assert "- study: tiny" in card and "- trial: 0" in card and "- seed: 3" in card
    assert "- selection rule: trial=0" in card
    assert "retrained by fsnas export with fit: 4 epoch(s) on train, seed 3" in card
    assert "- note: the test metrics above equal those the search recorded" in card
    assert "- source: `tones (test fixture)`" in card
    assert f"| test_accuracy | {format_value(record.metrics['test_accuracy'])} |" in card
    assert f"| gflops | {format_value(record.costs['gflops'])} |" in card

    assert report["registered"] == "tiny-model v1 (alias champion)"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    version = client.get_model_version_by_alias("tiny-model", "champion")
    run = client.get_run(str(version.run_id))
    assert run.data.tags["fsnas.trial"] == "0"
    assert run.data.metrics["test_accuracy"] == record.metrics["test_accuracy"]
    names = {a.path for a in client.list_artifacts(str(version.run_id), "bundle")}
    assert {f"bundle/{name}" for name in BUNDLE_FILES} == names


def test_fsnas_export_study_errors_are_one_line(
    tiny_study: tuple[StudyConfig, FeatureSet],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nas.cli import main

    config, _ = tiny_study
    base = ["export", "--out", str(tmp_path / "b"), "--storage", config.storage]
    assert main([*base, "--study", "nope", "--select", "knee"]) == 2
    assert "study 'nope' not found" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/none.db"
    assert main([*base[:-1], missing, "--study", "tiny", "--select", "knee"]) == 2
    assert "none.db does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    assert main([*base, "--study", "tiny", "--select", "max-metric-under-vram=0"]) == 2
    assert "max-metric-under-vram=0" in capsys.readouterr().err
    assert main([*base, "--study", "tiny", "--select", "trial=9"]) == 2
    assert "no trial number 9" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_export_study_on_train_plus_valid_with_an_unusable_registry(
    tiny_study: tuple[StudyConfig, FeatureSet], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import nas.search
    from nas.export import export_from_study, select_trial

    config, data = tiny_study
    monkeypatch.setattr(nas.search, "load_study_features", lambda cfg: data)
    (tmp_path / "a_file").write_text("")
    unusable = f"sqlite:///{tmp_path}/a_file/mlflow.db"  # its folder is a file
    with pytest.warns(RuntimeWarning, match="registering 'tiny-model' in MLflow .* failed"):
        outcome = export_from_study(
            "tiny",
            "knee",
            tmp_path / "bundle",
            storage=config.storage,
            retrain_on="train+valid",
            device="cpu",
            tracking_uri=unusable,
            stream=io.StringIO(),
        )
    # a registry that cannot be reached costs the registration, never the bundle
    assert outcome.registered is None
    selection = select_trial("tiny", "knee", config.storage)
    best_epoch = int(selection.record.metrics["best_epoch"])
    card = (outcome.directory / CARD_FILE).read_text()
    # early stopping is off and the epochs default to what validation chose for the trial
    assert f"- trial: {selection.record.number}" in card
    assert f"{best_epoch} epoch(s) on train+valid" in card
    assert "val_* figures and fit's best-epoch choice are not held-out" in card
    bundle = load_exported(outcome.directory)
    logits = bundle.logits(torch.from_numpy(data.test.x)).numpy()
    expected = task_metrics("single_label", data.test.y, logits)["accuracy"]
    assert outcome.metrics["test_accuracy"] == expected


@pytest.mark.slow
def test_search_then_export_then_predict_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (tiny) ``fsnas search`` through Ray, then ``fsnas export`` and ``fsnas predict``."""
    import io

    import soundfile as sf

    from nas.cli import main
    from nas.config import load_config
    from nas.search import run_search
    from nas.study import weights_folder

    monkeypatch.chdir(tmp_path)  # the feature cache and MLflow's ./mlruns go here
    storage = f"sqlite:///{tmp_path}/studies.db"
    config = load_config(
        None,
        {
            "study": "e2e",
            "storage": storage,
            "tracking_uri": "none",
            "data.source": "synthetic:clips_per_class=3",
            "search.trials": 2,
            "train.epochs": 2,
            "train.batch_size": 8,
            "resources.cpus_per_trial": 1,
            "resources.max_concurrent": 1,
            "space.min_branches": 1,
            "space.max_branches": 1,
            "space.branch_channels": [4],
            "space.branch_widths": [1, 3],
            "space.max_depth": 0,
        },
    )
    outcome = run_search(config, stream=io.StringIO())
    best = max(
        (r for r in outcome.records if r.status == "complete"),
        key=lambda r: (r.metrics["val_accuracy"], -r.costs["train_vram_mb"], -r.number),
    )
    out = tmp_path / "bundle"
    argv = ["export", "--study", "e2e", "--select", "best", "--out", str(out)]
    argv += ["--storage", storage, "--tracking-uri", "none", "--json"]  # registry: tested above
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["registered"] is None
    # the search kept the front's trained weights: exported as they were, not retrained
    kept = weights_folder(config) / f"trial-{best.number:05d}.safetensors"
    assert best.costs["checkpoint"] == str(kept) and kept.is_file()
    assert report["metrics"]["test_accuracy"] == best.metrics["test_accuracy"]
    card = (out / CARD_FILE).read_text()
    assert f"- trial: {best.number}" in card
    assert "- selection rule: best" in card
    assert f"the trial's best-validation checkpoint {kept}" in card
    assert "| checkpoint |" not in card  # a path, not a cost
    assert "retrained" not in card
    assert "- note: the test metrics above equal those the search recorded" in card
    state, _ = load_checkpoint(kept)
    exported = load_exported(out)
    for name, tensor in exported.model.state_dict().items():
        assert torch.equal(tensor, state[name]), name

    wav = tmp_path / "clip.wav"
    rng = np.random.default_rng(0)
    sf.write(wav, 0.1 * rng.standard_normal((44100, 2)).astype(np.float32), 44100)
    assert main(["predict", str(out), str(wav), "--json", "--top-k", "2"]) == 0
    top = json.loads(capsys.readouterr().out)["predictions"][0]["top"]
    labels = load_exported(out).labels
    assert len(top) == 2 and all(entry["label"] in labels for entry in top)


def test_multi_label_bundle_predicts_independent_sigmoids(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(TONE_SPEC, TONE_CONFIG.n_mels, TONE_CONFIG.n_frames, 3)
    export_bundle(
        TONE_SPEC,
        model.state_dict(),
        feature_config=TONE_CONFIG,
        labels=["piano", "voice", "drums"],
        task="multi_label",
        out_dir=tmp_path / "bundle",
    )
    bundle = load_exported(tmp_path / "bundle")
    assert bundle.task == "multi_label"
    wave = torch.from_numpy(tone("mid", 16000, 0.5, np.random.default_rng(2)))
    probabilities = bundle.predict(wave, 16000)
    logits = bundle.logits(bundle.features(wave, 16000))[0]
    torch.testing.assert_close(probabilities, torch.sigmoid(logits))
    assert float(probabilities.sum()) != pytest.approx(1.0, abs=1e-3)
