"""Bad input: odd audio files, malformed configs, impossible specs, broken manifests, empty classes.

Each case ends in one clear message (the file, key, line or class and the value) and, on the
command line, exit code 2 without a traceback. The bad-audio cases of the data issue that
``tests/trainers`` already proves are listed in docs/reliability.md; this file adds the rest.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nas.cli import main
from tests.trainers.audio_fixtures import make_bad_audio_folder, write_tone
from trainers.audio import read_audio
from trainers.errors import AudioDecodeError, DataError
from trainers.features import load_features
from trainers.featureset import FeatureConfig
from trainers.sources import open_source

SMALL = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.1, n_fft=128, hop_length=64, n_mels=8)


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """Return the single stderr line of a failed command after checking its form."""
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fsnas {command}: error: "), lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


# -- audio ------------------------------------------------------------------------------------
def test_non_finite_samples_and_zero_frames_are_bad_audio(tmp_path: Path) -> None:
    samples = np.zeros(800, dtype=np.float32)
    samples[10] = np.nan
    sf.write(str(tmp_path / "nan.wav"), samples, 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(AudioDecodeError, match=r"nan\.wav: samples contain NaN or infinity"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioDecodeError, match=r"silent\.wav: no audio frames"):
        read_audio(tmp_path / "silent.wav")


def test_bad_audio_on_the_command_line_is_one_line_naming_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = make_bad_audio_folder(tmp_path / "data")
    argv = ["data", "inspect", "--data", f"folder:{tmp_path / 'data'}"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 2
    line = _one_line_error(capsys, "data")
    for name in ("truncated", "empty", "text"):
        assert str(files[name]) in line
    assert "--on-bad-audio skip" in line


# -- study configs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("search: {trials: 3, colour: blue}\n", r"unknown key\(s\) search\.colour"),
        ("train: {epochs: many}\n", r"train\.epochs: expected an integer, got 'many'"),
        ("train: {epochs: -3}\n", r"train\.epochs: must be >= 1, got -3"),
        ("train: {lr: fast}\n", r"train\.lr: expected a number, got 'fast'"),
        ("search: {trials: 2.5}\n", r"search\.trials: expected an integer, got 2\.5"),
        ("data: {features: {n_mels: 0}}\n", r"data\.features\.n_mels: must be >= 1, got 0"),
        ("search: {sampler: [nsga2]}\n", r"search\.sampler: expected one of .*\['nsga2'\]"),
        ("study: 'two words'\n", r"study: must be a non-empty name .*'two words'"),
        ("train: {epochs: 2\n", r"invalid YAML"),
    ],
)
def test_malformed_search_config_is_exit_2_naming_key_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str, expected: str
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    assert main(["search", "--config", str(path)]) == 2
    line = _one_line_error(capsys, "search")
    assert str(path) in line
    assert re.search(expected, line), line


def test_a_bad_flag_value_is_checked_like_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "--epochs", "-1", "--tracking-uri", "none"]) == 2
    line = _one_line_error(capsys, "search")
    assert "train.epochs: must be >= 1, got -1" in line


# -- impossible specs -----------------------------------------------------------------------------
IMPOSSIBLE_SPECS = [
    (
        '{"body": [{"height": 99, "width": 3, "channels": 4, "freq_padding": "valid"}]}',
        r"body\[0\] kernel height 99 > remaining frequency",
    ),
    ('{"body": [{"height": 3, "width": 3, "channels": 0}]}', r"body\[0\] channels .* got 0"),
    (
        '{"frontend": [{"height": "2.5M", "width": 3, "channels": 4}]}',
        r"frontend\[0\] filter height .* > input frequency",
    ),
    ('{"frontend": [], "body": []}', r"neither frontend branches nor body blocks"),
    ('{"body": [{"height": 3, "width": 3}]}', r"channels"),
    ('{"body": "3x3"}', r"spec\.body: expected a list"),
]


@pytest.mark.parametrize(("text", "expected"), IMPOSSIBLE_SPECS)
def test_impossible_spec_for_fsnas_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    shape = ["--n-mels", "40", "--n-frames", "50", "--n-classes", "3"]
    assert main(["cost", str(path), *shape]) == 2
    line = _one_line_error(capsys, "cost")
    assert re.search(expected, line), line


@pytest.mark.parametrize(("text", "expected"), IMPOSSIBLE_SPECS)
def test_impossible_spec_for_fsnas_train(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    argv = ["train", "--spec", str(path), "--data", "synthetic:clips_per_class=3"]
    assert main([*argv, "--cache-dir", str(tmp_path.parent / "train-cache")]) == 2
    line = _one_line_error(capsys, "train")
    assert re.search(expected, line), line
    assert "spec.json" in line


# -- CSV manifests --------------------------------------------------------------------------------
def _manifest(tmp_path: Path, rows: list[str], header: str = "path,label,split") -> str:
    for name in ("a0.wav", "a1.wav", "b0.wav", "b1.wav"):
        write_tone(tmp_path / "clips" / name)
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return f"csv:{path}"


def test_manifest_missing_files_are_named_with_line_numbers(tmp_path: Path) -> None:
    data = _manifest(
        tmp_path,
        [
            "clips/a0.wav,a,train",
            "clips/gone.wav,a,train",
            "clips/b0.wav,b,train",
            "clips/also_gone.flac,b,test",
        ],
    )
    with pytest.raises(DataError) as info:
        open_source(data)
    message = str(info.value)
    assert "manifest.csv: 2 listed file(s) do not exist" in message
    assert "line 3: 'clips/gone.wav'" in message and "line 5: 'clips/also_gone.flac'" in message


def test_manifest_unknown_split_names_are_named_with_line_numbers(tmp_path: Path) -> None:
    data = _manifest(
        tmp_path, ["clips/a0.wav,a,train", "clips/a1.wav,a,holdout", "clips/b0.wav,b,TRAIN2"]
    )
    with pytest.raises(DataError, match=r"line 3: 'holdout', line 4: 'train2'"):
        open_source(data)


def test_a_class_left_empty_by_the_split_is_named(tmp_path: Path) -> None:
    # class b only has test clips in the manifest's own split
    data = _manifest(
        tmp_path,
        [
            "clips/a0.wav,a,train",
            "clips/a1.wav,a,train",
            "clips/b0.wav,b,test",
            "clips/b1.wav,b,test",
        ],
    )
    with pytest.raises(DataError, match=r"without training clips: 'b' \(2 test\)"):
        load_features(data, SMALL, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_class_emptied_by_skipped_files_is_named(tmp_path: Path) -> None:
    for i in range(4):
        write_tone(tmp_path / "data" / "ok" / f"{i}.wav")
    (tmp_path / "data" / "broken").mkdir()
    # three clips: the minimum a class needs before decoding (one each in train, valid, test)
    for name in ("x.wav", "y.wav", "z.wav"):
        (tmp_path / "data" / "broken" / name).write_text("not audio")
    with pytest.raises(DataError, match=r"without training clips: 'broken' \(no clips\)"):
        load_features(
            f"folder:{tmp_path / 'data'}", SMALL, cache_dir=tmp_path / "cache", on_bad_audio="skip"
        )
