"""Ablation factors: one design choice changed at a time around a base spec.

``apply_factor(base, factor, value)`` returns ``base`` with one factor (``ABLATION_FACTORS``)
set; ``grid`` gives one spec per value. Shape problems are left to ``validate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, get_args

from search_spaces.errors import SpecError
from search_spaces.spec import ArchSpec, ConvBlock, FreqReduce, TimePooling, resolve_height


def _check_int(value: object, where: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"search space {where}: expected an integer >= {minimum}, got {value!r}")


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


__all__ = ["ABLATION_FACTORS", "apply_factor", "grid"]
