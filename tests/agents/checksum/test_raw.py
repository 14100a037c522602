"""Raw-count placement: the polars batch path places every record in the same day as the
record-by-record fastavro path, for every kind of partition_time."""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import pyarrow as pa
import pytest

from onepipe.agents.checksum.raw import RawPlacer
from onepipe.agents.verify.sources import TopicView
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import encode
from onepipe.schemas.metadata import metadata_from_dict

KINDS: dict[str, Any] = {
    "millis": {"type": "long", "logicalType": "timestamp-millis"},
    "micros": {"type": "long", "logicalType": "timestamp-micros"},
    "plain": "long",
    "date": {"type": "int", "logicalType": "date"},
    "nullable": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
}


class _Record(NamedTuple):
    value: bytes | None
    timestamp: int


def _schema(kind: str) -> AvroSchema:
    return parse_schema({"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "string"},
        {"name": "colour", "type": {"type": "enum", "name": "C", "symbols": ["A", "B"]}},
        {"name": "at", "type": KINDS[kind]}, {"name": "version", "type": "long"}]})


def _moment(kind: str, rng: random.Random) -> Any:
    import datetime as dt

    instant = dt.datetime(2026, 11, 26, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=rng.randrange(-(10**12), 10**12))
    if kind in ("millis", "micros"):
        return instant
    if kind == "plain":
        return rng.randrange(-(10**13), 10**13)
    if kind == "date":
        return instant.date()
    return None if rng.random() < 0.3 else instant


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_batch_placement_equals_record_by_record(kind: str) -> None:
    rng = random.Random(kind)
    schema = _schema(kind)
    meta = metadata_from_dict("t", {"partitions": 1, "key": ["id"], "partition_time": "at",
                                    "order": {"rule": "max", "field": "version"}})
    records: list[_Record] = [
        _Record(encode(1, schema, {"id": str(i), "colour": "AB"[i % 2],
                                   "at": _moment(kind, rng), "version": i}),
                1_764_115_200_000 + i) for i in range(200)]
    # Undecodable values among them: a tombstone, no frame, an unknown id, a cut body.
    records[3] = _Record(None, 1)
    records[50] = _Record(b"\x01junk", 2)
    records[80] = _Record(b"\x00\x00\x00\x00\x09" + (records[81].value or b"")[5:], 3)
    records[120] = _Record((records[121].value or b"")[:6], 4)

    def schema_by_id(schema_id: int) -> AvroSchema:
        if schema_id != 1:
            raise KeyError(schema_id)
        return schema

    view = TopicView.build(meta, schema)
    batched = RawPlacer(view, schema).place(schema_by_id, records).pairs()
    one_by_one = RawPlacer(view, schema)
    one_by_one._place_whole = lambda *_: None  # type: ignore[method-assign]
    one_by_one._place_batches = lambda *_: set()  # type: ignore[method-assign]
    assert batched == one_by_one.place(schema_by_id, records).pairs()
    assert sum(bad for _, bad in batched) >= 3  # the undecodable ones are flagged
    # Every value framed with one id: the whole batch is placed in one call (no step per
    # record), with the same days (null times fall back to the Kafka timestamp's day).
    good = [r for i, r in enumerate(records) if i not in (3, 50, 80, 120)]
    whole = RawPlacer(view, schema)
    whole._place_batches = lambda *_: set()  # type: ignore[method-assign]
    assert whole.place(schema_by_id, good).pairs() == one_by_one.place(schema_by_id, good).pairs()
    storage = pa.int32() if kind == "date" else pa.int64()
    assert whole._place_whole(schema_by_id, [r.value for r in good], storage) is not None
