"""Damaged or hostile bundles: each case is a BundleError naming the file; nothing is executed.

The bundle here holds an untrained model (safety does not depend on the weights' values), so
these tests need no training.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nas.bundle import (
    FEATURES_FILE,
    HASHED_FILES,
    LABELS_FILE,
    ONNX_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    BundleError,
    load_exported,
    sha256_file,
)
from nas.cli import main
from nas.export import export_bundle
from search_spaces.build import build_model
from search_spaces.errors import FsnasError
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Head
from trainers.checkpoint import WEIGHTS_HASH_KEY, tensors_sha256
from trainers.featureset import FeatureConfig

CONFIG = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.25, n_fft=128, hop_length=64, n_mels=16)
SPEC = ArchSpec(
    name="safety",
    frontend=(Branch(height="0.5M", width=3, channels=4, freq_reduce="none"),),
    body=(ConvBlock(height=3, width=3, channels=4),),
    head=Head(freq_reduce="max", time_pooling="max"),
)
LABELS = ["a", "b"]


class _Payload:
    """Unpickling this would create ``sentinel``: the proof that a loader executed code."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (shutil.copyfile, (os.devnull, str(self.sentinel)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(SPEC, CONFIG.n_mels, CONFIG.n_frames, len(LABELS))
    out = tmp_path_factory.mktemp("pristine") / "bundle"
    export_bundle(
        SPEC,
        model.state_dict(),
        feature_config=CONFIG,
        labels=LABELS,
        task="single_label",
        out_dir=out,
    )
    return out


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture(autouse=True)
def _torch_load_is_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called while loading a bundle")

    monkeypatch.setattr(torch, "load", forbidden)


def _resign(bundle: Path, **metadata_updates: str) -> None:
    """Re-write model.safetensors with the current file hashes (an edit that also forges them)."""
    path = bundle / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    for name, key in HASHED_FILES.items():
        metadata[key] = sha256_file(bundle / name)
    metadata.update(metadata_updates)
    save_file(tensors, str(path), metadata=metadata)


def test_pristine_bundle_loads(pristine: Path) -> None:
    loaded = load_exported(pristine)
    assert loaded.labels == LABELS
    assert loaded.spec == SPEC
    assert loaded.predict(torch.zeros(2, 3000), 16000).shape == (2,)


@pytest.mark.parametrize("name", [SPEC_FILE, WEIGHTS_FILE, FEATURES_FILE, LABELS_FILE])
def test_missing_file(bundle: Path, name: str) -> None:
    (bundle / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        load_exported(bundle)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such directory"):
        load_exported(tmp_path / "nowhere")


@pytest.mark.parametrize("name", [SPEC_FILE, FEATURES_FILE, LABELS_FILE, ONNX_FILE])
def test_edited_file_is_detected_by_its_hash(bundle: Path, name: str) -> None:
    path = bundle / name
    data = path.read_bytes()
    # a plausible edit: one byte changed (JSON stays valid when a space becomes a tab)
    index = data.index(b" ") if b" " in data else len(data) // 2
    path.write_bytes(
        data[:index] + (b"\t" if data[index : index + 1] == b" " else b"\0") + data[index + 1 :]
    )
    with pytest.raises(BundleError, match=rf"{name}: content differs"):
        load_exported(bundle)


def test_edited_spec_with_forged_hash_is_checked_against_the_weights(bundle: Path) -> None:
    wider = SPEC.replace(body=(ConvBlock(height=3, width=3, channels=8),))
    (bundle / SPEC_FILE).write_text(wider.to_json())
    _resign(bundle)
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}: weights do not fit {SPEC_FILE}"):
        load_exported(bundle)


def test_weights_of_another_architecture(bundle: Path) -> None:
    other = SPEC.replace(frontend=(Branch(height="0.5M", width=5, channels=4, freq_reduce="none"),))
    state = build_model(other, CONFIG.n_mels, CONFIG.n_frames, 2).state_dict()
    with safe_open(str(bundle / WEIGHTS_FILE), framework="pt") as handle:
        metadata = dict(handle.metadata())
    metadata[WEIGHTS_HASH_KEY] = tensors_sha256(state)  # the forger fixed the weights' hash too
    save_file({k: v.contiguous() for k, v in state.items()}, str(bundle / WEIGHTS_FILE), metadata)
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}: weights do not fit"):
        load_exported(bundle)


def test_truncated_safetensors(bundle: Path) -> None:
    path = bundle / WEIGHTS_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_exported(bundle)
    path.write_bytes(data[:20])
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_exported(bundle)


def test_pickle_renamed_to_safetensors_is_refused_unexecuted(bundle: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    with (bundle / WEIGHTS_FILE).open("wb") as handle:
        pickle.dump({"state": _Payload(sentinel)}, handle)
    with pytest.raises(BundleError, match=rf"{WEIGHTS_FILE}: not a readable safetensors file"):
        load_exported(bundle)
    assert not sentinel.exists()
    # the payload is real: unpickling it (what a pickle-based loader would do) runs it
    with (bundle / WEIGHTS_FILE).open("rb") as handle:
        pickle.load(handle)
    assert sentinel.exists()


def test_torch_save_file_renamed_to_safetensors_is_refused(bundle: Path, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    torch.save({"payload": _Payload(sentinel)}, bundle / WEIGHTS_FILE)
    with pytest.raises(BundleError, match=WEIGHTS_FILE):
        load_exported(bundle)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"!!python/object/apply:shutil.copyfile": ["/dev/null", "SENTINEL"]},
        {"__reduce__": "shutil.copyfile", "frontend": "__import__('shutil').copyfile"},
        {"name": "__import__('shutil').copyfile('/dev/null', 'SENTINEL')", "body": "eval"},
    ],
)
def test_python_looking_spec_is_data_not_code(
    bundle: Path, tmp_path: Path, payload: dict[str, object]
) -> None:
    sentinel = tmp_path / "pwned"
    text = json.dumps(payload).replace("SENTINEL", str(sentinel))
    (bundle / SPEC_FILE).write_text(text)
    _resign(bundle)  # the forger also fixed the hash: parsing must still refuse it
    with pytest.raises(BundleError, match=SPEC_FILE):
        load_exported(bundle)
    assert not sentinel.exists()


def test_code_in_a_label_is_only_ever_printed(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentinel = tmp_path / "pwned"
    label = f"__import__('shutil').copyfile('/dev/null', '{sentinel}')"
    (bundle / LABELS_FILE).write_text(json.dumps({"labels": [label, "b"], "task": "single_label"}))
    _resign(bundle)
    assert load_exported(bundle).labels[0] == label
    audio = tmp_path / "clip.wav"
    sf.write(audio, np.zeros(4000, dtype=np.float32), 8000)
    assert main(["predict", str(bundle), str(audio), "--json"]) == 0
    labels = {e["label"] for e in json.loads(capsys.readouterr().out)["predictions"][0]["top"]}
    assert label in labels
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            FEATURES_FILE,
            {"feature_config": {"n_mels": 16, "exec": "x"}},
            "not a valid FeatureConfig",
        ),
        (FEATURES_FILE, ["not", "an", "object"], "feature_config"),
        (LABELS_FILE, {"labels": ["a", "b"], "task": "regression"}, "'task' must be one of"),
        (LABELS_FILE, {"labels": ["a", "b", "c"], "task": "single_label"}, "3 labels"),
        (LABELS_FILE, {"labels": [1, 2], "task": "single_label"}, "list of strings"),
        (SPEC_FILE, "{not json", "not valid JSON"),
    ],
)
def test_malformed_json_files(bundle: Path, name: str, content: object, message: str) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (bundle / name).write_text(text)
    _resign(bundle)
    with pytest.raises(BundleError, match=message) as info:
        load_exported(bundle)
    assert name in str(info.value)


def test_foreign_safetensors_file(bundle: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(bundle / WEIGHTS_FILE), metadata={"format": "pt"})
    with pytest.raises(BundleError, match="not an fsnas bundle"):
        load_exported(bundle)


def test_bundle_error_is_an_fsnas_error_and_the_cli_prints_one_line(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert issubclass(BundleError, FsnasError)
    (bundle / SPEC_FILE).write_text("{}")
    audio = tmp_path / "x.wav"
    audio.write_bytes(b"")
    assert main(["predict", str(bundle), str(audio)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert SPEC_FILE in err
