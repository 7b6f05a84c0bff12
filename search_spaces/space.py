"""SearchSpace: the bounds and choices a trial samples an ArchSpec from; ablation factors.

The default space spans both ends of the filter-shape axis: a 5-block stack of 3×3 filters with
2×2 pooling (VGG) and a single layer of tall ("0.9M") filters max-pooled over frequency (Pons).
``SearchSpace.sample`` is define-by-run, so a dimension exists only when it matters (block
parameters only for blocks < depth). Rules that keep every sample a valid network:

* All front-end branches share one frequency reduction; with ``none`` they use ``same`` frequency
  padding so their outputs can be concatenated, otherwise ``valid`` (Pons' full-height filters).
* Once the front end has collapsed frequency to 1, body kernels are ``1 × w`` (temporal 1-D convs)
  and never pool over frequency: those dimensions are not sampled at all.
* A network with neither branches nor blocks cannot be drawn: with no branches, the depth comes
  from ``depth_no_frontend`` whose lower bound is at least 1.
* Given the input shape (``n_mels``, ``n_frames``), pool sizes are clipped to what remains of each
  axis and heights to ``[1, n_mels]``, so every sample validates on that input (and, since output
  sizes grow with the input, on any larger one). Without it, a deep stack of large pools may not
  fit a small input; ``validate`` then says which layer.

A parameter name always has the same distribution: a conditional dimension whose choices differ
(pooling axes after a frequency collapse, depth without a front end) gets its own name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from search_spaces.errors import SpecError
from search_spaces.spec import (
    ActivationOrder,
    ArchSpec,
    Branch,
    ConvBlock,
    Dense,
    FreqReduce,
    Head,
    Height,
    InputNorm,
    PoolType,
    TimePooling,
    _from_mapping,
    _to_jsonable,
    resolve_height,
)
from search_spaces.validate import pool_out

if TYPE_CHECKING:  # optuna is only needed by callers that sample
    import optuna

PoolAxes = Literal["freq", "time", "both", "none"]


@dataclass(frozen=True)
class SearchSpace:
    """Bounds and choices of every dimension ``sample`` draws; a config changes any of them.

    A choice tuple with a single element is a constant: it is not asked of the trial.
    Heights are mel bins (int) or fractions of ``n_mels`` (``"0.4M"``); widths are frames.
    ``n_mels``/``n_frames`` (optional, both or neither) is the input the samples must fit: pool
    sizes are then clipped to what remains of each axis, so no sample pools below size 1.
    """

    min_branches: int = 0
    max_branches: int = 5
    frontend_freq_reduce: tuple[FreqReduce, ...] = ("max", "mean", "none")
    branch_heights: tuple[Height, ...] = (1, 3, 5, "0.2M", "0.4M", "0.7M", "0.9M")
    branch_widths: tuple[int, ...] = (1, 3, 5, 7, 9, 17, 33, 65, 129)
    branch_channels: tuple[int, ...] = (16, 32, 64, 128)
    min_depth: int = 0
    max_depth: int = 6
    block_heights: tuple[Height, ...] = (1, 3, 5)
    block_widths: tuple[int, ...] = (1, 3, 5, 7)
    block_channels: tuple[int, ...] = (16, 32, 64, 128)
    block_residual: tuple[bool, ...] = (False,)
    pool_axes: tuple[PoolAxes, ...] = ("both", "freq", "time", "none")
    pool_sizes: tuple[int, ...] = (2, 3, 4)
    pool_types: tuple[PoolType, ...] = ("max", "avg")
    head_freq_reduce: tuple[FreqReduce, ...] = ("max", "mean")
    head_time_pooling: tuple[TimePooling, ...] = ("max", "mean", "max+mean")
    head_hidden_units: tuple[int, ...] = (0,)
    input_norm: tuple[InputNorm, ...] = ("bn", "none")
    activation_order: tuple[ActivationOrder, ...] = ("conv_bn_relu",)
    n_mels: int | None = None
    n_frames: int | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and not value:
                raise SpecError(f"search space {f.name}: needs at least one choice, got []")
        for name in ("min_branches", "min_depth"):
            _check_int(getattr(self, name), name, minimum=0)
        _check_int(self.max_branches, "max_branches", minimum=self.min_branches)
        _check_int(self.max_depth, "max_depth", minimum=self.min_depth)
        if self.max_branches == 0 and self.max_depth == 0:
            raise SpecError("search space: max_branches 0 and max_depth 0 leave an empty network")
        for name in ("branch_widths", "branch_channels", "block_widths", "block_channels"):
            for value in getattr(self, name):
                _check_int(value, name)
        for value in self.pool_sizes:
            _check_int(value, "pool_sizes")
        for value in self.head_hidden_units:
            _check_int(value, "head_hidden_units", minimum=0)
        for name in ("branch_heights", "block_heights"):
            for height in getattr(self, name):
                # resolving against 1000 mels only checks the syntax ("0.4M" or an int)
                if resolve_height(height, 1000, f"search space {name}") < 1:
                    raise SpecError(f"search space {name}: height must be >= 1, got {height!r}")
        for name in ("n_mels", "n_frames"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name)
        if (self.n_mels is None) != (self.n_frames is None):
            raise SpecError(
                f"search space: give both n_mels and n_frames or neither, got "
                f"n_mels={self.n_mels!r}, n_frames={self.n_frames!r}"
            )

    # -- serialisation -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Return the default space with the keys of ``data`` changed.

        Raises:
            SpecError: an unknown key, a value of the wrong type or inconsistent bounds (the
                message names the key and the value).
        """
        return cast(SearchSpace, _from_mapping(cls, data, "search space"))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict that ``from_dict`` reads back to an equal space."""
        return cast(dict[str, Any], _to_jsonable(dataclasses.asdict(self)))

    # -- sampling ------------------------------------------------------------------------
    def sample(self, trial: optuna.trial.BaseTrial) -> ArchSpec:
        """Return the ArchSpec that ``trial`` picks from this space (define-by-run).

        Parameter names: ``input_norm``, ``activation_order``, ``n_branches``,
        ``frontend_freq_reduce``, ``branch{i}_{height,width,channels}``, ``depth`` (with a front
        end) or ``depth_no_frontend``, ``block{i}_{height,width,channels,residual}``,
        ``block{i}_pool_axes`` (or ``block{i}_pool_axes_collapsed`` after a frequency collapse),
        ``block{i}_pool_size``, ``block{i}_pool_type``, ``head_freq_reduce``,
        ``head_time_pooling``, ``head_hidden_units``.
        """
        input_norm = _choose(trial, "input_norm", self.input_norm)
        order = _choose(trial, "activation_order", self.activation_order)
        n_branches = _integer(trial, "n_branches", self.min_branches, self.max_branches)

        frontend: list[Branch] = []
        collapsed = False
        if n_branches:
            reduce = _choose(trial, "frontend_freq_reduce", self.frontend_freq_reduce)
            collapsed = reduce != "none"
            for i in range(n_branches):
                height = _choose(trial, f"branch{i}_height", self.branch_heights)
                frontend.append(
                    Branch(
                        height=self._fit_height(height, clip_to_input=collapsed),
                        width=_choose(trial, f"branch{i}_width", self.branch_widths),
                        channels=_choose(trial, f"branch{i}_channels", self.branch_channels),
                        freq_padding="valid" if collapsed else "same",
                        freq_reduce=reduce,
                    )
                )
            depth = _integer(trial, "depth", self.min_depth, self.max_depth)
        else:
            depth = _integer(trial, "depth_no_frontend", max(1, self.min_depth), self.max_depth)

        freq = None if self.n_mels is None else (1 if collapsed else self.n_mels)
        time = self.n_frames
        body: list[ConvBlock] = []
        for i in range(depth):
            block_height: Height = 1
            if collapsed:
                axes_choices = _collapsed_axes(self.pool_axes)
                axes = _choose(trial, f"block{i}_pool_axes_collapsed", axes_choices)
            else:
                block_height = self._fit_height(
                    _choose(trial, f"block{i}_height", self.block_heights), clip_to_input=False
                )
            width = _choose(trial, f"block{i}_width", self.block_widths)
            channels = _choose(trial, f"block{i}_channels", self.block_channels)
            residual = _choose(trial, f"block{i}_residual", self.block_residual)
            if not collapsed:
                axes = _choose(trial, f"block{i}_pool_axes", self.pool_axes)
            pool, pool_type = (1, 1), "max"
            if axes != "none":
                size = _choose(trial, f"block{i}_pool_size", self.pool_sizes)
                pool_type = _choose(trial, f"block{i}_pool_type", self.pool_types)
                pool_f = size if axes in ("freq", "both") else 1
                pool_t = size if axes in ("time", "both") else 1
                if freq is not None and time is not None:
                    pool_f, pool_t = min(pool_f, freq), min(pool_t, time)
                    freq, time = pool_out(freq, pool_f, pool_f), pool_out(time, pool_t, pool_t)
                pool = (pool_f, pool_t)
                if pool == (1, 1):
                    pool_type = "max"  # no pooling left after clipping: keep the spec canonical
            body.append(
                ConvBlock(
                    height=block_height,
                    width=width,
                    channels=channels,
                    residual=residual,
                    pool=pool,
                    pool_type=cast(PoolType, pool_type),
                )
            )

        head_reduce: FreqReduce = "max"
        if not collapsed:
            head_reduce = _choose(trial, "head_freq_reduce", self.head_freq_reduce)
        units = _choose(trial, "head_hidden_units", self.head_hidden_units)
        head = Head(
            freq_reduce=head_reduce,
            time_pooling=_choose(trial, "head_time_pooling", self.head_time_pooling),
            hidden=(Dense(units),) if units else (),
        )
        return ArchSpec(
            frontend=tuple(frontend),
            body=tuple(body),
            head=head,
            input_norm=input_norm,
            activation_order=order,
        )

    def params_for(self, spec: ArchSpec) -> dict[str, Any]:
        """Return the trial parameters for which ``sample`` draws ``spec`` (its inverse).

        This is what warm-starting a study needs (Optuna's ``enqueue_trial``): a literature
        design or a baseline evaluated as one of the search's own trials. Only asked parameters
        appear (a single-choice dimension is a constant). A height may be given as the literal
        the space lists (``"0.9M"``) or, once ``n_mels`` is bound, as the bins it resolves to.

        Raises:
            SpecError: ``spec`` is not a point of this space; the message names the first part
                of the spec (e.g. ``body[2].pool``) the space cannot draw and the choices.
        """
        where = f"spec {spec.name!r}" if spec.name else "spec"
        params: dict[str, Any] = {}

        def put(
            name: str, choices: Sequence[Any], value: Any, label: str, match: Any = None
        ) -> Any:
            # the literal first: "0.4M" and 3 may both resolve to 3 bins on a small input
            tests = [lambda choice: choice == value] + ([match] if match else [])
            for same in tests:
                for choice in choices:
                    if same(choice):
                        if len(choices) > 1:
                            params[name] = choice
                        return choice
            shown = list(choices)
            if isinstance(choices, range):
                shown = [choices.start, choices[-1]] if len(choices) else []
                raise SpecError(
                    f"{where}: {label} {value!r} is outside the search space's range {shown}"
                )
            raise SpecError(f"{where}: {label} {value!r} is not among the search space's {shown}")

        def height_match(value: Height, clip: bool) -> Any:
            def same(choice: Height) -> bool:
                fitted = self._fit_height(choice, clip_to_input=clip)
                if fitted == value:
                    return True
                if self.n_mels is None or isinstance(fitted, bool) or isinstance(value, bool):
                    return False
                return resolve_height(fitted, self.n_mels) == resolve_height(value, self.n_mels)

            return same

        put("input_norm", self.input_norm, spec.input_norm, "input_norm")
        put("activation_order", self.activation_order, spec.activation_order, "activation_order")
        n_branches = len(spec.frontend)
        put(
            "n_branches",
            range(self.min_branches, self.max_branches + 1),
            n_branches,
            "number of front-end branches",
        )
        collapsed = False
        if spec.frontend:
            reduces = sorted({b.freq_reduce for b in spec.frontend})
            if len(reduces) > 1:
                raise SpecError(
                    f"{where}: front-end branches reduce frequency differently ({reduces}); "
                    "the search space gives them all one frontend_freq_reduce"
                )
            reduce = put(
                "frontend_freq_reduce",
                self.frontend_freq_reduce,
                reduces[0],
                "frontend[*].freq_reduce",
            )
            collapsed = reduce != "none"
            for i, branch in enumerate(spec.frontend):
                put(
                    f"branch{i}_height",
                    self.branch_heights,
                    branch.height,
                    f"frontend[{i}].height",
                    height_match(branch.height, collapsed),
                )
                put(f"branch{i}_width", self.branch_widths, branch.width, f"frontend[{i}].width")
                put(
                    f"branch{i}_channels",
                    self.branch_channels,
                    branch.channels,
                    f"frontend[{i}].channels",
                )
            put(
                "depth",
                range(self.min_depth, self.max_depth + 1),
                len(spec.body),
                "number of body blocks",
            )
        else:
            put(
                "depth_no_frontend",
                range(max(1, self.min_depth), self.max_depth + 1),
                len(spec.body),
                "number of body blocks (no front end)",
            )

        freq = None if self.n_mels is None else (1 if collapsed else self.n_mels)
        time = self.n_frames
        for i, block in enumerate(spec.body):
            if collapsed:
                axes_name, axes_choices = (
                    f"block{i}_pool_axes_collapsed",
                    _collapsed_axes(self.pool_axes),
                )
            else:
                axes_name, axes_choices = f"block{i}_pool_axes", self.pool_axes
                put(
                    f"block{i}_height",
                    self.block_heights,
                    block.height,
                    f"body[{i}].height",
                    height_match(block.height, False),
                )
            put(f"block{i}_width", self.block_widths, block.width, f"body[{i}].width")
            put(f"block{i}_channels", self.block_channels, block.channels, f"body[{i}].channels")
            put(f"block{i}_residual", self.block_residual, block.residual, f"body[{i}].residual")
            drawn = self._pool_params(i, block, axes_name, axes_choices, freq, time)
            if drawn is None:
                raise SpecError(
                    f"{where}: body[{i}] pools {block.pool_type} {tuple(block.pool)}, which the "
                    f"search space cannot draw from pool_axes {list(axes_choices)}, pool_sizes "
                    f"{list(self.pool_sizes)}, pool_types {list(self.pool_types)}"
                    + (f" at {freq} x {time} (mel x frames)" if freq is not None else "")
                )
            params.update(drawn)
            if freq is not None and time is not None:
                pool_f, pool_t = block.pool
                freq, time = pool_out(freq, pool_f, pool_f), pool_out(time, pool_t, pool_t)

        if not collapsed:
            put(
                "head_freq_reduce", self.head_freq_reduce, spec.head.freq_reduce, "head.freq_reduce"
            )
        hidden = spec.head.hidden
        if len(hidden) > 1:
            raise SpecError(
                f"{where}: head has {len(hidden)} dense layers; the search space draws at most one"
            )
        units = hidden[0].units if hidden else 0
        put("head_hidden_units", self.head_hidden_units, units, "head.hidden units")
        put(
            "head_time_pooling", self.head_time_pooling, spec.head.time_pooling, "head.time_pooling"
        )

        import optuna  # only callers that warm-start a study get here

        drawn_spec = self.sample(optuna.trial.FixedTrial(params))
        want, got = self._comparable(spec), self._comparable(drawn_spec)
        if want != got:
            path, wanted, drawn_value = _first_difference(want, got)
            raise SpecError(
                f"{where}: {path} is {wanted!r}, but the search space always draws {drawn_value!r} "
                "there; it is not a point of this space"
            )
        return params

    def _pool_params(
        self,
        i: int,
        block: ConvBlock,
        axes_name: str,
        axes_choices: Sequence[str],
        freq: int | None,
        time: int | None,
    ) -> dict[str, Any] | None:
        """Return the pooling parameters that make block ``i`` pool like ``block``, or None."""
        for axes in axes_choices:
            combos: list[tuple[int | None, str | None]] = [(None, None)]
            if axes != "none":
                combos = [(size, kind) for size in self.pool_sizes for kind in self.pool_types]
            for size, kind in combos:
                pool, pool_type = (1, 1), "max"
                if size is not None and kind is not None:
                    pool_f = size if axes in ("freq", "both") else 1
                    pool_t = size if axes in ("time", "both") else 1
                    if freq is not None and time is not None:
                        pool_f, pool_t = min(pool_f, freq), min(pool_t, time)
                    pool = (pool_f, pool_t)
                    pool_type = "max" if pool == (1, 1) else kind
                if pool == tuple(block.pool) and pool_type == block.pool_type:
                    out: dict[str, Any] = {}
                    if len(axes_choices) > 1:
                        out[axes_name] = axes
                    if size is not None and len(self.pool_sizes) > 1:
                        out[f"block{i}_pool_size"] = size
                    if kind is not None and len(self.pool_types) > 1:
                        out[f"block{i}_pool_type"] = kind
                    return out
        return None

    def _comparable(self, spec: ArchSpec) -> dict[str, Any]:
        """Return ``spec`` as a dict without its name, heights in bins once n_mels is bound."""
        data = spec.to_dict()
        data.pop("name", None)
        if self.n_mels is not None:
            for part in ("frontend", "body"):
                for layer in data[part]:
                    layer["height"] = resolve_height(layer["height"], self.n_mels)
        return data

    def grid_space(self) -> dict[str, list[Any]]:
        """Return every parameter ``sample`` may ask, with its choices (for Optuna's GridSampler).

        Conditional parameters are listed too; a trial that does not ask one ignores its grid
        value, so a grid over a space with conditional dimensions repeats some architectures.
        Pin the dimensions you do not want to sweep (single choices are constants, not asked).
        """
        grid: dict[str, list[Any]] = {}

        def add(name: str, choices: Sequence[Any]) -> None:
            if len(choices) > 1:
                grid[name] = list(choices)

        add("input_norm", self.input_norm)
        add("activation_order", self.activation_order)
        add("n_branches", range(self.min_branches, self.max_branches + 1))
        may_collapse = self.max_branches > 0 and any(r != "none" for r in self.frontend_freq_reduce)
        may_keep_freq = self.min_branches == 0 or "none" in self.frontend_freq_reduce
        if self.max_branches > 0:
            add("frontend_freq_reduce", self.frontend_freq_reduce)
            for i in range(self.max_branches):
                add(f"branch{i}_height", self.branch_heights)
                add(f"branch{i}_width", self.branch_widths)
                add(f"branch{i}_channels", self.branch_channels)
            add("depth", range(self.min_depth, self.max_depth + 1))
        if self.min_branches == 0:
            add("depth_no_frontend", range(max(1, self.min_depth), self.max_depth + 1))
        for i in range(self.max_depth):
            if may_collapse:
                add(f"block{i}_pool_axes_collapsed", _collapsed_axes(self.pool_axes))
            if may_keep_freq:
                add(f"block{i}_height", self.block_heights)
                add(f"block{i}_pool_axes", self.pool_axes)
            add(f"block{i}_width", self.block_widths)
            add(f"block{i}_channels", self.block_channels)
            add(f"block{i}_residual", self.block_residual)
            if any(axes != "none" for axes in self.pool_axes):
                add(f"block{i}_pool_size", self.pool_sizes)
                add(f"block{i}_pool_type", self.pool_types)
        if may_keep_freq:
            add("head_freq_reduce", self.head_freq_reduce)
        add("head_hidden_units", self.head_hidden_units)
        add("head_time_pooling", self.head_time_pooling)
        return grid

    def _fit_height(self, height: Height, clip_to_input: bool) -> Height:
        """Return ``height``, or the nearest fitting mel count where it resolves outside
        [1, n_mels] (``clip_to_input``, for ``valid`` padding) or below 1 (a small input)."""
        if self.n_mels is None:
            return height
        bins = resolve_height(height, self.n_mels)
        upper = self.n_mels if clip_to_input else bins
        return height if 1 <= bins <= upper else max(1, min(bins, upper))


def _first_difference(want: Any, got: Any, path: str = "") -> tuple[str, Any, Any]:
    """Return (dotted path, wanted value, drawn value) of the first place two dicts differ."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in want:
            if want.get(key) != got.get(key):
                return _first_difference(
                    want.get(key), got.get(key), f"{path}.{key}" if path else key
                )
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for index, (a, b) in enumerate(zip(want, got, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{index}]")
    return path or "spec", want, got


def _collapsed_axes(pool_axes: Sequence[str]) -> tuple[str, ...]:
    """Return the pooling axes left once frequency is 1: ``both`` becomes ``time``."""
    out: list[str] = []
    for axes in pool_axes:
        mapped = "time" if axes in ("time", "both") else "none"
        if mapped not in out:
            out.append(mapped)
    return tuple(out)


def _choose(trial: optuna.trial.BaseTrial, name: str, choices: Sequence[Any]) -> Any:
    """Return the trial's pick among ``choices``; a single choice is a constant, not asked."""
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, list(choices))


def _integer(trial: optuna.trial.BaseTrial, name: str, low: int, high: int) -> int:
    """Return the trial's integer in ``[low, high]``; equal bounds are a constant, not asked."""
    return low if low == high else trial.suggest_int(name, low, high)


def _check_int(value: object, where: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"search space {where}: expected an integer >= {minimum}, got {value!r}")


# -- ablation factors -------------------------------------------------------------------------
ABLATION_FACTORS: tuple[str, ...] = (
    "frequency_height",
    "time_width",
    "depth",
    "channels",
    "freq_reduce",
    "time_pooling",
    "head_pooling",
)
"""The factors ``apply_factor`` can change, one at a time, around a base spec."""


def apply_factor(base: ArchSpec, factor: str, value: Any) -> ArchSpec:
    """Return ``base`` with one ablation factor set to ``value``.

    Factors:
        frequency_height: filter height (int or ``"0.4M"``) of every front-end branch, or of
            body[0] when there is no front end.
        time_width: filter width of every front-end branch, or of body[0] without a front end.
        depth: number of body blocks; truncates, or extends by repeating the last block.
        channels: channels of every branch and every block.
        freq_reduce: frequency reduction of every branch (``none`` switches them to ``same``
            frequency padding so they still concatenate).
        time_pooling: time pool size of every block (an int, or one int per block); an explicit
            pool stride gets the same time component.
        head_pooling: the head's time pooling (``max``, ``mean``, ``max+mean``, ...).

    Raises:
        SpecError: unknown factor (the message lists the known ones) or a value of the wrong
            type; shape problems are left to ``validate``.
    """
    where = f"factor {factor}"
    if factor == "frequency_height":
        resolve_height(value, 1000, where)  # checks the syntax only
        if base.frontend:
            return base.replace(frontend=tuple(_set(b, height=value) for b in base.frontend))
        return base.replace(body=(_set(_first_block(base, factor), height=value), *base.body[1:]))
    if factor == "time_width":
        _check_int(value, where)
        if base.frontend:
            return base.replace(frontend=tuple(_set(b, width=value) for b in base.frontend))
        return base.replace(body=(_set(_first_block(base, factor), width=value), *base.body[1:]))
    if factor == "depth":
        _check_int(value, where, minimum=0)
        if value == 0 and not base.frontend:
            raise SpecError(f"{where}: depth 0 without front-end branches is an empty network")
        if value > len(base.body) and not base.body:
            raise SpecError(f"{where}: cannot extend to {value}: the base has no block to repeat")
        extra = (base.body[-1],) * (value - len(base.body)) if base.body else ()
        return base.replace(body=(base.body + extra)[:value])
    if factor == "channels":
        _check_int(value, where)
        return base.replace(
            frontend=tuple(_set(b, channels=value) for b in base.frontend),
            body=tuple(_set(b, channels=value) for b in base.body),
        )
    if factor == "freq_reduce":
        _check_choice(value, FreqReduce, where)
        if not base.frontend:
            raise SpecError(f"{where}: the base has no front-end branches to reduce")
        return base.replace(
            frontend=tuple(
                _set(b, freq_reduce=value, freq_padding="same" if value == "none" else None)
                for b in base.frontend
            )
        )
    if factor == "time_pooling":
        sizes = _time_pool_sizes(base, value, where)
        return base.replace(
            body=tuple(
                _set(
                    blk,
                    pool=(blk.pool[0], size),
                    pool_stride=None if blk.pool_stride is None else (blk.pool_stride[0], size),
                )
                for blk, size in zip(base.body, sizes)
            )
        )
    if factor == "head_pooling":
        _check_choice(value, TimePooling, where)
        return base.replace(head=dataclasses.replace(base.head, time_pooling=value))
    raise SpecError(f"unknown ablation factor {factor!r}; known factors: {list(ABLATION_FACTORS)}")


def grid(factor: str, values: Sequence[Any], base: ArchSpec) -> list[ArchSpec]:
    """Return one spec per value of ``factor`` around ``base`` (see ``apply_factor``)."""
    return [apply_factor(base, factor, value) for value in values]


_Part = Any  # Branch | ConvBlock: dataclasses.replace keeps the type


def _set(part: _Part, **changes: Any) -> _Part:
    return dataclasses.replace(part, **{k: v for k, v in changes.items() if v is not None})


def _first_block(base: ArchSpec, factor: str) -> ConvBlock:
    if not base.body:
        raise SpecError(f"factor {factor}: the base has neither front-end branches nor blocks")
    return base.body[0]


def _check_choice(value: object, literal: Any, where: str) -> None:
    allowed = get_args(literal)
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{where}: expected one of {list(allowed)}, got {value!r}")


def _time_pool_sizes(base: ArchSpec, value: Any, where: str) -> list[int]:
    if not base.body:
        raise SpecError(f"{where}: the base has no body blocks to pool")
    sizes = list(value) if isinstance(value, (list, tuple)) else [value] * len(base.body)
    if len(sizes) != len(base.body):
        raise SpecError(
            f"{where}: expected one size per block ({len(base.body)}), got {len(sizes)}: {value!r}"
        )
    for size in sizes:
        _check_int(size, where)
    return sizes
