"""Exception types of trainers: every message names the file/key and the offending value."""

from __future__ import annotations

from search_spaces.errors import FsnasError


class DataError(FsnasError, ValueError):
    """A data source, layout, manifest or split is unusable; the message says which and why."""


class AudioDecodeError(DataError):
    """One audio file cannot be decoded (empty, truncated, not audio); ``path`` and ``reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BadAudioError(DataError):
    """Some files could not be decoded under ``on_bad_audio="fail"``; lists up to 10 offenders."""

    MAX_LISTED = 10

    def __init__(self, bad: list[tuple[str, str]], total_clips: int, complete: bool = True) -> None:
        listed = "; ".join(f"{path} ({reason})" for path, reason in bad[: self.MAX_LISTED])
        more = f"; and {len(bad) - self.MAX_LISTED} more" if len(bad) > self.MAX_LISTED else ""
        # decoding stops once MAX_LISTED offenders are found: there may be more
        count = str(len(bad)) if complete else f"at least {len(bad)}"
        super().__init__(
            f"{count} of {total_clips} audio files could not be decoded: {listed}{more}. "
            "Fix or remove them, or pass --on-bad-audio skip to leave them out."
        )
        self.bad = bad


class CacheError(DataError):
    """A feature cache entry is incomplete or corrupt (callers rebuild it); names the file."""
