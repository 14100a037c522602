"""Building a dedup batch's output: every record, in order, in batches that fit."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatch

from onepipe.agents.dedup.output import Built, _build
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
