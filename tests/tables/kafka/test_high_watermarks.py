"""``high_watermarks`` against the real (tansu) broker: the fetch high watermark, exactly.

Records go in several producer batches: tansu's ListOffsets(latest) would answer the base
offset of the last batch + 1 (DESIGN.md), so exact figures show the fetch watermark is used.
"""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from onepipe.schemas.errors import BrokerError
from onepipe.tables.kafka import KafkaClients, ensure_topic, high_watermarks
from onepipe.tables.kafka.topics import fetch_high_watermarks
from tests.fixtures.services import kafka_for, unique


async def produce(kafka: KafkaClients, topic: str, partition: int, batches: list[int]) -> None:
    producer = kafka.producer("test-highwater", linger_ms=0)
    await producer.start()
    try:
        for size in batches:
            for i in range(size):
                await producer.send(topic, f"r{i}".encode(), partition=partition)
            await producer.flush()  # one record batch on the broker
    finally:
        await producer.stop()


async def test_empty_partitions_end_at_0_and_records_move_the_end(broker: str) -> None:
    kafka = kafka_for(broker)
    topic = unique("highwater")
    await ensure_topic(kafka, topic, partitions=3, replication_factor=1)
    tps = [TopicPartition(topic, p) for p in range(3)]
    assert await high_watermarks(kafka, tps) == dict.fromkeys(tps, 0)
    await produce(kafka, topic, 0, [10, 10, 10])
    await produce(kafka, topic, 2, [7])
    assert await high_watermarks(kafka, tps) == {tps[0]: 30, tps[1]: 0, tps[2]: 7}
    assert await high_watermarks(kafka, []) == {}


async def test_a_recreated_topic_ends_where_its_new_log_does(broker: str) -> None:
    kafka = kafka_for(broker)
    topic = unique("highwater")
    await ensure_topic(kafka, topic, partitions=1, replication_factor=1)
    tp = TopicPartition(topic, 0)
    await produce(kafka, topic, 0, [20])
    assert await high_watermarks(kafka, [tp]) == {tp: 20}
    admin = kafka.admin()
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    await ensure_topic(kafka, topic, partitions=1, replication_factor=1)
    await produce(kafka, topic, 0, [3])
    assert await high_watermarks(kafka, [tp]) == {tp: 3}


async def test_no_answer_within_the_bound_is_a_broker_error(broker: str) -> None:
    kafka = kafka_for(broker)
    topic = unique("highwater")
    await ensure_topic(kafka, topic, partitions=1, replication_factor=1)
    consumer = kafka.reader("test-highwater")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        # A bound already spent: the message names the partition and the broker.
        with pytest.raises(BrokerError, match=rf"{topic}\[0\].*{broker}|{broker}.*{topic}\[0\]"):
            await fetch_high_watermarks(consumer, [tp], bootstrap=broker, within=0)
    finally:
        await consumer.stop()
