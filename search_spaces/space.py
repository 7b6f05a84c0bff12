"""SearchSpace: the bounds and choices a trial samples an ArchSpec from.

The default space spans both ends of the filter-shape axis: a 5-block stack of 3×3 filters with
2×2 pooling (VGG) and a single layer of tall ("0.9M") filters max-pooled over frequency (Pons).
``SearchSpace.sample`` is define-by-run, so a dimension exists only when it matters (block
parameters only for blocks < depth). Rules that keep every sample a valid network:

* All front-end branches share one frequency reduction, time padding and batch-norm choice.
  With a reduction (``max``/``mean``) each branch picks its frequency padding
  (``branch_freq_paddings``: ``valid`` for Pons' full-height filters, ``same`` for musicnn's
  temporal ones); without one (``none``) the front end picks one (``kept_freq_paddings``).
  Where a padding is ``valid`` on an axis that is kept, every branch takes branch 0's filter
  size on that axis, so the branch outputs can be concatenated.
* Once the front end has collapsed frequency to 1, body kernels are ``1 × w`` (temporal 1-D convs)
  with stride 1 over frequency and never pool over frequency: those dimensions are not sampled.
* A residual block needs ``same`` padding on both axes (it is only asked then); the musicnn
  dense concatenation is only asked when every block keeps its input's shape (no pooling,
  stride 1, ``same`` padding).
* A network with neither branches nor blocks cannot be drawn: with no branches, the depth comes
  from ``depth_no_frontend`` whose lower bound is at least 1.
* Given the input shape (``n_mels``, ``n_frames``), heights are clipped to ``[1, n_mels]``,
  ``valid`` kernels to what remains of their axis and pool sizes likewise, so every sample
  validates on that input (and, since output sizes grow with the input, on any larger one).
  Without it, a deep stack of large pools may not fit a small input; ``validate`` then says
  which layer.

A parameter name always has the same distribution: a conditional dimension whose choices differ
(pooling axes after a frequency collapse, depth without a front end) gets its own name. The
defaults of the dimensions beyond the filter shapes (paddings, strides, dropout, the head's
dense layer...) are single choices, i.e. constants that are not asked; ``configs/spaces/``
holds named spaces that open them (``literature``: every preset of ``search_spaces.presets``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from search_spaces.errors import SpecError, excerpt

# the ablation factors moved to search_spaces.factors; importing them from here still works
from search_spaces.factors import ABLATION_FACTORS, _check_int, apply_factor, grid
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
    Padding,
    PoolType,
    TimePooling,
    _from_mapping,
    _to_jsonable,
    resolve_height,
)
from search_spaces.validate import conv_out, pool_out

if TYPE_CHECKING:  # optuna is only needed by callers that sample
    import optuna

PoolAxes = Literal["freq", "time", "both", "none"]

POOL_STRIDE_OF_SIZE = "size"
"""The ``pool_strides`` choice of a pool whose stride is its size (``pool_stride`` null)."""
_POOL_STRIDE = re.compile(r"^([1-9]\d*)x([1-9]\d*)$")


def parse_pool_stride(choice: object, where: str = "search space pool_strides") -> Any:
    """Return the ``pool_stride`` a ``pool_strides`` choice stands for.

    ``"size"`` gives None (the stride is the pool size), ``"2x2"`` gives ``(2, 2)`` (frequency ×
    time, as every size in fsnas).

    Raises:
        SpecError: anything else (the message names the value).
    """
    if choice == POOL_STRIDE_OF_SIZE:
        return None
    match = _POOL_STRIDE.match(choice) if isinstance(choice, str) else None
    if not match:
        raise SpecError(
            f"{where}: expected {POOL_STRIDE_OF_SIZE!r} or 'FxT' (e.g. '2x2'), "
            f"got {excerpt(choice)}"
        )
    return int(match.group(1)), int(match.group(2))


def _stride_choice(stride: tuple[int, int] | None) -> str:
    return POOL_STRIDE_OF_SIZE if stride is None else f"{stride[0]}x{stride[1]}"


@dataclass(frozen=True)
class SearchSpace:
    """Bounds and choices of every dimension ``sample`` draws; a config changes any of them.

    A choice tuple with a single element is a constant: it is not asked of the trial.
    Heights are mel bins (int) or fractions of ``n_mels`` (``"0.4M"``); widths are frames.
    ``n_mels``/``n_frames`` (optional, both or neither) is the input the samples must fit: pool
    sizes are then clipped to what remains of each axis, so no sample pools below size 1.
    ``pool_sizes`` are square pools unless ``pool_time_sizes`` is given: then ``pool_sizes`` are
    the frequency sizes and ``pool_time_sizes`` the time sizes (e.g. Won's (2, 4) pools).
    ``pool_strides`` lists ``"size"`` (the stride is the pool size) and ``"FxT"`` strides.
    """

    min_branches: int = 0
    max_branches: int = 5
    frontend_freq_reduce: tuple[FreqReduce, ...] = ("max", "mean", "none")
    branch_heights: tuple[Height, ...] = (1, 3, 5, "0.2M", "0.4M", "0.7M", "0.9M")
    branch_widths: tuple[int, ...] = (1, 3, 5, 7, 9, 17, 33, 65, 129)
    branch_channels: tuple[int, ...] = (16, 32, 64, 128)
    branch_freq_paddings: tuple[Padding, ...] = ("valid",)
    kept_freq_paddings: tuple[Padding, ...] = ("same",)
    frontend_time_paddings: tuple[Padding, ...] = ("same",)
    frontend_batch_norm: tuple[bool, ...] = (True,)
    min_depth: int = 0
    max_depth: int = 6
    block_heights: tuple[Height, ...] = (1, 3, 5)
    block_widths: tuple[int, ...] = (1, 3, 5, 7)
    block_channels: tuple[int, ...] = (16, 32, 64, 128)
    block_residual: tuple[bool, ...] = (False,)
    block_freq_paddings: tuple[Padding, ...] = ("same",)
    block_time_paddings: tuple[Padding, ...] = ("same",)
    block_strides: tuple[int, ...] = (1,)
    block_convs: tuple[int, ...] = (1,)
    block_batch_norm: tuple[bool, ...] = (True,)
    block_bias: tuple[bool, ...] = (True,)
    block_dropouts: tuple[float, ...] = (0.0,)
    pool_axes: tuple[PoolAxes, ...] = ("both", "freq", "time", "none")
    pool_sizes: tuple[int, ...] = (2, 3, 4)
    pool_time_sizes: tuple[int, ...] | None = None
    pool_types: tuple[PoolType, ...] = ("max", "avg")
    pool_strides: tuple[str, ...] = (POOL_STRIDE_OF_SIZE,)
    dense_concat: tuple[bool, ...] = (False,)
    head_freq_reduce: tuple[FreqReduce, ...] = ("max", "mean")
    head_freq_reduce_collapsed: tuple[FreqReduce, ...] = ("max",)
    head_time_pooling: tuple[TimePooling, ...] = ("max", "mean", "max+mean")
    head_pooled_batch_norm: tuple[bool, ...] = (False,)
    head_hidden_units: tuple[int, ...] = (0,)
    head_hidden_dropouts: tuple[float, ...] = (0.0,)
    head_hidden_batch_norm: tuple[bool, ...] = (False,)
    head_output_dropouts: tuple[float, ...] = (0.0,)
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
        for name in (
            "branch_widths",
            "branch_channels",
            "block_widths",
            "block_channels",
            "block_strides",
            "block_convs",
            "pool_sizes",
        ):
            for value in getattr(self, name):
                _check_int(value, name)
        for value in self.pool_time_sizes or ():
            _check_int(value, "pool_time_sizes")
        for value in self.head_hidden_units:
            _check_int(value, "head_hidden_units", minimum=0)
        for name in ("block_dropouts", "head_hidden_dropouts", "head_output_dropouts"):
            for rate in getattr(self, name):
                if (
                    isinstance(rate, bool)
                    or not isinstance(rate, (int, float))
                    or not (0.0 <= rate < 1.0)
                ):
                    raise SpecError(f"search space {name}: expected a rate in [0, 1), got {rate!r}")
        for choice in self.pool_strides:
            parse_pool_stride(choice)
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
        ``frontend_freq_reduce``, ``frontend_freq_padding`` (no reduction),
        ``frontend_time_padding``, ``frontend_batch_norm``,
        ``branch{i}_{freq_padding,height,width,channels}``, ``depth`` (with a front end) or
        ``depth_no_frontend``, ``block{i}_{freq_padding,time_padding,stride,convs,height,width,
        channels,residual,batch_norm,bias,dropout}``, ``block{i}_pool_axes`` (or
        ``block{i}_pool_axes_collapsed`` after a frequency collapse), ``block{i}_pool_size``,
        ``block{i}_pool_time_size``, ``block{i}_pool_type``, ``block{i}_pool_stride``,
        ``dense_concat``, ``head_freq_reduce`` (or ``head_freq_reduce_collapsed``),
        ``head_hidden_units``, ``head_hidden_dropout``, ``head_hidden_batch_norm``,
        ``head_time_pooling``, ``head_pooled_batch_norm``, ``head_output_dropout``. Only
        dimensions with several choices are asked.
        """
        return self._draw(_Asker(trial), None)

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
        asker = _Asker(None, where)
        self._draw(asker, spec)
        params = asker.params

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

    def _draw(self, ask: _Asker, target: ArchSpec | None) -> ArchSpec:
        """Return the spec the asked parameters give; with ``target``, record its parameters.

        ``sample`` and ``params_for`` share this one walk, so the inverse can never drift from
        the sampler: sampling asks the trial; inverting picks the choice that gives the
        target's value (``ask.params``), and ``params_for`` checks the result by sampling it.
        """
        t = target
        input_norm = ask.choose("input_norm", self.input_norm, _get(t, "input_norm"))
        order = ask.choose("activation_order", self.activation_order, _get(t, "activation_order"))
        n_branches = ask.integer(
            "n_branches",
            self.min_branches,
            self.max_branches,
            None if t is None else len(t.frontend),
            "number of front-end branches",
        )
        freq, time = self.n_mels, self.n_frames
        frontend: list[Branch] = []
        collapsed = False
        if n_branches:
            frontend, collapsed, freq, time = self._draw_frontend(ask, t, n_branches)
            depth = ask.integer(
                "depth",
                self.min_depth,
                self.max_depth,
                None if t is None else len(t.body),
                "number of body blocks",
            )
        else:
            depth = ask.integer(
                "depth_no_frontend",
                max(1, self.min_depth),
                self.max_depth,
                None if t is None else len(t.body),
                "number of body blocks (no front end)",
            )

        body: list[ConvBlock] = []
        for i in range(depth):
            block, freq, time = self._draw_block(
                ask, i, None if t is None else t.body[i], collapsed, freq, time
            )
            body.append(block)

        dense_concat = False
        if body and all(_keeps_shape(block) for block in body):
            dense_concat = ask.choose("dense_concat", self.dense_concat, _get(t, "dense_concat"))
        return ArchSpec(
            frontend=tuple(frontend),
            body=tuple(body),
            head=self._draw_head(ask, None if t is None else t.head, collapsed),
            input_norm=input_norm,
            activation_order=order,
            dense_concat=dense_concat,
        )

    def _draw_frontend(
        self, ask: _Asker, t: ArchSpec | None, n_branches: int
    ) -> tuple[list[Branch], bool, int | None, int | None]:
        """Return (branches, frequency collapsed, remaining freq, remaining time)."""
        first = t.frontend[0] if t is not None else None
        if t is not None:
            reduces = sorted({b.freq_reduce for b in t.frontend})
            if len(reduces) > 1:
                raise SpecError(
                    f"{ask.where}: front-end branches reduce frequency differently ({reduces}); "
                    "the search space gives them all one frontend_freq_reduce"
                )
        reduce = ask.choose(
            "frontend_freq_reduce",
            self.frontend_freq_reduce,
            _get(first, "freq_reduce"),
            "frontend[*].freq_reduce",
        )
        collapsed = reduce != "none"
        kept_padding: Padding = "same"
        if not collapsed:
            kept_padding = ask.choose(
                "frontend_freq_padding",
                self.kept_freq_paddings,
                _get(first, "freq_padding"),
                "frontend[*].freq_padding",
            )
        time_padding = ask.choose(
            "frontend_time_padding",
            self.frontend_time_paddings,
            _get(first, "time_padding"),
            "frontend[*].time_padding",
        )
        batch_norm = ask.choose(
            "frontend_batch_norm",
            self.frontend_batch_norm,
            _get(first, "batch_norm"),
            "frontend[*].batch_norm",
        )
        branches: list[Branch] = []
        for i in range(n_branches):
            tb = t.frontend[i] if t is not None else None
            freq_padding = kept_padding
            if collapsed:
                freq_padding = ask.choose(
                    f"branch{i}_freq_padding",
                    self.branch_freq_paddings,
                    _get(tb, "freq_padding"),
                    f"frontend[{i}].freq_padding",
                )
            if i and not collapsed and kept_padding == "valid":
                height = branches[0].height  # equal heights: the outputs concatenate
            else:
                height = self._fit_height(
                    ask.choose(
                        f"branch{i}_height",
                        self.branch_heights,
                        _get(tb, "height"),
                        f"frontend[{i}].height",
                        self._height_test(_get(tb, "height"), self.n_mels),
                    ),
                    self.n_mels,
                )
            time_limit = self.n_frames if time_padding == "valid" else None
            if i and time_padding == "valid":
                width = branches[0].width  # equal widths: the outputs concatenate
            else:
                width = _fit_kernel(
                    ask.choose(
                        f"branch{i}_width",
                        self.branch_widths,
                        _get(tb, "width"),
                        f"frontend[{i}].width",
                        _kernel_test(_get(tb, "width"), time_limit),
                    ),
                    time_limit,
                )
            channels = ask.choose(
                f"branch{i}_channels",
                self.branch_channels,
                _get(tb, "channels"),
                f"frontend[{i}].channels",
            )
            branches.append(
                Branch(
                    height=height,
                    width=width,
                    channels=channels,
                    freq_padding=freq_padding,
                    time_padding=time_padding,
                    freq_reduce=reduce,
                    batch_norm=batch_norm,
                )
            )
        freq, time = self.n_mels, self.n_frames
        if freq is not None and time is not None:
            first_branch = branches[0]
            bins = resolve_height(first_branch.height, freq)
            freq = 1 if collapsed else conv_out(freq, bins, 1, first_branch.freq_padding)
            time = conv_out(time, first_branch.width, 1, first_branch.time_padding)
        return branches, collapsed, freq, time

    def _draw_block(
        self,
        ask: _Asker,
        i: int,
        tb: ConvBlock | None,
        collapsed: bool,
        freq: int | None,
        time: int | None,
    ) -> tuple[ConvBlock, int | None, int | None]:
        """Return body block ``i`` and the (freq, time) that remain after it."""
        where = f"body[{i}]"
        pool_want: dict[str, Any] = {}
        axes_choices: Sequence[str] = self.pool_axes
        if collapsed:
            axes_choices = _collapsed_axes(self.pool_axes)
        if tb is not None:
            found = self._invert_pool(i, tb, axes_choices, freq, time)
            if found is None:
                raise SpecError(
                    f"{ask.where}: {where} pools {tb.pool_type} {tuple(tb.pool)}"
                    + ("" if tb.pool_stride is None else f" stride {tuple(tb.pool_stride)}")
                    + f", which the search space cannot draw from pool_axes {list(axes_choices)}, "
                    f"pool_sizes {list(self.pool_sizes)}"
                    + (
                        ""
                        if self.pool_time_sizes is None
                        else f", pool_time_sizes {list(self.pool_time_sizes)}"
                    )
                    + f", pool_types {list(self.pool_types)}"
                    + (
                        ""
                        if self.pool_strides == (POOL_STRIDE_OF_SIZE,)
                        else f", pool_strides {list(self.pool_strides)}"
                    )
                    + (f" at {freq} x {time} (mel x frames)" if freq is not None else "")
                )
            pool_want = found
        axes = "none"
        if collapsed:
            axes = ask.choose(
                f"block{i}_pool_axes_collapsed",
                axes_choices,
                pool_want.get("axes"),
                where + ".pool",
            )
        freq_padding: Padding = "same"
        if not collapsed:
            freq_padding = ask.choose(
                f"block{i}_freq_padding",
                self.block_freq_paddings,
                _get(tb, "freq_padding"),
                f"{where}.freq_padding",
            )
        time_padding = ask.choose(
            f"block{i}_time_padding",
            self.block_time_paddings,
            _get(tb, "time_padding"),
            f"{where}.time_padding",
        )
        step = ask.choose(
            f"block{i}_stride",
            self.block_strides,
            None if tb is None else tb.stride[1],
            f"{where}.stride (time)",
        )
        stride = (1 if collapsed else step, step)
        convs = ask.choose(f"block{i}_convs", self.block_convs, _get(tb, "convs"), f"{where}.convs")
        height: Height = 1
        if not collapsed:
            limit = self.n_mels if freq_padding == "same" else freq
            if self.n_mels is not None and freq is not None and freq_padding == "valid":
                limit = _largest_fitting(freq, stride[0], convs)
            height = self._fit_height(
                ask.choose(
                    f"block{i}_height",
                    self.block_heights,
                    _get(tb, "height"),
                    f"{where}.height",
                    self._height_test(_get(tb, "height"), limit),
                ),
                limit,
            )
        time_limit = None
        if time is not None and time_padding == "valid":
            time_limit = _largest_fitting(time, stride[1], convs)
        width = _fit_kernel(
            ask.choose(
                f"block{i}_width",
                self.block_widths,
                _get(tb, "width"),
                f"{where}.width",
                _kernel_test(_get(tb, "width"), time_limit),
            ),
            time_limit,
        )
        channels = ask.choose(
            f"block{i}_channels", self.block_channels, _get(tb, "channels"), f"{where}.channels"
        )
        residual = False
        if freq_padding == time_padding == "same":
            residual = ask.choose(
                f"block{i}_residual", self.block_residual, _get(tb, "residual"), f"{where}.residual"
            )
        batch_norm = ask.choose(
            f"block{i}_batch_norm",
            self.block_batch_norm,
            _get(tb, "batch_norm"),
            f"{where}.batch_norm",
        )
        bias = ask.choose(f"block{i}_bias", self.block_bias, _get(tb, "bias"), f"{where}.bias")
        dropout = ask.choose(
            f"block{i}_dropout", self.block_dropouts, _get(tb, "dropout"), f"{where}.dropout"
        )
        if not collapsed:
            axes = ask.choose(
                f"block{i}_pool_axes", axes_choices, pool_want.get("axes"), where + ".pool"
            )
        if freq is not None and time is not None:
            bins = resolve_height(height, cast(int, self.n_mels))
            freq = _stack_out(freq, bins, stride[0], freq_padding, convs)
            time = _stack_out(time, width, stride[1], time_padding, convs)
        pool, pool_stride, pool_type = (1, 1), None, "max"
        if axes != "none":
            per_axis = self.pool_time_sizes is not None
            size_f = size_t = 1
            if axes in ("freq", "both") or not per_axis:
                size_f = size_t = ask.choose(
                    f"block{i}_pool_size", self.pool_sizes, pool_want.get("size"), where + ".pool"
                )
            if per_axis and axes in ("time", "both"):
                size_t = ask.choose(
                    f"block{i}_pool_time_size",
                    cast(tuple[int, ...], self.pool_time_sizes),
                    pool_want.get("time_size"),
                    where + ".pool",
                )
            kind = ask.choose(
                f"block{i}_pool_type", self.pool_types, pool_want.get("kind"), where + ".pool_type"
            )
            pool_stride = parse_pool_stride(
                ask.choose(
                    f"block{i}_pool_stride",
                    self.pool_strides,
                    pool_want.get("stride"),
                    where + ".pool_stride",
                )
            )
            pool = _pool_shape(axes, size_f, size_t, freq, time)
            pool_type = "max" if pool == (1, 1) else kind  # no pooling: keep the spec canonical
            if freq is not None and time is not None:
                steps = pool_stride or pool
                freq, time = pool_out(freq, pool[0], steps[0]), pool_out(time, pool[1], steps[1])
        block = ConvBlock(
            height=height,
            width=width,
            channels=channels,
            stride=stride,
            freq_padding=freq_padding,
            time_padding=time_padding,
            convs=convs,
            residual=residual,
            batch_norm=batch_norm,
            bias=bias,
            pool=pool,
            pool_stride=pool_stride,
            pool_type=cast(PoolType, pool_type),
            dropout=dropout,
        )
        return block, freq, time

    def _draw_head(self, ask: _Asker, t: Head | None, collapsed: bool) -> Head:
        if collapsed:
            freq_reduce = ask.choose(
                "head_freq_reduce_collapsed",
                self.head_freq_reduce_collapsed,
                _get(t, "freq_reduce"),
                "head.freq_reduce",
            )
        else:
            freq_reduce = ask.choose(
                "head_freq_reduce",
                self.head_freq_reduce,
                _get(t, "freq_reduce"),
                "head.freq_reduce",
            )
        want_dense = None
        if t is not None:
            if len(t.hidden) > 1:
                raise SpecError(
                    f"{ask.where}: head has {len(t.hidden)} dense layers; the search space draws "
                    "at most one"
                )
            want_dense = t.hidden[0] if t.hidden else Dense(0)
        units = ask.choose(
            "head_hidden_units",
            self.head_hidden_units,
            _get(want_dense, "units"),
            "head.hidden units",
        )
        hidden: tuple[Dense, ...] = ()
        if units:
            dropout = ask.choose(
                "head_hidden_dropout",
                self.head_hidden_dropouts,
                _get(want_dense, "dropout"),
                "head.hidden[0].dropout",
            )
            batch_norm = ask.choose(
                "head_hidden_batch_norm",
                self.head_hidden_batch_norm,
                _get(want_dense, "batch_norm"),
                "head.hidden[0].batch_norm",
            )
            hidden = (Dense(units, dropout=dropout, batch_norm=batch_norm),)
        return Head(
            freq_reduce=freq_reduce,
            time_pooling=ask.choose(
                "head_time_pooling",
                self.head_time_pooling,
                _get(t, "time_pooling"),
                "head.time_pooling",
            ),
            pooled_batch_norm=ask.choose(
                "head_pooled_batch_norm",
                self.head_pooled_batch_norm,
                _get(t, "pooled_batch_norm"),
                "head.pooled_batch_norm",
            ),
            hidden=hidden,
            output_dropout=ask.choose(
                "head_output_dropout",
                self.head_output_dropouts,
                _get(t, "output_dropout"),
                "head.output_dropout",
            ),
        )

    def _invert_pool(
        self,
        i: int,
        block: ConvBlock,
        axes_choices: Sequence[str],
        freq: int | None,
        time: int | None,
    ) -> dict[str, Any] | None:
        """Return the pooling choices that make block ``i`` pool like ``block``, or None.

        ``freq``/``time`` are what reaches the block; its conv is taken from ``block`` itself
        (if the space cannot draw that conv, another dimension says so).
        """
        if freq is not None and time is not None and self.n_mels is not None:
            bins = resolve_height(block.height, self.n_mels)
            freq = _stack_out(freq, bins, block.stride[0], block.freq_padding, block.convs)
            time = _stack_out(time, block.width, block.stride[1], block.time_padding, block.convs)
        per_axis = self.pool_time_sizes is not None
        time_sizes: Sequence[int | None] = self.pool_time_sizes or (None,)
        for axes in axes_choices:
            if axes == "none":
                unpooled = tuple(block.pool) == (1, 1) and block.pool_stride is None
                if unpooled and block.pool_type == "max":
                    return {"axes": axes}
                continue
            sizes: Sequence[int | None] = self.pool_sizes
            if per_axis and axes == "time":
                sizes = (None,)
            for size in sizes:
                for time_size in time_sizes if per_axis and axes != "freq" else (None,):
                    size_f = size or 1
                    size_t = time_size if per_axis else size
                    pool = _pool_shape(axes, size_f, size_t or 1, freq, time)
                    if pool != tuple(block.pool):
                        continue
                    for kind in self.pool_types:
                        if ("max" if pool == (1, 1) else kind) != block.pool_type:
                            continue
                        for stride in self.pool_strides:
                            if parse_pool_stride(stride) == _tuple_or_none(block.pool_stride):
                                return {
                                    "axes": axes,
                                    "size": size,
                                    "time_size": time_size,
                                    "kind": kind,
                                    "stride": stride,
                                }
        return None

    def _height_test(self, want: Any, limit: int | None) -> Callable[[Any], bool] | None:
        """Return a test that a height choice draws ``want`` (in bins once n_mels is bound)."""
        if want is None:
            return None

        def same(choice: Height) -> bool:
            fitted = self._fit_height(choice, limit)
            if fitted == want:
                return True
            if self.n_mels is None or isinstance(fitted, bool) or isinstance(want, bool):
                return False
            try:
                return resolve_height(fitted, self.n_mels) == resolve_height(want, self.n_mels)
            except SpecError:
                return False

        return same

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
            if "none" in self.frontend_freq_reduce:
                add("frontend_freq_padding", self.kept_freq_paddings)
            add("frontend_time_padding", self.frontend_time_paddings)
            add("frontend_batch_norm", self.frontend_batch_norm)
            for i in range(self.max_branches):
                if may_collapse:
                    add(f"branch{i}_freq_padding", self.branch_freq_paddings)
                add(f"branch{i}_height", self.branch_heights)
                add(f"branch{i}_width", self.branch_widths)
                add(f"branch{i}_channels", self.branch_channels)
            add("depth", range(self.min_depth, self.max_depth + 1))
        if self.min_branches == 0:
            add("depth_no_frontend", range(max(1, self.min_depth), self.max_depth + 1))
        pools = any(axes != "none" for axes in self.pool_axes)
        for i in range(self.max_depth):
            if may_collapse:
                add(f"block{i}_pool_axes_collapsed", _collapsed_axes(self.pool_axes))
            if may_keep_freq:
                add(f"block{i}_freq_padding", self.block_freq_paddings)
            add(f"block{i}_time_padding", self.block_time_paddings)
            add(f"block{i}_stride", self.block_strides)
            add(f"block{i}_convs", self.block_convs)
            if may_keep_freq:
                add(f"block{i}_height", self.block_heights)
            add(f"block{i}_width", self.block_widths)
            add(f"block{i}_channels", self.block_channels)
            add(f"block{i}_residual", self.block_residual)
            add(f"block{i}_batch_norm", self.block_batch_norm)
            add(f"block{i}_bias", self.block_bias)
            add(f"block{i}_dropout", self.block_dropouts)
            if may_keep_freq:
                add(f"block{i}_pool_axes", self.pool_axes)
            if pools:
                add(f"block{i}_pool_size", self.pool_sizes)
                if self.pool_time_sizes is not None:
                    add(f"block{i}_pool_time_size", self.pool_time_sizes)
                add(f"block{i}_pool_type", self.pool_types)
                add(f"block{i}_pool_stride", self.pool_strides)
        if self.max_depth > 0:
            add("dense_concat", self.dense_concat)
        if may_keep_freq:
            add("head_freq_reduce", self.head_freq_reduce)
        if may_collapse:
            add("head_freq_reduce_collapsed", self.head_freq_reduce_collapsed)
        add("head_hidden_units", self.head_hidden_units)
        if any(self.head_hidden_units):
            add("head_hidden_dropout", self.head_hidden_dropouts)
            add("head_hidden_batch_norm", self.head_hidden_batch_norm)
        add("head_time_pooling", self.head_time_pooling)
        add("head_pooled_batch_norm", self.head_pooled_batch_norm)
        add("head_output_dropout", self.head_output_dropouts)
        return grid

    def _fit_height(self, height: Height, limit: int | None) -> Height:
        """Return ``height``, or the nearest fitting mel count where it resolves outside
        ``[1, limit]`` (``limit``: n_mels, or what a ``valid`` kernel may span; None: no upper
        bound) or below 1 (a small input)."""
        if self.n_mels is None:
            return height
        bins = resolve_height(height, self.n_mels)
        upper = bins if limit is None else min(limit, self.n_mels)
        return height if 1 <= bins <= upper else max(1, min(bins, upper))


class _Asker:
    """Asks a trial for each dimension, or (``trial`` None) picks the choice giving a target."""

    def __init__(self, trial: optuna.trial.BaseTrial | None, where: str = "spec") -> None:
        self.trial = trial
        self.where = where
        self.params: dict[str, Any] = {}

    def choose(
        self,
        name: str,
        choices: Sequence[Any],
        want: Any,
        label: str = "",
        same: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Return the trial's pick, or the choice equal to ``want`` (the literal first)."""
        if self.trial is not None:
            return _choose(self.trial, name, choices)
        tests: list[Callable[[Any], bool]] = [lambda choice: _equal(choice, want)]
        if same is not None:
            tests.append(same)
        for test in tests:
            for choice in choices:
                if test(choice):
                    if len(choices) > 1:
                        self.params[name] = choice
                    return choice
        raise SpecError(
            f"{self.where}: {label or name} {want!r} is not among the search space's "
            f"{list(choices)}"
        )

    def integer(self, name: str, low: int, high: int, want: int | None, label: str) -> int:
        """Return the trial's integer in ``[low, high]``, or ``want`` when it lies there."""
        if self.trial is not None:
            return _integer(self.trial, name, low, high)
        assert want is not None
        if not low <= want <= high:
            raise SpecError(
                f"{self.where}: {label} {want!r} is outside the search space's range {[low, high]}"
            )
        if low != high:
            self.params[name] = want
        return want


def _equal(choice: Any, want: Any) -> bool:
    # True == 1 in Python; a bool dimension never matches an int value, nor the reverse
    return isinstance(choice, bool) == isinstance(want, bool) and choice == want


def _get(part: Any, name: str) -> Any:
    return None if part is None else getattr(part, name)


def _tuple_or_none(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def _keeps_shape(block: ConvBlock) -> bool:
    """Return whether a block's output has its input's (freq x time): dense concat needs it."""
    return (
        tuple(block.pool) == (1, 1)
        and block.pool_stride is None
        and tuple(block.stride) == (1, 1)
        and block.freq_padding == block.time_padding == "same"
    )


def _pool_shape(
    axes: str, size_f: int, size_t: int, freq: int | None, time: int | None
) -> tuple[int, int]:
    """Return the (freq, time) pool of ``axes``, clipped to what remains when that is known."""
    pool_f = size_f if axes in ("freq", "both") else 1
    pool_t = size_t if axes in ("time", "both") else 1
    if freq is not None and time is not None:
        pool_f, pool_t = min(pool_f, freq), min(pool_t, time)
    return pool_f, pool_t


def _stack_out(n: int, kernel: int, stride: int, padding: Padding, convs: int) -> int:
    """Return the axis length after a block's ``convs`` convolutions (the first strided)."""
    n = conv_out(n, kernel, stride, padding)
    for _ in range(convs - 1):
        n = conv_out(n, kernel, 1, padding)
    return n


def _largest_fitting(n: int, stride: int, convs: int) -> int:
    """Return the largest ``valid`` kernel a block of ``convs`` convs can apply to ``n``."""
    for kernel in range(n, 1, -1):
        first = (n - kernel) // stride + 1
        if first >= 1 and first - (convs - 1) * (kernel - 1) >= 1:
            return kernel
    return 1


def _fit_kernel(width: int, limit: int | None) -> int:
    """Return ``width`` clipped to ``limit`` (a ``valid`` kernel on a short axis)."""
    return width if limit is None else max(1, min(width, limit))


def _kernel_test(want: Any, limit: int | None) -> Callable[[Any], bool] | None:
    if want is None or limit is None:
        return None
    return lambda choice: _fit_kernel(choice, limit) == want


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


__all__ = [
    "ABLATION_FACTORS",
    "POOL_STRIDE_OF_SIZE",
    "PoolAxes",
    "SearchSpace",
    "apply_factor",
    "grid",
    "parse_pool_stride",
]
