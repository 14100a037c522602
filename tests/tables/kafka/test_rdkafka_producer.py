"""The librdkafka producer adapter against the real broker: what the endpoint relies on.

Delivery (partition, offset, timestamp as Kafka stored them), order per partition, error
mapping to what the Publisher turns into 413 and 503, stop flushing, recovery after the
broker comes back, and an event loop left free while 50,000 records go out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosed,
)

from onepipe.app.embedded import EmbeddedBroker, free_port
from onepipe.schemas.errors import BrokerError, RequestError
from onepipe.schemas.registry_state import RegistryState
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.kafka import KafkaClients, ensure_topic, read_topic
from onepipe.tables.kafka.clients import broker_count
from onepipe.tables.kafka.rdkafka_producer import RdkafkaProducer
from tests.fixtures.loop_watch import LoopWatch
from tests.fixtures.services import kafka_for, unique, wait_for


@pytest.fixture
async def producer(broker: str) -> AsyncIterator[RdkafkaProducer]:
    started = kafka_for(broker).rdkafka_producer("test-rdkafka", linger_ms=2)
    await started.start()
    yield started
    await started.stop()


async def topic_on(broker: str, partitions: int) -> str:
    topic = unique("rdkafka")
    await ensure_topic(kafka_for(broker), topic, partitions=partitions, replication_factor=1)
    return topic


async def read_all(broker: str, topic: str) -> list[ConsumerRecord[Any, Any]]:
    got: list[ConsumerRecord[Any, Any]] = []
    assert await read_topic(kafka_for(broker), topic, got.extend)
    return got


async def test_records_land_where_the_futures_say(broker: str,
                                                  producer: RdkafkaProducer) -> None:
    topic = await topic_on(broker, 3)
    futures = [await producer.send(topic, f"v{i}".encode(), key=f"k{i % 7}".encode())
               for i in range(1_000)]
    landed = [await f for f in futures]
    by_place = {(r.partition, r.offset): r for r in await read_all(broker, topic)}
    assert len(by_place) == 1_000
    for i, meta in enumerate(landed):
        record = by_place[(meta.partition, meta.offset)]
        assert record.value == f"v{i}".encode() and record.key == f"k{i % 7}".encode()
        assert meta.topic == topic and meta.timestamp == record.timestamp


async def test_send_many_reports_each_record_where_it_landed(
        broker: str, producer: RdkafkaProducer) -> None:
    """The endpoint's path: one future for a request, one (partition, offset, timestamp)
    per record in the order sent."""
    topic = await topic_on(broker, 3)
    records = [(f"k{i % 7}".encode(), f"v{i}".encode()) for i in range(3_000)]
    landed = await (await producer.send_many(topic, records))
    by_place = {(r.partition, r.offset): r for r in await read_all(broker, topic)}
    assert len(landed) == len(by_place) == 3_000
    for (key, value), (partition, offset, stamp) in zip(records, landed, strict=True):
        record = by_place[(partition, offset)]
        assert (record.key, record.value, record.timestamp) == (key, value, stamp)
    assert await (await producer.send_many(topic, [])) == []


async def test_send_many_with_a_record_too_large_fails_and_leaves_nothing_pending(
        broker: str) -> None:
    producer = kafka_for(broker).rdkafka_producer(
        "test-many-too-large", batch_bytes=1_000, overrides={"message.max.bytes": 1_000})
    await producer.start()
    try:
        topic = await topic_on(broker, 2)
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send_many(topic, [(b"a", b"x"), (b"b", b"x" * 2_000), (b"c", b"x")])
        # The producer goes on, and a flush (as at stop) does not wait for the failed call.
        [(_, offset, _)] = await (await producer.send_many(topic, [(b"a", b"y")]))
        assert offset >= 1  # after the first record of the failed call, which was sent
        assert not producer._pending
    finally:
        await producer.stop()


async def test_send_many_larger_than_librdkafkas_queue_completes(broker: str) -> None:
    """Reports are handed over per call: the room freed by acknowledged records of a call
    still enqueueing must wake it, or it waits for its own completion (review finding)."""
    producer = kafka_for(broker).rdkafka_producer(
        "test-many-queue", linger_ms=1, overrides={"queue.buffering.max.messages": 10})
    await producer.start()
    try:
        topic = await topic_on(broker, 1)
        records = [(b"k", b"v%d" % i) for i in range(50)]
        landed = await asyncio.wait_for(await producer.send_many(topic, records), 20)
        assert [offset for _, offset, _ in landed] == list(range(50))
    finally:
        await producer.stop()


async def test_a_send_many_given_up_leaves_nothing_pending(broker: str) -> None:
    """A caller's deadline cancelling send_many while it waits for room: no future is left
    for flush and stop to wait for (review finding: they waited the whole timeout)."""
    producer = kafka_for(broker).rdkafka_producer(
        "test-many-cancel", linger_ms=1, overrides={"queue.buffering.max.messages": 10})
    await producer.start()
    try:
        topic = await topic_on(broker, 1)
        sending = asyncio.create_task(producer.send_many(topic, [(b"k", b"v")] * 50_000))
        await wait_for(lambda: len(producer._pending) == 1, what="the call enqueueing")
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        assert not producer._pending
        [(_, offset, _)] = await (await producer.send_many(topic, [(b"k", b"after")]))
        assert offset >= 1  # the producer goes on after the records already enqueued
    finally:
        await producer.stop()


async def test_a_key_lands_where_aiokafka_puts_it(broker: str,
                                                  producer: RdkafkaProducer) -> None:
    """Java's murmur2, as aiokafka: every version of a key in one partition, whichever
    client wrote it (librdkafka's own default partitioner hashes differently)."""
    topic = await topic_on(broker, 4)
    aiokafka = kafka_for(broker).producer("test-aiokafka-partitioner")
    await aiokafka.start()
    try:
        for i in range(40):
            key = f"widget-{i}".encode()
            ours = await producer.send_and_wait(topic, b"x", key=key)
            theirs = await aiokafka.send_and_wait(topic, b"x", key=key)
            assert ours.partition == theirs.partition, key
    finally:
        await aiokafka.stop()


async def test_order_is_kept_per_partition(broker: str, producer: RdkafkaProducer) -> None:
    topic = await topic_on(broker, 4)
    futures = [await producer.send(topic, str(i).encode(), key=f"k{i % 10}".encode())
               for i in range(5_000)]
    landed = [await f for f in futures]
    last: dict[int, int] = {}
    for meta in landed:  # offsets grow in the order of the sends, per partition
        assert meta.offset > last.get(meta.partition, -1)
        last[meta.partition] = meta.offset
    read: dict[int, list[int]] = {}
    for record in sorted(await read_all(broker, topic), key=lambda r: r.offset):
        read.setdefault(record.partition, []).append(int(record.value))
    for values in read.values():
        assert values == sorted(values)


async def test_partition_timestamp_and_headers_as_given(broker: str,
                                                        producer: RdkafkaProducer) -> None:
    """What replay sends: an explicit partition, the original timestamp, headers."""
    topic = await topic_on(broker, 2)
    meta = await producer.send_and_wait(topic, b"v", key=b"k", partition=1,
                                        timestamp_ms=1_700_000_000_123,
                                        headers=[("origin", b"lake"), ("n", b"1")])
    assert (meta.partition, meta.timestamp) == (1, 1_700_000_000_123)
    [record] = await read_all(broker, topic)
    assert (record.partition, record.offset, record.timestamp) == (1, meta.offset,
                                                                   1_700_000_000_123)
    assert list(record.headers) == [("origin", b"lake"), ("n", b"1")]
    assert await producer.partitions_for(topic) == {0, 1}


async def test_a_record_too_large_is_a_413(broker: str) -> None:
    producer = kafka_for(broker).rdkafka_producer(
        "test-too-large", batch_bytes=1_000, overrides={"message.max.bytes": 1_000})
    await producer.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await producer.send(unique("rdkafka"), b"x" * 2_000)
        publisher = Publisher(RegistryState(), producer, timeout=10)
        with pytest.raises(RequestError) as refused:
            await publisher.send_encoded(unique("rdkafka"), [(None, b"x" * 2_000)])
        assert (refused.value.status, refused.value.code) == (413, "record_too_large")
    finally:
        await producer.stop()


async def test_an_unreachable_broker_fails_the_start() -> None:
    address = f"127.0.0.1:{free_port()}"
    producer = KafkaClients(address, idempotent=False, request_timeout=1.0).rdkafka_producer("p")
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match=address):
        await producer.start()
    assert time.monotonic() - started < 10
    await producer.stop()  # harmless after a failed start
    await producer.stop()


async def test_a_broker_away_is_a_503_and_its_return_is_picked_up(
        own_broker: EmbeddedBroker) -> None:
    kafka = dataclasses.replace(kafka_for(own_broker.bootstrap), request_timeout=2.0)
    producer = kafka.rdkafka_producer("test-away", linger_ms=0)
    await producer.start()
    try:
        topic = unique("rdkafka")
        await producer.send_and_wait(topic, b"before")
        own_broker.stop()
        future = await producer.send(topic, b"while away")
        with pytest.raises(KafkaTimeoutError):  # message.timeout.ms: the request timeout
            await future
        publisher = Publisher(RegistryState(), producer, timeout=30)
        with pytest.raises(BrokerError):  # HTTP 503 with Retry-After
            await publisher.send_encoded(topic, [(None, b"while away")])
        own_broker.start()  # same address; the broker lost its log

        async def delivered() -> bool:
            try:
                await producer.send_and_wait(topic, b"after")
            except KafkaTimeoutError:
                return False
            return True

        deadline = time.monotonic() + 60
        while not await delivered():  # each attempt is bounded by the 2 s timeout
            assert time.monotonic() < deadline, "no delivery after the broker came back"
        assert await broker_count(producer) == 1
    finally:
        await producer.stop()


async def test_stop_flushes_what_was_sent(broker: str) -> None:
    topic = await topic_on(broker, 2)
    producer = kafka_for(broker).rdkafka_producer("test-stop", linger_ms=50)
    await producer.start()
    futures = [await producer.send(topic, str(i).encode()) for i in range(20_000)]
    await producer.stop()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(await read_all(broker, topic)) == 20_000
    with pytest.raises(ProducerClosed):
        await producer.send(topic, b"late")
    await producer.stop()  # harmless twice


async def test_idempotence_is_a_setting_and_tansu_answers_librdkafkas(broker: str) -> None:
    """aiokafka's InitProducerId gets an error from tansu (test_clients.py); librdkafka's
    request is answered, so the idempotent producer works here too."""
    kafka = dataclasses.replace(kafka_for(broker), idempotent=True)
    producer = kafka.rdkafka_producer("test-idempotent")
    assert producer.config["enable.idempotence"] is True
    assert kafka_for(broker).rdkafka_producer("p").config["enable.idempotence"] is False
    await producer.start()
    try:
        topic = await topic_on(broker, 1)
        first = await producer.send_and_wait(topic, b"one")
        second = await producer.send_and_wait(topic, b"two")
        assert second.offset == first.offset + 1
    finally:
        await producer.stop()


@pytest.mark.alone
async def test_150000_records_leave_the_loop_free(broker: str,
                                                 producer: RdkafkaProducer) -> None:
    """Sent as the endpoint sends them (the Publisher yields every 1,000 records); the
    delivery reports reach the loop in one callback per poll."""
    topic = await topic_on(broker, 4)
    # Each loop step's work is bounded (1,000 sends, 2,000 reports), not the request's:
    # enough records that the request outlasts any one step by far, even when a loaded
    # machine deschedules the process for a step.
    records = [(f"k{i}".encode(), b"v" * 200) for i in range(150_000)]
    watch = LoopWatch()
    deliveries, took = await watch.during(
        Publisher(RegistryState(), producer, timeout=60).send_encoded(topic, records))
    assert len(deliveries) == 150_000
    print(f"\n150,000 records in {took:.2f} s; longest loop step {watch.longest * 1000:.0f} ms")
    assert watch.longest < took / 4, (watch.longest, took)


@pytest.mark.parametrize("client", ["librdkafka", "aiokafka"])
async def test_publisher_send_landed_gives_what_send_encoded_gives(
        broker: str, client: str) -> None:
    """The endpoints' tuples (Publisher.send_landed) hold the Delivery figures: where Kafka
    stored each record (and its timestamp), on either producer (send_many or send)."""
    kafka = kafka_for(broker)
    sender: Any = (kafka.rdkafka_producer("test-landed", linger_ms=2) if client == "librdkafka"
                   else kafka.producer("test-landed"))
    await sender.start()
    try:
        topic = await topic_on(broker, 3)
        publisher = Publisher(RegistryState(), sender, timeout=60)
        first = [(f"k{i % 7}".encode(), f"a{i}".encode()) for i in range(700)]
        second = [(f"k{i % 7}".encode(), f"b{i}".encode()) for i in range(700)]
        landed = await publisher.send_landed(topic, first)
        deliveries = await publisher.send_encoded(topic, second)
    finally:
        await sender.stop()
    assert all(type(x) is tuple and len(x) == 3 for x in landed)
    stored = {(r.partition, r.offset): r for r in await read_all(broker, topic)}
    assert len(stored) == 1_400
    as_tuples = [(d.partition, d.offset, d.timestamp) for d in deliveries]
    for records, results in ((first, landed), (second, as_tuples)):
        for (key, value), (partition, offset, stamp) in zip(records, results, strict=True):
            record = stored[(partition, offset)]
            assert (record.key, record.value) == (key, value)
            # aiokafka's own metadata may carry another millisecond than it stored.
            assert stamp == record.timestamp or client == "aiokafka"
