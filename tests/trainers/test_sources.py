"""Every data kind resolves a tiny fixture written in its layout; bad specs name the problem."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.trainers import audio_fixtures as fx
from trainers.errors import DataError
from trainers.sources import KINDS, open_source, parse_data_arg


def _splits(source) -> Counter:  # type: ignore[no-untyped-def]
    return Counter(c.split for c in source.clips)


def test_every_kind_has_a_fixture() -> None:
    assert set(KINDS) - {"synthetic"} == set(fx.LAYOUTS)


def test_folder(tmp_path: Path) -> None:
    source = open_source(fx.make_folder(tmp_path))
    assert (source.labels, len(source.clips), source.task) == (["cat", "dog"], 10, "single_label")
    assert not source.official_split


def test_csv_manifest_with_split_and_multi_label(tmp_path: Path) -> None:
    source = open_source(fx.make_csv(tmp_path))
    assert source.task == "multi_label"
    assert source.clips[0].labels == ("a", "b")
    assert Path(source.clips[0].path) == tmp_path / "clips" / "c0.wav"
    assert _splits(source) == {"train": 3, "test": 2, "valid": 1}


def test_csv_without_split_column_and_bad_split(tmp_path: Path) -> None:
    fx.write_tone(tmp_path / "x.wav")
    (tmp_path / "m.csv").write_text("path,label\nx.wav,a\n")
    assert open_source(f"csv:{tmp_path / 'm.csv'}").clips[0].split is None
    (tmp_path / "bad.csv").write_text("path,label,split\nx.wav,a,holdout\n")
    with pytest.raises(DataError, match=r"bad\.csv.*line 2.*holdout"):
        open_source(f"csv:{tmp_path / 'bad.csv'}")
    (tmp_path / "cols.csv").write_text("file,label\nx.wav,a\n")
    with pytest.raises(DataError, match=r"cols\.csv: missing column\(s\) path"):
        open_source(f"csv:{tmp_path / 'cols.csv'}")


def test_pattern_label_and_group_from_regex(tmp_path: Path) -> None:
    source = open_source(fx.make_pattern(tmp_path), label_regex=fx.PATTERN_REGEX)
    assert source.labels == ["kick", "snare"]
    assert {c.group for c in source.clips} == {"s1", "s2", "s3"}


def test_pattern_needs_a_regex_that_matches_every_file(tmp_path: Path) -> None:
    data = fx.make_pattern(tmp_path)
    with pytest.raises(DataError, match="needs --label-regex"):
        open_source(data)
    with pytest.raises(DataError, match=r"gives no label for 6 file\(s\): raw/snare"):
        open_source(data, label_regex=r"(?P<label>kick)-")
    with pytest.raises(DataError, match="invalid regular expression"):
        open_source(data, label_regex="(")


def test_fsdd_official_split(tmp_path: Path) -> None:
    source = open_source(fx.make_fsdd(tmp_path))
    assert source.labels == ["0", "1", "2"]
    assert _splits(source) == {"test": 30, "train": 18}  # index 0-4 of each speaker is test
    assert source.carve_valid


def test_fsdd_rejects_foreign_file_names(tmp_path: Path) -> None:
    fx.write_tone(tmp_path / "hello.wav")
    with pytest.raises(DataError, match=r"DIGIT_SPEAKER_INDEX.*hello\.wav"):
        open_source(f"fsdd:{tmp_path}")


def test_esc50_folds(tmp_path: Path) -> None:
    source = open_source(fx.make_esc50(tmp_path))
    assert source.labels == ["dog", "rain"]
    assert _splits(source) == {"train": 6, "valid": 2, "test": 2}
    other = open_source({"kind": "esc50", "path": str(tmp_path), "test_fold": 1})
    assert {c.group for c in other.clips if c.split == "test"} == {"fold1"}


def test_urbansound8k_folds(tmp_path: Path) -> None:
    source = open_source(fx.make_urbansound8k(tmp_path))
    assert _splits(source) == {"train": 16, "valid": 2, "test": 2}
    assert all(f"fold{c.group[4:]}" in c.path for c in source.clips if c.group)


def test_gtzan_genres(tmp_path: Path) -> None:
    source = open_source(fx.make_gtzan(tmp_path))
    assert (source.kind, source.labels, len(source.clips)) == ("gtzan", ["blues", "jazz"], 20)


def test_speech_commands_lists_and_background_noise(tmp_path: Path) -> None:
    source = open_source(fx.make_speech_commands(tmp_path))
    assert source.labels == ["no", "yes"]  # _background_noise_ is not a class
    assert _splits(source) == {"train": 2, "valid": 2, "test": 2}
    assert {c.group for c in source.clips if c.split == "test"} == {"cccc3333"}


def test_nsynth_examples_json(tmp_path: Path) -> None:
    source = open_source(fx.make_nsynth(tmp_path))
    assert source.labels == ["guitar", "organ"]
    assert _splits(source) == {"train": 4, "valid": 4, "test": 4}
    assert all(Path(c.path).is_file() for c in source.clips)


def test_magnatagatune_top_tags_multi_label(tmp_path: Path) -> None:
    source = open_source(fx.make_magnatagatune(tmp_path))
    assert source.task == "multi_label"
    assert source.labels == ["guitar", "piano", "rare", "rock"]
    assert _splits(source) == {"train": 12, "valid": 1, "test": 3}
    top2 = open_source({"kind": "magnatagatune", "path": str(tmp_path), "top_k": 2})
    assert top2.labels == ["guitar", "piano"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("mp3s:/x", "unknown kind 'mp3s'"),
        ("folder", "kind 'folder' needs a path"),
        ("folder:/definitely/not/here", "path does not exist"),
        ("synthetic:clips_per_class", "key=value"),
        ("synthetic:colour=blue", "bad option"),
    ],
)
def test_bad_data_arguments(data: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_source(data)


def test_parse_synthetic_options_and_config_mapping() -> None:
    assert parse_data_arg("synthetic:clips_per_class=3,seed=2") == {
        "kind": "synthetic",
        "clips_per_class": "3",
        "seed": "2",
    }
    assert parse_data_arg({"kind": "fsdd", "path": "d"})["path"] == "d"
    with pytest.raises(DataError, match="missing key 'kind'"):
        parse_data_arg({"path": "d"})
    source = open_source("synthetic:clips_per_class=3")
    assert len(source.clips) == 30 and source.options["clips_per_class"] == 3


@pytest.mark.parametrize("kind", ["esc50", "urbansound8k", "speech_commands", "magnatagatune"])
def test_missing_layout_files_are_named(tmp_path: Path, kind: str) -> None:
    with pytest.raises(DataError, match=f"{kind}: .* not found at {tmp_path}"):
        open_source(f"{kind}:{tmp_path}")
