"""``fsnas evaluate DIR --data KIND:PATH``: metrics on another labelled CSV, unknown labels,
per-shift rows with ``--pitch-shift``, and one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nas.bundle import load_exported
from nas.cli import main
from tests.nas.test_export import TONE_LABELS, tone, tone_bundle
from trainers.metrics import task_metrics


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_bundle(tmp_path_factory).directory


def _csv(folder: Path, labels: list[str], per_class: int = 4, seed: int = 3) -> Path:
    """Write WAVs at 16 kHz (the bundle was trained at 8 kHz) and a manifest without splits."""
    rng = np.random.default_rng(seed)
    rows = ["path,label"]
    for label in labels:
        for i in range(per_class):
            name = f"{label}_{i}.wav"
            wave = tone(label if label in TONE_LABELS else "mid", 16000, 0.5, rng)
            sf.write(folder / name, wave, 16000, subtype="PCM_16")
            rows.append(f"{name},{label}")
    manifest = folder / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest


def test_evaluate_another_csv_prints_metrics_that_match_the_loader(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # two of the bundle's three labels, in another order: matched by name
    manifest = _csv(tmp_path, ["mid", "low"])
    cache = str(tmp_path / "cache")
    args = ["evaluate", str(bundle_dir), "--data", f"csv:{manifest}", "--split", "all"]
    assert main([*args, "--cache-dir", cache, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"] == ["low", "mid"] and out["task"] == "single_label"
    assert [row["semitones"] for row in out["pitch_shift"]] == [0.0]

    # the same number by hand: the loader's predictions on each file
    bundle = load_exported(bundle_dir)
    hits = []
    for wav in sorted(tmp_path.glob("*.wav")):
        label = wav.name.split("_")[0]
        probabilities = bundle.predict_file(wav)
        hits.append(bundle.labels[int(torch.argmax(probabilities))] == label)
    assert out["metrics"]["accuracy"] == pytest.approx(float(np.mean(hits)))
    assert out["metrics"]["accuracy"] > 0.7  # the tones are easy: a real model, not chance

    assert main([*args, "--cache-dir", cache]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "8 clips" in text


def test_unknown_labels_exit_2_naming_them(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _csv(tmp_path, ["low", "piano", "zebra"], per_class=2)
    cache = tmp_path / "cache"
    args = ["evaluate", str(bundle_dir), "--data", f"csv:{manifest}", "--cache-dir", str(cache)]
    assert main([*args, "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fsnas evaluate: error:") and len(err.strip().splitlines()) == 1
    assert "'piano'" in err and "'zebra'" in err and "2 label(s)" in err
    assert "'low'" not in err.split("does not know:")[1].split(";")[0]
    assert not cache.exists()  # refused before any feature is computed


def test_pitch_shift_adds_one_row_per_shift_with_the_drop(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _csv(tmp_path, list(TONE_LABELS), per_class=3)
    cache = tmp_path / "cache"
    args = ["evaluate", str(bundle_dir), "--data", f"csv:{manifest}", "--split", "all"]
    assert main([*args, "--pitch-shift", "-12,12", "--cache-dir", str(cache), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {row["semitones"]: row for row in out["pitch_shift"]}
    assert sorted(rows) == [-12.0, 0.0, 12.0]  # 0 added for the drop
    assert rows[0.0]["drop"]["accuracy"] == 0.0
    for shift in (-12.0, 12.0):
        row = rows[shift]
        assert row["drop"]["accuracy"] == pytest.approx(
            rows[0.0]["metrics"]["accuracy"] - row["metrics"]["accuracy"]
        )
    # classes defined by pitch: an octave's shift must hurt a model that learnt the pitch
    assert rows[12.0]["drop"]["accuracy"] > 0.2 or rows[-12.0]["drop"]["accuracy"] > 0.2
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 3  # one per shift

    # a second run reads every shift from the cache and gives the same numbers
    assert main([*args, "--pitch-shift", "-12,0,12", "--cache-dir", str(cache), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["pitch_shift"] == out["pitch_shift"]


def test_bad_shifts_are_one_line(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value, words in (("2,x", "'x' is not a number"), ("30", "beyond"), ("2,2", "twice")):
        assert (
            main(["evaluate", str(bundle_dir), "--data", "synthetic", "--pitch-shift", value]) == 2
        )
        assert words in capsys.readouterr().err


def test_shift_zero_metrics_equal_task_metrics_on_the_features(bundle_dir: Path) -> None:
    from nas.evaluate import evaluate_bundle

    bundle = load_exported(bundle_dir)
    folder = bundle_dir.parent / "eval-direct"
    folder.mkdir(exist_ok=True)
    manifest = _csv(folder, list(TONE_LABELS), per_class=2, seed=5)
    result = evaluate_bundle(bundle, f"csv:{manifest}", split="all", cache_dir=folder / "c")
    from trainers.features import load_features

    # as evaluate_bundle reads it: 2 clips a class is evaluation data, too few to train on
    data = load_features(
        f"csv:{manifest}", bundle.feature_config, cache_dir=folder / "c", trainable=False
    )
    x = np.concatenate([data.train.x, data.valid.x, data.test.x])
    y = np.concatenate([data.train.y, data.valid.y, data.test.y])
    logits = bundle.logits(torch.from_numpy(x)).numpy()
    # the data's labels are sorted (high, low, mid), the bundle's are (low, mid, high)
    to_bundle = np.array([bundle.labels.index(label) for label in data.labels])
    assert data.labels != bundle.labels
    expected = task_metrics("single_label", to_bundle[y], logits)
    assert result.at_zero.metrics == expected
    assert expected["accuracy"] == 1.0
    assert task_metrics("single_label", y, logits) != expected  # matching by name matters
