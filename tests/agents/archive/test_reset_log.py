"""A topic whose log was reset under the lake (deleted and recreated, as an in-memory
broker's topics are after a restart) is not archived, and every status surface says so.

Real tansu broker, real local lake, the real HTTP server and ``onepipe status``: the lake
holds 50 records of partition 0 and 30 of partition 1; the topic is deleted and recreated
with fewer records; the agent must archive nothing of those two partitions (even once
partition 0 grows past the lake's position again), while partition 2, which the lake does
not hold, is archived from its beginning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from onepipe.app.runtime import Runtime
from onepipe.app.web.server import WebServer
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.tables.kafka import KafkaClients, ensure_topic
from tests.fixtures.archive import PARTITIONS, agent_for, count_is, make_topic
from tests.fixtures.services import wait_for

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
TIMEOUT = 60.0


async def produce_raw(kafka: KafkaClients, topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` records into partition ``p`` (values need not decode to be archived)."""
    producer = kafka.producer("test-reset-log")
    await producer.start()
    try:
        sends = [await producer.send(topic, f"v{p}-{i}".encode(), key=b"k", partition=p)
                 for p, n in counts.items() for i in range(n)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def recreate(kafka: KafkaClients, topic: str) -> None:
    """Delete ``topic`` and create it again: every partition starts again at offset 0."""
    admin = kafka.admin()
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    await ensure_topic(kafka, topic, partitions=PARTITIONS, replication_factor=1)


async def lake_partitions(lake: LakeStore, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition: (records, last offset) the lake holds."""
    inventory = await raw_inventory(lake, topic)
    return {p: (sum(f.records for f in inventory.files if f.partition == p),
                max(f.last for f in inventory.files if f.partition == p))
            for p in {f.partition for f in inventory.files}}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def onepipe_status(url: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    process = await asyncio.create_subprocess_exec(
        ONEPIPE, "status", "--url", url, env={**env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None, err
    return process.returncode, out.decode() + err.decode()


async def test_a_reset_log_stalls_its_partitions_and_every_status_says_so(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = runtime.settings.kafka
    topic = await make_topic(http)
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        await produce_raw(kafka, topic, {0: 50, 1: 30})
        async with agent_for(runtime, lake, topic):
            await wait_for(lambda: count_is(lake, topic, 80), timeout=TIMEOUT, what="80 rows")
        assert await lake_partitions(lake, topic) == {0: (50, 49), 1: (30, 29)}

        await recreate(kafka, topic)
        await produce_raw(kafka, topic, {0: 5, 2: 4})
        caplog.set_level(logging.ERROR, logger="onepipe.agents.archive.agent")
        async with agent_for(runtime, lake, topic) as agent:
            # Partition 2 (nothing archived yet) goes on from its beginning.
            await wait_for(lambda: count_is(lake, topic, 84), timeout=TIMEOUT, what="84 rows")
            stalled = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
            assert set(agent.stalled) == stalled
            assert agent.metrics.stalled == agent.stalled
            # Once stalled, stalled: partition 0 growing past the lake's position is not
            # taken for the old log's continuation.
            await produce_raw(kafka, topic, {0: 60, 2: 1})
            await wait_for(lambda: count_is(lake, topic, 85), timeout=TIMEOUT, what="85 rows")
            assert set(agent.stalled) == stalled
            assert agent.metrics.records_in == 5 and agent.metrics.redelivered == 0
            assert await lake_partitions(lake, topic) == {0: (50, 49), 1: (30, 29),
                                                          2: (5, 4)}

            reason = agent.stalled[TopicPartition(topic, 0)]
            assert "@49" in reason and "@5" in reason
            assert f"onepipe replay {topic} --into-source" in reason
            assert f"raw/{topic}/partition=0/" in reason
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert reason in errors

            await assert_every_status_shows(runtime, agent.metrics, topic, reason)


async def assert_every_status_shows(runtime: Runtime, metrics: Any, topic: str,
                                    reason: str) -> None:
    ctx = dataclasses.replace(runtime.context, archive_metrics=lambda: metrics,
                              lag_monitor=None)
    server = WebServer(ctx)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession(base_url=url) as client:
            async with client.get("/status.json") as resp:
                assert resp.status == 200
                doc = await resp.json()
            async with client.get("/status") as resp:
                page = await resp.text()
            async with client.get("/metrics") as resp:
                values = samples(await resp.text())
            async with client.get("/health") as resp:
                health = await resp.json()
        code, out = await onepipe_status(url)
    finally:
        await server.stop()

    assert doc["archive"]["stalled"] == [
        {"topic": topic, "partition": 0, "reason": reason},
        {"topic": topic, "partition": 1, "reason": metrics.stalled[TopicPartition(topic, 1)]}]
    assert "2 partition(s) not archived" in page and "STALLED" in page
    assert f"{topic}[0]" in page
    assert values[("onepipe_archive_stalled_partitions", frozenset())] == 2
    for partition in (0, 1):
        labels = frozenset({"topic": topic, "partition": str(partition)}.items())
        assert values[("onepipe_archive_partition_stalled", labels)] == 1
    assert ("onepipe_archive_partition_stalled",
            frozenset({"topic": topic, "partition": "2"}.items())) not in values
    assert health["archive"]["stalled"] == {f"{topic}[0]": reason,
                                            f"{topic}[1]": metrics.stalled[
                                                TopicPartition(topic, 1)]}
    assert code == 1, out
    assert f"STALLED archive {topic}[0]" in out and "--into-source" in out
    assert "2 archive partition(s) STALLED" in out
