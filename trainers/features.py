"""Log-mel features, computed once per (data, feature config, split) and cached on disk.

``load_features`` resolves a source, draws or reads its split, and returns a ``FeatureSet``
whose arrays are memory-mapped from a cache entry ``<cache_dir>/<key>/``. The key hashes the
file list (sizes and mtimes), labels, split, feature config and bad-audio policy, so changing any
of them builds a new entry, and a second run with the same inputs decodes no audio. Building
streams: clips are decoded and featurised in batches sized by a memory budget and appended to
``x.npy`` on disk, so memory does not grow with the dataset. An entry is written to a temporary
folder and renamed into place when complete; on load its manifest, sizes and SHA-256 checksums
are verified, and a corrupt entry is rebuilt.

Entry layout: ``x.npy`` (N, 1, n_mels, n_frames) float32 in train, valid, test order; ``y.npy``
(int64 class indices, or float32 multi-hot for multi-label); ``durations_s.npy`` and
``sample_rates_hz.npy`` per clip; ``manifest.json`` (splits, labels, paths, skipped files,
feature config, checksums).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from search_spaces.errors import FsnasWarning
from trainers.audio import (
    CropPolicy,
    chunk_starts,
    crop_start,
    fix_length,
    pitch_shift,
    resample,
    to_mono,
)
from trainers.errors import AudioDecodeError, BadAudioError, CacheError, DataError
from trainers.featureset import MAX_CLIP_SECONDS, FeatureConfig, FeatureSet, Split
from trainers.sources import SPLIT_NAMES, Clip, Source, open_source
from trainers.splits import MIN_CLIPS_PER_SPLIT, assign_splits, check_classes

if TYPE_CHECKING:
    import torch

CACHE_FORMAT_VERSION = 1
_STALE_BUILD_S = 24 * 3600
OnBadAudio = Literal["fail", "skip"]

_GENERAL = FeatureConfig(sample_rate_hz=16000, clip_seconds=1.0, n_fft=512, hop_length=160)
# Music sets: 16 kHz, 96 mels, hop 256 as musicnn and Won et al. use; 2.976 s = 187 frames, the
# input size of the pons_* presets.
_MUSIC = FeatureConfig(
    sample_rate_hz=16000, clip_seconds=2.976, n_fft=512, hop_length=256, n_mels=96
)
DEFAULT_FEATURE_CONFIGS: dict[str, FeatureConfig] = {
    "synthetic": _GENERAL,
    "folder": _GENERAL,
    "csv": _GENERAL,
    "pattern": _GENERAL,
    # the anchor of DESIGN.md (anchor_gpu.py): 8 kHz, first 1 s, n_fft 512, hop 80 -> 101 frames,
    # log1p(100 x)
    "fsdd": FeatureConfig(
        sample_rate_hz=8000,
        clip_seconds=1.0,
        n_fft=512,
        hop_length=80,
        log_gain=100.0,
        crop="start",
    ),
    "speech_commands": _GENERAL,
    "esc50": replace(_GENERAL, clip_seconds=5.0, n_fft=1024, hop_length=320),
    "urbansound8k": replace(_GENERAL, clip_seconds=4.0, n_fft=1024, hop_length=320),
    "gtzan": _MUSIC,
    "magnatagatune": _MUSIC,
    # notes start at the onset: keep the beginning
    "nsynth": replace(_GENERAL, clip_seconds=3.0, hop_length=256, crop="start"),
}


def default_feature_config(kind: str) -> FeatureConfig:
    """Return the default ``FeatureConfig`` of data kind ``kind`` (e.g. ``"fsdd"``).

    Raises:
        DataError: ``kind`` is not a known data kind.
    """
    try:
        return DEFAULT_FEATURE_CONFIGS[kind]
    except KeyError:
        known = ", ".join(DEFAULT_FEATURE_CONFIGS)
        raise DataError(
            f"no default feature config for data kind {kind!r}; known: {known}"
        ) from None


# -- the transform (one definition, used by the cache builder and by inference) ----------------


def default_device() -> str:
    """Return ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=8)
def _mel_module(cfg: FeatureConfig, device: str) -> torch.nn.Module:
    import torchaudio

    module = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate_hz,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        f_min=cfg.f_min_hz,
        f_max=cfg.f_max_hz,
    )
    return module.to(device)


def prepare_waveform(
    samples: np.ndarray | torch.Tensor, sample_rate_hz: int, cfg: FeatureConfig
) -> torch.Tensor:
    """Return one clip as a mono float32 tensor of ``cfg.n_samples`` at ``cfg.sample_rate_hz``.

    ``samples`` is ``(frames,)`` or ``(channels, frames)``; channels are averaged, then the clip
    is resampled and cut or zero-padded by ``cfg.crop`` (see trainers.audio).
    """
    import torch

    if isinstance(samples, np.ndarray):
        mono = torch.from_numpy(to_mono(np.asarray(samples, dtype=np.float32)))
    else:
        mono = samples.float()
        if mono.ndim == 2:
            mono = mono.mean(dim=0)
    if mono.ndim != 1:
        raise DataError(f"expected (frames,) or (channels, frames) audio, got {tuple(mono.shape)}")
    mono = resample(mono, int(sample_rate_hz), cfg.sample_rate_hz)
    return fix_length(mono, cfg.n_samples, cfg.crop)


def log_mel(batch: torch.Tensor, cfg: FeatureConfig, device: str | None = None) -> torch.Tensor:
    """Return ``(B, 1, n_mels, n_frames)`` log-mel features of ``(B, n_samples)`` waveforms."""
    import torch

    device = device or str(batch.device)
    with torch.no_grad():
        mel = _mel_module(cfg, device)(batch.to(device))
        if cfg.log_gain is not None:
            features = torch.log1p(mel * cfg.log_gain)
        else:
            features = torch.log(mel + cfg.log_offset)
    return features.unsqueeze(1)


def waveform_to_features(
    waveform: torch.Tensor, sample_rate_hz: int, cfg: FeatureConfig
) -> torch.Tensor:
    """Return log-mel features: ``(1, 1, M, T)`` for one clip, ``(B, 1, M, T)`` for a batch.

    ``waveform`` is ``(frames,)`` or ``(channels, frames)`` for one clip, or
    ``(batch, channels, frames)`` for a batch. Mono downmix, resampling, crop/pad and log-mel are
    exactly those of the feature cache. Runs on ``waveform``'s device.
    """
    import torch

    if waveform.ndim in (1, 2):
        clips = [prepare_waveform(waveform, sample_rate_hz, cfg)]
    elif waveform.ndim == 3:
        clips = [prepare_waveform(w, sample_rate_hz, cfg) for w in waveform]
    else:
        raise DataError(
            f"waveform must be (frames,), (channels, frames) or (batch, channels, frames), "
            f"got shape {tuple(waveform.shape)}"
        )
    return log_mel(torch.stack(clips), cfg, str(waveform.device))


def crop_frames(
    features: np.ndarray,
    n_frames: int,
    policy: CropPolicy = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return ``(N, 1, M, n_frames)`` windows of cached ``(N, 1, M, T)`` features, one per clip.

    The frame-level form of the crop policy, for features cached longer than the model input
    (a ``FeatureConfig`` with a larger ``clip_seconds``): ``"random"`` draws a start per clip
    (training), ``"center"``/``"start"`` are fixed (evaluation). Shorter inputs are zero-padded.
    """
    total = features.shape[-1]
    if total < n_frames:
        pad = [(0, 0)] * (features.ndim - 1) + [(0, n_frames - total)]
        return np.pad(features, pad)
    starts = [crop_start(total, n_frames, policy, rng) for _ in range(features.shape[0])]
    return np.stack([clip[..., s : s + n_frames] for clip, s in zip(features, starts)])


def chunk_frames(features: np.ndarray, n_frames: int, n_chunks: int) -> np.ndarray:
    """Return ``(N, n_chunks, 1, M, n_frames)`` evenly spaced windows of ``(N, 1, M, T)`` features.

    For evaluation by averaging a model's outputs over the chunks of each clip.
    """
    total = features.shape[-1]
    if total < n_frames:
        features = crop_frames(features, n_frames)
        total = n_frames
    starts = chunk_starts(total, n_frames, n_chunks)
    return np.stack([features[..., s : s + n_frames] for s in starts], axis=1)


# -- the cache ----------------------------------------------------------------------------------


def cache_key(
    source: Source,
    splits: Sequence[str],
    cfg: FeatureConfig,
    on_bad_audio: OnBadAudio,
    pitch_shift_semitones: float = 0.0,
) -> str:
    """Return the content hash naming the cache entry of these inputs (24 hex digits).

    A pitch shift is part of the key only when it is not 0, so unshifted entries keep theirs.
    """
    material = {
        "format": CACHE_FORMAT_VERSION,
        "kind": source.kind,
        "options": source.options,
        "labels": source.labels,
        "task": source.task,
        "clips": source.fingerprint(),
        "splits": list(splits),
        "features": cfg.to_dict(),
        "on_bad_audio": on_bad_audio,
    }
    if source.kind == "synthetic":
        from trainers.synthetic import GENERATOR_VERSION

        material["generator"] = GENERATOR_VERSION
    if pitch_shift_semitones:
        material["pitch_shift_semitones"] = float(pitch_shift_semitones)
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


_ARRAYS = ("x.npy", "y.npy", "durations_s.npy", "sample_rates_hz.npy")


def _open_entry(entry: Path, key: str, source_name: str) -> FeatureSet:
    """Return the FeatureSet stored in cache entry ``entry`` after verifying it.

    Raises:
        CacheError: the manifest is missing or unreadable, or an array's size, checksum or
            shape differs from what the manifest records.
    """
    manifest_path = entry / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    if manifest.get("format") != CACHE_FORMAT_VERSION or manifest.get("key") != key:
        raise CacheError(f"{manifest_path}: format/key mismatch")
    for name in _ARRAYS:
        path = entry / name
        recorded = manifest.get("files", {}).get(name, {})
        if not path.is_file() or path.stat().st_size != recorded.get("bytes"):
            raise CacheError(f"{path}: missing or size differs from the manifest")
        if _sha256(path) != recorded.get("sha256"):
            raise CacheError(f"{path}: checksum differs from the manifest")
    try:
        x = np.load(entry / "x.npy", mmap_mode="r")
        y = np.load(entry / "y.npy", mmap_mode="r")
        durations_s = np.load(entry / "durations_s.npy")
        sample_rates_hz = np.load(entry / "sample_rates_hz.npy")
    except (OSError, ValueError) as exc:
        raise CacheError(f"{entry}: arrays unreadable ({exc})") from exc
    counts = manifest["split_counts"]
    n = sum(counts[s] for s in SPLIT_NAMES)
    if x.shape[0] != n or y.shape[0] != n or len(manifest["paths"]) != n:
        raise CacheError(f"{entry}: {x.shape[0]} rows but the manifest lists {n} clips")
    bounds = np.cumsum([0] + [counts[s] for s in SPLIT_NAMES])
    parts = {
        name: Split(
            x=x[bounds[i] : bounds[i + 1]],
            y=y[bounds[i] : bounds[i + 1]],
            paths=manifest["paths"][bounds[i] : bounds[i + 1]],
        )
        for i, name in enumerate(SPLIT_NAMES)
    }
    return FeatureSet(
        train=parts["train"],
        valid=parts["valid"],
        test=parts["test"],
        labels=list(manifest["labels"]),
        task=manifest["task"],
        feature_config=FeatureConfig.from_dict(manifest["feature_config"]),
        source=source_name,
        cache_key=key,
        cache_path=str(entry),
        skipped=list(manifest["skipped"]),
        durations_s=durations_s,
        sample_rates_hz=sample_rates_hz,
        split_note=manifest.get("split_note", ""),
    )


def _clips_per_batch(cfg: FeatureConfig, batch_mb: float) -> int:
    """Return how many clips one featurisation batch may hold within ``batch_mb``."""
    n_bins = cfg.n_fft // 2 + 1
    # waveform + complex STFT + power + mel + log, per clip, in bytes
    per_clip = 4 * (2 * cfg.n_samples + 3 * n_bins * cfg.n_frames + 3 * cfg.n_mels * cfg.n_frames)
    return max(1, int(batch_mb * 2**20 // per_clip))


def _decode_one(
    source: Source, clip: Clip, cfg: FeatureConfig
) -> tuple[torch.Tensor, float, int] | AudioDecodeError:
    try:
        samples, sample_rate_hz = source.decode(clip)
    except AudioDecodeError as exc:
        return exc
    duration_s = samples.shape[-1] / sample_rate_hz
    return prepare_waveform(samples, sample_rate_hz, cfg), duration_s, sample_rate_hz


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _build_entry(
    source: Source,
    splits: Sequence[str],
    cfg: FeatureConfig,
    on_bad_audio: OnBadAudio,
    key: str,
    workdir: Path,
    device: str,
    progress: bool,
    batch_mb: float,
    split_ratios: Sequence[float],
    seed: int,
    pitch_shift_semitones: float = 0.0,
    min_per_split: int = MIN_CLIPS_PER_SPLIT,
) -> None:
    """Decode, featurise and write every clip of ``source`` into ``workdir`` (streaming).

    With ``pitch_shift_semitones`` each clip is pitch-shifted after resampling and crop/pad
    (``trainers.audio.pitch_shift``), before the log-mel.

    Raises:
        BadAudioError: some files are bad and ``on_bad_audio`` is ``"fail"``.
    """
    import torch

    order = [i for name in SPLIT_NAMES for i, s in enumerate(splits) if s == name]
    n_total = len(order)
    shape = (n_total, 1, cfg.n_mels, cfg.n_frames)
    partial = workdir / "x.partial.npy"
    # create the .npy (header + full size) once, then append rows with plain writes: pages
    # written through a mapping would count against this process's resident memory
    np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape).flush()
    with partial.open("rb") as handle:
        header_bytes = _npy_header_length(handle)
    label_index = {label: i for i, label in enumerate(source.labels)}
    kept: list[int] = []
    durations_s: list[float] = []
    sample_rates_hz: list[int] = []
    bad: list[tuple[str, str]] = []
    batch_size = _clips_per_batch(cfg, batch_mb)
    batches_list = list(_batches(order, batch_size))
    batches: Iterable[Sequence[int]] = batches_list
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches_list, desc=f"features {source.name}", unit="batch")
    stopped_early = False
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool, partial.open("r+b") as out:
        out.seek(header_bytes)
        for batch in batches:
            decoded = list(pool.map(lambda i: _decode_one(source, source.clips[i], cfg), batch))
            waves = []
            for i, result in zip(batch, decoded):
                if isinstance(result, AudioDecodeError):
                    bad.append((result.path, result.reason))
                    continue
                wave, duration_s, rate_hz = result
                waves.append(wave)
                kept.append(i)
                durations_s.append(duration_s)
                sample_rates_hz.append(rate_hz)
            if on_bad_audio == "fail" and len(bad) >= BadAudioError.MAX_LISTED:
                stopped_early = batch is not batches_list[-1]
                break
            if waves:
                batch_waves = torch.stack(waves)
                if pitch_shift_semitones:
                    batch_waves = pitch_shift(
                        batch_waves, cfg.sample_rate_hz, pitch_shift_semitones
                    )
                features = log_mel(batch_waves, cfg, device)
                out.write(np.ascontiguousarray(features.cpu().numpy(), dtype=np.float32).data)
    if bad and on_bad_audio == "fail":
        raise BadAudioError(bad, n_total, complete=not stopped_early)
    x_path = workdir / "x.npy"
    kept_splits = [splits[i] for i in kept]
    if bad:
        # split again over the clips that decoded, so a skipped file cannot empty a split
        kept_splits = assign_splits(
            replace(source, clips=[source.clips[i] for i in kept]),
            split_ratios,
            seed,
            min_per_split,
        )
        rows = [r for name in SPLIT_NAMES for r, s in enumerate(kept_splits) if s == name]
        _compact(partial, x_path, header_bytes, rows, shape)
        kept = [kept[r] for r in rows]
        kept_splits = [kept_splits[r] for r in rows]
        durations_s = [durations_s[r] for r in rows]
        sample_rates_hz = [sample_rates_hz[r] for r in rows]
    else:
        partial.replace(x_path)
    if source.task == "multi_label":
        y = np.zeros((len(kept), len(source.labels)), dtype=np.float32)
        for row, i in enumerate(kept):
            y[row, [label_index[lab] for lab in source.clips[i].labels]] = 1.0
    else:
        y = np.array([label_index[source.clips[i].labels[0]] for i in kept], dtype=np.int64)
    np.save(workdir / "y.npy", y)
    np.save(workdir / "durations_s.npy", np.asarray(durations_s, dtype=np.float32))
    np.save(workdir / "sample_rates_hz.npy", np.asarray(sample_rates_hz, dtype=np.int32))
    manifest = {
        "format": CACHE_FORMAT_VERSION,
        "key": key,
        "source": source.name,
        "task": source.task,
        "labels": source.labels,
        "feature_config": cfg.to_dict(),
        "on_bad_audio": on_bad_audio,
        "pitch_shift_semitones": float(pitch_shift_semitones),
        "split_note": source.official_split or "seeded stratified split",
        "split_counts": {name: kept_splits.count(name) for name in SPLIT_NAMES},
        "paths": [source.clips[i].path for i in kept],
        "skipped": [{"path": p, "reason": r} for p, r in bad],
        "files": {
            name: {"bytes": (workdir / name).stat().st_size, "sha256": _sha256(workdir / name)}
            for name in _ARRAYS
        },
    }
    (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _npy_header_length(handle: Any) -> int:
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        np.lib.format.read_array_header_1_0(handle)
    else:
        np.lib.format.read_array_header_2_0(handle)
    return int(handle.tell())


def _compact(
    partial: Path, x_path: Path, header_bytes: int, rows: Sequence[int], shape: tuple[int, ...]
) -> None:
    """Write rows ``rows`` of ``partial``, in that order, to a correctly sized ``x_path``.

    Row by row through plain reads and writes, so memory holds one row at a time.
    """
    np.lib.format.open_memmap(
        x_path, mode="w+", dtype=np.float32, shape=(len(rows), *shape[1:])
    ).flush()
    with x_path.open("rb") as handle:
        out_header = _npy_header_length(handle)
    row_bytes = int(np.prod(shape[1:])) * 4
    with partial.open("rb") as src, x_path.open("r+b") as dst:
        dst.seek(out_header)
        for row in rows:
            src.seek(header_bytes + row * row_bytes)
            dst.write(src.read(row_bytes))
    partial.unlink()


def load_features(
    data: str,
    feature_config: FeatureConfig | None = None,
    *,
    cache_dir: str | Path = ".fsnas/cache",
    on_bad_audio: OnBadAudio = "fail",
    label_regex: str | None = None,
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    batch_mb: float = 64.0,
    trainable: bool = True,
    pitch_shift_semitones: float = 0.0,
) -> FeatureSet:
    """Return the featurised train/valid/test splits of ``data``, from the cache when it holds them.

    Args:
        data: ``KIND:PATH`` (see trainers.sources), e.g. ``"fsdd:data/fsdd/recordings"``.
        feature_config: how audio becomes log-mels; ``None`` uses ``default_feature_config``.
        cache_dir: where cache entries live (one folder per content-hashed key).
        on_bad_audio: ``"fail"`` raises on undecodable files (listing up to 10); ``"skip"``
            leaves them out and records them in ``FeatureSet.skipped``.
        label_regex: for ``pattern:DIR``, the regex giving each file's label.
        split_ratios: train/valid/test shares for sources without an official split (and the
            valid share carved from an official train split that has none).
        seed: seed of the drawn split.
        device: where log-mels are computed (default: CUDA when available).
        progress: show a progress bar while building.
        batch_mb: memory budget of one featurisation batch.
        trainable: refuse, before any feature is computed, data that training cannot use:
            fewer than 2 classes or a class of fewer than 2 clips
            (``trainers.splits.check_classes``), and after the split a class with fewer than
            ``MIN_CLIPS_PER_SPLIT`` clips in train, valid or test
            (``trainers.splits.check_every_split_has_every_class``); ``fsnas data inspect``
            passes False.
        pitch_shift_semitones: shift every clip's pitch by this many semitones before the
            log-mel (``trainers.audio.pitch_shift``; robustness evaluation); each shift is its
            own cache entry.

    Raises:
        DataError: the source is malformed (a file listed twice, a class without training
            clips, with ``trainable`` too few classes or clips, or a class missing from a
            split); BadAudioError (a DataError)
            for bad files under ``"fail"``.
    """
    started = time.perf_counter()
    if on_bad_audio not in ("fail", "skip"):
        raise DataError(f"on_bad_audio must be 'fail' or 'skip', got {on_bad_audio!r}")
    source = open_source(data, label_regex=label_regex)
    cfg = feature_config or default_feature_config(source.kind)
    if not cfg.clip_seconds <= MAX_CLIP_SECONDS:
        raise DataError(
            f"feature config: clip_seconds {cfg.clip_seconds:g} s > the limit of "
            f"{MAX_CLIP_SECONDS:g} s (every clip is padded or cut to it); set "
            "data.features.clip_seconds near your clips' duration"
        )
    if trainable:
        check_classes(source)
    min_per_split = MIN_CLIPS_PER_SPLIT if trainable else 0
    splits = assign_splits(source, split_ratios, seed, min_per_split)
    key = cache_key(source, splits, cfg, on_bad_audio, pitch_shift_semitones)
    root = Path(cache_dir)
    entry = root / key
    if entry.is_dir():
        try:
            features = _open_entry(entry, key, source.name)
            features.from_cache = True
            features.seconds = time.perf_counter() - started
            _warn_if_mostly_padding(features)
            return features
        except CacheError:
            shutil.rmtree(entry, ignore_errors=True)  # corrupt or partial: rebuild below
    try:
        _build_into(
            root,
            key,
            entry,
            source,
            splits,
            cfg,
            on_bad_audio,
            device,
            progress,
            batch_mb,
            split_ratios,
            seed,
            pitch_shift_semitones,
            min_per_split,
        )
    except OSError as exc:
        # a full disk, a quota or a read-only folder: the partial entry is already removed
        raise DataError(
            f"feature cache {root.resolve()}: cannot write the entry for {source.name} "
            f"({exc.strerror or exc}); free space there or point data.cache_dir "
            "(--cache-dir) at another disk"
        ) from exc
    features = _open_entry(entry, key, source.name)
    features.seconds = time.perf_counter() - started
    _warn_if_mostly_padding(features)
    return features


# a clip shorter than clip_seconds / this is mostly padding
_PADDING_WARN_RATIO = 4.0


def _warn_if_mostly_padding(features: FeatureSet) -> None:
    """Warn when the typical clip is far shorter than ``clip_seconds`` (mostly zero padding)."""
    durations = features.durations_s
    if durations is None or len(durations) == 0:
        return
    median_s = float(np.median(durations))
    clip_s = features.feature_config.clip_seconds
    if median_s > 0 and clip_s > _PADDING_WARN_RATIO * median_s:
        padding = 100.0 * (1.0 - median_s / clip_s)
        warnings.warn(
            f"{features.source}: clip_seconds is {clip_s:g} s but the median clip lasts "
            f"{median_s:.2f} s, so the typical input is {padding:.0f} % zero padding; set "
            "data.features.clip_seconds near the clips' duration",
            FsnasWarning,
            stacklevel=3,
        )


def _build_into(
    root: Path,
    key: str,
    entry: Path,
    source: Source,
    splits: Sequence[str],
    cfg: FeatureConfig,
    on_bad_audio: OnBadAudio,
    device: str | None,
    progress: bool,
    batch_mb: float,
    split_ratios: Sequence[float],
    seed: int,
    pitch_shift_semitones: float = 0.0,
    min_per_split: int = MIN_CLIPS_PER_SPLIT,
) -> None:
    """Build the entry in a temporary folder of ``root`` and rename it to ``entry`` when done.

    Raises:
        OSError: the cache folder cannot be written (nothing of the build is left behind).
    """
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{key}.*"):  # left by a killed build; a live one is younger
        if time.time() - stale.stat().st_mtime > _STALE_BUILD_S:
            shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        _build_entry(
            source,
            splits,
            cfg,
            on_bad_audio,
            key,
            workdir,
            device or default_device(),
            progress,
            batch_mb,
            split_ratios,
            seed,
            pitch_shift_semitones,
            min_per_split,
        )
        try:
            workdir.rename(entry)
        except OSError:
            if not entry.is_dir():  # not a concurrent builder that finished first
                raise
    finally:
        if workdir.exists():
            shutil.rmtree(workdir, ignore_errors=True)
