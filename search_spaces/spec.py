"""ArchSpec: a frozen, JSON-round-trippable description of one spectrogram CNN.

Axes are always written frequency × time (height × width). The input of every network is a
log-mel spectrogram of shape (batch, 1, n_mels, n_frames). A network is

    input normalisation → front-end branches (concatenated on channels)
                        → body blocks → [dense concatenation] → head

Every field is plain data; ``build_model`` (search_spaces.build) is the only place that maps a
spec to torch layers and ``validate`` (search_spaces.validate) the only place that checks shapes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast, get_args

from search_spaces.errors import SpecError, excerpt

SCHEMA_VERSION = 1

# Size limits of a spec, checked before any work (parsing, tracing, building): far above every
# preset and search space, far below what would take minutes to trace or cost (2,000 blocks
# took 125 s in `fsnas cost`). One table, documented in docs/reliability.md.
MAX_SPEC_JSON_CHARS = 1_000_000
MAX_FRONTEND_BRANCHES = 64
MAX_BODY_BLOCKS = 64
MAX_CONVS_PER_BLOCK = 16
MAX_HIDDEN_LAYERS = 16
MAX_CHANNELS = 65_536  # conv channels and dense units
MAX_NAME_CHARS = 200

Height: TypeAlias = int | str
"""A filter height: an int (mel bins) or a string ``"<fraction>M"`` relative to n_mels."""

FreqReduce = Literal["max", "mean", "none"]
Padding = Literal["same", "valid"]
PoolType = Literal["max", "avg"]
InputNorm = Literal["none", "bn", "per_band_bn"]
ActivationOrder = Literal["conv_bn_relu", "conv_relu_bn"]
TimePooling = Literal["max", "mean", "max+mean", "max_mean_concat", "none"]

_RELATIVE_HEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*M\s*$")


def resolve_height(height: Height, n_mels: int, where: str = "height") -> int:
    """Return the height in mel bins: ints pass through, ``"0.4M"`` gives ``int(0.4 * n_mels)``.

    Raises:
        SpecError: the value is neither an int nor a ``"<fraction>M"`` string.
    """
    if isinstance(height, bool):
        raise SpecError(f"{where}: expected an int or '<fraction>M', got {excerpt(height)}")
    if isinstance(height, int):
        return height
    if isinstance(height, str):
        match = _RELATIVE_HEIGHT.match(height)
        if match:
            # int() truncation matches the reference code (musicnn: int(0.4 * yInput)).
            return int(float(match.group(1)) * n_mels)
    raise SpecError(
        f"{where}: expected an int or '<fraction>M' (e.g. '0.4M'), got {excerpt(height)}"
    )


@dataclass(frozen=True)
class Branch:
    """One front-end branch: a conv of ``height × width`` filters applied to the input.

    ``freq_reduce`` pools over *all* remaining frequency positions after the conv (``max`` is
    Pons' pitch invariance); with ``none`` the branch keeps its frequency axis.
    """

    height: Height
    width: int
    channels: int
    freq_padding: Padding = "valid"
    time_padding: Padding = "same"
    freq_reduce: FreqReduce = "max"
    batch_norm: bool = True
    bias: bool = True


@dataclass(frozen=True)
class ConvBlock:
    """A body block: ``convs`` convolutions, optional residual sum, pooling and dropout.

    The first conv maps to ``channels`` with ``stride``; later convs keep channels, stride 1.
    With ``residual`` the block input is added after the last normalisation (identity when the
    shapes match, otherwise a projection conv with this block's kernel and stride). Pooling of
    size ``pool`` (freq, time) with ``pool_stride`` (default: the size) follows, then dropout.
    Once frequency has been collapsed to 1, a ``1 × w`` block is a temporal 1-D convolution.
    """

    height: Height
    width: int
    channels: int
    stride: tuple[int, int] = (1, 1)
    freq_padding: Padding = "same"
    time_padding: Padding = "same"
    convs: int = 1
    residual: bool = False
    batch_norm: bool = True
    bias: bool = True
    pool: tuple[int, int] = (1, 1)
    pool_stride: tuple[int, int] | None = None
    pool_type: PoolType = "max"
    dropout: float = 0.0


@dataclass(frozen=True)
class Dense:
    """A hidden dense layer of the head: dropout (before), linear, optional BN, ReLU."""

    units: int
    dropout: float = 0.0
    batch_norm: bool = False


@dataclass(frozen=True)
class Head:
    """How the feature map becomes class scores.

    ``freq_reduce`` collapses any remaining frequency positions, then ``time_pooling`` pools over
    time (``max+mean`` sums the two as PANNs do, ``max_mean_concat`` concatenates them as musicnn
    does, ``none`` keeps every position); what remains is flattened, optionally batch-normalised,
    and passed through the hidden dense layers and the output layer (after ``output_dropout``).
    """

    freq_reduce: FreqReduce = "max"
    time_pooling: TimePooling = "max"
    pooled_batch_norm: bool = False
    hidden: tuple[Dense, ...] = ()
    output_dropout: float = 0.0


@dataclass(frozen=True)
class ArchSpec:
    """One network: input normalisation, front-end branches, body blocks and a head.

    ``dense_concat`` feeds the head the channel-wise concatenation of the front-end output and
    every body block's output (the musicnn mid-end), which needs them to share their shape.
    """

    frontend: tuple[Branch, ...] = ()
    body: tuple[ConvBlock, ...] = ()
    head: Head = field(default_factory=Head)
    input_norm: InputNorm = "bn"
    activation_order: ActivationOrder = "conv_bn_relu"
    dense_concat: bool = False
    name: str = ""
    schema_version: int = SCHEMA_VERSION

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        return cast(dict[str, Any], _to_jsonable(dataclasses.asdict(self)))

    def to_json(self, indent: int | None = 2) -> str:
        """Return the spec as a JSON string that ``from_json`` reads back to an equal spec."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Build a spec from a dict; unknown keys or wrong types raise ``SpecError``."""
        if not isinstance(data, Mapping):
            raise SpecError(f"spec: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise SpecError(
                f"spec.schema_version: this fsnas reads version {SCHEMA_VERSION}, "
                f"got {excerpt(version)}"
            )
        check_sizes(data)
        return cast(ArchSpec, _from_mapping(cls, data, "spec"))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse a JSON string; malformed JSON raises ``SpecError`` naming the position."""
        if len(text) > MAX_SPEC_JSON_CHARS:
            raise SpecError(
                f"spec: {len(text):,} characters of JSON > the limit of {MAX_SPEC_JSON_CHARS:,} "
                "(MAX_SPEC_JSON_CHARS); a spec is a few kB"
            )
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError and integers beyond Python's digit limit
            raise SpecError(f"spec: invalid JSON ({exc})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ArchSpec:
        """Return a copy with ``changes`` applied (a frozen dataclass cannot be edited)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        """Return a one-line human summary, e.g. ``F[57x7x128 max] | B[3x3x32 p2x2]x5 | max``."""
        parts: list[str] = []
        if self.frontend:
            fe = " ".join(
                f"{b.height}x{b.width}x{b.channels}"
                + ("" if b.freq_reduce == "none" else f" {b.freq_reduce}")
                for b in self.frontend
            )
            parts.append(f"F[{fe}]")
        if self.body:
            blocks: list[str] = []
            for blk in self.body:
                desc = f"{blk.height}x{blk.width}x{blk.channels}"
                if blk.convs > 1:
                    desc += f"*{blk.convs}"
                if blk.residual:
                    desc += " res"
                if blk.pool != (1, 1):
                    desc += f" p{blk.pool[0]}x{blk.pool[1]}"
                blocks.append(desc)
            parts.append("B[" + ", ".join(_compress(blocks)) + "]")
        parts.append(self.head.time_pooling)
        return " | ".join(parts)


def _over(what: str, count: int, limit: int, name: str) -> SpecError:
    return SpecError(f"{what}: {count:,} > the limit of {limit:,} ({name})")


def check_sizes(data: Mapping[str, Any]) -> None:
    """Check the counts and lengths of a spec's raw dict against the limits, before parsing.

    Raises:
        SpecError: naming the field, its size and the limit (e.g. ``spec.body: 2,000 blocks``).
    """
    limits = (
        ("frontend", "branches", MAX_FRONTEND_BRANCHES, "MAX_FRONTEND_BRANCHES"),
        ("body", "blocks", MAX_BODY_BLOCKS, "MAX_BODY_BLOCKS"),
    )
    for key, unit, limit, name in limits:
        value = data.get(key)
        if isinstance(value, (list, tuple)) and len(value) > limit:
            raise _over(f"spec.{key}: {unit}", len(value), limit, name)
    head = data.get("head")
    hidden = head.get("hidden") if isinstance(head, Mapping) else None
    if isinstance(hidden, (list, tuple)) and len(hidden) > MAX_HIDDEN_LAYERS:
        raise _over("spec.head.hidden: layers", len(hidden), MAX_HIDDEN_LAYERS, "MAX_HIDDEN_LAYERS")
    spec_name = data.get("name")
    if isinstance(spec_name, str) and len(spec_name) > MAX_NAME_CHARS:
        raise SpecError(
            f"spec.name: {len(spec_name):,} characters > the limit of {MAX_NAME_CHARS} "
            f"(MAX_NAME_CHARS): {excerpt(spec_name, 40)}"
        )


def check_limits(spec: ArchSpec) -> None:
    """Check a parsed spec against every size limit (counts, convs, channels, name).

    Raises:
        SpecError: naming the layer, the number and the limit.
    """
    check_sizes({"frontend": spec.frontend, "body": spec.body, "name": spec.name})
    if len(spec.head.hidden) > MAX_HIDDEN_LAYERS:
        raise _over(
            "spec.head.hidden: layers",
            len(spec.head.hidden),
            MAX_HIDDEN_LAYERS,
            "MAX_HIDDEN_LAYERS",
        )
    for i, branch in enumerate(spec.frontend):
        if isinstance(branch.channels, int) and branch.channels > MAX_CHANNELS:
            raise _over(f"frontend[{i}] channels", branch.channels, MAX_CHANNELS, "MAX_CHANNELS")
    for i, block in enumerate(spec.body):
        if isinstance(block.channels, int) and block.channels > MAX_CHANNELS:
            raise _over(f"body[{i}] channels", block.channels, MAX_CHANNELS, "MAX_CHANNELS")
        if isinstance(block.convs, int) and block.convs > MAX_CONVS_PER_BLOCK:
            raise _over(f"body[{i}] convs", block.convs, MAX_CONVS_PER_BLOCK, "MAX_CONVS_PER_BLOCK")
    for i, dense in enumerate(spec.head.hidden):
        if isinstance(dense.units, int) and dense.units > MAX_CHANNELS:
            raise _over(f"head.hidden[{i}] units", dense.units, MAX_CHANNELS, "MAX_CHANNELS")


def _compress(items: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[i]:
            j += 1
        n = j - i + 1
        out.append(items[i] if n == 1 else f"{items[i]} x{n}")
        i = j + 1
    return out


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    return obj


# -- strict typed parsing ---------------------------------------------------------------------
def _from_mapping(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise SpecError(f"{where}: expected an object, got {type(data).__name__} {excerpt(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {excerpt(unknown)}; allowed: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    hints = _type_hints(cls)
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise SpecError(f"{where}: {exc}") from None


_HINT_CACHE: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _HINT_CACHE:
        import typing

        # resolved in the class's own module, so dataclasses defined elsewhere parse too
        _HINT_CACHE[cls] = typing.get_type_hints(cls)
    return _HINT_CACHE[cls]


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting lists to tuples; raise SpecError."""
    import types
    import typing

    origin = typing.get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise SpecError(f"{where}: expected one of {list(args)}, got {excerpt(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(option, value, where)
            except SpecError as exc:
                errors.append(str(exc))
        raise SpecError(
            f"{where}: {excerpt(value)} matches none of the allowed types ({'; '.join(errors)})"
        )
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {excerpt(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(
                f"{where}: expected {len(args)} values, got {len(value)}: {excerpt(value)}"
            )
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if hint is type(None):
        if value is not None:
            raise SpecError(f"{where}: expected null, got {excerpt(value)}")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true/false, got {excerpt(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {excerpt(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {excerpt(value)}")
        try:
            return float(value)
        except OverflowError:
            raise SpecError(f"{where}: number out of range, got {excerpt(value)}") from None
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {excerpt(value)}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _from_mapping(hint, value, where)
    raise SpecError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover
