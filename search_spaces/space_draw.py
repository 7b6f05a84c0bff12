"""What ``SearchSpace`` draws with: one setting at a time, and the shapes that keep it valid.

``Asker`` asks an Optuna trial for each dimension (``SearchSpace.sample``) or, given no trial,
picks the choice that gives a target design and records the parameters that would draw it
(``SearchSpace.params_for``). The rest is the arithmetic a draw needs to stay a valid network
on a known input (pool shapes clipped to what remains, ``valid`` kernels that fit, a block's
output length), the pooling axes left once frequency has collapsed, and the ``pool_strides``
choices (``parse_pool_stride``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from search_spaces.errors import SpecError, excerpt
from search_spaces.spec import ConvBlock, Padding
from search_spaces.validate import conv_out

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


class Asker:
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
            return ask_choice(self.trial, name, choices)
        tests: list[Callable[[Any], bool]] = [lambda choice: same_choice(choice, want)]
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
            return ask_integer(self.trial, name, low, high)
        assert want is not None
        if not low <= want <= high:
            raise SpecError(
                f"{self.where}: {label} {want!r} is outside the search space's range {[low, high]}"
            )
        if low != high:
            self.params[name] = want
        return want


def same_choice(choice: Any, want: Any) -> bool:
    # True == 1 in Python; a bool dimension never matches an int value, nor the reverse
    return isinstance(choice, bool) == isinstance(want, bool) and choice == want


def attr(part: Any, name: str) -> Any:
    return None if part is None else getattr(part, name)


def tuple_or_none(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def keeps_shape(block: ConvBlock) -> bool:
    """Return whether a block's output has its input's (freq x time): dense concat needs it."""
    return (
        tuple(block.pool) == (1, 1)
        and block.pool_stride is None
        and tuple(block.stride) == (1, 1)
        and block.freq_padding == block.time_padding == "same"
    )


def pool_shape(
    axes: str, size_f: int, size_t: int, freq: int | None, time: int | None
) -> tuple[int, int]:
    """Return the (freq, time) pool of ``axes``, clipped to what remains when that is known."""
    pool_f = size_f if axes in ("freq", "both") else 1
    pool_t = size_t if axes in ("time", "both") else 1
    if freq is not None and time is not None:
        pool_f, pool_t = min(pool_f, freq), min(pool_t, time)
    return pool_f, pool_t


def stack_out(n: int, kernel: int, stride: int, padding: Padding, convs: int) -> int:
    """Return the axis length after a block's ``convs`` convolutions (the first strided)."""
    n = conv_out(n, kernel, stride, padding)
    for _ in range(convs - 1):
        n = conv_out(n, kernel, 1, padding)
    return n


def largest_fitting(n: int, stride: int, convs: int) -> int:
    """Return the largest ``valid`` kernel a block of ``convs`` convs can apply to ``n``."""
    for kernel in range(n, 1, -1):
        first = (n - kernel) // stride + 1
        if first >= 1 and first - (convs - 1) * (kernel - 1) >= 1:
            return kernel
    return 1


def fit_kernel(width: int, limit: int | None) -> int:
    """Return ``width`` clipped to ``limit`` (a ``valid`` kernel on a short axis)."""
    return width if limit is None else max(1, min(width, limit))


def kernel_test(want: Any, limit: int | None) -> Callable[[Any], bool] | None:
    if want is None or limit is None:
        return None
    return lambda choice: fit_kernel(choice, limit) == want


def first_difference(want: Any, got: Any, path: str = "") -> tuple[str, Any, Any]:
    """Return (dotted path, wanted value, drawn value) of the first place two dicts differ."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in want:
            if want.get(key) != got.get(key):
                return first_difference(
                    want.get(key), got.get(key), f"{path}.{key}" if path else key
                )
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for index, (a, b) in enumerate(zip(want, got, strict=True)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return path or "spec", want, got


def collapsed_axes(pool_axes: Sequence[str]) -> tuple[str, ...]:
    """Return the pooling axes left once frequency is 1: ``both`` becomes ``time``."""
    out: list[str] = []
    for axes in pool_axes:
        mapped = "time" if axes in ("time", "both") else "none"
        if mapped not in out:
            out.append(mapped)
    return tuple(out)


def ask_choice(trial: optuna.trial.BaseTrial, name: str, choices: Sequence[Any]) -> Any:
    """Return the trial's pick among ``choices``; a single choice is a constant, not asked."""
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, list(choices))


def ask_integer(trial: optuna.trial.BaseTrial, name: str, low: int, high: int) -> int:
    """Return the trial's integer in ``[low, high]``; equal bounds are a constant, not asked."""
    return low if low == high else trial.suggest_int(name, low, high)


__all__ = [
    "POOL_STRIDE_OF_SIZE",
    "Asker",
    "PoolAxes",
    "ask_choice",
    "ask_integer",
    "attr",
    "collapsed_axes",
    "first_difference",
    "fit_kernel",
    "keeps_shape",
    "kernel_test",
    "largest_fitting",
    "parse_pool_stride",
    "pool_shape",
    "same_choice",
    "stack_out",
    "tuple_or_none",
]
