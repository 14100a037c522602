"""Raw lake Parquet format: Kafka records and their decoded fields survive a round trip."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import decode, encode
from onepipe.schemas.errors import SchemaError
from onepipe.sinks.formats import raw as raw_format
from onepipe.sinks.formats.raw import (
    KAFKA_COLUMNS,
    RawRecord,
    build_raw_table,
    decode_parquet,
    encode_parquet,
    raw_arrow_schema,
)

ADDRESS = {"type": "record", "name": "Address", "fields": [
    {"name": "street", "type": "string"},
    {"name": "zip", "type": ["null", "string"]},
]}
LINE = {"type": "record", "name": "Line", "fields": [
    {"name": "sku", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "color", "type": "Color"},  # reference to an enum defined earlier
]}
NODE = {"type": "record", "name": "Node", "fields": [
    {"name": "value", "type": "int"},
    {"name": "next", "type": ["null", "Node"]},
]}
RICH = parse_schema({"type": "record", "name": "Rich", "namespace": "t.rich", "fields": [
    {"name": "id", "type": "string"},
    {"name": "flag", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "b", "type": "bytes"},
    {"name": "nothing", "type": "null"},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "fx_again", "type": "t.rich.Four"},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
    {"name": "paint", "type": [
        "Color",
        {"type": "enum", "name": "Color", "namespace": "other", "symbols": ["CYAN", "MAGENTA"]},
    ]},
    {"name": "ts_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ts_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "lts_ms", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
    {"name": "lts_us", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "tm_ms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "tm_us", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal",
                               "precision": 10, "scale": 2}},
    {"name": "big", "type": {"type": "fixed", "name": "Big", "size": 24,
                             "logicalType": "decimal", "precision": 50, "scale": 5}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "address", "type": ADDRESS},
    {"name": "billing", "type": ["null", "Address"]},
    {"name": "lines", "type": {"type": "array", "items": LINE}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "scores", "type": {"type": "map", "values": ["null", "double"]}},
    {"name": "shape", "type": [
        {"type": "record", "name": "Circle", "fields": [{"name": "radius", "type": "double"}]},
        {"type": "record", "name": "Square", "fields": [{"name": "side", "type": "double"}]},
    ]},
    {"name": "mixed", "type": ["null", "int", "string"]},
    {"name": "maybe", "type": ["null", "long"]},
    {"name": "matrix", "type": {"type": "array", "items": {"type": "array", "items": "int"}}},
    {"name": "chain", "type": NODE},
    {"name": "uids", "type": {"type": "array", "items": {"type": "string",
                                                          "logicalType": "uuid"}}},
]})
SCHEMAS = {7: RICH}


def rich_datum(n: int) -> dict[str, Any]:
    return {
        "id": f"r{n}", "flag": n % 2 == 0, "i": -(2**31) + n, "l": 2**62 + n, "f": 1.5,
        "d": n / 3, "b": bytes(range(n % 256)), "nothing": None, "fx": b"\x00\x01\x02\x03",
        "fx_again": b"abcd", "color": "GREEN", "paint": "CYAN" if n % 2 else "RED",
        "ts_ms": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        "ts_us": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        # local-timestamp-* values are naive datetimes by definition
        "lts_ms": datetime(2026, 1, 2, 3, 4, 5, 7000),  # noqa: DTZ001
        "lts_us": datetime(2026, 1, 2, 3, 4, 5, 8),  # noqa: DTZ001
        "day": date(2026, 11, 26), "tm_ms": time(23, 59, 59, 999000), "tm_us": time(0, 0, 0, 1),
        "price": Decimal("-12345678.91"), "big": Decimal("123456789012345678901234567890.12345"),
        "uid": str(uuid.UUID(int=n + 1)),
        "address": {"street": "Main 1", "zip": None if n % 2 else "12345"},
        "billing": None if n % 2 else {"street": "Side 2", "zip": "9"},
        "lines": [{"sku": f"s{k}", "qty": k, "color": "RED"} for k in range(n % 3)],
        "attrs": {"a": 1, "b": -2} if n % 2 else {},
        "scores": {"x": None, "y": 0.25},
        "shape": {"radius": 2.0} if n % 2 else {"side": 3.0},
        "mixed": [None, 5, "five"][n % 3],
        "maybe": None if n % 2 else n,
        "matrix": [[1, 2], [], [3]],
        "chain": {"value": 1, "next": {"value": 2, "next": {"value": 3, "next": None}}},
        "uids": [str(uuid.UUID(int=7))],
    }


def make_batch(count: int) -> tuple[list[RawRecord], list[int | None], list[Any], list[Any]]:
    records: list[RawRecord] = []
    ids: list[int | None] = []
    decoded: list[Any] = []
    errors: list[Any] = []
    for n in range(count):
        value = encode(7, RICH, rich_datum(n))
        headers = (("trace", f"t{n}".encode()), ("trace", b""), ("empty", b"\x00\xff"))[: n % 4]
        records.append(RawRecord("rich", 2, 100 + n, 1_764_000_000_000 + n, headers,
                                 f"k{n}".encode(), value))
        schema_id, datum = decode(value, SCHEMAS.__getitem__, RICH)
        ids.append(schema_id)
        decoded.append(datum)
        errors.append(None)
    # One record that is not Confluent-framed Avro: archived anyway, typed columns null.
    records.append(RawRecord("rich", 2, 100 + count, 1_764_000_001_000, (), b"bad", b"\x01junk"))
    ids.append(None)
    decoded.append(None)
    errors.append("value starts with byte 0x01, not the Confluent magic 0x00")
    # A tombstone with a null key.
    records.append(RawRecord("rich", 2, 101 + count, 1_764_000_002_000, (), None, None))
    ids.append(None)
    decoded.append(None)
    errors.append(None)
    return records, ids, decoded, errors


def as_arrow_python(datum: dict[str, Any]) -> dict[str, Any]:
    """The decoded datum as ``Table.to_pylist`` gives it back (the documented mapping)."""
    out = dict(datum)
    cyan = datum["paint"] == "CYAN"  # two enums named Color: branches take full names
    out["paint"] = {"t.rich.Color": None if cyan else datum["paint"],
                    "other.Color": datum["paint"] if cyan else None}
    out["attrs"] = list(datum["attrs"].items())
    out["scores"] = list(datum["scores"].items())
    out["uid"] = str(datum["uid"])
    out["uids"] = [str(u) for u in datum["uids"]]
    circle = "radius" in datum["shape"]
    out["shape"] = {"Circle": datum["shape"] if circle else None,
                    "Square": None if circle else datum["shape"]}
    mixed = datum["mixed"]
    out["mixed"] = None if mixed is None else {
        "int": mixed if isinstance(mixed, int) else None,
        "string": mixed if isinstance(mixed, str) else None,
    }
    out["chain"] = {"value": datum["chain"]["value"],
                    "next": orjson.dumps(datum["chain"]["next"]).decode()}
    return out


@pytest.fixture(scope="module")
def batch() -> tuple[list[RawRecord], list[int | None], list[Any], list[Any], bytes]:
    records, ids, decoded, errors = make_batch(12)
    data = encode_parquet(build_raw_table(records, ids, decoded, errors, RICH))
    return records, ids, decoded, errors, data


def test_metadata_columns_hold_the_records_exactly(batch: Any) -> None:
    records, ids, _, errors, data = batch
    table = decode_parquet(data)
    assert tuple(table.column_names[: len(KAFKA_COLUMNS)]) == KAFKA_COLUMNS
    rows = table.select(list(KAFKA_COLUMNS)).to_pylist()
    assert [r["_kafka_topic"] for r in rows] == [r.topic for r in records]
    assert [r["_kafka_partition"] for r in rows] == [r.partition for r in records]
    assert [r["_kafka_offset"] for r in rows] == [r.offset for r in records]
    assert table.column("_kafka_timestamp").cast(pa.int64()).to_pylist() == [
        r.timestamp_ms for r in records]
    assert [tuple((h["key"], h["value"]) for h in r["_kafka_headers"]) for r in rows] == [
        r.headers for r in records]
    assert [r["_kafka_key"] for r in rows] == [r.key for r in records]
    assert [r["_kafka_value"] for r in rows] == [r.value for r in records]
    assert [r["_kafka_schema_id"] for r in rows] == ids
    assert [r["_kafka_decode_error"] for r in rows] == errors


def test_typed_columns_equal_the_decoded_values(batch: Any) -> None:
    _, _, decoded, _, data = batch
    table = decode_parquet(data)
    typed = table.drop_columns(list(KAFKA_COLUMNS)).to_pylist()
    assert list(typed[0]) == RICH.field_names()
    for got, datum in zip(typed[:12], decoded[:12], strict=True):
        assert got == as_arrow_python(datum)


def test_undecodable_records_keep_bytes_and_have_null_typed_columns(batch: Any) -> None:
    records, _, _, _, data = batch
    rows = decode_parquet(data).to_pylist()
    for row, record in zip(rows[-2:], records[-2:], strict=True):
        assert (row["_kafka_key"], row["_kafka_value"]) == (record.key, record.value)
        assert all(row[name] is None for name in RICH.field_names())


def test_file_schema_is_the_raw_schema_and_types_follow_the_mapping(batch: Any) -> None:
    table = decode_parquet(batch[4])
    schema = raw_arrow_schema(RICH)
    assert table.schema.equals(schema) and table.schema.metadata == schema.metadata
    assert schema.metadata[raw_format.READER_SCHEMA_KEY] == RICH.text.encode()
    types = {f.name: f.type for f in schema}
    assert types["_kafka_timestamp"] == pa.timestamp("ms", tz="UTC")
    assert types["i"] == pa.int32() and types["f"] == pa.float32()
    assert types["fx"] == types["fx_again"] == pa.binary(4)
    assert types["color"] == pa.dictionary(pa.int32(), pa.string())
    assert types["paint"] == pa.struct([("t.rich.Color", pa.string()),
                                        ("other.Color", pa.string())])
    assert types["ts_us"] == pa.timestamp("us", tz="UTC")
    assert types["lts_ms"] == pa.timestamp("ms")
    assert types["tm_ms"] == pa.time32("ms") and types["tm_us"] == pa.time64("us")
    assert types["price"] == pa.decimal128(10, 2) and types["big"] == pa.decimal256(50, 5)
    assert types["maybe"] == pa.int64() and types["nothing"] == pa.null()
    # Nested fields are all nullable, whichever decoder made the column (arrow_types).
    assert types["chain"] == pa.struct([pa.field("value", pa.int32()),
                                        pa.field("next", pa.string())])
    assert types["mixed"] == pa.struct([("int", pa.int32()), ("string", pa.string())])
    assert all(schema.field(n).nullable for n in RICH.field_names())


def test_file_reads_with_dataset_and_read_table_and_is_zstd(batch: Any, tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000100-00000000000000000113.parquet"
    path.write_bytes(batch[4])
    expected = decode_parquet(batch[4])
    assert pq.read_table(path).equals(expected)
    assert ds.dataset(path, format="parquet").to_table().equals(expected)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == len(batch[0])
    assert {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"ZSTD"}
    offsets = meta.row_group(0).column(KAFKA_COLUMNS.index("_kafka_offset")).statistics
    assert (offsets.min, offsets.max) == (100, 113)


def test_row_groups_are_cut_every_row_group_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw_format, "ROW_GROUP_ROWS", 5)
    data = encode_parquet(build_raw_table(*make_batch(10), RICH))
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [5, 5, 2]


def test_without_a_record_reader_only_metadata_columns() -> None:
    records, ids, decoded, errors = make_batch(2)
    assert raw_arrow_schema(None).names == list(KAFKA_COLUMNS)
    assert raw_arrow_schema(parse_schema('"string"')).names == list(KAFKA_COLUMNS)
    table = decode_parquet(encode_parquet(build_raw_table(records, ids, decoded, errors, None)))
    assert table.column_names == list(KAFKA_COLUMNS)
    assert table.column("_kafka_value").to_pylist() == [r.value for r in records]


def test_empty_batch_builds_an_empty_file() -> None:
    table = decode_parquet(encode_parquet(build_raw_table([], [], [], [], RICH)))
    assert table.num_rows == 0 and table.schema.equals(raw_arrow_schema(RICH))


def test_reserved_prefix_is_refused() -> None:
    clash = parse_schema({"type": "record", "name": "C", "fields": [
        {"name": "_kafka_offset", "type": "long"}]})
    with pytest.raises(SchemaError, match="_kafka_offset.*reserved"):
        raw_arrow_schema(clash)


def test_inputs_must_be_parallel_and_match_the_reader() -> None:
    records, ids, decoded, errors = make_batch(2)
    with pytest.raises(ValueError, match="parallel"):
        build_raw_table(records, ids[:-1], decoded, errors, RICH)
    wrong = [{**d, "i": "not an int"} if d else d for d in decoded]
    with pytest.raises(ValueError, match="reader schema"):
        build_raw_table(records, ids, wrong, errors, RICH)
    wrong = [{**d, "mixed": 1.5} if d else d for d in decoded]
    with pytest.raises(ValueError, match="'mixed'.*fits no branch"):
        build_raw_table(records, ids, wrong, errors, RICH)


def test_unknown_named_type_is_a_schema_error() -> None:
    # parse_schema refuses such a schema; the layout must refuse it too, not guess.
    schema = dataclasses.replace(RICH, json={"type": "record", "name": "R", "fields": [
        {"name": "x", "type": "Missing"}]})
    with pytest.raises(SchemaError, match="'Missing'"):
        raw_arrow_schema(schema)


def test_recursive_type_in_a_general_union_is_json() -> None:
    tree = parse_schema({"type": "record", "name": "Tree", "fields": [
        {"name": "label", "type": "string"},
        {"name": "kids", "type": {"type": "array", "items": ["Tree", "string"]}},
    ]})
    datum = {"label": "root", "kids": [{"label": "a", "kids": ["leaf"]}, "tip"]}
    schema_id, decoded = decode(encode(1, tree, datum), {1: tree}.__getitem__)
    record = RawRecord("t", 0, 0, 0, (), None, encode(1, tree, datum))
    row = build_raw_table([record], [schema_id], [decoded], [None], tree).to_pylist()[0]
    assert row["kids"] == [
        {"Tree": '{"label":"a","kids":["leaf"]}', "string": None},
        {"Tree": None, "string": "tip"},
    ]


_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
_RECORDS = st.lists(st.builds(
    RawRecord,
    topic=_TEXT,
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
    headers=st.lists(st.tuples(_TEXT, st.binary(max_size=20)), max_size=3).map(tuple),
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=200),
), max_size=30)


@settings(max_examples=60, deadline=None)
@given(records=_RECORDS, with_reader=st.booleans())
def test_any_undecoded_records_round_trip_exactly(records: list[RawRecord],
                                                  with_reader: bool) -> None:
    n = len(records)
    errors = [f"error {i}" if i % 2 else None for i in range(n)]
    ids = [i if i % 3 else None for i in range(n)]
    reader = RICH if with_reader else None
    table = decode_parquet(encode_parquet(
        build_raw_table(records, ids, [None] * n, errors, reader)))
    # Timestamps compare as integers: most int64 milliseconds are no Python datetime.
    stamps = table.column("_kafka_timestamp").cast(pa.int64()).to_pylist()
    rows = table.drop_columns(["_kafka_timestamp"]).to_pylist()
    back = [
        RawRecord(r["_kafka_topic"], r["_kafka_partition"], r["_kafka_offset"], ts,
                  tuple((h["key"], h["value"]) for h in r["_kafka_headers"]),
                  r["_kafka_key"], r["_kafka_value"])
        for r, ts in zip(rows, stamps, strict=True)
    ]
    assert back == records
    assert table.column("_kafka_decode_error").to_pylist() == errors
    assert table.column("_kafka_schema_id").to_pylist() == ids
    if reader is not None:
        assert all(table.column(name).null_count == n for name in reader.field_names())


def test_named_types_resolve_with_avro_namespace_rules() -> None:
    schema = parse_schema({"type": "record", "name": "Outer", "namespace": "a", "fields": [
        {"name": "inner", "type": {"type": "record", "name": "Inner", "namespace": "b",
                                   "fields": [
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
            {"name": "e2", "type": "E"},  # short name, resolved in namespace b
        ]}},
        {"name": "e3", "type": "b.E"},  # full name from namespace a
        {"name": "f", "type": {"type": "fixed", "name": "c.F", "size": 2}},  # dotted name
        {"name": "f2", "type": ["null", "c.F"]},
    ]})
    types = {f.name: f.type for f in raw_arrow_schema(schema)}
    assert types["inner"] == pa.struct([pa.field("e", pa.string()), pa.field("e2", pa.string())])
    assert types["e3"] == pa.dictionary(pa.int32(), pa.string())
    assert types["f"] == types["f2"] == pa.binary(2)
    datum = {"inner": {"e": "X", "e2": "Y"}, "e3": "Y", "f": b"ab", "f2": None}
    schema_id, decoded = decode(encode(1, schema, datum), {1: schema}.__getitem__)
    record = RawRecord("t", 0, 0, 0, (), None, encode(1, schema, datum))
    assert build_raw_table([record], [schema_id], [decoded], [None], schema).drop_columns(
        list(KAFKA_COLUMNS)).to_pylist() == [datum]
