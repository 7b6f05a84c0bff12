"""The choices of a search space: every dimension's bounds and options, checked once.

``SpaceChoices`` is the data of ``search_spaces.space.SearchSpace`` (which adds how a trial
draws a design from them): one frozen field per dimension, validated when the space is made
(no empty choice list, bounds in order, positive sizes, rates in [0, 1), heights that resolve,
both or neither of ``n_mels`` / ``n_frames``), and read from or written to a config's
``space:`` mapping (``from_dict`` / ``to_dict``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from search_spaces.errors import SpecError
from search_spaces.factors import _check_int
from search_spaces.space_draw import POOL_STRIDE_OF_SIZE, PoolAxes, parse_pool_stride
from search_spaces.spec import (
    ActivationOrder,
    FreqReduce,
    Height,
    InputNorm,
    Padding,
    PoolType,
    TimePooling,
    _from_mapping,
    _to_jsonable,
    resolve_height,
)

_Space = TypeVar("_Space", bound="SpaceChoices")


@dataclass(frozen=True)
class SpaceChoices:
    """Bounds and choices of every dimension ``SearchSpace.sample`` draws; a config changes any.

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
    def from_dict(cls: type[_Space], data: Mapping[str, Any]) -> _Space:
        """Return the default space with the keys of ``data`` changed.

        Raises:
            SpecError: an unknown key, a value of the wrong type or inconsistent bounds (the
                message names the key and the value).
        """
        return cast(_Space, _from_mapping(cls, data, "search space"))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict that ``from_dict`` reads back to an equal space."""
        return cast(dict[str, Any], _to_jsonable(dataclasses.asdict(self)))


__all__ = ["SpaceChoices"]
