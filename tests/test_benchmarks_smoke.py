"""Smoke test of benchmarks/: every script imports and its tiniest mode writes its JSON.

The benchmarks themselves run with ``make bench``; this only checks that they still work
(about 20 s on 2 cores). ``overhead.py`` starts Ray twice (over a minute here), so only its
pure parts run; ``throughput.py`` starts Ray three times, so only its Optuna-alone part runs
(a few seconds), beside its statistics and the progress-line format it parses.
``gpu_throughput.py`` (a GPU benchmark of the device kit) runs its ``--cpu-smoke`` search once
(one Ray start, marked slow), with a stand-in for nvidia-smi; its pure parts run fast.
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
import gpu_throughput  # noqa: E402
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
    assert features["cpu"]["clips"] == 30 and features["cpu"]["speedup"] > 1.0
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
        "synthetic:clips_per_class=3,seed=0", cache_dir=benchlib.CACHE_DIR
    )
    spec = overhead.one_point_spec(data, channels=8)
    assert [b.channels for b in spec.frontend] == [8] and not spec.body


def test_throughput_stats_and_the_progress_line_it_parses() -> None:
    from dashboards.records import TrialRecord
    from nas.config import load_config
    from nas.search_progress import Progress

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


# a stand-in for `nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used -lms N`:
# one line that is not a sample, then a sample of GPU 0 every 0.1 s until terminated
FAKE_SMI = """#!{python}
import datetime, time
print("not a sample", flush=True)
i = 0
while True:
    stamp = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    print(f"{{stamp}}, 0, {{i % 100}}, {{1000 + i}}", flush=True)
    i += 10
    time.sleep(0.1)
"""


def _fake_smi(folder: Path) -> Path:
    path = folder / "fake-nvidia-smi"
    path.write_text(FAKE_SMI.format(python=sys.executable), encoding="utf-8")
    path.chmod(0o755)
    return path


def test_gpu_throughput_sampling_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    g = gpu_throughput
    row = g.parse_smi_line("2026/12/02 05:21:34.250, 1, 37, 1234\n")
    assert row is not None and row[0] is not None and row[1:] == (1, 37.0, 1234.0)
    row = g.parse_smi_line("2026/12/02 05:21:34.250, 0, [N/A], 10")
    assert row is not None and row[2:] == (None, 10.0)
    assert g.parse_smi_line("No devices were found") is None
    # two GPUs: one tick per query, utilisation averaged, memory summed
    ticks = g.ticks_of([(0.0, 0, 10.0, 100.0), (0.0, 1, 30.0, 50.0), (0.5, 0, 50.0, 200.0)])
    assert [(k.util_pct, k.memory_mib) for k in ticks] == [(20.0, 150.0), (50.0, 200.0)]
    assert g.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 90) == 5.0 and g.percentile([], 50) is None
    report = g.utilisation_report(
        [g.GpuTick(100.0 + 0.5 * i, 10.0 * i, 1000.0 + i) for i in range(-1, 21)],
        started=100.0,
        wall_s=10.0,
        done_at_s=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
    )
    assert report["memory_used_mib_before"] == 999.0 and report["sample_interval_s_median"] == 0.5
    assert report["search"]["samples"] == 21 and report["search"]["util_p90_pct"] == 180.0
    assert report["search"]["memory_used_mib_peak"] == 1020.0
    assert (report["steady"]["from_s"], report["steady"]["to_s"]) == (2.0, 6.0)  # q = 2
    assert report["steady"]["util_mean_pct"] == 80.0

    # the background sampler, on the stand-in
    sampler = g.GpuSampler(str(_fake_smi(tmp_path)), period_ms=100)
    assert sampler.start() and sampler.wait_first(10.0)
    ticks = sampler.stop()
    assert ticks and ticks[0].util_pct == 0.0 and ticks[0].memory_mib == 1000.0
    assert sampler.other_lines == ["not a sample"] and sampler.error is None
    missing = g.GpuSampler(str(tmp_path / "no-such-smi"))
    assert not missing.start() and "not found" in (missing.error or "")

    # the auto / 1 comparison, the goal row and the table
    headline = {
        "gpus-auto": {**_headline(720.0), "util_window": "steady"},
        "gpus-1": _headline(180.0),
    }
    comp = g.comparisons(headline, ["auto", "1"])
    assert comp["trials_per_hour_steady_auto_over_1"] == 4.0
    rows = g.goals(comp, ["auto", "1"], 32, 20)
    assert [row["met"] for row in rows] == [True]
    table = g.markdown_table(headline, ["auto", "1"])
    assert table.count("\n") == 3 and "| auto | 32 | 720 |" in table

    # no CUDA, no --cpu-smoke: exit 2 with one line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert g.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def _headline(per_hour: float) -> dict:
    return {
        "ok": True,
        "finished": 32,
        "trials_per_hour_steady": per_hour,
        "trials_per_hour_end_to_end": per_hour / 2,
        "s_per_trial_steady": 3600 / per_hour,
        "max_running": 8,
        "mean_running": 6.5,
        "util_window": "search",
        "util_mean_pct": 40.0,
        "util_median_pct": 42.0,
        "util_p90_pct": 70.0,
        "memory_used_mib_peak": 9000.0,
        "wall_s": 100.0,
    }


@pytest.mark.slow
def test_gpu_throughput_cpu_smoke_runs_a_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one option (one Ray start, ~30-60 s on 2 cores); the stand-in nvidia-smi is sampled
    out = tmp_path / "gpu_throughput.json"
    argv = ["--cpu-smoke", "--options", "auto", "--nvidia-smi", str(_fake_smi(tmp_path))]
    assert gpu_throughput.main([*argv, "--out", str(out)]) == 0
    result = _read(out)
    assert result["cpu_smoke"] and result["complete"] and result["options"] == ["auto"]
    assert result["trials"] == 6 and result["epochs"] == 1 and result["workdir"] is None
    assert result["features"]["returncode"] == 0
    part = result["parts"]["gpus-auto"]
    assert part["ok"] and part["all_trials_finished_cleanly"] and part["finished"] == 6
    assert part["gpus_per_trial"] == "auto" and sum(part["gpu_shares"].values()) == 6
    assert part["config"]["resources.gpus_per_trial"] == "auto"
    assert part["steady_s_per_trial"] > 0 and part["max_running"] >= 1
    util = part["gpu_utilisation"]
    assert util["status"] == "sampled" and util["search"]["samples"] > 0
    assert util["search"]["memory_used_mib_peak"] >= 1000.0
    head = result["headline"]["gpus-auto"]
    assert head["trials_per_hour_steady"] > 0 and head["trials_per_hour_end_to_end"] > 0
    assert head["util_window"] == "steady" and head["util_mean_pct"] is not None
    assert result["comparisons"] == {} and result["goals"] == []  # one option: nothing to compare
    printed = capsys.readouterr().out
    assert "| gpus/trial |" in printed and "| auto | 6 |" in printed
