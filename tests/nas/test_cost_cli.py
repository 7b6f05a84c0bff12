"""``fsnas presets list|show`` and ``fsnas cost``: output, JSON and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas import cli
from search_spaces import ArchSpec, Branch, ConvBlock, Head
from search_spaces.presets import PRESETS

SMALL = ArchSpec(
    name="tiny_vertical",
    input_norm="none",
    frontend=(Branch("0.5M", 3, 8, freq_reduce="max"),),
    head=Head(freq_reduce="none", time_pooling="max"),
)
INPUT = ["--n-mels", "40", "--n-frames", "50", "--n-classes", "3"]


@pytest.fixture(autouse=True)
def only_cost_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process tests load only the commands under test, so they do not depend on other
    # sub-commands' imports; test_acceptance_command_via_the_console_script runs the real CLI.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("presets", "cost"))


def _write(tmp_path: Path, spec: ArchSpec | str) -> str:
    path = tmp_path / "spec.json"
    path.write_text(spec if isinstance(spec, str) else spec.to_json(), encoding="utf-8")
    return str(path)


def test_presets_list_shows_every_preset_with_input_and_params(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["presets", "list"]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS.values():
        line = next(row for row in out.splitlines() if row.startswith(preset.name + " "))
        assert f"{preset.reference_params:,}" in line
        assert f"{preset.n_mels}×{preset.n_frames}, {preset.n_classes}" in line
    assert "605,748" in out


def test_presets_show_json_is_one_object_with_costs_and_spec(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["presets", "show", "pons_timbre", "--batch", "4", "--latency-repeats", "1", "--json"]
    assert cli.main(argv) == 0
    data = json.loads(capsys.readouterr().out)  # fails unless stdout is exactly one object
    assert data["params"] == 185_856
    assert data["source"] == PRESETS["pons_timbre"].source
    assert data["vram_source"] == "estimated"
    assert data["gflops"] > 0 and data["train_vram_mb"] > 0
    assert (data["n_mels"], data["n_frames"], data["n_classes"]) == (96, 187, 50)
    assert ArchSpec.from_dict(data["spec"]) == PRESETS["pons_timbre"].spec


def test_presets_show_text_has_source_layers_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["presets", "show", "pons_cbmi_time", "--n-classes", "5", "--latency-repeats", "1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert PRESETS["pons_cbmi_time"].source in out
    assert "40 mel × 80 frames, 5 outputs" in out  # reference input, overridden classes
    assert "head.pool" in out and "GFLOPs" in out and "MiB estimated" in out


def test_cost_of_a_spec_file_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, SMALL)
    assert cli.main(["cost", path, *INPUT, "--batch", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"params", "gflops", "train_vram_mb", "vram_source", "spec"} <= set(data)
    # 20 × 3 filters, 8 channels: 20·3·8 + 8 weights/biases, BN 16, dense 8·3 + 3
    assert data["params"] == 20 * 3 * 8 + 8 + 16 + 8 * 3 + 3
    assert data["batch_size"] == 8 and data["name"] == "tiny_vertical"


@pytest.mark.parametrize(
    ("spec", "argv", "expected"),
    [
        (
            ArchSpec(frontend=(Branch(120, 3, 8),)),
            ["--n-mels", "96", "--n-frames", "50", "--n-classes", "3"],
            r"frontend\[0\] filter height 120 > input frequency 96",
        ),
        (
            ArchSpec(body=(ConvBlock(3, 3, 8, pool=(0, 2)),)),
            INPUT,
            r"body\[0\] pool size \(freq\) must be an integer >= 1, got 0",
        ),
    ],
)
def test_a_spec_that_does_not_fit_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: ArchSpec,
    argv: list[str],
    expected: str,
) -> None:
    assert cli.main(["cost", _write(tmp_path, spec), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err
    assert re.search(expected, captured.err), captured.err


def test_missing_or_broken_spec_files_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.json")
    assert cli.main(["cost", missing, *INPUT]) == 2
    err = capsys.readouterr().err
    assert missing in err and "cannot read spec file" in err
    broken = _write(tmp_path, '{"frontend": [')
    assert cli.main(["cost", broken, *INPUT]) == 2
    err = capsys.readouterr().err
    assert broken in err and "invalid JSON" in err
    assert "Traceback" not in err


def test_unknown_preset_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["presets", "show", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert "resnet50" in err and "pons_vgg" in err


def test_a_preset_that_does_not_fit_an_overridden_input_prints_only_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["presets", "show", "pons_vgg", "--n-frames", "3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "body[0] pool size 4 over time > remaining time 3" in captured.err


def test_acceptance_command_via_the_console_script() -> None:
    # Issue 2 acceptance, through the installed entry point (the real COMMAND_MODULES).
    argv = ["presets", "show", "pons_vgg", "--n-mels", "96", "--n-frames", "187"]
    argv += ["--n-classes", "50", "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "nas.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 605748
    assert data["vram_source"] == "estimated"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error path")
def test_measuring_on_cuda_without_cuda_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["cost", _write(tmp_path, SMALL), *INPUT, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err and "Traceback" not in err
