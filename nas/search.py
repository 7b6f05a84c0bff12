"""The search driver: features once, the space, the Ray backend, records, front and progress.

``run_search(config)`` is the whole of ``fsnas search``. It loads the features once on the
driver, opens (or resumes) the Optuna study that identifies the search (study name + storage),
hands the remaining trial budget to ``nas.ray_backend``, and turns every finished trial into a
``TrialRecord``: status, reason, metrics, objectives and costs. Records are stored as Optuna user
attributes, so ``fsnas pareto`` and a resumed search read them back from the storage alone.

The trial function ``run_trial`` is a plain function around ``trainers.train.fit``; it knows
nothing about Ray (the backend passes it a ``report`` callable) and returns a plain dict.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import optuna

from dashboards.records import CHECKPOINT_KEY, Objective, StudySummary, TrialRecord
from nas import pareto
from nas.config import ConfigError, StudyConfig, metric_name
from search_spaces.errors import FsnasError, SpecError
from search_spaces.spec import ArchSpec
from trainers.featureset import FeatureSet
from trainers.result import TrainConfig

RECORD_ATTR = "fsnas_record"  # Optuna user attribute holding TrialRecord.to_dict()
STATUS_ATTR = "fsnas_status"
CONSTRAINT_ATTR = "fsnas_constraint"  # [train VRAM - limit] (measured or estimated); <= 0 ok
INITIAL_SPEC_ATTR = "fsnas_initial_spec"  # the warm-start entry a queued trial came from
# a proposal that repeated a known design: the twin's trial number (told its outcome, never
# trained) or "running trial <caller's tag>" (told FAIL); such trials have no fsnas record
DUPLICATE_ATTR = "fsnas_duplicate_of"
# Optuna 5 takes constraints through Trial.set_constraint (constraints_func is deprecated)
NATIVE_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")
FINAL_KEY = "fsnas_final"  # marks a trial's last report (the scheduler ignores it)
RECORD_JSON_KEY = "fsnas_record_json"
# GPU shares "auto" rounds up to, so a handful of trial sizes can pack a GPU
GPU_SHARE_GRID: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
# what a trial process holds besides the training peak: CUDA context and allocator slack
CUDA_CONTEXT_MB = 500.0


class SearchError(FsnasError):
    """A search cannot start or continue; the message names the study and what to change."""


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


# -- kept weights --------------------------------------------------------------------------------
WEIGHTS_SUFFIX = ".safetensors"


def weights_filename(number: int) -> str:
    """Return the file name of trial ``number``'s kept weights."""
    return f"trial-{number:05d}{WEIGHTS_SUFFIX}"


def weights_folder(config: StudyConfig) -> Path | None:
    """Return the absolute folder the study's trial weights go to; None when none are kept."""
    if config.search.keep_weights == "none":
        return None
    return Path(config.weights_dir).expanduser().resolve() / config.study


def tidy_weights(
    folder: Path, records: list[TrialRecord], front: list[TrialRecord], keep: str
) -> list[Path]:
    """Delete the weight files ``keep`` does not ask for; return the files kept.

    ``front``: only the front's trials' files stay; ``all``: every recorded trial's. Files no
    record names (a trial whose driver was killed before it recorded it) always go.
    """
    if not folder.is_dir():
        return []
    keepers = front if keep == "front" else records
    wanted = {
        Path(str(r.costs[CHECKPOINT_KEY])).resolve() for r in keepers if r.costs.get(CHECKPOINT_KEY)
    }
    kept = []
    for path in sorted(folder.glob(f"*{WEIGHTS_SUFFIX}*")):
        if path.resolve() in wanted:
            kept.append(path)
        else:
            path.unlink(missing_ok=True)
    return kept


# per-epoch keys of ``fit`` that carry a pre-training estimate -> the objective they stand for
_ESTIMATE_KEYS = {
    "train_vram_estimate_mb": "train_vram_mb",
    "infer_vram_estimate_mb": "infer_vram_mb",
}


# the cost objectives a trial reports at every epoch (known before training): the ones the
# Pareto-aware scheduler can compare at a rung
RUNG_COSTS = ("train_vram_mb", "infer_vram_mb", "params", "gflops")


def early_stopping_notice(config: StudyConfig, objectives: list[Objective]) -> str | None:
    """Return why early stopping can stop nothing in this study, or None when it can."""
    if not config.search.early_stopping.enabled:
        return None
    if any(o.name in RUNG_COSTS for o in objectives[1:]):
        return None
    costs = ", ".join(o.name for o in objectives[1:]) or "none"
    return (
        f"[{config.study}] early stopping will stop no trial: its cost objectives ({costs}) are "
        f"measured only after training, and a rung never judges on the metric alone; add one of "
        f"{', '.join(RUNG_COSTS)} to search.objectives to prune dominated trials"
    )


def estimate_train_vram_mb(spec: ArchSpec, data: FeatureSet, config: TrainConfig) -> float | None:
    """Return the estimated peak training VRAM of ``spec`` in MB, or None if it cannot be made.

    The estimate models float32 training (an upper bound under AMP, which it cannot trace).
    """
    from trainers import cost

    try:
        estimate = cost.estimate_train_vram(
            spec,
            data.n_mels,
            data.n_frames,
            data.n_classes,
            config.batch_size,
            config.optimizer,
            False,
            data.task,
        )
    except FsnasError:
        return None  # an invalid spec: fit records it as "invalid" with the reason
    return float(estimate.train_vram_mb)


def run_trial(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Return the final report of one trial: objectives, ``fsnas_status`` and the record JSON.

    ``config["spec"]`` is the ArchSpec dict the space sampled. Each epoch ``report`` receives the
    validation metric so far and the costs known before training (the scheduler's inputs). An
    architecture whose estimated training VRAM exceeds ``max_train_vram_mb`` is not trained
    (status ``infeasible``); one measured above it is trained and marked ``infeasible``. Nothing
    raises: an unexpected exception becomes status ``failed`` with its reason.
    """
    import json

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
    out: dict[str, Any] = {FINAL_KEY: True, STATUS_ATTR: record.status}
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
    limit_mb = settings.max_train_vram_mb
    if limit_mb is not None:
        estimate_mb = estimate_train_vram_mb(spec, data, settings.train_config)
        if estimate_mb is not None and estimate_mb > limit_mb:
            record.status = "infeasible"
            record.reason = (
                f"estimated training VRAM {estimate_mb:.0f} MB > --max-train-vram-mb "
                f"{limit_mb:g}; not trained"
            )
            record.costs.update(
                {
                    "train_vram_estimate_mb": estimate_mb,
                    "train_vram_mb": estimate_mb,
                    "vram_source": "estimated",
                    CONSTRAINT_ATTR: estimate_mb - limit_mb,
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
    result = fit(spec, data, train_config, device or settings.device, epoch_report)
    record.status = result.status
    record.reason = result.reason
    record.metrics = dict(result.metrics)
    record.history = list(result.history)
    record.device = result.device
    if "train_vram_estimate_mb" in result.extra:
        record.costs["train_vram_estimate_mb"] = float(result.extra["train_vram_estimate_mb"])
    record.costs.update({**result.cost_summary(), "epochs_run": result.epochs_run})
    if result.status != "complete":
        return
    for objective in settings.objectives:
        value = (record.metrics if objective.name == metric else record.costs).get(objective.name)
        if value is None or not math.isfinite(float(value)):
            record.status = "failed"
            record.reason = f"objective {objective.name} has no value ({value!r})"
            return
        record.objectives[objective.name] = float(value)
    vram = record.costs.get("train_vram_mb")
    if limit_mb is not None and vram is not None:
        record.costs[CONSTRAINT_ATTR] = float(vram) - limit_mb
        if float(vram) > limit_mb:
            record.status = "infeasible"
            record.reason = (
                f"{record.costs['vram_source']} training VRAM {float(vram):.0f} MB > "
                f"--max-train-vram-mb {limit_mb:g}"
            )


def record_from_result(result: dict[str, Any] | None, number: int) -> TrialRecord | None:
    """Return the TrialRecord a trial's final report carries, numbered; None if it has none."""
    import json

    if not result or RECORD_JSON_KEY not in result:
        return None
    record = TrialRecord.from_dict(json.loads(result[RECORD_JSON_KEY]))
    record.number = number
    return record


# -- GPU shares --------------------------------------------------------------------------------
def gpu_share(estimate_mb: float | None, gpu_memory_mb: float, data_mb: float = 0.0) -> float:
    """Return a trial's GPU share for ``gpus_per_trial=auto``: its need rounded up to the grid.

    The need is the estimated training peak plus the CUDA context and the feature tensors the
    trial keeps on the GPU, as a fraction of the GPU's memory, rounded up to 1/8, 1/4, 1/2 or 1
    (a whole GPU when the estimate is missing or exceeds the card).
    """
    if estimate_mb is None or gpu_memory_mb <= 0:
        return 1.0
    need = (estimate_mb + CUDA_CONTEXT_MB + data_mb) / gpu_memory_mb
    for share in GPU_SHARE_GRID:
        if need <= share:
            return share
    return 1.0


def feature_bytes(data: FeatureSet) -> int:
    """Return the bytes of every split's feature array (what a trial may keep on the GPU)."""
    return sum(int(s.x.nbytes) + int(s.y.nbytes) for s in (data.train, data.valid, data.test))


# -- the study in the storage ------------------------------------------------------------------
def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Return the Optuna RDB storage for ``url``; a SQLite file's folder is created."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except Exception as exc:
            if not (url.startswith("sqlite") and "already exists" in str(exc)):
                raise
            # two drivers created a new SQLite file's tables at once and this one lost the
            # race; the tables exist now
            time.sleep(0.5)
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:
        raise SearchError(f"storage {url!r}: cannot open ({type(exc).__name__}: {exc})") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    # the driver is the only writer, but fsnas pareto may read while a search writes
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def load_records(study: optuna.Study) -> list[TrialRecord]:
    """Return the TrialRecords stored in a study, by trial number (orphans left out)."""
    out = []
    for t in study.get_trials(deepcopy=False):
        data = t.user_attrs.get(RECORD_ATTR)
        if isinstance(data, dict):
            record = TrialRecord.from_dict(data)
            record.number = t.number
            out.append(record)
    return sorted(out, key=lambda r: r.number)


def close_orphans(storage: optuna.storages.BaseStorage, study: optuna.Study) -> int:
    """Mark trials left RUNNING/WAITING by a killed driver as FAIL; return how many.

    They have no record, so they do not count towards the trial budget and are asked again.
    One driver per study: a second driver would see the first one's live trials as orphans.
    """
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_user_attr(t._trial_id, "fsnas_orphaned", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        n += 1
    return n


def sampler_seed(seed: int, previous_trials: int) -> int:
    """Return the sampler seed of a run that finds ``previous_trials`` trials in its study.

    A fresh study uses ``seed`` itself. A resumed one must not: the samplers draw their
    random (NSGA-II's first generation, TPE's start-up, random) trials from a generator
    that restarts with the sampler, so the same seed would propose the architectures the
    study has already trained. The derived seed is still a pure function of (seed, count),
    so a resumed search stays reproducible.
    """
    if previous_trials == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, previous_trials]).generate_state(1)[0])


def make_sampler(config: StudyConfig, previous_trials: int = 0) -> optuna.samplers.BaseSampler:
    """Return the Optuna sampler the config names, seeded, with VRAM constraints if any.

    ``previous_trials``: how many trials the study already holds (see ``sampler_seed``).
    """
    search = dataclasses.replace(
        config.search, seed=sampler_seed(config.search.seed, previous_trials)
    )
    constraints = None
    if search.max_train_vram_mb is not None and not NATIVE_CONSTRAINTS:

        def constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
            # Optuna < 5: read the user attribute the backend sets before tell; trials
            # without it (failed) count as feasible
            return [float(v) for v in trial.user_attrs.get(CONSTRAINT_ATTR, [0.0])]

    if search.sampler == "nsga2":
        population = search.population_size or max(2, min(search.trials, 50) // 2)
        return optuna.samplers.NSGAIISampler(
            population_size=population, seed=search.seed, constraints_func=constraints
        )
    if search.sampler == "tpe":
        with warnings.catch_warnings():
            # group=True is "experimental" in Optuna; it is what a conditional space needs
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=search.seed,
                constraints_func=constraints,
                n_startup_trials=max(2, min(10, search.trials // 3)),
                # one joint model per group of parameters that occur together (a depth-3 body's
                # blocks, a front end's branches) instead of one per parameter
                multivariate=True,
                group=True,
            )
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(
            seed=search.seed,
            constraints_func=constraints,
            n_startup_trials=max(2, min(10, search.trials // 3)),
        )
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return _grid_sampler(config)


# a grid is enumerated up front by Optuna's GridSampler: keep it to what a study can run
MAX_GRID_POINTS = 100_000


def _grid_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    """Return a GridSampler over every multi-choice dimension of the study's space.

    Raises:
        SearchError: the grid has more than MAX_GRID_POINTS points (pin more dimensions).
    """
    from search_spaces.space import SearchSpace

    grid = SearchSpace.from_dict(config.space).grid_space()
    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_POINTS:
        widest = sorted(grid, key=lambda name: -len(grid[name]))[:5]
        raise SearchError(
            f"search.sampler 'grid': the space has {size:,} grid points (> {MAX_GRID_POINTS:,}) "
            f"over {len(grid)} dimensions; pin dimensions in `space:` to single choices "
            f"(widest: {', '.join(f'{n} ({len(grid[n])})' for n in widest)})"
        )
    return AskTellGridSampler(grid, seed=config.search.seed)


class AskTellGridSampler(optuna.samplers.GridSampler):
    """A GridSampler usable through ask-and-tell (how Ray's OptunaSearch drives Optuna).

    Optuna's GridSampler calls ``Study.stop()`` once the grid is exhausted, which raises outside
    ``Study.optimize``; here the requested trial count ends the search instead (a grid smaller
    than ``--trials`` then repeats points, as Optuna does).
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise


# -- progress -----------------------------------------------------------------------------------
@dataclass
class Progress:
    """The live state of a search: counts, records and the front; prints one compact line."""

    study: str
    total: int
    objectives: list[Objective]
    records: list[TrialRecord] = field(default_factory=list)
    running: int = 0
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    hv_history: list[tuple[int, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def counts(self) -> dict[str, int]:
        """Return finished trials by outcome: done, complete, pruned, failed, infeasible."""
        statuses = [r.status for r in self.records]
        return {
            "done": len(statuses),
            "complete": statuses.count("complete"),
            "pruned": statuses.count("pruned"),
            "infeasible": statuses.count("infeasible"),
            "failed": len(statuses)
            - statuses.count("complete")
            - statuses.count("pruned")
            - statuses.count("infeasible"),
        }

    def line(self) -> str:
        """Return the one-line status: done/total, running, pruned, failed, front, best, HV."""
        c = self.counts()
        front = pareto.front_records(self.records, self.objectives)
        first = self.objectives[0]
        values = [r.objectives[first.name] for r in self.records if r.status == "complete"]
        best = "-"
        if values:
            pick = max(values) if first.direction == "maximize" else min(values)
            best = f"{pick:.4f}"
        hv, _ = pareto.records_hypervolume(self.records, self.objectives)
        elapsed = time.monotonic() - self.started
        return (
            f"[{self.study}] done {c['done']}/{self.total} · running {self.running} · "
            f"pruned {c['pruned']} · failed {c['failed']} · infeasible {c['infeasible']} · "
            f"front {len(front)} · best {first.name} {best} · HV {hv:.4g} · {elapsed:.0f} s"
        )

    def add(self, record: TrialRecord) -> None:
        """Add a finished trial, remember the hypervolume and print the line."""
        self.records.append(record)
        n_complete = sum(1 for r in self.records if r.status == "complete")
        hv, _ = pareto.records_hypervolume(self.records, self.objectives)
        self.hv_history.append((n_complete, hv))
        self.print()

    def print(self) -> None:
        """Write the status line (one line per change, so logs stay readable)."""
        print(self.line(), file=self.stream, flush=True)


# -- the driver ---------------------------------------------------------------------------------
@dataclass
class SearchOutcome:
    """What ``run_search`` returns: every record of the study, the summary and the front."""

    records: list[TrialRecord]
    summary: StudySummary
    front: list[TrialRecord]
    hypervolume: float
    knee: TrialRecord | None
    tracking_uri: str | None = None
    experiment_dir: str | None = None
    # proposals that repeated a known design, answered without training (DUPLICATE_ATTR)
    repeats: int = 0


def summarise(
    study_name: str,
    records: list[TrialRecord],
    objectives: list[Objective],
    config: dict[str, Any],
    hv_history: list[tuple[int, float]] | None = None,
) -> tuple[StudySummary, list[TrialRecord], float, TrialRecord | None]:
    """Return (summary, front, hypervolume, knee) and set ``on_pareto_front`` on the records.

    The reference point is computed from all complete trials (0 for the metric, 1.1 × the worst
    cost); the hypervolume history is recomputed against it so its values are comparable.
    """
    front = pareto.front_records(records, objectives)
    on_front = {r.number for r in front}
    for r in records:
        r.on_pareto_front = r.number in on_front
    hv, ref = pareto.records_hypervolume(records, objectives)
    history: list[tuple[int, float]] = []
    complete = sorted((r for r in records if r.status == "complete"), key=lambda r: r.number)
    for k in range(1, len(complete) + 1):
        history.append((k, pareto.records_hypervolume(complete[:k], objectives, ref)[0]))
    knee = pareto.knee_record(records, objectives)
    summary = StudySummary(
        study_name=study_name,
        objectives=list(objectives),
        reference_point=ref,
        hypervolume_history=history or list(hv_history or []),
        knee_number=knee.number if knee else None,
        config=config,
    )
    return summary, front, hv, knee


def load_study_features(config: StudyConfig) -> FeatureSet:
    """Return the study's FeatureSet, computed (or read from the cache) once on the driver."""
    from trainers.features import load_features

    return load_features(
        config.data.source,
        config.data.features,
        cache_dir=config.data.cache_dir,
        on_bad_audio=config.data.on_bad_audio,
        label_regex=config.data.label_regex,
        seed=config.search.seed,
    )


def build_space(config: StudyConfig, data: FeatureSet) -> Any:
    """Return the SearchSpace of the config, bound to the features' input shape."""
    from search_spaces.space import SearchSpace

    space = SearchSpace.from_dict(config.space)
    if space.n_mels is None:
        space = dataclasses.replace(space, n_mels=data.n_mels, n_frames=data.n_frames)
    return space


def initial_params(config: StudyConfig, space: Any) -> list[tuple[str, dict[str, Any]]]:
    """Return (label, trial parameters) of each ``search.initial_specs`` design, in order.

    An entry is a preset name (``fsnas presets list``) or an ArchSpec JSON file.

    Raises:
        ConfigError: an entry is neither, its file does not parse, or the design is not a
            point of the search space (the message names ``search.initial_specs[i]``).
    """
    from search_spaces.presets import PRESETS

    out = []
    for index, entry in enumerate(config.search.initial_specs):
        key = f"search.initial_specs[{index}]"
        try:
            if entry in PRESETS:
                spec, label = PRESETS[entry].spec, f"preset {entry}"
            else:
                path = Path(entry)
                if not path.is_file():
                    raise ConfigError(
                        f"{key}: {entry!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
                    )
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as err:
                    raise ConfigError(f"{key}: cannot read {entry!r}: {err}") from None
                spec = ArchSpec.from_json(text)
                label = f"{spec.name or path.stem} ({path})"
            out.append((label, space.params_for(spec)))
        except SpecError as err:
            raise ConfigError(f"{key} = {entry!r}: {err}") from None
    return out


def enqueue_initial(
    study: optuna.Study, designs: list[tuple[str, dict[str, Any]]], remaining: int
) -> tuple[list[str], list[str]]:
    """Queue the warm-start designs as the study's next trials; return (queued, skipped).

    A design the study already finished (it has a record) or still has queued is skipped, so a
    resume never runs it twice; one whose run was interrupted (an orphan, see
    ``close_orphans``) is queued again. At most ``remaining`` designs are queued.
    """
    waiting = optuna.trial.TrialState.WAITING
    held = [
        t.system_attrs.get("fixed_params", t.params)
        for t in study.get_trials(deepcopy=False)
        if RECORD_ATTR in t.user_attrs or t.state == waiting
    ]
    queued: list[str] = []
    skipped: list[str] = []
    for label, params in designs:
        if params in held or len(queued) >= remaining:
            skipped.append(label)
            continue
        study.enqueue_trial(params, user_attrs={INITIAL_SPEC_ATTR: label})
        held.append(params)
        queued.append(label)
    return queued, skipped


def run_search(
    config: StudyConfig,
    *,
    stream: TextIO | None = None,
    tracker_factory: Callable[..., Any] | None = None,
) -> SearchOutcome:
    """Run (or resume) the study of ``config`` to ``search.trials`` finished trials.

    Returns the outcome with every record; the records also live in the Optuna storage.

    Raises:
        SearchError, ConfigError, TrackingError, DataError: before any trial trains.
    """
    from nas import ray_backend

    out = stream or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(config)  # a bad sampler choice fails before any work
    tracking_uri = _check_tracking(config)
    data = load_study_features(config)
    space = build_space(config, data)
    objectives = config.objectives(data.task)
    designs = initial_params(config, space)  # a bad warm-start entry fails before any work
    storage = open_storage(config.storage)
    study = _open_study(config, storage, objectives)
    orphans = close_orphans(storage, study)
    if study.trials:  # a resume: fresh random draws, not the first run's again
        sampler = make_sampler(config, len(study.trials))
    previous = load_records(study)
    remaining = config.search.trials - len(previous)
    progress = Progress(config.study, config.search.trials, objectives, stream=out)
    notice = early_stopping_notice(config, objectives)
    if notice:
        print(notice, file=out, flush=True)
    progress.records.extend(previous)
    if previous or orphans:
        print(
            f"[{config.study}] resuming: {len(previous)} finished trial(s) kept"
            + (f", {orphans} interrupted trial(s) will be asked again" if orphans else "")
            + f"; {max(remaining, 0)} to run (sampler seed "
            + f"{sampler_seed(config.search.seed, len(study.trials))}: new draws)",
            file=out,
            flush=True,
        )
    if designs and remaining > 0:
        queued, skipped = enqueue_initial(study, designs, remaining)
        print(
            f"[{config.study}] warm start: {len(queued)} design(s) run first"
            + (f" ({'; '.join(queued)})" if queued else "")
            + (f"; {len(skipped)} already in the study or over the budget" if skipped else ""),
            file=out,
            flush=True,
        )
    tracker = _start_tracker(config, tracking_uri, tracker_factory)
    if tracker is not None:
        for record in previous:
            tracker.log_trial(record)

    def on_record(record: TrialRecord) -> None:
        progress.add(record)
        if tracker is not None:
            tracker.log_trial(record)
            summary, _, _, _ = summarise(
                config.study, progress.records, objectives, config.to_dict(), progress.hv_history
            )
            tracker.maybe_refresh(progress.records, summary)

    settings = TrialSettings(
        train_config=trial_train_config(config),
        objectives=tuple(objectives),
        max_train_vram_mb=config.search.max_train_vram_mb,
    )
    experiment_dir = None
    status = "FINISHED"
    weights = weights_folder(config)
    try:
        if remaining > 0:
            experiment_dir = ray_backend.run(
                config=config,
                data=data,
                space=space,
                settings=settings,
                storage=storage,
                sampler=sampler,
                objectives=objectives,
                n_trials=remaining,
                on_record=on_record,
                progress=progress,
                weights_dir=weights,
            )
    except BaseException:
        status = "KILLED"
        raise
    finally:
        final_study = optuna.load_study(study_name=config.study, storage=storage)
        records = load_records(final_study)
        summary, front, hv, knee = summarise(
            config.study, records, objectives, config.to_dict(), progress.hv_history
        )
        if weights is not None and status == "FINISHED":
            tidy_weights(weights, records, front, config.search.keep_weights)
        if tracker is not None:
            tracker.finish(records, summary, status)
            # the kept weights of the front, beside each trial in MLflow (after finish, which
            # has created every child run)
            tracker.log_weights(front)
    return SearchOutcome(
        records=records,
        summary=summary,
        front=front,
        hypervolume=hv,
        knee=knee,
        tracking_uri=tracking_uri if tracker is not None else None,
        experiment_dir=experiment_dir,
        repeats=count_repeats(final_study),
    )


# a proposal that repeats a known design is answered without training and the sampler asked
# again, at most this many times per trial (a small, exhausted space must not spin: the last
# proposal then trains, repeat or not)
MAX_REDRAWS = 32


@dataclass(frozen=True)
class _Told:
    """What Optuna was told for a finished trial: enough to answer a repeat of its design."""

    number: int
    state: optuna.trial.TrialState
    values: list[float] | None
    constraint: list[float] | None


class RepeatGuard:
    """Keeps a study from training one design twice when its sampler proposes it again.

    Samplers over categorical spaces repeat themselves (TPE most of all); a repeat would cost a
    full training and teach the sampler nothing new. A proposal whose parameters equal those of
    a finished trial (one with an fsnas record, this run's or an earlier one's) is told that
    trial's outcome: values, state and constraint, with ``DUPLICATE_ATTR`` = its number. One
    equal to a trial still training is told FAIL (``DUPLICATE_ATTR`` = "running ..."). Either
    way the caller asks the sampler again; the repeat has no record, so it is not a trial of
    the budget and never on a front.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.count = 0  # proposals answered so far
        self._finished: dict[str, _Told] | None = None  # params key -> outcome (lazy)
        self._running: dict[str, str] = {}  # caller's trial tag -> params key

    def answer(self, trial: optuna.Trial) -> bool:
        """Tell ``trial`` its twin's outcome and return True; False when it has no twin."""
        key = _params_key(trial.params)
        twin = self._outcomes().get(key)
        live = next((tag for tag, k in self._running.items() if k == key), None)
        if twin is None and live is None:
            return False
        if twin is None:
            trial.set_user_attr(DUPLICATE_ATTR, f"running trial {live}")
            self.study.tell(trial, None, state=optuna.trial.TrialState.FAIL)
        else:
            trial.set_user_attr(DUPLICATE_ATTR, twin.number)
            if twin.constraint is not None:
                trial.set_user_attr(CONSTRAINT_ATTR, twin.constraint)
                if NATIVE_CONSTRAINTS:
                    trial.set_constraint("train_vram_mb", twin.constraint[0])
            self.study.tell(trial, twin.values, state=twin.state)
        self.count += 1
        return True

    def started(self, tag: str, trial: optuna.Trial) -> None:
        """Note that ``trial`` (the caller calls it ``tag``) is training."""
        self._running[tag] = _params_key(trial.params)

    def finished(
        self,
        tag: str | None,
        trial: optuna.Trial,
        state: optuna.trial.TrialState | None,
        values: list[float] | None,
    ) -> None:
        """Note ``trial``'s outcome as told (``state`` None: no outcome, e.g. interrupted)."""
        key = self._running.pop(tag, None) if tag is not None else None
        if state is None:
            return
        constraint = trial.user_attrs.get(CONSTRAINT_ATTR)
        told = _Told(trial.number, state, values, constraint)
        self._outcomes().setdefault(key or _params_key(trial.params), told)

    def _outcomes(self) -> dict[str, _Told]:
        if self._finished is None:
            self._finished = {}
            for t in self.study.get_trials(deepcopy=False):
                if RECORD_ATTR in t.user_attrs and t.state.is_finished():
                    told = _Told(t.number, t.state, t.values, t.user_attrs.get(CONSTRAINT_ATTR))
                    self._finished.setdefault(_params_key(t.params), told)
        return self._finished


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def count_repeats(study: optuna.Study) -> int:
    """Return how many of the study's proposals repeated a known design (never trained)."""
    return sum(DUPLICATE_ATTR in t.user_attrs for t in study.get_trials(deepcopy=False))


def _open_study(
    config: StudyConfig, storage: optuna.storages.BaseStorage, objectives: list[Objective]
) -> optuna.Study:
    """Return the study (created or loaded); a stored study must have the same objectives."""
    directions = [o.direction for o in objectives]
    study = optuna.create_study(
        study_name=config.study, storage=storage, directions=directions, load_if_exists=True
    )
    stored_directions = [d.name.lower() for d in study.directions]
    names = [o.name for o in objectives]
    stored_names = study.user_attrs.get("objectives", names)
    if stored_directions != directions or stored_names != names:
        raise SearchError(
            f"study {config.study!r} in {config.storage}: stored with objectives "
            f"{stored_names} ({stored_directions}), the config asks for {names} ({directions}); "
            "use another --study name"
        )
    study.set_user_attr("objectives", names)
    study.set_user_attr("objective_labels", [o.label for o in objectives])
    study.set_user_attr("config", config.to_dict())
    return study


def trial_train_config(config: StudyConfig) -> TrainConfig:
    """Return the TrainConfig every trial of the study trains with (threads per trial set)."""
    threads = max(1, int(config.resources.cpus_per_trial))
    return dataclasses.replace(config.train, num_threads=config.train.num_threads or threads)


def _check_tracking(config: StudyConfig) -> str | None:
    """Return the MLflow URI after checking it answers (None when tracking is "none").

    Raises:
        TrackingError: the store cannot be reached; raised before any feature or trial work.
    """
    if config.tracking_uri == "none":
        return None
    from dashboards import tracking

    uri = tracking.resolve_tracking_uri(config.tracking_uri)
    tracking.check_tracking_reachable(uri)
    return uri


def _start_tracker(config: StudyConfig, uri: str | None, factory: Callable[..., Any] | None) -> Any:
    """Return a started MLflow StudyTracker for the study, or None without tracking."""
    if uri is None:
        return None
    if factory is None:
        from dashboards import tracking

        tracker = tracking.StudyTracker(uri, config.study, config.to_dict(), kind="search")
    else:
        tracker = factory(config)
    tracker.start()
    return tracker


# -- tables -------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def front_table(
    front: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    knee: TrialRecord | None = None,
) -> str:
    """Return the Pareto front as a fixed-width text table (best metric first)."""
    metric = objectives[0].name
    header = (
        f"{'trial':>5}  {metric:>12}  {'VRAM MB':>8}  {'GFLOPs':>7}  {'params':>8}  {'status':<13}"
    )
    lines = [header + " spec", "-" * (len(header) + 30)]
    for r in front:
        mark = " knee" if knee is not None and r.number == knee.number else ""
        src = r.costs.get("vram_source", "")
        lines.append(
            f"{r.number:>5}  {_fmt(r.objectives.get(metric), 4):>12}  "
            f"{_fmt(r.costs.get('train_vram_mb')):>8}{'*' if src == 'estimated' else ' '} "
            f"{_fmt(r.costs.get('gflops'), 3):>7}  {_fmt(r.costs.get('params')):>8}  "
            f"{r.status + mark:<13} {r.spec_summary}"
            + (f"  [warm start: {r.initial_spec}]" if r.initial_spec else "")
        )
    if any(r.costs.get("vram_source") == "estimated" for r in front):
        lines.append("* VRAM estimated (no GPU); measured on CUDA")
    return "\n".join(lines)


def outcome_text(outcome: SearchOutcome) -> str:
    """Return the end-of-search report: counts, front table, hypervolume and knee."""
    objectives = outcome.summary.objectives
    statuses: dict[str, int] = {}
    for r in outcome.records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    ref = ", ".join(f"{k}={v:.4g}" for k, v in outcome.summary.reference_point.items())
    lines = [
        f"study {outcome.summary.study_name}: {len(outcome.records)} trials ({counts or 'none'})",
        f"Pareto front ({len(outcome.front)} trials; pruned, failed and infeasible excluded):",
        front_table(outcome.front, objectives, outcome.knee),
        f"hypervolume {outcome.hypervolume:.6g} (reference point: {ref or '-'})",
    ]
    if outcome.knee is not None:
        lines.append(f"knee: trial {outcome.knee.number} ({outcome.knee.spec_summary})")
    if outcome.repeats:
        lines.append(
            f"{outcome.repeats} proposal(s) repeated a design already trained or training: "
            "answered from its outcome and re-asked, not trained again"
        )
    kept = [r for r in outcome.front if r.costs.get(CHECKPOINT_KEY)]
    kept = [r for r in kept if Path(str(r.costs[CHECKPOINT_KEY])).is_file()]
    if kept:
        folder = Path(str(kept[0].costs[CHECKPOINT_KEY])).parent
        lines.append(
            f"trained weights of {len(kept)} front trial(s) in {folder} "
            "(`fsnas export` uses them instead of retraining)"
        )
    return "\n".join(lines)


def load_study(study_name: str, storage_url: str | None = None) -> SearchOutcome:
    """Return the outcome of a stored study (records, front, hypervolume, knee) without Ray.

    Raises:
        SearchError: the storage has no study of that name (the message lists those it has).
    """
    from nas.config import DEFAULT_STORAGE

    url = storage_url or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        raise SearchError(f"storage {url!r}: no such file (run `fsnas search` first)")
    storage = open_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        raise SearchError(f"storage {url!r}: no study {study_name!r}; it has {sorted(names)}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    labels = study.user_attrs.get("objective_labels") or []
    objectives = [
        Objective(name, d.name.lower(), labels[i] if i < len(labels) else "")  # type: ignore[arg-type]
        for i, (name, d) in enumerate(zip(study.user_attrs.get("objectives", []), study.directions))
    ]
    if not objectives:
        raise SearchError(f"study {study_name!r} in {url}: not an fsnas study (no objectives)")
    records = load_records(study)
    summary, front, hv, knee = summarise(
        study_name, records, objectives, dict(study.user_attrs.get("config", {}))
    )
    return SearchOutcome(
        records=records,
        summary=summary,
        front=front,
        hypervolume=hv,
        knee=knee,
        repeats=count_repeats(study),
    )
