"""Features: clips per second for decode + resample + log-mel, first run versus the cache.

CPU part: ``trainers.features.load_features`` on FSDD (3,000 clips, the official split) into a
fresh, empty cache folder (decode with soundfile, resample to 8 kHz, log-mel, written to the
cache), then the same call again ``--cache-runs`` times (no audio decoded: the entry's checksums
are verified, which reads every byte, and the arrays are memory-mapped); each cached run also
copies every split's features into memory, so nothing is left unread. Goal: cached >= 10x.
The audio files may already sit in the OS page cache (other runs read them); the first-run rate
is then decode-bound, not disk-bound.

GPU part (needs CUDA; ``benchmarks/gpu_bench.py`` runs it too): the log-mel stage on the GPU
versus the CPU of the same machine, on the same prepared FSDD waveforms (resampled, fixed
length), in the batches the cache builder uses, host-to-device copy and copy back included;
and the end-to-end first run with ``device="cuda"`` versus ``"cpu"``. Goal: GPU log-mel
extraction >= 20x the CPU rate. Without CUDA it reports "not run".

Usage: python benchmarks/features_bench.py [--data KIND:PATH] [--cache-runs N] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib

from trainers.features import default_feature_config, load_features, log_mel, prepare_waveform
from trainers.featureset import FeatureSet
from trainers.sources import open_source

CACHE_GOAL_X = 10.0
GPU_GOAL_X = 20.0
LOGMEL_BATCH = 256  # clips per log-mel batch (the cache builder's 64 MB budget holds ~270)


def default_data() -> str:
    """Return ``fsdd:<../shared/data/fsdd/recordings>``."""
    return f"fsdd:{benchlib.FSDD_DIR}"


def _n_clips(data: FeatureSet) -> int:
    return len(data.train) + len(data.valid) + len(data.test)


def _read_all(data: FeatureSet) -> int:
    """Copy every split's features into memory; return the bytes read."""
    return sum(
        int(np.array(s.x).nbytes) + int(np.array(s.y).nbytes)
        for s in (data.train, data.valid, data.test)
    )


def run_cpu(data: str, cache_runs: int) -> dict[str, Any]:
    """Return first-run and cached clips/s of ``load_features`` in a fresh cache folder."""
    cache = benchlib.temp_workdir("features")
    try:
        start = time.perf_counter()
        first = load_features(data, cache_dir=cache, device="cpu")
        first_s = time.perf_counter() - start
        n = _n_clips(first)
        cached_s: list[float] = []
        read_b = 0
        for _ in range(cache_runs):
            start = time.perf_counter()
            again = load_features(data, cache_dir=cache, device="cpu")
            read_b = _read_all(again)
            cached_s.append(time.perf_counter() - start)
            if not again.from_cache:
                raise RuntimeError(f"{data}: the second load rebuilt the cache")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    cached_median = statistics.median(cached_s)
    return {
        "data": data,
        "clips": n,
        "feature_shape": [first.n_mels, first.n_frames],
        "torch_threads": torch.get_num_threads(),
        "first_run_s": round(first_s, 3),
        "first_run_clips_per_s": round(n / first_s, 1),
        "cached_runs_s": [round(s, 4) for s in cached_s],
        "cached_clips_per_s": round(n / cached_median, 1),
        "cached_bytes_read": read_b,
        "speedup": round(first_s / cached_median, 1),
    }


def _prepared_waveforms(data: str) -> tuple[torch.Tensor, Any]:
    """Return every clip of ``data`` decoded, resampled and cut to length, and the config."""
    source = open_source(data)
    cfg = default_feature_config(source.kind)
    waves = []
    for clip in source.clips:
        samples, rate_hz = source.decode(clip)
        waves.append(prepare_waveform(samples, rate_hz, cfg))
    return torch.stack(waves), cfg


def _logmel_rate(waves: torch.Tensor, cfg: Any, device: str, repeats: int = 3) -> float:
    """Return clips/s of the log-mel stage on ``device`` (copies in and out included)."""

    def once() -> None:
        for start in range(0, len(waves), LOGMEL_BATCH):
            out = log_mel(waves[start : start + LOGMEL_BATCH], cfg, device)
            out.cpu().numpy()  # the cache builder writes host arrays

    once()  # warm-up: FFT plans, CUDA kernels, the mel module's filterbank
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        once()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return len(waves) / statistics.median(times)


def run_gpu(data: str) -> dict[str, Any]:
    """Return the GPU-versus-CPU extraction figures, or "not run" without CUDA."""
    if not torch.cuda.is_available():
        return dict(benchlib.NOT_RUN_NO_CUDA)
    waves, cfg = _prepared_waveforms(data)
    cpu_rate = _logmel_rate(waves, cfg, "cpu")
    gpu_rate = _logmel_rate(waves, cfg, "cuda")
    end_to_end: dict[str, float] = {}
    for device in ("cpu", "cuda"):
        cache = benchlib.temp_workdir(f"features-{device}")
        try:
            start = time.perf_counter()
            loaded = load_features(data, cache_dir=cache, device=device)
            end_to_end[device] = _n_clips(loaded) / (time.perf_counter() - start)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return {
        "status": "run",
        "device": torch.cuda.get_device_name(0),
        "clips": len(waves),
        "batch_clips": LOGMEL_BATCH,
        "cpu_threads": torch.get_num_threads(),
        "logmel_cpu_clips_per_s": round(cpu_rate, 1),
        "logmel_gpu_clips_per_s": round(gpu_rate, 1),
        "logmel_speedup": round(gpu_rate / cpu_rate, 1),
        "first_run_cpu_clips_per_s": round(end_to_end["cpu"], 1),
        "first_run_gpu_clips_per_s": round(end_to_end["cuda"], 1),
        "first_run_speedup": round(end_to_end["cuda"] / end_to_end["cpu"], 2),
    }


def goals(cpu: dict[str, Any] | None, gpu: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Return the summary rows (a part given as None is left out)."""
    rows = []
    if cpu is not None:
        rows.append(
            benchlib.goal_row(
                f"features from the cache >= {CACHE_GOAL_X:g}x the first run ({cpu['data']})",
                f"{cpu['speedup']:g}x ({cpu['first_run_clips_per_s']:g} → "
                f"{cpu['cached_clips_per_s']:g} clips/s, {cpu['clips']} clips)",
                cpu["speedup"] >= CACHE_GOAL_X,
            )
        )
    if gpu is not None:
        ran = gpu.get("status") == "run"
        rows.append(
            benchlib.goal_row(
                f"GPU log-mel extraction >= {GPU_GOAL_X:g}x the CPU rate",
                f"{gpu['logmel_speedup']:g}x ({gpu['logmel_cpu_clips_per_s']:g} → "
                f"{gpu['logmel_gpu_clips_per_s']:g} clips/s; end to end "
                f"{gpu['first_run_speedup']:g}x)"
                if ran
                else f"not run ({gpu.get('reason', '')})",
                gpu["logmel_speedup"] >= GPU_GOAL_X if ran else None,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the CPU part (and the GPU part where CUDA exists); write ``features.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="KIND:PATH (default: FSDD)")
    parser.add_argument("--cache-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny synthetic data")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    data = args.data or ("synthetic:clips_per_class=3,seed=0" if args.quick else default_data())
    run = benchlib.BenchRun("features")
    cpu = run_cpu(data, args.cache_runs)
    print(f"cpu: {cpu}", file=sys.stderr)
    gpu = run_gpu(data)
    print(f"gpu: {gpu}", file=sys.stderr)
    payload = {
        "quick": args.quick,
        "what": "clips/s of decode + resample + log-mel: first run vs cache (CPU); "
        "GPU vs CPU log-mel extraction",
        "cpu": cpu,
        "gpu": gpu,
        # the GPU row belongs to gpu_bench.json (the one GPU script); its figures stay here too
        "goals": goals(cpu, None),
    }
    benchlib.write_result(run, payload, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
