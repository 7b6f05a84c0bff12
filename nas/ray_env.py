"""What Ray and Tune are started with, set and checked before Ray starts; imports no Ray.

``nas.ray_backend`` (the only module that imports Ray) uses these:

* ``prepare_environment``: the variables Ray's workers and Tune's driver read (workers keep
  the working directory, Tune writes no per-trial result files or experiment snapshots; a
  value the user set wins) and the filters for two messages that are noise for fsnas.
* ``check_head_answers``: a ``HOST:PORT`` head that does not accept a connection within
  ``HEAD_CONNECT_TIMEOUT_S`` is a ``SearchError`` at once (``ray.init`` waits minutes).
* ``pending_trials``: how many trials Tune keeps waiting to start while a Tuner runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

from nas.study import SearchError

# Workers must not chdir into trial folders (relative paths in configs stay valid) and the
# driver prints its own progress line instead of Tune's tables.
WORKER_ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_AIR_NEW_OUTPUT": "0"}
# read by Tune in the driver (see prepare_environment); a value the user set wins
_LOGGERS_OFF_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
_DRIVER_ENV = {_LOGGERS_OFF_ENV: "1", "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
# Tune's limit on trials waiting to start (read when a Tuner starts; see ``pending_trials``)
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


class _NoResultFilesWarning(logging.Filter):
    """Drops Tune's "Failed to fetch metrics for N trial(s)" warning (one line per trial).

    With Tune's per-trial result files off (``_LOGGERS_OFF_ENV``, above) the
    ResultGrid that ``Tuner.fit`` builds at the end finds none of them; fsnas never reads it
    (Optuna's storage and MLflow hold every result), so the warning only buries the front.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to fetch metrics for")


_RESULT_FILES_FILTER = _NoResultFilesWarning()
_EXPERIMENT_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


def prepare_environment() -> None:
    """Set what Ray's workers and Tune's driver read (a value the user set wins); quiet noise."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    # failed trials report no objectives; fsnas records them itself
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Optuna's storage and MLflow hold every result: Tune's own CSV/JSON/TensorBoard files per
    # trial, and its experiment snapshots (a pickle of every trial, for Tuner.restore, which
    # fsnas never uses), would only cost the control loop time that grows with the study
    for key, value in _DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get(_LOGGERS_OFF_ENV) == "1":
        logging.getLogger(_EXPERIMENT_ANALYSIS_LOGGER).addFilter(_RESULT_FILES_FILTER)
    # fsnas's define-by-run function only samples; Ray's "took N seconds" hint is noise here
    warnings.filterwarnings("ignore", message="Define-by-run function passed", category=UserWarning)


HEAD_CONNECT_TIMEOUT_S = 10.0
"""Seconds ``init_ray`` waits for a HOST:PORT head to accept a connection."""


def check_head_answers(address: str) -> None:
    """Raise ``SearchError`` at once if nothing listens at a ``HOST:PORT`` address (not auto).

    ``ray.init`` would retry for minutes (then abort the process) when the head is gone.
    """
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or address == "auto":
        return
    try:
        with socket.create_connection((host, int(port)), timeout=HEAD_CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        raise SearchError(
            f"--address {address}: cannot start/join Ray (no Ray head answers there: "
            f"{exc.strerror or exc}); start the cluster (`ray start --head --port={port}`) "
            "and run the same command again: the study is unchanged"
        ) from None


@contextlib.contextmanager
def pending_trials(slots: int) -> Iterator[None]:
    """Let Tune keep ``slots`` trials pending (it keeps 1 with a searcher by default).

    With one pending trial Tune starts at most one trial per control-loop step, so trials
    shorter than a step never run side by side and free slots stay idle. A value the user
    set in ``TUNE_MAX_PENDING_TRIALS_PG`` wins.
    """
    if PENDING_TRIALS_ENV in os.environ:
        yield
        return
    os.environ[PENDING_TRIALS_ENV] = str(slots)
    try:
        yield
    finally:
        os.environ.pop(PENDING_TRIALS_ENV, None)
