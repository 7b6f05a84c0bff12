"""One trial, worker side: train a sampled spec and return a plain final report.

Nothing here imports Ray or Optuna: the Ray backend (``nas.ray_backend``) calls ``run_trial``
in a worker with a ``report`` callable, the ablation runner calls it in-process, and the
benchmarks call it directly. The pieces:

* ``TrialSettings``: the fixed part of every trial of a study (train config, objectives, VRAM
  limit), sent once to every worker beside the features.
* ``run_trial``: the trial function around ``trainers.train.fit``; never raises.
* ``record_from_fit``: the one conversion from a training result to a ``TrialRecord`` (the
  search, ``fsnas train`` and the ablations all use it); ``record_from_result`` reads the
  record back from a final report; ``spec_record`` is the record of a trial that has only its
  spec (crashed, stopped early, or never run).
* ``estimate_train_vram_mb`` and ``gpu_share``: the pre-training VRAM estimate and the GPU
  share it asks for under ``gpus_per_trial=auto``; the estimate made for placement goes into
  the trial's config (``estimate_train_vram_mb(..., into=config)``, in the driver), where
  ``run_trial`` (in the worker) finds it and does not estimate again.

Static costs are computed once per design and process (``trainers.cost.static_costs``): the
VRAM-limit check here and ``fit`` share one estimate, and a reused Ray actor, or an ablation
training one spec with several seeds, reads a repeated design's costs back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dashboards.records import WEIGHTS_NOT_KEPT_KEY, Objective, TrialRecord
from nas.config import metric_name
from search_spaces.errors import FsnasError
from search_spaces.spec import ArchSpec
from trainers.featureset import FeatureSet
from trainers.metrics import PITCH_ROBUSTNESS_METRIC
from trainers.result import CHECKPOINT_ERROR_KEY, TrainConfig, TrialResult

if TYPE_CHECKING:  # trainers.cost imports torch; nas.trial loads it only when a trial runs
    from trainers.cost import DesignKey

# keys of a trial's final report (and of its record's costs)
FINAL_KEY = "fsnas_final"  # marks a trial's last report (the scheduler ignores it)
STATUS_KEY = "fsnas_status"  # the trial's status, also an Optuna user attribute
RECORD_JSON_KEY = "fsnas_record_json"  # TrialRecord.to_dict() as JSON
CONSTRAINT_KEY = "fsnas_constraint"  # [train VRAM - limit] (measured or estimated); <= 0 ok
# GPU shares "auto" rounds up to, so a handful of trial sizes can pack a GPU
GPU_SHARE_GRID: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
# what a trial process holds outside the caching allocator: the CUDA context (DESIGN.md:
# ~300–500 MiB per device); the allocator's slack is in the reserved estimate
CUDA_CONTEXT_MB = 500.0
# a trial config's copy of the driver's training-VRAM estimate (made for GPU placement), MiB
ESTIMATE_MB_KEY = "train_vram_estimate_mb"
ESTIMATE_RESERVED_KEY = "train_reserved_estimate_mb"
ESTIMATE_METHOD_KEY = "train_vram_estimate_method"
ESTIMATE_DESIGN_KEY = "train_vram_estimate_key"  # DesignKey.digest() it was made for
# the reserved MiB a trial's share leaves it (share × GPU memory − context − features), set by
# gpus_per_trial=auto; a measured train_reserved_mb above it is flagged in the record
SHARE_BUDGET_KEY = "vram_share_budget_mb"
SHARE_EXCEEDED_KEY = "vram_share_exceeded_mb"  # record costs: measured reserved − budget (MiB)
SHARE_WARNING_KEY = "vram_share_warning"  # record costs: the one-line warning
ESTIMATE_KEYS = (
    ESTIMATE_MB_KEY,
    ESTIMATE_RESERVED_KEY,
    ESTIMATE_METHOD_KEY,
    ESTIMATE_DESIGN_KEY,
    SHARE_BUDGET_KEY,
)


# -- what a trial needs besides its spec -------------------------------------------------------
@dataclass(frozen=True)
class TrialSettings:
    """The fixed part of every trial of a study (sent once to every worker with the features)."""

    train_config: TrainConfig
    objectives: tuple[Objective, ...]
    max_train_vram_mb: float | None = None
    device: str = "auto"  # "auto": CUDA when the worker has a GPU assigned, else CPU
    # where fit writes the best epoch's weights (a worker's own temporary folder); None: nowhere
    checkpoint_dir: str | None = None
    # the fraction of its CUDA device the trial was given (set in the worker from Ray's
    # assignment, ``nas.ray_backend``): ``fit`` refuses a design too large for that share
    gpu_share: float | None = None


# per-epoch keys of ``fit`` that carry a pre-training estimate -> the objective they stand for
_ESTIMATE_KEYS = {
    "train_vram_estimate_mb": "train_vram_mb",
    "infer_vram_estimate_mb": "infer_vram_mb",
}


def _design_key(spec: ArchSpec, data: FeatureSet, config: TrainConfig) -> DesignKey:
    """Return the cost-cache key of ``spec`` trained on ``data`` with ``config``."""
    from trainers import cost

    return cost.design_key(spec, *cost.design_inputs(data, config))


def _train_vram_estimate(
    spec: ArchSpec, data: FeatureSet, config: TrainConfig
) -> dict[str, Any] | None:
    """Return the cached (or new) estimate's ``train_vram_estimate_mb``,
    ``train_reserved_estimate_mb`` and ``train_vram_estimate_method``."""
    from trainers import cost

    try:
        return cost.train_vram_estimate(spec, *cost.design_inputs(data, config))
    except FsnasError:
        return None  # an invalid spec: fit records it as "invalid" with the reason


def estimate_train_vram_mb(
    spec: ArchSpec,
    data: FeatureSet,
    config: TrainConfig,
    into: dict[str, Any] | None = None,
) -> float | None:
    """Return the estimated peak training VRAM of ``spec`` in MiB, or None if it cannot be made.

    The estimate models float32 training (an upper bound under AMP, which it cannot trace).
    It is made once per design and process (``trainers.cost.train_vram_estimate``), and
    ``fit`` reuses it. ``into``: a trial config (the driver's, when it sizes the trial's GPU
    share) that receives the estimate (``ESTIMATE_MB_KEY``, its method and the design it was
    made for), so the worker's ``run_trial`` seeds its cache with it instead of estimating
    again; nothing is added when there is no estimate.
    """
    estimate = _train_vram_estimate(spec, data, config)
    if estimate is None:
        return None
    mb = float(estimate["train_vram_estimate_mb"])
    if into is not None:
        into[ESTIMATE_MB_KEY] = mb
        into[ESTIMATE_RESERVED_KEY] = float(estimate["train_reserved_estimate_mb"])
        into[ESTIMATE_METHOD_KEY] = str(estimate["train_vram_estimate_method"])
        into[ESTIMATE_DESIGN_KEY] = _design_key(spec, data, config).digest()
    return mb


def estimate_train_reserved_mb(
    spec: ArchSpec,
    data: FeatureSet,
    config: TrainConfig,
    into: dict[str, Any] | None = None,
) -> float | None:
    """Return the estimated peak reserved training VRAM (MiB) of ``spec``, or None.

    The same cached estimate as ``estimate_train_vram_mb`` (and the same ``into``), its
    ``train_reserved_estimate_mb``: what ``gpus_per_trial=auto`` sizes a share from.
    """
    if estimate_train_vram_mb(spec, data, config, into) is None:
        return None
    estimate = _train_vram_estimate(spec, data, config)
    return None if estimate is None else float(estimate["train_reserved_estimate_mb"])


def flag_vram_share(record: TrialRecord, config: dict[str, Any]) -> None:
    """Flag ``record`` when its measured reserved peak exceeds its GPU share's budget.

    The budget is ``config[SHARE_BUDGET_KEY]`` (set by ``gpus_per_trial=auto``); the flag is
    ``costs[SHARE_EXCEEDED_KEY]`` (MiB over) and ``costs[SHARE_WARNING_KEY]``. Estimated
    figures and trials without a budget are left alone.
    """
    budget = config.get(SHARE_BUDGET_KEY)
    reserved = record.costs.get("train_reserved_mb")
    if (
        not isinstance(budget, (int, float))
        or isinstance(budget, bool)
        or not isinstance(reserved, (int, float))
        or record.costs.get("vram_source") != "measured"
    ):
        return
    over = float(reserved) - float(budget)
    if over > 0:
        record.costs[SHARE_EXCEEDED_KEY] = over
        record.costs[SHARE_WARNING_KEY] = (
            f"measured reserved training VRAM {float(reserved):.0f} MiB > the {float(budget):.0f} "
            "MiB its GPU share leaves it (gpus_per_trial=auto); trials packed beside it may run "
            "out of memory"
        )


def _seed_sent_estimate(
    config: dict[str, Any], spec: ArchSpec, data: FeatureSet, train_config: TrainConfig
) -> None:
    """Seed the cost cache with the estimate the driver sent along, if made for this design."""
    from trainers import cost

    sent = config.get(ESTIMATE_MB_KEY)
    method = config.get(ESTIMATE_METHOD_KEY)
    if not isinstance(sent, (int, float)) or isinstance(sent, bool) or not isinstance(method, str):
        return
    reserved = config.get(ESTIMATE_RESERVED_KEY)
    if not isinstance(reserved, (int, float)) or isinstance(reserved, bool):
        reserved = None
    key = _design_key(spec, data, train_config)
    if config.get(ESTIMATE_DESIGN_KEY) == key.digest() and math.isfinite(float(sent)):
        cost.seed_train_vram_estimate(
            key, float(sent), method, reserved_mb=None if reserved is None else float(reserved)
        )


def run_trial(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Return the final report of one trial: objectives, ``fsnas_status`` and the record JSON.

    ``config["spec"]`` is the ArchSpec dict the space sampled; a training-VRAM estimate the
    driver made for it (``estimate_train_vram_mb(..., into=config)``) is reused. Each epoch
    ``report`` receives the validation metric so far and the costs known before training (the
    scheduler's inputs). An architecture whose estimated training VRAM exceeds
    ``max_train_vram_mb`` is not trained (status ``infeasible``); one measured above it is
    trained and marked ``infeasible``. Nothing raises: an unexpected exception becomes status
    ``failed`` with its reason.
    """
    started = time.perf_counter()
    record = TrialRecord(number=-1, status="failed", train_config=settings.train_config.to_dict())
    try:
        _trial_body(config, data, settings, report, device, record)
    except Exception as exc:  # the search must survive anything one trial does
        record.status = "failed"
        record.reason = f"{type(exc).__name__}: {exc}".strip()
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
    record.seconds = time.perf_counter() - started
    out: dict[str, Any] = {FINAL_KEY: True, STATUS_KEY: record.status}
    out.update({k: v for k, v in record.objectives.items() if v is not None})
    out[RECORD_JSON_KEY] = json.dumps(record.to_dict())
    return out


def _trial_body(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    report: Callable[[dict[str, Any]], None] | None,
    device: str | None,
    record: TrialRecord,
) -> None:
    from trainers.train import fit

    spec = ArchSpec.from_dict(config["spec"])
    record.spec = spec.to_dict()
    record.spec_summary = spec.summary()
    metric = metric_name(data.task)
    _seed_sent_estimate(config, spec, data, settings.train_config)
    limit_mb = settings.max_train_vram_mb
    if limit_mb is not None:
        estimate_mb = estimate_train_vram_mb(spec, data, settings.train_config)
        if estimate_mb is not None and estimate_mb > limit_mb:
            record.status = "infeasible"
            record.reason = (
                f"estimated training VRAM {estimate_mb:.0f} MiB > --max-train-vram-mb "
                f"{limit_mb:g}; not trained"
            )
            record.costs.update(
                {
                    "train_vram_estimate_mb": estimate_mb,
                    "train_vram_mb": estimate_mb,
                    "vram_source": "estimated",
                    CONSTRAINT_KEY: estimate_mb - limit_mb,
                }
            )
            return

    def epoch_report(values: dict[str, Any]) -> None:
        """Forward an epoch to the scheduler with every cost objective known before training.

        VRAM is the estimate at every rung (measured VRAM exists only once a trial ends), so
        peers are compared on the same footing.
        """
        if report is None:
            return
        out = {k: v for k, v in values.items() if k not in _ESTIMATE_KEYS}
        for estimate_key, objective_key in _ESTIMATE_KEYS.items():
            if estimate_key in values:
                out[objective_key] = values[estimate_key]
        out["epoch"] = int(values.get("epoch", 0))
        report(out)

    train_config = settings.train_config
    if settings.checkpoint_dir:
        train_config = dataclasses.replace(train_config, checkpoint_dir=settings.checkpoint_dir)
    result = fit(
        spec, data, train_config, device or settings.device, epoch_report, settings.gpu_share
    )
    trained = record_from_fit(
        spec, result, settings.train_config, input_shape=(data.n_mels, data.n_frames)
    )
    for name in ("status", "reason", "metrics", "history", "device"):
        setattr(record, name, getattr(trained, name))
    record.costs.update(trained.costs)
    flag_vram_share(record, config)
    if result.status != "complete":
        return
    for objective in settings.objectives:
        in_metrics = objective.name in (metric, PITCH_ROBUSTNESS_METRIC)
        value = (record.metrics if in_metrics else record.costs).get(objective.name)
        if value is None or not math.isfinite(float(value)):
            record.status = "failed"
            record.reason = f"objective {objective.name} has no value ({value!r})"
            return
        record.objectives[objective.name] = float(value)
    vram = record.costs.get("train_vram_mb")
    if limit_mb is not None and vram is not None:
        record.costs[CONSTRAINT_KEY] = float(vram) - limit_mb
        if float(vram) > limit_mb:
            record.status = "infeasible"
            record.reason = (
                f"{record.costs['vram_source']} training VRAM {float(vram):.0f} MiB > "
                f"--max-train-vram-mb {limit_mb:g}"
            )


def note_weights_not_kept(final: dict[str, Any], reason: str) -> dict[str, Any]:
    """Return a complete trial's final report whose record says its weights were not kept.

    The training result (metrics, objectives, costs) is kept as it is: the trial stays
    ``complete`` and on the front if it belongs there; ``costs[WEIGHTS_NOT_KEPT_KEY]`` holds
    ``reason`` (the path and the system's error), and ``fsnas export`` retrains it.
    """
    out = dict(final)
    if RECORD_JSON_KEY in out:
        record = json.loads(out[RECORD_JSON_KEY])
        record.setdefault("costs", {})[WEIGHTS_NOT_KEPT_KEY] = reason
        out[RECORD_JSON_KEY] = json.dumps(record)
    return out


def record_from_result(result: dict[str, Any] | None, number: int) -> TrialRecord | None:
    """Return the TrialRecord a trial's final report carries, numbered; None if it has none."""

    if not result or RECORD_JSON_KEY not in result:
        return None
    record = TrialRecord.from_dict(json.loads(result[RECORD_JSON_KEY]))
    record.number = number
    return record


def record_from_fit(
    spec: ArchSpec,
    result: TrialResult,
    train_config: TrainConfig,
    number: int = 0,
    input_shape: tuple[int, int] | None = None,
) -> TrialRecord:
    """Return the TrialRecord of one ``fit``: status, metrics, history, device and costs.

    The costs are ``TrialResult.cost_summary()`` plus the epochs run, when ``fit`` made
    one, the pre-training VRAM estimate and, with ``input_shape`` (n_mels, n_frames), the
    design's receptive field (``search_spaces.receptive.RECEPTIVE_KEYS``). Objectives are the
    caller's (a search sets them).
    """
    costs: dict[str, Any] = {}
    if input_shape is not None and result.status != "invalid":
        from search_spaces.receptive import receptive_field

        costs.update(receptive_field(spec, *input_shape).scalars())
    if "train_vram_estimate_mb" in result.extra:
        costs["train_vram_estimate_mb"] = float(result.extra["train_vram_estimate_mb"])
    costs.update({**result.cost_summary(), "epochs_run": result.epochs_run})
    if result.extra.get(CHECKPOINT_ERROR_KEY):
        costs[WEIGHTS_NOT_KEPT_KEY] = str(result.extra[CHECKPOINT_ERROR_KEY])
    return TrialRecord(
        number=number,
        status=result.status,
        reason=result.reason,
        spec=spec.to_dict(),
        spec_summary=spec.summary(),
        train_config=train_config.to_dict(),
        metrics=dict(result.metrics),
        history=list(result.history),
        costs=costs,
        device=result.device,
        seconds=result.seconds,
    )


def spec_record(number: int, spec: dict[str, Any], reason: str = "") -> TrialRecord:
    """Return a ``failed`` record that knows only its spec dict (summary when it parses)."""
    record = TrialRecord(number=number, status="failed", reason=reason, spec=dict(spec))
    try:
        record.spec_summary = ArchSpec.from_dict(spec).summary()
    except Exception:  # a spec that does not parse keeps its dict, with no summary
        record.spec_summary = ""
    return record


# -- GPU shares --------------------------------------------------------------------------------
def gpu_share(estimate_mb: float | None, gpu_memory_mb: float, data_mb: float = 0.0) -> float:
    """Return a trial's GPU share for ``gpus_per_trial=auto``: its need rounded up to the grid.

    The need is the estimated reserved training peak (``estimate_train_reserved_mb``, MiB)
    plus the CUDA context and the feature tensors the trial keeps on the GPU, as a fraction of
    the GPU's memory, rounded up to 1/8, 1/4, 1/2 or 1 (a whole GPU when the estimate is
    missing or exceeds the card).
    """
    if estimate_mb is None or gpu_memory_mb <= 0:
        return 1.0
    need = (estimate_mb + CUDA_CONTEXT_MB + data_mb) / gpu_memory_mb
    for share in GPU_SHARE_GRID:
        if need <= share:
            return share
    return 1.0


def share_budget_mb(share: float, gpu_memory_mb: float, data_mb: float = 0.0) -> float:
    """Return the reserved MiB a GPU ``share`` leaves a trial (its context and features out)."""
    return share * gpu_memory_mb - CUDA_CONTEXT_MB - data_mb


def feature_bytes(data: FeatureSet) -> int:
    """Return the bytes of every split's feature array (what a trial may keep on the GPU)."""
    return sum(int(s.x.nbytes) + int(s.y.nbytes) for s in (data.train, data.valid, data.test))
