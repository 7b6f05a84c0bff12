"""Weights that rot: a flipped byte in a bundle's or a trial's weights, NaN weights and scores,
bundles older than the weights checksum, and two storages sharing one weights folder.

Damaged or non-finite weights are refused with a message naming the file (exit 2 on the command
line), ``--json`` output is strict JSON, an old bundle loads with a warning, and a study's kept
weights are keyed by storage and study so another storage cannot overwrite them.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dashboards.records import CHECKPOINT_KEY, WEIGHTS_NOT_KEPT_KEY, TrialRecord
from nas.bundle import WEIGHTS_FILE, BundleError, load_exported
from nas.cli import main
from nas.config import from_dict
from nas.export import ExportResult, checkpoint_or_reason, export_bundle
from nas.study import storage_key, tidy_weights, weights_filename, weights_folder
from search_spaces.build import build_model
from search_spaces.errors import FsnasWarning
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Head
from tests.reliability.test_bad_input import _one_line_error
from trainers.checkpoint import (
    WEIGHTS_HASH_KEY,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    tensors_sha256,
)
from trainers.featureset import FeatureConfig

CONFIG = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.25, n_fft=128, hop_length=64, n_mels=16)
SPEC = ArchSpec(
    name="rot",
    frontend=(Branch(height="0.5M", width=3, channels=4, freq_reduce="none"),),
    body=(ConvBlock(height=3, width=3, channels=4),),
    head=Head(freq_reduce="max", time_pooling="max"),
)
LABELS = ["a", "b"]


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


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    t = np.arange(2000) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    return path


def _flip_a_weight_byte(path: Path) -> None:
    """Flip one bit in the middle of the tensor data (after the safetensors header)."""
    data = bytearray(path.read_bytes())
    (header_bytes,) = struct.unpack("<Q", data[:8])
    index = 8 + header_bytes + (len(data) - 8 - header_bytes) // 2
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite(path: Path, change: Any = None, **metadata: str | None) -> None:
    """Re-write a safetensors file with its tensors changed by ``change`` and metadata updated
    (a value None removes the key): an edit by someone who knows the format."""
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    if change is not None:
        change(tensors)
    for key, value in metadata.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(tensors, str(path), metadata=meta)


def _first_float(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in sorted(tensors.items()) if v.is_floating_point() and v.numel() > 1)


# -- Bad 3: damaged weights -----------------------------------------------------------------------
def test_one_flipped_weight_byte_makes_predict_exit_2_naming_the_file(
    bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # it used to exit 0 with different scores: only the JSON and ONNX files were checked
    assert main(["predict", str(bundle), str(clip)]) == 0
    capsys.readouterr()
    _flip_a_weight_byte(bundle / WEIGHTS_FILE)
    assert main(["predict", str(bundle), str(clip), "--json"]) == 2
    line = _one_line_error(capsys, "predict")
    assert f"{bundle / WEIGHTS_FILE}: the tensors differ from those written (sha256 " in line
    assert "the file is damaged or was edited" in line


def test_nan_weights_are_refused_even_with_a_forged_hash(bundle: Path) -> None:
    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors[_first_float(tensors)].view(-1)[0] = float("nan")
        forged[WEIGHTS_HASH_KEY] = tensors_sha256(tensors)

    forged: dict[str, str] = {}
    path = bundle / WEIGHTS_FILE
    _rewrite(path, poison)
    _rewrite(path, **forged)
    with pytest.raises(BundleError, match=r"holds 1 NaN or infinite value\(s\) of"):
        load_exported(bundle)


def test_non_finite_scores_are_refused_and_json_stays_valid(
    bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # finite but huge weights overflow to inf, and softmax(inf) is NaN: `nan` scores were
    # printed and --json wrote a bare NaN
    def huge(tensors: dict[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            if name.endswith("weight") and tensor.ndim == 4:
                tensor.fill_(3e38)
        forged[WEIGHTS_HASH_KEY] = tensors_sha256(tensors)

    forged: dict[str, str] = {}
    path = bundle / WEIGHTS_FILE
    _rewrite(path, huge)
    _rewrite(path, **forged)
    assert main(["predict", str(bundle), str(clip), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-printed, no NaN
    assert f"{clip}: bundle {bundle}: the model gives NaN or infinite scores" in captured.err


def test_export_json_is_strict_even_when_a_metric_is_undefined(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import nas.export

    def fake_export(*args: object, **kwargs: object) -> ExportResult:
        # ROC-AUC of a class absent from the test split is NaN
        return ExportResult(tmp_path, float("nan"), {}, metrics={"test_roc_auc": float("nan")})

    monkeypatch.setattr(nas.export, "export_from_study", fake_export)
    argv = ["export", "--study", "s", "--select", "best", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in the JSON output")

    report = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert report["metrics"] == {"test_roc_auc": None} and report["onnx_max_abs_diff"] is None


def test_a_bundle_from_before_the_checksum_loads_with_a_warning(
    bundle: Path, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bundle / WEIGHTS_FILE
    _rewrite(path, **{WEIGHTS_HASH_KEY: None, "format_version": "1"})
    with pytest.warns(FsnasWarning, match=r"exported before fsnas recorded a hash of the weights"):
        load_exported(bundle)
    assert main(["predict", str(bundle), str(clip)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"fsnas predict: warning: {path}: exported before fsnas recorded")
    # a format-2 bundle whose hash was removed is an edit, not an old bundle
    _rewrite(path, format_version="2")
    with pytest.raises(BundleError, match=rf"metadata key '{WEIGHTS_HASH_KEY}' .* is missing"):
        load_exported(bundle)


def test_a_pristine_bundle_loads_without_a_warning(pristine: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_exported(pristine)


def test_a_damaged_trial_checkpoint_is_refused_and_export_says_why_it_retrains(
    tmp_path: Path,
) -> None:
    state = build_model(SPEC, CONFIG.n_mels, CONFIG.n_frames, 2).state_dict()
    path = save_checkpoint(tmp_path / "trial-00003.safetensors", state, {"spec": SPEC.to_json()})
    record = TrialRecord(
        number=3, status="complete", spec=SPEC.to_dict(), costs={CHECKPOINT_KEY: str(path)}
    )
    assert checkpoint_or_reason(record) == (path, "")
    _flip_a_weight_byte(path)
    with pytest.raises(CheckpointError, match=r"trial-00003\.safetensors: the tensors differ"):
        load_checkpoint(path)
    found, why = checkpoint_or_reason(record)
    assert found is None
    assert why.startswith(f"its checkpoint is unusable: checkpoint {path}: the tensors differ")
    record.costs = {WEIGHTS_NOT_KEPT_KEY: "cannot write /full/x.safetensors (No space left)"}
    assert checkpoint_or_reason(record) == (
        None,
        "the search could not keep its weights (cannot write /full/x.safetensors (No space left))",
    )


# -- Bad 6: two storages, one weights folder ------------------------------------------------------
def test_the_weights_folder_is_keyed_by_storage_and_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    one = from_dict({"study": "s", "storage": "sqlite:///one.db", "weights_dir": "w"})
    two = from_dict({"study": "s", "storage": "sqlite:///two.db", "weights_dir": "w"})
    same = from_dict({"study": "s", "storage": f"sqlite:///{tmp_path}/one.db", "weights_dir": "w"})
    assert weights_folder(one) != weights_folder(two)  # they shared w/s before
    assert weights_folder(one) == weights_folder(same)  # one storage, however it is written
    assert weights_folder(one) == tmp_path / "w" / "s" / storage_key("sqlite:///one.db")
    assert storage_key("sqlite:///one.db").startswith("one-")
    secret = storage_key("postgresql://fsnas:hunter2@db/optuna")
    assert secret.startswith("postgresql-") and "hunter2" not in secret

    # the second storage's trial 1 and its tidying leave the first's trial 1 alone
    folder_one, folder_two = weights_folder(one), weights_folder(two)
    assert folder_one is not None and folder_two is not None
    state = build_model(SPEC, CONFIG.n_mels, CONFIG.n_frames, 2).state_dict()
    first = save_checkpoint(folder_one / weights_filename(1), state, {"spec": SPEC.to_json()})
    other = SPEC.replace(body=(ConvBlock(height=3, width=3, channels=8),))
    other_state = build_model(other, CONFIG.n_mels, CONFIG.n_frames, 2).state_dict()
    second = save_checkpoint(
        folder_two / weights_filename(1), other_state, {"spec": other.to_json()}
    )
    assert first != second
    tidy_weights(second.parent, [], [], "front")  # the second study kept nothing
    record = TrialRecord(
        number=1, status="complete", spec=SPEC.to_dict(), costs={CHECKPOINT_KEY: str(first)}
    )
    assert checkpoint_or_reason(record) == (first, "")


def test_weights_kept_in_the_old_layout_are_still_used(tmp_path: Path) -> None:
    config = from_dict({"study": "s", "storage": "sqlite:///x.db", "weights_dir": str(tmp_path)})
    old = tmp_path / "s" / weights_filename(2)  # <weights_dir>/<study>/trial-NNNNN.safetensors
    state = build_model(SPEC, CONFIG.n_mels, CONFIG.n_frames, 2).state_dict()
    save_checkpoint(old, state, {"spec": SPEC.to_json()})
    record = TrialRecord(
        number=2, status="complete", spec=SPEC.to_dict(), costs={CHECKPOINT_KEY: str(old)}
    )
    assert checkpoint_or_reason(record) == (old, "")
    # a new search of that study writes (and tidies) its own folder, one level down
    folder = weights_folder(config)
    assert folder is not None and folder.parent == old.parent
    tidy_weights(folder, [], [], "front")
    assert old.is_file()
    # an old checkpoint without a weights hash still loads (it is checked for NaN only)
    _rewrite(old, **{WEIGHTS_HASH_KEY: None})
    loaded, metadata = load_checkpoint(old)
    assert WEIGHTS_HASH_KEY not in metadata and set(loaded) == set(state)
