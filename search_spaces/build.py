"""build_model: the only place that maps an ArchSpec to torch layers.

One small module per block kind (the way minzwon/sota-music-tagging-models reads). Padding is
always explicit integers (fvcore counts ``padding="same"`` convs as zero FLOPs); even "same"
kernels get TensorFlow's asymmetric split through a ``ZeroPad2d``.
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.errors import SpecError
from search_spaces.spec import ActivationOrder, ArchSpec, Branch, ConvBlock, Head, Padding
from search_spaces.validate import same_padding, validate


def _padded_conv(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[Padding, Padding],
    bias: bool,
) -> nn.Module:
    """Return a Conv2d (with a ZeroPad2d before it when "same" padding is asymmetric)."""
    pads = [same_padding(k) if p == "same" else (0, 0) for k, p in zip(kernel, padding)]
    (f_before, f_after), (t_before, t_after) = pads
    if f_before == f_after and t_before == t_after:
        return nn.Conv2d(
            c_in, c_out, kernel, stride=stride, padding=(f_before, t_before), bias=bias
        )
    return nn.Sequential(
        nn.ZeroPad2d((t_before, t_after, f_before, f_after)),
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0, bias=bias),
    )


def _norm(channels: int, enabled: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if enabled else nn.Identity()


class InputNorm(nn.Module):
    """BatchNorm on the input: one channel (``bn``) or one per mel band (``per_band_bn``)."""

    def __init__(self, kind: str, n_mels: int) -> None:
        super().__init__()
        self.per_band = kind == "per_band_bn"
        self.bn = nn.BatchNorm2d(n_mels if self.per_band else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_band:  # (B, 1, M, T) -> (B, M, 1, T): normalise each band, as PANNs' bn0
            return self.bn(x.transpose(1, 2)).transpose(1, 2)
        return self.bn(x)


class FrontendBranch(nn.Module):
    """Conv of one filter shape → BN/ReLU → optional reduction over all frequency positions."""

    def __init__(self, branch: Branch, height: int, order: ActivationOrder) -> None:
        super().__init__()
        self.conv = _padded_conv(
            1,
            branch.channels,
            (height, branch.width),
            (1, 1),
            (branch.freq_padding, branch.time_padding),
            branch.bias,
        )
        self.norm = _norm(branch.channels, branch.batch_norm)
        self.relu = nn.ReLU()
        self.order = order
        self.freq_reduce = branch.freq_reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.relu(self.norm(x)) if self.order == "conv_bn_relu" else self.norm(self.relu(x))
        if self.freq_reduce == "max":
            return x.amax(dim=2, keepdim=True)
        if self.freq_reduce == "mean":
            return x.mean(dim=2, keepdim=True)
        return x


class Frontend(nn.Module):
    """Parallel branches concatenated on channels."""

    def __init__(self, branches: list[FrontendBranch]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class Block(nn.Module):
    """``convs`` × (conv → BN/ReLU), residual sum after the last BN, pooling, dropout."""

    def __init__(self, block: ConvBlock, c_in: int, height: int, order: ActivationOrder) -> None:
        super().__init__()
        kernel = (height, block.width)
        padding = (block.freq_padding, block.time_padding)
        convs = [_padded_conv(c_in, block.channels, kernel, block.stride, padding, block.bias)]
        convs += [
            _padded_conv(block.channels, block.channels, kernel, (1, 1), padding, block.bias)
            for _ in range(block.convs - 1)
        ]
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(_norm(block.channels, block.batch_norm) for _ in convs)
        self.relu = nn.ReLU()
        self.order = order
        self.shortcut: nn.Module | None = None
        if block.residual:
            if c_in == block.channels and block.stride == (1, 1):
                self.shortcut = nn.Identity()
            else:  # projection with the block's own kernel and stride (Won's Res_2d)
                self.shortcut = nn.Sequential(
                    _padded_conv(c_in, block.channels, kernel, block.stride, padding, block.bias),
                    _norm(block.channels, block.batch_norm),
                )
        pool_stride = block.pool_stride or block.pool
        self.pool: nn.Module = nn.Identity()
        if block.pool != (1, 1) or tuple(pool_stride) != (1, 1):
            pool_cls = nn.MaxPool2d if block.pool_type == "max" else nn.AvgPool2d
            self.pool = pool_cls(kernel_size=block.pool, stride=pool_stride)
        self.dropout = nn.Dropout(block.dropout) if block.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            out = conv(out)
            if self.order == "conv_bn_relu":
                out = norm(out)
                if i == last and self.shortcut is not None:
                    out = out + self.shortcut(x)
                out = self.relu(out)
            else:
                out = norm(self.relu(out))
                if i == last and self.shortcut is not None:
                    out = out + self.shortcut(x)
        return self.dropout(self.pool(out))


class HeadModule(nn.Module):
    """Frequency reduction → time pooling → flatten → [BN] → hidden dense layers → output."""

    def __init__(self, head: Head, in_features: int, n_classes: int, order: ActivationOrder):
        super().__init__()
        self.freq_reduce = head.freq_reduce
        self.time_pooling = head.time_pooling
        self.pooled_norm: nn.Module = (
            nn.BatchNorm1d(in_features) if head.pooled_batch_norm else nn.Identity()
        )
        layers: list[nn.Module] = []
        features = in_features
        for dense in head.hidden:
            if dense.dropout > 0:
                layers.append(nn.Dropout(dense.dropout))
            layers.append(nn.Linear(features, dense.units))
            norm = nn.BatchNorm1d(dense.units) if dense.batch_norm else nn.Identity()
            if order == "conv_bn_relu":
                layers += [norm, nn.ReLU()]
            else:
                layers += [nn.ReLU(), norm]
            features = dense.units
        if head.output_dropout > 0:
            layers.append(nn.Dropout(head.output_dropout))
        layers.append(nn.Linear(features, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.freq_reduce == "max":
            x = x.amax(dim=2, keepdim=True)
        elif self.freq_reduce == "mean":
            x = x.mean(dim=2, keepdim=True)
        if self.time_pooling == "max":
            x = x.amax(dim=3, keepdim=True)
        elif self.time_pooling == "mean":
            x = x.mean(dim=3, keepdim=True)
        elif self.time_pooling == "max+mean":
            x = x.amax(dim=3, keepdim=True) + x.mean(dim=3, keepdim=True)
        elif self.time_pooling == "max_mean_concat":
            x = torch.cat([x.amax(dim=3, keepdim=True), x.mean(dim=3, keepdim=True)], dim=1)
        return self.mlp(self.pooled_norm(torch.flatten(x, 1)))


class SpectrogramCNN(nn.Module):
    """A network built from an ArchSpec; input (batch, 1, n_mels, n_frames) → logits."""

    def __init__(self, spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int) -> None:
        super().__init__()
        shapes = validate(spec, n_mels, n_frames)
        self.spec = spec
        self.input_shape = (1, n_mels, n_frames)
        self.n_classes = n_classes
        order = spec.activation_order
        self.input_norm: nn.Module = (
            nn.Identity() if spec.input_norm == "none" else InputNorm(spec.input_norm, n_mels)
        )
        self.frontend: nn.Module | None = None
        channels = 1
        if spec.frontend:
            self.frontend = Frontend(
                [
                    FrontendBranch(br, h, order)
                    for br, h in zip(spec.frontend, shapes.frontend_heights)
                ]
            )
            channels = sum(br.channels for br in spec.frontend)
        blocks = []
        for blk, h in zip(spec.body, shapes.body_heights):
            blocks.append(Block(blk, channels, h, order))
            channels = blk.channels
        self.body = nn.ModuleList(blocks)
        self.dense_concat = spec.dense_concat
        self.head = HeadModule(spec.head, shapes.head_in_features, n_classes, order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        x = self.input_norm(x)
        if self.frontend is not None:
            x = self.frontend(x)
        outputs = [x] if self.frontend is not None else []
        for block in self.body:
            x = block(x)
            outputs.append(x)
        if self.dense_concat:
            x = torch.cat(outputs, dim=1)
        return self.head(x)


def build_model(spec: ArchSpec, n_mels: int, n_frames: int, n_classes: int) -> SpectrogramCNN:
    """Return the torch module for ``spec`` on ``n_mels × n_frames`` input with ``n_classes``.

    Raises:
        SpecError: the spec does not fit the input (see ``validate``).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise SpecError(f"n_classes must be an integer >= 1, got {n_classes!r}")
    return SpectrogramCNN(spec, n_mels, n_frames, n_classes)


def count_params(model: nn.Module) -> int:
    """Return the number of trainable parameters (weights, biases, BN γ/β; no BN statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
