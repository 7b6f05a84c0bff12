"""The grid sampler: Optuna's GridSampler over the space's grid, driven by ask-and-tell."""

from __future__ import annotations

import optuna
import pytest

from nas.config import from_dict
from nas.study import AskTellGridSampler, SearchError, make_sampler
from search_spaces.space import SearchSpace


def test_a_grid_sampler_walks_a_pinned_space() -> None:
    # sweep branch height x width of one vertical layer; everything else pinned
    space = SearchSpace(
        min_branches=1,
        max_branches=1,
        frontend_freq_reduce=("max",),
        branch_heights=("0.4M", "0.9M"),
        branch_widths=(1, 7),
        branch_channels=(16,),
        max_depth=0,
        head_freq_reduce=("max",),
        head_time_pooling=("max",),
        input_norm=("bn",),
    )
    grid = space.grid_space()
    assert grid == {"branch0_height": ["0.4M", "0.9M"], "branch0_width": [1, 7]}
    # asked and told outside Study.optimize, as Ray's OptunaSearch does, past the grid's end
    study = optuna.create_study(sampler=AskTellGridSampler(grid, seed=0))
    seen = set()
    for _ in range(5):
        trial = study.ask()
        spec = space.sample(trial)
        seen.add((spec.frontend[0].height, spec.frontend[0].width))
        study.tell(trial, 0.0)
    assert seen == {("0.4M", 1), ("0.4M", 7), ("0.9M", 1), ("0.9M", 7)}


def test_make_sampler_builds_the_grid_of_the_config_space() -> None:
    space = {
        "min_branches": 1,
        "max_branches": 1,
        "frontend_freq_reduce": ["max"],
        "branch_heights": ["0.4M", "0.9M"],
        "branch_widths": [1, 7, 17],
        "branch_channels": [16],
        "max_depth": 0,
        "head_freq_reduce": ["max"],
        "head_time_pooling": ["max"],
        "input_norm": ["bn"],
    }
    config = from_dict({"space": space, "search": {"sampler": "grid", "trials": 6}})
    sampler = make_sampler(config)
    assert isinstance(sampler, AskTellGridSampler)


def test_a_grid_too_large_to_enumerate_names_its_widest_dimensions() -> None:
    config = from_dict({"search": {"sampler": "grid"}})  # the whole default space
    with pytest.raises(SearchError, match=r"grid points .*pin dimensions.*branch0_width \(9\)"):
        make_sampler(config)
