"""The produce() loops of :class:`~onepipe.tables.kafka.rdkafka_producer.RdkafkaProducer`'s
batch calls: many records into librdkafka's queue from one coroutine.

Contract:

- :func:`enqueue_pairs` (``send_many``: ``(key, value)`` records, the partitioner's
  partition, the producer's clock) and :func:`enqueue_columns` (``send_columns``: keys,
  values, per-record timestamps and headers, one partition or the partitioner's) call
  ``produce()`` once per record, in order, so librdkafka keeps their order per partition.
- No Python object is made per record but what ``produce()`` needs (and, for
  ``send_many``, the index its report is filed under): the delivery callback is one
  bound method for the whole call.
- A full queue (``BufferError``) waits for room through ``when_room(*produce_args)``, which
  retries that record until it is in; every :data:`TURN` records ``turn()`` lets the event
  loop run (and raises when the producer stopped meanwhile).
- A ``produce()`` error other than a full queue propagates as confluent-kafka raised it;
  the caller maps it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence

__all__ = ["ANY_PARTITION", "TURN", "enqueue_columns", "enqueue_pairs"]

#: librdkafka's RD_KAFKA_PARTITION_UA: the configured partitioner picks the partition.
ANY_PARTITION = -1
#: Records enqueued between two turns of the event loop (a 60,000-record call would hold
#: it for tens of milliseconds otherwise).
TURN = 2_000

Produce = Callable[..., None]
WhenRoom = Callable[..., Awaitable[None]]
Turn = Callable[[], Awaitable[None]]
#: One record's headers: a list of ``(key, value)`` (produce() takes lists, not tuples).
Headers = list[tuple[str, bytes | None]]


async def enqueue_pairs(produce: Produce, when_room: WhenRoom, turn: Turn, topic: str,
                        records: Sequence[tuple[bytes | None, bytes | None]],
                        on_delivery: Callable[..., None]) -> None:
    """produce() each record, its report to ``on_delivery(index, error, message)``."""
    partial = functools.partial
    for i, (key, value) in enumerate(records):
        try:
            # Positional (partition -1: librdkafka's partitioner; then the callback):
            # keyword arguments cost produce() ~0.25 µs more a record to parse.
            produce(topic, value, key, ANY_PARTITION, partial(on_delivery, i))
        except BufferError:  # the queue is full: wait for room (reports served)
            await when_room(topic, value, key, ANY_PARTITION, partial(on_delivery, i))
        if not (i + 1) % TURN:
            await turn()


async def enqueue_columns(produce: Produce, when_room: WhenRoom, turn: Turn, topic: str,
                          keys: Sequence[bytes | None], values: Sequence[bytes | None],
                          partition: int | None, timestamps_ms: Sequence[int] | None,
                          headers: Sequence[Headers | None] | None,
                          on_delivery: Callable[..., None]) -> None:
    """produce() each record with its timestamp and headers, every report to
    ``on_delivery(error, message)``."""
    n = len(values)
    if len(keys) != n or (timestamps_ms is not None and len(timestamps_ms) != n) or (
            headers is not None and len(headers) != n):
        raise ValueError(
            f"keys, values, timestamps_ms and headers must be parallel (one entry per "
            f"record); got {len(keys)} keys for {n} values")
    part = ANY_PARTITION if partition is None else partition
    # 0 asks librdkafka for the producer's clock, as send() does for no timestamp.
    stamps = itertools.repeat(0) if timestamps_ms is None else timestamps_ms
    each = itertools.repeat(None) if headers is None else headers
    # strict=False: the lengths are checked above, and repeat() never ends.
    for i, (key, value, stamp, items) in enumerate(
            zip(keys, values, stamps, each, strict=False), 1):
        try:
            # Positional, in produce()'s order: topic, value, key, partition, callback,
            # on_delivery (its alias, unused), timestamp, headers.
            produce(topic, value, key, part, on_delivery, None, stamp, items or None)
        except BufferError:
            await when_room(topic, value, key, part, on_delivery, None, stamp, items or None)
        if not i % TURN:
            await turn()
