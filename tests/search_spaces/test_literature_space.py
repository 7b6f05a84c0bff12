"""The literature space (configs/spaces/literature.yaml): every preset is a point of it.

It opens the dimensions the default space keeps constant (activation order, paddings, strides,
per-axis pools, dropout, the heads' dense layers, ...); these tests pin that each preset
round-trips through ``params_for`` at its reference input, that the default space lies inside
it, and that its random samples stay valid networks with stable parameter distributions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from search_spaces import PRESETS, ArchSpec, Branch, ConvBlock, Head, SearchSpace, validate
from search_spaces.errors import SpecError
from search_spaces.space import parse_pool_stride

optuna.logging.set_verbosity(optuna.logging.WARNING)

LITERATURE = Path(__file__).resolve().parents[2] / "configs" / "spaces" / "literature.yaml"


def literature_space(**changes: Any) -> SearchSpace:
    data = yaml.safe_load(LITERATURE.read_text(encoding="utf-8"))
    return dataclasses.replace(SearchSpace.from_dict(data), **changes)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_in_the_literature_space(name: str) -> None:
    preset = PRESETS[name]
    unnamed = preset.spec.replace(name="")
    for space in (
        literature_space(),
        literature_space(n_mels=preset.n_mels, n_frames=preset.n_frames),
    ):
        params = space.params_for(preset.spec)
        assert space.sample(optuna.trial.FixedTrial(params)) == unnamed, space.n_mels
    validate(preset.spec, preset.n_mels, preset.n_frames)


def test_literature_space_contains_the_default_space() -> None:
    default = SearchSpace(n_mels=64, n_frames=101)
    wide = literature_space(n_mels=64, n_frames=101)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    for _ in range(150):
        trial = study.ask()
        spec = default.sample(trial)
        assert wide.sample(optuna.trial.FixedTrial(wide.params_for(spec))) == spec
        study.tell(trial, 0.0)


def test_literature_samples_are_valid_with_stable_distributions() -> None:
    space = literature_space(n_mels=96, n_frames=187)
    grid = space.grid_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    seen = {"dense_concat": False, "residual": False, "valid": False, "per_axis": False}
    for _ in range(300):
        trial = study.ask()
        spec = space.sample(trial)
        validate(spec, 96, 187)
        for name, dist in trial.distributions.items():
            assert distributions.setdefault(name, dist) == dist, name
            assert name in grid, name
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                assert list(dist.choices) == grid[name], name
        assert space.sample(optuna.trial.FixedTrial(trial.params)) == spec
        assert space.sample(optuna.trial.FixedTrial(space.params_for(spec))) == spec
        seen["dense_concat"] |= spec.dense_concat
        seen["residual"] |= any(b.residual for b in spec.body)
        seen["valid"] |= any(b.time_padding == "valid" for b in spec.frontend + spec.body)
        seen["per_axis"] |= any(b.pool[0] not in (1, b.pool[1]) for b in spec.body)
        study.tell(trial, 0.0)
    assert all(seen.values()), seen


class _Defaults:
    """A trial that answers from ``params`` and takes the first choice (or low) otherwise."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self.params.get(name, choices[0])

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return int(self.params.get(name, low))


def test_rules_that_keep_the_new_dimensions_valid() -> None:
    space = literature_space(n_mels=40, n_frames=80)
    # a front end that keeps frequency with valid padding: every branch takes branch 0's
    # height; valid time padding: branch 0's width (the outputs concatenate)
    params = {
        "n_branches": 2,
        "frontend_freq_reduce": "none",
        "frontend_freq_padding": "valid",
        "frontend_time_padding": "valid",
        "branch0_height": 32,
        "branch0_width": 7,
        "branch1_channels": 5,
        "depth": 1,
        "block0_freq_padding": "valid",
        "block0_time_padding": "valid",
        "block0_height": "1.0M",  # more than remains (9 bins): clipped to fit
        "block0_width": 8,
        "block0_residual": True,  # not asked: a residual needs 'same' padding
        "block0_pool_axes": "both",
        "block0_pool_size": 2,
        "block0_pool_time_size": 4,
        "block0_pool_stride": "2x2",
    }
    spec = space.sample(_Defaults(params))  # type: ignore[arg-type]
    assert [(b.height, b.width) for b in spec.frontend] == [(32, 7), (32, 7)]
    block = spec.body[0]
    assert (block.height, block.residual) == (9, False)
    assert (block.pool, block.pool_stride) == ((1, 4), (2, 2))  # 1 bin left: no freq pool
    validate(spec, 40, 80)
    # dense concatenation is only asked when every block keeps its input's shape
    pooled = space.sample(_Defaults(params | {"dense_concat": True}))  # type: ignore[arg-type]
    assert not pooled.dense_concat


def test_new_keys_are_checked() -> None:
    assert parse_pool_stride("size") is None and parse_pool_stride("2x4") == (2, 4)
    for bad, message in (
        ({"pool_strides": ["2by2"]}, r"pool_strides: expected 'size' or 'FxT'.*'2by2'"),
        ({"block_dropouts": [0.0, 1.5]}, r"block_dropouts: expected a rate in \[0, 1\), got 1\.5"),
        ({"pool_time_sizes": []}, r"pool_time_sizes: needs at least one choice"),
        ({"block_strides": [0]}, r"block_strides: expected an integer >= 1, got 0"),
        ({"kept_freq_paddings": ["full"]}, r"kept_freq_paddings\[0\].*'full'"),
    ):
        with pytest.raises(SpecError, match=message):
            SearchSpace.from_dict(bad)


def test_params_for_names_what_the_literature_space_cannot_draw() -> None:
    space = literature_space(n_mels=96, n_frames=187)
    deeper = ArchSpec(body=(ConvBlock(3, 3, 64),) * 8, head=Head(), name="deep")
    with pytest.raises(SpecError, match=r"spec 'deep': number of body blocks.*range \[1, 7\]"):
        space.params_for(deeper)
    odd_pool = ArchSpec(body=(ConvBlock(3, 3, 64, pool=(2, 4), pool_stride=(1, 3)),))
    with pytest.raises(SpecError, match=r"body\[0\] pools max \(2, 4\) stride \(1, 3\).*2x2"):
        space.params_for(odd_pool)
    mixed = ArchSpec(
        frontend=(
            Branch("0.4M", 7, 32, freq_reduce="none", freq_padding="valid"),
            Branch("0.7M", 7, 32, freq_reduce="none", freq_padding="valid"),
        )
    )
    # without a frequency reduction, valid branches share branch 0's height
    with pytest.raises(SpecError, match=r"frontend\[1\]\.height is 67, .* always draws 38"):
        space.params_for(mixed)
