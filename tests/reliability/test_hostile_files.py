"""Hostile files: a YAML alias bomb, non-UTF-8 configs and specs, an empty config, specs with
thousands of blocks or a 50 MB name, a filter taller than the input with ``same`` padding.

Each is refused quickly, before any work, with one line that quotes at most a short excerpt of
the offending value; the empty config runs, saying that every key takes its default.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.config import MAX_YAML_NODES, ConfigError, load_config
from search_spaces.errors import EXCERPT_CHARS, FsnasWarning, SpecError, excerpt
from search_spaces.spec import (
    MAX_BODY_BLOCKS,
    MAX_FRONTEND_BRANCHES,
    MAX_NAME_CHARS,
    ArchSpec,
    ConvBlock,
)
from search_spaces.validate import validate
from tests.reliability.test_bad_input import _one_line_error

SHAPE = ["--n-mels", "64", "--n-frames", "50", "--n-classes", "3"]


def _alias_bomb(levels: int = 9) -> str:
    """Return the issue's YAML: each anchor a list of nine aliases of the one before."""
    items = ["&a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        items.append(f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "study: [" + ", ".join(items) + "]\n"


# -- Bad 5: the YAML alias bomb -----------------------------------------------------------------
def test_a_yaml_alias_bomb_is_refused_fast_without_echoing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 300 bytes that expand to 9^9 (387 million) values: it took 104 s, 6.2 GB and printed
    # a 2.1 GB error before a MemoryError
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(), encoding="utf-8")
    started = time.perf_counter()
    assert main(["search", "--config", str(path)]) == 2
    assert time.perf_counter() - started < 5.0
    line = _one_line_error(capsys, "search")
    assert f"the YAML expands to more than {MAX_YAML_NODES:,} values" in line
    assert str(path) in line and len(line) < 400


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("space: &a {nested: *a}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="recursive aliases are not allowed"):
        load_config(path)
    # PyYAML composes recursively: deep nesting was a RecursionError traceback
    path.write_text("study: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the YAML is nested too deeply"):
        load_config(path)


def test_a_few_aliases_are_still_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "train: &t {epochs: 2, batch_size: 8}\nsearch: {trials: 3}\nspace: {block_channels: "
        "&c [4, 8], branch_channels: *c}\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.train.epochs == 2 and config.space["branch_channels"] == [4, 8]


def test_a_huge_value_is_quoted_as_a_short_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(f"study: {'x' * 300_000}\ntrain: {{epochs: {'9' * 70}z}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(str(info.value)) < 300
    assert "train.epochs: expected an integer, got '9999" in str(info.value)
    path.write_text(f"study: {'x' * 300_000}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)  # it named a 300 kB folder under the weights dir
    assert "study: must be at most 100 characters" in str(info.value)
    assert str(info.value).endswith("… (300,000 characters)") and len(str(info.value)) < 400
    path.write_text(f"study: {'x' * 5_000_000}\n")
    with pytest.raises(ConfigError, match=r"5,000,008 bytes > the limit of 1,000,000"):
        load_config(path)  # refused unread: the YAML scanner alone would take seconds
    path.write_text(f"space: {{pool_strides: ['{'x' * 300_000}']}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)  # a space key's own check quotes an excerpt too
    assert "pool_strides: expected 'size' or 'FxT'" in str(info.value)
    assert len(str(info.value)) < 400
    from nas.spaces import study_space

    for key in ("space_around", "space"):  # a name too long for a file: no OSError traceback
        path.write_text(f"{key}: {'x' * 300_000}\n")
        with pytest.raises(ConfigError, match=r"\(300,000 characters\) is neither a ") as info:
            study_space(load_config(path))
        assert len(str(info.value)) < 400
    long_name = "n" * 5_000_000
    assert len(excerpt(long_name)) < EXCERPT_CHARS + 40
    assert excerpt(long_name).endswith("… (5,000,000 characters)")
    nested: list[object] = []
    for _ in range(100):  # a deeply nested value is abbreviated, never walked in full
        nested = [nested] * 9
    assert len(excerpt(nested)) <= EXCERPT_CHARS + 1


# -- weak: non-UTF-8 files, an empty config -----------------------------------------------------
def test_non_utf8_spec_and_yaml_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(b'{"name": "caf\xe9", "body": []}')  # Latin-1, not UTF-8
    argv = ["train", "--spec", str(spec), "--data", "synthetic:clips_per_class=3"]
    assert main([*argv, "--tracking-uri", "none", "--cache-dir", str(tmp_path / "c")]) == 2
    line = _one_line_error(capsys, "train")
    assert f"--spec {spec}: not a UTF-8 text file (byte 13: invalid continuation byte)" in line

    config = tmp_path / "study.yaml"
    config.write_bytes(b"study: caf\xe9\n")
    assert main(["search", "--config", str(config)]) == 2
    line = _one_line_error(capsys, "search")
    assert f"{config}: not a UTF-8 text file (byte 10: invalid continuation byte)" in line


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_config_says_that_the_defaults_are_used(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.warns(FsnasWarning, match=r"empty\.yaml: the file sets no key; every key takes"):
        config = load_config(path)
    assert config == load_config(None)


def test_an_empty_config_on_the_command_line_is_one_warning_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    # a bad flag stops the run right after the config is read (nothing is trained)
    assert main(["search", "--config", str(path), "--epochs", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"fsnas search: warning: {path}: the file sets no key;")
    assert "20 trials of 4 epochs" in err[0]
    assert err[1].startswith("fsnas search: error: ") and len(err) == 2


# -- weak: spec sizes, long names, filters taller than the input --------------------------------
def _blocks(n: int) -> str:
    block = {"height": 3, "width": 3, "channels": 4}
    return json.dumps({"body": [block] * n})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_blocks(2_000), f"spec.body: blocks: 2,000 > the limit of {MAX_BODY_BLOCKS}"),
        (
            json.dumps({"frontend": [{"height": 3, "width": 3, "channels": 2}] * 100}),
            f"spec.frontend: branches: 100 > the limit of {MAX_FRONTEND_BRANCHES}",
        ),
        (_blocks(400_000), "16,800,010 bytes > the spec limit of 1,000,000 characters"),
        (_blocks(40_000), "1,680,010 characters of JSON > the limit of 1,000,000"),
        (
            json.dumps({"name": "n" * 50_000_000, "body": [{"height": 3, "width": 3}]}),
            "bytes > the spec limit of 1,000,000 characters",
        ),
        (
            json.dumps({"name": "n" * 5_000, "body": [{"height": 3, "width": 3, "channels": 4}]}),
            f"spec.name: 5,000 characters > the limit of {MAX_NAME_CHARS} (MAX_NAME_CHARS): 'nnn",
        ),
        (
            json.dumps({"body": [{"height": 3, "width": 3, "channels": 4, "convs": 1000}]}),
            "body[0] convs: 1,000 > the limit of 16",
        ),
    ],
)
def test_oversized_specs_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # 2,000 blocks took 125 s in `fsnas cost`; 400,000 blocks ran past 300 s with no output
    path = tmp_path / "spec.json"
    path.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    assert main(["cost", str(path), *SHAPE]) == 2
    assert time.perf_counter() - started < 5.0
    line = _one_line_error(capsys, "cost")
    assert expected in line and len(line) < 400


def test_a_spec_built_in_python_is_held_to_the_same_limits() -> None:
    deep = ArchSpec(body=(ConvBlock(height=3, width=3, channels=4),) * (MAX_BODY_BLOCKS + 1))
    with pytest.raises(SpecError, match=r"spec\.body: blocks: 65 > the limit of 64"):
        validate(deep, 64, 50)
    wide = ArchSpec(body=(ConvBlock(height=3, width=3, channels=1_000_000),))
    with pytest.raises(SpecError, match=r"body\[0\] channels: 1,000,000 > the limit of 65,536"):
        validate(wide, 64, 50)


def test_a_filter_taller_than_the_input_is_refused_with_same_padding_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a 200-tall kernel with 'same' padding on 64 mels was accepted (199 rows of zeros)
    path = tmp_path / "spec.json"
    block = {"height": 200, "width": 3, "channels": 4, "freq_padding": "same"}
    path.write_text(json.dumps({"body": [block]}), encoding="utf-8")
    assert main(["cost", str(path), *SHAPE]) == 2
    line = _one_line_error(capsys, "cost")
    assert "body[0] kernel height 200 > input frequency 64 (n_mels); 'same' padding cannot" in line
    branch = {"height": 65, "width": 3, "channels": 4, "freq_padding": "same", "freq_reduce": "max"}
    with pytest.raises(SpecError, match=r"frontend\[0\] filter height 65 > input frequency 64"):
        validate(ArchSpec.from_dict({"frontend": [branch]}), 64, 50)
    # a 3-tall 'same' kernel on a frequency axis already pooled to 1 is still fine (the
    # search space draws those), as is a full-height one
    collapsed = {"height": 3, "width": 3, "channels": 4, "pool": [64, 1]}
    after = {"height": 3, "width": 3, "channels": 4}
    validate(ArchSpec.from_dict({"body": [collapsed, after]}), 64, 50)
    validate(ArchSpec.from_dict({"body": [{**block, "height": 64}]}), 64, 50)
