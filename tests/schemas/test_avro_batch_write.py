"""The batch path (onepipe.schemas.avro_batch_write) against the per-record path.

The per-record path - the topic's compiled converter, then ``encode_many`` and the
``KeyEncoder``, as ``TopicWriter`` runs it without a column writer - is the reference. For
generated schemas of every type the batch path takes (and some it does not), and batches
that mix valid values with hostile ones (bools for ints, floats for ints and ints for
doubles, numbers one past every range, NaN, infinities, lone surrogates, unknown enum
symbols, missing and extra fields, records that are not objects), the batch path must
return the reference's pairs or None - never other bytes, never a batch the reference
refuses - and must take every batch of valid values of a schema it takes.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_batch_write import MIN_RECORDS, SLICE_CELLS, column_writer
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.catalog_folder import load_catalog
from onepipe.schemas.codec import KeyEncoder
from onepipe.schemas.errors import RecordValidationError, RequestError
from onepipe.schemas.validation import compile_converter
from onepipe.schemas.validation_fast import LOGICAL_RANGES
from onepipe.sinks.publish import publisher
from onepipe.sinks.publish.publisher import TopicWriter
from tests.fixtures.paths import REPO

_SETTINGS = settings(max_examples=500, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_INT32 = (-(2**31), 2**31 - 1)
#: The largest double as an int: one past it rounds to it, and the converter refuses it.
_MAX = int(sys.float_info.max)
_INT64 = (-(2**63), 2**63 - 1)
_PRIMITIVES = ("null", "boolean", "int", "long", "double", "string")
_HOSTILE = st.sampled_from([
    True, False, None, 0, 1, -1, 1.0, 0.5, -0.0, math.nan, math.inf, -math.inf, 1e308,
    2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**70, "", "x", "é", "\ud800", "RED", [],
    ["x"], [1, "x"], {}, {"string": "x"}, b"x"])


class _Str(str):
    pass


class _Int(int):
    pass


class _Float(float):
    pass


def _range_of(ftype: Any) -> tuple[int, int] | None:
    if ftype in ("int", {"type": "int"}):
        return _INT32
    if ftype in ("long", {"type": "long"}):
        return _INT64
    if isinstance(ftype, dict) and "logicalType" in ftype:
        return LOGICAL_RANGES[(ftype["type"], ftype["logicalType"])]
    return None


def _valid(ftype: Any) -> st.SearchStrategy[Any]:
    """Values the converter returns unchanged for ``ftype``."""
    if isinstance(ftype, list):
        other = next(t for t in ftype if t != "null")
        return st.none() | _valid(other)
    if isinstance(ftype, dict) and ftype["type"] == "array":
        # 70: a count past one varint byte
        return st.lists(_valid(ftype["items"]), max_size=4) | st.lists(
            _valid(ftype["items"]), min_size=70, max_size=70)
    if isinstance(ftype, dict) and ftype["type"] == "enum":
        return st.sampled_from(ftype["symbols"])
    bounds = _range_of(ftype)
    if bounds is not None:
        low, high = bounds
        return st.integers(low, high) | st.sampled_from([low, high, 0, 63, 64, -65, 8192])
    kind = ftype["type"] if isinstance(ftype, dict) else ftype
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "double": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**64), 2**64)
        | st.sampled_from([2**53 + 1, -(2**63) - 1, 2**64 + 1, _MAX, -_MAX]),
        "string": st.text(max_size=70),  # past 63 bytes, a length takes two varint bytes
    }[kind]


def _near_misses(ftype: Any) -> st.SearchStrategy[Any]:
    """Values one check away from what ``ftype`` takes (each refused or converted)."""
    if isinstance(ftype, list):
        return _near_misses(next(t for t in ftype if t != "null"))
    if isinstance(ftype, dict) and ftype["type"] == "array":
        return st.builds(lambda items, bad: [*items, bad], _valid(ftype),
                         _near_misses(ftype["items"])) | st.sampled_from([(), "x", None])
    if isinstance(ftype, dict) and ftype["type"] == "enum":
        return st.sampled_from([s.lower() for s in ftype["symbols"]]
                               + ["PINK", 0, None, _Str(ftype["symbols"][0])])
    bounds = _range_of(ftype)
    if bounds is not None:
        low, high = bounds
        return st.sampled_from([low - 1, high + 1, True, False, 1.0, "1", None, 2**70,
                                _Int(0)])
    kind = ftype["type"] if isinstance(ftype, dict) else ftype
    return st.sampled_from({
        "null": [0, "", False, [], "null"],
        "boolean": [0, 1, "true", None, 1.0],
        "double": [math.nan, math.inf, -math.inf, 1, -(2**53) - 1, 2**63, 2**70, 10**308,
                   10**309, _MAX, _MAX + 1, -_MAX - 1, _MAX + 2**970, True, "1.5", None,
                   _Float(0.5)],
        "string": ["\ud800", "a\udfffb", b"x", 1, None, ["x"], _Str("x")],
    }[kind])


def _default(ftype: Any) -> st.SearchStrategy[Any]:
    """A default for ``ftype`` (a union's: of its first branch). Doubles as floats: the
    schema parser refuses an int default for a double."""
    first = ftype[0] if isinstance(ftype, list) else ftype
    kind = first.get("type") if isinstance(first, dict) else first
    items = first.get("items") if kind == "array" else None
    if kind == "double" or items in ("double", {"type": "double"}):
        return _valid(first).map(
            lambda v: [float(x) for x in v] if isinstance(v, list) else float(v))
    return _valid(first)


@st.composite
def _field_types(draw: st.DrawFn, index: int) -> Any:
    logical = [{"type": k, "logicalType": t} for k, t in LOGICAL_RANGES]
    scalar = st.sampled_from([*_PRIMITIVES, *({"type": p} for p in _PRIMITIVES), *logical])
    size = draw(st.sampled_from([1, 2, 4, 70]))  # 70: an index past one varint byte
    enum = {"type": "enum", "name": f"E{index}", "symbols": [f"S{i}" for i in range(size)]}
    base = draw(scalar | st.just(enum))
    shape = draw(st.sampled_from(["plain", "plain", "null first", "null last", "array"]))
    if shape == "array":
        return {"type": "array", "items": base}
    if shape == "plain" or base in ("null", {"type": "null"}):
        return base
    return ["null", base] if shape == "null first" else [base, "null"]


@st.composite
def _cases(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], list[Any], bool]:
    """(schema, key fields, records, whether every value is valid): valid records, then
    none to three faults, each in one place (a single fault is what would slip past one
    missing check)."""
    count = draw(st.integers(0, 6))
    types = [draw(_field_types(i)) for i in range(count)]
    names = [f"f{i}" for i in range(count)]
    fields: list[dict[str, Any]] = []
    for name, ftype in zip(names, types, strict=True):
        field = {"name": name, "type": ftype}
        if draw(st.integers(0, 2)) == 0:  # a default (a union's: of its first branch)
            field["default"] = draw(_default(ftype))
        fields.append(field)
    schema = {"type": "record", "name": "R", "namespace": "t", "fields": fields}
    keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=2)) if names else []
    records: list[Any] = [
        {name: draw(_valid(ftype)) for name, ftype in zip(names, types, strict=True)}
        for _ in range(draw(st.integers(1, 12)))]
    faults = draw(st.integers(0, 3))
    for _ in range(faults):
        at = draw(st.integers(0, len(records) - 1))
        kind = draw(st.sampled_from(["value", "value", "value", "item", "missing", "extra",
                                     "record"]))
        if kind == "record":
            records[at] = draw(st.sampled_from([None, [], "record", 1, 1.5]))
        elif not isinstance(records[at], dict):
            continue
        elif kind == "extra":
            records[at]["extra"] = 1
        elif names:
            i = draw(st.integers(0, len(names) - 1))
            if kind == "missing":
                records[at].pop(names[i], None)
            elif kind == "item" and isinstance(types[i], dict) and types[i]["type"] == "array":
                records[at][names[i]] = [*draw(_valid(types[i])), draw(_HOSTILE)]
            else:
                records[at][names[i]] = draw(_near_misses(types[i]) | _HOSTILE)
    return schema, keys, records, not faults


def _reference(schema: Any, keys: list[str]) -> TopicWriter:
    parsed = parse_schema(json.dumps(schema))
    return TopicWriter("t", 7, 1, parsed, compile_converter(parsed),
                       KeyEncoder(parsed, keys) if keys else None)


@_SETTINGS
@given(_cases())
def test_the_batch_path_gives_the_per_record_paths_pairs_or_none(
        case: tuple[dict[str, Any], list[str], list[Any], bool]) -> None:
    schema, keys, records, all_valid = case
    reference = _reference(schema, keys)
    writer = column_writer(reference.schema, 7, keys)
    assert writer is not None, schema  # every type drawn here is one it takes
    got = writer.encode(records)
    try:
        expected = reference.encode(records)
    except RecordValidationError:
        assert got is None, records  # a batch the per-record path refuses is never taken
        return
    if got is not None:
        assert got == expected
    if all_valid:
        assert got is not None, records  # valid values are taken, not only passed over


_BASES = [*_PRIMITIVES, "enum", *(f"{k}/{t}" for k, t in LOGICAL_RANGES)]


@st.composite
def _one_fault(draw: st.DrawFn, base: str) -> tuple[dict[str, Any], list[Any]]:
    """A one-field schema of ``base`` in some shape, valid values, and one fault among
    them: a near miss, or the field left out (with or without a default)."""
    kind, _, logical = base.partition("/")
    ftype: Any = {"type": kind, "logicalType": logical} if logical else kind
    if kind == "enum":
        ftype = {"type": "enum", "name": "E", "symbols": ["A", "B"]}
    shape = draw(st.sampled_from(["plain", "null first", "null last", "array"]))
    if shape == "array":
        ftype = {"type": "array", "items": ftype}
    elif shape != "plain" and kind != "null":
        ftype = ["null", ftype] if shape == "null first" else [ftype, "null"]
    field: dict[str, Any] = {"name": "a", "type": ftype}
    if draw(st.booleans()):
        field["default"] = draw(_default(ftype))
    records = [{"a": v} for v in draw(st.lists(_valid(ftype), min_size=1, max_size=5))]
    at = draw(st.integers(0, len(records) - 1))
    if draw(st.integers(0, 5)):
        records[at]["a"] = draw(_near_misses(ftype))
    else:
        del records[at]["a"]
    return {"type": "record", "name": "R", "fields": [field]}, records


@pytest.mark.parametrize("base", _BASES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_fault_in_a_batch_is_never_taken_unless_the_reference_takes_it(
        base: str, data: st.DataObject) -> None:
    schema, records = data.draw(_one_fault(base))
    reference = _reference(schema, [])
    writer = column_writer(reference.schema, 7, None)
    assert writer is not None
    got = writer.encode(records)
    try:
        expected = reference.encode(records)
    except RecordValidationError:
        assert got is None, records
        return
    assert got is None or got == expected


@pytest.mark.parametrize("ftype", [
    "float", "bytes", {"type": "fixed", "name": "F", "size": 2},
    {"type": "map", "values": "long"}, ["null", "string", "long"], ["string", "long"],
    {"type": "array", "items": ["null", "long"]}, {"type": "array", "items": "float"},
    {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "long"}]},
    {"type": "string", "logicalType": "uuid"},
    {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
    {"type": "long", "logicalType": "timestamp-nanos"},
])
def test_schemas_with_a_type_it_does_not_take_go_per_record(ftype: Any) -> None:
    schema = {"type": "record", "name": "R",
              "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": ftype}]}
    assert column_writer(parse_schema(json.dumps(schema)), 1, None) is None


def _widgets(count: int) -> list[dict[str, Any]]:
    colours = ("RED", "GREEN", "BLUE", "OTHER")
    return [{"widget_id": f"widget-{i:06d}", "version": 1 + i % 3, "name": f"bolt {i} é",
             "price": 0.5 + i / 7, "colour": colours[i % 4], "updated_at": 1_795_000_000_000 + i,
             "tags": [f"t{j}" for j in range(i % 4)]} for i in range(count)]


def _catalog_writers() -> tuple[TopicWriter, TopicWriter]:
    """The widgets topic's writer as the Publisher builds it, and one without columns."""
    entry = next(e for e in load_catalog(REPO / "catalog") if e.topic == "widgets")
    parsed = parse_schema(json.dumps(entry.schema))
    keys = list(entry.entry["key"])
    plain = TopicWriter("widgets", 3, 1, parsed, compile_converter(parsed),
                        KeyEncoder(parsed, keys), max_record_bytes=10_000)
    batch = TopicWriter("widgets", 3, 1, parsed, compile_converter(parsed),
                        KeyEncoder(parsed, keys), max_record_bytes=10_000,
                        columns=column_writer(parsed, 3, keys))
    assert batch.columns is not None
    return plain, batch


def test_the_widgets_topic_takes_the_batch_path_with_the_same_bytes() -> None:
    plain, batch = _catalog_writers()
    records = _widgets(MIN_RECORDS + 5)
    for i in range(0, len(records), 3):  # fields with a default, left out (not all)
        del records[i]["tags" if i % 2 else "colour"]
    records[1]["price"] = 10  # an int for a double, as JSON.stringify(10.0) writes it
    assert batch.columns is not None and batch.columns.encode(records) is not None
    assert batch.encode(records) == plain.encode(records)


def test_a_bad_record_in_a_batch_gets_the_per_record_paths_errors() -> None:
    plain, batch = _catalog_writers()
    records = _widgets(MIN_RECORDS + 5)
    bad = [MIN_RECORDS + 1, MIN_RECORDS + 2]
    records[bad[0]]["price"] = "cheap"
    records[bad[1]]["colour"] = "PINK"
    with pytest.raises(RecordValidationError) as reference:
        plain.encode(records)
    with pytest.raises(RecordValidationError) as got:
        batch.encode(records)
    assert got.value.errors == reference.value.errors
    assert [e.index for e in got.value.errors] == bad


def test_a_record_over_the_size_limit_is_named_as_the_per_record_path_names_it() -> None:
    plain, batch = _catalog_writers()
    records = _widgets(MIN_RECORDS + 5)
    records[MIN_RECORDS + 3]["name"] = "n" * 20_000
    with pytest.raises(RequestError) as reference:
        plain.encode(records)
    with pytest.raises(RequestError) as got:
        batch.encode(records)
    assert got.value.status == 413 and str(got.value) == str(reference.value)
    assert f"record {MIN_RECORDS + 3} " in str(got.value)


def test_encode_async_over_several_slices_equals_the_per_record_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain, batch = _catalog_writers()
    assert batch.columns is not None
    step = batch.columns.slice_records
    records = _widgets(2 * step + 17)
    # A turn of the loop after every slice (no wait for the clock): the loop runs between.
    monkeypatch.setattr(publisher, "TURN_SECONDS", 0.0)
    turns = 0

    async def encode_beside_a_ticker() -> list[tuple[bytes | None, bytes]]:
        nonlocal turns

        async def tick() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)  # the ticker's first turn
        started = turns
        try:
            return await batch.encode_async(records)
        finally:
            ticker.cancel()
            turns -= started

    assert asyncio.run(encode_beside_a_ticker()) == plain.encode(records)
    assert turns >= 2  # one after each of the first two slices at least
    records[step + 3]["version"] = 1.5  # a later slice refused: all per record
    with pytest.raises(RecordValidationError) as got:
        asyncio.run(batch.encode_async(records))
    assert [e.index for e in got.value.errors] == [step + 3]
    # A record over the size limit in an earlier slice: the invalid one is still the
    # answer (422 before 413), as on the per-record path.
    records[5]["name"] = "n" * 20_000
    with pytest.raises(RecordValidationError) as got:
        asyncio.run(batch.encode_async(records))
    assert [e.index for e in got.value.errors] == [step + 3]
    records[step + 3]["version"] = 3
    with pytest.raises(RequestError) as too_large:
        asyncio.run(batch.encode_async(records))
    assert too_large.value.status == 413 and "record 5 " in str(too_large.value)


def test_encode_over_several_slices_equals_the_per_record_path() -> None:
    fields = [{"name": f"f{i}", "type": ["null", "long"] if i % 2 else "string"}
              for i in range(120)]
    schema = {"type": "record", "name": "W", "fields": fields}
    reference = _reference(schema, ["f0"])
    writer = column_writer(reference.schema, 7, ["f0"])
    assert writer is not None
    count = 2 * writer.slice_records + 1  # two full slices and one of a single record
    records = [{f["name"]: (None if i % 3 else i * j) if j % 2 else f"r{i}-{j}"
                for j, f in enumerate(fields)} for i in range(count)]
    assert writer.encode(records) == reference.encode(records)
    records[-1]["f1"] = "x"  # a fault in the last slice only
    assert writer.encode(records) is None


def test_a_wide_schema_takes_fewer_records_a_slice() -> None:
    wide = {"type": "record", "name": "W",
            "fields": [{"name": f"f{i}", "type": "long"} for i in range(150)]}
    narrow = {"type": "record", "name": "N", "fields": [{"name": "f", "type": "long"}]}
    slices = [column_writer(parse_schema(json.dumps(s)), 1, None) for s in (wide, narrow)]
    wide_step, narrow_step = (w.slice_records for w in slices if w is not None)
    # Values (plus one a record) a slice: about SLICE_CELLS, but never below the records
    # where the batch path breaks even with the per-record one.
    assert narrow_step * 2 <= SLICE_CELLS < (narrow_step + 1) * 2
    assert wide_step == max(MIN_RECORDS, SLICE_CELLS // 151) < narrow_step
