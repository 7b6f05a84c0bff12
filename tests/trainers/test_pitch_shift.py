"""``trainers.audio.pitch_shift``: a pure tone's mel peak moves to the hand-derived bin."""

from __future__ import annotations

import math

import torch
import torchaudio.functional as AF

from trainers.audio import pitch_shift
from trainers.features import log_mel
from trainers.featureset import FeatureConfig

CONFIG = FeatureConfig()  # 16 kHz, n_fft 512, 64 mels up to 8 kHz (torchaudio's HTK mel scale)


def _peak_bin(wave: torch.Tensor) -> int:
    features = log_mel(wave[None, :], CONFIG, "cpu")[0, 0]  # (64, frames)
    return int(features[:, 10:-10].mean(dim=1).argmax())  # away from the edges of the clip


def _tone(hz: float) -> torch.Tensor:
    t = torch.arange(CONFIG.n_samples) / CONFIG.sample_rate_hz
    return 0.5 * torch.sin(2 * math.pi * hz * t)


def test_a_pure_tone_moves_by_the_expected_mel_bins() -> None:
    # By hand: mel(f) = 2595 log10(1 + f / 700); 64 triangular filters whose centres sit at
    # (m + 1) * mel(8000) / 65 = (m + 1) * 43.69 mel. 1000 Hz = 1000.0 mel -> nearest centre
    # m = 22 (1005.0); an octave up, 2000 Hz = 1521.4 mel -> m = 34 (1529.3); an octave down,
    # 500 Hz = 607.4 mel -> m = 13 (611.7).
    tone = _tone(1000.0)
    assert _peak_bin(tone) == 22
    assert _peak_bin(pitch_shift(tone, CONFIG.sample_rate_hz, 12)) == 34
    assert _peak_bin(pitch_shift(tone, CONFIG.sample_rate_hz, -12)) == 13
    # the same bins as a tone synthesised at the shifted pitch, and as torchaudio's own
    # pitch_shift (slow for most ratios, fast for an octave)
    assert _peak_bin(_tone(2000.0)) == 34
    assert _peak_bin(AF.pitch_shift(tone, CONFIG.sample_rate_hz, 12)) == 34


def test_shape_and_duration_are_kept_and_zero_is_the_identity() -> None:
    batch = torch.randn(3, 2, 8000)
    for semitones in (-4, 2.5, 4):
        shifted = pitch_shift(batch, 8000, semitones)
        assert shifted.shape == batch.shape
        assert not torch.allclose(shifted, batch)
    assert pitch_shift(batch, 8000, 0) is batch


def test_a_four_semitone_shift_matches_the_frequency_ratio() -> None:
    tone = _tone(440.0)
    shifted = pitch_shift(tone, CONFIG.sample_rate_hz, 4)[2000:14000]
    spectrum = torch.fft.rfft(shifted * torch.hann_window(shifted.numel())).abs()
    peak_hz = float(spectrum.argmax()) * CONFIG.sample_rate_hz / shifted.numel()
    expected_hz = 440.0 * 2 ** (4 / 12)  # 554.4 Hz
    assert abs(peak_hz - expected_hz) < 2.0  # one FFT bin is 1.33 Hz
