"""Official splits are kept; drawn splits are seeded, stratified and never split a group."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from trainers.errors import DataError
from trainers.sources import Clip, Source, open_source
from trainers.splits import assign_splits, check_ratios, stratified_split


def _clips(n_per_label: dict[str, int], groups: int | None = None) -> list[Clip]:
    clips = []
    for label, n in n_per_label.items():
        for i in range(n):
            group = f"{label}-g{i % groups}" if groups else None
            clips.append(Clip(path=f"{label}/{i}.wav", labels=(label,), group=group))
    return clips


def test_ratios_are_checked_and_normalised() -> None:
    assert check_ratios((8, 1, 1)) == pytest.approx((0.8, 0.1, 0.1))
    for bad in [(0.8, 0.2), (0, 0.5, 0.5), (0.8, -0.1, 0.3), (float("nan"), 0.1, 0.1)]:
        with pytest.raises(DataError, match="split ratios"):
            check_ratios(bad)


def test_stratified_split_hits_the_ratios_per_class() -> None:
    clips = _clips({"a": 100, "b": 50, "c": 20})
    splits = stratified_split(clips, (0.8, 0.1, 0.1), seed=0)
    per_label = Counter((c.labels[0], s) for c, s in zip(clips, splits))
    assert (per_label["a", "train"], per_label["a", "valid"], per_label["a", "test"]) == (
        80,
        10,
        10,
    )
    assert (per_label["b", "valid"], per_label["b", "test"]) == (5, 5)
    assert (per_label["c", "valid"], per_label["c", "test"]) == (2, 2)


def test_split_is_seeded() -> None:
    clips = _clips({"a": 40, "b": 40})
    assert stratified_split(clips, seed=3) == stratified_split(clips, seed=3)
    assert stratified_split(clips, seed=3) != stratified_split(clips, seed=4)


def test_groups_never_leak_across_splits() -> None:
    clips = _clips({"a": 60, "b": 60}, groups=10)
    splits = stratified_split(clips, (0.6, 0.2, 0.2), seed=1)
    where: dict[str | None, str] = {}
    for clip, split in zip(clips, splits):
        assert where.setdefault(clip.group, split) == split
    counts = Counter(splits)
    assert counts == {"train": 72, "valid": 24, "test": 24}


def test_tiny_strata_still_fill_valid_and_test() -> None:
    # 8/1/1 overall would leave one class out of valid and the other out of test: every class
    # of 3 clips or more gets one in each split of positive share (MIN_CLIPS_PER_SPLIT)
    clips = _clips({"a": 5, "b": 5})
    splits = stratified_split(clips, seed=0)
    assert Counter(splits) == {"train": 6, "valid": 2, "test": 2}
    per_label = Counter((c.labels[0], s) for c, s in zip(clips, splits))
    assert {k: per_label[k] for k in per_label} == {
        (label, split): 3 if split == "train" else 1
        for label in "ab"
        for split in ("train", "valid", "test")
    }


def test_every_class_of_three_clips_reaches_every_split_of_positive_share() -> None:
    clips = _clips({"a": 3, "b": 3, "c": 4, "d": 30})
    for seed in range(5):
        splits = stratified_split(clips, (0.8, 0.1, 0.1), seed=seed)
        per_label = Counter((c.labels[0], s) for c, s in zip(clips, splits))
        assert all(per_label[lab, s] >= 1 for lab in "abcd" for s in ("train", "valid", "test"))
    # a zero share stays empty, and is not asked for
    splits = stratified_split(clips, (0.8, 0.0, 0.2), seed=0)
    assert "valid" not in splits
    source = Source("folder:x", None, clips, ["a", "b", "c", "d"], "single_label")
    assert assign_splits(source, (0.8, 0.0, 0.2), seed=0) == splits


def test_a_class_missing_from_a_split_is_refused_with_its_counts() -> None:
    clips = _clips({"a": 2, "b": 10})
    source = Source("folder:x", None, clips, ["a", "b"], "single_label")
    with pytest.raises(
        DataError, match=r"'a' has 0 in valid and 0 in test \(train 2, valid 0, test 0\)"
    ):
        assign_splits(source, (0.8, 0.1, 0.1), seed=0)
    assert Counter(assign_splits(source, (0.8, 0.1, 0.1), seed=0, min_per_split=0))["train"] > 0
    # an official split is kept as laid out, so a class it leaves out of test is refused
    official = [
        Clip(f"{i}.wav", (str(i % 2),), split="test" if i in (0, 2, 4) else "train")
        for i in range(20)
    ]
    laid_out = Source("csv:m.csv", None, official, ["0", "1"], "single_label", "manifest")
    with pytest.raises(DataError, match=r"'1' has 0 in test \(train 10, test 0\).*manifest"):
        assign_splits(laid_out, (0.8, 0.1, 0.1), seed=0)


def test_multi_label_stratifies_by_the_rarest_label() -> None:
    clips = [Clip(f"{i}.wav", ("common", "rare") if i < 10 else ("common",)) for i in range(100)]
    splits = stratified_split(clips, (0.8, 0.1, 0.1), seed=0)
    rare = Counter(s for c, s in zip(clips, splits) if "rare" in c.labels)
    assert rare == {"train": 8, "valid": 1, "test": 1}


def test_official_split_kept_and_valid_carved_from_train() -> None:
    clips = [
        Clip(f"{i}.wav", (str(i % 2),), split="test" if i < 20 else "train") for i in range(100)
    ]
    source = Source("csv", None, clips, ["0", "1"], "single_label", "manifest", carve_valid=True)
    splits = assign_splits(source, (0.8, 0.1, 0.1), seed=0)
    assert splits[:20] == ["test"] * 20
    assert Counter(splits) == {"train": 71, "valid": 9, "test": 20}  # valid = 1/9 of train


@pytest.mark.fsdd
def test_fsdd_official_split(fsdd_dir: Path) -> None:
    source = open_source(f"fsdd:{fsdd_dir}")
    splits = assign_splits(source, (0.8, 0.1, 0.1), seed=0)
    assert Counter(splits) == {"train": 2400, "valid": 300, "test": 300}
    for clip, split in zip(source.clips, splits):
        index = int(Path(clip.path).stem.split("_")[2])
        assert (split == "test") == (index < 5)
    valid_per_digit = Counter(c.labels[0] for c, s in zip(source.clips, splits) if s == "valid")
    assert set(valid_per_digit.values()) == {30}
