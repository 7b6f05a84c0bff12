"""Trained weights kept by the search: the worker-to-driver store, naming and tidying."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.records import CHECKPOINT_KEY, TrialRecord
from nas.config import ConfigError, StudyConfig, from_dict
from nas.study import (
    STATUS_ATTR,
    storage_key,
    tidy_weights,
    weights_filename,
    weights_folder,
)
from nas.trial import FINAL_KEY, RECORD_JSON_KEY
from nas.trial_ledger import TrialLedger, WeightStore, build_record


def _final(status: str) -> dict[str, object]:
    import json

    record = TrialRecord(number=-1, status=status, objectives={"val_accuracy": 0.5})
    return {FINAL_KEY: True, STATUS_ATTR: status, RECORD_JSON_KEY: json.dumps(record.to_dict())}


def test_store_writes_atomically_and_the_ledger_renames_to_the_trial_number(
    tmp_path: Path,
) -> None:
    store = WeightStore(str(tmp_path / "w"))
    path = Path(store.put("abc_00001", b"weights"))
    assert path == tmp_path / "w" / "abc_00001.safetensors"
    assert path.read_bytes() == b"weights"
    assert not list((tmp_path / "w").glob("*.part"))

    ledger = TrialLedger(lambda r: None, tmp_path / "w")
    record = build_record(ledger, "abc_00001", 7, _final("complete"), False, "val_accuracy")
    assert record is not None
    kept = tmp_path / "w" / "trial-00007.safetensors"
    assert record.costs[CHECKPOINT_KEY] == str(kept)
    assert kept.read_bytes() == b"weights" and not path.exists()
    # a trial that sent nothing (failed, pruned, or weights not kept) names no file
    other = build_record(ledger, "abc_00002", 8, _final("complete"), False, "val_accuracy")
    assert other is not None and CHECKPOINT_KEY not in other.costs
    off = TrialLedger(lambda r: None)
    assert off.claim_weights("abc_00001", 7) is None


def test_tidy_keeps_the_front_or_every_recorded_trial(tmp_path: Path) -> None:
    def record(number: int) -> TrialRecord:
        path = tmp_path / weights_filename(number)
        path.write_bytes(b"w")
        return TrialRecord(number=number, status="complete", costs={CHECKPOINT_KEY: str(path)})

    records = [record(n) for n in range(4)]
    stray = tmp_path / "abc_00009.safetensors"  # sent by a trial the driver never recorded
    stray.write_bytes(b"w")
    (tmp_path / "abc_00010.safetensors.part").write_bytes(b"w")

    kept = tidy_weights(tmp_path, records, records[1:3], "all")
    assert kept == [tmp_path / weights_filename(n) for n in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [weights_filename(n) for n in range(4)]

    kept = tidy_weights(tmp_path, records, records[1:3], "front")
    assert sorted(p.name for p in tmp_path.iterdir()) == [weights_filename(n) for n in (1, 2)]
    assert tidy_weights(tmp_path / "missing", records, records, "front") == []


def test_keep_weights_config(tmp_path: Path) -> None:
    config = from_dict({"study": "s", "weights_dir": str(tmp_path)})
    assert config.search.keep_weights == "front"
    assert weights_folder(config) == tmp_path.resolve() / "s" / storage_key(config.storage)
    assert weights_folder(from_dict({"search": {"keep_weights": "none"}})) is None
    assert StudyConfig().weights_dir == ".fsnas/weights"
    with pytest.raises(ConfigError, match=r"search\.keep_weights"):
        from_dict({"search": {"keep_weights": "best"}})
