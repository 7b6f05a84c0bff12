"""Shape checking of an ArchSpec against an input size, before anything is built or trained.

``trace`` walks the network with plain integer arithmetic and returns every layer's output shape;
``validate`` raises ``SpecError`` naming the first layer that cannot work and its numbers.
The output-size rules here are the ones ``build_model`` implements (one place for each rule):

* conv, ``same`` padding: ``ceil(n / stride)`` (symmetric ``k // 2`` padding for odd kernels as in
  PyTorch references, TensorFlow's asymmetric split for even kernels);
* conv, ``valid`` padding: ``(n - k) // stride + 1``, needs ``n >= k``;
* pooling: ``(n - size) // stride + 1`` (floor), needs ``n >= size``;
* a filter taller than the input (``n_mels``) is refused whatever its padding: ``same`` would
  pad it with more zero rows than the spectrogram has, so most of its weights never see data.

Before any shape arithmetic, ``trace`` checks the spec's size limits (``spec.check_limits``).
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.spec import ArchSpec, Padding, SpecError, check_limits, resolve_height


@dataclass(frozen=True)
class LayerShape:
    """Output shape (channels, freq, time) of one named layer of a traced network."""

    name: str
    channels: int
    freq: int
    time: int


@dataclass(frozen=True)
class Trace:
    """Every layer's output shape plus the resolved front-end/body kernel heights."""

    layers: tuple[LayerShape, ...]
    frontend_heights: tuple[int, ...]
    body_heights: tuple[int, ...]
    head_in_features: int

    @property
    def final(self) -> LayerShape:
        return self.layers[-1]


def same_padding(kernel: int) -> tuple[int, int]:
    """Return (before, after) zero padding that makes a stride-1 conv keep the axis length."""
    total = kernel - 1
    return total // 2, total - total // 2


def conv_out(n: int, kernel: int, stride: int, padding: Padding) -> int:
    """Return the output length of a conv along one axis (see module docstring)."""
    if padding == "same":
        return -(-n // stride)
    return (n - kernel) // stride + 1


def pool_out(n: int, size: int, stride: int) -> int:
    """Return the output length of a pooling window along one axis (floor mode)."""
    return (n - size) // stride + 1


def _padding_note(padding: Padding) -> str:
    if padding != "same":
        return ""
    return "; 'same' padding cannot make a filter taller than the input fit (use a smaller height)"


def _positive(value: object, where: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{where} must be an integer >= {minimum}, got {value!r}")


def _probability(value: float, where: str) -> None:
    if not 0.0 <= value < 1.0:
        raise SpecError(f"{where} must be in [0, 1), got {value!r}")


def trace(spec: ArchSpec, n_mels: int, n_frames: int) -> Trace:
    """Return the shape of every layer for an input of ``n_mels × n_frames``.

    Raises:
        SpecError: a layer does not fit (message names the layer and the numbers).
    """
    check_limits(spec)
    _positive(n_mels, "input n_mels")
    _positive(n_frames, "input n_frames")
    layers: list[LayerShape] = [LayerShape("input", 1, n_mels, n_frames)]
    channels, freq, time = 1, n_mels, n_frames

    frontend_heights: list[int] = []
    if spec.frontend:
        outs: list[LayerShape] = []
        for i, br in enumerate(spec.frontend):
            where = f"frontend[{i}]"
            height = resolve_height(br.height, n_mels, f"{where}.height")
            _positive(height, f"{where} height ({br.height!r} on {n_mels} mels)")
            _positive(br.width, f"{where} width")
            _positive(br.channels, f"{where} channels")
            if height > freq:
                # 'same' cannot be honoured either: the padding would outgrow the input
                raise SpecError(
                    f"{where} filter height {height} > input frequency {freq} (n_mels)"
                    + _padding_note(br.freq_padding)
                )
            if br.time_padding == "valid" and br.width > time:
                raise SpecError(f"{where} filter width {br.width} > input time {time} (n_frames)")
            f_out = conv_out(freq, height, 1, br.freq_padding)
            t_out = conv_out(time, br.width, 1, br.time_padding)
            if br.freq_reduce != "none":
                f_out = 1
            frontend_heights.append(height)
            outs.append(LayerShape(where, br.channels, f_out, t_out))
        shapes = {(o.freq, o.time) for o in outs}
        if len(shapes) > 1:
            listing = ", ".join(f"{o.name}: {o.freq}x{o.time}" for o in outs)
            raise SpecError(
                "frontend branches must produce the same (freq x time) to be concatenated, got "
                f"{listing}; use time_padding 'same' and freq_reduce (or freq_padding 'same')"
            )
        layers.extend(outs)
        channels = sum(o.channels for o in outs)
        freq, time = outs[0].freq, outs[0].time
        layers.append(LayerShape("frontend", channels, freq, time))

    body_heights: list[int] = []
    for i, blk in enumerate(spec.body):
        where = f"body[{i}]"
        height = resolve_height(blk.height, n_mels, f"{where}.height")
        _positive(height, f"{where} kernel height ({blk.height!r})")
        _positive(blk.width, f"{where} kernel width")
        _positive(blk.channels, f"{where} channels")
        _positive(blk.convs, f"{where} convs")
        for axis, s in zip(("freq", "time"), blk.stride):
            _positive(s, f"{where} stride ({axis})")
        for axis, p in zip(("freq", "time"), blk.pool):
            _positive(p, f"{where} pool size ({axis})")
        if blk.pool_stride is not None:
            for axis, p in zip(("freq", "time"), blk.pool_stride):
                _positive(p, f"{where} pool stride ({axis})")
        _probability(blk.dropout, f"{where} dropout")
        if blk.freq_padding == "valid" and height > freq:
            raise SpecError(f"{where} kernel height {height} > remaining frequency {freq}")
        if height > n_mels:
            raise SpecError(
                f"{where} kernel height {height} > input frequency {n_mels} (n_mels)"
                + _padding_note(blk.freq_padding)
            )
        if blk.time_padding == "valid" and blk.width > time:
            raise SpecError(f"{where} kernel width {blk.width} > remaining time {time}")
        f_out = conv_out(freq, height, blk.stride[0], blk.freq_padding)
        t_out = conv_out(time, blk.width, blk.stride[1], blk.time_padding)
        for _ in range(blk.convs - 1):
            if blk.freq_padding == "valid" and height > f_out:
                raise SpecError(f"{where} kernel height {height} > remaining frequency {f_out}")
            if blk.time_padding == "valid" and blk.width > t_out:
                raise SpecError(f"{where} kernel width {blk.width} > remaining time {t_out}")
            f_out = conv_out(f_out, height, 1, blk.freq_padding)
            t_out = conv_out(t_out, blk.width, 1, blk.time_padding)
        if blk.residual and "valid" in (blk.freq_padding, blk.time_padding):
            raise SpecError(f"{where} residual blocks need 'same' padding on both axes")
        pool_stride = blk.pool_stride or blk.pool
        if blk.pool[0] > f_out:
            raise SpecError(
                f"{where} pool size {blk.pool[0]} over frequency > remaining frequency {f_out}"
            )
        if blk.pool[1] > t_out:
            raise SpecError(f"{where} pool size {blk.pool[1]} over time > remaining time {t_out}")
        f_out = pool_out(f_out, blk.pool[0], pool_stride[0])
        t_out = pool_out(t_out, blk.pool[1], pool_stride[1])
        body_heights.append(height)
        channels, freq, time = blk.channels, f_out, t_out
        layers.append(LayerShape(where, channels, freq, time))

    if spec.dense_concat:
        pieces = [lay for lay in layers if lay.name == "frontend" or lay.name.startswith("body[")]
        if not spec.body:
            raise SpecError("dense_concat needs at least one body block")
        shapes = {(p.freq, p.time) for p in pieces}
        if len(shapes) > 1:
            listing = ", ".join(f"{p.name}: {p.freq}x{p.time}" for p in pieces)
            raise SpecError(f"dense_concat needs equal (freq x time) everywhere, got {listing}")
        channels = sum(p.channels for p in pieces)
        layers.append(LayerShape("dense_concat", channels, freq, time))

    head = spec.head
    if head.freq_reduce != "none":
        freq = 1
    if head.time_pooling == "max_mean_concat":
        channels, time = 2 * channels, 1
    elif head.time_pooling != "none":
        time = 1
    features = channels * freq * time
    layers.append(LayerShape("head.pool", channels, freq, time))
    for i, dense in enumerate(head.hidden):
        _positive(dense.units, f"head.hidden[{i}] units")
        _probability(dense.dropout, f"head.hidden[{i}] dropout")
    _probability(head.output_dropout, "head.output_dropout")
    return Trace(tuple(layers), tuple(frontend_heights), tuple(body_heights), features)


def validate(spec: ArchSpec, n_mels: int, n_frames: int) -> Trace:
    """Check that ``spec`` builds for ``n_mels × n_frames`` input; return its shape trace.

    Raises:
        SpecError: naming the first layer that does not fit, e.g.
            ``body[3] kernel height 5 > remaining frequency 3``.
    """
    if not spec.frontend and not spec.body:
        raise SpecError("spec has neither frontend branches nor body blocks")
    return trace(spec, n_mels, n_frames)
