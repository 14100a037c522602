"""Batch Avro decoding must equal record-by-record decoding, or refuse the batch."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import decode, encode_body
from onepipe.sinks.formats.avro_batch import decode_batch, decode_framed
from onepipe.sinks.formats.raw import RawRecord, build_raw_table, typed_schema

FLAT = parse_schema({"type": "record", "name": "Flat", "namespace": "t.batch", "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "small", "type": "int"},
    {"name": "ratio", "type": "double"},
    {"name": "f", "type": "float"},
    {"name": "ok", "type": "boolean"},
    {"name": "blob", "type": "bytes"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "note", "type": ["null", "string"], "default": None},
    {"name": "where", "type": ["null", {"type": "record", "name": "Place", "fields": [
        {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"]}]}],
     "default": None},
]})
NESTED_ENUM = parse_schema({"type": "record", "name": "Outer", "fields": [
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
        {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["X", "Y"]}}]}}]})

flat_records = st.fixed_dictionaries({
    "id": st.text(max_size=20),
    "n": st.integers(-(2**63), 2**63 - 1),
    "small": st.integers(-(2**31), 2**31 - 1),
    "ratio": st.floats(allow_nan=False),
    "f": st.floats(width=32, allow_nan=False),
    "ok": st.booleans(),
    "blob": st.binary(max_size=30),
    "at": st.integers(0, 253_402_300_799_000),
    "day": st.integers(0, 2_932_896),
    "kind": st.sampled_from(["A", "B", "C"]),
    "tags": st.lists(st.text(max_size=5), max_size=4),
    "note": st.none() | st.text(max_size=10),
    "where": st.none() | st.fixed_dictionaries(
        {"city": st.text(max_size=8), "zip": st.none() | st.integers(-(2**31), 2**31 - 1)}),
})


def framed(bodies: list[bytes], schema: AvroSchema, expected: pa.Schema
           ) -> list[pa.Array] | None:
    """decode_framed of the bodies with a Confluent header, as the archive's encoder calls it."""
    values = pa.array([b"\x00\x00\x00\x00\x01" + b for b in bodies], pa.binary())
    return decode_framed(values, schema, expected)


def framed_chunked(bodies: list[bytes], schema: AvroSchema, expected: pa.Schema
                   ) -> list[pa.Array] | None:
    """decode_framed of the framed values as a chunked column, as the archive's encoder
    passes a buffer of several fetches: chunks of up to 3 values, each a slice of a larger
    array (so its items start inside its data buffer)."""
    chunks = []
    for i in range(0, len(bodies), 3):
        padded = pa.array([b"pad", *(b"\x00\x00\x00\x00\x01" + b for b in bodies[i:i + 3]),
                           b"tail"], pa.binary())
        chunks.append(padded.slice(1, len(padded) - 2))
    return decode_framed(pa.chunked_array(chunks, pa.binary()), schema, expected)


#: The batch decoders: bodies as a list, and framed values as one Arrow column, whole or
#: chunked.
DECODERS = pytest.mark.parametrize("decoder", [decode_batch, framed, framed_chunked],
                                   ids=["list", "framed", "framed-chunked"])


def slow_columns(schema: AvroSchema, bodies: list[bytes]) -> list[pa.Array]:
    """Typed columns the record-by-record path makes (fastavro + raw_format)."""
    decoded = [decode(b"\x00\x00\x00\x00\x01" + b, {1: schema}.__getitem__)[1] for b in bodies]
    records = [RawRecord("t", 0, i, 0, (), None, b) for i, b in enumerate(bodies)]
    table = build_raw_table(records, [1] * len(bodies), decoded, [None] * len(bodies), schema)
    return [table.column(f.name).combine_chunks() for f in typed_schema(schema)]


@DECODERS
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.differing_executors])
@given(st.lists(flat_records, min_size=1, max_size=40))
def test_batch_decoding_equals_record_by_record(decoder: Any, records: list[dict[str, Any]]
                                                ) -> None:
    bodies = [encode_body(FLAT, r) for r in records]
    fast = decoder(bodies, FLAT, typed_schema(FLAT))
    assert fast is not None, "the flat schema is one polars reads"
    assert [c.to_pylist() for c in fast] == [c.to_pylist() for c in slow_columns(FLAT, bodies)]
    assert [c.type for c in fast] == [f.type for f in typed_schema(FLAT)]


def _sample(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "n": i, "small": i, "ratio": 0.5, "f": 1.5, "ok": True,
            "blob": b"\x00\x01", "at": 1_764_151_200_000 + i, "day": 20_000, "kind": "B",
            "tags": ["a"], "note": None, "where": {"city": "x", "zip": None}}


@DECODERS
@pytest.mark.parametrize("damage", [
    pytest.param(lambda b: b + b"\x02\x02zz", id="trailing-bytes"),
    pytest.param(lambda b: b[:-3], id="truncated"),
    pytest.param(lambda b: b"", id="empty"),
])
def test_a_damaged_value_refuses_the_batch(decoder: Any, damage: Any) -> None:
    bodies = [encode_body(FLAT, _sample(i)) for i in range(50)]
    bodies[20] = damage(bodies[20])
    assert decoder(bodies, FLAT, typed_schema(FLAT)) is None


@DECODERS
def test_schemas_polars_cannot_read_are_refused_without_a_panic(decoder: Any) -> None:
    bodies = [encode_body(NESTED_ENUM, {"inner": {"kind": "Y"}}) for _ in range(3)]
    assert decoder(bodies, NESTED_ENUM, typed_schema(NESTED_ENUM)) is None
    # ...and record by record still decodes them.
    assert slow_columns(NESTED_ENUM, bodies)[0].to_pylist() == [{"kind": "Y"}] * 3


@DECODERS
def test_values_over_16_kib_take_the_long_length_prefix(decoder: Any) -> None:
    """Lengths below 16 KiB are framed from a table; longer ones are encoded on the spot."""
    records = [{**_sample(i), "blob": bytes([i]) * (20_000 + i)} for i in range(20)]
    bodies = [encode_body(FLAT, r) for r in records]
    fast = decoder(bodies, FLAT, typed_schema(FLAT))
    assert fast is not None
    assert [c.to_pylist() for c in fast] == [c.to_pylist() for c in slow_columns(FLAT, bodies)]
