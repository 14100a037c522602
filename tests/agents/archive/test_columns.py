"""The archive's packed chunks: the same records back, cut anywhere, split by hour exactly;
the librdkafka consumer's columns packed without a record object."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from onepipe.agents.archive.agent import ArchiveAgent
from onepipe.agents.archive.columns import columns_of, cut, hour_runs, pack
from onepipe.sinks.lake.raw_layout import hour_segments
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.record_columns import PartitionRecords

TP = TopicPartition("t", 3)
_HOUR = 3_600_000

blobs = st.one_of(st.none(), st.binary(max_size=40))
headers = st.lists(st.tuples(st.text(max_size=5), st.binary(max_size=5)), max_size=2)
timestamps = st.one_of(st.integers(-2 * _HOUR, 5 * _HOUR),
                       st.sampled_from([-1, 0, _HOUR - 1, _HOUR, 2 * _HOUR]))


def _records(rows: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]]
             ) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(TP.topic, TP.partition, 10 + i, ts, 0, key, value, None,
                           len(key or b""), len(value or b""), tuple(hs))
            for i, (key, value, ts, hs) in enumerate(rows)]


rows = st.lists(st.tuples(blobs, blobs, timestamps, headers), min_size=1, max_size=30)


@given(rows, st.integers(1, 7), st.data())
def test_chunks_hold_the_records_and_cut_anywhere(
        batch: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]],
        fetch: int, data: st.DataObject) -> None:
    records = _records(batch)
    chunks = [pack(TP, records[i:i + fetch]) for i in range(0, len(records), fetch)]
    start = data.draw(st.integers(0, len(records) - 1))
    stop = data.draw(st.integers(start + 1, len(records)))
    for part, expected in ((chunks, records), (cut(chunks, start, stop), records[start:stop])):
        columns = columns_of(part)
        assert (columns.topic, columns.partition) == (TP.topic, TP.partition)
        assert columns.offsets.to_pylist() == [r.offset for r in expected]
        assert columns.timestamps.to_pylist() == [r.timestamp for r in expected]
        assert columns.keys.to_pylist() == [r.key for r in expected]
        assert columns.values.to_pylist() == [r.value for r in expected]
        assert list(columns.headers or [()] * len(expected)) == [r.headers for r in expected]
        assert part[0].first_offset() == expected[0].offset
        assert part[-1].last_offset() == expected[-1].offset
        assert sum(c.size for c in part) == sum(len(r.key or b"") + len(r.value or b"")
                                                for r in expected)
        assert max(c.largest for c in part) >= max(len(r.key or b"") + len(r.value or b"")
                                                   for r in expected)


@given(st.lists(timestamps, min_size=1, max_size=40), st.integers(1, 9))
def test_hour_runs_are_the_layouts_hour_segments(stamps: list[int], fetch: int) -> None:
    records = _records([(None, b"v", ts, []) for ts in stamps])
    chunks = [pack(TP, records[i:i + fetch]) for i in range(0, len(records), fetch)]
    assert hour_runs(chunks) == hour_segments(stamps)


class ColumnsOnly(PartitionRecords):
    """The librdkafka consumer's columns, refusing to make a record object: what the
    archive reads must come through the column readers."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, slice):
            raise TypeError(f"a record object was asked for (index {index})")
        return super().__getitem__(index)  # a ColumnsOnly too

    def __iter__(self) -> Any:
        raise AssertionError("the records were iterated one by one")


def _columns(rows: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]],
             first: int = 10) -> ColumnsOnly:
    """The rows as the librdkafka consumer hands them over (offsets from ``first``)."""
    headers: list[Any] | None = [list(hs) or None for _, _, _, hs in rows]
    return ColumnsOnly.of(TP.topic, TP.partition, list(range(first, first + len(rows))),
                          [(1, ts) for _, _, ts, _ in rows], [k for k, _, _, _ in rows],
                          [v for _, v, _, _ in rows], headers if any(headers or ()) else None)


@given(rows)
def test_columns_pack_as_the_records_do(
        batch: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]]) -> None:
    assert pack(TP, _columns(batch)) == pack(TP, _records(batch))


@given(rows, st.integers(0, 40))
def test_redelivered_columns_are_dropped_without_a_record_object(
        batch: list[tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]],
        expected: int) -> None:
    agent = ArchiveAgent(kafka=KafkaClients("127.0.0.1:9"), group_id="g",
                         registry=cast(Any, None), lake=cast(Any, None))
    agent._expected[TP] = expected  # noqa: SLF001 - the position a seek or a buffer left
    agent._buffer({TP: _columns(batch)})  # noqa: SLF001
    kept = [r for r in _records(batch) if r.offset >= expected]
    assert agent.metrics.redelivered == len(batch) - len(kept)
    assert agent.metrics.records_in == len(kept)
    if kept:
        assert agent._buffers[TP].chunks == [pack(TP, kept)]  # noqa: SLF001
        assert agent._expected[TP] == kept[-1].offset + 1  # noqa: SLF001
    else:
        assert TP not in agent._buffers  # noqa: SLF001
