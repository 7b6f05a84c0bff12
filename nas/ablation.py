"""Ablation plans: variants of a base architecture × seeds, and the built-in studies.

An ``AblationPlan`` is a list of ``Variant``s (one factor changed at a time around a base spec,
two with ``--grid``, or a built-in study such as ``vgg-to-vertical``, whose networks are
``search_spaces.anchors.vgg_to_vertical_walk``) and the seeds every variant is trained with.
``nas.ablation_run.run_ablation`` trains every variant × seed; ``nas.ablation_report`` holds the
statistics per variant and the outputs (table, CSVs, JSON summary, plot points).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from search_spaces.anchors import (
    STUDY_DEFAULT_CHANNELS,
    STUDY_WIDTH,
    VGG_DEPTH,
    vgg_to_vertical_walk,
)
from search_spaces.errors import FsnasError, SpecError
from search_spaces.space import ABLATION_FACTORS, apply_factor
from search_spaces.spec import ArchSpec, resolve_height
from search_spaces.validate import validate


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


def factor_text(value: Any) -> str:
    """Return a factor value as the plan writes it (a per-block tuple as ``2/2/4``)."""
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
                raise AblationError(f"variant {f}={factor_text(v)}: {exc}") from None
        label = ", ".join(f"{f}={factor_text(v)}" for f, v in pairs)
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
def vgg_to_vertical(
    n_mels: int,
    n_frames: int,
    *,
    channels: int = STUDY_DEFAULT_CHANNELS,
    width: int = STUDY_WIDTH,
) -> list[Variant]:
    """Return the walk from a 5-block 3×3 VGG to one vertical layer as variants, the VGG first
    and the base (``search_spaces.anchors.vgg_to_vertical_walk`` says what each step changes).

    Each variant's factors are its depth, first filter height (mel bins) and width.
    """
    walk = vgg_to_vertical_walk(n_mels, n_frames, channels=channels, width=width)
    return [
        Variant(
            step.name,
            step.spec,
            (
                ("depth", step.depth),
                ("frequency_height", step.frequency_height),
                ("width", step.width),
            ),
            is_base=step.depth == VGG_DEPTH,
        )
        for step in walk
    ]


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


def default_name(prefix: str) -> str:
    """Return a fresh ablation name, ``<prefix>-YYYYmmdd-HHMMSS`` (MLflow parent run name)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", prefix).strip("-") or "ablation"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


__all__ = [
    "STUDIES",
    "AblationError",
    "AblationPlan",
    "BuiltinStudy",
    "PlannedTrial",
    "Variant",
    "default_name",
    "factor_plan",
    "factor_text",
    "parse_factor_value",
    "parse_factor_values",
    "study_plan",
    "vgg_to_vertical",
]
