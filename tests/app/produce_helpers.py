"""Helpers for the produce API tests: register a topic over HTTP, read a topic back.

Reading "to the end" uses the fetch high watermark (``consumer.highwater``), never
``end_offsets()``, which tansu answers wrongly (DESIGN.md, tables/kafka.py).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

JSON_HEADERS = {"Content-Type": "application/json"}


async def create_topic(
    http: aiohttp.ClientSession,
    topic: str,
    schema: dict[str, Any],
    *,
    partitions: int = 3,
    key: list[str] | None = None,
    order: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``PUT /topics/{topic}/metadata``; return the reply (``id``, ``version``)."""
    body: dict[str, Any] = {"schema": schema, "partitions": partitions}
    if key is not None:
        body["key"] = key
    if order is not None:
        body["order"] = order
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        reply = await resp.json()
        assert resp.status == 200, reply
    return reply


async def read_topic(
    bootstrap: str, topic: str, partitions: int, timeout: float = 20.0
) -> tuple[dict[int, list[ConsumerRecord[bytes, bytes]]], dict[int, int]]:
    """Every record of every partition up to its high watermark, and the watermarks."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,  # empty partitions: do not let the broker hold each fetch long
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    records: dict[int, list[ConsumerRecord[bytes, bytes]]] = {p: [] for p in range(partitions)}
    watermarks: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        pending = set(tps)
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic} to its high watermark")
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp, batch in batches.items():
                records[tp.partition].extend(batch)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    watermarks[tp.partition] = highwater
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return records, watermarks


async def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The fetch high watermark of every partition (reads the records to get there)."""
    _, watermarks = await read_topic(bootstrap, topic, partitions)
    return watermarks


def zigzag(n: int) -> bytes:
    """Avro's zig-zag varint of a long, written out by hand (independent of fastavro)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def avro_string(text: str) -> bytes:
    data = text.encode()
    return zigzag(len(data)) + data
