"""Tiny on-disk datasets in every layout fsnas reads (written with soundfile into a tmp dir)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(
    path: Path,
    freq_hz: float = 440.0,
    seconds: float = 0.2,
    sample_rate_hz: int = 8000,
    channels: int = 1,
    subtype: str | None = None,
) -> Path:
    """Write a sine tone with soundfile (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    tone = (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(str(path), data, sample_rate_hz, subtype=subtype)
    return path


def make_folder(root: Path) -> str:
    for c, label in enumerate(["cat", "dog"]):
        for i in range(5):
            write_tone(root / label / f"{label}{i}.wav", 300 + 200 * c + 10 * i)
    return f"folder:{root}"


def make_csv(root: Path) -> str:
    rows = ["path,label,split"]
    for i in range(6):
        name = f"clips/c{i}.wav"
        write_tone(root / name, 300 + 50 * i)
        label = "a;b" if i % 3 == 0 else ("a" if i % 3 == 1 else "b")
        rows.append(f"{name},{label},{['train', 'train', 'valid', 'test', 'train', 'test'][i]}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{root / 'manifest.csv'}"


def make_pattern(root: Path) -> str:
    for label in ("kick", "snare"):
        for speaker in ("s1", "s2", "s3"):
            for i in range(2):
                write_tone(root / "raw" / f"{label}-{speaker}-{i}.wav", 200 + 100 * i)
    return f"pattern:{root}"


PATTERN_REGEX = r"(?P<label>[a-z]+)-(?P<group>s\d)-"


def make_fsdd(root: Path) -> str:
    for digit in range(3):
        for speaker in ("jackson", "nicolas"):
            for index in range(8):
                write_tone(
                    root / "recordings" / f"{digit}_{speaker}_{index}.wav", 200 + 100 * digit
                )
    return f"fsdd:{root}"


def make_esc50(root: Path) -> str:
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category in enumerate(["dog", "rain"]):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            write_tone(root / "audio" / name, 300 + 100 * target)
            rows.append(f"{name},{fold},{target},{category},False,{100 + target},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return f"esc50:{root}"


def make_urbansound8k(root: Path) -> str:
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for fold in range(1, 11):
        for class_id, name in enumerate(["siren", "drilling"]):
            file = f"{100 + fold}-{class_id}-0-0.wav"
            write_tone(root / "audio" / f"fold{fold}" / file, 250 + 150 * class_id)
            rows.append(f"{file},{100 + fold},0,0.2,1,{fold},{class_id},{name}")
    (root / "metadata").mkdir()
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    return f"urbansound8k:{root}"


def make_gtzan(root: Path) -> str:
    for g, genre in enumerate(["blues", "jazz"]):
        for i in range(10):
            write_tone(root / "genres_original" / genre / f"{genre}.{i:05d}.wav", 200 + 100 * g)
    return f"gtzan:{root}"


def make_speech_commands(root: Path) -> str:
    for w, word in enumerate(["yes", "no"]):
        for speaker in ("aaaa1111", "bbbb2222", "cccc3333"):
            write_tone(root / word / f"{speaker}_nohash_0.wav", 300 + 200 * w)
    write_tone(root / "_background_noise_" / "white.wav", 1000, seconds=1.0)
    (root / "validation_list.txt").write_text(
        "yes/bbbb2222_nohash_0.wav\nno/bbbb2222_nohash_0.wav\n"
    )
    (root / "testing_list.txt").write_text("yes/cccc3333_nohash_0.wav\nno/cccc3333_nohash_0.wav\n")
    return f"speech_commands:{root}"


def make_nsynth(root: Path) -> str:
    for split in ("train", "valid", "test"):
        examples = {}
        for family in ("guitar", "organ"):
            for pitch in (60, 64):
                note = f"{family}_acoustic_001-0{pitch}-100"
                write_tone(root / f"nsynth-{split}" / "audio" / f"{note}.wav", 4 * pitch)
                examples[note] = {
                    "instrument_family_str": family,
                    "instrument_str": f"{family}_acoustic_001",
                    "pitch": pitch,
                }
        (root / f"nsynth-{split}" / "examples.json").write_text(json.dumps(examples))
    return f"nsynth:{root}"


def make_magnatagatune(root: Path) -> str:
    tags = ["guitar", "rock", "piano", "rare"]
    lines = ["\t".join(['"clip_id"', *[f'"{t}"' for t in tags], '"mp3_path"'])]
    for i, folder in enumerate("0123456789abcdef"):
        mp3 = f"{folder}/track{i}-0-29.mp3"
        write_tone(root / "mp3" / mp3, 200 + 20 * i)
        values = [int(i % 2 == 0), int(i % 3 == 0), int(i % 2 == 1), int(i == 5)]
        lines.append("\t".join([f'"{i}"', *[f'"{v}"' for v in values], f'"{mp3}"']))
    (root / "annotations_final.csv").write_text("\n".join(lines) + "\n")
    return f"magnatagatune:{root}"


LAYOUTS: dict[str, Callable[[Path], str]] = {
    "folder": make_folder,
    "csv": make_csv,
    "pattern": make_pattern,
    "fsdd": make_fsdd,
    "esc50": make_esc50,
    "urbansound8k": make_urbansound8k,
    "gtzan": make_gtzan,
    "speech_commands": make_speech_commands,
    "nsynth": make_nsynth,
    "magnatagatune": make_magnatagatune,
}


def make_bad_audio_folder(root: Path) -> dict[str, Path]:
    """Write the acceptance folder: 3 bad files, a 24-bit WAV, a stereo 44.1 kHz FLAC, 2 good."""
    files = {
        "good_a": write_tone(root / "tones" / "good_a.wav", 300, sample_rate_hz=16000),
        "good_b": write_tone(root / "tones" / "good_b.wav", 500, sample_rate_hz=16000),
        "pcm24": write_tone(
            root / "tones" / "pcm24.wav", 400, sample_rate_hz=16000, subtype="PCM_24"
        ),
        "stereo": write_tone(
            root / "tones" / "stereo.flac", 600, seconds=0.5, sample_rate_hz=44100, channels=2
        ),
    }
    whole = write_tone(root / "tones" / "truncated.wav", 700, seconds=0.5, sample_rate_hz=16000)
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])
    files["truncated"] = whole
    files["empty"] = root / "tones" / "empty.wav"
    files["empty"].write_bytes(b"")
    files["text"] = root / "tones" / "notes.wav"
    files["text"].write_text("this is a text file, not audio\n")
    return files
