"""Building a dedup batch's output: every record, in order, in batches that fit."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatch

from onepipe.agents.dedup.output import Built, _build, _build_unique
from onepipe.agents.dedup.plan import Unique
from onepipe.schemas.topic_names import unique_topic

Record = tuple[bytes, bytes, int, list[tuple[str, bytes]]]


def records(count: int) -> list[Record]:
    return [(b"k%d" % i, b"v" * (i % 50), 1_764_151_200_000 + i, [("onepipe.source", b"0:%d" % i)])
            for i in range(count)]


def decoded(built: Built) -> list[Record]:
    out: list[Record] = []
    for _, _, batch, count in built.batches:
        assert batch.record_count() == count
        items = list(DefaultRecordBatch(bytes(batch._build())))  # noqa: SLF001 - the sent bytes
        assert len(items) == count
        out.extend((r.key, r.value, r.timestamp, list(r.headers)) for r in items)
    return out


async def test_records_fill_batches_in_order() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=2000)
    try:
        data = records(300)
        built = Built()
        _build(producer, unique_topic("t"), 1, data, built)
        assert len(built.batches) > 5  # 2000-byte batches: the records need several
        assert {(t, p) for t, p, _, _ in built.batches} == {(unique_topic("t"), 1)}
        assert decoded(built) == data
    finally:
        await producer.stop()


async def test_winner_columns_build_the_same_batches_as_records() -> None:
    """The column-wise path (the C builder's append mapped over the columns) produces the
    records, batch cuts and counts of the per-record one."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=2000)
    try:
        data = records(300)
        by_record, by_column = Built(), Built()
        _build(producer, unique_topic("t"), 1, data, by_record)
        keys, values, stamps, headers = (list(column) for column in zip(*data, strict=True))
        _build_unique(producer, unique_topic("t"), 1, Unique(keys, values, stamps, headers),
                      by_column)
        assert decoded(by_column) == decoded(by_record) == data
        assert [c for *_, c in by_column.batches] == [c for *_, c in by_record.batches]
    finally:
        await producer.stop()


async def test_a_winner_larger_than_a_batch_gets_a_batch_of_its_own_on_both_paths() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=300)
    try:
        data: list[Record] = [(b"a", b"v", 1, []), (b"b", b"w" * 5000, 2, []), (b"c", b"x", 3, [])]
        by_record, by_column = Built(), Built()
        _build(producer, unique_topic("t"), 0, data, by_record)
        _build_unique(producer, unique_topic("t"), 0,
                      Unique([b"a", b"b", b"c"], [b"v", b"w" * 5000, b"x"], [1, 2, 3],
                             [[], [], []]), by_column)
        assert decoded(by_column) == decoded(by_record) == data
        assert [c for *_, c in by_column.batches] == [c for *_, c in by_record.batches]
    finally:
        await producer.stop()
