"""The embedded default dataset: seeded, procedurally generated clips that need no download.

Ten classes of one-second clips (16 kHz by default) in two groups, built so that filter shape
matters:

- *timbre* classes (``TIMBRE_CLASSES``) differ in spectral envelope, harmonic structure and
  attack/decay. Every note is played at a random pitch over three octaves (110-880 Hz), so a
  model must be pitch-invariant; four of them share one sustained envelope and two share one
  percussive envelope, so time alone cannot tell them apart.
- *temporal* classes (``TEMPORAL_CLASSES``) share one random-timbre distribution and differ only
  in temporal pattern: tremolo rate (slow vs fast) or rhythm (even vs dotted).

Every clip has random loudness, onset, vibrato and background noise (5-25 dB SNR). A clip is a
pure function of (seed, class, index), so clips are rendered one at a time (bounded memory) and
the set is identical on every machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainers.errors import DataError

# Bump when the generator changes: it is part of the feature-cache key.
GENERATOR_VERSION = 1

TIMBRE_CLASSES: tuple[str, ...] = ("flute", "clarinet", "brass", "vowel", "pluck", "bell")
TEMPORAL_CLASSES: tuple[str, ...] = (
    "tremolo_slow",
    "tremolo_fast",
    "rhythm_even",
    "rhythm_dotted",
)
CLASSES: tuple[str, ...] = TIMBRE_CLASSES + TEMPORAL_CLASSES

F0_RANGE_HZ = (110.0, 880.0)  # three octaves
_TABLE_SIZE = 4096


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the synthetic set (``synthetic:clips_per_class=50,seed=1``)."""

    clips_per_class: int = 200
    seed: int = 0
    sample_rate_hz: int = 16000
    clip_seconds: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def clip_ids(config: SyntheticConfig) -> Iterator[tuple[str, str]]:
    """Yield ``(clip_id, label)`` for every clip, class by class."""
    if config.clips_per_class < 1:
        raise DataError(f"synthetic: clips_per_class must be >= 1, got {config.clips_per_class}")
    for label in CLASSES:
        for index in range(config.clips_per_class):
            yield f"synthetic/{label}/{index:05d}", label


def render_clip(clip_id: str, **options: Any) -> tuple[np.ndarray, int]:
    """Return ``(samples (1, n) float32, sample_rate_hz)`` of the clip named ``clip_id``.

    Raises:
        DataError: ``clip_id`` is not ``synthetic/<class>/<index>``.
    """
    config = SyntheticConfig(**options)
    parts = clip_id.split("/")
    if len(parts) != 3 or parts[0] != "synthetic" or parts[1] not in CLASSES:
        raise DataError(f"synthetic clip id {clip_id!r}: expected synthetic/<class>/<index>")
    label, index = parts[1], int(parts[2])
    samples = render(label, index, config)
    return samples[None, :], config.sample_rate_hz


def render(label: str, index: int, config: SyntheticConfig) -> np.ndarray:
    """Return the mono float32 waveform of clip ``index`` of class ``label``."""
    rng = np.random.default_rng([config.seed, CLASSES.index(label), index, GENERATOR_VERSION])
    sr = config.sample_rate_hz
    n = round(sr * config.clip_seconds)
    t = np.arange(n) / sr
    f0 = float(np.exp(rng.uniform(np.log(F0_RANGE_HZ[0]), np.log(F0_RANGE_HZ[1]))))
    vibrato = 1.0 + rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * rng.uniform(4.0, 6.5) * t)
    f0_track = f0 * vibrato
    if label in TIMBRE_CLASSES:
        tone = _timbre_note(label, f0_track, t, rng, sr)
    else:
        tone = _temporal_note(label, f0_track, t, rng, sr)
    tone /= np.sqrt(np.mean(tone**2)) + 1e-9
    snr_db = rng.uniform(5.0, 25.0)
    noise = _coloured_noise(n, rng) * 10 ** (-snr_db / 20)
    clip = tone + noise
    clip *= rng.uniform(0.1, 0.9) / (np.max(np.abs(clip)) + 1e-9)
    return clip.astype(np.float32)


# -- building blocks ---------------------------------------------------------------------------


def _wavetable(
    amps: np.ndarray, f0_track: np.ndarray, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """Return a harmonic tone with harmonic amplitudes ``amps`` following ``f0_track``."""
    k = np.arange(1, len(amps) + 1)
    amps = np.where(k * f0_track.max() < 0.45 * sr, amps, 0.0)  # no aliasing
    phases = rng.uniform(0, 2 * np.pi, len(amps))
    # one period of sum_k a_k sin(k x + phase_k), built in the frequency domain (fast)
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[k] = 0.5 * _TABLE_SIZE * amps * np.exp(1j * (phases - 0.5 * np.pi))
    table = np.fft.irfft(spectrum, _TABLE_SIZE)
    cycles = np.cumsum(f0_track) / sr + rng.uniform()
    position = (cycles * _TABLE_SIZE) % _TABLE_SIZE
    lower = position.astype(np.int64)
    frac = position - lower
    return table[lower] * (1 - frac) + table[(lower + 1) % _TABLE_SIZE] * frac


def _sustain_envelope(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return a note envelope: random onset, 20-80 ms attack, held, 50-150 ms release."""
    onset = rng.uniform(0.0, 0.15)
    attack = rng.uniform(0.02, 0.08)
    end = rng.uniform(0.6, 0.95)
    release = rng.uniform(0.05, 0.15)
    rise = np.clip((t - onset) / attack, 0, 1)
    fall = np.clip((end - t) / release, 0, 1)
    return rise * fall


def _percussive_envelope(t: np.ndarray, rng: np.random.Generator, tau_s: float) -> np.ndarray:
    onset = rng.uniform(0.0, 0.15)
    dt = t - onset
    return np.where(dt >= 0, np.exp(-np.maximum(dt, 0) / tau_s), 0.0) * np.clip(dt / 0.003, 0, 1)


def _formant_amps(
    f0: float, n_harmonics: int, formants: list[tuple[float, float, float]]
) -> np.ndarray:
    freqs = f0 * np.arange(1, n_harmonics + 1)
    amps = np.full(n_harmonics, 0.02)
    for centre_hz, width_hz, gain in formants:
        amps += gain * np.exp(-0.5 * ((freqs - centre_hz) / width_hz) ** 2)
    return amps


def _timbre_note(
    label: str, f0_track: np.ndarray, t: np.ndarray, rng: np.random.Generator, sr: int
) -> np.ndarray:
    f0 = float(f0_track.mean())
    k = np.arange(1, 41, dtype=np.float64)
    jitter = rng.uniform(0.8, 1.25, len(k))  # no two notes of a class are spectrally identical
    if label == "flute":
        amps = k**-2.5 * jitter
        tone = _wavetable(amps, f0_track, sr, rng)
        tone += 0.05 * _coloured_noise(len(t), rng)  # breath
        return tone * _sustain_envelope(t, rng)
    if label == "clarinet":
        amps = np.where(k % 2 == 1, 1.0 / k, 0.03 / k) * jitter
        return _wavetable(amps, f0_track, sr, rng) * _sustain_envelope(t, rng)
    if label == "brass":
        amps = k**-0.6 * jitter
        return _wavetable(amps, f0_track, sr, rng) * _sustain_envelope(t, rng)
    if label == "vowel":
        amps = _formant_amps(
            f0, len(k), [(730.0, 160.0, 1.0), (1090.0, 180.0, 0.6), (2440.0, 250.0, 0.3)]
        )
        return _wavetable(amps * jitter, f0_track, sr, rng) * _sustain_envelope(t, rng)
    tau_s = rng.uniform(0.12, 0.35)
    if label == "pluck":
        pluck_position = rng.uniform(0.15, 0.3)
        amps = np.abs(np.sin(np.pi * k * pluck_position)) / k * jitter
        low = _wavetable(np.where(k <= 4, amps, 0.0), f0_track, sr, rng)
        high = _wavetable(np.where(k > 4, amps, 0.0), f0_track, sr, rng)
        base = _percussive_envelope(t, rng, tau_s)
        # higher harmonics die away faster, as on a string
        return low * base + high * base**2.5
    # bell: inharmonic partials (minor-third bell), each with its own decay
    ratios = np.array([0.5, 1.0, 1.19, 1.56, 2.0, 2.51, 2.66, 3.01, 4.1])
    gains = np.array([0.6, 1.0, 0.8, 0.6, 0.5, 0.35, 0.3, 0.25, 0.2]) * rng.uniform(0.8, 1.25, 9)
    base = _percussive_envelope(t, rng, tau_s)
    tone = np.zeros_like(t)
    for ratio, gain in zip(ratios, gains):
        if ratio * f0 < 0.45 * sr:
            phase = 2 * np.pi * np.cumsum(f0_track * ratio) / sr + rng.uniform(0, 2 * np.pi)
            tone += gain * np.sin(phase) * base ** (0.6 + 0.4 * ratio)
    return tone


def _temporal_note(
    label: str, f0_track: np.ndarray, t: np.ndarray, rng: np.random.Generator, sr: int
) -> np.ndarray:
    # one random timbre, drawn from the same distribution for every temporal class
    k = np.arange(1, 41, dtype=np.float64)
    rolloff = rng.uniform(0.7, 2.2)
    odd_even = rng.uniform(0.3, 1.0)
    amps = k**-rolloff * np.where(k % 2 == 0, odd_even, 1.0) * rng.uniform(0.8, 1.25, len(k))
    tone = _wavetable(amps, f0_track, sr, rng)
    if label.startswith("tremolo"):
        rate_hz = rng.uniform(2.5, 4.5) if label == "tremolo_slow" else rng.uniform(8.0, 12.0)
        depth = rng.uniform(0.7, 1.0)
        phase = rng.uniform(0, 2 * np.pi)
        modulation = 1 - depth * 0.5 * (1 + np.cos(2 * np.pi * rate_hz * t + phase))
        onset = rng.uniform(0.0, 0.1)
        return tone * modulation * np.clip((t - onset) / 0.03, 0, 1)
    # rhythm: the same short note re-struck on an even or a dotted (long-short) pattern
    beat_s = rng.uniform(0.2, 0.26)
    pattern = [0.0, 1.0, 2.0, 3.0] if label == "rhythm_even" else [0.0, 1.5, 2.0, 3.5]
    start = rng.uniform(0.0, 0.12)
    note_tau_s = rng.uniform(0.05, 0.09)
    envelope = np.zeros_like(t)
    for beat in pattern:
        dt = t - (start + beat * beat_s)
        envelope += np.where(dt >= 0, np.exp(-np.maximum(dt, 0) / note_tau_s), 0.0) * np.clip(
            dt / 0.004, 0, 1
        )
    return tone * envelope


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return unit-RMS noise with a random spectral tilt between white and pink."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.arange(n // 2 + 1, dtype=np.float64)
    freqs[0] = 1.0
    spectrum *= freqs ** (-0.5 * rng.uniform(0.0, 1.0))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)
