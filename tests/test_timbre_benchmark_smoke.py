"""Smoke test of benchmarks/timbre_pitch.py: renders GM notes with fluidsynth, trains the two
ends of the vgg-to-vertical walk for one epoch on them and on FSDD, writes its JSON and plot.

Needs root (the setup apt-installs fluidsynth and the soundfonts when missing) and FSDD at
../shared/data/fsdd; under CI=true a missing FSDD fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import benchlib  # noqa: E402
import timbre_pitch  # noqa: E402


def test_midi_file_holds_each_note_on_and_off() -> None:
    data = timbre_pitch.midi_file(40, [(60, 100), (62, 90)])
    assert data.startswith(b"MThd") and b"MTrk" in data
    assert data.count(bytes([0x90, 60, 100])) == 1 and data.count(bytes([0x80, 62, 0])) == 1
    assert data.endswith(b"\x00\xff\x2f\x00")


@pytest.mark.slow
def test_smoke_run_writes_tables_and_plot(tmp_path: Path) -> None:
    if not benchlib.FSDD_DIR.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"FSDD missing at {benchlib.FSDD_DIR}")
        pytest.skip("FSDD not present")
    if os.geteuid() != 0 and not timbre_pitch.TRAIN_SOUNDFONT.is_file():
        pytest.skip("fluidsynth soundfonts missing and not root to install them")
    assert timbre_pitch.main(["--smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "timbre_pitch_smoke.json").read_text())
    timbre = result["results"]["timbre"]
    assert [r["variant"] for r in timbre["rows"]] == ["vgg5 3x3", "vertical 0.9Mx7"]
    assert timbre["rows"][0]["receptive_whole_freq_depth"] == 5
    assert timbre["rows"][1]["receptive_whole_freq_depth"] == 1
    for key in ("test@-4", "test@+0", "test@+4", "extrapolation", "transfer"):
        assert key in timbre["rows"][0]
    assert "pitch-robust" in timbre["ablation_table"]
    assert "test@+2" in result["results"]["fsdd"]["rows"][1]
    assert (tmp_path / "timbre_pitch_smoke_shift.png").stat().st_size > 1000
