"""Data that lies: repeated manifest rows, a file under two labels or in two splits, one class,
a class of one clip, a class the split leaves out of valid or test, ``folder:`` at a file, clips
padded to an hour.

Each is refused before any feature is written (exit 2 on the command line, one line naming the
file, line or class), except where the issue asks for a warning; nothing leaks from train into
the evaluation.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from nas.cli import main
from nas.config import ConfigError, from_dict
from search_spaces.errors import FsnasWarning
from tests.reliability.test_bad_input import _one_line_error
from tests.trainers.audio_fixtures import write_tone
from trainers.errors import DataError
from trainers.features import load_features
from trainers.featureset import FeatureConfig
from trainers.sources import open_source

SMALL = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.1, n_fft=128, hop_length=64, n_mels=8)


def _clips(root: Path, n: int, classes: tuple[str, ...] = ("a", "b", "c")) -> list[str]:
    """Write ``n`` tones under ``root/clips`` and return their (relative) names, class by class."""
    names = []
    for i in range(n):
        name = f"clips/{classes[i % len(classes)]}{i}.wav"
        write_tone(root / name, 300 + 20 * i)
        names.append(name)
    return names


def _manifest(root: Path, rows: list[str], header: str = "path,label") -> Path:
    path = root / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _label(name: str) -> str:
    return Path(name).stem.rstrip("0123456789")


# -- Bad 1: repeated files ----------------------------------------------------------------------
def test_a_manifest_listing_every_file_twice_is_refused_naming_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the case: 27 files, each listed twice, was accepted as 54 clips and 11 files
    # landed in both train and test
    names = _clips(tmp_path, 27)
    rows = [f"{name},{_label(name)}" for name in names]
    path = _manifest(tmp_path, rows + rows)
    argv = ["train", "--preset", "pons_cbmi_time", "--data", f"csv:{path}", "--epochs", "1"]
    argv += ["--tracking-uri", "none", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    line = _one_line_error(capsys, "train")
    assert f"{path}: 27 file(s) listed more than once (27 repeated row(s))" in line
    assert "'clips/a0.wav' (lines 2, 29)" in line and "and 17 more" in line
    assert "leaks training data into the evaluation" in line and "'dedupe': True" in line
    assert not (tmp_path / "cache").exists()  # refused before any feature was written


def test_one_file_spelled_two_ways_is_still_one_file(tmp_path: Path) -> None:
    names = _clips(tmp_path, 6)
    rows = [f"{name},{_label(name)}" for name in names] + ["./clips/../clips/a0.wav,a"]
    with pytest.raises(DataError, match=r"1 file\(s\) listed more than once .*lines 2, 8"):
        open_source(f"csv:{_manifest(tmp_path, rows)}")


def test_a_file_under_two_labels_or_in_two_splits_is_refused_even_with_dedupe(
    tmp_path: Path,
) -> None:
    names = _clips(tmp_path, 6)
    rows = [f"{name},{_label(name)},train" for name in names]
    two_labels = _manifest(tmp_path, [*rows, "clips/a0.wav,b,train"], "path,label,split")
    options = {"kind": "csv", "path": str(two_labels), "dedupe": True}
    with pytest.raises(DataError) as info:
        open_source(options)
    message = str(info.value)
    assert "1 file(s) listed with different labels or splits" in message
    assert "'clips/a0.wav' (line 2: a/train, line 8: b/train)" in message
    assert "write 'a;b' in one row" in message

    two_splits = _manifest(tmp_path, [*rows, "clips/b1.wav,b,test"], "path,label,split")
    with pytest.raises(DataError, match=r"'clips/b1.wav' \(line 3: b/train, line 8: b/test\)"):
        open_source({"kind": "csv", "path": str(two_splits), "dedupe": True})


def test_dedupe_drops_exact_repeats_with_a_warning_and_nothing_leaks(tmp_path: Path) -> None:
    names = _clips(tmp_path, 12)
    rows = [f"{name},{_label(name)}" for name in names]
    path = _manifest(tmp_path, rows + rows[:5])
    with pytest.warns(FsnasWarning, match=r"dedupe: dropped 5 repeated row\(s\) of 5 file\(s\)"):
        features = load_features(
            {"kind": "csv", "path": str(path), "dedupe": True},  # type: ignore[arg-type]
            SMALL,
            cache_dir=tmp_path / "cache",
        )
    splits = [set(s.paths) for s in (features.train, features.valid, features.test)]
    assert sum(len(s) for s in splits) == 12
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not splits[1] & splits[2]
    with pytest.raises(DataError, match="dedupe must be true or false"):
        open_source({"kind": "csv", "path": str(path), "dedupe": "maybe"})


# -- Bad 2: one class, a class of one clip ------------------------------------------------------
def test_a_one_class_folder_is_refused_naming_the_class(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # it used to "train" to loss 0, accuracy 1.0, status complete
    for i in range(6):
        write_tone(tmp_path / "data" / "dog" / f"{i}.wav", 300 + 30 * i)
    argv = ["train", "--preset", "pons_cbmi_time", "--data", f"folder:{tmp_path / 'data'}"]
    argv += ["--tracking-uri", "none", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    line = _one_line_error(capsys, "train")
    assert "only one class, 'dog' (6 clips); training needs at least 2" in line
    assert not (tmp_path / "cache").exists()


def test_a_class_with_one_clip_is_refused_naming_it(tmp_path: Path) -> None:
    for i in range(4):
        write_tone(tmp_path / "data" / "dog" / f"{i}.wav", 300 + 30 * i)
    write_tone(tmp_path / "data" / "cat" / "only.wav", 800)
    with pytest.raises(DataError) as info:
        load_features(f"folder:{tmp_path / 'data'}", SMALL, cache_dir=tmp_path / "cache")
    assert "1 class(es) with fewer than 2 clips: 'cat' (1 clip)" in str(info.value)
    assert "one to train on, one to evaluate" in str(info.value)


def test_inspecting_one_class_works_and_says_training_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        write_tone(tmp_path / "data" / "dog" / f"{i}.wav", 300 + 30 * i)
    argv = ["data", "inspect", "--data", f"folder:{tmp_path / 'data'}"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    err = capsys.readouterr().err
    assert "fsnas data: warning: training would refuse this data: " in err
    assert "only one class, 'dog'" in err


# -- a class with no clip in valid or test --------------------------------------------------------
def test_a_class_the_split_leaves_out_of_valid_or_test_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'cat' has 2 clips: one to train on, one to evaluate, so it passed the class check, and
    # the drawn split trained on it while valid or test (or both) held none of it
    for i in range(10):
        write_tone(tmp_path / "data" / "dog" / f"{i}.wav", 300 + 30 * i)
    for i in range(2):
        write_tone(tmp_path / "data" / "cat" / f"{i}.wav", 900 + 30 * i)
    argv = ["train", "--preset", "pons_cbmi_time", "--data", f"folder:{tmp_path / 'data'}"]
    argv += ["--epochs", "1", "--tracking-uri", "none", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    line = _one_line_error(capsys, "train")
    shown = r"1 class\(es\) below 1 clip in a split: 'cat' has 0 in (valid|test)[^;]* \("
    assert re.search(shown + r"train [12], valid [01], test [01]\); ", line), line
    assert "'dog'" not in line
    assert "needs at least 1 clip in each of train, valid, test" in line
    assert "give each of these classes at least 3 clips" in line
    assert not (tmp_path / "cache").exists()  # refused before any feature was written
    # inspecting still works, and says what training would refuse
    argv = ["data", "inspect", "--data", f"folder:{tmp_path / 'data'}"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "training would refuse this data: " in capsys.readouterr().err
    # a third clip is enough: the split then places one in each of train, valid and test
    write_tone(tmp_path / "data" / "cat" / "2.wav", 990)
    features = load_features(f"folder:{tmp_path / 'data'}", SMALL, cache_dir=tmp_path / "cache")
    for split in (features.train, features.valid, features.test):
        assert sum(Path(p).parent.name == "cat" for p in split.paths) >= 1


def test_a_manifest_split_without_a_class_in_test_is_refused_naming_it(tmp_path: Path) -> None:
    names = _clips(tmp_path, 18)
    splits = {
        name: ("test" if i >= 15 and _label(name) != "b" else "train")
        for i, name in enumerate(names)
    }
    splits.update({names[3]: "valid", names[4]: "valid", names[5]: "valid"})
    rows = [f"{name},{_label(name)},{splits[name]}" for name in names]
    path = _manifest(tmp_path, rows, "path,label,split")
    with pytest.raises(DataError) as info:
        load_features(f"csv:{path}", SMALL, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert f"csv:{path}: 1 class(es) below 1 clip in a split: 'b' has 0 in test" in message
    assert "(train 5, valid 1, test 0)" in message
    assert "add clips of these classes to those splits of the layout (manifest column" in message
    assert not (tmp_path / "cache").exists()
    # inspecting (not trainable) reads it as laid out
    inspected = load_features(f"csv:{path}", SMALL, cache_dir=tmp_path / "cache", trainable=False)
    assert len(inspected.test) == 2


def test_a_class_short_of_a_split_after_skipping_bad_files_is_refused(tmp_path: Path) -> None:
    for i in range(6):
        write_tone(tmp_path / "data" / "dog" / f"{i}.wav", 300 + 30 * i)
    for i in range(2):
        write_tone(tmp_path / "data" / "cat" / f"{i}.wav", 900 + 30 * i)
    (tmp_path / "data" / "cat" / "2.wav").write_text("not audio")  # 3 clips until decoded
    with pytest.raises(DataError, match=r"'cat' has 0 in (valid|test).*at least 3 clips"):
        load_features(
            f"folder:{tmp_path / 'data'}", SMALL, cache_dir=tmp_path / "cache", on_bad_audio="skip"
        )


# -- weak: folder: at a file; clip_seconds of an hour -------------------------------------------
def test_a_folder_kind_pointing_at_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tone(tmp_path / "clip.wav")
    argv = ["data", "inspect", "--data", f"folder:{path}"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 2
    line = _one_line_error(capsys, "data")
    assert line.endswith(f"folder:{path}: expected a folder, got a file")
    manifest = _manifest(tmp_path, ["clip.wav,a"])
    with pytest.raises(DataError, match=r"expected a folder, got a file \(for a CSV .*csv:FILE\)"):
        open_source(f"fsdd:{manifest}")


def test_clip_seconds_of_an_hour_is_refused_and_mostly_padding_warns(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.features\.clip_seconds: must be <= 600 s"):
        from_dict({"data": {"features": {"clip_seconds": 3600}}})
    for label in ("a", "b"):
        for i in range(3):
            write_tone(tmp_path / "data" / label / f"{i}.wav", 300 + 100 * i, seconds=0.05)
    hour = FeatureConfig(sample_rate_hz=8000, clip_seconds=3600.0, n_fft=128, hop_length=64)
    with pytest.raises(DataError, match=r"clip_seconds 3600 s > the limit of 600 s"):
        load_features(f"folder:{tmp_path / 'data'}", hour, cache_dir=tmp_path / "cache")
    padded = FeatureConfig(sample_rate_hz=8000, clip_seconds=1.0, n_fft=128, hop_length=64)
    with pytest.warns(FsnasWarning, match=r"median clip lasts 0\.05 s, so the typical input is 95"):
        load_features(f"folder:{tmp_path / 'data'}", padded, cache_dir=tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FsnasWarning)  # clips as long as the input: no warning
        fitting = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.05, n_fft=128, hop_length=64)
        load_features(f"folder:{tmp_path / 'data'}", fitting, cache_dir=tmp_path / "cache")
