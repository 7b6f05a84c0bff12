"""Shared fixtures: the real FSDD recordings (fail under CI=true when missing, else skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FSDD_DIR = REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings"


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """Path of ../shared/data/fsdd/recordings; under CI=true its absence is a failure."""
    if not FSDD_DIR.is_dir() or not any(FSDD_DIR.glob("*.wav")):
        message = f"FSDD recordings not found at {FSDD_DIR}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return FSDD_DIR
