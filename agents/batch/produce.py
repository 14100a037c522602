"""Records of one topic-partition built into Kafka record batches, for aiokafka's batch API.

``producer.send`` costs a future, a partitioner call and a record append per message
(~1.7 µs each in Python, measured in bench/agents.py); :func:`build_partition` appends
every record to ready-built batches in aiokafka's C record builder (~0.3 µs a record) and
returns them for ``producer.send_batch``: one future per batch, no linger. aiokafka keeps
the batches of a partition in order, so a partition receives the records in the order
given. Used by the dedup output (onepipe.agents.dedup.output) and the developers' agents'
changelog (onepipe.agents.framework.runner).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from onepipe.schemas.errors import OnepipeError

__all__ = ["build_partition"]

#: (key, value, timestamp ms or None, headers or None) of one record to build.
Outgoing = tuple[bytes | None, bytes | None, int | None, Sequence[tuple[str, bytes]] | None]


def build_partition(producer: AIOKafkaProducer, topic: str, partition: int,
                    records: Iterable[Outgoing]) -> list[tuple[Any, int]]:
    """``records`` appended to as many closed batches as they need: (batch, record count)
    each, in order. A record too large for an empty batch raises an OnepipeError."""
    built: list[tuple[Any, int]] = []
    batch = producer.create_batch()
    append = batch.append
    count = 0
    for key, value, timestamp, headers in records:
        if append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
            if count == 0:
                raise _too_large(value, topic, partition)
            batch.close()
            built.append((batch, count))
            batch = producer.create_batch()
            append = batch.append
            count = 0
            if append(key=key, value=value, timestamp=timestamp, headers=headers) is None:
                raise _too_large(value, topic, partition)
        count += 1
    if count:
        batch.close()
        built.append((batch, count))
    return built


def _too_large(value: bytes | None, topic: str, partition: int) -> OnepipeError:
    size = 0 if value is None else len(value)
    return OnepipeError(f"a record of {size} bytes does not fit in an empty producer "
                        f"batch for {topic}[{partition}]; raise the producer's "
                        "max_batch_size above the largest record")
