"""Exception types of fsnas. Every message names the file/key/layer and the offending value."""

from __future__ import annotations


class FsnasError(Exception):
    """Base class of every error fsnas raises on purpose; the CLI prints it and exits 2."""


class SpecError(FsnasError, ValueError):
    """A spec is malformed or does not fit the input shape; the message names field and numbers."""
