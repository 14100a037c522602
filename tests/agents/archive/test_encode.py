"""The encoder never fails a segment on bad values: they are archived as undecodable."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import ConsumerRecord, TopicPartition

from onepipe.agents.archive.columns import pack
from onepipe.agents.archive.encode import Segment, encode_segment
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.avro_write import zigzag_varint
from onepipe.schemas.codec import encode

SCHEMA = {"type": "record", "name": "E", "fields": [
    {"name": "id", "type": "string"}, {"name": "n", "type": "int"}]}
OTHER = {"type": "record", "name": "F", "fields": [{"name": "x", "type": "long"}]}


def test_an_int_beyond_32_bits_is_undecodable_not_a_failed_segment() -> None:
    good = encode(1, parse_schema(SCHEMA), {"id": "a", "n": 7})
    # "b" as an Avro string, then an int field holding 2**32 + 7: no Avro writer makes it.
    bad = b"\x00\x00\x00\x00\x01" + zigzag_varint(1) + b"b" + zigzag_varint(2**32 + 7)
    other = encode(2, parse_schema(OTHER), {"x": 1})  # a second writer id: record by record
    text = json.dumps(SCHEMA)
    records = [ConsumerRecord("t", 0, offset, 0, 0, None, value, None, 0, len(value), ())
               for offset, value in enumerate([good, bad, other])]
    segment = Segment([pack(TopicPartition("t", 0), records)], text,
                      {1: text, 2: json.dumps(OTHER)})
    data, undecodable = encode_segment(segment)
    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    assert undecodable == 2  # the bad int, and the record of a schema the reader cannot read
    assert rows[0]["n"] == 7 and rows[0]["_kafka_decode_error"] is None
    assert rows[1]["n"] is None and "outside" in rows[1]["_kafka_decode_error"]
    assert [r["_kafka_value"] for r in rows] == [good, bad, other]


def test_a_header_beyond_int32_is_undecodable_not_a_failed_segment() -> None:
    # Looks framed, but its id is no int32: read signed, as Confluent's deserializer does.
    good = encode(1, parse_schema(SCHEMA), {"id": "a", "n": 7})
    records = [ConsumerRecord("t", 0, offset, 0, 0, None, value, None, 0, len(value), ())
               for offset, value in enumerate([good, b"\x00\x80\x00\x00\x00"])]
    text = json.dumps(SCHEMA)
    data, undecodable = encode_segment(Segment([pack(TopicPartition("t", 0), records)], text,
                                               {1: text}))
    rows = pq.read_table(pa.BufferReader(data)).to_pylist()
    assert undecodable == 1
    assert [r["_kafka_schema_id"] for r in rows] == [1, -(2**31)]
    assert "schema id -2147483648 is not in the registry" in rows[1]["_kafka_decode_error"]
