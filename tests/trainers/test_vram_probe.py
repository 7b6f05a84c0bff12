"""The single VRAM probe (trainers.vram_probe): bookkeeping without a GPU, the window on CUDA."""

from __future__ import annotations

import pytest
import torch

from search_spaces import ArchSpec, Branch, Head, build_model
from trainers import vram_probe
from trainers.cost_measure import measure_train_vram

CUDA = torch.cuda.is_available()
MIB = 2**20


def test_shared_bytes_counts_each_storage_once_in_512_byte_blocks() -> None:
    cpu = torch.device("cpu")
    x = torch.zeros(1000)  # 4000 B -> 4096
    y = torch.zeros(3, dtype=torch.long)  # 24 B -> 512
    assert vram_probe.shared_bytes(cpu, [x, x[:10], x.view(10, 100), y]) == 4096 + 512
    assert vram_probe.shared_bytes(torch.device("meta"), [x, y]) == 0  # not on that device


def test_shared_reserved_bytes_counts_the_segments_holding_the_pointers() -> None:
    snapshot = [
        {"address": 0, "total_size": 20 * MIB},
        {"address": 100 * MIB, "total_size": 2 * MIB},
        {"address": 200 * MIB, "total_size": 32 * MIB},
    ]
    # two features in the first segment count it once; the 2 MiB one is not theirs
    pointers = [5 * MIB, 6 * MIB, 210 * MIB]
    assert vram_probe.shared_reserved_bytes(snapshot, pointers) == 52 * MIB
    assert vram_probe.shared_reserved_bytes(snapshot, [20 * MIB]) == 0  # one past the end
    assert vram_probe.shared_reserved_bytes(snapshot, []) == 0


def test_peaks_subtract_only_the_shared_features() -> None:
    window = vram_probe.ProbeWindow(
        device=torch.device("cpu"),
        state_b=300 * MIB,
        shared_b=100 * MIB,
        shared_reserved_b=120 * MIB,
    )
    peaks = vram_probe.peaks(window, 500 * MIB, 800 * MIB, "NVIDIA H200", False)
    assert peaks.train_vram_mb == 400  # everything but the features, workspaces included
    assert peaks.train_reserved_mb == 680
    assert peaks.above_state_mb == 200
    assert peaks.shared_mb == 100
    assert peaks.device_name == "NVIDIA H200"


def _tiny() -> ArchSpec:
    return ArchSpec(
        input_norm="none",
        frontend=(Branch(20, 5, 16, freq_reduce="max", batch_norm=False),),
        head=Head(freq_reduce="none", time_pooling="max"),
    )


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_probe_on_cuda_measures_both_peaks_and_excludes_shared_features() -> None:
    dev = torch.device("cuda")
    model = build_model(_tiny(), 40, 50, 3)
    features = torch.zeros(64 * MIB // 4, device=dev)  # a shared feature cache
    with_features = measure_train_vram(model, (8, 1, 40, 50), 3, device=dev, shared=[features])
    model = build_model(_tiny(), 40, 50, 3)
    counted = measure_train_vram(model, (8, 1, 40, 50), 3, device=dev)
    assert with_features.reserved_mb >= with_features.vram_mb > 0
    # the same run, with the feature tensor counted or not: 64 MiB apart
    assert counted.vram_mb - with_features.vram_mb == pytest.approx(64, abs=1)
    # its 64 MiB segment is left out of the reserved figure (other segments may differ by one
    # 20 MiB kLargeBuffer between the two runs)
    assert counted.reserved_mb - with_features.reserved_mb == pytest.approx(64, abs=20)
