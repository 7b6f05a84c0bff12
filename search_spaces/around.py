"""SpaceAround: the designs near one design, for a search that stays close to a known model.

A *setting* of a design is one thing a step can change: a branch's or a block's height, width or
channels, a block's pooling axes or pooling type, the head's dense units, and the depth. A
*move* sets one setting one step away:

* heights, widths: the neighbouring notch of ``KERNEL_NOTCHES`` (``8`` → ``7`` or ``9``);
  relative heights by ``0.1M`` (``"0.8M"`` → ``"0.7M"`` or ``"0.9M"``, at most ``"1.0M"``);
* channels and dense units: the neighbouring notch of ``WIDTH_NOTCHES`` (``32`` → ``24``, ``48``);
* pooling axes: a pooled block pools over the other axes or not at all (``2×4`` → ``2×1``, ``1×4``
  or none; the sizes are kept, the pool stride becomes the size); an unpooled one gets a 2×2,
  2×1 or 1×2 pool; pooling type: ``max`` ↔ ``avg``;
* depth: one block fewer (the last) or more (a copy of the last block, without its pool).

The space is every design reached by at most ``max_moves`` moves on different settings, the
design itself included (zero moves): ``n_moves`` is asked, then ``move0``, ``move1``, ... each
one of ``SpaceAround.labels`` (e.g. ``"frontend[3].height=0.9M"``). The moves are the design's
own, whatever the input; with the input bound (``n_mels``, ``n_frames``), a move that would make
the design not fit is skipped, so every sample validates. Pure data, like ``SearchSpace``: the
same ``sample``, ``params_for`` and ``grid_space``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from search_spaces.errors import SpecError
from search_spaces.spec import ArchSpec, ConvBlock, Height, resolve_height
from search_spaces.validate import validate

if TYPE_CHECKING:
    import optuna

KERNEL_NOTCHES: tuple[int, ...] = (1, 2, 3, 5, 7, 9, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
"""The ladder a filter height or width in bins/frames steps along (odd sizes for small kernels)."""
WIDTH_NOTCHES: tuple[int, ...] = (
    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536,
    2048, 3072, 4096,
)  # fmt: skip
"""The ladder channels and dense units step along (powers of two and the halves between)."""
RELATIVE_NOTCHES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 11))
"""The fractions of ``n_mels`` a relative height (``"0.8M"``) steps along."""
DEFAULT_MAX_MOVES = 3
"""How many settings a design of the space may differ in, by default."""
MAX_MOVES = 6
"""The most ``max_moves`` may be: ``params_for`` tries the orderings of a design's moves."""


@dataclass(frozen=True)
class Move:
    """One setting of the design (``body[2].channels``) set to one neighbouring value."""

    setting: str
    value: Any

    @property
    def label(self) -> str:
        """Return the move as the trial parameter shows it, e.g. ``body[0].pool=2x1``."""
        value = self.value
        if isinstance(value, tuple):
            value = "x".join(str(v) for v in value)
        return f"{self.setting}={value}"


def notches(value: int, ladder: tuple[int, ...]) -> list[int]:
    """Return the ladder values just below and just above ``value`` (one or two)."""
    below = [v for v in ladder if v < value]
    above = [v for v in ladder if v > value]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def height_notches(height: Height) -> list[Height]:
    """Return the neighbouring heights: ints along ``KERNEL_NOTCHES``, ``"0.8M"`` by 0.1M."""
    if isinstance(height, int):
        return list(notches(height, KERNEL_NOTCHES))
    fraction = resolve_height(height, 1000) / 1000  # checks the syntax; exact to 0.001
    below = [f for f in RELATIVE_NOTCHES if f < fraction - 1e-9]
    above = [f for f in RELATIVE_NOTCHES if f > fraction + 1e-9]
    picked = ([below[-1]] if below else []) + ([above[0]] if above else [])
    return [f"{f:.1f}M" for f in picked]


def pool_moves(block: ConvBlock, time_only: bool = False) -> list[tuple[int, int]]:
    """Return the pools of a changed pooling axis: other axes with the same sizes, or none.

    ``time_only``: frequency is already 1 (a front end reduced it), so only time may pool.
    """
    pool_f, pool_t = block.pool
    if (pool_f, pool_t) == (1, 1):
        options = [(2, 2), (2, 1), (1, 2)]
    else:
        size_f = pool_f if pool_f > 1 else pool_t
        size_t = pool_t if pool_t > 1 else pool_f
        options = [(size_f, size_t), (size_f, 1), (1, size_t), (1, 1)]
    if time_only:
        options = [p for p in options if p[0] == 1]
    return [p for p in options if p != (pool_f, pool_t)]


def moves_around(design: ArchSpec) -> tuple[Move, ...]:
    """Return every one-step move of ``design`` (see the module docstring), depth last."""
    moves: list[Move] = []
    collapsed = any(b.freq_reduce != "none" for b in design.frontend)
    for i, branch in enumerate(design.frontend):
        where = f"frontend[{i}]"
        moves += [Move(f"{where}.height", h) for h in height_notches(branch.height)]
        moves += [Move(f"{where}.width", w) for w in notches(branch.width, KERNEL_NOTCHES)]
        moves += [Move(f"{where}.channels", c) for c in notches(branch.channels, WIDTH_NOTCHES)]
    for i, block in enumerate(design.body):
        where = f"body[{i}]"
        if not collapsed:  # after a front-end collapse a block's height is 1 by construction
            moves += [Move(f"{where}.height", h) for h in height_notches(block.height)]
        moves += [Move(f"{where}.width", w) for w in notches(block.width, KERNEL_NOTCHES)]
        moves += [Move(f"{where}.channels", c) for c in notches(block.channels, WIDTH_NOTCHES)]
        moves += [Move(f"{where}.pool", p) for p in pool_moves(block, time_only=collapsed)]
        if tuple(block.pool) != (1, 1):
            other = "avg" if block.pool_type == "max" else "max"
            moves.append(Move(f"{where}.pool_type", other))
    for i, dense in enumerate(design.head.hidden):
        moves += [Move(f"head.hidden[{i}].units", u) for u in notches(dense.units, WIDTH_NOTCHES)]
    depth = len(design.body)
    if depth > 1 or (depth == 1 and design.frontend):
        moves.append(Move("depth", depth - 1))
    if depth:
        moves.append(Move("depth", depth + 1))
    return tuple(moves)


def apply_moves(design: ArchSpec, moves: list[Move]) -> ArchSpec:
    """Return ``design`` with ``moves`` applied: settings in order (a later move of a setting
    wins), then the depth (an added block copies the moved last block, without its pool)."""
    frontend = list(design.frontend)
    body = list(design.body)
    hidden = list(design.head.hidden)
    depth = len(body)
    for move in moves:
        if move.setting == "depth":
            depth = int(move.value)
            continue
        part, field = move.setting.rsplit(".", 1)
        name, index_text = part.rstrip("]").split("[")
        index = int(index_text)
        if name == "frontend":
            frontend[index] = dataclasses.replace(frontend[index], **{field: move.value})
        elif name == "body":
            changes: dict[str, Any] = {field: move.value}
            if field == "pool":
                changes["pool_stride"] = None
            body[index] = dataclasses.replace(body[index], **changes)
        elif name == "head.hidden":
            hidden[index] = dataclasses.replace(hidden[index], **{field: move.value})
        else:  # pragma: no cover - moves_around makes no other setting
            raise SpecError(f"unknown setting {move.setting!r}")
    if depth < len(body):
        body = body[:depth]
    elif depth > len(body) and body:
        body.append(dataclasses.replace(body[-1], pool=(1, 1), pool_stride=None, pool_type="max"))
    head = dataclasses.replace(design.head, hidden=tuple(hidden))
    return design.replace(frontend=tuple(frontend), body=tuple(body), head=head, name="")


def changed_settings(design: ArchSpec, spec: ArchSpec) -> list[str]:
    """Return the settings in which ``spec`` differs from ``design`` (depth counts as one).

    Raises:
        SpecError: they differ in what no move changes (the message names the first such part).
    """
    changed: list[str] = []
    rest = spec.replace(
        frontend=design.frontend,
        body=design.body,
        head=dataclasses.replace(spec.head, hidden=design.head.hidden),
        name=design.name,
    )
    for f in dataclasses.fields(ArchSpec):
        got, base = getattr(rest, f.name), getattr(design, f.name)
        if got != base:
            shown = (
                _first_field(got, base) if dataclasses.is_dataclass(base) else (f.name, got, base)
            )
            where = f.name if shown[0] == f.name else f"{f.name}.{shown[0]}"
            raise SpecError(
                f"{where} is {shown[1]!r}, the design's {shown[2]!r}; no move changes it"
            )
    if len(spec.frontend) != len(design.frontend):
        raise SpecError(
            f"the front end has {len(spec.frontend)} branches, the design {len(design.frontend)}; "
            "no move adds or removes a branch"
        )
    for i, (got, base) in enumerate(zip(spec.frontend, design.frontend)):
        changed += _changed_fields(f"frontend[{i}]", got, base, ("height", "width", "channels"))
    common = min(len(spec.body), len(design.body))
    for i in range(common):
        fields = ("height", "width", "channels", "pool", "pool_type")
        got, base = spec.body[i], design.body[i]
        if tuple(got.pool) != tuple(base.pool):
            base = dataclasses.replace(base, pool_stride=None)  # a pool move resets the stride
        changed += _changed_fields(f"body[{i}]", got, base, fields)
    if len(spec.body) != len(design.body):
        changed.append("depth")
    if len(spec.head.hidden) != len(design.head.hidden):
        raise SpecError("the head's dense layers differ in number from the design's")
    for i, (got_dense, base_dense) in enumerate(zip(spec.head.hidden, design.head.hidden)):
        changed += _changed_fields(f"head.hidden[{i}]", got_dense, base_dense, ("units",))
    return changed


def _first_field(got: Any, base: Any) -> tuple[str, Any, Any]:
    for f in dataclasses.fields(base):
        if getattr(got, f.name) != getattr(base, f.name):
            return f.name, getattr(got, f.name), getattr(base, f.name)
    return "", got, base  # pragma: no cover - called only when they differ


def _changed_fields(where: str, got: Any, base: Any, fields: tuple[str, ...]) -> list[str]:
    out = [f"{where}.{name}" for name in fields if _value(got, name) != _value(base, name)]
    rest_got = dataclasses.replace(got, **{name: getattr(base, name) for name in fields})
    if rest_got != base:
        for f in dataclasses.fields(base):
            if getattr(rest_got, f.name) != getattr(base, f.name):
                raise SpecError(
                    f"{where}.{f.name} is {getattr(got, f.name)!r}, the design's "
                    f"{getattr(base, f.name)!r}; no move changes it"
                )
    return out


def _value(part: Any, name: str) -> Any:
    value = getattr(part, name)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class SpaceAround:
    """The designs within ``max_moves`` one-step moves of ``design`` (see the module docstring).

    ``n_mels``/``n_frames`` (both or neither): the input; the design must fit it, and a move
    that would not is skipped.
    """

    design: ArchSpec
    max_moves: int = DEFAULT_MAX_MOVES
    n_mels: int | None = None
    n_frames: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_moves, bool) or not isinstance(self.max_moves, int):
            raise SpecError(f"space around: max_moves must be an integer, got {self.max_moves!r}")
        if not 1 <= self.max_moves <= MAX_MOVES:
            raise SpecError(
                f"space around: max_moves must be 1 to {MAX_MOVES}, got {self.max_moves}"
            )
        if (self.n_mels is None) != (self.n_frames is None):
            raise SpecError(
                f"space around: give both n_mels and n_frames or neither, got "
                f"n_mels={self.n_mels!r}, n_frames={self.n_frames!r}"
            )
        if not self.moves:
            raise SpecError(f"space around {self._name}: the design has no setting to move")
        if self.n_mels is not None and self.n_frames is not None:
            try:
                validate(self.design, self.n_mels, self.n_frames)
            except SpecError as exc:
                raise SpecError(
                    f"space around {self._name}: the design does not fit the input "
                    f"{self.n_mels} x {self.n_frames} (mel x frames): {exc}"
                ) from None

    @property
    def _name(self) -> str:
        return repr(self.design.name) if self.design.name else "the design"

    @cached_property
    def moves(self) -> tuple[Move, ...]:
        """Every one-step move of the design, in the order ``labels`` lists them."""
        return moves_around(self.design)

    @cached_property
    def labels(self) -> list[str]:
        """The choices of each ``move{k}`` parameter."""
        return [m.label for m in self.moves]

    @cached_property
    def _by_label(self) -> dict[str, Move]:
        return {m.label: m for m in self.moves}

    def sample(self, trial: optuna.trial.BaseTrial) -> ArchSpec:
        """Return the design with the trial's moves applied (define-by-run).

        Parameters: ``n_moves`` in ``[0, max_moves]``, then ``move0`` ... ``move{n_moves-1}``,
        each one of ``labels``. A move of a setting already moved replaces the earlier one; one
        that would make the design not fit the bound input is skipped.
        """
        n_moves = trial.suggest_int("n_moves", 0, self.max_moves)
        kept: list[Move] = []
        for k in range(n_moves):
            move = self._by_label[trial.suggest_categorical(f"move{k}", self.labels)]
            candidate = [m for m in kept if m.setting != move.setting] + [move]
            if self._fits(apply_moves(self.design, candidate)):
                kept = candidate
        return apply_moves(self.design, kept)

    def params_for(self, spec: ArchSpec) -> dict[str, Any]:
        """Return the trial parameters for which ``sample`` draws ``spec`` (its inverse).

        Raises:
            SpecError: ``spec`` is not a point of this space: it differs from the design in
                something no move changes, by more than one step, in more than ``max_moves``
                settings, or does not fit the input (the message names which).
        """
        where = f"spec {spec.name!r}" if spec.name else "spec"
        around = f"the space around {self._name}"
        try:
            changed = changed_settings(self.design, spec)
        except SpecError as exc:
            raise SpecError(f"{where}: not a point of {around}: {exc}") from None
        if len(changed) > self.max_moves:
            raise SpecError(
                f"{where}: differs from the design in {len(changed)} settings "
                f"({', '.join(changed)}); {around} allows at most {self.max_moves} "
                "(space_around_moves)"
            )
        picked: list[Move] = []
        for setting in changed:
            value = _setting_value(spec, setting)
            move = Move(setting, value)
            if move.label not in self._by_label:
                allowed = [m.label for m in self.moves if m.setting == setting]
                raise SpecError(
                    f"{where}: {setting} {value!r} is not one step from the design's "
                    f"{_setting_value(self.design, setting)!r}; {around} moves it to {allowed}"
                )
            picked.append(move)
        order = {m.label: index for index, m in enumerate(self.moves)}
        picked.sort(key=lambda m: order[m.label])

        import optuna

        # a move that does not fit alone may fit after another (a pool after a block is
        # removed): the moves in the space's order first, then in every other order
        for ordered in itertools.permutations(picked):
            params: dict[str, Any] = {"n_moves": len(ordered)}
            params |= {f"move{k}": move.label for k, move in enumerate(ordered)}
            drawn = self.sample(optuna.trial.FixedTrial(params))
            if drawn == spec.replace(name=""):
                return params
        raise SpecError(
            f"{where}: not a point of {around}: its moves "
            f"({', '.join(m.label for m in picked)}) give {self._summary(picked)!r}"
            + (
                f" (a move does not fit the input {self.n_mels} x {self.n_frames})"
                if self.n_mels is not None
                else ""
            )
        )

    def _summary(self, moves: list[Move]) -> str:
        return apply_moves(self.design, moves).summary()

    def grid_space(self) -> dict[str, list[Any]]:
        """Return every parameter ``sample`` may ask, with its choices (Optuna's GridSampler)."""
        grid: dict[str, list[Any]] = {"n_moves": list(range(self.max_moves + 1))}
        for k in range(self.max_moves):
            grid[f"move{k}"] = list(self.labels)
        return grid

    def _fits(self, spec: ArchSpec) -> bool:
        if self.n_mels is None or self.n_frames is None:
            return True
        try:
            validate(spec, self.n_mels, self.n_frames)
        except SpecError:
            return False
        return True


def _setting_value(spec: ArchSpec, setting: str) -> Any:
    """Return the value of one setting (``body[0].pool``, ``depth``) of ``spec``."""
    if setting == "depth":
        return len(spec.body)
    part, field = setting.rsplit(".", 1)
    name, index_text = part.rstrip("]").split("[")
    parts: tuple[Any, ...] = {
        "frontend": spec.frontend,
        "body": spec.body,
        "head.hidden": spec.head.hidden,
    }[name]
    value = getattr(parts[int(index_text)], field)
    return tuple(value) if isinstance(value, list) else value


__all__ = [
    "DEFAULT_MAX_MOVES",
    "KERNEL_NOTCHES",
    "MAX_MOVES",
    "RELATIVE_NOTCHES",
    "WIDTH_NOTCHES",
    "Move",
    "SpaceAround",
    "apply_moves",
    "changed_settings",
    "height_notches",
    "moves_around",
    "notches",
    "pool_moves",
]
