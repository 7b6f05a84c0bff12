"""SpaceAround: the designs a few one-step moves from a design, the design included.

Every design of a preset's own space round-trips through ``params_for`` (each single move, and
random draws of up to three), differs from the preset in at most ``max_moves`` settings, and
fits the preset's reference input.
"""

from __future__ import annotations

import itertools

import optuna
import pytest

from search_spaces import PRESETS, ArchSpec, Branch, ConvBlock, Head, SpaceAround, validate
from search_spaces.around import (
    KERNEL_NOTCHES,
    WIDTH_NOTCHES,
    Move,
    apply_moves,
    changed_settings,
    height_notches,
    moves_around,
    notches,
    pool_moves,
)
from search_spaces.errors import SpecError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _around(name: str, **kwargs: int) -> SpaceAround:
    preset = PRESETS[name]
    return SpaceAround(preset.spec, n_mels=preset.n_mels, n_frames=preset.n_frames, **kwargs)


def test_a_notch_is_the_neighbouring_value() -> None:
    assert notches(8, KERNEL_NOTCHES) == [7, 9]
    assert notches(1, KERNEL_NOTCHES) == [2]
    assert notches(32, WIDTH_NOTCHES) == [24, 48]
    assert notches(204, WIDTH_NOTCHES) == [192, 256]
    assert height_notches("0.8M") == ["0.7M", "0.9M"]
    assert height_notches("1.0M") == ["0.9M"]
    assert height_notches("0.25M") == ["0.2M", "0.3M"]
    assert height_notches(12) == [9, 16]
    assert pool_moves(ConvBlock(3, 3, 8, pool=(2, 4))) == [(2, 1), (1, 4), (1, 1)]
    assert pool_moves(ConvBlock(3, 3, 8)) == [(2, 2), (2, 1), (1, 2)]
    assert pool_moves(ConvBlock(1, 8, 8, pool=(1, 4)), time_only=True) == [(1, 1)]


def test_moves_of_pons_timbre() -> None:
    moves = moves_around(PRESETS["pons_timbre"].spec)
    labels = [m.label for m in moves]
    assert labels[:6] == [
        "frontend[0].height=0.7M",
        "frontend[0].height=0.9M",
        "frontend[0].width=5",
        "frontend[0].width=9",
        "frontend[0].channels=2",
        "frontend[0].channels=4",
    ]
    # after the front end's max over frequency, a block has no height to move and pools time
    assert labels[-10:] == [
        "body[0].width=7",
        "body[0].width=9",
        "body[0].channels=24",
        "body[0].channels=48",
        "body[0].pool=1x1",
        "body[0].pool_type=avg",
        "head.hidden[0].units=96",
        "head.hidden[0].units=128",
        "depth=0",
        "depth=2",
    ]
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_design_and_each_single_move_round_trip(name: str) -> None:
    space = _around(name)
    design = PRESETS[name].spec
    assert space.params_for(design) == {"n_moves": 0}
    assert space.sample(optuna.trial.FixedTrial({"n_moves": 0})) == design.replace(name="")
    fitting = 0
    for move in space.moves:
        spec = apply_moves(design, [move])
        try:
            validate(spec, space.n_mels or 0, space.n_frames or 0)
        except SpecError:
            # a move that does not fit the input is skipped: the draw is the design itself
            drawn = space.sample(optuna.trial.FixedTrial({"n_moves": 1, "move0": move.label}))
            assert drawn == design.replace(name=""), move.label
            continue
        fitting += 1
        assert changed_settings(design, spec) == [move.setting]
        assert space.params_for(spec) == {"n_moves": 1, "move0": move.label}
    assert fitting >= len(space.moves) // 2


@pytest.mark.parametrize("name", list(PRESETS))
def test_random_designs_of_the_space_round_trip_and_differ_in_few_settings(name: str) -> None:
    space = _around(name)
    design = PRESETS[name].spec
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    counts = []
    for _ in range(40):
        trial = study.ask()
        spec = space.sample(trial)
        validate(spec, space.n_mels or 0, space.n_frames or 0)
        counts.append(len(changed_settings(design, spec)))
        assert counts[-1] <= space.max_moves
        params = space.params_for(spec)
        assert space.sample(optuna.trial.FixedTrial(params)) == spec
        assert params["n_moves"] == counts[-1]
        study.tell(trial, 0.0)
    # not vacuous: the draws include the design and designs of several moves
    assert 0 in counts and max(counts) >= 2, counts


def test_pairs_of_moves_round_trip_in_either_order() -> None:
    space = _around("pons_cbmi_black_box", max_moves=2)
    design = space.design
    for first, second in itertools.permutations(space.moves, 2):
        drawn = space.sample(
            optuna.trial.FixedTrial({"n_moves": 2, "move0": first.label, "move1": second.label})
        )
        params = space.params_for(drawn)
        assert space.sample(optuna.trial.FixedTrial(params)) == drawn
        assert params["n_moves"] == len(changed_settings(design, drawn)) <= 2


def test_grid_space_matches_what_sample_asks() -> None:
    space = SpaceAround(PRESETS["dieleman"].spec, max_moves=2)
    grid = space.grid_space()
    assert grid["n_moves"] == [0, 1, 2] and grid["move0"] == grid["move1"] == space.labels
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        space.sample(trial)
        for name, distribution in trial.distributions.items():
            if isinstance(distribution, optuna.distributions.CategoricalDistribution):
                assert list(distribution.choices) == grid[name]
        study.tell(trial, 0.0)


def test_what_is_not_near_the_design_is_named() -> None:
    space = _around("pons_timbre")
    design = space.design
    two_notches = apply_moves(design, [Move("body[0].channels", 64)])
    message = r"body\[0\]\.channels 64 is not one step from the design's 32; .*\.channels=24"
    with pytest.raises(SpecError, match=message):
        space.params_for(two_notches)
    far = apply_moves(
        design,
        [
            Move("frontend[0].width", 5),
            Move("frontend[1].width", 3),
            Move("frontend[2].width", 1),
            Move("body[0].width", 7),
        ],
    )
    with pytest.raises(SpecError, match=r"differs from the design in 4 settings .* at most 3"):
        space.params_for(far)
    relu_after = design.replace(activation_order="conv_bn_relu")
    with pytest.raises(SpecError, match=r"activation_order is 'conv_bn_relu', the design's "):
        space.params_for(relu_after)
    wider_head = design.replace(
        head=Head(freq_reduce="none", time_pooling="max", hidden=design.head.hidden)
    )
    with pytest.raises(SpecError, match=r"head\.time_pooling is 'max', the design's 'none'"):
        space.params_for(wider_head)


def test_the_design_must_fit_the_input_and_have_something_to_move() -> None:
    won_fcn = PRESETS["won_fcn"].spec
    with pytest.raises(SpecError, match=r"'won_fcn': the design does not fit the input 64 x 101"):
        SpaceAround(won_fcn, n_mels=64, n_frames=101)
    with pytest.raises(SpecError, match=r"max_moves must be 1 to 6, got 7"):
        SpaceAround(PRESETS["pons_timbre"].spec, max_moves=7)
    with pytest.raises(SpecError, match=r"max_moves must be 1 to 6, got 0"):
        SpaceAround(won_fcn, max_moves=0)
    tiny = ArchSpec(frontend=(Branch(1, 1, 1),))
    assert [m.label for m in SpaceAround(tiny).moves] == [
        "frontend[0].height=2",
        "frontend[0].width=2",
        "frontend[0].channels=2",
    ]
    # an unbound space skips nothing: every move is kept
    far_pool = SpaceAround(PRESETS["pons_vgg"].spec).sample(
        optuna.trial.FixedTrial({"n_moves": 1, "move0": "depth=6"})
    )
    assert len(far_pool.body) == 6 and far_pool.body[5].pool == (1, 1)
