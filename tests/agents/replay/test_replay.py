"""Replay against the real broker, on either producer: librdkafka's adapter takes a chunk
of records per call (send_columns), aiokafka's one record per send. Both must put the same
records in the same places: keys, values, headers (repeated keys, null values), the
archived timestamps, the source partition when the target has it (the key's partition
otherwise), offset order within a partition, the time window; a failure is a BrokerError
that says to run it again."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from onepipe.agents.replay import replay
from onepipe.app.embedded import EmbeddedBroker
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.partitioner import partitions_for
from onepipe.sinks.formats.raw import RawRecord, build_raw_table, encode_parquet
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.raw_layout import hour_bucket, raw_file_path
from onepipe.tables.kafka import KafkaClients, ensure_topic
from onepipe.tables.kafka.clients import Producer
from tests.fixtures.services import kafka_for, unique
from tests.fixtures.topics import read_topic

#: 2025-11-26 10:00 UTC: every record in one hour directory.
BASE = 1_764_151_200_000
SOURCE_PARTITIONS = 4  # the target has 3: partition 3's records go by key
TARGET_PARTITIONS = 3
FILE_RECORDS = 13
FILES_PER_PARTITION = 3
CLIENTS = ["librdkafka", "aiokafka"]
#: The module (the package's ``replay`` attribute is the function).
replay_module = importlib.import_module("onepipe.agents.replay.replay")

Row = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]


def source_rows(partition: int) -> list[Row]:
    """What the lake holds for ``partition``: odd keys, tombstones and headers among them."""
    rows: list[Row] = []
    for i in range(FILE_RECORDS * FILES_PER_PARTITION):
        n = partition * 1_000 + i
        # A null key only where the partition is kept (a null key's partition is random).
        key = None if (partition == 0 and i % 10 == 3) else f"key-{n % 17}-{partition}".encode()
        value = None if i % 11 == 5 else f"value-{n}".encode() * (1 + i % 3)
        headers: list[tuple[str, bytes | None]] = (
            [] if i % 3 else [("h", b"1"), ("h", b"2"), ("none", None), ("n", str(n).encode())])
        rows.append((key, value, headers, BASE + n * 7))
    return rows


async def write_lake(lake: LakeStore, topic: str) -> dict[int, list[Row]]:
    """Raw files as the archive writes them: per partition, contiguous offset ranges."""
    written = {}
    for partition in range(SOURCE_PARTITIONS):
        rows = source_rows(partition)
        written[partition] = rows
        for first in range(0, len(rows), FILE_RECORDS):
            part = rows[first:first + FILE_RECORDS]
            # Kafka allows a null header value (the raw schema too); RawRecord's type omits it.
            records = [RawRecord(topic, partition, first + i, ts,
                                 cast("tuple[tuple[str, bytes], ...]", tuple(hs)), key, value)
                       for i, (key, value, hs, ts) in enumerate(part)]
            n = len(records)
            table = build_raw_table(records, [None] * n, [None] * n, ["not Avro"] * n, None)
            date, hour = hour_bucket(records[0].timestamp_ms)
            await lake.put(raw_file_path(topic, partition, date, hour, first, first + n - 1),
                           encode_parquet(table))
    return written


def expected_target(written: dict[int, list[Row]], start_ms: int | None = None,
                    end_ms: int | None = None) -> dict[int, list[Row]]:
    """Per target partition, in order: its source partition's records, then (files are
    replayed partition by partition) those of partition 3 whose key hashes there."""
    def kept(rows: list[Row]) -> list[Row]:
        return [r for r in rows if (start_ms is None or r[3] >= start_ms)
                and (end_ms is None or r[3] < end_ms)]

    out = {p: kept(written[p]) for p in range(TARGET_PARTITIONS)}
    moved = kept(written[3])
    for row, p in zip(moved, partitions_for([r[0] or b"" for r in moved], TARGET_PARTITIONS),
                      strict=True):
        out[p].append(row)
    return out


def make_producer(kafka: KafkaClients, client: str, **limits: int) -> Producer:
    if client == "librdkafka":
        size = limits.get("max_bytes", 1024 * 1024)
        return kafka.rdkafka_producer("test-replay", linger_ms=2, batch_bytes=size,
                                      overrides={"message.max.bytes": size})
    return kafka.producer("test-replay", linger_ms=2,
                          max_request_size=limits.get("max_bytes", 1024 * 1024))


@pytest.fixture
async def lake(tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with open_lake((tmp_path / "lake").as_uri()) as store:
        yield store


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and in-flight bounds far below a file, so every file takes several calls
    (several sends) and calls overlap."""
    monkeypatch.setattr(replay_module, "_CHUNK_RECORDS", 5)
    monkeypatch.setattr(replay_module, "_IN_FLIGHT", 4)


@pytest.mark.parametrize("client", CLIENTS)
async def test_replay_puts_every_record_where_and_as_it_was(
        broker: str, lake: LakeStore, client: str) -> None:
    topic, target = unique("replay-src"), unique("replay-dst")
    written = await write_lake(lake, topic)
    await ensure_topic(kafka_for(broker), target, partitions=TARGET_PARTITIONS,
                       replication_factor=1)
    producer = make_producer(kafka_for(broker), client)
    progress: list[tuple[int, int]] = []
    await producer.start()
    try:
        summary = await replay(lake, producer, topic, to_topic=target,
                               on_progress=lambda sent, total: progress.append((sent, total)))
    finally:
        await producer.stop()
    total = SOURCE_PARTITIONS * FILES_PER_PARTITION * FILE_RECORDS
    assert (summary.records, summary.files) == (total, SOURCE_PARTITIONS * FILES_PER_PARTITION)
    assert summary.per_partition == {p: FILES_PER_PARTITION * FILE_RECORDS
                                     for p in range(SOURCE_PARTITIONS)}
    # on_progress once a file, counting up to everything.
    assert progress == [(FILE_RECORDS * (i + 1), total) for i in range(summary.files)]
    copied, _ = await read_topic(broker, target, TARGET_PARTITIONS)
    got = {p: [(r.key, r.value, [(k, v) for k, v in r.headers], r.timestamp)
               for r in records] for p, records in copied.items()}
    assert got == expected_target(written)


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_time_window_cuts_inside_files(broker: str, lake: LakeStore,
                                               client: str) -> None:
    topic, target = unique("replay-src"), unique("replay-dst")
    written = await write_lake(lake, topic)
    await ensure_topic(kafka_for(broker), target, partitions=TARGET_PARTITIONS,
                       replication_factor=1)
    # From inside partition 0's second file to inside partition 3's first.
    start_ms, end_ms = BASE + 20 * 7, BASE + (3_000 + 5) * 7
    producer = make_producer(kafka_for(broker), client)
    await producer.start()
    try:
        summary = await replay(
            lake, producer, topic, to_topic=target,
            start=datetime.fromtimestamp(start_ms / 1000, tz=UTC),
            end=datetime.fromtimestamp(end_ms / 1000, tz=UTC))
    finally:
        await producer.stop()
    expected = expected_target(written, start_ms, end_ms)
    assert summary.records == sum(len(rows) for rows in expected.values())
    copied, _ = await read_topic(broker, target, TARGET_PARTITIONS)
    got = {p: [(r.key, r.value, [(k, v) for k, v in r.headers], r.timestamp)
               for r in records] for p, records in copied.items()}
    assert got == expected


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_record_the_producer_refuses_is_a_broker_error(
        broker: str, lake: LakeStore, client: str) -> None:
    topic, target = unique("replay-src"), unique("replay-dst")
    rows = [RawRecord(topic, 0, i, BASE + i, (), b"k", b"v" * (3_000 if i == 7 else 10))
            for i in range(10)]
    table = build_raw_table(rows, [None] * 10, [None] * 10, ["x"] * 10, None)
    await lake.put(raw_file_path(topic, 0, *hour_bucket(BASE), 0, 9), encode_parquet(table))
    await ensure_topic(kafka_for(broker), target, partitions=1, replication_factor=1)
    producer = make_producer(kafka_for(broker), client, max_bytes=1_000)
    await producer.start()
    try:
        with pytest.raises(BrokerError, match=f"replay of '{topic}'.*run it again"):
            await replay(lake, producer, topic, to_topic=target)
    finally:
        await producer.stop()


async def test_records_not_acknowledged_are_a_broker_error(
        own_broker: EmbeddedBroker, lake: LakeStore) -> None:
    """The broker goes away after the first file: the next calls' delivery reports fail
    (librdkafka's message timeout, here 2 s), and replay says so instead of returning."""
    topic, target = unique("replay-src"), unique("replay-dst")
    await write_lake(lake, topic)
    kafka = dataclasses.replace(kafka_for(own_broker.bootstrap), request_timeout=2.0)
    await ensure_topic(kafka, target, partitions=TARGET_PARTITIONS, replication_factor=1)
    producer = kafka.rdkafka_producer("test-replay-away", linger_ms=0)
    files: list[Any] = []

    def broker_gone(sent: int, total: int) -> None:
        files.append(sent)
        if len(files) == 1:
            own_broker.stop()

    await producer.start()
    try:
        with pytest.raises(BrokerError, match="run it again"):
            await replay(lake, producer, topic, to_topic=target, on_progress=broker_gone)
    finally:
        await producer.stop()
    assert len(files) < SOURCE_PARTITIONS * FILES_PER_PARTITION
