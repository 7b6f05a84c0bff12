"""Decoding (good and bad files), mono downmix, resampling and the crop/pad policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainers.audio_fixtures import make_bad_audio_folder, write_tone
from trainers.audio import chunk_starts, crop_start, fix_length, read_audio, resample, to_mono
from trainers.errors import AudioDecodeError, DataError


def test_reads_24_bit_wav_and_stereo_flac(tmp_path: Path) -> None:
    files = make_bad_audio_folder(tmp_path)
    samples, rate_hz = read_audio(files["pcm24"])
    assert (samples.shape, rate_hz, samples.dtype) == ((1, 3200), 16000, np.float32)
    assert np.abs(samples).max() == pytest.approx(0.3, abs=1e-4)
    stereo, rate_hz = read_audio(files["stereo"])
    assert (stereo.shape, rate_hz) == ((2, 22050), 44100)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("truncated", "truncated WAV"), ("empty", "empty file"), ("text", "not decodable audio")],
)
def test_bad_files_raise_with_path_and_reason(tmp_path: Path, name: str, reason: str) -> None:
    files = make_bad_audio_folder(tmp_path)
    with pytest.raises(AudioDecodeError) as info:
        read_audio(files[name])
    assert info.value.path == str(files[name])
    assert reason in info.value.reason
    assert isinstance(info.value, DataError)


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="cannot read file"):
        read_audio(tmp_path / "nope.wav")


def test_complete_wav_is_not_flagged_truncated(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "ok.wav", seconds=0.3)
    assert read_audio(path)[0].shape == (1, 2400)


def test_to_mono_averages_channels() -> None:
    stereo = np.stack([np.ones(4, np.float32), -np.ones(4, np.float32) * 3])
    assert np.allclose(to_mono(stereo), -1.0)
    assert to_mono(np.ones(3, np.float32)).shape == (3,)


def test_resample_changes_length_by_the_rate_ratio() -> None:
    wave = torch.sin(torch.linspace(0, 100, 44100))
    assert resample(wave, 44100, 16000).shape == (16000,)
    assert resample(wave, 16000, 16000) is wave


def test_fix_length_pads_at_the_end_and_crops_by_policy() -> None:
    wave = torch.arange(10, dtype=torch.float32)
    assert fix_length(wave, 12).tolist() == [*range(10), 0, 0]
    assert fix_length(wave, 4, "center").tolist() == [3, 4, 5, 6]
    assert fix_length(wave, 4, "start").tolist() == [0, 1, 2, 3]
    starts = {crop_start(10, 4, "random", np.random.default_rng(s)) for s in range(50)}
    assert starts <= set(range(7)) and len(starts) > 3
    with pytest.raises(ValueError, match="crop policy"):
        crop_start(10, 4, "middle")  # type: ignore[arg-type]


def test_chunk_starts_cover_the_clip_evenly() -> None:
    assert chunk_starts(100, 40, 3) == [0, 30, 60]
    assert chunk_starts(100, 40, 1) == [30]
    assert chunk_starts(20, 40, 2) == [0, 0]
