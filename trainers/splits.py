"""Train/valid/test splits: the layout's official split, else seeded, stratified, group-aware.

Stratification key of a clip: its label (single-label) or its rarest label (multi-label). With
groups (speaker, instrument, fold), whole groups are assigned, so no group leaks across splits.
Assignment is greedy on a seeded shuffle: each unit goes to the split furthest below its target
share of the stratum, which hits the ratios as closely as whole units allow. A stratum the
greedy pass leaves without a unit in a split of positive share then gets one, moved from its
largest split (``MIN_CLIPS_PER_SPLIT``); a split that already holds every stratum is unchanged.
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
MIN_CLIPS_PER_SPLIT = 1
"""Clips of each class (of each label, multi-label) in train and in each evaluation split (valid,
test) the run uses, i.e. each split that holds any clip: a class missing from valid is never
measured by the search, one missing from test is left out of the reported score. A split empty
by design (a zero share, an official layout without it) is not checked. A drawn split meets it
for every class of at least 3 clips (3 groups where groups are kept together) under shares that
are all positive; an official split must hold it as laid out
(``check_every_split_has_every_class``).
"""


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
    _give_every_stratum_each_split(placed, strata, shares)
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


def _give_every_stratum_each_split(
    placed: list[tuple[int, str]], strata: dict[str, list[str]], shares: Sequence[float]
) -> None:
    """Move, in ``placed``, one unit into each split of positive share a stratum has none in.

    The unit comes from the stratum's split holding the most of its units (train first on a
    tie), the last one placed there. Strata the greedy pass already spread over every split,
    and strata of fewer units than there are such splits (``check_every_split_has_every_class``
    refuses them for training; inspecting and evaluating keep the greedy split), are left as
    they are.
    """
    where = {unit: k for k, (_, unit) in enumerate(placed)}
    needed = sum(1 for share in shares if share > 0)
    for stratum in sorted(strata):
        if len(strata[stratum]) < needed:
            continue
        for target in (1, 2):
            if shares[target] <= 0:
                continue
            mine = sorted(where[u] for u in strata[stratum])
            per_split = Counter(placed[k][0] for k in mine)
            if per_split[target] > 0:
                continue
            donor = max(range(3), key=lambda s: (per_split[s], s == 0))
            if per_split[donor] < 2:
                continue  # cannot happen with enough units; kept as a guard
            k = max(k for k in mine if placed[k][0] == donor)
            placed[k] = (target, placed[k][1])


def assign_splits(
    source: Source,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    min_per_split: int = MIN_CLIPS_PER_SPLIT,
) -> list[str]:
    """Return a split name per clip of ``source``: official if it has one, else drawn.

    The official split is kept as is; where it has no validation part (FSDD, a manifest without
    ``valid`` rows), valid is carved from train with the share ``valid / (train + valid)`` of
    ``ratios``, seeded and stratified.

    Raises:
        DataError: a file listed twice, a class without training clips, or (``min_per_split``
            above 0; ``load_features`` passes 0 when not ``trainable``) a class with fewer
            than ``min_per_split`` clips in a split that holds clips.
    """
    shares = check_ratios(ratios)
    check_unique_clips(source)
    if not source.official_split:
        splits = stratified_split(source.clips, shares, seed)
        check_every_class_trains(source, splits)
        check_every_split_has_every_class(source, splits, min_per_split)
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
    check_every_split_has_every_class(source, splits, min_per_split)
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


def check_every_split_has_every_class(
    source: Source, splits: Sequence[str], minimum: int = MIN_CLIPS_PER_SPLIT
) -> None:
    """Return when every label of ``source`` has ``minimum`` clips or more in each split that
    holds any clip under ``splits`` (``MIN_CLIPS_PER_SPLIT``); ``minimum`` 0 checks nothing.

    Raises:
        DataError: naming the classes below the minimum, the splits they fall short in and
            their clips per split.
    """
    if minimum <= 0:
        return
    used = [name for name in SPLIT_NAMES if name in set(splits)]
    per_label: dict[str, Counter[str]] = defaultdict(Counter)
    for clip, split in zip(source.clips, splits):
        for label in clip.labels:
            per_label[label][split] += 1
    short = {
        label: [s for s in used if per_label[label][s] < minimum]
        for label in source.labels
        if any(per_label[label][s] < minimum for s in used)
    }
    if not short:
        return
    listed = "; ".join(
        f"{excerpt(label, 40)} has {' and '.join(f'{per_label[label][s]} in {s}' for s in gaps)}"
        f" ({', '.join(f'{s} {per_label[label][s]}' for s in used)})"
        for label, gaps in list(short.items())[:10]
    )
    more = f" and {len(short) - 10} more" if len(short) > 10 else ""
    if source.official_split:
        fix = (
            f"add clips of these classes to those splits of the layout ({source.official_split}) "
            "or remove the classes"
        )
    else:
        grouped = " in as many groups" if any(c.group for c in source.clips) else ""
        fix = (
            f"give each of these classes at least {len(used) * minimum} clips{grouped} "
            "or remove them"
        )
    clip_word = "clip" if minimum == 1 else "clips"
    raise DataError(
        f"{source.name}: {len(short)} class(es) below {minimum} {clip_word} in a split: "
        f"{listed}{more}; every class needs at least {minimum} {clip_word} in each of "
        f"{', '.join(used)}, or its score there is not measured: {fix}"
    )
