"""Replaying raw-lake files into a topic; the contract is the package's (onepipe.agents.replay).

How records reach the producer: a producer with ``send_columns`` (librdkafka's adapter)
takes a file's records a chunk at a time (:mod:`onepipe.agents.replay.chunks`), one call and
one future per chunk; any other (aiokafka's) takes them one ``send`` at a time, as before.
Both bound what is unacknowledged (see :data:`_CALLS_IN_FLIGHT`, :data:`_IN_FLIGHT`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka.errors import KafkaError

from onepipe.agents.replay.chunks import COLUMNS, ReplayChunk, file_chunks
from onepipe.schemas.errors import BrokerError, ConfigError
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.raw_layout import RawFile
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.kafka.clients import Producer

#: Records per ``send_columns`` call, and about this many bytes of keys and values: a
#: call's Python lists stay small whatever the file's record size.
_CHUNK_RECORDS = 10_000
_CHUNK_BYTES = 4 * 1024 * 1024
#: ``send_columns`` calls unacknowledged at once: the next chunk is built and enqueued
#: while the previous one is in flight (one alone would leave the producer idle between
#: calls), and no more (memory: at most two chunks' records in librdkafka's queue).
_CALLS_IN_FLIGHT = 2
#: Records sent one by one (a producer without ``send_columns``) unacknowledged at once.
_IN_FLIGHT = 2000


@dataclass(slots=True)
class ReplaySummary:
    """What a replay sent."""

    source: str
    target: str
    records: int = 0
    files: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)


def select_files(files: Sequence[RawFile], partitions: set[int] | None,
                 start: datetime | None, end: datetime | None) -> list[RawFile]:
    """Files that may hold records of the filters (hour directories prune by time)."""
    chosen = []
    for f in files:
        if partitions is not None and f.partition not in partitions:
            continue
        hour_start = datetime.strptime(f.date, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(
            hours=f.hour)
        if end is not None and hour_start >= end:
            continue
        if start is not None and hour_start + timedelta(hours=1) <= start:
            continue
        chosen.append(f)
    return sorted(chosen, key=lambda f: (f.partition, f.first))


async def replay(
    lake: LakeStore,
    producer: Producer,
    topic: str,
    *,
    to_topic: str,
    into_source: bool = False,
    partitions: set[int] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Produce archived records of ``topic`` to ``to_topic``; ``on_progress(sent, total)``."""
    if to_topic == topic and not into_source:
        raise ConfigError(
            f"refusing to replay {topic!r} into itself: every record would be there twice; "
            "name another topic with --to-topic, or pass --into-source if you mean it"
        )
    inventory = await raw_inventory(lake, topic)
    files = select_files(inventory.files, partitions, start, end)
    total = sum(f.records for f in files)
    target_partitions = await producer.partitions_for(to_topic)
    summary = ReplaySummary(topic, to_topic)
    start_ms = int(start.timestamp() * 1000) if start else None
    end_ms = int(end.timestamp() * 1000) if end else None
    # librdkafka's adapter takes a chunk in one call; aiokafka's producer record by record.
    send_columns = getattr(producer, "send_columns", None)
    pending: deque[asyncio.Future[Any]] = deque()
    try:
        for f in files:
            table = pq.read_table(pa.BufferReader(await lake.get(f.path)), columns=COLUMNS)
            partition = f.partition if f.partition in target_partitions else None
            sent = 0
            for chunk in file_chunks(table, start_ms, end_ms, max_records=_CHUNK_RECORDS,
                                     max_bytes=_CHUNK_BYTES):
                if send_columns is not None:
                    pending.append(await send_columns(
                        to_topic, chunk.keys, chunk.values, partition=partition,
                        timestamps_ms=chunk.timestamps_ms, headers=chunk.headers))
                    while len(pending) >= _CALLS_IN_FLIGHT:
                        await pending.popleft()
                else:
                    await _send_each(producer, to_topic, partition, chunk, pending)
                sent += len(chunk)
            summary.records += sent
            summary.files += 1
            summary.per_partition[f.partition] = summary.per_partition.get(f.partition, 0) + sent
            if on_progress is not None:
                on_progress(summary.records, total)
        while pending:
            await pending.popleft()
    except KafkaError as exc:
        for future in pending:  # not awaited any more: nothing reports them as lost
            future.cancel()
        raise BrokerError(f"replay of {topic!r} into {to_topic!r} failed after "
                          f"{summary.records} records: {exc!r}; run it again "
                          "(at-least-once: repeats are removed by unique key)") from exc
    return summary


async def _send_each(producer: Producer, topic: str, partition: int | None,
                     chunk: ReplayChunk, pending: deque[asyncio.Future[Any]]) -> None:
    """A chunk through ``send``, a future per record; at most :data:`_IN_FLIGHT` pending."""
    headers = chunk.headers
    for i, (key, value, stamp) in enumerate(
            zip(chunk.keys, chunk.values, chunk.timestamps_ms, strict=True)):
        pending.append(await producer.send(
            topic, value=value, key=key, partition=partition, timestamp_ms=stamp,
            headers=headers[i] if headers is not None else None))
        if len(pending) >= _IN_FLIGHT:
            await asyncio.gather(*pending)
            pending.clear()
