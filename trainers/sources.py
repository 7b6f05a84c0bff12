"""Data sources: ``--data KIND:PATH`` strings and config dicts become a list of labelled clips.

Kinds (loaders never download; they read what is on disk):

- ``synthetic`` — the embedded default (``synthetic:clips_per_class=50,seed=1`` to vary it)
- ``folder:DIR`` — one sub-folder per class
- ``csv:FILE`` — manifest with a header ``path,label[,split][,group]``; paths relative to the
  file and inside its folder (absolute or ``..`` paths need the option
  ``allow_outside_root=true``); multi-label rows write ``a;b``. Each file appears once: a
  repeated row is refused (a repeat can land in train and test), unless the option
  ``dedupe=true`` drops exact repeats with a warning; a file under two labels or in two splits
  is always refused
- ``pattern:DIR`` with ``label_regex`` — label from the file's path relative to DIR (named group
  ``label`` or the first group; an optional named group ``group`` keeps e.g. speakers together)
- ``fsdd:DIR`` — Free Spoken Digit Dataset ``recordings/`` (official: index 0-4 is test)
- ``esc50:DIR`` — ``meta/esc50.csv`` + ``audio/`` (folds; default test fold 5, valid fold 4)
- ``urbansound8k:DIR`` — ``metadata/UrbanSound8K.csv`` + ``audio/foldN`` (test 10, valid 9)
- ``gtzan:DIR`` — ``genres[_original]/<genre>/*`` (no official split: seeded, stratified)
- ``speech_commands:DIR`` — ``<word>/*.wav`` + ``validation_list.txt``/``testing_list.txt``
- ``nsynth:DIR`` — ``nsynth-{train,valid,test}/examples.json`` + ``audio/``
- ``magnatagatune:DIR`` — ``annotations_final.csv`` (tab-separated) + mp3s; top-50 tags,
  multi-label; split by the audio sub-folder (0-b train, c valid, d-f test, as Pons and Won do)
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from search_spaces.errors import FsnasWarning, excerpt
from trainers.audio import AUDIO_EXTENSIONS, read_audio
from trainers.errors import DataError
from trainers.featureset import Task

KINDS: tuple[str, ...] = (
    "synthetic",
    "folder",
    "csv",
    "pattern",
    "fsdd",
    "esc50",
    "urbansound8k",
    "gtzan",
    "speech_commands",
    "nsynth",
    "magnatagatune",
)
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "validation": "valid",
    "val": "valid",
    "dev": "valid",
    "test": "test",
    "testing": "test",
    "eval": "test",
}
MAX_LISTED = 10


@dataclass(frozen=True)
class Clip:
    """One labelled clip: a file path (or ``synthetic/...`` id), labels, official split, group."""

    path: str
    labels: tuple[str, ...]
    split: str | None = None
    group: str | None = None


@dataclass
class Source:
    """A resolved data source: its clips, label set, task, and how its split is defined.

    ``official_split`` describes the layout's own split (empty when there is none and a seeded
    stratified split is drawn); ``carve_valid`` says the official split has no validation part,
    so one is carved from the training clips.
    """

    kind: str
    root: Path | None
    clips: list[Clip]
    labels: list[str]
    task: Task
    official_split: str = ""
    carve_valid: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Return ``KIND:PATH`` (or ``synthetic``) naming this source in reports."""
        return self.kind if self.root is None else f"{self.kind}:{self.root}"

    def decode(self, clip: Clip) -> tuple[np.ndarray, int]:
        """Return ``(samples (channels, frames) float32, sample_rate_hz)`` for one clip.

        Raises:
            AudioDecodeError: the clip's file cannot be decoded.
        """
        if self.kind == "synthetic":
            from trainers.synthetic import render_clip

            return render_clip(clip.path, **self.options)
        return read_audio(clip.path)

    def fingerprint(self) -> list[Any]:
        """Return what identifies the content: each clip with its file size and mtime."""
        rows: list[Any] = []
        # paths relative to the root, so a moved dataset keeps its cache (strings: fast)
        prefix = str(self.root) + os.sep if self.root is not None and self.root.is_dir() else ""
        for clip in self.clips:
            if self.kind == "synthetic":
                rows.append([clip.path, list(clip.labels), clip.split, clip.group])
                continue
            try:
                stat = os.stat(clip.path)
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
            except OSError:
                size, mtime_ns = -1, -1
            shown = clip.path.removeprefix(prefix) if prefix else clip.path
            rows.append([shown, size, mtime_ns, list(clip.labels), clip.split, clip.group])
        return rows


# -- parsing ------------------------------------------------------------------------------------


def parse_data_arg(data: str | Mapping[str, Any]) -> dict[str, Any]:
    """Return ``{"kind", "path", **options}`` from ``KIND:PATH`` or a config mapping.

    Raises:
        DataError: unknown kind, missing path, or a malformed ``synthetic:key=value`` option.
    """
    if isinstance(data, Mapping):
        spec = dict(data)
        if "kind" not in spec:
            raise DataError(f"data config {spec!r}: missing key 'kind' (one of {', '.join(KINDS)})")
    else:
        text = data.strip()
        kind, sep, rest = text.partition(":")
        spec = {"kind": kind.strip().lower()}
        if spec["kind"] == "synthetic":
            for item in filter(None, (p.strip() for p in rest.split(","))):
                key, eq, value = item.partition("=")
                if not eq:
                    raise DataError(
                        f"--data {text!r}: synthetic options are key=value, got {item!r}"
                    )
                spec[key.strip()] = value.strip()
        elif sep:
            spec["path"] = rest
    kind = spec["kind"]
    if kind not in KINDS:
        raise DataError(
            f"--data {data!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)} "
            "(written KIND:PATH, e.g. fsdd:data/fsdd/recordings)"
        )
    if kind != "synthetic" and not spec.get("path"):
        raise DataError(f"--data {data!r}: kind {kind!r} needs a path, written {kind}:PATH")
    return spec


def open_source(data: str | Mapping[str, Any], label_regex: str | None = None) -> Source:
    """Return the resolved ``Source`` for ``data`` (``KIND:PATH`` or a config mapping).

    Raises:
        DataError: the path or layout files are missing or malformed, or no clips were found.
    """
    spec = parse_data_arg(data)
    if label_regex is not None:
        spec["label_regex"] = label_regex
    kind = spec.pop("kind")
    path = Path(spec.pop("path")).expanduser().resolve() if spec.get("path") else None
    if path is not None and not path.exists():
        raise DataError(f"{kind}:{path}: path does not exist")
    if path is not None and kind not in _FILE_KINDS and not path.is_dir():
        raise DataError(
            f"{kind}:{path}: expected a folder, got a file"
            + (" (for a CSV manifest use csv:FILE)" if path.suffix.lower() == ".csv" else "")
        )
    loader = _LOADERS[kind]
    source = loader(path, spec)
    if not source.clips:
        raise DataError(f"{source.name}: no audio clips found")
    return source


# kinds whose PATH is a file (every other kind reads a folder)
_FILE_KINDS = frozenset({"csv"})


def _single_or_multi(clips: list[Clip], kind: str, root: Path | None, **kw: Any) -> Source:
    """Return a Source with labels sorted and the task inferred from the label counts."""
    multi = kw.pop("multi_label", None)
    if multi is None:
        multi = any(len(c.labels) != 1 for c in clips)
    labels = sorted({label for c in clips for label in c.labels})
    task: Task = "multi_label" if multi else "single_label"
    return Source(kind=kind, root=root, clips=clips, labels=labels, task=task, **kw)


def _audio_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _need(path: Path, what: str, kind: str) -> Path:
    if not path.exists():
        raise DataError(f"{kind}: {what} not found at {path}")
    return path


def _int_option(options: Mapping[str, Any], key: str, default: int, kind: str) -> int:
    value = options.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{kind}: option {key} must be an integer, got {value!r}") from None


def _bool_option(options: Mapping[str, Any], key: str, kind: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.strip().lower() in ("1", "true", "yes")
    if not isinstance(value, bool):
        raise DataError(f"{kind}: option {key} must be true or false, got {value!r}")
    return value


def _read_csv(path: Path, kind: str, delimiter: str = ",") -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{kind}: cannot read {path}: {exc}") from exc


def _require_columns(rows: list[dict[str, str]], columns: tuple[str, ...], path: Path) -> None:
    present = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; has {sorted(present)}")


# -- loaders ----------------------------------------------------------------------------------


def _load_synthetic(path: Path | None, options: dict[str, Any]) -> Source:
    from trainers.synthetic import SyntheticConfig, clip_ids

    try:
        config = SyntheticConfig(
            **{k: type(getattr(SyntheticConfig(), k))(v) for k, v in options.items()}
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"synthetic: bad option in {options!r} ({exc})") from exc
    clips = [Clip(path=cid, labels=(label,)) for cid, label in clip_ids(config)]
    return _single_or_multi(clips, "synthetic", None, options=config.to_dict())


def _load_folder(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"folder:{root}: expected one sub-folder per class, found none")
    clips = [Clip(path=str(f), labels=(d.name,)) for d in class_dirs for f in _audio_files(d)]
    return _single_or_multi(clips, "folder", root, multi_label=False)


def _load_csv(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    if root.is_dir():
        raise DataError(f"csv:{root}: expected a CSV file (path,label[,split]), got a folder")
    rows = _read_csv(root, "csv")
    if not rows:
        raise DataError(f"{root}: manifest has no rows")
    _require_columns(rows, ("path", "label"), root)
    has_split = "split" in rows[0]
    allow_outside = _bool_option(options, "allow_outside_root", "csv")
    dedupe = _bool_option(options, "dedupe", "csv")
    base = root.parent
    clips: list[Clip] = []
    lines: list[int] = []  # the manifest line of each clip
    raw_paths: list[str] = []
    bad_splits: list[str] = []
    outside: list[str] = []
    missing: list[str] = []
    for line, row in enumerate(rows, start=2):
        labels = tuple(s.strip() for s in (row["label"] or "").split(";") if s.strip())
        if not labels:
            raise DataError(f"{root}: line {line}: empty label for {row['path']!r}")
        raw_path = (row["path"] or "").strip()
        if not raw_path:
            raise DataError(f"{root}: line {line}: empty path")
        # lexical check (no symlink resolution): a symlinked data folder inside the root is fine,
        # a manifest naming /etc/... or ../../ is not, unless the caller opts in
        path = os.path.normpath(os.path.join(base, raw_path))
        if not allow_outside and (
            os.path.isabs(raw_path) or os.path.commonpath([base, path]) != str(base)
        ):
            outside.append(f"line {line}: {raw_path!r}")
            continue
        if not os.path.isfile(path):
            missing.append(f"line {line}: {raw_path!r}")
        split = None
        if has_split:
            raw = (row.get("split") or "").strip().lower()
            split = _SPLIT_ALIASES.get(raw)
            if split is None:
                bad_splits.append(f"line {line}: {raw!r}")
        clips.append(
            Clip(
                path=path,
                labels=labels,
                split=split,
                group=(row.get("group") or "").strip() or None,
            )
        )
        lines.append(line)
        raw_paths.append(raw_path)
    if outside:
        raise DataError(
            f"{root}: {len(outside)} path(s) outside the manifest's folder {base} (absolute or "
            f"'..'): {', '.join(outside[:MAX_LISTED])}; open the source with "
            "allow_outside_root=true if that is intended"
        )
    if bad_splits:
        raise DataError(
            f"{root}: split must be train/valid/test; " + ", ".join(bad_splits[:MAX_LISTED])
        )
    if missing:
        raise DataError(
            f"{root}: {len(missing)} listed file(s) do not exist: "
            + ", ".join(missing[:MAX_LISTED])
            + (f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else "")
        )
    clips = _refuse_repeats(root, clips, lines, raw_paths, dedupe)
    carve = has_split and not any(c.split == "valid" for c in clips)
    return _single_or_multi(
        clips,
        "csv",
        root,
        official_split="manifest column 'split'" if has_split else "",
        carve_valid=carve,
    )


def _refuse_repeats(
    root: Path, clips: list[Clip], lines: list[int], raw_paths: list[str], dedupe: bool
) -> list[Clip]:
    """Return ``clips`` when every file appears once (or, with ``dedupe``, exact repeats dropped).

    A file is the same file whatever the spelling of its path (``a.wav``, ``./a.wav``, a
    symlink): rows are compared by the file's real path.

    Raises:
        DataError: a file under two label sets or in two splits (always), or listed more than
            once (unless ``dedupe``); names each file and its lines.
    """
    rows_of: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        rows_of.setdefault(os.path.realpath(clip.path), []).append(i)
    repeated = [rows for rows in rows_of.values() if len(rows) > 1]
    if not repeated:
        return clips

    def where(i: int) -> str:
        split = f"/{clips[i].split}" if clips[i].split else ""
        return f"line {lines[i]}: {';'.join(clips[i].labels)}{split}"

    def listing(groups: list[list[int]], show: Any) -> str:
        shown = "; ".join(
            f"{excerpt(raw_paths[rows[0]], 60)} ({show(rows)})" for rows in groups[:MAX_LISTED]
        )
        more = f"; and {len(groups) - MAX_LISTED} more" if len(groups) > MAX_LISTED else ""
        return shown + more

    conflicting = [
        rows
        for rows in repeated
        if len({(frozenset(clips[i].labels), clips[i].split) for i in rows}) > 1
    ]
    if conflicting:
        raise DataError(
            f"{root}: {len(conflicting)} file(s) listed with different labels or splits: "
            + listing(conflicting, lambda rows: ", ".join(where(i) for i in rows))
            + ". A clip has one label set (multi-label: write 'a;b' in one row) and one split "
            "(a file in two splits leaks training data into the evaluation); fix these rows"
        )
    extra = sum(len(rows) - 1 for rows in repeated)
    shown = listing(repeated, lambda rows: "lines " + ", ".join(str(lines[i]) for i in rows))
    if not dedupe:
        raise DataError(
            f"{root}: {len(repeated)} file(s) listed more than once ({extra} repeated row(s)): "
            f"{shown}. A repeat can land in train and in test, which leaks training data into "
            "the evaluation; remove the repeated rows (in Python, open_source({'kind': 'csv', "
            "'path': ..., 'dedupe': True}) keeps the first row of each file instead)"
        )
    drop = {i for rows in repeated for i in rows[1:]}
    warnings.warn(
        f"{root}: dedupe: dropped {extra} repeated row(s) of {len(repeated)} file(s), keeping "
        f"the first row of each: {shown}",
        FsnasWarning,
        stacklevel=4,
    )
    return [clip for i, clip in enumerate(clips) if i not in drop]


def _load_pattern(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    regex_text = options.get("label_regex")
    if not regex_text:
        raise DataError(f"pattern:{root}: needs --label-regex (e.g. '^(?P<label>[a-z]+)_')")
    try:
        regex = re.compile(regex_text)
    except re.error as exc:
        raise DataError(
            f"--label-regex {regex_text!r}: invalid regular expression ({exc})"
        ) from exc
    if regex.groups == 0:
        raise DataError(
            f"--label-regex {regex_text!r}: needs a group for the label, e.g. (?P<label>...)"
        )
    clips: list[Clip] = []
    unmatched: list[str] = []
    for file in _audio_files(root):
        relative = file.relative_to(root).as_posix()
        match = regex.search(relative)
        if match is None:
            unmatched.append(relative)
            continue
        names = match.groupdict()
        label = names.get("label") or match.group(1)
        if not label:
            unmatched.append(relative)
            continue
        clips.append(Clip(path=str(file), labels=(label,), group=names.get("group")))
    if unmatched:
        raise DataError(
            f"pattern:{root}: --label-regex {regex_text!r} gives no label for "
            f"{len(unmatched)} file(s): {', '.join(unmatched[:MAX_LISTED])}"
        )
    return _single_or_multi(clips, "pattern", root, multi_label=False)


_FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)$")


def _load_fsdd(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    if (root / "recordings").is_dir():
        root = root / "recordings"
    names = sorted(n for n in os.listdir(root) if n.lower().endswith(".wav"))
    clips: list[Clip] = []
    odd: list[str] = []
    for name in names:
        match = _FSDD_NAME.match(name[:-4])
        if match is None:
            odd.append(name)
            continue
        split = "test" if int(match["index"]) < 5 else "train"
        # no group: the official test split shares speakers with train, so valid may too
        clips.append(Clip(path=os.path.join(root, name), labels=(match["digit"],), split=split))
    if odd:
        raise DataError(
            f"fsdd:{root}: file names must be DIGIT_SPEAKER_INDEX.wav; got "
            + ", ".join(odd[:MAX_LISTED])
        )
    return _single_or_multi(
        clips,
        "fsdd",
        root,
        multi_label=False,
        official_split="FSDD: recordings with index 0-4 are test; valid carved from train",
        carve_valid=True,
    )


def _fold_split(fold: int, test_fold: int, valid_fold: int) -> str:
    return "test" if fold == test_fold else "valid" if fold == valid_fold else "train"


def _load_esc50(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    meta = _need(root / "meta" / "esc50.csv", "meta/esc50.csv", "esc50")
    rows = _read_csv(meta, "esc50")
    _require_columns(rows, ("filename", "fold", "category"), meta)
    return _fold_source(
        root,
        "esc50",
        "ESC-50",
        [(root / "audio" / r["filename"], r["category"], int(r["fold"])) for r in rows],
        options,
        default_test_fold=5,
    )


def _load_urbansound8k(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    meta = _need(
        root / "metadata" / "UrbanSound8K.csv", "metadata/UrbanSound8K.csv", "urbansound8k"
    )
    rows = _read_csv(meta, "urbansound8k")
    _require_columns(rows, ("slice_file_name", "fold", "class"), meta)
    entries = [
        (root / "audio" / f"fold{r['fold']}" / r["slice_file_name"], r["class"], int(r["fold"]))
        for r in rows
    ]
    return _fold_source(
        root, "urbansound8k", "UrbanSound8K", entries, options, default_test_fold=10
    )


def _fold_source(
    root: Path,
    kind: str,
    title: str,
    entries: list[tuple[Path, str, int]],
    options: dict[str, Any],
    default_test_fold: int,
) -> Source:
    """Return a single-label source split by folds: one test fold, the one before it valid."""
    test_fold = _int_option(options, "test_fold", default_test_fold, kind)
    default_valid = default_test_fold - 1
    valid_fold = _int_option(
        options,
        "valid_fold",
        default_valid if test_fold != default_valid else default_valid - 1,
        kind,
    )
    clips = [
        Clip(
            path=str(path),
            labels=(label,),
            split=_fold_split(fold, test_fold, valid_fold),
            group=f"fold{fold}",
        )
        for path, label, fold in entries
    ]
    return _single_or_multi(
        clips,
        kind,
        root,
        multi_label=False,
        official_split=f"{title} folds: test fold {test_fold}, valid fold {valid_fold}",
        options={"test_fold": test_fold, "valid_fold": valid_fold},
    )


def _load_gtzan(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    for candidate in ("genres_original", "genres", "Data/genres_original"):
        if (root / candidate).is_dir():
            root = root / candidate
            break
    source = _load_folder(root, options)
    source.kind = "gtzan"
    return source


def _load_speech_commands(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    lists = {}
    for name, split in (("validation_list.txt", "valid"), ("testing_list.txt", "test")):
        text = _need(root / name, name, "speech_commands").read_text(encoding="utf-8")
        lists.update({line.strip(): split for line in text.splitlines() if line.strip()})
    clips: list[Clip] = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if word_dir.name.startswith(("_", ".")):  # _background_noise_ is not a class
            continue
        for file in sorted(word_dir.glob("*.wav")):
            relative = f"{word_dir.name}/{file.name}"
            clips.append(
                Clip(
                    path=str(file),
                    labels=(word_dir.name,),
                    split=lists.get(relative, "train"),
                    group=file.name.split("_nohash_")[0],
                )
            )
    return _single_or_multi(
        clips,
        "speech_commands",
        root,
        multi_label=False,
        official_split="Speech Commands validation_list.txt / testing_list.txt",
    )


def _load_nsynth(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    label_key = str(options.get("label", "instrument_family_str"))
    subsets = [root / f"nsynth-{s}" for s in ("train", "valid", "test")]
    subsets = [s for s in subsets if (s / "examples.json").is_file()]
    if not subsets and (root / "examples.json").is_file():
        subsets = [root]
    if not subsets:
        raise DataError(f"nsynth:{root}: no examples.json (nor nsynth-*/examples.json) found")
    clips: list[Clip] = []
    for subset in subsets:
        try:
            examples = json.loads((subset / "examples.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{subset / 'examples.json'}: cannot read ({exc})") from exc
        split = _SPLIT_ALIASES.get(subset.name.removeprefix("nsynth-"))
        for note, meta in sorted(examples.items()):
            if label_key not in meta:
                raise DataError(
                    f"{subset / 'examples.json'}: note {note!r} lacks key {label_key!r}"
                )
            clips.append(
                Clip(
                    path=str(subset / "audio" / f"{note}.wav"),
                    labels=(str(meta[label_key]),),
                    split=split,
                    group=str(meta.get("instrument_str", "")) or None,
                )
            )
    all_split = all(c.split for c in clips)
    return _single_or_multi(
        clips,
        "nsynth",
        root,
        multi_label=False,
        official_split="NSynth nsynth-train/valid/test" if all_split else "",
        carve_valid=all_split and not any(c.split == "valid" for c in clips),
        options={"label": label_key},
    )


def _load_magnatagatune(root: Path | None, options: dict[str, Any]) -> Source:
    assert root is not None
    annotations = _need(root / "annotations_final.csv", "annotations_final.csv", "magnatagatune")
    rows = _read_csv(annotations, "magnatagatune", delimiter="\t")
    _require_columns(rows, ("clip_id", "mp3_path"), annotations)
    top_k = _int_option(options, "top_k", 50, "magnatagatune")
    tags = [c for c in rows[0] if c not in ("clip_id", "mp3_path")]
    counts = Counter({t: sum(r[t].strip() == "1" for r in rows) for t in tags})
    # ties broken by name so the tag set does not depend on column order
    top = sorted(sorted(counts, key=lambda t: (-counts[t], t))[:top_k])
    audio_root = root / "mp3" if (root / "mp3").is_dir() else root
    clips: list[Clip] = []
    for r in rows:
        labels = tuple(t for t in top if r[t].strip() == "1")
        if not labels:  # clips with none of the top tags carry no training signal
            continue
        mp3 = r["mp3_path"].strip()
        first = mp3[:1].lower()
        split = "test" if first in "def" else "valid" if first == "c" else "train"
        clips.append(Clip(path=str(audio_root / mp3), labels=labels, split=split))
    return Source(
        kind="magnatagatune",
        root=root,
        clips=clips,
        labels=top,
        task="multi_label",
        official_split="MagnaTagATune folders 0-b train, c valid, d-f test (Pons/Won)",
        options={"top_k": top_k},
    )


_LOADERS = {
    "synthetic": _load_synthetic,
    "folder": _load_folder,
    "csv": _load_csv,
    "pattern": _load_pattern,
    "fsdd": _load_fsdd,
    "esc50": _load_esc50,
    "urbansound8k": _load_urbansound8k,
    "gtzan": _load_gtzan,
    "speech_commands": _load_speech_commands,
    "nsynth": _load_nsynth,
    "magnatagatune": _load_magnatagatune,
}
