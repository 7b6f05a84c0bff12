"""``fsnas data inspect``: JSON report, bad-audio policy, and the FSDD acceptance run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.cli import main
from tests.trainers import audio_fixtures as fx


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["data", "inspect", *args])
    out, err = capsys.readouterr()
    report = json.loads(out) if code == 0 and "--json" in args else {}
    return code, report, out + err


def test_inspect_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = fx.make_esc50(tmp_path / "esc")
    code, report, _ = _inspect(capsys, "--data", data, "--cache-dir", str(tmp_path / "c"), "--json")
    assert code == 0
    assert (report["clips"], report["classes"]) == (10, 2)
    assert report["splits"] == {"train": 6, "valid": 2, "test": 2}
    assert report["skipped"] == [] and report["sample_rates_hz"] == {"8000": 10}
    assert report["durations_s"]["min"] == pytest.approx(0.2)
    assert Path(report["cache_path"]).is_dir() and report["cache_key"] in report["cache_path"]
    assert report["from_cache"] is False and report["seconds"] > 0
    again = _inspect(capsys, "--data", data, "--cache-dir", str(tmp_path / "c"), "--json")[1]
    assert again["from_cache"] is True and again["cache_key"] == report["cache_key"]


def test_inspect_text_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = fx.make_pattern(tmp_path / "p")
    args = ["--data", data, "--label-regex", fx.PATTERN_REGEX, "--cache-dir", str(tmp_path / "c")]
    code, _, out = _inspect(capsys, *args)
    assert code == 0
    assert "clips       12  in 2 classes" in out and "splits      train 4, valid 4, test 4" in out


def test_bad_audio_fails_then_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = fx.make_bad_audio_folder(tmp_path / "bad")
    base = ["--data", f"folder:{tmp_path / 'bad'}", "--cache-dir", str(tmp_path / "c"), "--json"]
    code, _, out = _inspect(capsys, *base)
    assert code == 2
    assert out.startswith("fsnas data: error: 3 of 7 audio files could not be decoded")
    assert "Traceback" not in out
    for name in ("truncated", "empty", "text"):
        assert str(files[name]) in out
    code, report, _ = _inspect(capsys, *base, "--on-bad-audio", "skip")
    assert code == 0 and report["clips"] == 4
    assert {item["path"] for item in report["skipped"]} == {
        str(files[n]) for n in ("truncated", "empty", "text")
    }
    assert all(item["reason"] for item in report["skipped"])
    assert report["sample_rates_hz"] == {"16000": 3, "44100": 1}  # 24-bit and stereo FLAC used


def test_unknown_kind_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, out = _inspect(capsys, "--data", "mp3s:/x", "--json")
    assert code == 2 and "unknown kind 'mp3s'" in out and "Traceback" not in out


@pytest.mark.fsdd
def test_fsdd_acceptance_counts_and_cached_second_run(
    fsdd_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", f"fsdd:{fsdd_dir}", "--cache-dir", str(tmp_path / "cache"), "--json"]
    code, first, _ = _inspect(capsys, *args)
    assert code == 0
    assert (first["clips"], first["classes"]) == (3000, 10)
    splits = first["splits"]
    assert (splits["train"] + splits["valid"], splits["test"]) == (2700, 300)
    assert splits["valid"] == 300  # carved from the official train part
    assert first["skipped"] == [] and first["sample_rates_hz"] == {"8000": 3000}
    code, second, _ = _inspect(capsys, *args)
    assert code == 0 and second["from_cache"] and second["splits"] == splits
    print(f"fsdd inspect: first {first['seconds']:.2f} s, second {second['seconds']:.3f} s")
    assert first["seconds"] >= 10 * second["seconds"], (first["seconds"], second["seconds"])
