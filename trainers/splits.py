"""Train/valid/test splits: the layout's official split, else seeded, stratified, group-aware.

Stratification key of a clip: its label (single-label) or its rarest label (multi-label). With
groups (speaker, instrument, fold), whole groups are assigned, so no group leaks across splits.
Assignment is greedy on a seeded shuffle: each unit goes to the split furthest below its target
share of the stratum, which hits the ratios as closely as whole units allow.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from search_spaces.errors import excerpt
from trainers.errors import DataError
from trainers.sources import SPLIT_NAMES, Clip, Source

MIN_CLASSES = 2
"""A model of one class scores 1.0 without learning anything."""
MIN_CLIPS_PER_CLASS = 2
"""Clips of each class over all splits: one to train on, one to evaluate (and at least one of
them in train, ``check_every_class_trains``)."""


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Return ``ratios`` (train, valid, test) normalised to sum to 1.

    Raises:
        DataError: not three non-negative numbers, or the train share is zero.
    """
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(not np.isfinite(r) or r < 0 for r in values) or values[0] <= 0:
        raise DataError(
            f"split ratios must be three non-negative numbers (train, valid, test) with train > 0, "
            f"got {tuple(ratios)!r}"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _strata_keys(clips: Sequence[Clip]) -> list[str]:
    counts = Counter(label for c in clips for label in c.labels)
    return [min(c.labels, key=lambda lab: (counts[lab], lab)) if c.labels else "" for c in clips]


def stratified_split(
    clips: Sequence[Clip],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    use_groups: bool = True,
) -> list[str]:
    """Return a split name per clip: seeded, stratified by label, whole groups kept together.

    Raises:
        DataError: the ratios are invalid (see ``check_ratios``).
    """
    shares = check_ratios(ratios)
    keys = _strata_keys(clips)
    # a unit is a group (when groups are used and set) or a single clip
    units: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        unit = f"g:{clip.group}" if use_groups and clip.group is not None else f"c:{i}"
        units[unit].append(i)
    strata: dict[str, list[str]] = defaultdict(list)
    for unit, members in units.items():
        majority = Counter(keys[i] for i in members).most_common(1)[0][0]
        strata[majority].append(unit)
    rng = np.random.default_rng(seed)
    assigned: list[str] = [""] * len(clips)
    # deficits are global, so each stratum's rounding remainder carries over to the next and
    # the totals follow the ratios even when every stratum is small
    filled = [0.0, 0.0, 0.0]
    seen = 0
    placed: list[tuple[int, str]] = []  # (split index, unit) in assignment order
    for stratum in sorted(strata):
        unit_names = sorted(strata[stratum])
        for position in rng.permutation(len(unit_names)):
            unit = unit_names[position]
            seen += len(units[unit])
            deficits = [shares[s] * seen - filled[s] for s in range(3)]
            chosen = int(np.argmax(deficits))
            filled[chosen] += len(units[unit])
            placed.append((chosen, unit))
    # a split with a positive share gets at least one unit while train keeps one
    for target in (2, 1):
        if shares[target] > 0 and not any(s == target for s, _ in placed):
            train_positions = [k for k, (s, _) in enumerate(placed) if s == 0]
            if len(train_positions) > 1:
                k = train_positions[-1]
                placed[k] = (target, placed[k][1])
    for chosen, unit in placed:
        for i in units[unit]:
            assigned[i] = SPLIT_NAMES[chosen]
    return assigned


def assign_splits(
    source: Source, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> list[str]:
    """Return a split name per clip of ``source``: official if it has one, else drawn.

    The official split is kept as is; where it has no validation part (FSDD, a manifest without
    ``valid`` rows), valid is carved from train with the share ``valid / (train + valid)`` of
    ``ratios``, seeded and stratified.
    """
    shares = check_ratios(ratios)
    check_unique_clips(source)
    if not source.official_split:
        splits = stratified_split(source.clips, shares, seed)
        check_every_class_trains(source, splits)
        return splits
    splits = [c.split or "train" for c in source.clips]
    if source.carve_valid and shares[1] > 0:
        train_idx = [i for i, s in enumerate(splits) if s == "train"]
        carved = stratified_split(
            [source.clips[i] for i in train_idx], (shares[0], shares[1], 0.0), seed
        )
        for i, split in zip(train_idx, carved):
            splits[i] = split
    check_every_class_trains(source, splits)
    return splits


def check_classes(source: Source) -> None:
    """Return when ``source`` has at least ``MIN_CLASSES`` classes of ``MIN_CLIPS_PER_CLASS``
    clips or more each: what training needs (``load_features`` checks it unless told not to).

    Raises:
        DataError: naming the single class, or the classes with too few clips and their
            counts.
    """
    counts = Counter(label for clip in source.clips for label in clip.labels)
    if len(source.labels) < MIN_CLASSES:
        only = ", ".join(f"{excerpt(lab, 40)} ({_clips(counts[lab])})" for lab in source.labels)
        raise DataError(
            f"{source.name}: only one class, {only}; training needs "
            f"at least {MIN_CLASSES} (a one-class model scores 1.0 without learning anything): "
            "add clips of another class"
        )
    # a class left with no clip at all (every file skipped) is check_every_class_trains's
    few = [lab for lab in source.labels if 0 < counts[lab] < MIN_CLIPS_PER_CLASS]
    if few:
        listed = ", ".join(f"{excerpt(lab, 40)} ({_clips(counts[lab])})" for lab in few[:10])
        more = f" and {len(few) - 10} more" if len(few) > 10 else ""
        raise DataError(
            f"{source.name}: {len(few)} class(es) with fewer than {MIN_CLIPS_PER_CLASS} clips: "
            f"{listed}{more}; each class needs at least {MIN_CLIPS_PER_CLASS} (one to train on, "
            "one to evaluate): add clips of these classes or remove them"
        )


def check_unique_clips(source: Source) -> None:
    """Return when no file appears twice among the clips of ``source``.

    Raises:
        DataError: naming the repeated files (a repeat can land in train and in test).
    """
    paths = Counter(clip.path for clip in source.clips)
    twice = [path for path, n in paths.items() if n > 1]
    if twice:
        listed = ", ".join(f"{excerpt(p, 60)} ({paths[p]} times)" for p in twice[:10])
        raise DataError(
            f"{source.name}: {len(twice)} file(s) appear more than once: {listed}; a repeated "
            "clip can land in train and in test (training data leaks into the evaluation)"
        )


def _clips(n: int) -> str:
    return f"{n} clip" if n == 1 else f"{n} clips"


def check_every_class_trains(source: Source, splits: Sequence[str]) -> None:
    """Return when every label of ``source`` has at least one training clip under ``splits``.

    A class without training clips cannot be learned, and its validation and test scores
    would be meaningless; better to say so before hours of search.

    Raises:
        DataError: naming the classes the split leaves without training clips and where
            their clips went.
    """
    trained = {
        label
        for clip, split in zip(source.clips, splits)
        if split == "train"
        for label in clip.labels
    }
    empty = [label for label in source.labels if label not in trained]
    if not empty:
        return
    placed: dict[str, Counter[str]] = defaultdict(Counter)
    for clip, split in zip(source.clips, splits):
        for label in clip.labels:
            if label in empty:
                placed[label][split] += 1
    where = {
        label: ", ".join(f"{n} {s}" for s, n in sorted(placed[label].items())) or "no clips"
        for label in empty
    }
    listed = "; ".join(f"{label!r} ({where[label]})" for label in empty[:10])
    more = f" and {len(empty) - 10} more" if len(empty) > 10 else ""
    raise DataError(
        f"{source.name}: the split leaves {len(empty)} class(es) without training clips: "
        f"{listed}{more}; add clips of these classes to train (or remove them)"
    )
