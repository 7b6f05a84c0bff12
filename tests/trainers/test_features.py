"""Log-mel features: every layout featurises, the cache is reused, verified and rebuilt,
bad audio fails or is skipped, and building streams in bounded memory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from tests.trainers import audio_fixtures as fx
from trainers.audio import read_audio
from trainers.errors import BadAudioError, DataError
from trainers.features import (
    DEFAULT_FEATURE_CONFIGS,
    chunk_frames,
    crop_frames,
    default_feature_config,
    load_features,
    waveform_to_features,
)
from trainers.featureset import FeatureConfig
from trainers.sources import KINDS, Source, open_source

SMALL = FeatureConfig(sample_rate_hz=8000, clip_seconds=0.25, n_fft=256, hop_length=64, n_mels=32)


class DecodeCounter:
    """Counts Source.decode calls (wraps the real one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = Source.decode

        def counting(source: Source, clip):  # type: ignore[no-untyped-def]
            self.calls += 1
            return real(source, clip)

        monkeypatch.setattr(Source, "decode", counting)


def test_every_kind_has_a_default_config() -> None:
    assert set(DEFAULT_FEATURE_CONFIGS) == set(KINDS)
    fsdd = default_feature_config("fsdd")
    assert (fsdd.sample_rate_hz, fsdd.n_mels, fsdd.n_frames) == (8000, 64, 101)
    assert default_feature_config("synthetic").n_frames == 101
    assert default_feature_config("magnatagatune").n_frames == 187
    with pytest.raises(DataError, match="no default feature config"):
        default_feature_config("mp3s")


@pytest.mark.parametrize("kind", sorted(fx.LAYOUTS))
def test_every_layout_featurises_with_its_default_config(tmp_path: Path, kind: str) -> None:
    data = fx.LAYOUTS[kind](tmp_path / "data")
    regex = fx.PATTERN_REGEX if kind == "pattern" else None
    # (the fixtures' rare classes have a clip or two: featurising is what is tested here)
    features = load_features(data, cache_dir=tmp_path / "cache", label_regex=regex, trainable=False)
    cfg = default_feature_config(kind)
    n = sum(len(s) for s in (features.train, features.valid, features.test))
    assert n == len(open_source(data, label_regex=regex).clips) > 0
    assert features.train.x.shape[1:] == (1, cfg.n_mels, cfg.n_frames)
    assert features.train.x.dtype == np.float32 and np.isfinite(features.train.x).all()
    assert len(features.test) > 0 and len(features.valid) > 0
    if features.task == "multi_label":
        assert features.train.y.shape == (len(features.train), features.n_classes)
        assert features.train.y.dtype == np.float32
    else:
        assert features.train.y.dtype == np.int64
        assert set(features.train.y.tolist()) <= set(range(features.n_classes))


def test_second_run_decodes_no_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = fx.make_folder(tmp_path / "data")
    counter = DecodeCounter(monkeypatch)
    first = load_features(data, SMALL, cache_dir=tmp_path / "cache")
    assert counter.calls == 10 and not first.from_cache
    second = load_features(data, SMALL, cache_dir=tmp_path / "cache")
    assert counter.calls == 10 and second.from_cache
    assert second.cache_key == first.cache_key
    assert isinstance(second.train.x, np.memmap)
    np.testing.assert_array_equal(first.train.x, second.train.x)


def test_cache_key_follows_config_files_and_split(tmp_path: Path) -> None:
    data = fx.make_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    key = load_features(data, SMALL, cache_dir=cache).cache_key
    assert load_features(data, SMALL, cache_dir=cache, seed=1).cache_key != key
    other_cfg = FeatureConfig(**{**SMALL.to_dict(), "n_mels": 16})
    assert load_features(data, other_cfg, cache_dir=cache).cache_key != key
    fx.write_tone(tmp_path / "data" / "cat" / "cat0.wav", 999)  # same name, new content
    assert load_features(data, SMALL, cache_dir=cache).cache_key != key


@pytest.mark.parametrize("damage", ["flip_x", "truncate_x", "no_manifest", "bad_manifest"])
def test_corrupt_cache_is_detected_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    data = fx.make_folder(tmp_path / "data")
    original = load_features(data, SMALL, cache_dir=tmp_path / "cache")
    expected = np.array(original.train.x)
    entry = Path(original.cache_path)
    x_path = entry / "x.npy"
    del original
    if damage == "flip_x":
        raw = bytearray(x_path.read_bytes())
        raw[-100] ^= 0xFF
        x_path.write_bytes(bytes(raw))
    elif damage == "truncate_x":
        x_path.write_bytes(x_path.read_bytes()[:-4096])
    elif damage == "no_manifest":
        (entry / "manifest.json").unlink()
    else:
        (entry / "manifest.json").write_text("{not json")
    counter = DecodeCounter(monkeypatch)
    rebuilt = load_features(data, SMALL, cache_dir=tmp_path / "cache")
    assert counter.calls == 10 and not rebuilt.from_cache
    np.testing.assert_array_equal(rebuilt.train.x, expected)
    assert load_features(data, SMALL, cache_dir=tmp_path / "cache").from_cache


def test_bad_audio_fails_naming_the_three_bad_files(tmp_path: Path) -> None:
    files = fx.make_bad_audio_folder(tmp_path / "data")
    with pytest.raises(BadAudioError) as info:
        load_features(f"folder:{tmp_path / 'data'}", cache_dir=tmp_path / "cache", trainable=False)
    message = str(info.value)
    assert "3 of 7 audio files could not be decoded" in message
    for name in ("truncated", "empty", "text"):
        assert str(files[name]) in message
    for name in ("good_a", "pcm24", "stereo"):
        assert str(files[name]) not in message
    assert not any((tmp_path / "cache").iterdir())  # nothing half-built is left behind


def test_bad_audio_skip_reports_and_converts_24_bit_and_stereo(tmp_path: Path) -> None:
    files = fx.make_bad_audio_folder(tmp_path / "data")
    features = load_features(
        f"folder:{tmp_path / 'data'}",
        SMALL,
        cache_dir=tmp_path / "cache",
        on_bad_audio="skip",
        trainable=False,  # the acceptance folder holds one class
    )
    skipped = {item["path"]: item["reason"] for item in features.skipped}
    assert set(skipped) == {str(files[n]) for n in ("truncated", "empty", "text")}
    assert "truncated WAV" in skipped[str(files["truncated"])]
    assert "empty file" in skipped[str(files["empty"])]
    paths = [p for s in (features.train, features.valid, features.test) for p in s.paths]
    assert sorted(paths) == sorted(str(files[n]) for n in ("good_a", "good_b", "pcm24", "stereo"))
    assert features.sample_rates_hz is not None
    assert sorted(features.sample_rates_hz.tolist()) == [16000, 16000, 16000, 44100]
    # the split is drawn over the clips that decoded: no split is left empty by a bad file
    assert (len(features.train), len(features.valid), len(features.test)) == (2, 1, 1)
    # the stereo 44.1 kHz FLAC was downmixed and resampled: same row as the one-clip transform
    split = next(
        s
        for s in (features.train, features.valid, features.test)
        if str(files["stereo"]) in s.paths
    )
    row = split.paths.index(str(files["stereo"]))
    samples, rate_hz = read_audio(files["stereo"])
    expected = waveform_to_features(torch.from_numpy(samples), rate_hz, SMALL)
    np.testing.assert_allclose(split.x[row], expected[0].numpy(), atol=1e-4)


def test_waveform_to_features_shapes_and_fsdd_anchor_transform() -> None:
    cfg = default_feature_config("fsdd")
    wave = torch.randn(12000) * 0.1  # 1.5 s at 8 kHz: the first second is kept
    one = waveform_to_features(wave, 8000, cfg)
    assert one.shape == (1, 1, 64, 101)
    # anchor_gpu.py: log1p(100 * MelSpectrogram(8000, n_fft 512, hop 80, 64 mels)(a[:8000]))
    mel = torchaudio.transforms.MelSpectrogram(8000, n_fft=512, hop_length=80, n_mels=64)
    torch.testing.assert_close(one[0, 0], torch.log1p(mel(wave[:8000]) * 100))
    batch = waveform_to_features(torch.randn(3, 2, 4000), 16000, cfg)
    assert batch.shape == (3, 1, 64, 101)
    assert waveform_to_features(torch.randn(2, 4000), 16000, cfg).shape == (1, 1, 64, 101)
    with pytest.raises(DataError, match="waveform must be"):
        waveform_to_features(torch.randn(1, 1, 1, 10), 8000, cfg)


def test_bad_policy_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="on_bad_audio"):
        load_features("synthetic", cache_dir=tmp_path, on_bad_audio="ignore")  # type: ignore[arg-type]


_STREAM_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from trainers.featureset import FeatureConfig
    from trainers.features import load_features
    root = sys.argv[1]
    # 20 s clips, 128 mels x 10001 frames: 5.1 MB of features per clip
    cfg = FeatureConfig(sample_rate_hz=16000, clip_seconds=20.0, n_fft=512, hop_length=32,
                        n_mels=128)
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_features(f"folder:{root}/small", cfg, cache_dir=f"{root}/cache", batch_mb=16,
                  trainable=False)
    before = peak_mb()
    fs = load_features(f"folder:{root}/big", cfg, cache_dir=f"{root}/cache", batch_mb=16,
                       trainable=False)
    after = peak_mb()
    total = sum(s.x.nbytes for s in (fs.train, fs.valid, fs.test)) / 2**20
    checksum = float(sum(float(s.x[:, :, :, :50].sum()) for s in (fs.train, fs.valid, fs.test)))
    print(json.dumps({"before_mb": before, "after_mb": after, "features_mb": total,
                      "memmap": type(fs.train.x).__name__, "finite": checksum == checksum}))
    """
)


def test_cache_build_streams_in_bounded_memory(tmp_path: Path) -> None:
    allowed_growth_mb = 100.0
    clip = fx.write_tone(tmp_path / "one.wav", 440, seconds=20.0, sample_rate_hz=16000)
    for i in range(2):
        (tmp_path / "small" / "a").mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / "small" / "a" / f"{i}.wav")
    for label in ("a", "b"):
        (tmp_path / "big" / label).mkdir(parents=True)
        for i in range(32):
            shutil.copy(clip, tmp_path / "big" / label / f"{i}.wav")
    script = tmp_path / "stream.py"
    script.write_text(_STREAM_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # the dataset's features are 3x what the build may add to the peak resident memory
    assert report["features_mb"] > 3 * allowed_growth_mb
    assert report["after_mb"] - report["before_mb"] < allowed_growth_mb, report
    assert report["memmap"] == "memmap" and report["finite"]


def test_fail_lists_at_most_ten_offenders(tmp_path: Path) -> None:
    fx.make_folder(tmp_path / "data")
    for i in range(12):
        (tmp_path / "data" / "cat" / f"broken{i:02d}.wav").write_bytes(b"")
    with pytest.raises(BadAudioError) as info:
        load_features(f"folder:{tmp_path / 'data'}", SMALL, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert message.startswith("12 of 22 audio files could not be decoded")
    assert message.count("empty file") == 10 and "and 2 more" in message


def test_frame_crops_for_training_and_chunks_for_evaluation() -> None:
    features = np.arange(2 * 3 * 10, dtype=np.float32).reshape(2, 1, 3, 10)
    centre = crop_frames(features, 4)
    np.testing.assert_array_equal(centre, features[..., 3:7])
    starts = {
        int(crop_frames(features, 4, "random", np.random.default_rng(s))[0, 0, 0, 0])
        for s in range(30)
    }
    assert starts <= set(range(7)) and len(starts) > 3
    assert crop_frames(features, 12).shape == (2, 1, 3, 12)
    chunks = chunk_frames(features, 4, 3)
    assert chunks.shape == (2, 3, 1, 3, 4)
    np.testing.assert_array_equal(chunks[:, 2], features[..., 6:10])
