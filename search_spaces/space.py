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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from search_spaces.errors import SpecError

# the ablation factors moved to search_spaces.factors; importing them from here still works
from search_spaces.factors import ABLATION_FACTORS, apply_factor, grid
from search_spaces.space_choices import SpaceChoices
from search_spaces.space_draw import (
    POOL_STRIDE_OF_SIZE,
    Asker,
    PoolAxes,
    attr,
    collapsed_axes,
    first_difference,
    fit_kernel,
    keeps_shape,
    kernel_test,
    largest_fitting,
    parse_pool_stride,
    pool_shape,
    stack_out,
    tuple_or_none,
)
from search_spaces.spec import (
    ArchSpec,
    Branch,
    ConvBlock,
    Dense,
    Head,
    Height,
    Padding,
    PoolType,
    resolve_height,
)
from search_spaces.validate import conv_out, pool_out

if TYPE_CHECKING:  # optuna is only needed by callers that sample
    import optuna


@dataclass(frozen=True)
class SearchSpace(SpaceChoices):
    """A search space: its choices (``SpaceChoices``: the fields, their checks, ``from_dict``
    / ``to_dict``) and how a trial draws a valid ``ArchSpec`` from them (``sample``), the
    inverse (``params_for``) and the grid of every dimension (``grid_space``).
    """

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
        return self._draw(Asker(trial), None)

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
        asker = Asker(None, where)
        self._draw(asker, spec)
        params = asker.params

        import optuna  # only callers that warm-start a study get here

        drawn_spec = self.sample(optuna.trial.FixedTrial(params))
        want, got = self._comparable(spec), self._comparable(drawn_spec)
        if want != got:
            path, wanted, drawn_value = first_difference(want, got)
            raise SpecError(
                f"{where}: {path} is {wanted!r}, but the search space always draws {drawn_value!r} "
                "there; it is not a point of this space"
            )
        return params

    def _draw(self, ask: Asker, target: ArchSpec | None) -> ArchSpec:
        """Return the spec the asked parameters give; with ``target``, record its parameters.

        ``sample`` and ``params_for`` share this one walk, so the inverse can never drift from
        the sampler: sampling asks the trial; inverting picks the choice that gives the
        target's value (``ask.params``), and ``params_for`` checks the result by sampling it.
        """
        t = target
        input_norm = ask.choose("input_norm", self.input_norm, attr(t, "input_norm"))
        order = ask.choose("activation_order", self.activation_order, attr(t, "activation_order"))
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
        if body and all(keeps_shape(block) for block in body):
            dense_concat = ask.choose("dense_concat", self.dense_concat, attr(t, "dense_concat"))
        return ArchSpec(
            frontend=tuple(frontend),
            body=tuple(body),
            head=self._draw_head(ask, None if t is None else t.head, collapsed),
            input_norm=input_norm,
            activation_order=order,
            dense_concat=dense_concat,
        )

    def _draw_frontend(
        self, ask: Asker, t: ArchSpec | None, n_branches: int
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
            attr(first, "freq_reduce"),
            "frontend[*].freq_reduce",
        )
        collapsed = reduce != "none"
        kept_padding: Padding = "same"
        if not collapsed:
            kept_padding = ask.choose(
                "frontend_freq_padding",
                self.kept_freq_paddings,
                attr(first, "freq_padding"),
                "frontend[*].freq_padding",
            )
        time_padding = ask.choose(
            "frontend_time_padding",
            self.frontend_time_paddings,
            attr(first, "time_padding"),
            "frontend[*].time_padding",
        )
        batch_norm = ask.choose(
            "frontend_batch_norm",
            self.frontend_batch_norm,
            attr(first, "batch_norm"),
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
                    attr(tb, "freq_padding"),
                    f"frontend[{i}].freq_padding",
                )
            if i and not collapsed and kept_padding == "valid":
                height = branches[0].height  # equal heights: the outputs concatenate
            else:
                height = self._fit_height(
                    ask.choose(
                        f"branch{i}_height",
                        self.branch_heights,
                        attr(tb, "height"),
                        f"frontend[{i}].height",
                        self._height_test(attr(tb, "height"), self.n_mels),
                    ),
                    self.n_mels,
                )
            time_limit = self.n_frames if time_padding == "valid" else None
            if i and time_padding == "valid":
                width = branches[0].width  # equal widths: the outputs concatenate
            else:
                width = fit_kernel(
                    ask.choose(
                        f"branch{i}_width",
                        self.branch_widths,
                        attr(tb, "width"),
                        f"frontend[{i}].width",
                        kernel_test(attr(tb, "width"), time_limit),
                    ),
                    time_limit,
                )
            channels = ask.choose(
                f"branch{i}_channels",
                self.branch_channels,
                attr(tb, "channels"),
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
        ask: Asker,
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
            axes_choices = collapsed_axes(self.pool_axes)
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
                attr(tb, "freq_padding"),
                f"{where}.freq_padding",
            )
        time_padding = ask.choose(
            f"block{i}_time_padding",
            self.block_time_paddings,
            attr(tb, "time_padding"),
            f"{where}.time_padding",
        )
        step = ask.choose(
            f"block{i}_stride",
            self.block_strides,
            None if tb is None else tb.stride[1],
            f"{where}.stride (time)",
        )
        stride = (1 if collapsed else step, step)
        convs = ask.choose(f"block{i}_convs", self.block_convs, attr(tb, "convs"), f"{where}.convs")
        height: Height = 1
        if not collapsed:
            limit = self.n_mels if freq_padding == "same" else freq
            if self.n_mels is not None and freq is not None and freq_padding == "valid":
                limit = largest_fitting(freq, stride[0], convs)
            height = self._fit_height(
                ask.choose(
                    f"block{i}_height",
                    self.block_heights,
                    attr(tb, "height"),
                    f"{where}.height",
                    self._height_test(attr(tb, "height"), limit),
                ),
                limit,
            )
        time_limit = None
        if time is not None and time_padding == "valid":
            time_limit = largest_fitting(time, stride[1], convs)
        width = fit_kernel(
            ask.choose(
                f"block{i}_width",
                self.block_widths,
                attr(tb, "width"),
                f"{where}.width",
                kernel_test(attr(tb, "width"), time_limit),
            ),
            time_limit,
        )
        channels = ask.choose(
            f"block{i}_channels", self.block_channels, attr(tb, "channels"), f"{where}.channels"
        )
        residual = False
        if freq_padding == time_padding == "same":
            residual = ask.choose(
                f"block{i}_residual",
                self.block_residual,
                attr(tb, "residual"),
                f"{where}.residual",
            )
        batch_norm = ask.choose(
            f"block{i}_batch_norm",
            self.block_batch_norm,
            attr(tb, "batch_norm"),
            f"{where}.batch_norm",
        )
        bias = ask.choose(f"block{i}_bias", self.block_bias, attr(tb, "bias"), f"{where}.bias")
        dropout = ask.choose(
            f"block{i}_dropout", self.block_dropouts, attr(tb, "dropout"), f"{where}.dropout"
        )
        if not collapsed:
            axes = ask.choose(
                f"block{i}_pool_axes", axes_choices, pool_want.get("axes"), where + ".pool"
            )
        if freq is not None and time is not None:
            bins = resolve_height(height, cast(int, self.n_mels))
            freq = stack_out(freq, bins, stride[0], freq_padding, convs)
            time = stack_out(time, width, stride[1], time_padding, convs)
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
            pool = pool_shape(axes, size_f, size_t, freq, time)
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

    def _draw_head(self, ask: Asker, t: Head | None, collapsed: bool) -> Head:
        if collapsed:
            freq_reduce = ask.choose(
                "head_freq_reduce_collapsed",
                self.head_freq_reduce_collapsed,
                attr(t, "freq_reduce"),
                "head.freq_reduce",
            )
        else:
            freq_reduce = ask.choose(
                "head_freq_reduce",
                self.head_freq_reduce,
                attr(t, "freq_reduce"),
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
            attr(want_dense, "units"),
            "head.hidden units",
        )
        hidden: tuple[Dense, ...] = ()
        if units:
            dropout = ask.choose(
                "head_hidden_dropout",
                self.head_hidden_dropouts,
                attr(want_dense, "dropout"),
                "head.hidden[0].dropout",
            )
            batch_norm = ask.choose(
                "head_hidden_batch_norm",
                self.head_hidden_batch_norm,
                attr(want_dense, "batch_norm"),
                "head.hidden[0].batch_norm",
            )
            hidden = (Dense(units, dropout=dropout, batch_norm=batch_norm),)
        return Head(
            freq_reduce=freq_reduce,
            time_pooling=ask.choose(
                "head_time_pooling",
                self.head_time_pooling,
                attr(t, "time_pooling"),
                "head.time_pooling",
            ),
            pooled_batch_norm=ask.choose(
                "head_pooled_batch_norm",
                self.head_pooled_batch_norm,
                attr(t, "pooled_batch_norm"),
                "head.pooled_batch_norm",
            ),
            hidden=hidden,
            output_dropout=ask.choose(
                "head_output_dropout",
                self.head_output_dropouts,
                attr(t, "output_dropout"),
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
            freq = stack_out(freq, bins, block.stride[0], block.freq_padding, block.convs)
            time = stack_out(time, block.width, block.stride[1], block.time_padding, block.convs)
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
                    pool = pool_shape(axes, size_f, size_t or 1, freq, time)
                    if pool != tuple(block.pool):
                        continue
                    for kind in self.pool_types:
                        if ("max" if pool == (1, 1) else kind) != block.pool_type:
                            continue
                        for stride in self.pool_strides:
                            if parse_pool_stride(stride) == tuple_or_none(block.pool_stride):
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
                add(f"block{i}_pool_axes_collapsed", collapsed_axes(self.pool_axes))
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


__all__ = [
    "ABLATION_FACTORS",
    "POOL_STRIDE_OF_SIZE",
    "PoolAxes",
    "SearchSpace",
    "apply_factor",
    "grid",
    "parse_pool_stride",
]
