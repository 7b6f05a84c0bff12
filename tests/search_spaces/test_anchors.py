"""The anchor networks of DESIGN.md and the vgg-to-vertical walk, from their one definition."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search_spaces import ArchSpec, Branch, ConvBlock, Head, build_model, count_params, validate
from search_spaces.anchors import (
    MUSICNN_FRONT_SHAPES,
    VERTICAL_HEAD,
    VGG_HEAD,
    design_anchors,
    musicnn_like_front,
    receptive_field_height,
    vertical_anchor,
    vertical_spec,
    vgg_anchor,
    vgg_spec,
    vgg_to_vertical_walk,
)
from search_spaces.errors import SpecError


def test_vgg_anchor_is_five_3x3_128_channel_blocks_with_2x2_max_pools() -> None:
    spec = vgg_anchor(5, 128)
    assert spec == ArchSpec(
        name="vgg5_c128",
        input_norm="none",
        body=tuple(ConvBlock(3, 3, 128, pool=(2, 2)) for _ in range(5)),
        head=Head(freq_reduce="max", time_pooling="max"),
    )
    assert spec.frontend == ()
    for block in spec.body:
        assert (block.height, block.width, block.channels) == (3, 3, 128)
        assert (block.pool, block.pool_type, block.freq_padding) == ((2, 2), "max", "same")


def test_vertical_anchor_is_one_0_9m_x7_layer_max_pooled_over_frequency() -> None:
    spec = vertical_anchor(7)
    assert spec.name == "vertical_0.9M_x7_c128"
    assert spec.body == ()
    assert spec.frontend == (Branch("0.9M", 7, 128, freq_reduce="max"),)
    branch = spec.frontend[0]
    assert (branch.freq_padding, branch.time_padding) == ("valid", "same")
    assert spec.head == Head(freq_reduce="none", time_pooling="max") == VERTICAL_HEAD
    assert spec.input_norm == "none"
    assert validate(spec, 64, 101).frontend_heights == (57,)  # int(0.9 × 64)


def test_design_anchors_are_the_table_rows_in_order() -> None:
    names = [s.name for s in design_anchors()]
    assert names == [
        "vgg5_c128",
        "vgg3_c64",
        "vertical_0.9M_x1_c128",
        "vertical_0.9M_x7_c128",
        "musicnn_like_front",
    ]
    front = musicnn_like_front()
    assert [(b.height, b.width, b.channels) for b in front.frontend] == [
        (h, w, 64) for h, w in MUSICNN_FRONT_SHAPES
    ]
    assert [(b.height, b.width) for b in front.frontend] == [
        ("0.4M", 7),
        ("0.7M", 7),
        (1, 33),
        (1, 65),
        (1, 129),
    ]


def test_design_anchors_have_the_design_md_parameter_counts() -> None:
    # 64 mel × 101 frames, 10 classes; BN has γ and β per channel, the head one dense layer.
    # VGG(5, 128): conv 1→128 (9·128 + 128), then 4 × conv 128→128 (9·128² + 128), 5 × BN 256
    # VGG(3, 64): conv 1→64 (9·64 + 64), then 2 × conv 64→64 (9·64² + 64), 3 × BN 128
    # vertical 0.9M (57 bins) × w, 128 ch: 57·w·128 + 128, BN 256, dense 128→10
    # musicnn-like: 25×7, 44×7, 1×33, 1×65, 1×129 (64 ch each), 5 × BN 128, dense 320→10
    musicnn_convs = sum(h * w * 64 + 64 for h, w in ((25, 7), (44, 7), (1, 33), (1, 65), (1, 129)))
    expected = {
        "vgg5_c128": 9 * 128 + 128 + 4 * (9 * 128 * 128 + 128) + 5 * 256 + 128 * 10 + 10,
        "vgg3_c64": 9 * 64 + 64 + 2 * (9 * 64 * 64 + 64) + 3 * 128 + 64 * 10 + 10,
        "vertical_0.9M_x1_c128": 57 * 128 + 128 + 256 + 128 * 10 + 10,
        "vertical_0.9M_x7_c128": 57 * 7 * 128 + 128 + 256 + 128 * 10 + 10,
        "musicnn_like_front": musicnn_convs + 5 * 128 + 320 * 10 + 10,
    }
    # DESIGN.md's table: 594 k, 76 k, 9 k, 53 k, 50 k
    assert expected == {
        "vgg5_c128": 594_186,
        "vgg3_c64": 75_530,
        "vertical_0.9M_x1_c128": 8_970,
        "vertical_0.9M_x7_c128": 52_746,
        "musicnn_like_front": 49_610,
    }
    for spec in design_anchors():
        assert count_params(build_model(spec, 64, 101, 10)) == expected[spec.name], spec.name


def test_vgg_spec_clips_its_pools_to_the_input() -> None:
    unclipped = vgg_spec(5, 8)
    assert [b.pool for b in unclipped.body] == [(2, 2)] * 5
    with pytest.raises(SpecError):
        validate(unclipped, 8, 8)
    clipped = vgg_spec(5, 8, input_shape=(8, 8))
    # 8 → 4 → 2 → 1: the last two pools have nothing left to halve
    assert [b.pool for b in clipped.body] == [(2, 2), (2, 2), (2, 2), (1, 1), (1, 1)]
    validate(clipped, 8, 8)
    # on 64 × 101 nothing is clipped: the walk's VGG is the anchor VGG's network
    assert vgg_spec(5, 128, input_shape=(64, 101)).body == vgg_anchor(5, 128).body


def test_a_tall_first_filter_is_valid_over_frequency() -> None:
    spec = vgg_spec(3, 4, first_height=29, width=7)
    assert [(b.height, b.width, b.freq_padding) for b in spec.body] == [
        (29, 7, "valid"),
        (3, 7, "same"),
        (3, 7, "same"),
    ]


def test_receptive_field_height_of_a_vgg() -> None:
    # a 3-high conv after k 2×2 pools adds 2·2^k rows, a pool 2^k: 1 + 2·31 + 15 = 78
    assert receptive_field_height(vgg_spec(5, 8), 64) == 78
    assert receptive_field_height(vgg_spec(1, 8), 64) == 3
    assert receptive_field_height(vgg_spec(2, 8, first_height=57), 64) == 57 + 1 + 2 * 2


def test_walk_goes_from_the_anchor_vgg_to_the_anchor_vertical_layer() -> None:
    steps = vgg_to_vertical_walk(64, 101, channels=128)
    assert [(s.name, s.depth, s.frequency_height, s.width) for s in steps] == [
        ("vgg5 3x3", 5, 3, 3),
        ("depth4 29x3", 4, 29, 3),
        ("depth3 49x3", 3, 49, 3),
        ("depth2 57x3", 2, 57, 3),
        ("vertical 0.9Mx3", 1, 57, 3),
        ("vertical 0.9Mx7", 1, 57, 7),
    ]
    assert all(s.spec.name == s.name for s in steps)
    # the same networks as the anchors, with the walk's input norm and one head throughout
    assert steps[0].spec.replace(name="", input_norm="none") == vgg_anchor(5, 128).replace(name="")
    assert steps[-1].spec.frontend == vertical_anchor(7).frontend
    assert steps[-1].spec == vertical_spec([("0.9M", 7)], 128, head=VGG_HEAD, name=steps[-1].name)
    assert {s.spec.head for s in steps} == {VGG_HEAD}


def test_importing_anchors_does_not_import_torch() -> None:
    code = "import sys, search_spaces.anchors; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
