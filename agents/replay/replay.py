"""Replaying raw-lake files into a topic; the contract is the package's (onepipe.agents.replay)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka.errors import KafkaError

from onepipe.schemas.errors import BrokerError, ConfigError
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.raw_layout import RawFile
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.kafka.clients import Producer

_COLUMNS = ["_kafka_offset", "_kafka_timestamp", "_kafka_key", "_kafka_value", "_kafka_headers"]
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
    pending: list[asyncio.Future[Any]] = []
    start_ms = int(start.timestamp() * 1000) if start else None
    end_ms = int(end.timestamp() * 1000) if end else None
    try:
        for f in files:
            table = pq.read_table(pa.BufferReader(await lake.get(f.path)), columns=_COLUMNS)
            partition = f.partition if f.partition in target_partitions else None
            sent = 0
            # Timestamps as integers straight from Arrow: a float detour loses milliseconds.
            stamps = table.column("_kafka_timestamp").cast(pa.int64()).to_pylist()
            keys = table.column("_kafka_key").to_pylist()
            values = table.column("_kafka_value").to_pylist()
            all_headers = table.column("_kafka_headers").to_pylist()
            for ts, key, value, headers in zip(stamps, keys, values, all_headers, strict=True):
                if (start_ms is not None and ts < start_ms) or (end_ms is not None
                                                                and ts >= end_ms):
                    continue
                pending.append(await producer.send(
                    to_topic, value=value, key=key, partition=partition, timestamp_ms=ts,
                    headers=[(h["key"], h["value"]) for h in headers] if headers else None))
                sent += 1
                if len(pending) >= _IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending.clear()
            summary.records += sent
            summary.files += 1
            summary.per_partition[f.partition] = summary.per_partition.get(f.partition, 0) + sent
            if on_progress is not None:
                on_progress(summary.records, total)
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise BrokerError(f"replay of {topic!r} into {to_topic!r} failed after "
                          f"{summary.records} records: {exc!r}; run it again "
                          "(at-least-once: repeats are removed by unique key)") from exc
    return summary
