"""The compiled Avro writer against fastavro.schemaless_writer, byte for byte.

Schemas: the catalog's, every schema of the compatibility vectors (recursive records,
non-record top levels, the empty union), and generated ones (unions, nulls, nested and
named records, maps, arrays, enums, fixed, logical types). Datums: what validation
produces, and values it never produces (datetimes, subclasses, bools for ints, numbers
out of range, NaN, missing fields, tuple notation, ``-type`` keys), for which the writer
must give fastavro's bytes or fastavro's error.
"""

from __future__ import annotations

import datetime
import io
import json
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.avro_write import AvroWriter
from onepipe.schemas.catalog_folder import load_catalog
from onepipe.schemas.codec import KeyEncoder, encode_bodies, encode_body, encode_many, frame
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.logical_types import (
    MAX_DAYS,
    MAX_MICROS,
    MAX_MILLIS,
    MIN_DAYS,
    MIN_MICROS,
    MIN_MILLIS,
)
from tests.fixtures.paths import REPO, SHARED

_VECTORS = json.loads((SHARED / "testdata" / "avro_compat_vectors.json").read_text())
_CATALOG = [e.schema for e in load_catalog(REPO / "catalog")]


def _vector_schemas() -> list[Any]:
    seen: dict[str, Any] = {}
    for case in _VECTORS["pairs"]:
        for s in (case["reader"], case["writer"]):
            seen.setdefault(json.dumps(s, sort_keys=True), s)
    for case in _VECTORS["sequences"]:
        for s in (*case["existing"], case["new"]):
            seen.setdefault(json.dumps(s, sort_keys=True), s)
    return list(seen.values())


def _parsed(data: Any) -> Any:
    """fastavro's parsed form as the publisher has it; None if fastavro refuses it."""
    try:
        return parse_schema(json.dumps(data)).parsed
    except OnepipeError:
        try:
            return fastavro.parse_schema(data, named_schemas={})
        except Exception:  # noqa: BLE001 - a vector fastavro cannot write: nothing to compare
            return None


class _Str(str):
    pass


class _Int(int):
    pass


_EDGES = st.sampled_from([0, 1, -1, 63, 64, -64, -65, 127, 128, 8191, 8192, 2**31 - 1, -(2**31),
                          2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1])
_LONGS = st.integers(-(2**63), 2**63 - 1) | _EDGES
#: The ends of what validation takes for the logical types counted in ints and longs.
_RANGE_EDGES = st.sampled_from([
    edge + step for edge in (MIN_MILLIS, MAX_MILLIS, MIN_MICROS, MAX_MICROS, MIN_DAYS,
                             MAX_DAYS, 0, 86_400_000, 86_400_000_000) for step in (-1, 0, 1)])
_TEXT = (st.text(max_size=80) | st.integers(60, 70).map(lambda n: "é" * (n // 2) + "x" * (n % 2))
         | st.sampled_from(["\ud800", "a\udfffb"]))  # lone surrogates: UTF-8 has none
# hypothesis takes naive bounds and attaches the zone itself
_MOMENTS = st.datetimes(datetime.datetime(1900, 1, 1), datetime.datetime(2200, 1, 1),  # noqa: DTZ001
                        timezones=st.just(datetime.UTC))
_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_ODD = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _FLOATS | st.text(max_size=3)
        | st.binary(max_size=3) | st.builds(_Str, st.text(max_size=3)) | st.builds(_Int, _LONGS)
        | _MOMENTS | st.dates() | st.times() | st.uuids() | st.just(Decimal("1.5"))
        | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.none(),
                                                                max_size=2))
_PRIMITIVE: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1) | st.integers(-70, 70) | _EDGES,
    "long": _LONGS | st.integers(-70, 70) | st.integers(2**40, 2**42),
    "float": _FLOATS | st.integers(-(2**60), 2**60),
    "double": _FLOATS | st.integers(-(2**60), 2**60),
    "bytes": st.binary(max_size=80) | st.integers(60, 70).map(lambda n: b"x" * n),
    "string": _TEXT,
}


def _decimals(s: dict[str, Any]) -> st.SearchStrategy[Any]:
    scale, precision = int(s.get("scale", 0)), int(s["precision"])
    exact = st.integers(-(10**precision) + 1, 10**precision - 1).map(
        lambda n: Decimal(n).scaleb(-scale))
    return exact | st.decimals(allow_nan=False, places=scale + 1) | st.decimals(places=scale)


def datums(s: Any, named: dict[str, Any], odd: bool, depth: int = 0) -> st.SearchStrategy[Any]:
    """Datums of parsed schema ``s``; with ``odd``, values validation never produces too."""
    base = _datums(s, named, odd, depth)
    return base | _ODD if odd else base


def _datums(s: Any, named: dict[str, Any], odd: bool, depth: int) -> st.SearchStrategy[Any]:  # noqa: C901, PLR0911, PLR0912 - one branch per Avro type
    if depth > 6:  # a record that holds itself without a way out: a wrong value, both refuse
        return st.none()
    if isinstance(s, list):
        branches = [datums(b, named, odd, depth + 1) for b in s]
        if depth > 3 and "null" in s:
            return st.none()
        if not branches:  # the empty union: nothing fits, both refuse
            return st.none()
        plain = st.one_of(branches)
        if odd:  # tuple notation, right or wrong name
            names = [b if isinstance(b, str) else b.get("name", b["type"]) for b in s]
            plain |= st.tuples(st.sampled_from(names) | st.text(max_size=2), plain)
        return plain
    if isinstance(s, str):
        if s in _PRIMITIVE:
            return _PRIMITIVE[s]
        return st.deferred(lambda: _datums(named[s], named, odd, depth + 1))
    kind, logical = s["type"], s.get("logicalType")
    if logical == "decimal" and kind in ("bytes", "fixed"):
        return _decimals(s) | (_MOMENTS if odd else st.nothing())
    if logical in ("timestamp-millis", "timestamp-micros", "local-timestamp-millis",
                   "local-timestamp-micros"):
        return (st.integers(-(10**15), 10**15) | _RANGE_EDGES
                | (_MOMENTS if odd else st.nothing()))
    if logical == "date" and kind == "int":
        return (st.integers(-700_000, 2_900_000) | _RANGE_EDGES
                | (st.dates() if odd else st.nothing()))
    if logical in ("time-millis", "time-micros"):
        return (st.integers(0, 86_399_999) | _RANGE_EDGES
                | (st.times() if odd else st.nothing()))
    if logical == "uuid" and kind == "string":
        return st.uuids().map(str) | (st.uuids() if odd else st.nothing())
    if kind in _PRIMITIVE:
        return _PRIMITIVE[kind]
    if kind in ("record", "error"):
        fields = {f["name"]: datums(f["type"], named, odd, depth + 1) for f in s["fields"]}
        if not odd:
            return st.fixed_dictionaries(fields)
        return st.fixed_dictionaries({}, optional=fields) | st.fixed_dictionaries(
            fields, optional={"-type": st.sampled_from([s["name"], "x"]), "extra": _ODD})
    if kind == "enum":
        return st.sampled_from(s["symbols"]) if s["symbols"] else st.nothing()
    if kind == "fixed":
        size = int(s["size"])
        return st.binary(min_size=size, max_size=size) | (
            st.binary(max_size=size + 1).map(bytearray) if odd else st.nothing())
    if kind == "array":
        return st.lists(datums(s["items"], named, odd, depth + 1), max_size=0 if depth > 3 else 70)
    if kind == "map":
        keys = st.text(max_size=5) | (st.integers() if odd else st.nothing())
        return st.dictionaries(keys, datums(s["values"], named, odd, depth + 1),
                               max_size=0 if depth > 3 else 4)
    return st.nothing()


def _reference(parsed: Any, datum: Any) -> Any:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, parsed, datum)
    except Exception as exc:  # noqa: BLE001 - the error is part of the behaviour compared
        return type(exc), str(exc)
    return buf.getvalue()


def _ours(writer: AvroWriter, datum: Any, prefix: bytes = b"") -> Any:
    try:
        return writer.encode_many([datum], prefix)[0][len(prefix):]
    except Exception as exc:  # noqa: BLE001 - as above
        return type(exc), str(exc)


def _check(data: Any, drawn: st.DataObject) -> None:
    parsed = _parsed(data)
    if parsed is None:
        return
    named: dict[str, Any] = {}
    fastavro.parse_schema(parsed, named)
    writer = AvroWriter(parsed)
    for odd in (False, True):
        datum = drawn.draw(datums(parsed, named, odd))
        expected = _reference(parsed, datum)
        assert _ours(writer, datum) == expected, datum
        assert _ours(writer, datum, b"\x00abcd") == expected, datum
        if isinstance(expected, bytes):
            many = writer.encode_many([datum, datum], b"\x00abcd")
            assert many == [b"\x00abcd" + expected] * 2


_SETTINGS = settings(max_examples=30, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                            HealthCheck.data_too_large])


@pytest.mark.parametrize("data", _CATALOG, ids=lambda s: s["name"])
@_SETTINGS
@given(st.data())
def test_catalog_schemas_write_what_fastavro_writes(data: Any, drawn: st.DataObject) -> None:
    _check(data, drawn)


@pytest.mark.parametrize("data", _vector_schemas(), ids=lambda s: json.dumps(s)[:40])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_vector_schemas_write_what_fastavro_writes(data: Any, drawn: st.DataObject) -> None:
    _check(data, drawn)


_NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
_LEAVES = st.sampled_from([
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "long", "logicalType": "local-timestamp-millis"},
    {"type": "int", "logicalType": "date"},
    {"type": "int", "logicalType": "time-millis"},
    {"type": "long", "logicalType": "time-micros"},
    {"type": "string", "logicalType": "uuid"},
    {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
    {"type": "string", "logicalType": "unknown-to-fastavro"},
    {"type": "double"},
])


@st.composite
def _types(draw: st.DrawFn, depth: int, counter: list[int]) -> Any:
    counter[0] += 1
    n = counter[0]
    kind = draw(st.integers(0, 9 if depth < 3 else 1))
    if kind <= 1:
        return draw(_LEAVES)
    if kind == 2:
        return draw(st.sampled_from([
            {"type": "enum", "name": f"E{n}", "symbols": ["A", "B", "C"]},
            {"type": "fixed", "name": f"F{n}", "size": draw(st.integers(0, 5))},
            {"type": "fixed", "name": f"D{n}", "size": 8, "logicalType": "decimal",
             "precision": 12, "scale": 3},
        ]))
    if kind == 3:
        return {"type": "array", "items": draw(_types(depth + 1, counter))}
    if kind == 4:
        return {"type": "map", "values": draw(_types(depth + 1, counter))}
    if kind in (5, 6):  # [null, T] either way round: the union written natively
        other = draw(_types(depth + 1, counter).filter(
            lambda t: not isinstance(t, list) and t != "null"))
        return ["null", other] if kind == 5 else [other, "null"]
    if kind == 7:  # any other union: fastavro picks the branch
        branches = draw(st.lists(_types(depth + 1, counter).filter(
            lambda t: not isinstance(t, list)), min_size=1, max_size=3,
            unique_by=lambda t: t if isinstance(t, str) else t.get("name", t["type"])))
        return branches
    return draw(_records(depth + 1, counter))


@st.composite
def _records(draw: st.DrawFn, depth: int = 0, counter: list[int] | None = None) -> Any:
    counter = counter if counter is not None else [0]
    counter[0] += 1
    name = f"R{counter[0]}"
    names = draw(st.lists(_NAMES, min_size=1, max_size=5, unique=True))
    return {"type": "record", "name": name, "namespace": "gen",
            "fields": [{"name": f, "type": draw(_types(depth, counter))} for f in names]}


@_SETTINGS
@given(_records(), st.data())
def test_generated_schemas_write_what_fastavro_writes(data: Any, drawn: st.DataObject) -> None:
    _check(data, drawn)


def test_a_named_record_used_twice_and_a_recursive_one() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Node"]},
        {"name": "kids", "type": {"type": "array", "items": "Node"}}]}
    writer = AvroWriter(fastavro.parse_schema(node, named_schemas={}))
    datum = {"v": 1, "next": {"v": 2, "next": None, "kids": []},
             "kids": [{"v": 3, "next": None, "kids": []}]}
    assert writer.encode(datum) == _reference(fastavro.parse_schema(node, named_schemas={}),
                                              datum)


def test_codec_functions_frame_and_batch() -> None:
    schema = parse_schema(_CATALOG[-1] if _CATALOG[-1]["name"] == "Widget" else next(
        s for s in _CATALOG if s["name"] == "Widget"))
    datum = {"widget_id": "w-1", "version": 3, "name": "bolt", "price": 1.25, "colour": "RED",
             "updated_at": 1_795_000_000_000, "tags": ["a", "b"]}
    body = _reference(schema.parsed, datum)
    assert encode_body(schema, datum) == body
    assert encode_bodies(schema, [datum, datum]) == [body, body]
    assert encode_many(9, schema, [datum]) == [frame(9, body)]


@given(st.text(), st.integers(-(2**63), 2**63 - 1), st.uuids())
def test_key_encoder_writes_what_the_key_record_writes(text: str, n: int, u: uuid.UUID) -> None:
    schema = parse_schema({"type": "record", "name": "K", "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "long"},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "other", "type": "double"}]})
    keys = KeyEncoder(schema, ["n", "id", "u"])
    datum = {"id": text, "n": n, "u": str(u), "other": 1.5}
    expected = _reference(keys._parsed, {"n": n, "id": text, "u": str(u)})
    assert keys.encode(datum) == expected
    assert keys.encode_many([datum, datum]) == [expected, expected]
    # a datum read back by fastavro (a UUID object): fastavro writes it, as before
    assert keys.encode({**datum, "u": u}) == expected
    with pytest.raises(KeyError):
        keys.encode({"id": text, "n": n})


@pytest.mark.parametrize("value", [
    {"x": 1}, {"x": 1, "-type": "gen.In"}, {"x": 1, "-type": "other"}, ("gen.In", {"x": 1}),
    ("In", {"x": 1}), {"x": 2**31}, {"x": True}, {}, None, {"x": 1.0}, {"x": 64}])
def test_a_record_in_a_union_is_written_only_where_fastavro_picks_it(value: Any) -> None:
    schema = {"type": "record", "name": "Out", "namespace": "gen", "fields": [
        {"name": "o", "type": ["null", {"type": "record", "name": "In", "fields": [
            {"name": "x", "type": "int"}]}]}]}
    parsed = fastavro.parse_schema(schema, named_schemas={})
    assert _ours(AvroWriter(parsed), {"o": value}) == _reference(parsed, {"o": value})


def test_a_schema_nested_deeper_than_python_compiles_is_written_by_fastavro() -> None:
    deep: Any = "long"
    for _ in range(30):
        deep = {"type": "array", "items": deep}
    parsed = fastavro.parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": deep}]}, named_schemas={})
    datum: Any = 7
    for _ in range(30):
        datum = [datum]
    assert AvroWriter(parsed).encode({"a": datum}) == _reference(parsed, {"a": datum})
