"""Archive agent against the real broker and real lakes (local folder and moto S3).

Records go in through the produce endpoint (two schema versions, several partitions);
the lake must then hold each offset exactly once, contiguously, with the decoded columns
equal to what was sent, readable with pyarrow.dataset.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer

from onepipe.agents.archive.agent import ArchiveAgent
from onepipe.agents.replay.replay import replay
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import ConfigError
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.archive import (
    PARTITIONS,
    SCHEMA_V2,
    agent_for,
    archived_records,
    count_is,
    make_topic,
    order,
    produce,
)
from tests.fixtures.s3 import new_bucket
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import create_topic, read_topic


@pytest.fixture(params=["local", "s3"])
async def lake(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LakeStore]:
    if request.param == "local":
        url = (tmp_path / "lake").as_uri()
        options = None
    else:
        # Sync fixtures only: an async fixture cannot be requested from a running loop.
        options = request.getfixturevalue("s3_options")
        url = f"s3://{await new_bucket(request.getfixturevalue('_s3_session'), options)}/lake"
    async with open_lake(url, options) as store:
        yield store


async def assert_exactly_once(lake: LakeStore, topic: str, broker: str) -> None:
    """Every offset in Kafka is in the lake once: contiguous files, no gap, no overlap."""
    _, watermarks = await read_topic(broker, topic, PARTITIONS)
    inventory = await raw_inventory(lake, topic)
    assert inventory.gaps == {}
    for partition, highwater in watermarks.items():
        files = [f for f in inventory.files if f.partition == partition]
        if highwater == 0:
            assert files == []
            continue
        assert files[0].first == 0 and files[-1].last == highwater - 1
        assert sum(f.records for f in files) == highwater


async def read_lake_table(lake: LakeStore, topic: str) -> pa.Table:
    inventory = await raw_inventory(lake, topic)
    parts = [await lake.get(f.path) for f in inventory.files]
    return pa.concat_tables([pq.read_table(pa.BufferReader(p)) for p in parts],
                            promote_options="default")


async def test_topic_lands_in_the_lake_exactly_once_with_typed_columns(
    runtime: Runtime, http: aiohttp.ClientSession, lake: LakeStore, broker: str
) -> None:
    topic = await make_topic(http)
    old = [order(i) for i in range(150)]
    new = [order(i, note=True) for i in range(150, 300)]
    await produce(http, topic, old, version=1)
    async with agent_for(runtime, lake, topic) as agent:
        await produce(http, topic, new)
        await wait_for(lambda: count_is(lake, topic, 300), timeout=60, what="300 rows")
        assert agent.metrics.undecodable == 0
    await assert_exactly_once(lake, topic, broker)

    table = await read_lake_table(lake, topic)
    assert table.num_rows == 300
    rows = {r["version"]: r for r in table.to_pylist()}
    for sent in [*old, *new]:
        row = rows[sent["version"]]
        assert row["order_id"] == sent["order_id"]
        assert row["amount"] == sent["amount"]
        assert row["status"] == sent["status"]
        assert row["lines"] == sent["lines"]
        assert row["note"] == sent.get("note")  # v1 records read with v2: the default
        assert row["placed_at"] == datetime.fromtimestamp(sent["placed_at"] / 1000, tz=UTC)
        assert row["_kafka_topic"] == topic and row["_kafka_decode_error"] is None
        assert row["_kafka_value"][0] == 0  # the exact Confluent-framed bytes


async def test_lake_reads_with_pyarrow_dataset_hive_partitioning(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    async with open_lake(root.as_uri()) as lake:
        topic = await make_topic(http)
        await produce(http, topic, [order(i) for i in range(90)])
        async with agent_for(runtime, lake, topic):
            await wait_for(lambda: count_is(lake, topic, 90), timeout=60, what="90 rows")
    dataset = ds.dataset(root / "raw" / topic, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 90
    assert set(table.column("partition").to_pylist()) <= set(range(PARTITIONS))
    assert set(table.column("date").to_pylist()) == {datetime.now(tz=UTC).strftime("%Y-%m-%d")}


async def test_undecodable_values_are_archived_and_counted(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    topic = await make_topic(http)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not avro at all", key=b"k", partition=0,
                                     headers=[("source", b"legacy")])
        await producer.send_and_wait(topic, b"\x00\x00\x00\x7f\x00garbage", partition=0)
        # A producer's clock in year 10000 must not stop the partition's archive.
        await producer.send_and_wait(topic, b"late", partition=0,
                                     timestamp_ms=253_402_300_800_000)
    finally:
        await producer.stop()
    await produce(http, topic, [order(1)])
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        async with agent_for(runtime, lake, topic) as agent:
            await wait_for(lambda: count_is(lake, topic, 4), timeout=60, what="4 rows")
            # The files are visible a moment before the agent has accounted for them.
            await asyncio.wait_for(agent.wait_archived(4), 30)
            assert agent.metrics.undecodable == 3
        table = await read_lake_table(lake, topic)
    # Python's datetime stops at year 9999: compare the stored timestamps as integers.
    stamps = table.column("_kafka_timestamp").cast(pa.int64()).to_pylist()
    assert 253_402_300_800_000 in stamps
    rows = table.drop_columns(["_kafka_timestamp"]).to_pylist()
    bad = [r for r in rows if r["_kafka_decode_error"] is not None]
    assert len(bad) == 3
    assert {r["_kafka_value"] for r in bad} == {b"not avro at all", b"\x00\x00\x00\x7f\x00garbage",
                                                b"late"}
    assert all(r["order_id"] is None for r in bad)
    legacy = next(r for r in bad if r["_kafka_key"] == b"k")
    assert legacy["_kafka_headers"] == [{"key": "source", "value": b"legacy"}]


async def test_restart_and_handover_archive_every_offset_once(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    topic = await make_topic(http)
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        group = unique("archive")

        def agent() -> ArchiveAgent:
            return ArchiveAgent(kafka=kafka_for(broker), group_id=group,
                                registry=runtime.registry, lake=lake, topics=[topic])

        first, second = agent(), agent()
        await first.start()
        await produce(http, topic, [order(i) for i in range(200)])
        await wait_for(lambda: count_is(lake, topic, 200), timeout=60, what="first 200")
        await second.start()  # joins the group: partitions move between the two
        producing = asyncio.create_task(
            _produce_in_chunks(http, topic, range(200, 600), chunk=25))
        await wait_for(lambda: _more_than(lake, topic, 300), timeout=60, what="> 300 rows")
        await first.stop()  # mid-stream: its partitions go to the second agent
        await producing
        await wait_for(lambda: count_is(lake, topic, 600), timeout=90, what="all 600 rows")
        await second.stop()
        await assert_exactly_once(lake, topic, broker)

        # A fresh agent in the same group finds everything archived and writes nothing.
        files_before = len((await raw_inventory(lake, topic)).files)
        async with agent() as third:
            await wait_for(lambda: third.assigned.is_set(), timeout=60, what="assignment")
            await produce(http, topic, [order(600)])
            await wait_for(lambda: count_is(lake, topic, 601), timeout=60, what="601 rows")
        assert len((await raw_inventory(lake, topic)).files) == files_before + 1
        await assert_exactly_once(lake, topic, broker)


async def _more_than(lake: LakeStore, topic: str, count: int) -> bool:
    return await archived_records(lake, topic) > count


async def _produce_in_chunks(http: aiohttp.ClientSession, topic: str, numbers: range,
                             chunk: int) -> None:
    items = list(numbers)
    for start in range(0, len(items), chunk):
        await produce(http, topic, [order(i) for i in items[start:start + chunk]])


async def test_replay_into_a_new_topic_is_byte_identical(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str,
    make_settings: Callable[..., Any],
) -> None:
    topic = await make_topic(http)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await produce(http, topic, [order(i) for i in range(120)])
        await producer.send_and_wait(topic, b"\x00\x00\x00\x01raw", key=b"kk", partition=1,
                                     headers=[("h", b"v"), ("h", b"w")], timestamp_ms=1234)
        async with open_lake((tmp_path / "lake").as_uri()) as lake:
            async with agent_for(runtime, lake, topic):
                await wait_for(lambda: count_is(lake, topic, 121), timeout=60, what="121")
            with pytest.raises(ConfigError, match="into itself"):
                await replay(lake, producer, topic, to_topic=topic)
            target = unique("replayed")
            await create_topic(http, target, SCHEMA_V2, partitions=PARTITIONS,
                               key=["order_id"], order={"rule": "max", "field": "version"})
            summary = await replay(lake, producer, topic, to_topic=target)
    finally:
        await producer.stop()
    assert summary.records == 121
    source, _ = await read_topic(broker, topic, PARTITIONS)
    copied, _ = await read_topic(broker, target, PARTITIONS)
    for partition in range(PARTITIONS):
        assert [(r.key, r.value, list(r.headers), r.timestamp) for r in copied[partition]] == [
            (r.key, r.value, list(r.headers), r.timestamp) for r in source[partition]]


async def test_buffers_stay_within_the_memory_bound(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Flush limits far away: only the memory bound can make the agent write files.
    topic = await make_topic(http, flush_records=1_000_000, flush_bytes="1GiB",
                             flush_seconds=3600)
    bound = 256 * 1024
    big = [{**order(i), "lines": [{"sku": "x" * 2000, "qty": 1}]} for i in range(600)]
    for start in range(0, len(big), 100):
        await produce(http, topic, big[start:start + 100])
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        async with agent_for(runtime, lake, topic, max_buffer_bytes=bound) as agent:
            await wait_for(lambda: _count_is_at_least(agent, 600 - 150), timeout=60,
                           what="memory-bound flushes")
            # Everything fetched before stopping: stop() flushes what the agent holds,
            # not what is still in Kafka.
            await wait_for(lambda: agent.metrics.records_in >= 600, timeout=60,
                           what="all 600 records fetched")
            peak = agent.metrics.peak_buffered_bytes
            files = agent.metrics.files
        await assert_exactly_once(lake, topic, runtime.settings.broker)
    assert files >= 2  # ~1.3 MB of records cannot leave the agent in one bounded flush
    # One fetch may overshoot by what the running record-size estimate let through.
    assert peak <= bound * 2, peak


async def _count_is_at_least(agent: ArchiveAgent, count: int) -> bool:
    return agent.metrics.records_archived >= count
