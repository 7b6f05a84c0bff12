"""The search space of a study: named spaces, space files, designs, and the space around one.

A study's space is one of:

* ``space:`` keys of ``search_spaces.SearchSpace`` (the default space with those keys changed);
  ``space: {base: NAME|FILE.yaml, ...}`` (or ``space: NAME``, ``--space NAME``) starts from a
  named space of ``nas/configs/spaces/`` (``literature``: every preset) or a YAML file of
  ``SearchSpace`` keys, and the other keys change it;
* ``space_around: DESIGN`` (``--space-around``): the designs within ``space_around_moves``
  one-step moves of a preset or spec file (``search_spaces.around.SpaceAround``); the design is
  the study's first trial.

Every entry is checked here, before any work: an unknown name, a missing file or a design that
is not a point of the space raises ``ConfigError`` naming the key and the value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nas.config import SPACE_BASE_KEY, ConfigError, StudyConfig, safe_load_bounded
from search_spaces.around import SpaceAround
from search_spaces.errors import SpecError, excerpt
from search_spaces.space import SearchSpace
from search_spaces.spec import ArchSpec

SPACES_DIR = Path(__file__).resolve().parent / "configs" / "spaces"
"""The named spaces: ``<name>.yaml`` files of SearchSpace keys (``configs/spaces`` links here)."""

StudySpace = SearchSpace | SpaceAround


def named_spaces() -> list[str]:
    """Return the names of the shipped spaces (``--space NAME``), sorted."""
    return sorted(path.stem for path in SPACES_DIR.glob("*.yaml"))


def _is_file(path: Path) -> bool:
    """Return whether ``path`` is a file; a name the system refuses (too long) is not one."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_space_file(entry: str, key: str = "space.base") -> dict[str, Any]:
    """Return the SearchSpace keys of a named space or of a YAML file.

    Raises:
        ConfigError: ``entry`` is neither a named space nor a readable YAML mapping (the
            message names ``key`` and the value).
    """
    names = named_spaces()
    path = SPACES_DIR / f"{entry}.yaml" if entry in names else Path(entry)
    if not _is_file(path):
        raise ConfigError(
            f"{key}: {excerpt(entry)} is neither a named space ({', '.join(names)}) nor a file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {excerpt(entry)}: {exc}") from None
    data = safe_load_bounded(text, f"{key} {excerpt(entry)}")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{key}: {excerpt(entry)} must be a mapping of search space keys, got "
            f"{type(data).__name__}"
        )
    return data


def read_design(entry: str, key: str) -> tuple[ArchSpec, str]:
    """Return (spec, label) of a preset name (``fsnas presets list``) or an ArchSpec JSON file.

    Raises:
        ConfigError: neither a preset nor a readable file; SpecError: the file is no spec.
    """
    from search_spaces.presets import PRESETS

    if entry in PRESETS:
        return PRESETS[entry].spec, f"preset {entry}"
    path = Path(entry)
    if not _is_file(path):
        raise ConfigError(
            f"{key}: {excerpt(entry)} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: cannot read {excerpt(entry)}: {err}") from None
    spec = ArchSpec.from_json(text)
    return spec, f"{spec.name or path.stem} ({path})"


def study_space(
    config: StudyConfig,
    n_mels: int | None = None,
    n_frames: int | None = None,
    where: str = "config",
) -> StudySpace:
    """Return the study's space, bound to ``n_mels × n_frames`` when given.

    A ``space:`` that fixes its own input (``n_mels``/``n_frames``) keeps it.

    Raises:
        ConfigError: a bad space key, name, file or design (naming the key and the value).
    """
    if config.space_around is not None:
        key = "space_around"
        try:
            design, _ = read_design(config.space_around, key)
            return SpaceAround(design, config.space_around_moves, n_mels, n_frames)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except SpecError as exc:
            raise ConfigError(f"{where}: {key} = {excerpt(config.space_around)}: {exc}") from None
    keys = dict(config.space)
    data: dict[str, Any] = {}
    base = keys.pop(SPACE_BASE_KEY, None)
    if base is not None:
        try:
            data = read_space_file(base, f"space.{SPACE_BASE_KEY}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    data.update(keys)
    try:
        space = SearchSpace.from_dict(data)
    except SpecError as exc:
        named = f" ({SPACE_BASE_KEY} {excerpt(base)})" if base is not None else ""
        raise ConfigError(f"{where}: space{named}: {exc}") from None
    if space.n_mels is None and n_mels is not None:
        space = dataclasses.replace(space, n_mels=n_mels, n_frames=n_frames)
    return space


def around_design(config: StudyConfig, space: StudySpace) -> tuple[str, dict[str, Any]] | None:
    """Return (label, parameters) of the ``space_around`` design (the first trial), or None."""
    if config.space_around is None or not isinstance(space, SpaceAround):
        return None
    _, label = read_design(config.space_around, "space_around")
    return label, space.params_for(space.design)
