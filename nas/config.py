"""The study configuration: dataclasses, strict YAML loading and command-line overrides.

A study config file is plain YAML (read with ``yaml.safe_load``: it can never import or run
code). Every key is checked: an unknown key, a wrong type or an out-of-range value raises
``ConfigError`` naming the file, the dotted key and the value. Flags override keys through
``apply_overrides`` with the same checks, so ``--epochs -1`` fails like ``epochs: -1``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from dashboards.records import Objective
from search_spaces.errors import FsnasError
from trainers.featureset import FeatureConfig
from trainers.metrics import PRIMARY_METRIC
from trainers.result import TrainConfig

Sampler = Literal["nsga2", "tpe", "gp", "random", "grid"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)

DEFAULT_STORAGE = "sqlite:///.fsnas/studies.db"
# what `fsnas export --retrain-on` may train the exported model on
RETRAIN_ON = ("train", "train+valid")
DEFAULT_RAY_DIR = ".fsnas/ray"
DEFAULT_WEIGHTS_DIR = ".fsnas/weights"  # <weights_dir>/<study>/trial-NNNNN.safetensors
# which trained trials' best-epoch weights the search keeps (``fsnas export`` uses them)
KeepWeights = Literal["front", "all", "none"]
KEEP_WEIGHTS: tuple[str, ...] = get_args(KeepWeights)

# The one table of objectives a study can use: name -> (direction, axis title with unit).
# "val_metric" stands for the task's validation metric (see ``metric_name``).
OBJECTIVES: dict[str, tuple[Literal["maximize", "minimize"], str]] = {
    "val_metric": ("maximize", "validation metric"),
    "train_vram_mb": ("minimize", "peak training VRAM (MB)"),
    "gflops": ("minimize", "forward GFLOPs per clip"),
    "params": ("minimize", "parameters"),
    "latency_ms": ("minimize", "batch-1 latency (ms)"),
    "infer_vram_mb": ("minimize", "peak inference VRAM (MB)"),
}
# the validation metric a task is judged by: trainers.metrics.PRIMARY_METRIC on the valid split
TASK_METRICS: dict[str, str] = {task: f"val_{name}" for task, name in PRIMARY_METRIC.items()}


class ConfigError(FsnasError, ValueError):
    """The study config is malformed; the message names the file, the key and the value."""


@dataclass(frozen=True)
class DataConfig:
    """Which data the study trains on and how it becomes features."""

    # KIND[:PATH], e.g. "fsdd:../shared/data/fsdd/recordings", "folder:DIR",
    # "synthetic" or "synthetic:clips_per_class=40,seed=1"
    source: str = "synthetic"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    cache_dir: str = ".fsnas/cache"
    on_bad_audio: Literal["fail", "skip"] = "fail"
    label_regex: str | None = None


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """The Pareto-aware (MO-ASHA-like) scheduler: rungs at grace × eta^k epochs."""

    enabled: bool = True
    grace_epochs: int = 1
    reduction_factor: int = 3
    # a trial is stopped only when at least this many rung peers dominate it
    min_dominators: int = 2


@dataclass(frozen=True)
class SearchConfig:
    """How the search runs: budget, sampler, objectives, constraints and failures."""

    trials: int = 20
    sampler: Sampler = "nsga2"
    seed: int = 0
    objectives: tuple[str, ...] = ("val_metric", "train_vram_mb")
    time_budget_s: float | None = None  # the whole search; trials in flight finish
    max_train_vram_mb: float | None = None
    max_failures: int = 0  # retries of a crashed trial (a failed *result* is never retried)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    population_size: int | None = None  # nsga2 generation size; None = min(trials, 50) // 2
    keep_weights: KeepWeights = "front"  # front: the final front's; all: every complete trial's
    # warm start: designs evaluated first, as trials of the study (preset names or spec JSON
    # files); each must be a point of the search space
    initial_specs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourcesConfig:
    """Where and with how much each trial runs."""

    address: str | None = None  # None: start Ray locally; "auto" or HOST:PORT joins a cluster
    num_cpus: int | None = None  # local Ray only; None = every core
    cpus_per_trial: float = 1.0
    gpus_per_trial: str = "auto"  # "auto", a fraction like "0.25", or "1"
    max_concurrent: int | None = None  # None: as many as the resources allow
    gpu_memory_mb: float | None = None  # for "auto"; None: read from the driver's GPU 0
    reuse_actors: bool = True


@dataclass(frozen=True)
class StudyConfig:
    """Everything a search needs; ``study`` + ``storage`` identify it across resumes."""

    study: str = "fsnas"
    storage: str = DEFAULT_STORAGE
    tracking_uri: str | None = None
    ray_dir: str = DEFAULT_RAY_DIR
    weights_dir: str = DEFAULT_WEIGHTS_DIR
    data: DataConfig = field(default_factory=DataConfig)
    space: dict[str, Any] = field(default_factory=dict)  # search_spaces.SearchSpace bounds
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4))
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a YAML/JSON-ready dict (tuples become lists) that ``from_dict`` reads back."""
        return typing.cast(dict[str, Any], _plain(dataclasses.asdict(self)))

    def objectives(self, task: str) -> list[Objective]:
        """Return the study's objectives for a task, ``val_metric`` resolved to its name."""
        out = []
        for name in self.search.objectives:
            direction, label = OBJECTIVES[name]
            real = metric_name(task) if name == "val_metric" else name
            out.append(Objective(real, direction, real if name == "val_metric" else label))
        return out


def metric_name(task: str) -> str:
    """Return the validation metric a task is judged by (``val_accuracy``, ``val_roc_auc``)."""
    return TASK_METRICS[task]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# -- loading ----------------------------------------------------------------------------------
def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """Return the validated study config from a YAML file (or the defaults) plus overrides.

    Args:
        path: a YAML file, or None for the defaults.
        overrides: dotted keys to values, e.g. ``{"search.trials": 10}`` (the CLI flags).

    Raises:
        ConfigError: missing/unreadable file, invalid YAML, unknown key, wrong type or value.
    """
    where = "config"
    data: dict[str, Any] = {}
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the config file ({exc.strerror})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: invalid YAML ({exc})".replace("\n", " ")) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    config = from_dict(data, where)
    if overrides:
        config = apply_overrides(config, overrides, where)
    return config


def from_dict(data: Mapping[str, Any], where: str = "config") -> StudyConfig:
    """Return a validated ``StudyConfig`` from a plain mapping (see ``load_config``)."""
    config = typing.cast(StudyConfig, _from_mapping(StudyConfig, data, where, ""))
    _check_values(config, where)
    return config


def apply_overrides(
    config: StudyConfig, overrides: Mapping[str, Any], where: str = "config"
) -> StudyConfig:
    """Return ``config`` with dotted-key overrides applied and the result re-validated.

    ``None`` values are skipped (an unset flag); ``{"train.epochs": 2}`` sets one key.
    """
    data = config.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"{where}: override {key!r}: {part!r} is not a section")
            node = node[part]
        if parts[-1] not in node and parts[0] != "space":
            raise ConfigError(f"{where}: override {key!r}: unknown key")
        node[parts[-1]] = value
    return from_dict(data, f"{where} (with command-line flags)")


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _from_mapping(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: {prefix or 'top level'}: expected a mapping, got {type(data).__name__} "
            f"{data!r}"
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        shown = ", ".join(_key(prefix, u) for u in unknown)
        raise ConfigError(f"{where}: unknown key(s) {shown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: _coerce(hints[name], value, where, _key(prefix, name)) for name, value in data.items()
    }
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = get_args(hint)

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

    if hint is Any:
        return value
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise fail(f"one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where, key)
            except ConfigError:
                continue
        names = " or ".join(
            "null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args
        )
        raise fail(names)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise fail("a list")
        return tuple(_coerce(args[0], v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. gpus_per_trial: 0.5 or 1
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _from_mapping(hint, value, where, key)
    raise ConfigError(f"{where}: {key}: unsupported type {hint!r}")  # pragma: no cover


def _check_values(c: StudyConfig, where: str) -> None:
    def bad(key: str, value: Any, why: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: {why}, got {value!r}")

    positive_ints = {
        "train.epochs": c.train.epochs,
        "train.batch_size": c.train.batch_size,
        "search.trials": c.search.trials,
        "search.early_stopping.grace_epochs": c.search.early_stopping.grace_epochs,
        "search.early_stopping.min_dominators": c.search.early_stopping.min_dominators,
        "data.features.n_mels": c.data.features.n_mels,
        "data.features.n_fft": c.data.features.n_fft,
        "data.features.hop_length": c.data.features.hop_length,
        "data.features.sample_rate_hz": c.data.features.sample_rate_hz,
    }
    for key, value in positive_ints.items():
        if value < 1:
            raise bad(key, value, "must be >= 1")
    if c.search.early_stopping.reduction_factor < 2:
        raise bad(
            "search.early_stopping.reduction_factor",
            c.search.early_stopping.reduction_factor,
            "must be >= 2",
        )
    non_negative = {
        "search.max_failures": c.search.max_failures,
        "train.freq_mask_bins": c.train.freq_mask_bins,
        "train.time_mask_frames": c.train.time_mask_frames,
        "train.masks_per_axis": c.train.masks_per_axis,
        "train.mixup_alpha": c.train.mixup_alpha,
    }
    for key, number in non_negative.items():
        if not (math.isfinite(number) and number >= 0):
            raise bad(key, number, "must be >= 0")
    for index, entry in enumerate(c.search.initial_specs):
        if not entry.strip():
            raise bad(f"search.initial_specs[{index}]", entry, "expected a preset name or a file")
    if len(c.search.initial_specs) > c.search.trials:
        raise bad(
            "search.initial_specs",
            list(c.search.initial_specs),
            f"more designs than search.trials ({c.search.trials})",
        )
    if c.search.population_size is not None and c.search.population_size < 2:
        raise bad("search.population_size", c.search.population_size, "must be >= 2")
    positive_floats: dict[str, float | None] = {
        "train.lr": c.train.lr,
        "train.time_budget_s": c.train.time_budget_s,
        "search.time_budget_s": c.search.time_budget_s,
        "search.max_train_vram_mb": c.search.max_train_vram_mb,
        "resources.cpus_per_trial": c.resources.cpus_per_trial,
        "resources.gpu_memory_mb": c.resources.gpu_memory_mb,
        "data.features.clip_seconds": c.data.features.clip_seconds,
    }
    for key, fvalue in positive_floats.items():
        if fvalue is not None and not (math.isfinite(fvalue) and fvalue > 0):
            raise bad(key, fvalue, "must be a positive number")
    if c.train.weight_decay < 0:
        raise bad("train.weight_decay", c.train.weight_decay, "must be >= 0")
    if c.resources.num_cpus is not None and c.resources.num_cpus < 1:
        raise bad("resources.num_cpus", c.resources.num_cpus, "must be >= 1")
    if c.resources.max_concurrent is not None and c.resources.max_concurrent < 1:
        raise bad("resources.max_concurrent", c.resources.max_concurrent, "must be >= 1")
    parse_gpus_per_trial(c.resources.gpus_per_trial, where)
    if not c.search.objectives:
        raise bad("search.objectives", list(c.search.objectives), "needs at least one objective")
    for name in c.search.objectives:
        if name not in OBJECTIVES:
            raise bad("search.objectives", name, f"unknown objective; use {sorted(OBJECTIVES)}")
    if len(set(c.search.objectives)) != len(c.search.objectives):
        raise bad("search.objectives", list(c.search.objectives), "lists an objective twice")
    if c.search.objectives[0] != "val_metric":
        raise bad("search.objectives", list(c.search.objectives), "must start with val_metric")
    if not c.study or any(ch in c.study for ch in "/\\ "):
        raise bad("study", c.study, "must be a non-empty name without '/', '\\' or spaces")
    if "://" not in c.storage:
        raise bad("storage", c.storage, "must be a SQLAlchemy URL such as sqlite:///study.db")
    if not c.data.source or c.data.source.startswith(":"):
        raise bad("data.source", c.data.source, "must be KIND or KIND:PATH")
    from search_spaces.errors import SpecError
    from search_spaces.space import SearchSpace

    try:
        SearchSpace.from_dict(c.space)
    except SpecError as exc:
        raise ConfigError(f"{where}: space: {exc}") from None


def parse_gpus_per_trial(value: str, where: str = "config") -> float | None:
    """Return the GPU share per trial: a number in (0, 1] or a whole count, None for ``auto``.

    Raises:
        ConfigError: neither ``auto`` nor a positive number (fractions must be <= 1).
    """
    if value == "auto":
        return None
    try:
        share = float(value)
    except ValueError:
        raise ConfigError(
            f"{where}: resources.gpus_per_trial: expected 'auto' or a number, got {value!r}"
        ) from None
    if not math.isfinite(share) or share < 0 or (share > 1 and not share.is_integer()):
        raise ConfigError(
            f"{where}: resources.gpus_per_trial: expected 0, a fraction in (0, 1] or a whole "
            f"number of GPUs, got {value!r}"
        )
    return share
