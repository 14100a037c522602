"""Lag for every consumer group that reads a registered topic, against the real broker.

onepipe's own groups beyond archive and dedup (the checksum agent's, the developers' agents') and
the groups of other applications, found on the broker (ListGroups, which tansu answers)
every few samples. Stuck detection uses an injected clock; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from onepipe.app.embedded import free_port
from onepipe.app.lag_groups import GroupDiscovery, MonitoredGroup
from onepipe.app.lag_monitor import LagMonitor
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.web.server import WebServer
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.topic_names import agent_group, checksums_group, dedup_group, unique_topic
from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.offsets import OffsetReader
from tests.app.test_monitoring import FakeClock, by_partition, produce_batches
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import create_topic

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
READING: dict[str, Any] = {
    "type": "record", "name": "Reading", "namespace": "test.discovery", "fields": [
        {"name": "id", "type": "string"}, {"name": "version", "type": "long"}]}


async def read_and_commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
                          ) -> None:
    """Read every partition of ``offsets`` up to its offset, then commit exactly those."""

    async def reached() -> bool:
        await consumer.getmany(*offsets, timeout_ms=100)
        return all([await consumer.position(tp) >= o for tp, o in offsets.items()])

    await wait_for(reached, what=f"positions {offsets}")
    await consumer.commit(offsets)


def another_application(broker: str, group: str) -> AIOKafkaConsumer:
    """A plain aiokafka consumer of some other application, committing by hand."""
    return AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            fetch_max_wait_ms=50, session_timeout_ms=6000,
                            rebalance_timeout_ms=6000, heartbeat_interval_ms=1000)


async def topics_on(broker: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_another_applications_group_is_found_every_few_samples_and_flagged_stuck(
    broker: str,
) -> None:
    topic, gone = unique("shared"), unique("gone")
    other, own = unique("billing-app"), unique("own")
    await ensure_topic(kafka_for(broker), topic, partitions=2, replication_factor=1)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    await produce_batches(broker, topic, {0: [20], 1: [20]})
    # One of onepipe's own groups commits on the topic too: it keeps its own entry.
    own_consumer = another_application(broker, own)
    await own_consumer.start()
    own_consumer.assign([p0, p1])
    await read_and_commit(own_consumer, {p0: 20, p1: 20})
    await own_consumer.stop()
    own_spec = MonitoredGroup(own, reads=lambda t: False, grace=lambda t: 100.0)
    clock = FakeClock()
    monitor = LagMonitor(kafka_for(broker), [own_spec], lambda: [topic, gone], clock=clock,
                         stuck_after=60.0, discover_every=3)
    consumer = another_application(broker, other)
    await consumer.start()
    try:
        await monitor.start(loop=False)
        await monitor.sample()  # asks the broker: the other application has no group yet
        assert monitor.discovery is not None and monitor.discovery.asks == 1
        assert monitor.snapshot.groups == (own,)

        consumer.subscribe([topic])  # joins its group like any application
        await wait_for(lambda: consumer.assignment() == {p0, p1}, what="an assignment")
        await read_and_commit(consumer, {p0: 15, p1: 20})
        for _ in range(2):  # between two asks the set found before is kept
            await monitor.sample()
            assert monitor.snapshot.groups == (own,)
        assert monitor.discovery.asks == 1

        await monitor.sample()  # the third sample after an ask asks again
        assert monitor.discovery.asks == 2
        assert monitor.snapshot.groups == (own, other)
        rows = by_partition(monitor, other)
        assert [(r.committed, r.end, r.lag, r.stuck) for r in rows.values()] == [
            (15, 20, 5, False), (20, 20, 0, False)]
        assert [g.group_id for g in monitor.discovery.groups] == [other]

        # Records keep arriving on p0; the other application does not advance.
        await produce_batches(broker, topic, {0: [10]})
        clock.now += 61
        await monitor.sample()
        rows = by_partition(monitor, other)
        assert (rows[0].end, rows[0].lag, rows[0].stuck) == (30, 15, True)
        assert rows[0].stalled_for == pytest.approx(61.0)
        assert not rows[1].stuck  # lag 0
        assert [(p.group, p.partition) for p in monitor.snapshot.stuck] == [(other, 0)]
        # onepipe's own group: one entry, its own (shown where it committed; it is behind
        # as long, but its grace holds the flag back).
        assert monitor.snapshot.groups.count(own) == 1
        assert [(r.lag, r.stuck) for r in monitor.snapshot.of_group(own)] == [
            (10, False), (0, False)]

        await read_and_commit(consumer, {p0: 30})
        clock.now += 5
        await monitor.sample()
        assert (by_partition(monitor, other)[0].lag, by_partition(monitor, other)[0].stuck
                ) == (0, False)
        assert gone not in await topics_on(broker)  # never named to the broker
    finally:
        await consumer.stop()
        await monitor.stop()


class RefusingReader:
    """An offset reader whose broker refuses ListGroups until told otherwise."""

    def __init__(self) -> None:
        self.refuse = True

    async def group_ids(self) -> list[str]:
        if self.refuse:
            raise BrokerError("ListGroups is not supported by this broker")
        return ["theirs", "ours"]

    async def committed(self, group: str, partitions: list[TopicPartition]
                        ) -> dict[TopicPartition, int]:
        return {partitions[0]: 3} if group == "theirs" else {}


async def test_a_broker_refusing_list_groups_is_logged_once_and_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = RefusingReader()
    discovery = GroupDiscovery(every=1)
    tps = [TopicPartition("t", 0)]
    with caplog.at_level(logging.INFO, logger="onepipe.app.lag_groups"):
        for _ in range(3):
            assert await discovery.groups_for(cast(OffsetReader, reader), {"ours"}, tps) == ()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "ListGroups is not supported" in warnings[0].message
        reader.refuse = False
        found = await discovery.groups_for(cast(OffsetReader, reader), {"ours"}, tps)
    assert [g.group_id for g in found] == ["theirs"]
    assert [r.levelno for r in caplog.records].count(logging.INFO) == 1
    assert discovery.asks == 4


def test_each_developer_agents_group_is_followed_on_its_topics(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(app_id=unique("agents"), example_agents=True, web_port=free_port(),
                             checksums_enabled=True, monitor_interval_seconds=5.0)
    runtime = Runtime(settings)
    monitor = runtime.lag_monitor
    assert monitor is not None
    specs = {g.group_id: g for g in monitor.groups}
    example = agent_group(settings.app_id, "onepipe.example.price_alerts")
    assert set(specs) == {example, checksums_group(settings.app_id)}
    assert [t for t in ("widgets", "widget_price_alerts", "other") if specs[example].reads(t)
            ] == ["widgets"]


def metric_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def run_status(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    process = await asyncio.create_subprocess_exec(
        ONEPIPE, "status", *args, env={**env, "COLUMNS": "250"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def views_show(url: str, group: str, lags: dict[str, int], *, stuck: bool) -> None:
    """/status.json, /status, /metrics and ``onepipe status`` show ``group``'s lag per topic."""
    async with aiohttp.ClientSession(base_url=url) as http:
        async with http.get("/status.json", params={"group": group}) as resp:
            assert resp.status == 200, await resp.text()
            consumers = (await resp.json())["consumers"]
        async with http.get("/status", params={"group": group}) as resp:
            page = await resp.text()
        async with http.get("/metrics") as resp:
            values = metric_values(await resp.text())
    assert [(c["group"], c["topic"], c["lag"]) for c in consumers] == [
        (group, topic, lag) for topic, lag in sorted(lags.items())]
    assert any(p["stuck"] for c in consumers for p in c["partitions"]) is stuck
    assert group in page and ("STUCK" in page) is stuck
    labels = {c["topic"]: [frozenset({"group": group, "topic": c["topic"],
                                      "partition": str(p["partition"])}.items())
                           for p in c["partitions"]] for c in consumers}
    for topic, lag in lags.items():
        assert sum(values[("onepipe_consumer_lag", la)] for la in labels[topic]) == lag
    assert max(values[("onepipe_consumer_stuck", la)] for la in sum(labels.values(), [])
               ) == float(stuck)
    code, out = await run_status("--url", url, "--group", group)
    assert code == (1 if stuck else 0), out
    assert group in out and ("STUCK" in out) is stuck


async def test_a_worker_monitors_the_checksum_group_and_other_applications(
    make_settings: Callable[..., Settings], broker: str,
) -> None:
    settings = make_settings(registry_topic=unique("_reg"), app_id=unique("every"),
                             dedup_enabled=True, checksums_enabled=True,
                             monitor_interval_seconds=0.2)
    topic, other = unique("metered"), unique("reports-app")
    tps = [TopicPartition(topic, p) for p in range(2)]
    async with Runtime(settings) as runtime:
        url = f"http://127.0.0.1:{runtime.web.port}"
        async with aiohttp.ClientSession(base_url=url) as http:
            await create_topic(http, topic, READING, partitions=2, key=["id"],
                               order={"rule": "max", "field": "version"})
            records = [{"id": f"k{i}", "version": i} for i in range(20)]
            async with http.post(f"/topics/{topic}/records", json={"records": records}) as r:
                assert r.status == 200, await r.text()
        monitor = runtime.lag_monitor
        assert monitor is not None
        checksums = checksums_group(settings.app_id)

        def drained(group: str, topics: set[str]) -> Callable[[], bool]:
            def check() -> bool:
                rows = [p for p in monitor.snapshot.of_group(group) if p.topic in topics]
                return (len(rows) == 2 * len(topics) and sum(p.end for p in rows) > 0
                        and all(p.lag == 0 and p.committed == p.end for p in rows))
            return check

        await wait_for(drained(checksums, {topic, unique_topic(topic)}), timeout=60,
                       what="the checksum group to have read the topic and its .unique")
        await wait_for(drained(dedup_group(settings.app_id), {topic}), timeout=60,
                       what="the dedup group to have read the topic")

        # Another application reads the topic and stops 3 records short in each partition.
        consumer = another_application(broker, other)
        await consumer.start()
        try:
            consumer.assign(tps)
            ends = {p.partition: p.end for p in monitor.snapshot.of_group(checksums)
                    if p.topic == topic}
            await read_and_commit(consumer, {tp: ends[tp.partition] - 3 for tp in tps})
        finally:
            await consumer.stop()
        await wait_for(lambda: sum(p.lag for p in monitor.snapshot.of_group(other)) == 6,
                       timeout=60, what="the other application's group and its lag")
        assert {p.topic for p in monitor.snapshot.of_group(other)} == {topic}
        await views_show(url, other, {topic: 6}, stuck=False)
        await views_show(url, checksums, {topic: 0, unique_topic(topic): 0}, stuck=False)

        # The same group stuck, seen through the views (a monitor with an injected clock).
        clock = FakeClock()
        frozen = LagMonitor(settings.kafka, [], lambda: list(runtime.registry.state.topics),
                            clock=clock, stuck_after=60.0, discover_every=1)
        await frozen.start(loop=False)
        server = WebServer(dataclasses.replace(runtime.context, lag_monitor=frozen))
        await server.start()
        try:
            await frozen.sample()
            await produce_batches(broker, topic, {0: [4]})
            clock.now += 61
            await frozen.sample()
            # (the worker's own groups, discovered here too, may be reading the 4 records)
            assert [(p.topic, p.partition) for p in frozen.snapshot.stuck
                    if p.group == other] == [(topic, 0)]
            await views_show(f"http://127.0.0.1:{server.port}", other, {topic: 10}, stuck=True)
        finally:
            await server.stop()
            await frozen.stop()
