"""Synthetic studies for the dashboard tests: trials as the search driver would hand them over.

The front flags and the hypervolume are computed here with a plain 2-objective sweep, so the
records are self-consistent; the dashboards themselves never compute them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from dashboards.records import Objective, StudySummary, TrialRecord

OBJECTIVES = [
    Objective("val_accuracy", "maximize", "validation accuracy"),
    Objective("train_vram_mb", "minimize", "peak training VRAM (MiB)"),
]
THREE_OBJECTIVES = [*OBJECTIVES, Objective("latency_ms", "minimize", "latency (ms)")]
REFERENCE = {"val_accuracy": 0.0, "train_vram_mb": 1000.0}
# 12 trials: 8 complete, 2 pruned, 1 out of memory, 1 failed before any value existed.
STATUSES = ["complete"] * 8 + ["pruned", "pruned", "oom", "failed"]
STATUSES[3], STATUSES[8] = STATUSES[8], STATUSES[3]  # interleave, as a real search would


@dataclass
class SyntheticStudy:
    records: list[TrialRecord]
    summary: StudySummary


def make_record(number: int, status: str, rng: random.Random) -> TrialRecord:
    """Return one trial with a spec, a 3-epoch history, objectives and costs."""
    height = rng.choice([3, 7, 19, 38, 57])
    channels = rng.choice([16, 32, 64, 128])
    vram_mb = rng.uniform(60.0, 900.0)
    # bigger models tend to be more accurate, so the front is a real trade-off
    accuracy = min(0.995, 0.80 + 0.18 * (vram_mb / 900.0) ** 0.5 + rng.gauss(0.0, 0.02))
    spec = {
        "frontend": [{"height": height, "width": 7, "channels": channels, "freq_reduce": "max"}],
        "body": [{"height": 3, "width": 3, "channels": 32, "pool": [2, 2]}] * (number % 3),
        "head": {"time_pooling": "max", "dense": [64]},
        "name": f"t{number}",
    }
    has_values = status != "failed"
    epochs = 3 if status != "pruned" else 1
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "val_accuracy": accuracy * e / epochs, "lr": 1e-3}
        for e in range(1, epochs + 1)
    ]
    return TrialRecord(
        number=number,
        status=status,
        reason={"oom": "CUDA out of memory", "failed": "worker died"}.get(status, ""),
        spec=spec,
        spec_summary=f"F[{height}x7x{channels} max] | B[3x3x32 p2x2 x{number % 3}] | max",
        train_config={"epochs": 3, "lr": 1e-3, "optimizer": "adamw", "grad_clip_norm": None},
        metrics={"val_accuracy": accuracy, "test_accuracy": accuracy - 0.01} if has_values else {},
        history=history if has_values else [],
        objectives=(
            {
                "val_accuracy": accuracy,
                "train_vram_mb": vram_mb,
                "latency_ms": rng.uniform(1.0, 20.0),
            }
            if has_values
            else {}
        ),
        costs=(
            {
                "params": 1000 * channels + number,
                "gflops": 0.01 * channels,
                "train_vram_mb": vram_mb,
                "vram_source": "estimated",
            }
            if has_values
            else {}
        ),
        ray_trial_id=f"abc_{number:05d}",
        device="cpu",
        seconds=1.5 + number,
    )


def _dominates(a: TrialRecord, b: TrialRecord) -> bool:
    a_acc, a_mb = a.objectives["val_accuracy"], a.objectives["train_vram_mb"]
    b_acc, b_mb = b.objectives["val_accuracy"], b.objectives["train_vram_mb"]
    return a_acc >= b_acc and a_mb <= b_mb and (a_acc > b_acc or a_mb < b_mb)


def mark_front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Set ``on_pareto_front`` on the non-dominated complete trials; return the front."""
    complete = [r for r in records if r.status == "complete"]
    for r in records:
        r.on_pareto_front = r.status == "complete" and not any(
            _dominates(o, r) for o in complete if o is not r
        )
    return [r for r in records if r.on_pareto_front]


def hypervolume_2d(records: list[TrialRecord]) -> float:
    """Area dominated by the complete trials, bounded by REFERENCE (accuracy up, VRAM down)."""
    points = sorted(
        (r.objectives["train_vram_mb"], r.objectives["val_accuracy"])
        for r in records
        if r.status == "complete"
    )
    area, best_acc = 0.0, REFERENCE["val_accuracy"]
    # sweep by increasing VRAM: between two points the height is the best accuracy so far
    for i, (mb, acc) in enumerate(points):
        next_mb = points[i + 1][0] if i + 1 < len(points) else REFERENCE["train_vram_mb"]
        best_acc = max(best_acc, acc)
        area += (next_mb - mb) * (best_acc - REFERENCE["val_accuracy"])
    return area


def build_study(n_trials: int = 12, seed: int = 0, name: str = "synthetic") -> SyntheticStudy:
    """Return ``n_trials`` records (statuses cycling through STATUSES) with front and HV set."""
    rng = random.Random(seed)
    records = [make_record(i, STATUSES[i % len(STATUSES)], rng) for i in range(n_trials)]
    history: list[tuple[int, float]] = []
    for k in range(1, n_trials + 1):
        done = [r for r in records[:k] if r.status == "complete"]
        if done and (not history or history[-1][0] != len(done)):
            history.append((len(done), hypervolume_2d(done)))
    front = mark_front(records)
    knee = max(
        front, key=lambda r: r.objectives["val_accuracy"] - r.objectives["train_vram_mb"] / 1000
    )
    summary = StudySummary(
        study_name=name,
        objectives=list(OBJECTIVES),
        reference_point=dict(REFERENCE),
        hypervolume_history=history,
        knee_number=knee.number,
        config={"study": {"name": name, "n_trials": n_trials}, "train": {"epochs": 3}},
    )
    return SyntheticStudy(records, summary)


@pytest.fixture
def study() -> SyntheticStudy:
    """A 12-trial, 2-objective synthetic study."""
    return build_study()
