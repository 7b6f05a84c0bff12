"""Receptive fields pinned to hand-derived values (search_spaces.receptive)."""

from __future__ import annotations

from search_spaces import ArchSpec, Branch, ConvBlock, receptive_field
from search_spaces.anchors import vertical_anchor, vgg_anchor


def test_five_block_vgg_at_64_mels_sees_the_whole_axis_only_in_block_5() -> None:
    # By hand, per axis (r = field, j = jump): a 3-wide conv adds 2j, a 2x2 pool adds j and
    # doubles j. Block 1: 1+2=3, pool 4 (j=2); block 2: 4+4=8, pool 10 (j=4); block 3: 10+8=18,
    # pool 22 (j=8); block 4: 22+16=38, pool 46 (j=16); block 5: 46+32=78, pool 94 (j=32).
    field = receptive_field(vgg_anchor(5, 128), 64, 101)
    assert [b.nominal_freq_bins for b in field.blocks] == [4, 10, 22, 46, 94]
    assert [b.nominal_time_frames for b in field.blocks] == [4, 10, 22, 46, 94]
    assert [b.freq_bins for b in field.blocks] == [4, 10, 22, 46, 64]  # clipped to the input
    assert [b.whole_freq for b in field.blocks] == [False, False, False, False, True]
    assert field.whole_freq_block == "body[4]" and field.whole_freq_depth == 5
    assert field.to_dict()["receptive_time_frames"] == 94


def test_a_three_block_vgg_never_sees_the_whole_axis() -> None:
    field = receptive_field(vgg_anchor(3, 64), 64, 101)
    assert field.final.freq_bins == 22
    assert field.whole_freq_block is None and field.whole_freq_depth is None


def test_one_vertical_layer_sees_the_whole_axis_at_once() -> None:
    # 0.9M at 64 mels = int(57.6) = 57 bins per filter; the max over frequency makes each unit
    # depend on all 64 bins; in time it sees its width.
    for width in (1, 7):
        field = receptive_field(vertical_anchor(width), 64, 101)
        (block,) = field.blocks
        assert (block.nominal_freq_bins, block.freq_bins) == (57, 64)
        assert block.time_frames == width
        assert field.whole_freq_block == "frontend" and field.whole_freq_depth == 1


def test_without_frequency_reduction_a_tall_filter_sees_only_its_height() -> None:
    spec = ArchSpec(frontend=(Branch(40, 3, 8, freq_reduce="none"),))
    field = receptive_field(spec, 64, 101)
    assert field.final.freq_bins == 40 and not field.final.whole_freq
    assert field.whole_freq_block is None


def test_strides_repeated_convs_and_pool_strides_compound() -> None:
    # conv 5 stride 2: 1+4=5, j=2; second conv 5: 5+8=13; pool 3 stride 1: 13+4=17 (j=2);
    # next block conv 3: 17+4=21, pool 1: 21.
    spec = ArchSpec(
        body=(
            ConvBlock(5, 5, 8, stride=(2, 2), convs=2, pool=(3, 3), pool_stride=(1, 1)),
            ConvBlock(3, 3, 8),
        )
    )
    field = receptive_field(spec, 64, 101)
    assert [b.nominal_freq_bins for b in field.blocks] == [17, 21]
    assert [b.nominal_time_frames for b in field.blocks] == [17, 21]
