"""Property-based tests of ArchSpec parsing and validation (hypothesis).

Whatever JSON arrives (a hand-edited spec file, a bundle's ``spec.json``, a trial config), the
outcome is one of: a spec that ``validate`` accepts, a spec that ``validate`` rejects with
``SpecError``, or a ``SpecError`` from parsing. Any other exception is a bug.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces.errors import SpecError
from search_spaces.presets import PRESETS
from search_spaces.spec import ArchSpec, Branch, ConvBlock, Dense, Head
from search_spaces.validate import validate

# Plain JSON values: what json.loads can return (NaN/inf included: Python's json accepts them).
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["0.5M", "1M", "M", "same", "valid", "max", "mean", "none", "bn", "1e9M"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _valid_specs() -> list[dict[str, Any]]:
    """Return valid spec dicts to mutate: every preset plus a few hand-written shapes."""
    specs = [preset.spec.to_dict() for preset in PRESETS.values()]
    specs.append(
        ArchSpec(
            frontend=(Branch(height="0.9M", width=7, channels=8),),
            body=(ConvBlock(height=1, width=3, channels=8, residual=True, pool=(1, 2)),),
            head=Head(time_pooling="max+mean", hidden=(Dense(units=16, dropout=0.1),)),
        ).to_dict()
    )
    return specs


VALID_SPECS = _valid_specs()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every value inside a JSON document (dict keys, list indices)."""
    out: list[tuple[Any, ...]] = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.extend(_paths(value, (*prefix, i)))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """Draw a valid spec dict with 1-3 mutations: a value replaced, a key dropped or added."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID_SPECS)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if not path:
            if action == "replace":
                doc = draw(JSON_VALUES)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            parent.append(draw(JSON_VALUES))
    return doc


def _outcome(data: Any, n_mels: int = 64, n_frames: int = 101) -> str:
    """Return "valid", "invalid" or "rejected"; any exception but SpecError propagates."""
    try:
        spec = ArchSpec.from_dict(data)
    except SpecError:
        return "rejected"
    try:
        validate(spec, n_mels, n_frames)
    except SpecError:
        return "invalid"
    return "valid"


@SETTINGS
@given(JSON_VALUES)
def test_any_json_value_loads_or_fails_with_spec_error(data: Any) -> None:
    assert _outcome(data) in ("valid", "invalid", "rejected")


@SETTINGS
@given(mutated_specs(), st.integers(1, 256), st.integers(1, 2000))
def test_mutated_specs_load_or_fail_with_spec_error(data: Any, n_mels: int, n_frames: int) -> None:
    assert _outcome(data, n_mels, n_frames) in ("valid", "invalid", "rejected")


@SETTINGS
@given(st.text(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v)))
def test_any_text_parses_or_fails_with_spec_error(text: str) -> None:
    try:
        spec = ArchSpec.from_json(text)
    except SpecError:
        return
    with contextlib.suppress(SpecError):
        validate(spec, 64, 101)


def test_deeply_nested_json_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="invalid JSON"):
        ArchSpec.from_json("[" * 100_000 + "]" * 100_000)


def test_huge_numbers_are_spec_errors_naming_the_field() -> None:
    data = copy.deepcopy(VALID_SPECS[-1])
    data["head"]["output_dropout"] = 10**400  # float(10**400) overflows
    with pytest.raises(SpecError, match=r"spec\.head\.output_dropout"):
        ArchSpec.from_dict(data)


# -- generated valid specs round-trip through JSON ------------------------------------------------
HEIGHTS = st.integers(1, 64) | st.sampled_from(["0.1M", "0.5M", "0.9M", "1M"])
PADDING = st.sampled_from(["same", "valid"])
REDUCE = st.sampled_from(["max", "mean", "none"])
PROBABILITY = st.floats(0.0, 0.9, allow_nan=False)
PAIRS = st.tuples(st.integers(1, 4), st.integers(1, 4))

BRANCHES = st.builds(
    Branch,
    height=HEIGHTS,
    width=st.integers(1, 9),
    channels=st.integers(1, 64),
    freq_padding=PADDING,
    time_padding=PADDING,
    freq_reduce=REDUCE,
    batch_norm=st.booleans(),
    bias=st.booleans(),
)
BLOCKS = st.builds(
    ConvBlock,
    height=HEIGHTS,
    width=st.integers(1, 9),
    channels=st.integers(1, 64),
    stride=PAIRS,
    freq_padding=PADDING,
    time_padding=PADDING,
    convs=st.integers(1, 3),
    residual=st.booleans(),
    batch_norm=st.booleans(),
    bias=st.booleans(),
    pool=PAIRS,
    pool_stride=st.none() | PAIRS,
    pool_type=st.sampled_from(["max", "avg"]),
    dropout=PROBABILITY,
)
HEADS = st.builds(
    Head,
    freq_reduce=REDUCE,
    time_pooling=st.sampled_from(["max", "mean", "max+mean", "max_mean_concat", "none"]),
    pooled_batch_norm=st.booleans(),
    hidden=st.lists(
        st.builds(Dense, units=st.integers(1, 512), dropout=PROBABILITY, batch_norm=st.booleans()),
        max_size=2,
    ).map(tuple),
    output_dropout=PROBABILITY,
)
SPECS = st.builds(
    ArchSpec,
    frontend=st.lists(BRANCHES, max_size=3).map(tuple),
    body=st.lists(BLOCKS, max_size=4).map(tuple),
    head=HEADS,
    input_norm=st.sampled_from(["none", "bn", "per_band_bn"]),
    activation_order=st.sampled_from(["conv_bn_relu", "conv_relu_bn"]),
    dense_concat=st.booleans(),
    name=st.text(max_size=20),
)


@SETTINGS
@given(SPECS)
def test_generated_specs_round_trip_through_json(spec: ArchSpec) -> None:
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    # and validation of any of them ends in a trace or a SpecError, nothing else
    assert _outcome(spec.to_dict()) in ("valid", "invalid")


def test_integers_beyond_the_digit_limit_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="invalid JSON"):
        ArchSpec.from_json("1" * 5000)
