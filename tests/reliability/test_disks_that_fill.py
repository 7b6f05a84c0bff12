"""Disks that fill: the weights folder, a study database and ``fsnas pareto --out`` on a full or
read-only disk.

A weights disk that cannot be written fails the search before any training; one that fills
mid-search costs a trial its weights file, never its result (the record is complete and names
the path; a re-run counts it truthfully and ``fsnas export`` retrains it). A study database or
an output folder that cannot be written is one line naming the URL or folder, and the study
is unchanged. The full-disk cases are simulated by making the write fail (``ENOSPC``), and also
run on a real tiny tmpfs where this process may mount one (root; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboards.records import CHECKPOINT_KEY, WEIGHTS_NOT_KEPT_KEY, TrialRecord
from nas import study as study_module
from nas.cli import main
from nas.config import from_dict
from nas.export import checkpoint_or_reason
from nas.search import load_study, outcome_text, run_search
from nas.study import SearchError, check_weights_folder, open_study, weights_folder
from nas.study_storage import open_storage, storage_error
from nas.trial import FINAL_KEY, RECORD_JSON_KEY, STATUS_KEY, note_weights_not_kept, record_from_fit
from nas.trial_ledger import TrialLedger, WeightStore, build_record
from tests.nas._study import tiny_config, write_config
from tests.nas.test_export import TONE_SPEC, tone_feature_set
from tests.reliability.test_bad_input import _one_line_error
from trainers import train as train_module
from trainers.result import TrainConfig
from trainers.train import fit

FSNAS = [sys.executable, "-m", "nas.cli"]
NO_SPACE = os.strerror(errno.ENOSPC)


def _no_space(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, NO_SPACE)


def _final(status: str = "complete") -> dict[str, Any]:
    record = TrialRecord(
        number=-1, status=status, objectives={"val_accuracy": 0.75, "train_vram_mb": 12.0}
    )
    return {FINAL_KEY: True, STATUS_KEY: status, RECORD_JSON_KEY: json.dumps(record.to_dict())}


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``folder`` (root only); skip where mounting is not allowed."""
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); simulated above")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _fill(folder: Path) -> None:
    """Write zeros into ``folder`` until its filesystem is full."""
    with (folder / "filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mount needs root"
)


# -- Bad 4: a full weights disk -------------------------------------------------------------------
def test_a_full_weights_disk_keeps_the_trials_result_and_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # both trials used to be recorded failed ("crashed worker: OSError: [Errno 28] No space
    # left on device", no path), with an empty front, and a re-run said they were finished
    folder = tmp_path / "weights"
    store = WeightStore(str(folder))
    monkeypatch.setattr(Path, "write_bytes", _no_space)
    sent = store.try_put("abc_00001", b"weights")
    assert sent == {
        "error": f"cannot write {folder / 'abc_00001.safetensors'} ({NO_SPACE})",
    }
    assert list(folder.iterdir()) == []  # no partial file left
    monkeypatch.undo()

    final = note_weights_not_kept(_final(), sent["error"])
    ledger = TrialLedger(lambda record: None, folder)
    record = build_record(ledger, "abc_00001", 1, final, False, "val_accuracy")
    assert record is not None and record.status == "complete"
    assert record.objectives == {"val_accuracy": 0.75, "train_vram_mb": 12.0}
    assert CHECKPOINT_KEY not in record.costs
    assert str(folder / "abc_00001.safetensors") in record.costs[WEIGHTS_NOT_KEPT_KEY]
    # fsnas export retrains it and says why
    record.spec = TONE_SPEC.to_dict()
    found, why = checkpoint_or_reason(record)
    assert found is None and why.startswith("the search could not keep its weights (cannot")


def test_fit_keeps_its_result_when_the_checkpoint_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(train_module, "save_checkpoint", _no_space)
    config = TrainConfig(epochs=1, batch_size=16, checkpoint_dir=str(tmp_path / "ckpt"))
    result = fit(TONE_SPEC, tone_feature_set(), config, "cpu")
    assert result.status == "complete" and "test_accuracy" in result.metrics
    assert result.checkpoint is None
    expected = f"cannot write {tmp_path / 'ckpt' / 'best.safetensors'} ({NO_SPACE})"
    assert result.extra["checkpoint_error"] == expected
    record = record_from_fit(TONE_SPEC, result, config)
    assert record.costs[WEIGHTS_NOT_KEPT_KEY] == expected


def test_a_weights_folder_that_cannot_be_written_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "weights" / "s" / "x"
    check_weights_folder(folder)
    assert list(folder.iterdir()) == []  # the probe is removed
    monkeypatch.setattr(study_module.os, "fsync", _no_space)
    with pytest.raises(SearchError) as info:
        check_weights_folder(folder)
    assert str(info.value) == (
        f"weights folder {folder}: cannot write there ({NO_SPACE}); free space, set weights_dir "
        "to a writable disk, or pass --keep-weights none (fsnas export then retrains the chosen "
        "trial)"
    )
    assert list(folder.iterdir()) == []


def test_the_search_report_says_which_trials_kept_no_weights(tmp_path: Path) -> None:
    from nas.search import SearchOutcome, summarise
    from nas.study import StoredStudy  # noqa: F401  (the outcome's source)

    config = from_dict(tiny_config(tmp_path))
    objectives = config.objectives("single_label")
    record = TrialRecord(
        number=0,
        status="complete",
        objectives={"val_accuracy": 0.5, "train_vram_mb": 3.0},
        costs={"train_vram_mb": 3.0, WEIGHTS_NOT_KEPT_KEY: "cannot write /w/t.safetensors (full)"},
    )
    summary, front, hv, knee = summarise("tiny", [record], objectives, {}, None)
    text = outcome_text(SearchOutcome([record], summary, front, hv, knee))
    assert (
        "1 complete trial(s) kept their results but not their weights (cannot write "
        "/w/t.safetensors (full)); `fsnas export` retrains them" in text
    )


@needs_root
def test_a_full_weights_disk_through_the_cli_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _tmpfs(tmp_path / "disk", "48k") as disk:
        _fill(disk)
        config = tiny_config(tmp_path, study="full", weights_dir=str(disk / "weights"))
        path = write_config(tmp_path / "full.yaml", config)
        assert main(["search", "--config", str(path)]) == 2
        line = _one_line_error(capsys, "search")
        assert f"weights folder {disk / 'weights' / 'full'}/studies-" in line
        assert "No space left on device" in line
        assert load_study("full", config["storage"]).records == []  # nothing trained


@pytest.mark.slow
@needs_root
def test_a_weights_disk_that_fills_mid_search_loses_no_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a disk with room for the pre-flight probe (64 KiB) but not for a 64-channel model's
    # weights (150-400 KB): every trial trains, none can keep its file
    monkeypatch.chdir(tmp_path)
    space = {
        "max_branches": 0,
        "min_depth": 2,
        "max_depth": 2,
        "block_channels": [64],
        "block_heights": [3],
        "block_widths": [3, 5],
        "pool_axes": ["none"],
    }
    with _tmpfs(tmp_path / "disk", "96k") as disk:
        raw = tiny_config(
            tmp_path,
            study="fills",
            weights_dir=str(disk / "weights"),
            space=space,
            train={"epochs": 1, "batch_size": 16},
            search={"trials": 2, "early_stopping": {"enabled": False}, "keep_weights": "all"},
            resources={"max_concurrent": 1, "num_cpus": 1},
        )
        config = from_dict(raw)
        with open(os.devnull, "w") as quiet:
            outcome = run_search(config, stream=quiet)
        assert [r.status for r in outcome.records] == ["complete", "complete"]
        assert len(outcome.front) >= 1
        folder = weights_folder(config)
        for record in outcome.records:
            assert CHECKPOINT_KEY not in record.costs
            note = record.costs[WEIGHTS_NOT_KEPT_KEY]
            assert note.startswith(f"cannot write {folder}/") and NO_SPACE in note
        assert "kept their results but not their weights" in outcome_text(outcome)
        assert not [p for p in folder.iterdir() if not p.name.startswith(".")]
        # a re-run keeps the two finished trials, and they really are finished
        out = io.StringIO()
        again = run_search(config, stream=out)
        assert "2 finished trial(s) kept; 0 to run" in out.getvalue()
        assert [r.objectives for r in again.records] == [r.objectives for r in outcome.records]


# -- weak: a study database on a read-only or full disk -----------------------------------------
def test_a_storage_error_is_one_line_with_the_database_message() -> None:
    import sqlalchemy.exc

    original = Exception("attempt to write a readonly database")
    wrapped = sqlalchemy.exc.OperationalError("INSERT INTO studies ...\n(multi-line)", {}, original)
    message = str(storage_error("sqlite:////nowhere/s.db", "cannot write", wrapped))
    assert message == (
        "storage 'sqlite:////nowhere/s.db': cannot write (Exception: attempt to write a "
        "readonly database)"
    )
    assert "\n" not in message


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_root
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_study_database_on_a_read_only_or_full_disk_is_one_line(
    tmp_path: Path, fault: str
) -> None:
    # three chained sqlite tracebacks used to be printed
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        config = from_dict({"study": "s", "storage": f"sqlite:///{disk}/s.db"})
        storage = open_storage(config.storage)
        open_study(config, storage, config.objectives("single_label"))
        storage.engine.dispose()  # type: ignore[attr-defined]
        del storage
        gc.collect()
        before = _sha(disk / "s.db")
        if fault == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            cause = f"{disk} is read-only (SQLite writes a journal beside the file)"
        else:
            _fill(disk)
            cause = f"the disk holding {disk} is full (0 KiB free)"
        for argv in (
            ["pareto", "--study", "s", "--out", str(tmp_path / "out")],
            ["search", "--study", "s", "--data", "synthetic:clips_per_class=3", "--trials", "1"],
        ):
            argv += ["--storage", config.storage]
            if argv[0] == "search":
                argv += ["--tracking-uri", "none", "--keep-weights", "none"]
            done = subprocess.run([*FSNAS, *argv], capture_output=True, text=True, cwd=tmp_path)
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
            assert lines[0].startswith(
                f"fsnas {argv[0]}: error: storage '{config.storage}': cannot open ("
            )
            assert cause in lines[0] and "the study is unchanged" in lines[0]
        assert _sha(disk / "s.db") == before


# -- weak: fsnas pareto --out on a read-only folder ---------------------------------------------
def test_pareto_out_on_a_read_only_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dashboards.artifacts

    config = from_dict({"study": "s", "storage": f"sqlite:///{tmp_path}/s.db"})
    storage = open_storage(config.storage)
    open_study(config, storage, config.objectives("single_label"))
    out = tmp_path / "out"

    def read_only(path: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(dashboards.artifacts, "write_pareto_json", read_only)
    argv = ["pareto", "--study", "s", "--storage", config.storage, "--out", str(out)]
    assert main(argv) == 2
    line = _one_line_error(capsys, "pareto")
    assert line == (
        f"fsnas pareto: error: --out {out}: cannot write {out / 'pareto.json'} (Read-only file "
        "system); pass --out with a writable folder (the study itself is unchanged)"
    )


@needs_root
def test_pareto_out_on_a_real_read_only_mount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = from_dict({"study": "s", "storage": f"sqlite:///{tmp_path}/s.db"})
    storage = open_storage(config.storage)
    open_study(config, storage, config.objectives("single_label"))
    with _tmpfs(tmp_path / "ro", "64k") as folder:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        argv = ["pareto", "--study", "s", "--storage", config.storage, "--out", str(folder)]
        assert main(argv) == 2
        line = _one_line_error(capsys, "pareto")
        assert f"--out {folder}: cannot write {folder / 'pareto.json'} (Read-only" in line
