"""Planning reads records only as columns: aiokafka's records and librdkafka's columns
plan the same work, and the columns are never turned into record objects."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from onepipe.agents.dedup.plan import PartitionWork, Records, group_by_table, plan_partition
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import KeyEncoder, encode
from onepipe.schemas.metadata import metadata_from_dict
from onepipe.schemas.topic_names import repartition_topic
from onepipe.tables.dedup.decode import TopicReader
from onepipe.tables.dedup.store import Entry, Winner
from onepipe.tables.kafka.record_columns import PartitionRecords

SCHEMA = parse_schema({"type": "record", "name": "R", "fields": [
    {"name": "id", "type": "string"}, {"name": "version", "type": "long"}]})
META = metadata_from_dict("t", {"partitions": 4, "key": ["id"],
                                "order": {"rule": "max", "field": "version"}})
ENCODER = KeyEncoder(SCHEMA, ["id"])
PARTITION = 1


class ColumnsOnly(PartitionRecords):
    """librdkafka's columns that refuse to build a record object."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("planning built a record object from the columns")

    def __iter__(self) -> Any:
        raise AssertionError("planning iterated the columns as records")


Item = tuple[int, int, bool, int | None]  # id, version, carries a header, source offset

items = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 4), st.booleans(),
                           st.one_of(st.none(), st.integers(0, 50))), max_size=40)


def value(ident: int, version: int) -> bytes | None:
    if ident == 12:
        return None if version % 2 else b"not avro"  # undecodable: tombstone, no frame
    return encode(1, SCHEMA, {"id": f"id-{ident}", "version": version})


def both(topic: str, batch: list[Item], routed: bool
         ) -> tuple[list[ConsumerRecord[bytes, bytes]], ColumnsOnly]:
    """The same records as aiokafka's list and as librdkafka's columns."""
    offsets = [100 + i for i in range(len(batch))]
    stamps = [(1, 1_764_151_200_000 + i) for i in range(len(batch))]
    values = [value(ident, version) for ident, version, _, _ in batch]
    headers: list[Any] = []
    for ident, _, carries, source in batch:
        pairs = [("h", b"%d" % ident)] if carries else []
        if routed and source is not None:
            pairs.append(("onepipe.source", b"0:%d" % source))
        headers.append(pairs or None)
    records = [ConsumerRecord(topic, PARTITION, o, s, 0, b"k", v, None, 1, -1 if v is None
                              else len(v), tuple(h or ()))
               for o, (_, s), v, h in zip(offsets, stamps, values, headers, strict=True)]
    columns = ColumnsOnly.of(topic, PARTITION, offsets, stamps, [b"k"] * len(batch), values,
                             headers if any(headers) else None)
    return records, columns


def plan(source: Records, routed: Records, stored: dict[bytes, Winner]) -> PartitionWork:
    reader = TopicReader(META, SCHEMA, {1: SCHEMA}.get)

    def lookup(keys: list[bytes]) -> list[Winner | Entry | None]:
        return [stored.get(k) for k in keys]

    grouped = group_by_table({TopicPartition("t", PARTITION): source,
                              TopicPartition(repartition_topic("t"), PARTITION): routed},
                             {repartition_topic("t"): "t"})
    assert set(grouped) <= {("t", PARTITION)}
    src, rtd = grouped.get(("t", PARTITION), ((), ()))
    return plan_partition("t", PARTITION, 4, reader, src, rtd, lookup)


@settings(max_examples=60, deadline=None)
@given(items, items, st.lists(st.tuples(st.integers(0, 11), st.integers(0, 4)), max_size=6))
def test_columns_plan_what_records_plan(source: list[Item], routed: list[Item],
                                        stored: list[tuple[int, int]]) -> None:
    """Undecodable, misrouted (repartitioned), routed, duplicate and stored versions."""
    winners = {}
    for ident, version in stored:
        v = value(ident, version)
        assert v is not None
        winners[ENCODER.encode({"id": f"id-{ident}"})] = Winner((version, v), v, 0, 7)
    source_records, source_columns = both("t", source, False)
    routed_records, routed_columns = both(repartition_topic("t"), routed, True)
    by_records = plan(source_records, routed_records, winners)
    by_columns = plan(source_columns, routed_columns, winners)
    assert by_columns == by_records
    assert by_columns.consumed == len(source) + len(routed)
