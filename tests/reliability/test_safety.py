"""Safety: configs cannot import or run code, manifests cannot reach outside their data root.

Loading an exported bundle never executes code: tests/reliability/test_bundle_safety.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nas.cli import main
from nas.config import ConfigError, load_config
from tests.trainers.audio_fixtures import write_tone
from trainers.errors import DataError
from trainers.sources import open_source

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("search_spaces", "trainers", "nas", "dashboards")


# -- config files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system",
        "!!python/object/new:os.system",
        "!!python/object:pathlib.Path",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_yaml_python_tags_are_rejected_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tag: str
) -> None:
    sentinel = tmp_path / "pwned"
    path = tmp_path / "study.yaml"
    path.write_text(f"study: {tag} ['touch {sentinel}']\n", encoding="utf-8")
    assert main(["search", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(path) in err and "invalid YAML" in err and "python/" in err
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("train: {optimizer: torch.optim.SGD}\n", "train.optimizer"),
        ("search: {sampler: optuna.samplers.CmaEsSampler}\n", "search.sampler"),
        ("train: {schedule: 'torch.optim.lr_scheduler:OneCycleLR'}\n", "train.schedule"),
        ("search: {objectives: [val_metric, 'os:getpid']}\n", "search.objectives"),
        ("data: {on_bad_audio: builtins.print}\n", "data.on_bad_audio"),
        ("space: {factory: 'search_spaces.space:SearchSpace'}\n", "space"),
    ],
)
def test_dotted_import_paths_are_plain_invalid_values(
    tmp_path: Path, yaml_text: str, key: str
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)


def test_data_source_is_a_kind_not_an_importable_loader(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown kind 'trainers\.sources'"):
        open_source("trainers.sources:_load_folder")
    with pytest.raises(DataError, match="unknown kind 'os'"):
        open_source("os:system")


# Calls that would let data decide what code runs: nothing in the packages may make them.
_FORBIDDEN_CALLS = {
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("yaml", "load_all"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("torch", "load"),
    ("pydoc", "locate"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "__import__"),
}


def _call_name(call: ast.Call) -> tuple[str, str] | None:
    func = call.func
    if isinstance(func, ast.Name):
        return ("builtins", func.id)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return (func.value.id, func.attr)
    return None


def test_no_module_loads_code_named_by_data() -> None:
    offenders = []
    for package in PACKAGES:
        for file in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = _call_name(node)
                where = f"{file.relative_to(REPO)}:{node.lineno}"
                if name in _FORBIDDEN_CALLS:
                    offenders.append(f"{where} {name[0]}.{name[1]}")
                if name in (("importlib", "import_module"), ("builtins", "import_module")):
                    # the CLI's own command table is the one allowed dynamic import
                    arg = node.args[0] if node.args else None
                    fixed = (
                        isinstance(arg, ast.JoinedStr)
                        and isinstance(arg.values[0], ast.Constant)
                        and arg.values[0].value == "nas.commands."
                    )
                    if not fixed:
                        offenders.append(f"{where} import_module with a computed name")
    assert offenders == []


# -- manifests ----------------------------------------------------------------------------------
def _manifest(root: Path, rows: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.csv"
    path.write_text("\n".join(["path,label", *rows]) + "\n", encoding="utf-8")
    return path


def test_manifest_paths_cannot_escape_the_data_root(tmp_path: Path) -> None:
    outside = write_tone(tmp_path / "secret.wav")
    write_tone(tmp_path / "data" / "clips" / "ok.wav")
    path = _manifest(
        tmp_path / "data",
        ["clips/ok.wav,a", "../secret.wav,a", f"{outside},b", "clips/../../secret.wav,b"],
    )
    with pytest.raises(DataError) as info:
        open_source(f"csv:{path}")
    message = str(info.value)
    assert "3 path(s) outside the manifest's folder" in message
    assert "line 3: '../secret.wav'" in message
    assert f"line 4: '{outside}'" in message
    assert "line 5: 'clips/../../secret.wav'" in message
    assert "allow_outside_root" in message


def test_paths_that_stay_inside_are_fine(tmp_path: Path) -> None:
    write_tone(tmp_path / "data" / "clips" / "ok.wav")
    write_tone(tmp_path / "data" / "clips" / "ok2.wav")
    path = _manifest(tmp_path / "data", ["clips/ok.wav,a", "clips/../clips/./ok2.wav,b"])
    source = open_source(f"csv:{path}")
    clips = tmp_path / "data" / "clips"
    assert [Path(c.path) for c in source.clips] == [clips / "ok.wav", clips / "ok2.wav"]


def test_escaping_paths_need_an_explicit_opt_in(tmp_path: Path) -> None:
    outside = write_tone(tmp_path / "shared" / "x.wav")
    absolute = write_tone(tmp_path / "shared" / "z.wav")
    write_tone(tmp_path / "data" / "y.wav")
    path = _manifest(tmp_path / "data", ["../shared/x.wav,a", "y.wav,b", f"{absolute},b"])
    source = open_source({"kind": "csv", "path": str(path), "allow_outside_root": True})
    assert [Path(c.path) for c in source.clips] == [outside, tmp_path / "data" / "y.wav", absolute]
    with pytest.raises(DataError, match="allow_outside_root must be true or false"):
        open_source({"kind": "csv", "path": str(path), "allow_outside_root": "perhaps"})
