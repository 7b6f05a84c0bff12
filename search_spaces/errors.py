"""Exception types of fsnas. Every message names the file/key/layer and the offending value."""

from __future__ import annotations

import math
import os
import reprlib
from typing import Any

EXCERPT_CHARS = 80
"""The most characters of an offending value that an error message repeats."""

_REPR = reprlib.Repr()
_REPR.maxstring = EXCERPT_CHARS
_REPR.maxother = EXCERPT_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


class FsnasError(Exception):
    """Base class of every error fsnas raises on purpose; the CLI prints it and exits 2."""


class SpecError(FsnasError, ValueError):
    """A spec is malformed or does not fit the input shape; the message names field and numbers."""


class FsnasWarning(UserWarning):
    """Something fsnas does that the user may not expect; the CLI prints it as one line."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """Return ``repr(value)`` cut to about ``limit`` characters, with the full size when cut.

    Error messages quote the value they refuse; a 50 MB name or a YAML alias bomb must not
    be quoted whole. Nested containers are abbreviated level by level (``reprlib``), so even
    a value that expands to billions of items is never walked in full.
    """
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value):,} characters)"
    text = _REPR.repr(value)
    if len(text) > limit + 20:
        text = text[:limit] + "…"
    return text


def env_seconds(
    name: str, default: float, error: type[Exception], *, allow_zero: bool = True
) -> float:
    """Return the seconds in the environment variable ``name``, or ``default`` when unset/blank.

    Raises:
        error: the value is not a finite number of seconds ``>= 0`` (``> 0`` without
            ``allow_zero``), naming the variable and the value.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise error(f"${name}: expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise error(f"${name}: expected seconds {'>=' if allow_zero else '>'} 0, got {text!r}")
    return value
