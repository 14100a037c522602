"""onepipe.schemas.partition_day against the compactor's SQL (onepipe.agents.compact.plan
Shape.day).

Both must put every row in the same UTC day, or verify's stream and raw figures would
not line up with the clean lake's days. Edge cases: epoch millis, micros, date, the
Kafka timestamp, nulls, pre-1970 and after-9999 clamping; then a property over
arbitrary values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.agents.compact.plan import shape_for
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.metadata import TopicMetadata
from onepipe.schemas.partition_day import (
    day_name,
    day_number,
    hour_name,
    hour_number,
    partition_days,
    partition_hours,
)

_LAST_MS = 253_402_300_799_999
#: DuckDB timestamps are int64 µs: millis beyond this fail the compactor's SQL itself.
_DUCK_MS = 9 * 10**15
_TYPES: dict[str, Any] = {
    "millis": {"type": "long", "logicalType": "timestamp-millis"},
    "micros": {"type": "long", "logicalType": "timestamp-micros"},
    "plain": "long",
    "date": {"type": "int", "logicalType": "date"},
}
_ARROW = {"millis": pa.timestamp("ms", tz="UTC"), "micros": pa.timestamp("us", tz="UTC"),
          "plain": pa.int64(), "date": pa.date32(), "kafka": pa.timestamp("ms", tz="UTC")}


def _sql_days(kind: str, values: Sequence[int | None]) -> list[str | None]:
    """The days the compactor's SQL gives ``values`` of a ``kind`` partition_time."""
    column = "_kafka_timestamp" if kind == "kafka" else "t"
    fields = [{"name": "id", "type": "string"}]
    if kind != "kafka":
        fields.append({"name": "t", "type": _TYPES[kind]})
    schema = parse_schema({"type": "record", "name": "R", "fields": fields})
    meta = TopicMetadata(topic="days", key=("id",),
                         partition_time="kafka" if kind == "kafka" else "t")
    day = shape_for(meta, schema).day
    storage = pa.int32() if kind == "date" else pa.int64()
    table = pa.table({column: pa.array(values, storage).cast(_ARROW[kind])})
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'America/Los_Angeles'")  # the day must not depend on it
        con.register("rows_in", table)
        # The compactor's day is a DATE column (the Iceberg table's partition source).
        return [None if r[0] is None else r[0].isoformat()
                for r in con.execute(f"SELECT {day} FROM rows_in").fetchall()]
    finally:
        con.close()


_MICROS_OR_MILLIS = st.integers(-(2**62), 2**62)


def _arrow_days(kind: str, values: Sequence[int | None]) -> list[str | None]:
    storage = pa.int32() if kind == "date" else pa.int64()
    days = partition_days(pa.array(values, storage).cast(_ARROW[kind]))
    return [None if d is None else day_name(d) for d in days.cast(pa.int32()).to_pylist()]


_EDGES: dict[str, list[int | None]] = {
    "millis": [0, 1, -1, -86_400_001, 86_399_999, 86_400_000, 1_795_132_799_999,
               1_795_132_800_000, _LAST_MS, _LAST_MS + 1, _DUCK_MS, -_DUCK_MS, None],
    "kafka": [-1, 0, 1_795_132_800_000, _LAST_MS + 1, None],
    "plain": [-1, 0, 86_400_000 * 365, _LAST_MS, _LAST_MS + 86_400_000, None],
    "micros": [0, 999, -1, 86_399_999_999, 86_400_000_000, 1_795_132_800_000_123,
               _LAST_MS * 1000 + 999, _LAST_MS * 1000 + 1000, 2**62, -(2**62), None],
    "date": [0, -1, -100_000, 20_000, 2_932_896, 2_932_897, 2**31 - 1, -(2**31), None],
}


@pytest.mark.parametrize("kind", sorted(_EDGES))
def test_edge_cases_match_the_compactor(kind: str) -> None:
    values = _EDGES[kind]
    present = [v for v in values if v is not None]
    assert _arrow_days(kind, present) == _sql_days(kind, present)
    # DuckDB's greatest() skips nulls, so the SQL names a day even for a null time; the
    # compactor never asks (its `valid` condition drops such rows). Here null stays null.
    assert _arrow_days(kind, values)[-1] is None


def _hours_are_days(kind: str, values: Sequence[int | None]) -> None:
    storage = pa.int32() if kind == "date" else pa.int64()
    array = pa.array(values, storage).cast(_ARROW[kind])
    hours = partition_hours(array).to_pylist()
    days = partition_days(array).cast(pa.int32()).to_pylist()
    assert [None if h is None else h // 24 for h in hours] == days


@pytest.mark.parametrize("kind", sorted(_EDGES))
def test_hours_fall_in_their_days_on_the_edges(kind: str) -> None:
    _hours_are_days(kind, _EDGES[kind])


def test_hours_round_and_clamp_like_days() -> None:
    micros = pa.array([3_599_999_499, 3_599_999_500, -1, None], pa.int64()).cast(
        pa.timestamp("us", tz="UTC"))
    assert partition_hours(micros).to_pylist() == [0, 1, 0, None]  # half up, clamped
    millis = pa.array([_LAST_MS, _LAST_MS + 1, 86_400_000 * 2 + 3_600_000 * 5], pa.int64())
    assert [hour_name(h) for h in partition_hours(millis).to_pylist()] == [
        "9999-12-31T23", "9999-12-31T23", "1970-01-03T05"]
    dates = pa.array([1, -3], pa.int32()).cast(pa.date32())
    assert partition_hours(dates).to_pylist() == [24, 0]
    assert hour_number("2026-11-26T07") == day_number("2026-11-26") * 24 + 7
    assert hour_name(hour_number("2026-11-26T07")) == "2026-11-26T07"


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["millis", "plain", "kafka", "micros"]), st.lists(_MICROS_OR_MILLIS,
                                                                          max_size=40))
def test_any_hour_lies_in_its_day(kind: str, values: list[int]) -> None:
    _hours_are_days(kind, values)


def test_clamping_and_nulls() -> None:
    days = _arrow_days("millis", [-(2**62), -1, _LAST_MS + 1, None])
    assert days == ["1970-01-01", "1970-01-01", "9999-12-31", None]
    assert _arrow_days("date", [-5, 3_000_000]) == ["1970-01-01", "9999-12-31"]
    assert day_name(day_number("2026-11-26")) == "2026-11-26"


def test_nanosecond_and_second_timestamps() -> None:
    ns = pa.array([1_795_132_800_000_000_000, -1], pa.int64()).cast(pa.timestamp("ns"))
    s = pa.array([1_795_132_799, 253_402_300_800], pa.int64()).cast(pa.timestamp("s"))
    assert [day_name(d) for d in partition_days(ns).cast(pa.int32()).to_pylist()] == [
        "2026-11-20", "1970-01-01"]
    assert [day_name(d) for d in partition_days(s).cast(pa.int32()).to_pylist()] == [
        "2026-11-19", "9999-12-31"]


def test_other_types_are_refused() -> None:
    with pytest.raises(SchemaError, match="partition_time column has Arrow type string"):
        partition_days(pa.array(["2026-11-26"]))


_MICROS = st.one_of(st.integers(-(2**62), 2**62), st.integers(-10**17, 10**17))
_MILLIS = st.one_of(st.integers(-_DUCK_MS, _DUCK_MS), st.integers(-10**14, 10**14))


@settings(max_examples=30, deadline=None)
@given(st.lists(_MICROS, max_size=40))
def test_any_micros_instant_matches_the_compactor(values: list[int]) -> None:
    assert _arrow_days("micros", list(values)) == _sql_days("micros", list(values))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["millis", "plain", "kafka"]), st.lists(_MILLIS, max_size=40))
def test_any_millis_instant_matches_the_compactor(kind: str, values: list[int]) -> None:
    assert _arrow_days(kind, list(values)) == _sql_days(kind, list(values))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40))
def test_any_date_matches_the_compactor(values: list[int]) -> None:
    assert _arrow_days("date", list(values)) == _sql_days("date", list(values))
