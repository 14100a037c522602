"""The produce ceilings, measured in the same run as what is compared with them.

Every function produces the same pre-encoded ``(key, value)`` records to ``topic`` with the
factory's settings (acks=all, the given linger, 1 MiB batches, onepipe's partitioner) and
returns the seconds from the first send to the last acknowledgement:

- :func:`rdkafka_ceiling` - raw ``confluent_kafka.Producer`` in a plain loop (no asyncio):
  librdkafka's ceiling from Python, what the hot paths are measured against.
- :func:`aiokafka_ceiling` - raw ``AIOKafkaProducer``, futures gathered per chunk of 500,
  ``concurrency`` chunk loops: the old ceiling, kept for continuity.
- :func:`adapter_ceiling` - onepipe's RdkafkaProducer (asyncio adapter, poll thread), the
  same loops: what the endpoint's producer costs without HTTP, validation or encoding.
- :func:`aio_ceiling` - ``confluent_kafka.aio.AIOProducer``, the same loops (the
  alternative the adapter was chosen against).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka.aio import AIOProducer

from onepipe.tables.kafka.clients import KafkaClients

Records = Sequence[tuple[bytes | None, bytes]]
CHUNK = 500
BATCH_BYTES = 1024 * 1024


def rdkafka_config(kafka: KafkaClients, client_id: str, linger_ms: int) -> dict[str, Any]:
    """The librdkafka configuration of the factory's producer (the same settings)."""
    return kafka.rdkafka_producer(client_id, linger_ms=linger_ms, batch_bytes=BATCH_BYTES).config


def rdkafka_ceiling(kafka: KafkaClients, topic: str, records: Records, linger_ms: int) -> float:
    """Seconds for raw confluent_kafka.Producer to produce ``records`` (blocking)."""
    failed: list[confluent_kafka.KafkaError] = []

    def report(error: confluent_kafka.KafkaError | None, _: object) -> None:
        if error is not None:
            failed.append(error)

    producer = confluent_kafka.Producer({**rdkafka_config(kafka, "bench-rdkafka", linger_ms),
                                         "on_delivery": report})
    producer.produce(topic, records[0][1], records[0][0])
    producer.flush(30)  # connections and metadata before the clock starts
    produce, poll = producer.produce, producer.poll
    t0 = time.perf_counter()
    for key, value in records:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                poll(0.001)
    left = producer.flush(60)
    took = time.perf_counter() - t0
    producer.close()
    if left or failed:
        raise RuntimeError(f"raw librdkafka: {left} records unsent, errors {failed[:3]}")
    return took


Send = Callable[[str, bytes, bytes | None], Awaitable["asyncio.Future[Any]"]]


async def _chunk_loops(send: Send, topic: str, records: Records, concurrency: int) -> float:
    chunks = [records[i:i + CHUNK] for i in range(0, len(records), CHUNK)]
    await asyncio.gather(*[await send(topic, v, k) for k, v in chunks[0]])  # warm
    it = iter(chunks)

    async def loop() -> None:
        for chunk in it:
            await asyncio.gather(*[await send(topic, v, k) for k, v in chunk])

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def aiokafka_ceiling(kafka: KafkaClients, topic: str, records: Records,
                           concurrency: int, linger_ms: int) -> float:
    producer = kafka.producer("bench-aiokafka", linger_ms=linger_ms,
                              max_batch_size=BATCH_BYTES, max_request_size=BATCH_BYTES)
    await producer.start()
    try:
        return await _chunk_loops(lambda t, v, k: producer.send(t, value=v, key=k), topic,
                                  records, concurrency)
    finally:
        await producer.stop()


async def adapter_ceiling(kafka: KafkaClients, topic: str, records: Records,
                          concurrency: int, linger_ms: int) -> float:
    producer = kafka.rdkafka_producer("bench-adapter", linger_ms=linger_ms,
                                      batch_bytes=BATCH_BYTES)
    await producer.start()
    try:
        return await _chunk_loops(lambda t, v, k: producer.send(t, value=v, key=k), topic,
                                  records, concurrency)
    finally:
        await producer.stop()


async def aio_ceiling(kafka: KafkaClients, topic: str, records: Records,
                      concurrency: int, linger_ms: int) -> float:
    producer = AIOProducer(rdkafka_config(kafka, "bench-aio", linger_ms))
    try:
        return await _chunk_loops(lambda t, v, k: producer.produce(t, value=v, key=k), topic,
                                  records, concurrency)
    finally:
        await producer.close()
