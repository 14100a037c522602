"""Recovery from a changelog on the real broker: whole batches only, stale stores rebuilt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.state import (
    MARKER_KEY,
    PartitionState,
    Position,
    StateStore,
    Table,
    encode_marker,
    recover,
)
from tests.fixtures.services import kafka_for, unique


@pytest.fixture
async def changelog(broker: str) -> AsyncIterator[tuple[TopicPartition, AIOKafkaProducer]]:
    kafka = kafka_for(broker)
    topic = unique("state-changelog")
    await ensure_topic(kafka, topic, partitions=1, replication_factor=1,
                       configs={"cleanup.policy": "compact"})
    producer = kafka.producer("state-test")
    await producer.start()
    try:
        yield TopicPartition(topic, 0), producer
    finally:
        await producer.stop()


async def write(producer: AIOKafkaProducer, tp: TopicPartition,
                messages: list[tuple[bytes, bytes | None]]) -> int:
    """Produce in order; the offset of the last one."""
    offset = -1
    for key, value in messages:
        meta = await producer.send_and_wait(tp.topic, value, key=key, partition=tp.partition)
        offset = meta.offset
    return offset


def marker(next_offset: int, stream_time: int) -> tuple[bytes, bytes]:
    return MARKER_KEY, encode_marker(Position(next_offset, 0, stream_time))


async def recover_into(broker: str, tp: TopicPartition, store: StateStore) -> Position:
    reader = kafka_for(broker).reader("state-recovery")
    await reader.start()
    try:
        return await recover(reader, tp, store)
    finally:
        await reader.stop()


async def test_whole_batches_are_applied_and_a_trailing_partial_batch_is_not(
        broker: str, changelog: tuple[TopicPartition, AIOKafkaProducer],
        tmp_path: Path) -> None:
    tp, producer = changelog
    await write(producer, tp, [(b"\x01ta", b"1"), (b"\x01tb", b"1"), marker(2, 100),
                               (b"\x01ta", b"2"), (b"\x01tb", None), marker(4, 200)])
    behind = StateStore(tmp_path / "behind")
    assert await recover_into(broker, tp, behind) == Position(4, 6, 200)
    behind.close()
    last = await write(producer, tp, [(b"\x01tc", b"1"), marker(5, 300),
                                      (b"\x01ta", b"99"), (b"\x01td", b"1")])  # no marker
    for store in (StateStore(tmp_path / "empty"), StateStore(tmp_path / "behind")):
        try:
            position = await recover_into(broker, tp, store)
            assert position == Position(5, 8, 300) == store.position
            assert store.get_many([b"\x01ta", b"\x01tb", b"\x01tc", b"\x01td"]) == [
                b"2", None, b"1", None]
            assert set(store.discarded) == {b"\x01ta", b"\x01td"}
            assert position.changelog_offset == last - 1
            # the next commit writes the discarded keys back with their committed values
            state = PartitionState(store, [Table("t")], agent="a")
            assert state.changes() == [(b"\x01ta", b"2"), (b"\x01td", None)]
            state.commit(5, last + 3)
            assert state.changes() == [] and store.discarded == ()
        finally:
            store.close()


async def test_a_store_claiming_more_than_the_log_is_rebuilt(
        broker: str, changelog: tuple[TopicPartition, AIOKafkaProducer],
        tmp_path: Path) -> None:
    tp, producer = changelog
    await write(producer, tp, [(b"\x01ta", b"1"), marker(1, 10)])
    store = StateStore(tmp_path / "stale")
    store.apply([(b"\x01tz", b"from another log")], Position(500, 900, 5))
    try:
        assert await recover_into(broker, tp, store) == Position(1, 2, 10)
        assert store.get(b"\x01tz") is None and store.get(b"\x01ta") == b"1"
    finally:
        store.close()
