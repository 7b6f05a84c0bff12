"""Literature architectures as ArchSpecs, each with the input and parameter count of its reference.

Kernels and pools are written frequency × time. Parameter counts include weights, biases and BN
γ/β (not running statistics); ``tests/search_spaces/test_presets.py`` derives each one by hand from
the reference code and checks ``build_model`` against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.errors import SpecError
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Dense, Head


@dataclass(frozen=True)
class Preset:
    """A literature architecture, its one-line source and the input its count refers to."""

    name: str
    spec: ArchSpec
    source: str
    n_mels: int
    n_frames: int
    n_classes: int
    reference_params: int


def _pons_vgg() -> ArchSpec:
    # musicnn-training models_baselines.vgg: conv→ReLU→BN→max-pool→dropout; flatten→dropout→dense
    pools = [((1, 4), (2, 2)), ((2, 2), None), ((2, 2), None), ((2, 2), None), ((4, 4), None)]
    body = tuple(
        ConvBlock(3, 3, 128, pool=pool, pool_stride=stride, dropout=0.25 if i < 4 else 0.0)
        for i, (pool, stride) in enumerate(pools)
    )
    return ArchSpec(
        name="pons_vgg",
        input_norm="bn",
        activation_order="conv_relu_bn",
        body=body,
        head=Head(freq_reduce="none", time_pooling="none", output_dropout=0.5),
    )


def _pons_timbre() -> ArchSpec:
    # musicnn-training models_baselines.timbre: 12 branches (frequency valid, time "same"),
    # max over frequency, then a 32 × (92 features × 8 frames) valid conv = a 1-D conv of width 8
    branches: list[Branch] = []
    for height, filters in (
        ("0.8M", (3, 3, 6, 10)),
        ("0.6M", (5, 5, 10, 15)),
        ("0.2M", (5, 5, 10, 15)),
    ):
        for width, channels in zip((7, 5, 3, 1), filters):
            branches.append(Branch(height, width, channels, freq_reduce="max"))
    return ArchSpec(
        name="pons_timbre",
        input_norm="bn",
        activation_order="conv_relu_bn",
        frontend=tuple(branches),
        body=(ConvBlock(1, 8, 32, time_padding="valid", batch_norm=False, pool=(1, 4)),),
        head=Head(freq_reduce="none", time_pooling="none", hidden=(Dense(100),)),
    )


def _musicnn() -> ArchSpec:
    # musicnn-training MTT_musicnn: front end num_filt 1.6 (timbral int(1.6·128)=204, temporal
    # int(1.6·32)=51), mid-end 64 filters, back end 200 units. The reference mid-end adds the
    # ReLU output to the residual and leaves its bn_conv2/bn_conv3 unused (they still hold
    # parameters); fsnas adds after the BN, the same count with the BN actually applied.
    frontend = (
        Branch("0.4M", 7, 204, freq_reduce="max"),
        Branch("0.7M", 7, 204, freq_reduce="max"),
        Branch(1, 128, 51, freq_padding="same", freq_reduce="max"),
        Branch(1, 64, 51, freq_padding="same", freq_reduce="max"),
        Branch(1, 32, 51, freq_padding="same", freq_reduce="max"),
    )
    body = (
        ConvBlock(1, 7, 64),
        ConvBlock(1, 7, 64, residual=True),
        ConvBlock(1, 7, 64, residual=True),
    )
    return ArchSpec(
        name="musicnn",
        input_norm="bn",
        activation_order="conv_relu_bn",
        frontend=frontend,
        body=body,
        dense_concat=True,
        head=Head(
            freq_reduce="none",
            time_pooling="max_mean_concat",
            pooled_batch_norm=True,
            hidden=(Dense(200, dropout=0.5, batch_norm=True),),
            output_dropout=0.5,
        ),
    )


def _dieleman() -> ArchSpec:
    # musicnn-training models_baselines.dieleman: conv 32 × (all mels × 8) valid, ReLU,
    # max-pool 4 over time, conv 32 × (32 features × 8), max-pool 4, dense 100, dense
    return ArchSpec(
        name="dieleman",
        input_norm="bn",
        activation_order="conv_relu_bn",
        body=(
            ConvBlock(
                "1.0M",
                8,
                32,
                freq_padding="valid",
                time_padding="valid",
                batch_norm=False,
                pool=(1, 4),
            ),
            ConvBlock(1, 8, 32, time_padding="valid", batch_norm=False, pool=(1, 4)),
        ),
        head=Head(freq_reduce="none", time_pooling="none", hidden=(Dense(100),)),
    )


def _won_fcn() -> ArchSpec:
    # sota-music-tagging-models training/model.py FCN with modules.Conv_2d (conv→BN→ReLU→pool)
    channels = (64, 128, 128, 128, 64)
    pools = ((2, 4), (2, 4), (2, 4), (3, 5), (4, 4))
    return ArchSpec(
        name="won_fcn",
        input_norm="bn",
        body=tuple(ConvBlock(3, 3, c, pool=p) for c, p in zip(channels, pools)),
        head=Head(freq_reduce="none", time_pooling="none", output_dropout=0.5),
    )


_SHORT_CHUNK_CHANNELS = (128, 128, 256, 256, 256, 256, 512)


def _won_short_chunk() -> ArchSpec:
    # sota-music-tagging-models training/model.py ShortChunkCNN (n_channels=128)
    return ArchSpec(
        name="won_short_chunk",
        input_norm="bn",
        body=tuple(ConvBlock(3, 3, c, pool=(2, 2)) for c in _SHORT_CHUNK_CHANNELS),
        head=Head(
            freq_reduce="max",
            time_pooling="max",
            hidden=(Dense(512, batch_norm=True),),
            output_dropout=0.5,
        ),
    )


def _won_short_chunk_res() -> ArchSpec:
    # sota-music-tagging-models training/model.py ShortChunkCNN_Res: 7 × Res_2d (stride 2,
    # two 3×3 convs, 3×3 projection shortcut since stride != 1)
    return ArchSpec(
        name="won_short_chunk_res",
        input_norm="bn",
        body=tuple(
            ConvBlock(3, 3, c, stride=(2, 2), convs=2, residual=True) for c in _SHORT_CHUNK_CHANNELS
        ),
        head=Head(
            freq_reduce="max",
            time_pooling="max",
            hidden=(Dense(512, batch_norm=True),),
            output_dropout=0.5,
        ),
    )


def _cnn14() -> ArchSpec:
    # audioset_tagging_cnn pytorch/models.py Cnn14: bn0 per mel bin, 6 × ConvBlock (2 × 3×3 conv
    # without bias → BN → ReLU), 2×2 avg-pool after blocks 1–5, dropout 0.2; mean over frequency,
    # max + mean over time (summed), dropout 0.5, fc1 2048 ReLU, (dropout only on the embedding)
    channels = (64, 128, 256, 512, 1024, 2048)
    body = tuple(
        ConvBlock(
            3,
            3,
            c,
            convs=2,
            bias=False,
            pool=(2, 2) if i < 5 else (1, 1),
            # no pool after block 6: "max" is the canonical type of an absent pool
            pool_type="avg" if i < 5 else "max",
            dropout=0.2,
        )
        for i, c in enumerate(channels)
    )
    return ArchSpec(
        name="cnn14",
        input_norm="per_band_bn",
        body=body,
        head=Head(
            freq_reduce="mean",
            time_pooling="max+mean",
            hidden=(Dense(2048, dropout=0.5),),
        ),
    )


def _pons_cbmi_time() -> ArchSpec:
    # jordipons/CBMI2016 buildArchitecture.timeFrequency, "Time": 32 × (1×60) valid, ReLU,
    # max-pool over all 40 bands, dropout 0.5 → softmax output
    return ArchSpec(
        name="pons_cbmi_time",
        input_norm="none",
        frontend=(Branch(1, 60, 32, time_padding="valid", freq_reduce="max", batch_norm=False),),
        head=Head(freq_reduce="none", time_pooling="none", output_dropout=0.5),
    )


def _pons_cbmi_frequency() -> ArchSpec:
    # jordipons/CBMI2016 buildArchitecture.timeFrequency, "Frequency": 32 × (32×1) valid, ReLU,
    # max-pool over all 80 frames, dropout 0.5 → softmax output
    return ArchSpec(
        name="pons_cbmi_frequency",
        input_norm="none",
        frontend=(Branch(32, 1, 32, time_padding="valid", freq_reduce="none", batch_norm=False),),
        head=Head(freq_reduce="none", time_pooling="max", output_dropout=0.5),
    )


def _pons_cbmi_black_box() -> ArchSpec:
    # jordipons/CBMI2016 buildArchitecture.blackbox (runCBMI2016.py): 32 × (12×8) valid, ReLU,
    # max-pool 4×1 (frequency), dropout 0.5 → dense 200 ReLU, dropout 0.5 → softmax output
    return ArchSpec(
        name="pons_cbmi_black_box",
        input_norm="none",
        body=(
            ConvBlock(
                12,
                8,
                32,
                freq_padding="valid",
                time_padding="valid",
                batch_norm=False,
                pool=(4, 1),
            ),
        ),
        head=Head(
            freq_reduce="none",
            time_pooling="none",
            hidden=(Dense(200, dropout=0.5),),
            output_dropout=0.5,
        ),
    )


_MUSICNN_SRC = "Pons & Serra, musicnn (ISMIR-LBD 2019), jordipons/musicnn-training"


def _build() -> dict[str, Preset]:
    rows = [
        ("pons_vgg", _pons_vgg(), "musicnn-training models_baselines.vgg (128 filters)", 96, 187, 50, 605_748),
        ("pons_timbre", _pons_timbre(), "musicnn-training models_baselines.timbre", 96, 187, 50, 185_856),
        ("musicnn", _musicnn(), _MUSICNN_SRC + " (MTT_musicnn)", 96, 187, 50, 787_159),
        ("dieleman", _dieleman(), "Dieleman & Schrauwen 2014; musicnn-training models_baselines.dieleman", 96, 187, 50, 66_784),
        ("won_fcn", _won_fcn(), "Choi et al. 2016 FCN; minzwon/sota-music-tagging-models FCN", 96, 1813, 50, 447_732),
        ("won_short_chunk", _won_short_chunk(), "Won et al. 2020; sota-music-tagging-models ShortChunkCNN", 128, 231, 50, 3_687_348),
        ("won_short_chunk_res", _won_short_chunk_res(), "Won et al. 2020; sota-music-tagging-models ShortChunkCNN_Res", 128, 231, 50, 12_104_244),
        ("cnn14", _cnn14(), "Kong et al. 2020 PANNs; qiuqiangkong/audioset_tagging_cnn Cnn14", 64, 1001, 527, 80_753_615),
        ("pons_cbmi_time", _pons_cbmi_time(), "Pons, Lidy & Serra, CBMI 2016, Time architecture", 40, 80, 8, 7_336),
        ("pons_cbmi_frequency", _pons_cbmi_frequency(), "Pons, Lidy & Serra, CBMI 2016, Frequency architecture", 40, 80, 8, 3_368),
        ("pons_cbmi_black_box", _pons_cbmi_black_box(), "Pons, Lidy & Serra, CBMI 2016, Black-box baseline", 40, 80, 8, 3_275_312),
    ]  # fmt: skip
    return {
        name: Preset(name, spec, source, m, t, k, params)
        for name, spec, source, m, t, k, params in rows
    }


PRESETS: dict[str, Preset] = _build()


def get_preset(name: str) -> Preset:
    """Return the preset called ``name``.

    Raises:
        SpecError: unknown name (the message lists the known presets).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def list_presets() -> list[Preset]:
    """Return every preset in table order."""
    return list(PRESETS.values())
