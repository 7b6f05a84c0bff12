"""GPU check of the trial function (about 5 minutes on one CUDA GPU): real trials on FSDD.

For three architectures (a single vertical layer with max over frequency, a 5-block 3×3 VGG at
32 channels and the ``musicnn`` preset) with AMP off and on, ``trainers.train.fit`` trains on
FSDD (official split) and the script records test accuracy, the training VRAM measured inside
the trial beside the CPU estimate and the stand-alone ``trainers.cost.measure_train_vram``
figure, inference VRAM, step time and latency. Then the out-of-memory recovery check: a trial
that cannot fit (a 1024-channel 3×3 layer at batch 2048) must end as status ``oom``, leave
``memory_allocated()`` where it was, and the next trial must measure the same peak as the
process's first (fresh) trial.

Usage: python benchmarks/gpu_check.py [FSDD_RECORDINGS] [--epochs N] [--out FILE]
Writes one JSON file: FILE, else $OUT/gpu_check.json when $OUT is set, else
benchmarks/results/gpu_check.json. Without CUDA it writes {"status": "not run", ...}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from search_spaces import ArchSpec, Branch, ConvBlock, Head, build_model
from search_spaces.presets import get_preset
from trainers.cost_vram import MIB

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FSDD = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


def architectures() -> dict[str, ArchSpec]:
    """Return the three architectures the check trains, by name."""
    vertical = ArchSpec(
        name="vertical_0.9Mx7_c128",
        frontend=(Branch("0.9M", 7, 128, freq_reduce="max"),),
        head=Head(time_pooling="max"),
        input_norm="bn",
    )
    vgg = ArchSpec(
        name="vgg5_3x3_c32",
        body=tuple(ConvBlock(3, 3, 32, pool=(2, 2)) for _ in range(5)),
        head=Head(time_pooling="max"),
        input_norm="bn",
    )
    return {vertical.name: vertical, vgg.name: vgg, "musicnn": get_preset("musicnn").spec}


def output_path(arg: str | None) -> Path:
    """Return where the JSON goes: --out, else $OUT/gpu_check.json, else benchmarks/results."""
    if arg:
        return Path(arg)
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu_check.json"
    return REPO_ROOT / "benchmarks" / "results" / "gpu_check.json"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _write(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(figures), indent=1) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _trial_row(name: str, result: Any) -> dict[str, Any]:
    """Return the figures of one TrialResult that the check reports."""
    steps = [row["step_ms"] for row in result.history[1:]] or [
        row["step_ms"] for row in result.history
    ]
    steps.sort()
    return {
        "arch": name,
        "amp": result.extra.get("amp"),
        "status": result.status,
        "reason": result.reason,
        "test_accuracy": result.metrics.get("test_accuracy"),
        "best_epoch": result.metrics.get("best_epoch"),
        "epochs_run": result.epochs_run,
        "params": result.params,
        "gflops": result.gflops,
        "train_vram_mb": result.train_vram_mb,
        "vram_source": result.vram_source,
        "train_vram_above_state_mb": result.extra.get("train_vram_above_state_mb"),
        "train_reserved_mb": result.train_reserved_mb,
        "train_vram_estimate_mb": result.extra.get("train_vram_estimate_mb"),
        "train_reserved_estimate_mb": result.extra.get("train_reserved_estimate_mb"),
        "infer_vram_mb": result.infer_vram_mb,
        "latency_ms": result.latency_ms,
        "step_ms_median": steps[len(steps) // 2] if steps else None,
        "data_on_device": result.extra.get("data_on_device"),
        "cudnn_benchmark": result.extra.get("cudnn_benchmark"),
        "train_seconds": result.train_seconds,
        "seconds": result.seconds,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the check and write the JSON figures; return 0 (also when there is no CUDA)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fsdd", nargs="?", default=str(DEFAULT_FSDD), help="FSDD recordings dir")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cache-dir", default=".fsnas/cache")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    out = output_path(args.out)
    if not torch.cuda.is_available():
        _write(out, {"status": "not run", "reason": "no CUDA device"})
        return 0

    from trainers.cost import measure_train_vram
    from trainers.features import load_features
    from trainers.result import TrainConfig
    from trainers.train import fit, release_memory

    started = time.perf_counter()
    device = torch.device("cuda")
    figures: dict[str, Any] = {
        "status": "run",
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": platform.python_version(),
        "epochs": args.epochs,
        "batch_size": args.batch,
    }
    t0 = time.perf_counter()
    data = load_features(f"fsdd:{args.fsdd}", cache_dir=args.cache_dir)
    figures["features"] = {
        "seconds": time.perf_counter() - t0,
        "shape": [data.n_mels, data.n_frames],
        "clips": [len(data.train), len(data.valid), len(data.test)],
        "n_classes": data.n_classes,
    }
    base = TrainConfig(epochs=args.epochs, batch_size=args.batch, seed=0)
    specs = architectures()

    # the process's first trial is the fresh reference for the OOM recovery check
    reference_config = dataclasses.replace(base, epochs=1, amp=False)
    reference_spec = specs["vertical_0.9Mx7_c128"]
    fresh = fit(reference_spec, data, reference_config, device)
    figures["fresh_reference"] = _trial_row(reference_spec.name, fresh)

    rows = []
    for name, spec in specs.items():
        for amp in (False, True):
            result = fit(spec, data, dataclasses.replace(base, amp=amp), device)
            rows.append(_trial_row(name, result))
            print(json.dumps(_finite(rows[-1])), file=sys.stderr, flush=True)
        release_memory(device)
        model_vram = measure_train_vram(
            build_model(spec, data.n_mels, data.n_frames, data.n_classes),
            (args.batch, 1, data.n_mels, data.n_frames),
            data.n_classes,
            optimizer=base.optimizer,
            device=device,
        )
        rows[-2]["standalone_measure_train_vram_mb"] = model_vram.vram_mb
        del model_vram
        release_memory(device)
    figures["trials"] = rows

    # out-of-memory recovery: a layer far too big for the GPU at a huge batch
    huge = ArchSpec(name="oom_1024ch", body=(ConvBlock(3, 3, 1024), ConvBlock(3, 3, 1024)))
    release_memory(device)
    allocated_before_b = torch.cuda.memory_allocated(device)
    oom = fit(huge, data, dataclasses.replace(base, epochs=1, batch_size=2048), device)
    allocated_after_b = torch.cuda.memory_allocated(device)
    after = fit(reference_spec, data, reference_config, device)
    figures["oom_recovery"] = {
        "oom_status": oom.status,
        "oom_reason": oom.reason[:300],
        "allocated_before_mb": allocated_before_b / MIB,
        "allocated_after_mb": allocated_after_b / MIB,
        "fresh_train_vram_mb": fresh.train_vram_mb,
        "after_oom_train_vram_mb": after.train_vram_mb,
        "same_peak": fresh.train_vram_mb == after.train_vram_mb,
        "same_test_accuracy": fresh.metrics.get("test_accuracy")
        == after.metrics.get("test_accuracy"),
        "passed": oom.status == "oom"
        and allocated_after_b == allocated_before_b
        and fresh.train_vram_mb == after.train_vram_mb,
    }
    figures["seconds"] = time.perf_counter() - started
    _write(out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
