"""Produce a dedup batch's output with aiokafka's batch API, and wait for its acks.

:func:`build_batches` turns every forwarded record (``<topic>.repartition``) and every
winner (``<topic>.unique[p]``) into ready-built Kafka record batches right after planning
(synchronously, in aiokafka's C record builder), so the per-record Python objects die
young instead of living until the acks (the collector's work grows with live objects).
:func:`send_batches` hands them to the producer (no per-record future, no linger) and
:func:`await_acks` waits for all of them and returns, per partition work, the ``.unique``
offset after its last winner -- the changelog offset its table holds once the winners
are written to it. aiokafka sends one request per broker at a time and keeps batches of
a partition in order, so ``.unique`` receives winners in the order they were decided.

Winners are appended column-wise: one C-level ``map`` of the C record builder's
``append`` over the key, value, timestamp and header columns, instead of a Python call of
aiokafka's ``BatchBuilder.append`` per winner (~0.6 -> ~0.2 µs a winner). That reaches
into the ``BatchBuilder`` (its ``_builder`` and ``_relative_offset``); an aiokafka without
them gets the per-record path (onepipe.agents.batch.produce).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import count, takewhile
from operator import is_not
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from onepipe.agents.batch.produce import build_partition
from onepipe.agents.dedup.plan import Outgoing, PartitionWork, Unique
from onepipe.schemas.errors import BrokerError, OnepipeError
from onepipe.schemas.topic_names import repartition_topic, unique_topic

__all__ = ["Built", "await_acks", "build_batches", "send_batches"]


@dataclass(slots=True)
class Built:
    """The record batches of one partition work, built and not yet sent."""

    #: (topic, partition, batch builder, record count), in send order.
    batches: list[tuple[str, int, Any, int]] = field(default_factory=list)
    #: How many of the last entries of ``batches`` go to ``.unique`` (they come last).
    unique_batches: int = 0
    #: Ack futures per batch, set by :func:`send_batches`.
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


def build_batches(producer: AIOKafkaProducer, work: PartitionWork) -> Built:
    """Build the work's output batches; its per-record lists are released."""
    built = Built()
    for target, records in work.repartition.items():
        _build(producer, repartition_topic(work.topic), target, records, built)
    before = len(built.batches)
    if work.unique.keys:
        _build_unique(producer, unique_topic(work.topic), work.partition, work.unique, built)
    built.unique_batches = len(built.batches) - before
    work.repartition = {}
    work.unique = Unique.empty()
    return built


async def send_batches(producer: AIOKafkaProducer, built: Sequence[Built]) -> None:
    """Hand every built batch to the producer, in order; acks are awaited later."""
    for one in built:
        for topic, partition, batch, _count in one.batches:
            one.futures.append(await producer.send_batch(batch, topic, partition=partition))


async def await_acks(built: Sequence[Built], applied: Sequence[int], timeout: float  # noqa: ASYNC109 - the produce timeout, a setting
                     ) -> list[int]:
    """Wait for every ack; per work, the next ``.unique`` offset (``applied`` if none)."""
    futures = [f for one in built for f in one.futures]
    try:
        async with asyncio.timeout(timeout):
            for future in futures:
                await future
    except (KafkaError, TimeoutError) as exc:
        for future in futures:
            future.cancel()
        raise BrokerError(f"dedup output was not acknowledged within {timeout}s: {exc!r}; "
                          "the batch is read again from the last commit") from exc
    result = []
    for one, current in zip(built, applied, strict=True):
        if one.unique_batches:
            count = one.batches[-1][3]
            result.append(one.futures[-1].result().offset + count)
        else:
            result.append(current)
    return result


def _build(producer: AIOKafkaProducer, topic: str, partition: int, records: list[Outgoing],
           built: Built) -> None:
    """Append ``records`` to as many batches for one partition as they need."""
    built.batches.extend((topic, partition, batch, count)
                         for batch, count in build_partition(producer, topic, partition, records))


#: The C builder's ``append`` returns None for a record that does not fit: stop there.
_APPENDED = partial(is_not, None)


def _build_unique(producer: AIOKafkaProducer, topic: str, partition: int, unique: Unique,
                  built: Built) -> None:
    """Append the winners' columns to as many batches as they need, in order."""
    keys, values, timestamps, headers = unique
    total = len(keys)
    start = 0
    while start < total:
        batch = producer.create_batch()
        builder = getattr(batch, "_builder", None)
        if builder is None or not hasattr(batch, "_relative_offset"):
            _build(producer, topic, partition,
                   list(zip(keys[start:], values[start:], timestamps[start:],
                            headers[start:], strict=True)), built)
            return
        columns = (timestamps, keys, values, headers)
        if start:
            columns = tuple(column[start:] for column in columns)  # type: ignore[assignment]
        appended = len(list(takewhile(_APPENDED, map(builder.append, count(), *columns))))
        if appended == 0:
            raise OnepipeError(
                f"a record of {len(values[start])} bytes does not fit in an empty producer "
                f"batch for {topic}[{partition}]; raise the producer's max_batch_size "
                "above the largest record")
        batch._relative_offset = appended  # noqa: SLF001 - what its append counts
        batch.close()
        built.batches.append((topic, partition, batch, appended))
        start += appended
