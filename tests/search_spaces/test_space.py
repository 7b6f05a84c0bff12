"""SearchSpace: both extremes are points of the default space; every sample is a valid network."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from search_spaces import (
    ArchSpec,
    Branch,
    ConvBlock,
    Head,
    LayerShape,
    SearchSpace,
    apply_factor,
    build_model,
    count_params,
    validate,
)
from search_spaces.errors import SpecError
from search_spaces.space import ABLATION_FACTORS, grid

optuna.logging.set_verbosity(optuna.logging.WARNING)

VGG5 = ArchSpec(
    body=tuple(ConvBlock(3, 3, 128, pool=(2, 2)) for _ in range(5)),
    head=Head(freq_reduce="max", time_pooling="max"),
    input_norm="none",
)
VERTICAL = ArchSpec(
    frontend=(Branch("0.9M", 7, 128, freq_reduce="max"),),
    head=Head(time_pooling="max"),
    input_norm="none",
)


def _vgg5_params() -> dict[str, Any]:
    params: dict[str, Any] = {"input_norm": "none", "n_branches": 0, "depth_no_frontend": 5}
    for i in range(5):
        params |= {
            f"block{i}_height": 3,
            f"block{i}_width": 3,
            f"block{i}_channels": 128,
            f"block{i}_pool_axes": "both",
            f"block{i}_pool_size": 2,
            f"block{i}_pool_type": "max",
        }
    return params | {"head_freq_reduce": "max", "head_time_pooling": "max"}


def _vertical_params(width: int) -> dict[str, Any]:
    return {
        "input_norm": "none",
        "n_branches": 1,
        "frontend_freq_reduce": "max",
        "branch0_height": "0.9M",
        "branch0_width": width,
        "branch0_channels": 128,
        "depth": 0,
        "head_time_pooling": "max",
    }


def test_default_space_contains_a_5_block_3x3_vgg() -> None:
    spec = SearchSpace().sample(optuna.trial.FixedTrial(_vgg5_params()))
    assert spec == VGG5
    # the anchor network of DESIGN.md (shared/docs/anchor_gpu.py vgg5_c128): 594,186 parameters =
    # 1,280 + 4 × 147,584 (convs) + 5 × 256 (BN) + 128·10 + 10 (head)
    assert count_params(build_model(spec, 64, 101, 10)) == 594_186


def test_default_space_contains_a_single_vertical_layer_with_frequency_max_pooling() -> None:
    spec = SearchSpace().sample(optuna.trial.FixedTrial(_vertical_params(width=1)))
    assert spec == ArchSpec(
        frontend=(Branch("0.9M", 1, 128, freq_reduce="max"),),
        head=Head(time_pooling="max"),
        input_norm="none",
    )
    assert spec.body == ()
    assert validate(spec, 64, 101).frontend_heights == (57,)
    # anchor vertical_0.9M_x1_c128: 57·128 + 128 + 256 (BN) + 1,290 (head) = 8,970
    assert count_params(build_model(spec, 64, 101, 10)) == 8_970
    wide = SearchSpace().sample(optuna.trial.FixedTrial(_vertical_params(width=7)))
    assert wide == VERTICAL
    assert count_params(build_model(wide, 64, 101, 10)) == 52_746  # anchor: "53 k"


def test_default_space_contains_the_musicnn_like_front_end() -> None:
    shapes = [("0.4M", 7), ("0.7M", 7), (1, 33), (1, 65), (1, 129)]
    params: dict[str, Any] = {
        "input_norm": "none",
        "n_branches": 5,
        "frontend_freq_reduce": "max",
        "depth": 0,
        "head_time_pooling": "max",
    }
    for i, (height, width) in enumerate(shapes):
        params |= {f"branch{i}_height": height, f"branch{i}_width": width}
        params[f"branch{i}_channels"] = 64
    spec = SearchSpace().sample(optuna.trial.FixedTrial(params))
    assert [(b.height, b.width, b.channels) for b in spec.frontend] == [
        (h, w, 64) for h, w in shapes
    ]
    # anchor musicnn_like_front "50 k": heights int(0.4·64)=25 and int(0.7·64)=44, 64 ch each:
    # 25·7·64 + 44·7·64 + (33 + 65 + 129)·64 + 5·64 (bias) + 5·128 (BN) + 320·10 + 10 = 49,610
    assert count_params(build_model(spec, 64, 101, 10)) == 49_610


def test_body_after_frequency_collapse_is_temporal_and_never_pools_frequency() -> None:
    params = _vertical_params(width=3) | {
        "depth": 2,
        "block0_width": 5,
        "block0_channels": 32,
        "block0_pool_axes_collapsed": "time",
        "block0_pool_size": 4,
        "block0_pool_type": "avg",
        "block1_width": 3,
        "block1_channels": 16,
        "block1_pool_axes_collapsed": "none",
    }
    trial = optuna.trial.FixedTrial(params)
    spec = SearchSpace().sample(trial)
    assert [(b.height, b.width, b.pool, b.pool_type) for b in spec.body] == [
        (1, 5, (1, 4), "avg"),
        (1, 3, (1, 1), "max"),
    ]
    assert "block0_height" not in trial.params
    assert "head_freq_reduce" not in trial.params


def test_frontend_without_reduction_uses_same_frequency_padding() -> None:
    params = {
        "input_norm": "bn",
        "n_branches": 2,
        "frontend_freq_reduce": "none",
        "branch0_height": "0.4M",
        "branch0_width": 3,
        "branch0_channels": 16,
        "branch1_height": 5,
        "branch1_width": 9,
        "branch1_channels": 32,
        "depth": 1,
        "block0_height": 3,
        "block0_width": 3,
        "block0_channels": 64,
        "block0_pool_axes": "freq",
        "block0_pool_size": 3,
        "block0_pool_type": "max",
        "head_freq_reduce": "mean",
        "head_time_pooling": "max+mean",
    }
    spec = SearchSpace().sample(optuna.trial.FixedTrial(params))
    assert {b.freq_padding for b in spec.frontend} == {"same"}
    assert spec.body[0].pool == (3, 1)
    shapes = validate(spec, 64, 101)
    assert LayerShape("body[0]", 64, 21, 101) in shapes.layers
    out = build_model(spec, 64, 101, 5).eval()(torch.randn(2, 1, 64, 101))
    assert out.shape == (2, 5)


def test_input_shape_clips_pool_sizes_to_what_remains() -> None:
    params = {"input_norm": "none", "n_branches": 0, "depth_no_frontend": 3}
    for i in range(3):
        params |= {
            f"block{i}_height": 3,
            f"block{i}_width": 3,
            f"block{i}_channels": 16,
            f"block{i}_pool_axes": "both",
            f"block{i}_pool_size": 4,
            f"block{i}_pool_type": "avg",
        }
    params |= {"head_freq_reduce": "max", "head_time_pooling": "max"}
    unclipped = SearchSpace().sample(optuna.trial.FixedTrial(params))
    with pytest.raises(
        SpecError, match=r"body\[1\] pool size 4 over frequency > remaining frequency 2"
    ):
        validate(unclipped, 8, 40)
    clipped = SearchSpace(n_mels=8, n_frames=40).sample(optuna.trial.FixedTrial(params))
    # 8 mels: 4 → 2 bins, then 2 → 1, then nothing left to pool (canonical (1, 1), max)
    assert [b.pool for b in clipped.body] == [(4, 4), (2, 4), (1, 2)]
    validate(clipped, 8, 40)


def test_input_shape_clips_heights_that_would_not_fit() -> None:
    space = SearchSpace(branch_heights=(5, "0.1M"), n_mels=4, n_frames=20)
    params = _vertical_params(width=3) | {"branch0_height": 5}
    assert space.sample(optuna.trial.FixedTrial(params)).frontend[0].height == 4
    params["branch0_height"] = "0.1M"  # int(0.1 · 4) = 0 bins
    assert space.sample(optuna.trial.FixedTrial(params)).frontend[0].height == 1


PARAM_NAME = re.compile(
    r"^(input_norm|activation_order|n_branches|frontend_freq_reduce|depth|depth_no_frontend"
    r"|branch\d+_(height|width|channels)"
    r"|block\d+_(height|width|channels|residual|pool_axes|pool_axes_collapsed|pool_size|pool_type)"
    r"|head_freq_reduce|head_time_pooling|head_hidden_units)$"
)


def test_random_study_samples_only_valid_buildable_specs() -> None:
    space = SearchSpace(n_mels=64, n_frames=101)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    seen_empty_frontend = seen_collapse = seen_no_body = False
    for _ in range(200):
        trial = study.ask()
        spec = space.sample(trial)
        for shape in ((64, 101), (96, 187)):
            validate(spec, *shape)
        build_model(spec, 64, 101, 10)
        for name, dist in trial.distributions.items():
            assert PARAM_NAME.match(name), name
            # a parameter name never changes its distribution between trials
            assert distributions.setdefault(name, dist) == dist, name
        # the same parameters give the same spec (no hidden randomness)
        assert space.sample(optuna.trial.FixedTrial(trial.params)) == spec
        seen_empty_frontend |= not spec.frontend
        seen_no_body |= not spec.body
        seen_collapse |= any(b.freq_reduce != "none" for b in spec.frontend)
        study.tell(trial, 0.0)
    assert seen_empty_frontend and seen_collapse and seen_no_body


def test_from_dict_round_trip_and_strict_errors() -> None:
    space = SearchSpace.from_dict({"max_depth": 8, "branch_heights": [1, "0.5M"], "n_mels": 64,
                                   "n_frames": 101})  # fmt: skip
    assert space.max_depth == 8 and space.branch_heights == (1, "0.5M")
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert SearchSpace.from_dict({}) == SearchSpace()
    for bad, message in (
        ({"max_dept": 3}, r"unknown key\(s\) \['max_dept'\]"),
        ({"max_depth": "3"}, r"max_depth: expected an integer, got '3'"),
        ({"pool_axes": ["diagonal"]}, r"pool_axes\[0\].*'diagonal'"),
        ({"branch_heights": ["0.4X"]}, r"branch_heights.*'0.4X'"),
        ({"pool_sizes": []}, r"pool_sizes: needs at least one choice"),
        ({"min_depth": 4, "max_depth": 2}, r"max_depth: expected an integer >= 4, got 2"),
        ({"max_branches": 0, "max_depth": 0}, r"empty network"),
        ({"n_mels": 64}, r"n_mels and n_frames"),
        ({"block_widths": [3, 0]}, r"block_widths: expected an integer >= 1, got 0"),
    ):
        with pytest.raises(SpecError, match=message):
            SearchSpace.from_dict(bad)


def test_single_choice_dimensions_are_constants() -> None:
    space = SearchSpace(
        min_branches=0,
        max_branches=0,
        min_depth=2,
        max_depth=2,
        block_heights=(3,),
        block_widths=(3,),
        block_channels=(8,),
        pool_axes=("none",),
        head_freq_reduce=("mean",),
        head_time_pooling=("mean",),
        input_norm=("bn",),
    )
    trial = optuna.trial.FixedTrial({})
    spec = space.sample(trial)
    assert trial.params == {}
    assert spec == ArchSpec(
        body=(ConvBlock(3, 3, 8), ConvBlock(3, 3, 8)),
        head=Head(freq_reduce="mean", time_pooling="mean"),
    )


# -- ablation factors -------------------------------------------------------------------------
def test_apply_factor_frequency_height_and_time_width() -> None:
    assert apply_factor(VERTICAL, "frequency_height", "0.4M").frontend[0].height == "0.4M"
    assert apply_factor(VGG5, "frequency_height", 7).body[0].height == 7
    assert apply_factor(VGG5, "frequency_height", 7).body[1:] == VGG5.body[1:]
    assert apply_factor(VERTICAL, "time_width", 1).frontend[0].width == 1
    assert apply_factor(VGG5, "time_width", 5).body[0].width == 5
    with pytest.raises(SpecError, match=r"factor frequency_height.*'tall'"):
        apply_factor(VGG5, "frequency_height", "tall")


def test_apply_factor_depth_truncates_and_extends() -> None:
    assert apply_factor(VGG5, "depth", 3).body == VGG5.body[:3]
    deeper = apply_factor(VGG5, "depth", 7)
    assert deeper.body == VGG5.body + (VGG5.body[-1],) * 2
    assert apply_factor(VERTICAL, "depth", 0) == VERTICAL
    with pytest.raises(SpecError, match="empty network"):
        apply_factor(VGG5, "depth", 0)
    with pytest.raises(SpecError, match="no block to repeat"):
        apply_factor(VERTICAL, "depth", 2)


def test_apply_factor_channels_freq_reduce_pooling_and_head() -> None:
    musicnn_like = ArchSpec(
        frontend=(Branch("0.4M", 7, 32), Branch(1, 33, 16, freq_padding="same")),
        body=(ConvBlock(1, 7, 64, pool=(1, 2)),),
    )
    narrow = apply_factor(musicnn_like, "channels", 8)
    assert {b.channels for b in narrow.frontend + narrow.body} == {8}
    flat = apply_factor(musicnn_like, "freq_reduce", "none")
    assert {(b.freq_reduce, b.freq_padding) for b in flat.frontend} == {("none", "same")}
    validate(flat, 64, 101)
    assert apply_factor(VGG5, "time_pooling", 1).body[0].pool == (2, 1)
    assert [b.pool for b in apply_factor(VGG5, "time_pooling", [1, 2, 1, 2, 1]).body] == [
        (2, 1),
        (2, 2),
        (2, 1),
        (2, 2),
        (2, 1),
    ]
    strided = ArchSpec(body=(ConvBlock(3, 3, 8, pool=(1, 4), pool_stride=(2, 2)),))
    assert apply_factor(strided, "time_pooling", 2).body[0].pool_stride == (2, 2)
    with pytest.raises(SpecError, match="one size per block"):
        apply_factor(VGG5, "time_pooling", [2, 2])
    assert apply_factor(VGG5, "head_pooling", "max+mean").head.time_pooling == "max+mean"
    with pytest.raises(SpecError, match=r"head_pooling.*'median'"):
        apply_factor(VGG5, "head_pooling", "median")
    with pytest.raises(SpecError, match="no front-end branches"):
        apply_factor(VGG5, "freq_reduce", "mean")


def test_unknown_factor_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="unknown ablation factor 'kernel'") as info:
        apply_factor(VGG5, "kernel", 3)
    for factor in ABLATION_FACTORS:
        assert factor in str(info.value)


def test_grid_gives_one_valid_spec_per_value() -> None:
    specs = grid("frequency_height", [1, 3, "0.4M", "0.9M"], VERTICAL)
    heights = [validate(s, 64, 101).frontend_heights for s in specs]
    assert heights == [(1,), (3,), (25,), (57,)]


def test_grid_space_lists_every_parameter_sample_asks_with_its_choices() -> None:
    # the grid is written beside sample(); this keeps the two in step on a space where every
    # dimension has several choices and both collapsed and full-frequency bodies occur
    space = SearchSpace(max_branches=2, max_depth=3, frontend_freq_reduce=("max", "none"))
    grid = space.grid_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(150):
        trial = study.ask()
        space.sample(trial)
        for name, distribution in trial.distributions.items():
            assert name in grid, name
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                assert list(distribution.choices) == grid[name], name
            else:
                assert isinstance(distribution, optuna.distributions.IntDistribution)
                assert list(range(distribution.low, distribution.high + 1)) == grid[name]
        study.tell(trial, 0.0)


# -- params_for: the inverse of sample (warm starts) -------------------------------------------
@pytest.mark.parametrize(
    "space",
    [
        SearchSpace(),
        SearchSpace(n_mels=64, n_frames=101),
        # a tiny input: pools and heights are clipped, so several parameter sets draw one spec
        SearchSpace(n_mels=8, n_frames=10),
        SearchSpace(block_residual=(False, True), head_hidden_units=(0, 32), min_branches=1),
    ],
)
def test_params_for_draws_back_every_sampled_spec(space: SearchSpace) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    exact = 0
    for _ in range(300):
        trial = study.ask()
        spec = space.sample(trial)
        params = space.params_for(spec)
        assert space.sample(optuna.trial.FixedTrial(params)) == spec
        exact += params == trial.params
        study.tell(trial, 0.0)
    if space.n_mels is None:  # nothing is clipped: the parameters are the trial's own
        assert exact == 300


def test_params_for_the_anchor_networks_are_their_fixed_trials() -> None:
    space = SearchSpace(n_mels=64, n_frames=101)
    assert space.params_for(VGG5) == _vgg5_params()
    assert space.params_for(VERTICAL) == _vertical_params(width=7)
    # a height in bins is the literal the space lists once the input is known: 57 = 0.9 × 64
    in_bins = ArchSpec(
        frontend=(Branch(57, 7, 128, freq_reduce="max"),),
        head=Head(time_pooling="max"),
        input_norm="none",
    )
    assert space.params_for(in_bins)["branch0_height"] == "0.9M"
    # the shipped spec files are the same networks (configs/specs)
    root = Path(__file__).resolve().parents[2] / "configs" / "specs"
    assert ArchSpec.from_json((root / "vgg5_c128.json").read_text()) == dataclasses.replace(
        VGG5, name="vgg5_c128"
    )
    assert ArchSpec.from_json(
        (root / "vertical_0.9Mx7_c128.json").read_text()
    ) == dataclasses.replace(VERTICAL, name="vertical_0.9Mx7_c128")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            dataclasses.replace(VGG5, activation_order="conv_relu_bn", name="relu_first"),
            r"spec 'relu_first': activation_order 'conv_relu_bn' is not among the search "
            r"space's \['conv_bn_relu'\]",
        ),
        (
            dataclasses.replace(VGG5, body=VGG5.body * 2),
            r"number of body blocks \(no front end\) 10 is outside the search space's range "
            r"\[1, 6\]",
        ),
        (
            dataclasses.replace(VGG5, body=(ConvBlock(3, 3, 128, pool=(2, 4)),)),
            r"body\[0\] pools max \(2, 4\), which the search space cannot draw from pool_axes",
        ),
        (
            dataclasses.replace(VGG5, body=(ConvBlock(3, 3, 96, pool=(2, 2)),)),
            r"body\[0\]\.channels 96 is not among the search space's \[16, 32, 64, 128\]",
        ),
        (
            ArchSpec(
                frontend=(
                    Branch("0.9M", 7, 128, freq_reduce="max"),
                    Branch("0.4M", 7, 128, freq_reduce="mean"),
                ),
                input_norm="none",
            ),
            r"front-end branches reduce frequency differently \(\['max', 'mean'\]\)",
        ),
        (
            dataclasses.replace(VERTICAL, head=Head(time_pooling="max", output_dropout=0.5)),
            r"head\.output_dropout 0\.5 is not among the search space's \[0\.0\]",
        ),
        (
            # a field that is no dimension of any space: the drawn spec tells
            dataclasses.replace(VERTICAL, frontend=(Branch("0.9M", 7, 128, bias=False),)),
            r"frontend\[0\]\.bias is False, but the search space always draws True there",
        ),
    ],
)
def test_params_for_names_what_the_space_cannot_draw(spec: ArchSpec, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SearchSpace(n_mels=64, n_frames=101).params_for(spec)
