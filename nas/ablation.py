"""Ablation studies: variants of a base architecture × seeds, trained alike, with statistics.

An ``AblationPlan`` is a list of ``Variant``s (one factor changed at a time around a base spec,
two with ``--grid``, or a built-in study such as ``vgg-to-vertical``) and the seeds every variant
is trained with. ``run_ablation`` sends every variant × seed to a trial runner: by default the
Ray Tune path of the search (``nas.ray_backend.run_fixed_trials``), in tests an in-process one.
The trial itself is ``nas.search.run_trial`` with the seed set, so an ablation trial is trained
and measured exactly like a search trial.

Statistics per variant (``aggregate``): mean, standard deviation and 95 % confidence interval
of the metric and of each cost (``COST_KEYS``), and the paired comparison of the variant with the
base over the seeds both completed (difference, its CI and a two-sided p-value; ``nas.stats``).
Outputs: ``ablation_table`` (terminal), ``write_ablation_csv`` and the plots of
``dashboards.ablation_plots``, which ``run_ablation`` also logs to MLflow under one parent run
with one child run per variant × seed.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from dashboards.records import Objective, StudySummary, TrialRecord
from nas.config import StudyConfig
from nas.search import TrialSettings, record_from_result, run_trial
from nas.stats import PairedComparison, Summary, paired_comparison, summarize
from search_spaces.errors import FsnasError, SpecError
from search_spaces.space import ABLATION_FACTORS, apply_factor
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Head, Padding, resolve_height
from search_spaces.validate import conv_out, pool_out, validate
from trainers.featureset import FeatureSet

COST_KEYS: tuple[str, ...] = ("train_vram_mb", "gflops", "params", "latency_ms", "seconds")
"""The costs summarised per variant. ``seconds`` is the training time (the epochs with their
validation passes, summed from the history), so a worker's first-trial start-up does not count;
the rest come from ``TrialRecord.costs``."""

COST_LABELS: dict[str, str] = {
    "train_vram_mb": "train VRAM MB",
    "gflops": "GFLOPs",
    "params": "params",
    "latency_ms": "latency ms",
    "seconds": "train s",
}
CONFIDENCE = 0.95
ABLATION_CSV = "ablation.csv"
TRIALS_CSV = "ablation_trials.csv"
PLAN_JSON = "ablation_plan.json"
SUMMARY_JSON = "ablation_summary.json"

# MLflow tags on each child run (the tracker's own tags say status, spec, device, ...)
TAG_VARIANT = "ablation.variant"
TAG_SEED = "ablation.seed"
TAG_IS_BASE = "ablation.is_base"


class AblationError(FsnasError):
    """An ablation cannot be planned or run; the message names the variant, factor and value."""


# -- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One architecture of an ablation: a name, the factor values that define it, its spec."""

    name: str
    spec: ArchSpec
    factors: tuple[tuple[str, Any], ...] = ()  # (factor, value) pairs, plot order
    is_base: bool = False

    def factor_value(self, factor: str) -> Any:
        """Return this variant's value of ``factor`` (None when the variant does not set it)."""
        return dict(self.factors).get(factor)


@dataclass(frozen=True)
class PlannedTrial:
    """One variant × seed: ``number`` is the trial's id in the records and in MLflow."""

    number: int
    variant: int  # index into AblationPlan.variants
    seed: int


@dataclass(frozen=True)
class AblationPlan:
    """Variants × seeds; the first factor is the plots' x axis, the second (grid) the series."""

    name: str
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    factors: tuple[str, ...] = ()
    description: str = ""
    study: str = ""  # the built-in study it came from ("" for --factor plans)

    def __post_init__(self) -> None:
        if not self.variants:
            raise AblationError(f"ablation {self.name!r}: no variants")
        if not self.seeds:
            raise AblationError(f"ablation {self.name!r}: needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise AblationError(f"ablation {self.name!r}: seeds repeat: {list(self.seeds)}")
        if sum(v.is_base for v in self.variants) != 1:
            raise AblationError(f"ablation {self.name!r}: exactly one variant must be the base")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise AblationError(f"ablation {self.name!r}: variant names repeat: {names}")

    @property
    def base_index(self) -> int:
        """Return the index of the base variant."""
        return next(i for i, v in enumerate(self.variants) if v.is_base)

    @property
    def base(self) -> Variant:
        """Return the variant every other one is compared with."""
        return self.variants[self.base_index]

    def trials(self) -> list[PlannedTrial]:
        """Return every variant × seed, variant by variant, numbered from 0."""
        pairs = itertools.product(range(len(self.variants)), self.seeds)
        return [PlannedTrial(n, v, s) for n, (v, s) in enumerate(pairs)]

    def trial_config(self, trial: PlannedTrial) -> dict[str, Any]:
        """Return what the trial function receives: the spec, the seed and where it belongs."""
        variant = self.variants[trial.variant]
        return {
            "spec": variant.spec.to_dict(),
            "seed": trial.seed,
            "number": trial.number,
            "variant": variant.name,
        }

    def validate(self, n_mels: int, n_frames: int) -> None:
        """Check every variant builds for the input, before anything trains.

        Raises:
            AblationError: naming the variant and the layer that does not fit.
        """
        for variant in self.variants:
            try:
                validate(variant.spec, n_mels, n_frames)
            except SpecError as exc:
                raise AblationError(
                    f"ablation {self.name!r}: variant {variant.name!r} does not fit the "
                    f"{n_mels} mel × {n_frames} frame input: {exc}"
                ) from None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description of the plan (every variant's spec included)."""
        return {
            "name": self.name,
            "study": self.study,
            "description": self.description,
            "factors": list(self.factors),
            "seeds": list(self.seeds),
            "variants": [
                {
                    "name": v.name,
                    "is_base": v.is_base,
                    "factors": {k: _jsonable(x) for k, x in v.factors},
                    "spec_summary": v.spec.summary(),
                    "spec": v.spec.to_dict(),
                }
                for v in self.variants
            ],
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def parse_factor_value(factor: str, text: str) -> Any:
    """Return the typed value of ``factor`` written on the command line.

    ``frequency_height`` takes an int or ``"<fraction>M"``; ``time_width``, ``depth`` and
    ``channels`` ints; ``time_pooling`` an int or one int per block joined by ``/`` (``2/2/4``);
    ``freq_reduce`` and ``head_pooling`` their names.

    Raises:
        AblationError: unknown factor or a value of the wrong form (the message names both).
    """
    if factor not in ABLATION_FACTORS:
        raise AblationError(f"unknown factor {factor!r}; known factors: {list(ABLATION_FACTORS)}")
    value = text.strip()
    where = f"--values of {factor}: {text!r}"
    if factor == "frequency_height":
        if value.isdigit():
            return int(value)
        try:
            resolve_height(value, 1000, where)
        except SpecError as exc:
            raise AblationError(str(exc)) from None
        return value
    if factor in ("time_width", "depth", "channels"):
        if not value.isdigit():
            raise AblationError(f"{where}: expected a whole number")
        return int(value)
    if factor == "time_pooling":
        parts = value.split("/")
        if not all(p.strip().isdigit() for p in parts):
            raise AblationError(f"{where}: expected an int or ints joined by '/' (2/2/4)")
        sizes = tuple(int(p) for p in parts)
        return sizes[0] if len(sizes) == 1 else sizes
    return value


def parse_factor_values(factor: str, text: str) -> list[Any]:
    """Return the typed values of a comma-separated ``--values`` list (order kept).

    Raises:
        AblationError: an empty list, a repeated value or a malformed value.
    """
    items = [t for t in (p.strip() for p in text.split(",")) if t]
    if not items:
        raise AblationError(f"--values of {factor}: no values in {text!r}")
    values = [parse_factor_value(factor, t) for t in items]
    seen: list[Any] = []
    for v in values:
        if v in seen:
            raise AblationError(f"--values of {factor}: {v!r} is given twice in {text!r}")
        seen.append(v)
    return values


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "/".join(str(v) for v in value)
    return str(value)


def factor_plan(
    base: ArchSpec,
    factor: str,
    values: Sequence[Any],
    seeds: Sequence[int],
    *,
    grid_factor: str | None = None,
    grid_values: Sequence[Any] = (),
    name: str = "",
) -> AblationPlan:
    """Return the plan of ``factor`` (× ``grid_factor``) around ``base``, for every seed.

    A value whose spec equals ``base`` is the base variant; when none does, ``base`` is added
    first as the variant ``base``, so every variant has a base to be compared with.

    Raises:
        AblationError: an unknown factor, a value ``apply_factor`` refuses, two values giving
            the same network, or a grid over the same factor twice.
    """
    if grid_factor is not None and grid_factor == factor:
        raise AblationError(f"--grid {grid_factor}: the grid factor must differ from --factor")
    if grid_factor is not None and not grid_values:
        raise AblationError(f"--grid {grid_factor}: needs --grid-values")
    axes: list[tuple[str, Sequence[Any]]] = [(factor, values)]
    if grid_factor is not None:
        axes.append((grid_factor, grid_values))
    variants: list[Variant] = []
    specs: list[ArchSpec] = []  # as apply_factor made them (names are set per variant below)
    for combo in itertools.product(*(vals for _, vals in axes)):
        spec = base
        pairs = tuple((f, v) for (f, _), v in zip(axes, combo))
        for f, v in pairs:
            try:
                spec = apply_factor(spec, f, v)
            except SpecError as exc:
                raise AblationError(f"variant {f}={_format_value(v)}: {exc}") from None
        label = ", ".join(f"{f}={_format_value(v)}" for f, v in pairs)
        for other, other_spec in zip(variants, specs):
            if other_spec == spec:
                raise AblationError(
                    f"variants {other.name!r} and {label!r} give the same network "
                    f"({spec.summary()}); drop one of the values"
                )
        specs.append(spec)
        variants.append(Variant(label, spec.replace(name=label), pairs, spec == base))
    if not any(v.is_base for v in variants):
        base_pairs = tuple((f, None) for f, _ in axes)
        variants.insert(0, Variant("base", base, base_pairs, True))
    factors = tuple(f for f, _ in axes)
    return AblationPlan(
        name=name or "-".join((base.name, *factors) if base.name else factors),
        variants=tuple(variants),
        seeds=tuple(seeds),
        factors=factors,
        description=f"{' × '.join(factors)} around {base.name or base.summary()}",
    )


# -- the built-in study: from a 3×3 VGG to one vertical layer ---------------------------------
VGG_DEPTH = 5
VERTICAL_HEIGHT = "0.9M"  # Pons' timbral filter height, DESIGN.md's anchor
STUDY_DEFAULT_CHANNELS = 32
STUDY_WIDTH = 3
VERTICAL_WIDTH = 7  # the width of Pons' vertical anchor (DESIGN.md: 0.9M × 7)


def receptive_field_height(spec: ArchSpec, n_mels: int) -> int:
    """Return how many mel bins one unit of the last body conv sees (pools before it count).

    Only plain body stacks (no front end, stride-1 convs) are handled: that is all the
    ``vgg-to-vertical`` walk needs.
    """
    field_rows, jump = 1, 1
    for i, blk in enumerate(spec.body):
        height = resolve_height(blk.height, n_mels)
        field_rows += (height - 1) * jump * blk.convs
        if i < len(spec.body) - 1:  # the last pool comes after the last conv
            field_rows += (blk.pool[0] - 1) * jump
            jump *= (blk.pool_stride or blk.pool)[0]
    return field_rows


def _vgg_stack(
    first_height: int, depth: int, n_mels: int, n_frames: int, channels: int, width: int
) -> ArchSpec:
    """Return ``depth`` conv blocks with 2×2 max pools (clipped to what remains of the input).

    The first block has ``first_height``; a 3-high first block is the classic VGG ("same"
    padding), a taller one uses "valid" frequency padding as Pons' tall filters do (padding a
    filter that spans most of the axis would mostly convolve zeros).
    """
    blocks: list[ConvBlock] = []
    freq, time = n_mels, n_frames
    for i in range(depth):
        height = first_height if i == 0 else 3
        padding: Padding = "valid" if i == 0 and first_height != 3 else "same"
        freq = conv_out(freq, height, 1, padding)
        time = conv_out(time, width, 1, "same")
        pool = (min(2, freq), min(2, time))
        freq, time = pool_out(freq, pool[0], pool[0]), pool_out(time, pool[1], pool[1])
        blocks.append(ConvBlock(height, width, channels, freq_padding=padding, pool=pool))
    return ArchSpec(body=tuple(blocks), head=Head(freq_reduce="max", time_pooling="max"))


def vgg_to_vertical(
    n_mels: int,
    n_frames: int,
    *,
    channels: int = STUDY_DEFAULT_CHANNELS,
    width: int = STUDY_WIDTH,
) -> list[Variant]:
    """Return the walk from a 5-block 3×3 VGG to one vertical layer, depth 5, 4, ..., 1.

    Depth 5 is the VGG: 3×3 convs, each followed by a 2×2 max-pool. At depth 4, 3 and 2 the
    first filter grows to the smallest height at which one unit of the last conv sees the whole
    frequency axis (capped at 0.9 × n_mels); the later blocks stay 3×3. Depth 1 is one layer of
    ``0.9M × width`` filters max-pooled over frequency (Pons). Channels, widths, input
    normalisation and the head (max over frequency, then over time) are the same along that
    walk, so it changes depth and filter height only. A last step then changes the width alone,
    to the ``0.9M × 7`` of DESIGN.md's vertical anchor (left out when ``width`` is already 7).
    Valid for any input of at least 2 × 2.
    """
    cap = max(1, resolve_height(VERTICAL_HEIGHT, n_mels))
    variants: list[Variant] = []
    for depth in range(VGG_DEPTH, 1, -1):
        first = 3 if depth == VGG_DEPTH else cap
        if depth != VGG_DEPTH:
            for height in range(min(3, n_mels), cap + 1):
                stack = _vgg_stack(height, depth, n_mels, n_frames, channels, width)
                if receptive_field_height(stack, n_mels) >= n_mels:
                    first = height
                    break
        spec = _vgg_stack(min(first, n_mels), depth, n_mels, n_frames, channels, width)
        label = f"vgg{depth} 3x3" if depth == VGG_DEPTH else f"depth{depth} {first}x{width}"
        variants.append(
            Variant(
                label,
                spec.replace(name=label),
                (("depth", depth), ("frequency_height", first), ("width", width)),
                is_base=depth == VGG_DEPTH,
            )
        )
    for step_width in dict.fromkeys((width, VERTICAL_WIDTH)):  # width, then 7 (once)
        label = f"vertical {VERTICAL_HEIGHT}x{step_width}"
        vertical = ArchSpec(
            name=label,
            frontend=(Branch(VERTICAL_HEIGHT, step_width, channels, freq_reduce="max"),),
            head=Head(freq_reduce="max", time_pooling="max"),
        )
        factors = (("depth", 1), ("frequency_height", cap), ("width", step_width))
        variants.append(Variant(label, vertical, factors))
    return variants


@dataclass(frozen=True)
class BuiltinStudy:
    """A named ablation whose variants depend only on the input shape (and channels)."""

    name: str
    description: str
    factors: tuple[str, ...]
    variants: Callable[..., list[Variant]]


STUDIES: dict[str, BuiltinStudy] = {
    "vgg-to-vertical": BuiltinStudy(
        "vgg-to-vertical",
        "from a 5-block 3×3 VGG to one vertical 0.9M layer: depth shrinks while the first "
        "filter grows to cover the frequency axis; last, the vertical filter widens to 7",
        ("depth", "width"),
        vgg_to_vertical,
    ),
}


def study_plan(
    name: str,
    n_mels: int,
    n_frames: int,
    seeds: Sequence[int],
    *,
    channels: int = STUDY_DEFAULT_CHANNELS,
    plan_name: str = "",
) -> AblationPlan:
    """Return the plan of a built-in study for an input of ``n_mels × n_frames``.

    Raises:
        AblationError: unknown study (the message lists the known ones).
    """
    if name not in STUDIES:
        raise AblationError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    study = STUDIES[name]
    if channels < 1:
        raise AblationError(f"study {name}: --channels must be >= 1, got {channels}")
    return AblationPlan(
        name=plan_name or name,
        variants=tuple(study.variants(n_mels, n_frames, channels=channels)),
        seeds=tuple(seeds),
        factors=study.factors,
        description=f"{study.description} ({channels} channels, {n_mels} × {n_frames} input)",
        study=name,
    )


# -- running ---------------------------------------------------------------------------------
ResultCallback = Callable[[int, "dict[str, Any] | None", str], None]
"""Called once per trial config: (index, final report or None, error text)."""


class TrialRunner(Protocol):
    """Runs trial configs (``AblationPlan.trial_config``) and reports each final report."""

    def __call__(self, configs: list[dict[str, Any]], on_result: ResultCallback) -> None: ...


def ablation_trial(
    config: dict[str, Any],
    data: FeatureSet,
    settings: TrialSettings,
    report: Callable[[dict[str, Any]], None] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Return the final report of one variant × seed: ``run_trial`` with the config's seed."""
    seeded = dataclasses.replace(
        settings, train_config=dataclasses.replace(settings.train_config, seed=int(config["seed"]))
    )
    return run_trial(config, data, seeded, report, device)


def local_runner(
    data: FeatureSet, settings: TrialSettings, device: str | None = None
) -> TrialRunner:
    """Return a runner that trains the trials one after another in this process (no Ray)."""

    def run(configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        for index, config in enumerate(configs):
            on_result(index, ablation_trial(config, data, settings, None, device), "")

    return run


def ray_runner(study_config: StudyConfig, data: FeatureSet, settings: TrialSettings) -> TrialRunner:
    """Return a runner that sends the trials through Ray Tune, as the search does.

    ``study_config`` gives the cluster address, resources (GPU shares sized from each spec
    with ``gpus_per_trial=auto``), concurrency, actor reuse and Tune's storage folder.
    """

    def run(configs: list[dict[str, Any]], on_result: ResultCallback) -> None:
        from nas import ray_backend

        ray_backend.run_fixed_trials(
            configs,
            ablation_trial,
            config=study_config,
            data=data,
            settings=settings,
            name=f"ablation-{study_config.study}",
            on_result=on_result,
        )

    return run


def record_for(
    plan: AblationPlan, trial: PlannedTrial, result: dict[str, Any] | None, error: str
) -> TrialRecord:
    """Return the TrialRecord of one finished (or crashed) trial, numbered as planned."""
    record = record_from_result(result, trial.number) if result else None
    if record is not None and result is not None:
        record.ray_trial_id = str(result.get("trial_id", ""))  # Tune adds it to every report
    if record is None:
        variant = plan.variants[trial.variant]
        record = TrialRecord(
            number=trial.number,
            status="failed",
            reason=error or "the trial returned no final report",
            spec=variant.spec.to_dict(),
            spec_summary=variant.spec.summary(),
        )
    return record


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantStats:
    """What the seeds of one variant gave: summaries, comparisons with the base, failures."""

    variant: Variant
    seeds: tuple[int, ...]  # seeds that completed
    failures: tuple[str, ...]  # "seed S: status: reason" of the trials that did not
    values: dict[str, Summary] = field(default_factory=dict)  # metric and costs
    versus_base: dict[str, PairedComparison] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Return the number of completed seeds."""
        return len(self.seeds)


def trial_values(record: TrialRecord, metric: str) -> dict[str, float]:
    """Return the finite metric and cost values of a completed trial (empty otherwise)."""
    if record.status != "complete":
        return {}
    raw: dict[str, Any] = {metric: record.metrics.get(metric)}
    for key in COST_KEYS:
        raw[key] = record.costs.get(key)
    epoch_seconds = [e.get("seconds") for e in record.history]
    if epoch_seconds and all(isinstance(v, (int, float)) for v in epoch_seconds):
        raw["seconds"] = math.fsum(float(v) for v in epoch_seconds if v is not None)
    return {
        k: float(v)
        for k, v in raw.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def aggregate(
    plan: AblationPlan,
    records: Sequence[TrialRecord],
    metric: str,
    confidence: float = CONFIDENCE,
) -> list[VariantStats]:
    """Return one ``VariantStats`` per variant (plan order).

    Each quantity (the metric and ``COST_KEYS``) is summarised over the seeds that completed.
    The comparison with the base pairs seed with seed and uses only seeds where both trials
    completed; it needs two such pairs and is left out for the base itself.
    """
    by_number = {r.number: r for r in records}
    per_variant: list[dict[int, dict[str, float]]] = [{} for _ in plan.variants]
    failures: list[list[str]] = [[] for _ in plan.variants]
    for trial in plan.trials():
        record = by_number.get(trial.number)
        if record is None:
            failures[trial.variant].append(f"seed {trial.seed}: missing: no record")
            continue
        values = trial_values(record, metric)
        if metric in values:
            per_variant[trial.variant][trial.seed] = values
        else:
            value = record.metrics.get(metric)
            why = record.reason or (f"{metric} is {value}" if value is not None else f"no {metric}")
            failures[trial.variant].append(f"seed {trial.seed}: {record.status}: {why}")
    base = per_variant[plan.base_index]
    out: list[VariantStats] = []
    for i, variant in enumerate(plan.variants):
        by_seed = per_variant[i]
        summaries: dict[str, Summary] = {}
        comparisons: dict[str, PairedComparison] = {}
        for key in (metric, *COST_KEYS):
            sample = [v[key] for v in by_seed.values() if key in v]
            if sample:
                summaries[key] = summarize(sample, confidence)
            if i == plan.base_index:
                continue
            paired = [s for s in by_seed if key in by_seed[s] and key in base.get(s, {})]
            if len(paired) >= 2:
                comparisons[key] = paired_comparison(
                    [by_seed[s][key] for s in paired], [base[s][key] for s in paired], confidence
                )
        out.append(
            VariantStats(variant, tuple(by_seed), tuple(failures[i]), summaries, comparisons)
        )
    return out


# -- output ----------------------------------------------------------------------------------
def _interval(summary: Summary | None, fmt: str) -> str:
    if summary is None:
        return "-"
    if summary.n < 2 or not math.isfinite(summary.ci_low):
        return format(summary.mean, fmt)
    return f"{format(summary.mean, fmt)} ± {format(summary.half_width, fmt)}"


def _metric_interval(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    if summary.n < 2 or not math.isfinite(summary.ci_low):
        return f"{summary.mean:.4f}"
    return f"{summary.mean:.4f} [{summary.ci_low:.4f}, {summary.ci_high:.4f}]"


def _difference(comparison: PairedComparison | None) -> tuple[str, str]:
    if comparison is None:
        return "-", "-"
    text = f"{comparison.mean_diff:+.4f} [{comparison.ci_low:+.4f}, {comparison.ci_high:+.4f}]"
    return text, f"{comparison.p_value:.3g}"


def _cost_header(key: str, vram_source: str) -> str:
    estimated = key == "train_vram_mb" and vram_source == "estimated"
    return COST_LABELS[key] + ("*" if estimated else "")


# GFLOPs of small spectrogram CNNs span 1e-4 to 1: significant digits, not decimals
_COST_FORMATS = {
    "train_vram_mb": ".1f",
    "gflops": ".3g",
    "params": ",.0f",
    "latency_ms": ".2f",
    "seconds": ".1f",
}


def ablation_table(
    stats: Sequence[VariantStats], metric: str, vram_source: str = "", seeds: int | None = None
) -> str:
    """Return the terminal table: per variant, the metric's mean with its 95 % CI, the paired
    difference with the base (CI, p-value) and each cost as mean ± CI half-width."""
    header = [
        "variant",
        "n",
        f"{metric} [95% CI]",
        "Δ vs base [95% CI]",
        "p",
        *(_cost_header(k, vram_source) for k in COST_KEYS),
    ]
    rows: list[list[str]] = []
    for s in stats:
        diff, p = ("(base)", "") if s.variant.is_base else _difference(s.versus_base.get(metric))
        n = f"{s.n}" if seeds is None else f"{s.n}/{seeds}"
        rows.append(
            [
                s.variant.name,
                n,
                _metric_interval(s.values.get(metric)),
                diff,
                p,
                *(_interval(s.values.get(k), _COST_FORMATS[k]) for k in COST_KEYS),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    left = {0}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [line(header), "-" * len(line(header))]
    lines.extend(line(r) for r in rows)
    lines.append(
        "mean [95% CI] over seeds (Student t); Δ: paired over seeds vs the base, two-sided "
        "paired t-test p; costs: mean ± CI half-width"
    )
    if vram_source == "estimated":
        lines.append("* VRAM estimated (no GPU); measured on CUDA")
    failed = [f"{s.variant.name}: {f}" for s in stats for f in s.failures]
    if failed:
        lines.append(f"{len(failed)} trial(s) did not complete:")
        lines.extend(f"  {f}" for f in failed)
    return "\n".join(lines)


def _summary_fields(prefix: str, summary: Summary | None) -> dict[str, Any]:
    if summary is None:
        return {f"{prefix}_{k}": "" for k in ("mean", "std", "ci_low", "ci_high")}
    return {
        f"{prefix}_mean": summary.mean,
        f"{prefix}_std": summary.std,
        f"{prefix}_ci_low": summary.ci_low,
        f"{prefix}_ci_high": summary.ci_high,
    }


def _comparison_fields(prefix: str, comparison: PairedComparison | None) -> dict[str, Any]:
    if comparison is None:
        return {f"{prefix}_{k}": "" for k in ("diff", "diff_ci_low", "diff_ci_high", "p_value")}
    return {
        f"{prefix}_diff": comparison.mean_diff,
        f"{prefix}_diff_ci_low": comparison.ci_low,
        f"{prefix}_diff_ci_high": comparison.ci_high,
        f"{prefix}_p_value": comparison.p_value,
    }


def stats_rows(
    plan: AblationPlan, stats: Sequence[VariantStats], metric: str
) -> list[dict[str, Any]]:
    """Return one flat row per variant: factor values, n, every summary and comparison."""
    rows = []
    for s in stats:
        row: dict[str, Any] = {"variant": s.variant.name, "is_base": s.variant.is_base}
        for factor in plan.factors:
            value = s.variant.factor_value(factor)
            row[factor] = "" if value is None else _format_value(value)
        row["spec_summary"] = s.variant.spec.summary()
        row["n"] = s.n
        row["n_failed"] = len(s.failures)
        for key in (metric, *COST_KEYS):
            row.update(_summary_fields(key, s.values.get(key)))
            row.update(_comparison_fields(f"{key}_vs_base", s.versus_base.get(key)))
        rows.append(row)
    return rows


def write_ablation_csv(
    path: Path, plan: AblationPlan, stats: Sequence[VariantStats], metric: str
) -> Path:
    """Write ``ablation.csv``: one row per variant (see ``stats_rows``); return the path."""
    rows = stats_rows(plan, stats, metric)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_trials_csv(
    path: Path, plan: AblationPlan, records: Sequence[TrialRecord], metric: str
) -> Path:
    """Write one row per variant × seed (status, metric, costs); return the path."""
    by_number = {r.number: r for r in records}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "variant", "seed", "status", metric, *COST_KEYS, "reason"])
        for trial in plan.trials():
            record = by_number.get(trial.number)
            values = trial_values(record, metric) if record else {}
            writer.writerow(
                [
                    trial.number,
                    plan.variants[trial.variant].name,
                    trial.seed,
                    record.status if record else "missing",
                    values.get(metric, ""),
                    *(values.get(k, "") for k in COST_KEYS),
                    record.reason if record else "",
                ]
            )
    return path


def plot_points(plan: AblationPlan, stats: Sequence[VariantStats], metric: str) -> list[Any]:
    """Return the plain points ``dashboards.ablation_plots`` draws (one per variant)."""
    from dashboards.ablation_plots import Interval, VariantPoint

    points = []
    x_factor = plan.factors[0] if plan.factors else ""
    series_factor = plan.factors[1] if len(plan.factors) > 1 else None
    for s in stats:
        # a study's variants change more than its named factor: their names say what changed
        x = s.variant.name if plan.study else s.variant.factor_value(x_factor)
        series = s.variant.factor_value(series_factor) if series_factor else None
        intervals = {
            key: Interval(summary.mean, summary.ci_low, summary.ci_high)
            for key, summary in s.values.items()
        }
        points.append(
            VariantPoint(
                label=s.variant.name,
                x="base" if x is None else _format_value(x),
                series=""
                if series_factor is None
                else ("base" if series is None else _format_value(series)),
                is_base=s.variant.is_base,
                values=intervals,
            )
        )
    return points


# -- the whole ablation ------------------------------------------------------------------------
@dataclass
class AblationOutcome:
    """What ``run_ablation`` returns: the records, the statistics and the files written."""

    plan: AblationPlan
    metric: str
    records: list[TrialRecord]
    stats: list[VariantStats]
    files: list[Path]
    vram_source: str
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    seconds: float = 0.0

    def table(self) -> str:
        """Return the terminal table of this outcome."""
        return ablation_table(self.stats, self.metric, self.vram_source, len(self.plan.seeds))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary: plan, per-variant rows, files, tracking run."""
        return {
            "name": self.plan.name,
            "metric": self.metric,
            "seeds": list(self.plan.seeds),
            "vram_source": self.vram_source,
            "variants": stats_rows(self.plan, self.stats, self.metric),
            "files": [str(p) for p in self.files],
            "tracking_uri": self.tracking_uri,
            "parent_run_id": self.parent_run_id,
            "seconds": self.seconds,
        }


def _vram_source(records: Sequence[TrialRecord]) -> str:
    sources = {str(r.costs.get("vram_source", "")) for r in records if r.status == "complete"}
    sources.discard("")
    return sources.pop() if len(sources) == 1 else ("mixed" if sources else "")


def run_ablation(
    plan: AblationPlan,
    runner: TrialRunner,
    *,
    metric: str,
    out_dir: Path,
    tracker: Any = None,
    stream: TextIO | None = None,
) -> AblationOutcome:
    """Run every variant × seed of ``plan`` through ``runner`` and write the results.

    Each finished trial is printed as one line and, with a started ``tracker``
    (``dashboards.tracking.StudyTracker``), logged as a child run tagged with its variant and
    seed. At the end ``ablation.csv``, ``ablation_trials.csv``, the plan, a JSON summary and the
    plots are written to ``out_dir`` and attached to the tracker's parent run.

    Raises:
        AblationError: the runner did not account for every trial config.
    """
    out = stream or sys.stdout
    started = time.monotonic()
    trials = plan.trials()
    configs = [plan.trial_config(t) for t in trials]
    records: dict[int, TrialRecord] = {}

    def on_result(index: int, result: dict[str, Any] | None, error: str) -> None:
        trial = trials[index]
        record = record_for(plan, trial, result, error)
        records[trial.number] = record
        value = record.metrics.get(metric)
        shown = f"{metric} {value:.4f}" if isinstance(value, (int, float)) else record.reason
        print(
            f"[{plan.name}] {len(records)}/{len(trials)} {plan.variants[trial.variant].name} "
            f"seed {trial.seed}: {record.status} · {shown} · {record.seconds:.0f} s",
            file=out,
            flush=True,
        )
        if tracker is not None:
            _log_trial(tracker, plan, trial, record)

    status = "KILLED"
    try:
        runner(configs, on_result)
        missing = [t.number for t in trials if t.number not in records]
        if missing:
            # Ray Tune catches Ctrl-C itself and returns with the unfinished trials unreported
            raise AblationError(
                f"ablation {plan.name!r}: {len(missing)} of {len(trials)} trials did not finish "
                f"(interrupted?): numbers {missing}; finished trials are logged"
            )
        status = "FINISHED"
    finally:
        if status != "FINISHED" and tracker is not None:
            tracker.finish(list(records.values()), _summary(plan, metric), status)
    ordered = [records[t.number] for t in trials]
    stats = aggregate(plan, ordered, metric)
    vram_source = _vram_source(ordered)
    outcome = AblationOutcome(plan, metric, ordered, stats, [], vram_source)
    outcome.files = write_outputs(outcome, out_dir)
    if tracker is not None:
        tracker.log_artifacts(outcome.files)
        _log_parent_summary(tracker, outcome)
        tracker.finish(ordered, _summary(plan, metric), "FINISHED")
        outcome.tracking_uri = getattr(tracker, "tracking_uri", None)
        outcome.parent_run_id = getattr(tracker, "parent_run_id", None)
    outcome.seconds = time.monotonic() - started
    return outcome


def _summary(plan: AblationPlan, metric: str) -> StudySummary:
    # one objective: the dashboards then draw no Pareto front for an ablation
    return StudySummary(
        study_name=plan.name,
        objectives=[Objective(metric, "maximize", metric)],
        config={"ablation": plan.name},
    )


def _log_trial(tracker: Any, plan: AblationPlan, trial: PlannedTrial, record: TrialRecord) -> None:
    """Log the child run and name/tag it by variant and seed (best effort, like the tracker)."""
    tracker.log_trial(record)
    run_id = tracker.child_run_id(record.number)
    if run_id is None:
        return
    variant = plan.variants[trial.variant]
    tags = {
        TAG_VARIANT: variant.name,
        TAG_SEED: str(trial.seed),
        TAG_IS_BASE: str(variant.is_base).lower(),
    }
    for factor, value in variant.factors:
        tags[f"ablation.{factor}"] = "base" if value is None else _format_value(value)
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracker.tracking_uri)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        client.update_run(run_id, name=f"{variant.name} · seed {trial.seed}")
    except Exception as exc:  # names and tags are a convenience; the run itself is logged
        print(f"warning: MLflow tags of trial {record.number} not set: {exc}", file=sys.stderr)


_MLFLOW_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


def parent_metrics(outcome: AblationOutcome) -> dict[str, float]:
    """Return the per-variant figures shown on the parent run: ``<variant>.<quantity>_<stat>``
    for the metric's mean and CI, its difference with the base and p-value, and mean costs."""
    out: dict[str, float] = {}
    metric = outcome.metric
    for s in outcome.stats:
        prefix = _MLFLOW_KEY_BAD_CHARS.sub("_", s.variant.name)
        summary = s.values.get(metric)
        if summary is not None:
            out[f"{prefix}.{metric}_mean"] = summary.mean
            out[f"{prefix}.{metric}_ci_low"] = summary.ci_low
            out[f"{prefix}.{metric}_ci_high"] = summary.ci_high
        comparison = s.versus_base.get(metric)
        if comparison is not None:
            out[f"{prefix}.{metric}_diff_vs_base"] = comparison.mean_diff
            out[f"{prefix}.{metric}_p_value"] = comparison.p_value
        for key in COST_KEYS:
            if key in s.values:
                out[f"{prefix}.{key}_mean"] = s.values[key].mean
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _log_parent_summary(tracker: Any, outcome: AblationOutcome) -> None:
    """Log ``parent_metrics`` and the base/metric tags on the parent run (best effort)."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag

        client = MlflowClient(tracking_uri=tracker.tracking_uri)
        now_ms = int(time.time() * 1000)
        metrics = [Metric(k, v, now_ms, 0) for k, v in parent_metrics(outcome).items()]
        tags = [
            RunTag("ablation.base", outcome.plan.base.name),
            RunTag("ablation.metric", outcome.metric),
            RunTag("ablation.factors", ",".join(outcome.plan.factors)),
        ]
        for start in range(0, len(metrics), 500):
            client.log_batch(tracker.parent_run_id, metrics=metrics[start : start + 500])
        client.log_batch(tracker.parent_run_id, tags=tags)
    except Exception as exc:  # the artifacts hold the same figures; the run must not fail here
        print(
            f"warning: MLflow summary metrics of {outcome.plan.name} not logged: {exc}",
            file=sys.stderr,
        )


def write_outputs(outcome: AblationOutcome, out_dir: Path) -> list[Path]:
    """Write the CSVs, plan, JSON summary and plots into ``out_dir``; return their paths."""
    from dashboards.ablation_plots import write_ablation_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    plan, metric = outcome.plan, outcome.metric
    files = [
        write_ablation_csv(out_dir / ABLATION_CSV, plan, outcome.stats, metric),
        write_trials_csv(out_dir / TRIALS_CSV, plan, outcome.records, metric),
    ]
    plan_path = out_dir / PLAN_JSON
    plan_path.write_text(json.dumps(plan.to_dict(), indent=2), encoding="utf-8")
    files.append(plan_path)
    summary_path = out_dir / SUMMARY_JSON
    summary_path.write_text(json.dumps(json_ready(outcome.to_dict()), indent=2), encoding="utf-8")
    files.append(summary_path)
    x_title = plan.factors[0] if plan.factors else "variant"
    if plan.study:
        x_title = f"{plan.study}: variant (depth, first filter height × width)"
    files.extend(
        write_ablation_plots(
            out_dir,
            plot_points(plan, outcome.stats, metric),
            metric=metric,
            vram_key="train_vram_mb",
            x_title=x_title,
            series_title=plan.factors[1] if len(plan.factors) > 1 else "",
            title=plan.name,
            vram_estimated=outcome.vram_source == "estimated",
        )
    )
    return files


def json_ready(obj: Any) -> Any:
    """Return ``obj`` with tuples as lists and non-finite floats as None (JSON has no NaN:
    a one-seed interval is undefined)."""
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def default_name(prefix: str) -> str:
    """Return a fresh ablation name, ``<prefix>-YYYYmmdd-HHMMSS`` (MLflow parent run name)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix).strip("-") or "ablation"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


__all__ = [
    "COST_KEYS",
    "STUDIES",
    "AblationError",
    "AblationOutcome",
    "AblationPlan",
    "PlannedTrial",
    "TrialRunner",
    "Variant",
    "VariantStats",
    "ablation_table",
    "ablation_trial",
    "aggregate",
    "factor_plan",
    "local_runner",
    "parse_factor_values",
    "ray_runner",
    "run_ablation",
    "study_plan",
    "vgg_to_vertical",
    "write_ablation_csv",
]
