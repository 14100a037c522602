"""Committed offsets, end offsets and lag read from the real (tansu) broker.

End offsets must be the exact record counts: tansu's ListOffsets(latest) answers the base
offset of the last batch + 1 (30 records in three batches -> 21, DESIGN.md), so records
are produced in several batches per partition and the figures are asserted exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.offsets import OffsetReader, PartitionOffsets
from tests.fixtures.services import kafka_for, unique

#: Records per partition, each list item one producer batch: p0 three batches of 10,
#: p1 one of 7 and one of 5, p2 nothing.
BATCHES = {0: [10, 10, 10], 1: [7, 5], 2: []}
ENDS = {p: sum(sizes) for p, sizes in BATCHES.items()}


async def produce_batches(broker: str, topic: str, batches: dict[int, list[int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=False,
                                linger_ms=0)
    await producer.start()
    try:
        for partition, sizes in batches.items():
            for size in sizes:
                # Queued together, flushed together: one record batch on the broker.
                for i in range(size):
                    await producer.send(topic, f"r{i}".encode(), key=b"k", partition=partition)
                await producer.flush()
    finally:
        await producer.stop()


async def commit(broker: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (manual assignment)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


@pytest.fixture
async def topic(broker: str) -> str:
    name = unique("offsets")
    await ensure_topic(kafka_for(broker), name, partitions=3, replication_factor=1)
    await produce_batches(broker, name, BATCHES)
    return name


@pytest.fixture
async def reader(broker: str) -> AsyncIterator[OffsetReader]:
    async with OffsetReader(kafka_for(broker)) as started:
        yield started


async def test_end_offsets_are_exact_record_counts(reader: OffsetReader, topic: str) -> None:
    tps = [TopicPartition(topic, p) for p in BATCHES]
    assert await reader.high_watermarks(tps) == {TopicPartition(topic, p): n
                                                 for p, n in ENDS.items()}
    # From a committed position, including one equal to the end: the same figures.
    near = {TopicPartition(topic, 0): 12, TopicPartition(topic, 1): 12}
    assert await reader.high_watermarks(tps, near) == {TopicPartition(topic, p): n
                                                       for p, n in ENDS.items()}
    # A second read after more records sees them (no stale watermark kept between reads).
    await produce_batches(reader.bootstrap, topic, {0: [3], 2: [4, 1]})
    assert await reader.high_watermarks(tps) == {TopicPartition(topic, 0): 33,
                                                 TopicPartition(topic, 1): 12,
                                                 TopicPartition(topic, 2): 5}


async def test_committed_and_lag_of_a_group_that_read_part_of_the_topic(
    reader: OffsetReader, topic: str, broker: str
) -> None:
    group = unique("partial")
    await commit(broker, group, {TopicPartition(topic, 0): 12, TopicPartition(topic, 1): 12})
    rows = await reader.group_offsets(group, [topic])
    assert rows == [
        PartitionOffsets(group, topic, 0, committed=12, end=30, log_start=0),
        PartitionOffsets(group, topic, 1, committed=12, end=12, log_start=0),
        PartitionOffsets(group, topic, 2, committed=None, end=0, log_start=0),
    ]
    assert [r.lag for r in rows] == [18, 0, 0]


async def test_a_group_that_never_committed_lags_by_the_whole_log(
    reader: OffsetReader, topic: str
) -> None:
    rows = await reader.group_offsets(unique("never"), [topic])
    assert [(r.partition, r.committed, r.end, r.lag) for r in rows] == [
        (0, None, 30, 30), (1, None, 12, 12), (2, None, 0, 0)]


async def test_a_missing_topic_is_left_out_and_never_created(
    reader: OffsetReader, broker: str
) -> None:
    missing = unique("missing")
    assert await reader.group_offsets(unique("g"), [missing]) == []
    assert await reader.partition_counts([missing]) == {}
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()


async def test_stop_twice_is_harmless_and_use_after_stop_is_an_error(broker: str) -> None:
    reader = OffsetReader(kafka_for(broker))
    await reader.start()
    await reader.stop()
    await reader.stop()
    with pytest.raises(RuntimeError, match="closed"):
        await reader.existing_topics()
