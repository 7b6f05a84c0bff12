"""Study config: strict YAML loading, errors naming key and value, flag overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.config import ConfigError, load_config, parse_gpus_per_trial

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_configs_load() -> None:
    for name in ("demo.yaml", "fsdd.yaml", "cluster.yaml"):
        config = load_config(REPO / "configs" / name)
        assert config.search.trials >= 1
        assert config.search.objectives[0] == "val_metric"


def test_defaults_and_objectives() -> None:
    config = load_config(None)
    assert config.search.sampler == "nsga2"
    names = [(o.name, o.direction) for o in config.objectives("single_label")]
    assert names == [("val_accuracy", "maximize"), ("train_vram_mb", "minimize")]
    assert config.objectives("multi_label")[0].name == "val_roc_auc"


def test_yaml_values_and_flag_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "study: s1\ntrain: {epochs: 7, lr: 0.01}\nsearch: {trials: 12, sampler: tpe}\n"
        "resources: {gpus_per_trial: 0.25}\nspace: {max_depth: 2}\n",
    )
    config = load_config(path, {"search.trials": 3, "train.epochs": None, "study": "s2"})
    assert config.study == "s2"
    assert config.search.trials == 3  # the flag wins
    assert config.train.epochs == 7  # an unset flag (None) leaves the key
    assert config.train.lr == 0.01
    assert config.search.sampler == "tpe"
    assert config.resources.gpus_per_trial == "0.25"
    assert config.space == {"max_depth": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trials: 3\n", r"unknown key\(s\) trials"),
        ("search: {trails: 3}\n", r"unknown key\(s\) search\.trails"),
        ("train: {epochs: -1}\n", r"train\.epochs: must be >= 1, got -1"),
        ("train: {epochs: two}\n", r"train\.epochs: expected an integer, got 'two'"),
        ("train: {epochs: true}\n", r"train\.epochs: expected an integer, got True"),
        ("search: {sampler: cmaes}\n", r"search\.sampler: expected one of .*'cmaes'"),
        ("search: {objectives: [val_metric, watts]}\n", r"unknown objective.*'watts'"),
        ("search: {objectives: [train_vram_mb]}\n", r"must start with val_metric"),
        ("train: {lr: 0}\n", r"train\.lr: must be a positive number, got 0"),
        ("resources: {gpus_per_trial: lots}\n", r"gpus_per_trial: expected 'auto' or a number"),
        ("resources: {gpus_per_trial: 1.5}\n", r"gpus_per_trial: expected 0, a fraction"),
        ("space: {max_depth: -2}\n", r"space: .*max_depth"),
        ("storage: studies.db\n", r"storage: must be a SQLAlchemy URL"),
        ("data: [synthetic]\n", r"data: expected a mapping"),
        ("- 1\n- 2\n", r"expected a mapping of keys, got list"),
        ("train: {epochs: [1\n", r"invalid YAML"),
        ("search: {initial_specs: ['']}\n", r"initial_specs\[0\]: expected a preset name or"),
        (
            "search: {trials: 1, initial_specs: [a.json, b.json]}\n",
            r"search\.initial_specs: more designs than search\.trials \(1\)",
        ),
    ],
)
def test_errors_name_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_config_files_cannot_run_code(tmp_path: Path) -> None:
    path = _write(tmp_path, "study: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_flag_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"with command-line flags\): train\.epochs: must be"):
        load_config(None, {"train.epochs": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, {"search.nonsense": 1})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config("/nonexistent/study.yaml")


def test_parse_gpus_per_trial() -> None:
    assert parse_gpus_per_trial("auto") is None
    assert parse_gpus_per_trial("0.5") == 0.5
    assert parse_gpus_per_trial("2") == 2.0
    with pytest.raises(ConfigError):
        parse_gpus_per_trial("-1")


def test_round_trip() -> None:
    config = load_config(REPO / "configs" / "fsdd.yaml")
    from nas.config import from_dict

    assert from_dict(config.to_dict()) == config
