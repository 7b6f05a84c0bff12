"""Each package's public API (``__all__``) names what it can give, and gives it lazily."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("search_spaces", "trainers", "dashboards", "nas")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__, f"{name}: empty __all__"
    assert len(set(package.__all__)) == len(package.__all__)
    exports = getattr(package, "_EXPORTS", None)
    if exports is not None:  # the lazy packages: one module per public name
        assert sorted(exports) == sorted(n for n in package.__all__ if n != "__version__")
        for public, module in exports.items():
            defined_in = importlib.import_module(f"{name}.{module}")
            assert getattr(defined_in, public) is getattr(package, public)
    for public in package.__all__:
        assert getattr(package, public) is not None
    with pytest.raises(AttributeError, match="no attribute"):
        package.no_such_name  # noqa: B018


def test_importing_the_packages_loads_no_heavy_library() -> None:
    code = (
        "import sys, search_spaces, trainers, dashboards, nas, nas.cli\n"
        "print(sorted(m for m in ('torch', 'ray', 'optuna', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


MAX_SOURCE_LINES = 800  # a module past this holds more than one concern: split it


def test_no_source_file_is_over_800_lines() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [p for d in (*PACKAGES, "benchmarks") for p in sorted((root / d).rglob("*.py"))]
    assert len(files) > 50, files  # the packages were found
    lines = {
        str(p.relative_to(root)): len(p.read_text(encoding="utf-8").splitlines()) for p in files
    }
    over = {name: n for name, n in lines.items() if n > MAX_SOURCE_LINES}
    assert not over, f"over {MAX_SOURCE_LINES} lines: {over}"
