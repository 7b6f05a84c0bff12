"""Smoke test of benchmarks/: every script imports and its tiniest mode writes its JSON.

The benchmarks themselves run with ``make bench``; this only checks that they still work
(about 20 s on 2 cores). ``overhead.py`` starts Ray twice (over a minute here), so only its
pure parts run; ``throughput.py`` starts Ray three times, so only its Optuna-alone part runs
(a few seconds), beside its statistics and the progress-line format it parses.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import benchlib  # noqa: E402
import features_bench  # noqa: E402
import gpu_bench  # noqa: E402
import overhead  # noqa: E402
import run_all  # noqa: E402
import search_efficiency  # noqa: E402
import throughput  # noqa: E402


def _read(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    for key in ("machine", "load_average_start", "load_average_end", "date_utc", "goals"):
        assert key in data, f"{path.name} lacks {key}"
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"] == torch.__version__
    return data


def test_quick_modes_write_results_and_summary(tmp_path: Path) -> None:
    out = ["--out-dir", str(tmp_path)]
    assert features_bench.main(["--quick", *out]) == 0
    features = _read(tmp_path / "features.json")
    assert features["cpu"]["clips"] == 20 and features["cpu"]["speedup"] > 1.0
    assert features["cpu"]["cached_bytes_read"] > 0

    assert search_efficiency.main(["--quick", *out]) == 0
    efficiency = _read(tmp_path / "search_efficiency.json")
    assert {s["sampler"] for s in efficiency["studies"]} == {"nsga2", "tpe", "random"}
    assert all(s["complete"] + sum(s["not_complete"].values()) == 2 for s in efficiency["studies"])
    assert efficiency["reference_point"]["val_accuracy"] == 0.0

    if torch.cuda.is_available():
        pytest.skip("CUDA present: gpu_bench.py would run its full 8-minute benchmark")
    assert gpu_bench.main(out) == 0
    gpu = _read(tmp_path / "gpu_bench.json")
    for part in ("features_gpu", "vram_accuracy", "packing"):
        assert gpu[part] == {"status": "not run", "reason": "no CUDA device"}
    assert [row["met"] for row in gpu["goals"]] == [None, None, None]

    table = run_all.summary_markdown(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("|")]
    # escaped pipes inside cells must not add columns
    widths = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
    assert widths == {8}, table
    assert "no result yet (`overhead.json`)" in table
    assert "from a --quick smoke run" in table
    assert run_all.write_summary(tmp_path).read_text(encoding="utf-8").count("\n|") >= 6


def test_overhead_pure_parts() -> None:
    assert benchlib.steady_slot_s([10.0, 11.0, 12.0, 13.0], concurrency=2) == pytest.approx(2.0)
    assert benchlib.steady_slot_s([0.0, 5.0, 6.0, 7.0], 1, skip=1) == pytest.approx(1.0)
    assert benchlib.steady_slot_s([3.0], 2) is None
    data = features_bench.load_features(
        "synthetic:clips_per_class=2,seed=0", cache_dir=benchlib.CACHE_DIR
    )
    spec = overhead.one_point_spec(data, channels=8)
    assert [b.channels for b in spec.frontend] == [8] and not spec.body


def test_throughput_stats_and_the_progress_line_it_parses() -> None:
    from dashboards.records import TrialRecord
    from nas.config import load_config
    from nas.search import Progress

    # start-up 5 s, then 1 s/trial for the first quarter, 2 s in the middle, 3 s at the end
    times = [5.0, 6.0, 8.0, 10.0, 13.0, 16.0]  # N=6: quarters of 2
    stats = throughput.quarter_stats(times)
    assert stats["startup_s"] == 5.0
    assert stats["first_quarter_s_per_trial"] == pytest.approx(1.0)
    assert stats["steady_s_per_trial"] == pytest.approx(2.0)
    assert stats["last_quarter_s_per_trial"] == pytest.approx(3.0)
    assert stats["last_over_first"] == pytest.approx(3.0)
    assert throughput.quarter_stats(times[:5])["steady_s_per_trial"] is None
    running = throughput.running_stats([(0.0, 1), (1.0, 2), (3.0, 1)], end_s=4.0)
    assert running == {"max_running": 2, "mean_running": pytest.approx(1.5)}

    # the driver's real progress line, written to the stream run_search is given
    stream = throughput.StampedStream(started=0.0)
    progress = Progress("s", 3, load_config(None).objectives("single_label"), stream=stream)
    progress.set_running(2)
    objectives = {"val_accuracy": 0.5, "train_vram_mb": 10.0}
    progress.add(TrialRecord(number=0, status="complete", objectives=objectives))
    progress.set_running(1)
    progress.add(TrialRecord(number=1, status="failed"))
    assert sorted(stream.done_at) == [1, 2] and stream.total == 3
    assert stream.running == [2, 1] and stream.other_lines == 0


def test_throughput_optuna_part_writes_its_result(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    assert throughput.main(["--parts", "optuna", "--trials", "8", "--out", str(out)]) == 0
    result = _read(out)
    assert result["quick"] and result["parts_run"] == ["optuna"]
    optuna_part = result["parts"]["optuna"]
    assert optuna_part["ok"] and optuna_part["finished"] == 8
    assert optuna_part["steady_s_per_trial"] > 0
    # the fsnas parts did not run: no goal is judged
    assert [row["met"] for row in result["goals"]] == [None, None, None]
    assert "throughput vs Ray/Optuna floors" in run_all.summary_markdown(tmp_path)
