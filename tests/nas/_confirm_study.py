"""A tiny stored study made without Ray: three sampled designs trained in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.config import from_dict
from nas.search import build_space, load_study_features, trial_train_config
from nas.study import open_study, tell_record
from nas.study_storage import open_storage
from nas.trial import TrialSettings, record_from_result, run_trial
from tests.nas._study import tiny_config


def make_study(tmp_path: Path, trials: int = 3, **sections: Any) -> dict[str, Any]:
    """Train ``trials`` sampled designs (1 epoch unless ``train`` says) and store them as
    study ``tiny``; return the config dict (its ``storage`` is the study's)."""
    sections["train"] = {"epochs": 1, "batch_size": 16, **sections.get("train", {})}
    raw = tiny_config(tmp_path, **sections)
    config = from_dict(raw)
    data = load_study_features(config)
    space = build_space(config, data)
    objectives = config.objectives(data.task)
    study = open_study(config, open_storage(config.storage), objectives)
    settings = TrialSettings(train_config=trial_train_config(config), objectives=tuple(objectives))
    for _ in range(trials):
        trial = study.ask()
        spec = space.sample(trial)
        result = run_trial({"spec": spec.to_dict()}, data, settings)
        record = record_from_result(result, trial.number)
        assert record is not None
        tell_record(study, trial, record, [o.name for o in objectives])
    return raw
