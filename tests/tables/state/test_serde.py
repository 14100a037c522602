"""Table keys and values as bytes: deterministic, round-tripping, refusing what would not."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import Enum, IntEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onepipe.schemas.errors import StateError
from onepipe.tables.state.serde import decode_key, decode_value, encode_key, encode_value

scalars = (st.text() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.booleans()
           | st.none() | st.floats(allow_nan=False, allow_infinity=False))
keys = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.tuples(inner),
                    max_leaves=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=10)


@given(keys)
def test_keys_round_trip_with_tuples_as_tuples(key: Any) -> None:
    data = encode_key(key)
    assert decode_key(data) == key
    assert type(decode_key(data)) is type(key)
    assert encode_key(decode_key(data)) == data  # deterministic


@given(values)
def test_values_round_trip(value: Any) -> None:
    assert decode_value(encode_value(value)) == value


def test_equal_looking_keys_of_other_types_are_other_keys() -> None:
    assert len({encode_key(1), encode_key(1.0), encode_key(True), encode_key("1")}) == 4


def test_enum_keys_are_their_values() -> None:
    class Colour(str, Enum):  # noqa: UP042 - str() of this mixin is not its value: the case
        RED = "red"

    class Size(IntEnum):
        BIG = 3

    assert encode_key(Colour.RED) == encode_key("red")
    assert encode_key((Size.BIG, "x")) == encode_key((3, "x"))


@pytest.mark.parametrize("key", [math.nan, math.inf, datetime(2026, 1, 1, tzinfo=UTC),
                                 ["a"], 2**70, (1, {"a": 1})])
def test_keys_that_would_not_come_back_are_refused(key: Any) -> None:
    with pytest.raises(StateError, match="key"):
        encode_key(key)


@pytest.mark.parametrize("value", [datetime(2026, 1, 1, tzinfo=UTC), {1: "int key"}, object()])
def test_values_that_would_not_come_back_are_refused(value: Any) -> None:
    with pytest.raises(StateError, match="JSON value"):
        encode_value(value)
