"""A study's Optuna storage (no Ray): opening it, and the one line of a storage that fails.

``open_storage`` opens an RDB storage (a SQLite file's folder is created, the file put in
write-ahead-log mode). A storage that cannot be opened or written (a read-only folder, a full
disk) is one ``SearchError`` line naming the URL, the database's own message and, for a SQLite
file, the likely cause (``storage_error``). ``SearchError``, the error of a search that cannot
start or continue, is defined here, below ``nas.study``, which raises it too and offers it with
the rest of the study.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import optuna

from search_spaces.errors import FsnasError


class SearchError(FsnasError):
    """A search cannot start or continue; the message names the study and what to change."""


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Return the Optuna RDB storage for ``url``; a SQLite file's folder is created."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if str(path) not in ("", ":memory:"):
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except Exception as exc:
            if not (url.startswith("sqlite") and "already exists" in str(exc)):
                raise
            # two drivers created a new SQLite file's tables at once and this one lost the
            # race; the tables exist now
            time.sleep(0.5)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:
        raise storage_error(url, "cannot open", exc) from None
    if url.startswith("sqlite"):
        _fast_sqlite(storage)
    return storage


def storage_error(url: str, what: str, exc: BaseException) -> SearchError:
    """Return the one-line SearchError of a storage failure: URL, database error, likely cause.

    SQLAlchemy's text spans lines (the SQL, a link); only the database's own message is kept,
    and for a SQLite file the folder is checked: read-only, or a disk without free space.
    """
    original = getattr(exc, "orig", None) or exc
    detail = " ".join(str(original).split())[:300] or type(original).__name__
    cause = _sqlite_cause(url)
    return SearchError(
        f"storage {url!r}: {what} ({type(original).__name__}: {detail})"
        + (f"; {cause}" if cause else "")
    )


# below this much free space a SQLite write (journal, WAL) is likely to fail
_LOW_DISK_BYTES = 1 << 20


def _sqlite_cause(url: str) -> str:
    """Return why a SQLite file's folder cannot take writes, or "" when nothing is seen."""
    if not url.startswith("sqlite:///"):
        return ""
    path = Path(url[len("sqlite:///") :].split("?", 1)[0])
    if str(path) in ("", ":memory:"):
        return ""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return ""
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return (
            f"{folder} is read-only (SQLite writes a journal beside the file); the study is "
            "unchanged: make it writable, or copy the file to a writable folder and pass "
            "--storage sqlite:///COPY"
        )
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free < _LOW_DISK_BYTES:
        return (
            f"the disk holding {folder} is full ({free // 1024} KiB free); the study is "
            "unchanged: free space there and run the command again"
        )
    return ""


def _engine_kwargs(url: str) -> dict[str, Any]:
    # the driver is the only writer, but fsnas pareto may read while a search writes
    return {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Put a SQLite study file in write-ahead-log mode with ``synchronous=NORMAL``.

    Every parameter a trial samples is its own transaction; in SQLite's default rollback
    journal each one waits for the disk twice, which made the storage a large share of a
    short trial's cost (88 -> 49 ms for a 20-parameter trial on the 2-core machine). A
    committed trial still survives the driver being killed; only an OS crash or power loss
    can drop the last commits. Readers (``fsnas pareto``) no longer block the writer.
    """
    import sqlalchemy

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened before the listener get the pragmas too


def is_storage_error(exc: BaseException) -> bool:
    """Return True for a SQLAlchemy or Optuna storage error (a read-only or full disk)."""
    import sqlalchemy.exc

    return isinstance(exc, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError))
