"""The study configuration: dataclasses, strict YAML loading and command-line overrides.

A study config file is plain YAML (read with ``yaml.safe_load``: it can never import or run
code). Every key is checked: an unknown key, a wrong type or an out-of-range value raises
``ConfigError`` naming the file, the dotted key and the value. Flags override keys through
``apply_overrides`` with the same checks, so ``--epochs -1`` fails like ``epochs: -1``.

YAML anchors and aliases (``&a`` / ``*a``) are allowed, but the document they expand to is
bounded (``MAX_YAML_NODES`` values, no recursive alias): a "billion laughs" file of a few
hundred bytes is refused before anything walks it, and messages quote at most a short excerpt
of a value (``search_spaces.errors.excerpt``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from dashboards.records import Objective
from search_spaces.around import DEFAULT_MAX_MOVES, MAX_MOVES
from search_spaces.errors import FsnasError, FsnasWarning, excerpt
from trainers.featureset import MAX_CLIP_SECONDS, FeatureConfig
from trainers.metrics import PRIMARY_METRIC
from trainers.result import TrainConfig

Sampler = Literal["nsga2", "tpe", "gp", "random", "grid"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)

DEFAULT_STORAGE = "sqlite:///.fsnas/studies.db"
# what `fsnas export --retrain-on` may train the exported model on
RETRAIN_ON = ("train", "train+valid")
DEFAULT_RAY_DIR = ".fsnas/ray"
# <weights_dir>/<study>/<storage key>/trial-NNNNN.safetensors (nas.study.weights_folder)
DEFAULT_WEIGHTS_DIR = ".fsnas/weights"
# which trained trials' best-epoch weights the search keeps (``fsnas export`` uses them)
KeepWeights = Literal["front", "all", "none"]
KEEP_WEIGHTS: tuple[str, ...] = get_args(KeepWeights)

# The one table of objectives a study can use: name -> (direction, axis title with unit).
# "val_metric" stands for the task's validation metric (see ``metric_name``).
OBJECTIVES: dict[str, tuple[Literal["maximize", "minimize"], str]] = {
    "val_metric": ("maximize", "validation metric"),
    "train_vram_mb": ("minimize", "peak training VRAM (MiB)"),
    "gflops": ("minimize", "forward GFLOPs per clip"),
    "params": ("minimize", "parameters"),
    "latency_ms": ("minimize", "batch-1 latency (ms)"),
    "infer_vram_mb": ("minimize", "peak inference VRAM (MiB)"),
    "val_pitch_robustness": ("maximize", "validation metric under pitch shift"),
}
# the validation metric a task is judged by: trainers.metrics.PRIMARY_METRIC on the valid split
TASK_METRICS: dict[str, str] = {task: f"val_{name}" for task, name in PRIMARY_METRIC.items()}


class ConfigError(FsnasError, ValueError):
    """The study config is malformed; the message names the file, the key and the value."""


# A study config is a few dozen values; aliases may repeat parts of it, but what they expand
# to is bounded (a 300-byte alias bomb expands to 10^9 values and took 104 s and 6 GB).
MAX_YAML_NODES = 10_000
MAX_STUDY_CHARS = 100
# PyYAML's pure-Python scanner reads about 1 MB/s: a larger file is not a study config
MAX_CONFIG_BYTES = 1_000_000


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
    # semitones: the valid split is also featurised pitch-shifted by each, and every trial
    # reports val_pitch_robustness (its metric averaged over these shifts); e.g. [-2, 2]
    pitch_shifts: tuple[float, ...] = ()


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
    max_train_vram_mb: float | None = None  # MiB (train_vram_mb, docs/vram.md)
    max_failures: int = 0  # retries of a crashed trial (a failed *result* is never retried)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    population_size: int | None = None  # nsga2 generation size; None = min(trials, 50) // 2
    # finished trials tpe / gp model at most (besides the Pareto front); None: nas.sampling's
    # default per sampler, 0: every trial (a proposal's cost then grows with the study)
    model_window: int | None = None
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
    gpu_memory_mb: float | None = None  # MiB, for "auto"; None: read from the driver's GPU 0
    reuse_actors: bool = True


SPACE_BASE_KEY = "base"
"""The ``space:`` key naming the space (a named space or a YAML file) its other keys change."""


@dataclass(frozen=True)
class StudyConfig:
    """Everything a search needs; ``study`` + ``storage`` identify it across resumes."""

    study: str = "fsnas"
    storage: str = DEFAULT_STORAGE
    tracking_uri: str | None = None
    ray_dir: str = DEFAULT_RAY_DIR
    weights_dir: str = DEFAULT_WEIGHTS_DIR
    data: DataConfig = field(default_factory=DataConfig)
    # search_spaces.SearchSpace keys; "base": a named space (nas/configs/spaces) or a YAML file
    # of keys that the others change (`space: literature` is short for {base: literature})
    space: dict[str, Any] = field(default_factory=dict)
    # a preset or spec file: search the designs within space_around_moves one-step moves of it
    # (search_spaces.around), the design first; replaces `space`
    space_around: str | None = None
    space_around_moves: int = DEFAULT_MAX_MOVES
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
WITH_FLAGS = " (with command-line flags)"
"""What a config's name in a message gets once command-line flags changed it."""


def config_label(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> str:
    """Return how ``load_config(path, overrides)`` names the config in its messages."""
    where = "config" if path is None else str(path)
    return where + WITH_FLAGS if overrides else where


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> StudyConfig:
    """Return the validated study config from a YAML file (or the defaults) plus overrides.

    Args:
        path: a YAML file, or None for the defaults.
        overrides: dotted keys to values, e.g. ``{"search.trials": 10}`` (the CLI flags).

    Raises:
        ConfigError: missing/unreadable file, invalid YAML, unknown key, wrong type or value.
    """
    where = config_label(path)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            size = Path(path).stat().st_size
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(
                    f"{where}: {size:,} bytes > the limit of {MAX_CONFIG_BYTES:,} "
                    "(MAX_CONFIG_BYTES); a study config is a few kB"
                )
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the config file ({exc.strerror})") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{where}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); save the "
                "config as UTF-8 YAML"
            ) from None
        loaded = safe_load_bounded(text, where)
        if loaded is None or loaded == {}:
            warnings.warn(
                f"{where}: the file sets no key; every key takes its default "
                f"({_defaults_summary()}); see configs/ for examples",
                FsnasWarning,
                stacklevel=2,
            )
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    config = from_dict(data, where)
    if overrides:
        config = apply_overrides(config, overrides, where)
    return config


def _defaults_summary() -> str:
    c = StudyConfig()
    return (
        f"study {c.study!r}, data {c.data.source}, {c.search.trials} trials of "
        f"{c.train.epochs} epochs, storage {c.storage}"
    )


def safe_load_bounded(text: str, where: str) -> Any:
    """Return ``yaml.safe_load(text)`` after checking what its aliases expand to.

    The document is composed (a graph: an alias is a reference, so this is cheap), then its
    expanded size is counted with a memo per node, before any Python object is built.

    Raises:
        ConfigError: invalid YAML, a recursive alias, or more than ``MAX_YAML_NODES`` values
            once aliases are expanded (the message quotes none of them).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({exc})".replace("\n", " ")) from None
    except RecursionError:  # PyYAML composes and constructs recursively: `[[[[...]]]]`
        raise ConfigError(
            f"{where}: the YAML is nested too deeply; a study config is a few levels deep"
        ) from None
    finally:
        loader.dispose()


def _check_expanded_size(root: yaml.Node, where: str) -> int:
    """Return the expanded node count of a composed YAML document; raise above the limit."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError(
                f"{where}: a YAML alias refers to the node that contains it (line "
                f"{node.start_mark.line + 1}); recursive aliases are not allowed"
            )
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                break
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise ConfigError(
                f"{where}: the YAML expands to more than {MAX_YAML_NODES:,} values (anchors "
                f"and aliases, from line {node.start_mark.line + 1}); a study config holds a "
                "few dozen: write the values out or remove the aliases"
            )
        return total

    try:
        return size(root)
    except RecursionError:
        raise ConfigError(f"{where}: the YAML is nested too deeply") from None


def from_dict(data: Mapping[str, Any], where: str = "config") -> StudyConfig:
    """Return a validated ``StudyConfig`` from a plain mapping (see ``load_config``)."""
    if isinstance(data, Mapping) and isinstance(data.get("space"), str):
        data = {**data, "space": {SPACE_BASE_KEY: data["space"]}}  # `space: NAME`
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
    return from_dict(data, where + WITH_FLAGS)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _from_mapping(cls: type, data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: {prefix or 'top level'}: expected a mapping, got {type(data).__name__} "
            f"{excerpt(data)}"
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        shown = ", ".join(_key(prefix, u if len(u) <= 60 else u[:60] + "…") for u in unknown[:10])
        if len(unknown) > 10:
            shown += f" and {len(unknown) - 10} more"
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
        return ConfigError(f"{where}: {key}: expected {expected}, got {excerpt(value)}")

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
        return ConfigError(f"{where}: {key}: {why}, got {excerpt(value)}")

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
    if c.search.model_window is not None and c.search.model_window < 0:
        raise bad("search.model_window", c.search.model_window, "must be >= 0 (0: every trial)")
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
    if c.data.features.clip_seconds > MAX_CLIP_SECONDS:
        raise bad(
            "data.features.clip_seconds",
            c.data.features.clip_seconds,
            f"must be <= {MAX_CLIP_SECONDS:g} s (each clip is padded or cut to this length; "
            "set it near your clips' duration)",
        )
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
    if "val_pitch_robustness" in c.search.objectives and not c.data.pitch_shifts:
        raise bad(
            "search.objectives",
            "val_pitch_robustness",
            "needs data.pitch_shifts (semitones, e.g. [-2, 2])",
        )
    for shift in c.data.pitch_shifts:
        if not (math.isfinite(shift) and abs(shift) <= 24):
            raise bad("data.pitch_shifts", shift, "must be a number of semitones within ±24")
    if len(set(c.data.pitch_shifts)) != len(c.data.pitch_shifts):
        raise bad("data.pitch_shifts", list(c.data.pitch_shifts), "lists a shift twice")
    if not c.study or any(ch in c.study for ch in "/\\ "):
        raise bad("study", c.study, "must be a non-empty name without '/', '\\' or spaces")
    if len(c.study) > MAX_STUDY_CHARS:
        raise bad(
            "study",
            c.study,
            f"must be at most {MAX_STUDY_CHARS} characters (it names a folder and an MLflow "
            f"experiment; this one has {len(c.study):,})",
        )
    if "://" not in c.storage:
        raise bad("storage", c.storage, "must be a SQLAlchemy URL such as sqlite:///study.db")
    if not c.data.source or c.data.source.startswith(":"):
        raise bad("data.source", c.data.source, "must be KIND or KIND:PATH")
    if c.space_around is not None:
        if not c.space_around.strip():
            raise bad("space_around", c.space_around, "expected a preset name or a spec file")
        if c.space:
            raise bad(
                "space_around",
                c.space_around,
                f"searches its own space; remove the space keys ({sorted(c.space)}) or "
                "space_around",
            )
    if not 1 <= c.space_around_moves <= MAX_MOVES:
        # params_for tries the orderings of a design's moves: at most MAX_MOVES! of them
        raise bad("space_around_moves", c.space_around_moves, f"must be 1 to {MAX_MOVES}")
    _check_space_keys(c.space, where)


def _check_space_keys(space: Mapping[str, Any], where: str) -> None:
    """Check the ``space:`` keys; with ``base`` (a named space or file) only their names.

    What a base holds is read and checked with the keys when the space is built
    (``nas.spaces.study_space``, before the search does any work).
    """
    from search_spaces.errors import SpecError
    from search_spaces.space import SearchSpace

    if SPACE_BASE_KEY not in space:
        try:
            SearchSpace.from_dict(space)
        except SpecError as exc:
            raise ConfigError(f"{where}: space: {exc}") from None
        return
    base = space[SPACE_BASE_KEY]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(
            f"{where}: space.{SPACE_BASE_KEY}: expected a named space or a YAML file, got "
            f"{excerpt(base)}"
        )
    known = {f.name for f in dataclasses.fields(SearchSpace)} | {SPACE_BASE_KEY}
    unknown = sorted(set(map(str, space)) - known)
    if unknown:
        raise ConfigError(
            f"{where}: space: unknown key(s) {excerpt(unknown)}; allowed: {sorted(known)}"
        )


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
