"""ArchSpec JSON round trip, strict parsing, validate's messages, and build_model per block kind.

The forward tests compare the shape of every front-end and body output of the built torch module
with the shape ``validate`` traced for it, so the two places that know output-size rules agree.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from search_spaces import (
    ArchSpec,
    Branch,
    ConvBlock,
    Dense,
    Head,
    LayerShape,
    build_model,
    count_params,
    validate,
)
from search_spaces.errors import FsnasError, SpecError

torch.set_num_threads(1)

FULL = ArchSpec(
    name="everything",
    input_norm="per_band_bn",
    activation_order="conv_relu_bn",
    frontend=(
        Branch("0.4M", 7, 8),
        Branch(1, 32, 4, freq_padding="same", freq_reduce="mean", bias=False),
    ),
    body=(
        ConvBlock(1, 7, 12),
        ConvBlock(1, 7, 12, residual=True, dropout=0.1),
    ),
    dense_concat=True,
    head=Head(
        freq_reduce="none",
        time_pooling="max_mean_concat",
        pooled_batch_norm=True,
        hidden=(Dense(20, dropout=0.5, batch_norm=True), Dense(10)),
        output_dropout=0.25,
    ),
)


# -- JSON ---------------------------------------------------------------------------------------
def test_json_round_trip_restores_an_equal_spec() -> None:
    text = FULL.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert data["frontend"][0]["height"] == "0.4M"
    assert data["body"][1]["pool"] == [1, 1]
    again = ArchSpec.from_json(text)
    assert again == FULL
    assert isinstance(again.body[0].pool, tuple) and isinstance(again.head.hidden, tuple)
    assert ArchSpec.from_dict({}) == ArchSpec()


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    data = FULL.to_dict()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["body", 0, "kernel"], 3, r"spec\.body\[0\]: unknown key\(s\) \['kernel'\]"),
        (["frontend", 1, "channels"], "4", r"spec\.frontend\[1\]\.channels: expected an integer"),
        (["frontend", 1, "channels"], True, r"spec\.frontend\[1\]\.channels.*True"),
        (["frontend", 0, "freq_reduce"], "median", r"freq_reduce: expected one of.*'median'"),
        (["frontend", 0, "height"], 0.4, r"spec\.frontend\[0\]\.height: 0\.4 matches none"),
        (["body", 0, "pool"], [2, 2, 2], r"spec\.body\[0\]\.pool: expected 2 values, got 3"),
        (["body", 0, "residual"], 1, r"spec\.body\[0\]\.residual: expected true/false, got 1"),
        (["head", "hidden"], {"units": 3}, r"spec\.head\.hidden: expected a list"),
        (["head", "time_pooling"], "avg", r"spec\.head\.time_pooling.*'avg'"),
        (["input_norm"], "layer_norm", r"spec\.input_norm.*'layer_norm'"),
        (["schema_version"], 2, r"version 1, got 2"),
    ],
)
def test_strict_parsing_names_the_key_and_the_value(
    path: list[Any], value: Any, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(_mutated(path, value))


def test_parsing_rejects_missing_fields_bad_json_and_non_objects() -> None:
    data = FULL.to_dict()
    del data["frontend"][0]["width"]
    with pytest.raises(SpecError, match=r"spec\.frontend\[0\].*width"):
        ArchSpec.from_dict(data)
    with pytest.raises(SpecError, match="invalid JSON"):
        ArchSpec.from_json('{"body": [')
    with pytest.raises(SpecError, match="expected a JSON object, got list"):
        ArchSpec.from_json("[]")
    assert issubclass(SpecError, FsnasError)


# -- validate -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (
            ArchSpec(frontend=(Branch(120, 1, 8),)),
            (96, 187),
            r"frontend\[0\] filter height 120 > input frequency 96",
        ),
        (
            ArchSpec(frontend=(Branch("0.001M", 1, 8),)),
            (96, 187),
            r"frontend\[0\] height \('0\.001M' on 96 mels\).*got 0",
        ),
        (
            ArchSpec(frontend=(Branch(1, 200, 8, time_padding="valid"),)),
            (96, 187),
            r"frontend\[0\] filter width 200 > input time 187",
        ),
        (
            ArchSpec(
                body=(
                    ConvBlock(3, 3, 8, pool=(2, 2)),
                    ConvBlock(3, 3, 8, pool=(2, 2)),
                    ConvBlock(3, 3, 8, pool=(2, 2)),
                    ConvBlock(5, 3, 8, freq_padding="valid"),
                )
            ),
            (24, 40),
            r"body\[3\] kernel height 5 > remaining frequency 3",
        ),
        (
            ArchSpec(body=(ConvBlock(3, 3, 8, pool=(4, 1)), ConvBlock(3, 3, 8, pool=(4, 1)))),
            (8, 40),
            r"body\[1\] pool size 4 over frequency > remaining frequency 2",
        ),
        (
            ArchSpec(body=(ConvBlock(3, 3, 8, pool=(1, 0)),)),
            (8, 40),
            r"body\[0\] pool size \(time\) must be an integer >= 1, got 0",
        ),
        (
            ArchSpec(frontend=(Branch(3, 3, 8, freq_reduce="none"), Branch(5, 3, 8))),
            (32, 40),
            r"frontend branches must produce the same.*frontend\[0\]: 30x40, frontend\[1\]: 1x40",
        ),
        (
            ArchSpec(body=(ConvBlock(3, 3, 8, residual=True, time_padding="valid"),)),
            (32, 40),
            r"body\[0\] residual blocks need 'same' padding",
        ),
        (
            ArchSpec(
                frontend=(Branch(3, 3, 8),),
                body=(ConvBlock(1, 3, 8, pool=(1, 2)),),
                dense_concat=True,
            ),
            (32, 40),
            r"dense_concat needs equal \(freq x time\).*frontend: 1x40, body\[0\]: 1x20",
        ),
        (
            ArchSpec(body=(ConvBlock(3, 3, 8, dropout=1.0),)),
            (32, 40),
            r"body\[0\] dropout must be in \[0, 1\), got 1\.0",
        ),
        (ArchSpec(), (32, 40), "neither frontend branches nor body blocks"),
        (ArchSpec(body=(ConvBlock(3, 3, 8),)), (0, 40), "input n_mels must be an integer >= 1"),
    ],
)
def test_validate_names_the_layer_and_the_numbers(
    spec: ArchSpec, shape: tuple[int, int], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        validate(spec, *shape)
    with pytest.raises(SpecError, match=message):
        build_model(spec, *shape, 3)


def test_build_model_rejects_bad_class_counts() -> None:
    with pytest.raises(SpecError, match="n_classes must be an integer >= 1, got 0"):
        build_model(ArchSpec(body=(ConvBlock(3, 3, 8),)), 16, 16, 0)


# -- build_model: forward shapes per block kind ------------------------------------------------
def _run(spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int = 5) -> nn.Module:
    """Build, run a batch of 3 and check every traced shape against the real tensors."""
    model = build_model(spec, n_mels, n_frames, n_classes)
    traced = {layer.name: layer for layer in validate(spec, n_mels, n_frames).layers}
    seen: dict[str, tuple[int, ...]] = {}

    def keep(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            seen[name] = tuple(output.shape)

        return hook

    if model.frontend is not None:
        model.frontend.register_forward_hook(keep("frontend"))
    for i, block in enumerate(model.body):
        block.register_forward_hook(keep(f"body[{i}]"))
    model.train()
    out = model(torch.randn(3, 1, n_mels, n_frames))
    assert out.shape == (3, n_classes)
    out.sum().backward()  # every built path is differentiable
    for name, shape in seen.items():
        layer = traced[name]
        assert shape == (3, layer.channels, layer.freq, layer.time), name
    return model


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_branches_with_frequency_reduction(reduce: str) -> None:
    spec = ArchSpec(
        frontend=(Branch("0.9M", 1, 6, freq_reduce=reduce), Branch(3, 5, 4, freq_reduce=reduce)),
    )
    _run(spec, 40, 30)
    assert LayerShape("frontend", 10, 1, 30) in validate(spec, 40, 30).layers


def test_branch_frequency_reduction_values() -> None:
    x = torch.arange(2 * 6 * 4, dtype=torch.float32).reshape(2, 1, 6, 4)
    for reduce, expected in (("max", x.amax(dim=2)), ("mean", x.mean(dim=2))):
        # a 1×1 conv with weight 1, bias 0 and no BN passes the input through unchanged
        spec = ArchSpec(
            input_norm="none",
            frontend=(Branch(1, 1, 1, freq_reduce=reduce, batch_norm=False),),
            head=Head(freq_reduce="none", time_pooling="none"),
        )
        model = build_model(spec, 6, 4, 4)
        branch = model.frontend.branches[0]  # type: ignore[union-attr]
        with torch.no_grad():
            branch.conv.weight.fill_(1.0)
            branch.conv.bias.zero_()
            assert torch.equal(model.frontend(x).squeeze(1), expected)  # type: ignore[misc]


def test_branches_without_reduction_keep_frequency_with_same_padding() -> None:
    spec = ArchSpec(
        frontend=(
            Branch(5, 3, 4, freq_padding="same", freq_reduce="none"),
            Branch(8, 4, 2, freq_padding="same", freq_reduce="none"),  # even: asymmetric pad
        ),
        head=Head(freq_reduce="mean", time_pooling="max"),
    )
    _run(spec, 20, 17)
    assert validate(spec, 20, 17).final.name == "head.pool"
    assert [(lay.freq, lay.time) for lay in validate(spec, 20, 17).layers[1:3]] == [
        (20, 17),
        (20, 17),
    ]


@pytest.mark.parametrize("pool_type", ["max", "avg"])
@pytest.mark.parametrize(
    ("pool", "pool_stride", "stride", "expected"),
    [
        ((2, 1), None, (1, 1), (12, 21)),  # frequency only
        ((1, 3), None, (1, 1), (24, 7)),  # time only
        ((2, 2), None, (2, 1), (6, 10)),  # both, after a stride-2 conv over frequency
        ((1, 4), (2, 2), (1, 1), (12, 9)),  # Pons' 1×4 window with stride 2×2
    ],
)
def test_conv_blocks_pool_per_axis(
    pool_type: str,
    pool: tuple[int, int],
    pool_stride: tuple[int, int] | None,
    stride: tuple[int, int],
    expected: tuple[int, int],
) -> None:
    block = ConvBlock(3, 3, 4, stride=stride, pool=pool, pool_stride=pool_stride,
                      pool_type=pool_type)  # type: ignore[arg-type]  # fmt: skip
    spec = ArchSpec(body=(block,))
    model = _run(spec, 24, 21)
    body0 = validate(spec, 24, 21).layers[1]
    assert (body0.freq, body0.time) == expected
    pool_cls = nn.MaxPool2d if pool_type == "max" else nn.AvgPool2d
    assert isinstance(model.body[0].pool, pool_cls)


def test_two_conv_block_and_conv_relu_bn_order() -> None:
    spec = ArchSpec(
        activation_order="conv_relu_bn",
        body=(ConvBlock(3, 3, 6, convs=2, bias=False, pool=(2, 2), dropout=0.2),),
    )
    model = _run(spec, 16, 16)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.bias is None for c in convs] == [True, True]
    # 9·6 + 9·6·6 (two convs, no bias) + 2 × 12 (BN) + input BN 2 + head 6·5 + 5
    assert count_params(model) == 54 + 324 + 24 + 2 + 35


def test_residual_identity_and_projection() -> None:
    identity = ArchSpec(body=(ConvBlock(3, 3, 8), ConvBlock(3, 3, 8, residual=True, convs=2)))
    model = _run(identity, 16, 20)
    assert isinstance(model.body[1].shortcut, nn.Identity)

    projection = ArchSpec(body=(ConvBlock(3, 3, 8, stride=(2, 2), convs=2, residual=True),))
    model = _run(projection, 16, 20)
    shortcut = model.body[0].shortcut
    assert isinstance(shortcut, nn.Sequential)
    assert shortcut[0].stride == (2, 2)
    # Won's Res_2d(1, 8, stride 2): conv_1 9·8+8, conv_2 9·8·8+8, conv_3 9·8+8, 3 BN × 16
    assert count_params(model) == 80 + 584 + 80 + 48 + 2 + 8 * 5 + 5


def test_temporal_conv_after_frequency_collapse() -> None:
    spec = ArchSpec(
        frontend=(Branch("0.5M", 5, 16),),
        body=(ConvBlock(1, 7, 8, pool=(1, 2)), ConvBlock(1, 4, 8)),  # even width: TF "same"
    )
    model = _run(spec, 32, 50)
    assert [
        (lay.freq, lay.time) for lay in validate(spec, 32, 50).layers if "body" in lay.name
    ] == [
        (1, 25),
        (1, 25),
    ]
    conv = model.body[0].convs[0]
    assert conv.kernel_size == (1, 7) and conv.in_channels == 16


def test_dense_concat_feeds_the_head_every_output() -> None:
    spec = ArchSpec(
        frontend=(Branch("0.4M", 7, 10), Branch(1, 9, 6, freq_padding="same")),
        body=(ConvBlock(1, 7, 4), ConvBlock(1, 7, 4, residual=True)),
        dense_concat=True,
        head=Head(freq_reduce="none", time_pooling="max_mean_concat"),
    )
    model = _run(spec, 20, 30)
    assert validate(spec, 20, 30).head_in_features == 2 * (16 + 4 + 4)
    assert model.head.mlp[-1].in_features == 48


@pytest.mark.parametrize(
    ("time_pooling", "features"),
    [("max", 8), ("mean", 8), ("max+mean", 8), ("max_mean_concat", 16), ("none", 8 * 6)],
)
def test_head_time_pooling(time_pooling: str, features: int) -> None:
    spec = ArchSpec(
        body=(ConvBlock(3, 3, 8, pool=(2, 2)),),
        head=Head(freq_reduce="max", time_pooling=time_pooling),  # type: ignore[arg-type]
    )
    model = _run(spec, 10, 12)
    assert validate(spec, 10, 12).head_in_features == features
    assert model.head.mlp[-1].in_features == features


def test_head_max_plus_mean_sums_the_two() -> None:
    spec = ArchSpec(
        input_norm="none",
        frontend=(Branch(1, 1, 1, batch_norm=False, freq_reduce="max"),),
        head=Head(time_pooling="max+mean"),
    )
    model = build_model(spec, 1, 4, 1)
    with torch.no_grad():
        model.frontend.branches[0].conv.weight.fill_(1.0)  # type: ignore[union-attr]
        model.frontend.branches[0].conv.bias.zero_()  # type: ignore[union-attr]
        model.head.mlp[-1].weight.fill_(1.0)
        model.head.mlp[-1].bias.zero_()
        x = torch.tensor([[[[1.0, 2.0, 3.0, 6.0]]]])
        assert model(x).item() == pytest.approx(6.0 + 3.0)


def test_hidden_dense_with_bn_dropout_and_pooled_bn() -> None:
    spec = ArchSpec(
        body=(ConvBlock(3, 3, 8),),
        head=Head(
            pooled_batch_norm=True,
            hidden=(Dense(12, dropout=0.5, batch_norm=True), Dense(6)),
            output_dropout=0.5,
        ),
    )
    model = _run(spec, 8, 8)
    kinds = [type(m).__name__ for m in model.head.mlp]
    assert kinds == [
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "ReLU",
        "Linear",
        "Identity",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert isinstance(model.head.pooled_norm, nn.BatchNorm1d)
    # input BN 2 + conv 80 + BN 16 + pooled BN 16 + 8·12+12 + BN 24 + 12·6+6 + 6·5+5
    assert count_params(model) == 2 + 80 + 16 + 16 + 108 + 24 + 78 + 35


@pytest.mark.parametrize(("input_norm", "bn_params"), [("none", 0), ("bn", 2), ("per_band_bn", 40)])
def test_input_normalisation(input_norm: str, bn_params: int) -> None:
    spec = ArchSpec(input_norm=input_norm, body=(ConvBlock(3, 3, 4),))  # type: ignore[arg-type]
    model = _run(spec, 20, 10)
    assert count_params(model) == bn_params + (9 * 4 + 4) + 8 + (4 * 5 + 5)


def test_per_band_bn_normalises_each_mel_band_separately() -> None:
    spec = ArchSpec(input_norm="per_band_bn", body=(ConvBlock(3, 3, 4),))
    model = build_model(spec, 6, 50, 2).train()
    x = torch.randn(16, 1, 6, 50) * torch.arange(1, 7).view(1, 1, 6, 1) + 5
    normalised = model.input_norm(x)
    per_band = normalised.permute(2, 0, 1, 3).reshape(6, -1)  # (band, everything else)
    assert torch.allclose(per_band.mean(dim=1), torch.zeros(6), atol=1e-4)
    assert torch.allclose(per_band.std(dim=1), torch.ones(6), atol=1e-2)
