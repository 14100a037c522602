"""Producing the checksum table's messages (format: onepipe.tables.checksum.published)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from onepipe.tables.checksum.published import Message

__all__ = ["send_all"]


async def send_all(producer: AIOKafkaProducer, topic: str, messages: list[Message]) -> int:
    """Produce ``messages`` to partition 0 of ``topic``; wait for every ack."""
    sends = [await producer.send(topic, value, key=key, partition=0)
             for key, value in messages]
    if sends:
        await asyncio.gather(*sends)
    return len(sends)
