"""Plain records the search driver hands to the dashboards: trials, objectives, study summary.

These are the only types ``dashboards`` needs from its callers; they hold plain data (dicts of
numbers and strings) so that tracking and plotting never import ``nas`` or ``trainers``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]

# trainers.result.TrialStatus values, repeated as plain strings because dashboards must not
# import trainers; only "complete" trials can be on a Pareto front.
TRIAL_STATUSES: tuple[str, ...] = (
    "complete",
    "pruned",
    "oom",
    "diverged",
    "invalid",
    "infeasible",
    "failed",
)


# TrialRecord.costs key: the path of the trial's kept best-epoch weights (a safetensors file)
CHECKPOINT_KEY = "checkpoint"
# TrialRecord.costs key: why a complete trial's weights could not be kept (e.g. a full disk,
# naming the path); the trial's result stands and ``fsnas export`` retrains its weights
WEIGHTS_NOT_KEPT_KEY = "weights_not_kept"


@dataclass
class TrialRecord:
    """One trial as the search driver knows it: spec, status, metrics, objectives and costs."""

    number: int  # Optuna trial number: the stable id of a trial across resumes
    status: str  # one of TRIAL_STATUSES
    reason: str = ""
    spec: dict[str, Any] = field(default_factory=dict)  # ArchSpec.to_dict()
    spec_summary: str = ""  # ArchSpec.summary()
    train_config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict()
    metrics: dict[str, float] = field(default_factory=dict)  # final val_*/test_* metrics
    # one dict per epoch: epoch, train_loss, val_<metric>, lr, seconds
    history: list[dict[str, float]] = field(default_factory=list)
    # objective name -> value, e.g. {"val_accuracy": 0.97, "train_vram_mb": 120.0}
    objectives: dict[str, float] = field(default_factory=dict)
    # params, gflops, train_vram_mb, infer_vram_mb, latency_ms, vram_source
    costs: dict[str, Any] = field(default_factory=dict)
    on_pareto_front: bool = False
    ray_trial_id: str = ""
    device: str = ""
    seconds: float = 0.0
    # the warm-start entry (search.initial_specs) this trial evaluated; "" = the sampler's own
    initial_spec: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """Return a record from ``to_dict`` output; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Objective:
    """One search objective: its name in ``TrialRecord.objectives``, direction and axis title."""

    name: str
    direction: Direction
    label: str = ""  # axis title with unit, e.g. "peak training VRAM (MiB)"

    @property
    def title(self) -> str:
        """Return the axis title: the label, or the name when no label was given."""
        return self.label or self.name

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Objective:
        """Return an objective from ``to_dict`` output."""
        return cls(name=data["name"], direction=data["direction"], label=data.get("label", ""))


@dataclass
class StudySummary:
    """What the driver computed about a whole study: objectives, hypervolume, knee point."""

    study_name: str
    objectives: list[Objective]
    reference_point: dict[str, float] = field(default_factory=dict)  # for the hypervolume
    # (number of completed trials so far, hypervolume)
    hypervolume_history: list[tuple[int, float]] = field(default_factory=list)
    knee_number: int | None = None  # Optuna trial number of the knee point of the front
    config: dict[str, Any] = field(default_factory=dict)  # the whole study config

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        data["hypervolume_history"] = [list(p) for p in self.hypervolume_history]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySummary:
        """Return a summary from ``to_dict`` output."""
        return cls(
            study_name=data["study_name"],
            objectives=[Objective.from_dict(o) for o in data.get("objectives", [])],
            reference_point=dict(data.get("reference_point", {})),
            hypervolume_history=[
                (int(n), float(hv)) for n, hv in data.get("hypervolume_history", [])
            ],
            knee_number=data.get("knee_number"),
            config=dict(data.get("config", {})),
        )


def best_record(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> TrialRecord | None:
    """Return the study's best trial: the one rule every report and selection uses.

    Among complete trials whose every objective is finite, the best value of the first
    objective (in its direction); ties go to the lower ``train_vram_mb`` (``costs``, else
    ``objectives``; a trial without one counts as 0), then to the lower trial number.
    None when no trial qualifies or ``objectives`` is empty.
    """
    if not objectives:
        return None
    candidates = [
        r
        for r in records
        if r.status == "complete"
        and all(
            (v := r.objectives.get(o.name)) is not None and math.isfinite(float(v))
            for o in objectives
        )
    ]
    if not candidates:
        return None
    first = objectives[0]
    sign = -1.0 if first.direction == "maximize" else 1.0

    def rank(r: TrialRecord) -> tuple[float, float, int]:
        vram = r.costs.get("train_vram_mb", r.objectives.get("train_vram_mb"))
        return (sign * float(r.objectives[first.name]), float(vram or 0.0), r.number)

    return min(candidates, key=rank)


def json_ready(obj: Any) -> Any:
    """Return ``obj`` as strict JSON data: mappings with str keys, tuples as lists, and NaN or
    infinite floats as None (JSON has no NaN: a diverged trial's loss, a one-seed interval)."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
