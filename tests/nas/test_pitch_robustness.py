"""``val_pitch_robustness``: the study metric under pitch shift (data.pitch_shifts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dashboards.records import TrialRecord
from nas.config import ConfigError, from_dict
from nas.search import load_study_features
from nas.trial import RECORD_JSON_KEY, TrialSettings, run_trial
from search_spaces.anchors import vertical_spec
from tests.nas._study import tiny_config
from trainers.result import TrainConfig


def test_the_objective_needs_pitch_shifts_and_shifts_are_checked(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, search={"objectives": ["val_metric", "val_pitch_robustness"]})
    with pytest.raises(ConfigError, match=r"data\.pitch_shifts"):
        from_dict(config)
    config["data"]["pitch_shifts"] = [2, 2]
    with pytest.raises(ConfigError, match="twice"):
        from_dict(config)
    config["data"]["pitch_shifts"] = [-30]
    with pytest.raises(ConfigError, match="±24"):
        from_dict(config)


def test_a_trial_reports_the_metric_at_each_shift_and_their_mean(tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path,
        data={"pitch_shifts": [-3, 3]},
        search={"objectives": ["val_metric", "train_vram_mb", "val_pitch_robustness"]},
    )
    study = from_dict(config)
    data = load_study_features(study)
    assert sorted(data.valid_shifted) == [-3.0, 3.0]
    for split in data.valid_shifted.values():
        np.testing.assert_array_equal(split.y, data.valid.y)
        assert not np.allclose(split.x, data.valid.x)  # really shifted
    # each shift is its own cache entry (plus the unshifted one)
    assert len([p for p in Path(study.data.cache_dir).iterdir() if not p.name.startswith(".")]) == 3

    spec = vertical_spec([("0.9M", 3)], 4, name="v")
    objectives = tuple(study.objectives(data.task))
    settings = TrialSettings(TrainConfig(epochs=1, batch_size=16, num_threads=1), objectives)
    out = run_trial({"spec": spec.to_dict()}, data, settings, device="cpu")
    record = TrialRecord.from_dict(json.loads(out[RECORD_JSON_KEY]))
    assert record.status == "complete", record.reason
    m2, p3 = record.metrics["val_pitch_m3_accuracy"], record.metrics["val_pitch_p3_accuracy"]
    assert record.metrics["val_pitch_robustness"] == pytest.approx((m2 + p3) / 2)
    assert record.objectives["val_pitch_robustness"] == record.metrics["val_pitch_robustness"]
    assert record.costs["receptive_whole_freq_depth"] == 1
    assert out["val_pitch_robustness"] == record.metrics["val_pitch_robustness"]  # told Optuna


def test_ablation_tables_show_pitch_robustness_and_receptive_field_when_present(
    tmp_path: Path,
) -> None:
    from nas import ablation_report
    from tests.nas.test_ablation import _record, _two_variant_plan

    plan = _two_variant_plan()
    records = [_record(i, a, 100) for i, a in enumerate([0.80, 0.83, 0.83])]
    records += [_record(3 + i, a, 200) for i, a in enumerate([0.90, 0.92, 0.94])]
    plain = ablation_report.ablation_table(
        ablation_report.aggregate(plan, records, "test_accuracy"), "test_accuracy"
    )
    assert "pitch-robust" not in plain and "RF bins" not in plain
    for i, r in enumerate(records):
        r.metrics["val_pitch_robustness"] = 0.5 + 0.1 * (i // 3)
        r.costs["receptive_freq_bins"] = 22 if i < 3 else 64
    stats = ablation_report.aggregate(plan, records, "test_accuracy")
    table = ablation_report.ablation_table(stats, "test_accuracy")
    assert "pitch-robust" in table.splitlines()[0] and "RF bins" in table.splitlines()[0]
    wide = next(line for line in table.splitlines() if line.startswith("wide"))
    assert wide.split()[-6:] == ["0.6000", "±", "0.0000", "64", "±", "0"]
    assert stats[1].versus_base["val_pitch_robustness"].mean_diff == pytest.approx(0.1)
    path = ablation_report.write_ablation_csv(tmp_path / "a.csv", plan, stats, "test_accuracy")
    header = path.read_text().splitlines()[0]
    assert "val_pitch_robustness_mean" in header and "receptive_freq_bins_mean" in header


def test_the_child_run_gets_the_robustness_metric_and_the_receptive_params() -> None:
    from dashboards.run_contents import trial_metrics, trial_params

    record = TrialRecord(number=3, status="complete", metrics={"val_pitch_robustness": 0.75})
    record.metrics["val_pitch_m2_accuracy"] = 0.7
    record.costs.update({"receptive_freq_bins": 64, "receptive_whole_freq_depth": 1})
    logged = {m.key: m.value for m in trial_metrics(record, 0)}
    assert logged["val_pitch_robustness"] == 0.75 and logged["val_pitch_m2_accuracy"] == 0.7
    assert trial_params(record)["receptive_whole_freq_depth"] == "1"
