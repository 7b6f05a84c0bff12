"""``fsnas predict DIR AUDIO...`` on audio of another sample rate and channel count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nas.bundle import load_exported
from nas.cli import main
from tests.nas.test_export import TONE_LABELS, tone, tone_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory).directory


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One stereo 44.1 kHz WAV per label (training was mono 8 kHz), plus a mono 22.05 kHz FLAC."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(11)
    files: dict[str, Path] = {}
    for label in TONE_LABELS:
        mono = tone(label, 44100, 1.3, rng)  # longer than the 0.5 s clips: centre-cropped
        path = folder / f"{label}_stereo_44k.wav"
        sf.write(path, np.stack([mono, 0.3 * mono], axis=1), 44100, subtype="PCM_16")
        files[label] = path
    path = folder / "high_mono_22k.flac"
    sf.write(path, tone("high", 22050, 0.3, rng), 22050)  # shorter: zero-padded
    files["high_flac"] = path
    return files


def test_predict_json_on_stereo_44k_files(
    bundle_dir: Path, audio_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert sf.info(str(audio_files["low"])).channels == 2
    assert sf.info(str(audio_files["low"])).samplerate == 44100
    paths = [str(audio_files[label]) for label in TONE_LABELS] + [str(audio_files["high_flac"])]
    code = main(["predict", str(bundle_dir), *paths, "--top-k", "2", "--json"])
    assert code == 0
    output = json.loads(capsys.readouterr().out)
    predictions = output["predictions"]
    assert [p["path"] for p in predictions] == paths
    assert [p["top"][0]["label"] for p in predictions] == [*TONE_LABELS, "high"]
    bundle = load_exported(bundle_dir)
    for item in predictions:
        assert len(item["top"]) == 2
        scores = [entry["score"] for entry in item["top"]]
        assert scores == sorted(scores, reverse=True)
        assert 0.0 <= sum(scores) <= 1.0 + 1e-6
        # the CLI reports exactly what the loader computes for the file
        expected = bundle.top_k(bundle.predict_file(item["path"]), 2)
        assert [(e["label"], e["score"]) for e in item["top"]] == expected


def test_predict_text_output(
    bundle_dir: Path, audio_files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["predict", str(bundle_dir), str(audio_files["mid"]), "--top-k", "3"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(audio_files["mid"])
    assert len(lines) == 4
    assert lines[1].split()[0] == "mid"
    assert {line.split()[0] for line in lines[1:]} == set(TONE_LABELS)


def test_predict_reports_bad_input_in_one_line(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    assert main(["predict", str(bundle_dir), str(not_audio)]) == 2
    err = capsys.readouterr().err
    assert "notes.wav" in err
    assert "Traceback" not in err

    assert main(["predict", str(tmp_path / "no_bundle"), str(not_audio)]) == 2
    assert "no_bundle" in capsys.readouterr().err

    assert main(["predict", str(bundle_dir), str(not_audio), "--top-k", "0"]) == 2
    assert "--top-k" in capsys.readouterr().err
