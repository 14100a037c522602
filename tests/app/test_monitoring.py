"""Lag sampling and ``GET /metrics`` against the real broker.

Stuck detection is shown by pausing a real consumer while records keep arriving, with an
injected clock (no test waits a minute); the worker wiring by a runtime whose archive
agent drains a topic while its lag monitor samples it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from onepipe.app.lag_monitor import LagMonitor, MonitoredGroup
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.web.metrics import CounterSource
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.topic_names import archive_group, unique_topic
from onepipe.tables.kafka.topics import ensure_topic
from tests.fixtures.services import kafka_for, unique, wait_for

ORDER = {"type": "record", "name": "Reading", "namespace": "test.monitor", "fields": [
    {"name": "id", "type": "string"}, {"name": "version", "type": "long"}]}


async def produce_batches(broker: str, topic: str, batches: dict[int, list[int]]) -> None:
    """Each list item is one producer batch of that many records to that partition."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, enable_idempotence=False)
    await producer.start()
    try:
        for partition, sizes in batches.items():
            for size in sizes:
                for i in range(size):
                    await producer.send(topic, f"r{i}".encode(), partition=partition)
                await producer.flush()
    finally:
        await producer.stop()


class FakeClock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def consume_to(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
    """Read ``tp`` until the consumer's position reaches ``offset``, then commit it."""

    async def reached() -> bool:
        await consumer.getmany(tp, timeout_ms=100)
        return await consumer.position(tp) >= offset

    await wait_for(reached, timeout=20, what=f"{tp.topic}[{tp.partition}] read to @{offset}")
    await consumer.commit({tp: offset})


def by_partition(monitor: LagMonitor, group: str) -> dict[int, Any]:
    return {p.partition: p for p in monitor.snapshot.of_group(group)}


async def test_a_paused_consumer_is_flagged_stuck_and_recovers(broker: str) -> None:
    topic, group = unique("paused"), unique("paused-group")
    await ensure_topic(kafka_for(broker), topic, partitions=3, replication_factor=1)
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    await produce_batches(broker, topic, {0: [20], 1: [20], 2: [5]})
    clock = FakeClock()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50)
    await consumer.start()
    monitor = LagMonitor(kafka_for(broker), [group], lambda: [topic], interval=1.0,
                         stuck_after=60.0, clock=clock)
    try:
        # The group reads p0 and p1; it never touches p2 (never committed, no new records).
        consumer.assign([p0, p1])
        await consume_to(consumer, p0, 20)
        await consume_to(consumer, p1, 20)
        await monitor.start(loop=False)
        await monitor.sample()
        rows = by_partition(monitor, group)
        assert [(r.committed, r.end, r.lag, r.stuck) for r in rows.values()] == [
            (20, 20, 0, False), (20, 20, 0, False), (None, 5, 5, False)]

        consumer.pause(p0)  # p0 stops; p1 keeps up while both receive records
        await produce_batches(broker, topic, {0: [10], 1: [10]})
        await consume_to(consumer, p1, 30)
        clock.now += 30
        await monitor.sample()
        rows = by_partition(monitor, group)
        assert (rows[0].lag, rows[0].stuck, rows[1].lag) == (10, False, 0)

        await produce_batches(broker, topic, {0: [10], 1: [10]})
        await consume_to(consumer, p1, 40)
        clock.now += 31
        await monitor.sample()
        rows = by_partition(monitor, group)
        assert (rows[0].end, rows[0].lag, rows[0].stuck) == (40, 20, True)
        assert rows[0].stalled_for == pytest.approx(61.0)
        assert not rows[1].stuck
        assert not rows[2].stuck  # lag 5 for 61s, but nothing arrived: idle, not stuck
        assert [p.lag for p in monitor.history(group, topic, 0)] == [0, 10, 20]
        assert [p.partition for p in monitor.snapshot.stuck] == [0]

        consumer.resume(p0)
        await consume_to(consumer, p0, 30)  # part of the way: the lag shrinks
        clock.now += 5
        await monitor.sample()
        assert (by_partition(monitor, group)[0].lag, by_partition(monitor, group)[0].stuck
                ) == (10, False)
    finally:
        await monitor.stop()
        await monitor.stop()  # harmless twice
        await consumer.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await monitor.sample()


async def test_grace_delays_stuck_for_a_group_that_commits_late(broker: str) -> None:
    topic, group = unique("graced"), unique("graced-group")
    await ensure_topic(kafka_for(broker), topic, partitions=1, replication_factor=1)
    await produce_batches(broker, topic, {0: [10]})
    clock = FakeClock()
    # Like the archive: a healthy member may hold records 100s before it commits.
    spec = MonitoredGroup(group, grace=lambda t: 100.0)
    monitor = LagMonitor(kafka_for(broker), [spec], lambda: [topic], stuck_after=60.0, clock=clock)
    await monitor.start(loop=False)
    try:
        stuck = []
        for _ in range(4):
            await monitor.sample()
            stuck.append(monitor.snapshot.partitions[0].stuck)
            await produce_batches(broker, topic, {0: [5]})
            clock.now += 61
        # Stalled 0, 61, 122 (past stuck_after alone), 183s (past 60 + 100 grace).
        assert stuck == [False, False, False, True]
        assert monitor.snapshot.partitions[0].lag == 25
    finally:
        await monitor.stop()


async def test_a_group_reads_only_the_topics_it_selects(broker: str) -> None:
    source, other = unique("source"), unique("other")
    for name in (source, other, unique_topic(source)):
        await ensure_topic(kafka_for(broker), name, partitions=1, replication_factor=1)
    await produce_batches(broker, unique_topic(source), {0: [4]})
    sink = MonitoredGroup(unique("sink"), reads=lambda t: t.endswith(".unique"))
    async with LagMonitor(kafka_for(broker), [sink], lambda: [source, other, unique("gone")],
                          interval=0.05) as monitor:
        await wait_for(lambda: monitor.snapshot.sampled_at is not None, what="a sample")
        assert [(p.topic, p.lag) for p in monitor.snapshot.partitions] == [
            (unique_topic(source), 4)]


async def test_an_unreachable_broker_fails_start_naming_it() -> None:
    from onepipe.app.embedded import free_port

    address = f"127.0.0.1:{free_port()}"
    monitor = LagMonitor(kafka_for(address), ["g"], list)
    with pytest.raises(BrokerError, match=address):
        await monitor.start()
    await monitor.stop()


@dataclass
class FakeDedupMetrics:
    consumed: int = 7
    winners: int = 5
    duplicates: int = 2


def test_a_counter_source_names_a_missing_field() -> None:
    with pytest.raises(TypeError, match="losers"):
        CounterSource("dedup", FakeDedupMetrics, {"losers": "x"})


@pytest.fixture
async def archiving_runtime(make_settings: Callable[..., Settings], tmp_path: Path
                            ) -> AsyncIterator[Runtime]:
    settings = make_settings(registry_topic=unique("_reg"), app_id=unique("mon"),
                             archive_enabled=True, monitor_interval_seconds=0.2,
                             lake_url=(tmp_path / "lake").as_uri())
    async with Runtime(settings) as runtime:
        yield runtime


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_show_the_archive_group_draining_a_topic(
    archiving_runtime: Runtime,
) -> None:
    runtime = archiving_runtime
    group = archive_group(runtime.settings.app_id)
    topic = unique("metered")
    runtime.context.metric_sources.append(
        CounterSource("dedup", FakeDedupMetrics, {"consumed": "c", "winners": "w"}))
    base = f"http://127.0.0.1:{runtime.web.port}"
    async with aiohttp.ClientSession(base_url=base) as http:
        body = {"schema": ORDER, "partitions": 2, "key": ["id"],
                "order": {"rule": "max", "field": "version"},
                "archive": {"flush_records": 10, "flush_seconds": 0.2}}
        async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
            assert resp.status == 200, await resp.text()
        for start in (0, 25):  # two requests: two batches per partition
            records = [{"id": f"k{i}", "version": i} for i in range(start, start + 25)]
            async with http.post(f"/topics/{topic}/records", json={"records": records}) as r:
                assert r.status == 200, await r.text()
        monitor = runtime.lag_monitor
        assert monitor is not None

        def drained() -> bool:
            rows = [p for p in monitor.snapshot.of_group(group) if p.topic == topic]
            return len(rows) == 2 and sum(p.end for p in rows) == 50 and all(
                p.lag == 0 for p in rows)

        await wait_for(drained, timeout=60, what="the archive group's lag to reach 0")
        async with http.get("/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    values = samples(text)
    ends = {p.partition: p.end for p in monitor.snapshot.of_group(group) if p.topic == topic}
    for partition, end in ends.items():
        labels = frozenset({"group": group, "topic": topic, "partition": str(partition)}.items())
        assert values[("onepipe_consumer_end_offset", labels)] == end
        assert values[("onepipe_consumer_committed_offset", labels)] == end
        assert values[("onepipe_consumer_lag", labels)] == 0
        assert values[("onepipe_consumer_stuck", labels)] == 0
        tp_labels = frozenset({"topic": topic, "partition": str(partition)}.items())
        assert values[("onepipe_archive_last_flush_records", tp_labels)] > 0
        assert values[("onepipe_archive_last_flush_bytes", tp_labels)] > 0
        assert values[("onepipe_archive_last_flush_timestamp_seconds", tp_labels)] > 0
    assert sum(ends.values()) == 50
    metrics = runtime.archive.metrics if runtime.archive is not None else None
    assert metrics is not None
    assert values[("onepipe_archive_records_archived_total", frozenset())] == 50
    assert values[("onepipe_archive_records_in_total", frozenset())] == 50
    assert values[("onepipe_archive_undecodable_total", frozenset())] == 0
    assert values[("onepipe_archive_files_total", frozenset())] == metrics.files
    assert values[("onepipe_archive_bytes_written_total", frozenset())] == metrics.bytes_written
    flushes = len(metrics.last_flushes)
    assert flushes == 2
    assert values[("onepipe_archive_flush_latency_seconds_count", frozenset())] == sum(
        metrics.flush_latency_counts) > 0
    assert values[("onepipe_archive_flush_latency_seconds_bucket",
                   frozenset({"le": "+Inf"}.items()))] == sum(metrics.flush_latency_counts)
    assert values[("onepipe_lag_monitor_up", frozenset())] == 1
    assert values[("onepipe_dedup_consumed_total", frozenset())] == 7
    assert values[("onepipe_dedup_winners_total", frozenset())] == 5


async def test_metrics_and_health_show_the_dedup_agents_counters(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(registry_topic=unique("_reg"), app_id=unique("dmon"),
                             dedup_enabled=True)
    topic = unique("deduped")
    async with Runtime(settings) as runtime, aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{runtime.web.port}") as http:
        async with http.get("/health") as resp:  # before anything is consumed: zeros
            assert (await resp.json())["dedup"]["consumed"] == 0
        body = {"schema": ORDER, "partitions": 2, "key": ["id"],
                "order": {"rule": "max", "field": "version"}}
        async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
            assert resp.status == 200, await resp.text()
        # 10 keys; then 4 of them re-sent as they were (duplicates) and one older (a loser).
        sends = [[{"id": f"k{i}", "version": i} for i in range(10)],
                 [{"id": f"k{i}", "version": i} for i in range(4)] + [{"id": "k9", "version": 1}]]
        for records in sends:
            async with http.post(f"/topics/{topic}/records", json={"records": records}) as r:
                assert r.status == 200, await r.text()
        agent = runtime.dedup
        assert agent is not None
        await wait_for(lambda: agent.metrics.consumed >= 15, timeout=60,
                       what="the dedup agent to consume 15 records")
        async with http.get("/metrics") as resp:
            values = samples(await resp.text())
        async with http.get("/health") as resp:
            health = (await resp.json())["dedup"]
    expected = {"consumed": 15, "winners": 10, "duplicates": 4, "losers": 1, "superseded": 0,
                "undecodable": 0, "repartitioned": 0, "recovered": 0}
    assert health == expected
    for name, value in expected.items():
        assert values[(f"onepipe_dedup_{name}_total", frozenset())] == value, name


async def test_metrics_show_how_long_the_event_loop_was_held(
    make_settings: Callable[..., Settings],
) -> None:
    """A step that holds the worker's loop (here a blocking call of 0.5 s, the stimulus)
    is counted in onepipe_event_loop_lag_seconds above 0.25 s and sets the max gauge: the
    sample asleep meanwhile wakes 0.4-0.5 s late (it sleeps 0.1 s)."""
    settings = make_settings(registry_topic=unique("_reg"), app_id=unique("lag"))
    async with Runtime(settings) as runtime, aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{runtime.web.port}") as http:
        lag = runtime.web.loop_lag
        await wait_for(lambda: lag.samples >= 2, what="two loop-lag samples")
        before = lag.samples
        time.sleep(0.5)  # noqa: ASYNC251 - holding the loop is what is measured
        await wait_for(lambda: lag.samples > before + 1, what="the next loop-lag samples")
        async with http.get("/metrics") as resp:
            values = samples(await resp.text())
    held = {le: v for (name, labels), v in values.items()
            if name == "onepipe_event_loop_lag_seconds_bucket"
            for key, le in labels if key == "le"}
    assert held["+Inf"] - held["0.25"] >= 1  # the held step, in the bucket above 0.25 s
    assert held["0.25"] >= 1  # the ordinary samples, far below
    assert values[("onepipe_event_loop_lag_max_seconds", frozenset())] >= 0.4
