"""The one Kafka client factory against the real broker: its settings reach the clients."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from onepipe.tables.kafka import ensure_topic, read_topic, topic_exists
from tests.fixtures.services import kafka_for, unique


async def test_a_producer_and_a_reader_round_trip(broker: str) -> None:
    kafka = kafka_for(broker)
    topic = unique("clients")
    await ensure_topic(kafka, topic, partitions=2, replication_factor=1)
    producer = kafka.producer("test-producer")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    got: list[ConsumerRecord[Any, Any]] = []
    assert await read_topic(kafka, topic, got.extend)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(10))


async def test_idempotence_is_the_factorys_setting(broker: str) -> None:
    """tansu refuses InitProducerId (DESIGN.md): only an idempotent producer fails."""
    kafka = dataclasses.replace(kafka_for(broker), idempotent=True)
    producer = kafka.producer("test-idempotent")
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


async def test_a_group_member_commits_only_when_told(broker: str) -> None:
    kafka = kafka_for(broker)
    topic, group = unique("clients"), unique("group")
    await ensure_topic(kafka, topic, partitions=1, replication_factor=1)
    producer = kafka.producer("test-producer")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"one")
    finally:
        await producer.stop()
    consumer = kafka.group_consumer(group)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        fetched: list[ConsumerRecord[Any, Any]] = []

        async def fetch() -> None:
            while not fetched:
                batches = await consumer.getmany(timeout_ms=500)
                fetched.extend(r for records in batches.values() for r in records)

        # A join on tansu can take long while other groups join (DESIGN.md): a deadline.
        await asyncio.wait_for(fetch(), 60)
        tp = TopicPartition(topic, 0)
        assert await consumer.committed(tp) is None  # no auto-commit
        await consumer.commit({tp: 1})
        assert await consumer.committed(tp) == 1
    finally:
        await consumer.stop()


async def test_missing_topics_are_not_created_by_reads(broker: str) -> None:
    kafka = kafka_for(broker)
    topic = unique("absent")
    assert not await read_topic(kafka, topic, lambda records: None)
    assert not await topic_exists(kafka, topic)
