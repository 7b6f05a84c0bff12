"""Every literature preset's parameter count equals its reference implementation's.

Each pinned count below is derived by hand, layer by layer, from the published code (cited per
preset). Counting rule: weights + biases + BN γ/β (no running statistics). TensorFlow code
(musicnn-training) lays tensors out as (time, frequency); kernels are rewritten frequency × time.
"""

from __future__ import annotations

import pytest
import torch

from search_spaces import build_model, count_params, validate
from search_spaces.errors import SpecError
from search_spaces.presets import PRESETS, get_preset

# fmt: off
REFERENCE_PARAMS = {
    # jordipons/musicnn-training src/models_baselines.py vgg(num_filters=128) (models.py model 2,
    # "605k params"); 96 mel × 187 frames, 50 tags.
    #   input BN                                   2
    #   conv1 3×3, 1→128:       9·128 + 128   = 1,280    BN 256
    #   conv2..5 3×3, 128→128:  4 × (9·128·128 + 128) = 4 × 147,584 = 590,336    BN 4 × 256
    #   pools (freq×time): 1×4 stride 2×2 → 48×92; 2×2 → 24×46, 12×23, 6×11; 4×4 → 1×2
    #   flatten 1·2·128 = 256 → dense 50:  256·50 + 50 = 12,850
    #   2 + 1,280 + 256 + 590,336 + 1,024 + 12,850 = 605,748
    "pons_vgg": 605_748,
    # models_baselines.timbre(num_filt=1) (model 3, "185k params"); 96 × 187, 50 tags.
    #   input BN 2
    #   height int(0.8·96)=76, widths 7,5,3,1 → 3,3,6,10 filters:
    #     76·(7·3 + 5·3 + 3·6 + 1·10) + 22 = 76·64 + 22 = 4,886;  BN 2·22 = 44
    #   height int(0.6·96)=57, widths 7,5,3,1 → 5,5,10,15:
    #     57·(35 + 25 + 30 + 15) + 35 = 57·105 + 35 = 6,020;  BN 70
    #   height int(0.2·96)=19, same filters: 19·105 + 35 = 2,030;  BN 70
    #   concat 22+35+35 = 92 features; conv 32 × (8 frames × 92): 8·92·32 + 32 = 23,584
    #   time 187 → 180 (valid 8) → 45 (max-pool 4); flatten 45·32 = 1,440
    #   dense 100: 1,440·100 + 100 = 144,100;  output 100·50 + 50 = 5,050
    #   2 + 4,886 + 44 + 6,020 + 70 + 2,030 + 70 + 23,584 + 144,100 + 5,050 = 185,856
    "pons_timbre": 185_856,
    # musicnn-training models.py model 11 (MTT_musicnn, "787k params"): models_frontend
    # musically_motivated_cnns(num_filt=1.6, '7774timbraltemporal'), models_midend.dense_cnns(64),
    # models_backend.temporal_pooling(50, 200, 'globalpool'); 96 × 187, 50 tags.
    #   input BN 2
    #   timbral int(1.6·128)=204 filters, 7 frames × int(0.4·96)=38: 38·7·204 + 204 = 54,468; BN 408
    #   timbral 204 × (7 × int(0.7·96)=67):                         67·7·204 + 204 = 95,880; BN 408
    #   temporal int(1.6·32)=51 filters × (128, 64, 32 frames × 1 band):
    #     (128 + 64 + 32)·51 + 3·51 = 11,577;  BN 3·102 = 306
    #   front end 204+204+3·51 = 561 channels
    #   mid-end conv1d 7 × 561 → 64: 7·561·64 + 64 = 251,392;  BN 128
    #   conv1d 7 × 64 → 64, twice: 2 × 28,736 = 57,472;  BN 2 × 128 (the reference creates bn_conv2
    #     and bn_conv3; its residual sums the ReLU output, fsnas the BN output — same count)
    #   dense concat 561 + 3·64 = 753; max and mean over time → 1,506;  BN 3,012
    #   dense 200: 1,506·200 + 200 = 301,400;  BN 400;  output 200·50 + 50 = 10,050
    #   2 + 54,468 + 408 + 95,880 + 408 + 11,577 + 306 + 251,392 + 128 + 57,472 + 256
    #     + 3,012 + 301,400 + 400 + 10,050 = 787,159
    "musicnn": 787_159,
    # models_baselines.dieleman (model 0, "66k params"); 96 × 187, 50 tags.
    #   input BN 2
    #   conv1 32 × (8 frames × 96 bands) valid: 8·96·32 + 32 = 24,608; time 187 → 180 → pool 4 → 45
    #   reshape puts the 32 filters on the frequency axis; conv2 32 × (8 × 32): 8·32·32 + 32 = 8,224
    #   time 45 → 38 → pool 4 → 9; flatten 9·32 = 288
    #   dense 100: 288·100 + 100 = 28,900;  output 100·50 + 50 = 5,050
    #   2 + 24,608 + 8,224 + 28,900 + 5,050 = 66,784
    "dieleman": 66_784,
    # minzwon/sota-music-tagging-models training/model.py FCN with modules.Conv_2d (3×3, pad 1,
    # BN, ReLU, max-pool); 96 × 1813, 50 tags.
    #   spec_bn 2
    #   layer1 1→64:    9·64 + 64 = 640;          BN 128
    #   layer2 64→128:  9·64·128 + 128 = 73,856;  BN 256
    #   layer3/4 128→128: 2 × 147,584 = 295,168;  BN 512
    #   layer5 128→64:  9·128·64 + 64 = 73,792;   BN 128
    #   pools (2,4),(2,4),(2,4),(3,5),(4,4): 96×1813 → 48×453 → 24×113 → 12×28 → 4×5 → 1×1
    #   dense 64 → 50: 3,250
    #   2 + 640 + 128 + 73,856 + 256 + 295,168 + 512 + 73,792 + 128 + 3,250 = 447,732
    "won_fcn": 447_732,
    # sota-music-tagging-models ShortChunkCNN(n_channels=128), Conv_2d pooling 2; 128 × 231, 50.
    #   spec_bn 2
    #   layer1 1→128: 1,280, BN 256;  layer2 128→128: 147,584, BN 256
    #   layer3 128→256: 9·128·256 + 256 = 295,168, BN 512
    #   layer4..6 256→256: 3 × 590,080 = 1,770,240, BN 3 × 512
    #   layer7 256→512: 9·256·512 + 512 = 1,180,160, BN 1,024
    #   128×231 → 1×1 after seven 2×2 pools; global max → 512
    #   dense1 512·512 + 512 = 262,656; BN1d 1,024; dense2 512·50 + 50 = 25,650
    #   2 + 1,536 + 147,840 + 295,680 + 1,771,776 + 1,181,184 + 262,656 + 1,024 + 25,650
    #     = 3,687,348
    "won_short_chunk": 3_687_348,
    # sota-music-tagging-models ShortChunkCNN_Res(n_channels=128), modules.Res_2d(stride=2):
    # conv_1 (stride 2) + bn_1, conv_2 + bn_2, and since stride != 1 a 3×3 stride-2 projection
    # conv_3 + bn_3; 128 × 231, 50 tags.
    #   spec_bn 2
    #   layer1 1→128:   1,280 + 147,584 + 1,280 + 3·256            = 150,912
    #   layer2 128→128: 3 × 147,584 + 3·256                         = 443,520
    #   layer3 128→256: 295,168 + 590,080 + 295,168 + 3·512         = 1,181,952
    #   layer4..6 256→256: 3 × (3 × 590,080 + 3·512)                = 5,315,328
    #   layer7 256→512: 1,180,160 + 2,359,808 + 1,180,160 + 3·1,024 = 4,723,200
    #   dense1 262,656 + BN1d 1,024 + dense2 25,650                 = 289,330
    #   2 + 150,912 + 443,520 + 1,181,952 + 5,315,328 + 4,723,200 + 289,330 = 12,104,244
    "won_short_chunk_res": 12_104_244,
    # qiuqiangkong/audioset_tagging_cnn pytorch/models.py Cnn14 (ConvBlock: two 3×3 convs without
    # bias, each BN + ReLU); 64 mel × 1001 frames, 527 classes. Frozen STFT/mel weights not counted.
    #   bn0 over 64 mel bins: 128
    #   block (c_in→c): 9·c_in·c + 9·c·c + 4·c
    #     1→64: 37,696;  64→128: 221,696;  128→256: 885,760;  256→512: 3,540,992
    #     512→1024: 14,159,872;  1024→2048: 56,631,296
    #   fc1 2048·2048 + 2048 = 4,196,352;  fc_audioset 2048·527 + 527 = 1,079,823
    #   128 + 75,477,312 + 4,196,352 + 1,079,823 = 80,753,615
    "cnn14": 80_753_615,
    # jordipons/CBMI2016 buildArchitecture.timeFrequency + runCBMI2016.py "TIME": Conv2DLayer
    # 32 × (1×60), MaxPool2DLayer (40,1), dropout → softmax DenseLayer; 40 mel × 80 frames, 8.
    #   conv 60·32 + 32 = 1,952; output 32 × 1 × 21 (80 − 60 + 1) = 672 → 672·8 + 8 = 5,384
    #   1,952 + 5,384 = 7,336 (Pons, Lidy & Serra 2016, Table 1: 7,336)
    "pons_cbmi_time": 7_336,
    # same, "FREQUENCY": 32 × (32×1), MaxPool2DLayer (1,80).
    #   conv 32·32 + 32 = 1,056; output 32 × 9 (40 − 32 + 1) × 1 = 288 → 288·8 + 8 = 2,312
    #   1,056 + 2,312 = 3,368 (paper: 3,368)
    "pons_cbmi_frequency": 3_368,
    # buildArchitecture.blackbox + runCBMI2016.py "BLACK-BOX": 32 × (12×8), MaxPool2DLayer (4,1),
    # dropout → dense 200 ReLU, dropout → softmax 8.
    #   conv 12·8·32 + 32 = 3,104; 40×80 → 29×73 → pool 4×1 (floor) → 7×73
    #   flatten 32·7·73 = 16,352 → 16,352·200 + 200 = 3,270,600; output 200·8 + 8 = 1,608
    #   3,104 + 3,270,600 + 1,608 = 3,275,312 (paper: 3,275,312)
    "pons_cbmi_black_box": 3_275_312,
}
# fmt: on


def test_every_preset_has_a_hand_derived_count() -> None:
    assert set(PRESETS) == set(REFERENCE_PARAMS)


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_preset_parameter_count_matches_reference(name: str) -> None:
    preset = get_preset(name)
    model = build_model(preset.spec, preset.n_mels, preset.n_frames, preset.n_classes)
    assert count_params(model) == REFERENCE_PARAMS[name]
    assert preset.reference_params == REFERENCE_PARAMS[name]


def test_issue_pins_for_pons_vgg_and_timbre() -> None:
    for name, count in (("pons_vgg", 605_748), ("pons_timbre", 185_856)):
        preset = get_preset(name)
        assert (preset.n_mels, preset.n_frames, preset.n_classes) == (96, 187, 50)
        model = build_model(preset.spec, 96, 187, 50)
        assert count_params(model) == count


def test_preset_inputs_match_their_references() -> None:
    inputs = {name: (p.n_mels, p.n_frames, p.n_classes) for name, p in PRESETS.items()}
    assert inputs == {
        "pons_vgg": (96, 187, 50),
        "pons_timbre": (96, 187, 50),
        "musicnn": (96, 187, 50),
        "dieleman": (96, 187, 50),
        "won_fcn": (96, 1813, 50),
        "won_short_chunk": (128, 231, 50),
        "won_short_chunk_res": (128, 231, 50),
        "cnn14": (64, 1001, 527),
        "pons_cbmi_time": (40, 80, 8),
        "pons_cbmi_frequency": (40, 80, 8),
        "pons_cbmi_black_box": (40, 80, 8),
    }


def test_reference_shapes_along_the_way() -> None:
    """The intermediate shapes quoted in the derivations are the ones fsnas computes."""
    shapes = {
        lay.name: (lay.channels, lay.freq, lay.time)
        for lay in validate(get_preset("pons_vgg").spec, 96, 187).layers
    }
    assert shapes["body[0]"] == (128, 48, 92)
    assert shapes["body[4]"] == (128, 1, 2)
    fcn = validate(get_preset("won_fcn").spec, 96, 1813)
    assert [(x.freq, x.time) for x in fcn.layers if x.name.startswith("body")] == [
        (48, 453),
        (24, 113),
        (12, 28),
        (4, 5),
        (1, 1),
    ]
    black_box = validate(get_preset("pons_cbmi_black_box").spec, 40, 80)
    assert black_box.head_in_features == 32 * 7 * 73
    musicnn = validate(get_preset("musicnn").spec, 96, 187)
    assert musicnn.head_in_features == 2 * 753


@pytest.mark.parametrize("name", ["pons_cbmi_time", "pons_cbmi_frequency", "pons_vgg"])
def test_small_presets_run_forward(name: str) -> None:
    preset = get_preset(name)
    model = build_model(preset.spec, preset.n_mels, preset.n_frames, preset.n_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, preset.n_mels, preset.n_frames))
    assert out.shape == (2, preset.n_classes)


def test_every_preset_has_a_source_and_round_trips() -> None:
    for preset in PRESETS.values():
        assert preset.source.strip()
        assert type(preset.spec).from_json(preset.spec.to_json()) == preset.spec


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="pons_vgg"):
        get_preset("vgg_nope")
