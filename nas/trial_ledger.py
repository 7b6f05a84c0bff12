"""The driver's record of live Tune trials and their weights; imports no Ray.

``nas.ray_backend`` builds on these plain classes and functions (tests use them without a Ray
run):

* ``WeightStore``: what the weight store actor runs (``ray_backend.start_weight_store`` makes
  it an actor on the driver's node): it receives each complete trial's best-epoch weights as
  bytes (no shared filesystem needed) for ``fsnas export``.
* ``TrialLedger``: the driver-side table of live Tune trials (configs, scheduler stops, Tune
  Trial objects, running ids) and the lock held while a finished trial is told to Optuna.
* ``build_record``: a finished Tune trial (final report, early stop or crash) as its
  ``TrialRecord``, its kept weights renamed to the Optuna trial number.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dashboards.records import CHECKPOINT_KEY, TrialRecord
from nas.study import WEIGHTS_SUFFIX, weights_filename
from nas.trial import record_from_result, spec_record


# -- trained weights: from any worker to the driver's node ------------------------------------
class WeightStore:
    """An actor on the driver's node that writes the weights workers send it into one folder.

    Workers on other nodes share no filesystem with the driver, so a trial's best-epoch
    safetensors file travels as bytes through Ray's object store (no shared storage needed).
    The file is named after the Tune trial id; the driver renames it to the Optuna trial
    number when it records the trial (``build_record``).
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, blob: bytes) -> str:
        """Write ``blob`` atomically as ``<folder>/<key>.safetensors``; return the path.

        Raises:
            OSError: the folder cannot take the file (full, read-only); no partial is left.
        """
        path = self.folder / f"{key}{WEIGHTS_SUFFIX}"
        partial = path.with_name(path.name + ".part")
        try:
            partial.write_bytes(blob)
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)
            raise
        return str(path)

    def try_put(self, key: str, blob: bytes) -> dict[str, str]:
        """Return ``{"path": ...}`` after ``put``, or ``{"error": "<path>: <reason>"}``.

        A full or read-only weights disk must not cost the trial its result: the worker
        reports the trial complete with the error (``nas.trial.note_weights_not_kept``).
        """
        try:
            return {"path": self.put(key, blob)}
        except OSError as exc:
            where = self.folder / f"{key}{WEIGHTS_SUFFIX}"
            return {"error": f"cannot write {where} ({exc.strerror or exc})"}


# -- driver-side bookkeeping ---------------------------------------------------------------
class TrialLedger:
    """Driver-side table of live Tune trials: configs, scheduler stops, Tune Trial objects."""

    def __init__(
        self, on_record: Callable[[TrialRecord], None], weights_dir: Path | None = None
    ) -> None:
        self.on_record = on_record
        self.weights_dir = weights_dir  # where the WeightStore writes (None: weights not kept)
        self.configs: dict[str, dict[str, Any]] = {}
        self.pruned: dict[str, str] = {}  # Tune trial id -> why the scheduler stopped it
        self.trials: dict[str, Any] = {}  # Tune trial id -> ray.tune Trial (for error text)
        self.running: set[str] = set()  # Tune trial ids started and not yet ended
        # held while a finished trial is told to Optuna (the head watchdog waits for it)
        self.tell_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its config (search algorithm, callbacks) for Tuner.restore, which fsnas
        # never uses; the driver's callbacks and output streams cannot be pickled.
        return {
            "on_record": None,
            "weights_dir": self.weights_dir,
            "configs": {},
            "pruned": {},
            "trials": {},
            "running": set(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tell_lock = threading.Lock()  # a lock cannot be pickled; a copy gets its own

    def claim_weights(self, trial_id: str, number: int) -> str | None:
        """Return the path of the trial's weights, renamed to its Optuna number; None if none."""
        if self.weights_dir is None:
            return None
        sent = self.weights_dir / f"{trial_id}{WEIGHTS_SUFFIX}"
        if not sent.is_file():
            return None
        kept = self.weights_dir / weights_filename(number)
        os.replace(sent, kept)
        return str(kept)

    def error_text(self, trial_id: str) -> str:
        """Return the last line of a crashed trial's error, or a generic reason."""
        trial = self.trials.get(trial_id)
        text = None
        if trial is not None:
            try:
                text = trial.get_error()
            except Exception:  # the error file may be gone; the status is what matters
                text = None
            local = getattr(trial, "error_file", None)
            if not text and local and os.path.isfile(local):
                # Tune writes the error beside the driver first and copies it to the
                # experiment storage later: right after a crash only the local copy exists
                text = Path(local).read_text(encoding="utf-8", errors="replace")
        if text:
            lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
            if lines:
                return f"crashed worker: {lines[-1].strip()}"[:500]
        return "crashed worker (no error text)"


def build_record(
    ledger: TrialLedger,
    trial_id: str,
    number: int,
    result: dict[str, Any] | None,
    error: bool,
    metric: str,
) -> TrialRecord | None:
    """Return the TrialRecord for a finished Tune trial (final report, early stop or crash).

    None for a trial interrupted before its final report without an error (Ctrl-C, the
    search's time budget): it is no outcome, so it does not count and a resume asks again.
    """
    record = None if trial_id in ledger.pruned else record_from_result(result, number)
    if record is not None:
        if result is not None:
            record.ray_trial_id = trial_id
        if record.status == "complete":
            kept = ledger.claim_weights(trial_id, number)
            if kept is not None:
                record.costs[CHECKPOINT_KEY] = kept
        return record
    record = spec_record(number, ledger.configs.get(trial_id, {}).get("spec", {}))
    record.ray_trial_id = trial_id
    if result:
        if metric in result:
            record.metrics[f"{metric}_at_stop"] = float(result[metric])
        if "train_vram_mb" in result:
            record.costs["train_vram_estimate_mb"] = float(result["train_vram_mb"])
        if "epoch" in result:
            record.costs["epochs_run"] = int(result["epoch"])
    if trial_id in ledger.pruned:
        record.status = "pruned"
        record.reason = ledger.pruned[trial_id]
    elif error:
        record.reason = ledger.error_text(trial_id)
    else:
        return None
    return record
