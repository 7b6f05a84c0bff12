"""docs/reliability.md names real tests, and every reliability test appears in it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
REFERENCE = re.compile(r"^([\w/]+\.py)(?:::(\w+))?$")


def _references() -> list[tuple[str, str | None]]:
    """Return (test file, test name or None) for each test named in the doc's tables."""
    out: list[tuple[str, str | None]] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        current = None
        for text in re.findall(r"`([^`]+)`", line):
            match = REFERENCE.match(text)
            if match:
                current = match.group(1)
                out.append((current, match.group(2)))
            elif text.startswith("::") and current:  # `::name` continues the file before it
                out.append((current, text[2:]))
    return out


def _tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_every_named_test_exists() -> None:
    missing = []
    for file, name in _references():
        path = REPO / "tests" / file
        if not path.is_file() or (name is not None and name not in _tests(path)):
            missing.append(f"{file}::{name}" if name else file)
    assert missing == []


def test_every_reliability_test_is_in_the_table() -> None:
    refs = _references()
    named = {(f, n) for f, n in refs}
    whole_files = {f for f, n in refs if n is None}
    unlisted = []
    for path in sorted((REPO / "tests" / "reliability").glob("test_*.py")):
        file = f"reliability/{path.name}"
        if file in whole_files or path.name == Path(__file__).name:
            continue
        unlisted += [f"{file}::{t}" for t in sorted(_tests(path)) if (file, t) not in named]
    assert unlisted == []
