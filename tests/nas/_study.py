"""A tiny study config for the end-to-end search tests (seconds per trial on one CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY_SPACE = {
    "max_branches": 1,
    "max_depth": 2,
    "branch_channels": [4, 8],
    "block_channels": [4, 8],
    "branch_widths": [1, 3, 7],
}


def tiny_config(tmp_path: Path, study: str = "tiny", **sections: Any) -> dict[str, Any]:
    """Return a study config dict: 40 synthetic clips, 16 mels, a tiny space, tmp storage."""
    config: dict[str, Any] = {
        "study": study,
        "storage": f"sqlite:///{tmp_path / 'studies.db'}",
        "tracking_uri": "none",
        "ray_dir": str(tmp_path / "ray"),
        "weights_dir": str(tmp_path / "weights"),
        "data": {
            "source": "synthetic:clips_per_class=4,seed=0",
            "features": {"n_mels": 16, "clip_seconds": 0.5},
            "cache_dir": str(tmp_path / "cache"),
        },
        "space": dict(TINY_SPACE),
        "train": {"epochs": 2, "batch_size": 16},
        "search": {"trials": 4, "population_size": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as YAML and return the path."""
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
