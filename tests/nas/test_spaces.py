"""A study's space: named spaces and files (--space), the space around a design (--space-around).

Every preset is a warm start of the literature space at its reference input; the small ones
start a real search; a search around ``pons_timbre`` runs the preset first and then designs a
few settings away from it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from pathlib import Path

import optuna
import pytest

from nas.cli import main
from nas.config import ConfigError, apply_overrides, from_dict, load_config
from nas.search import build_space, initial_params, load_study
from nas.spaces import SPACES_DIR, named_spaces, read_space_file, study_space
from nas.study import make_sampler
from search_spaces import PRESETS, ArchSpec, SearchSpace, SpaceAround
from search_spaces.around import changed_settings
from tests.nas._study import tiny_config, write_config

REPO = Path(__file__).resolve().parents[2]
SMALL_PRESETS = {
    # one search per reference input: (n_mels, clip seconds giving the preset's frames)
    (40, 0.79): ("pons_cbmi_time", "pons_cbmi_frequency", "pons_cbmi_black_box"),
    (96, 1.86): ("pons_timbre", "dieleman"),
}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fsnas search: error: ") and "Traceback" not in captured.err
    return lines[0]


def test_the_literature_space_is_shipped_and_named() -> None:
    assert "literature" in named_spaces()
    # configs/spaces is the package's folder, so an installed fsnas finds the same files
    assert (REPO / "configs" / "spaces").resolve() == SPACES_DIR
    keys = read_space_file("literature")
    assert keys["max_depth"] == 7 and "conv_relu_bn" in keys["activation_order"]
    literature = SearchSpace.from_dict(keys)
    # `space: NAME`, `space: {base: NAME}` and `--space NAME` are one space
    assert study_space(from_dict({"space": "literature"})) == literature
    assert study_space(from_dict({"space": {"base": "literature"}})) == literature
    flagged = apply_overrides(load_config(None), {"space.base": "literature"})
    assert study_space(flagged) == literature
    # the other keys change the named space, and the input binds it
    changed = study_space(from_dict({"space": {"base": "literature", "max_depth": 3}}), 96, 187)
    assert changed == dataclasses.replace(literature, max_depth=3, n_mels=96, n_frames=187)
    # the default space stays the default (make demo keeps its time)
    assert study_space(load_config(None)) == SearchSpace()


def test_a_space_file_and_round_trip_of_the_config(tmp_path: Path) -> None:
    path = tmp_path / "narrow.yaml"
    path.write_text("max_branches: 0\nmax_depth: 2\nblock_channels: [8]\n", encoding="utf-8")
    config = from_dict({"space": str(path)})
    assert study_space(config) == SearchSpace(max_branches=0, max_depth=2, block_channels=(8,))
    assert from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--space", "nope"], r"space\.base: 'nope' is neither a named space \(literature\)"),
        (
            ["--space", "literature", "--space-around", "pons_timbre"],
            r"--space literature and --space-around pons_timbre: give one of them",
        ),
        (["--space-around", "nope"], r"space_around: 'nope' is neither a preset \(pons_vgg, "),
        (
            ["--space-around", "pons_timbre", "--space-around-moves", "0"],
            r"space_around_moves: must be 1 to 6, got 0",
        ),
        (
            ["--space-around", "won_fcn"],
            r"space_around = 'won_fcn': space around 'won_fcn': the design does not fit the "
            r"input 64 x 101 \(mel x frames\): body\[3\] pool size 5 over time",
        ),
        (
            ["--space", "literature", "--initial-spec", "won_fcn"],
            r"initial_specs\[0\] = 'won_fcn': spec 'won_fcn': body\[3\] pools max \(3, 5\)",
        ),
    ],
)
def test_bad_spaces_are_one_line_errors(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a design checked against the data's shape computes features
    storage = f"sqlite:///{tmp_path / 's.db'}"
    small = ["--data", "synthetic:clips_per_class=4,seed=0"]
    assert main(["search", *argv, *small, "--tracking-uri", "none", "--storage", storage]) == 2
    assert re.search(message, _one_line_error(capsys))
    assert not (tmp_path / "s.db").exists()  # refused before any work


def test_bad_space_keys_in_a_file_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_dept: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"space \(base '.*bad\.yaml'\): search space: unknown"):
        study_space(from_dict({"space": str(bad)}))
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must be a mapping of search space keys, got list"):
        study_space(from_dict({"space": str(listed)}))
    # the names of the keys beside a base are checked with the config itself
    with pytest.raises(ConfigError, match=r"space: unknown key\(s\) \['max_dept'\]"):
        from_dict({"space": {"base": "literature", "max_dept": 3}})
    with pytest.raises(ConfigError, match=r"space\.base: expected a named space or a YAML file"):
        from_dict({"space": {"base": 3}})
    with pytest.raises(ConfigError, match=r"space_around: searches its own space; remove"):
        from_dict({"space_around": "pons_timbre", "space": {"max_depth": 2}})


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_warm_start_of_the_literature_space(name: str) -> None:
    preset = PRESETS[name]
    config = from_dict({"space": "literature", "search": {"initial_specs": [name]}})
    data = types.SimpleNamespace(n_mels=preset.n_mels, n_frames=preset.n_frames)
    space = build_space(config, data)  # type: ignore[arg-type]
    [(label, params)] = initial_params(config, space)
    assert label == f"preset {name}"
    assert space.sample(optuna.trial.FixedTrial(params)) == preset.spec.replace(name="")


def test_space_around_warm_starts_with_its_design_and_grids(tmp_path: Path) -> None:
    config = from_dict(
        {"space_around": "pons_timbre", "search": {"initial_specs": ["pons_timbre"]}}
    )
    space = build_space(config, types.SimpleNamespace(n_mels=96, n_frames=187))  # type: ignore[arg-type]
    assert isinstance(space, SpaceAround) and space.max_moves == 3
    # the design first; the same design again as an --initial-spec is queued once (equal params)
    assert initial_params(config, space) == [
        ("preset pons_timbre", {"n_moves": 0}),
        ("preset pons_timbre", {"n_moves": 0}),
    ]
    one_step = from_dict(
        {"space_around": "pons_cbmi_time", "space_around_moves": 1, "search": {"sampler": "grid"}}
    )
    sampler = make_sampler(one_step)
    assert isinstance(sampler, optuna.samplers.GridSampler)
    # a spec file works as the design too
    spec_file = tmp_path / "timbre.json"
    spec_file.write_text(PRESETS["pons_timbre"].spec.to_json(), encoding="utf-8")
    from_file = study_space(from_dict({"space_around": str(spec_file)}))
    assert isinstance(from_file, SpaceAround) and from_file.design == PRESETS["pons_timbre"].spec


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "names"), list(SMALL_PRESETS.items()))
def test_small_presets_start_a_real_search_in_the_literature_space(
    shape: tuple[int, float],
    names: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    n_mels, clip_seconds = shape
    config = tiny_config(tmp_path, study="lit", train={"epochs": 1, "batch_size": 16})
    config["data"]["features"] = {"n_mels": n_mels, "clip_seconds": clip_seconds}
    del config["space"]
    path = write_config(tmp_path / "lit.yaml", config)
    argv = ["search", "--config", str(path), "--space", "literature", "--trials", str(len(names))]
    for name in names:
        argv += ["--initial-spec", name]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"[lit] warm start: {len(names)} design(s) run first" in out
    records = sorted(load_study("lit", config["storage"]).records, key=lambda r: r.number)
    assert [r.initial_spec for r in records] == [f"preset {name}" for name in names]
    n_frames = load_config(path).data.features.n_frames
    for record, name in zip(records, names, strict=True):
        preset = PRESETS[name]
        assert (preset.n_mels, preset.n_frames) == (n_mels, n_frames)  # the reference input
        assert ArchSpec.from_dict(record.spec) == preset.spec.replace(name="")
        assert record.status == "complete", (name, record.reason)


@pytest.mark.slow
def test_search_around_pons_timbre_starts_from_it_and_stays_near(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tiny_config(tmp_path, study="near", train={"epochs": 1, "batch_size": 16})
    path = write_config(tmp_path / "near.yaml", config)  # its space keys are replaced
    argv = ["search", "--config", str(path), "--space-around", "pons_timbre", "--trials", "5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[near] warm start: 1 design(s) run first (preset pons_timbre)" in out
    stored = load_study("near", config["storage"])
    assert stored.summary.config["space_around"] == "pons_timbre"
    records = sorted(stored.records, key=lambda r: r.number)
    assert len(records) == 5
    design = PRESETS["pons_timbre"].spec
    first, others = records[0], records[1:]
    assert first.number == 0 and first.initial_spec == "preset pons_timbre"
    assert ArchSpec.from_dict(first.spec) == design.replace(name="")
    for record in others:
        changed = changed_settings(design, ArchSpec.from_dict(record.spec))
        assert 1 <= len(changed) <= 3, (record.number, changed)
        assert record.initial_spec == ""
