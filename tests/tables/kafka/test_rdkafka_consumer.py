"""The librdkafka group consumer against the real broker: aiokafka's API and guarantees.

What the batch agents rely on (onepipe.tables.kafka.rdkafka_consumer): a revoke finishes
before another member reads the partitions; assigned partitions are positioned by the
listener before anything is fetched; commits land; stop and unsubscribe leave the group
at once; and consuming leaves the event loop free. Group joins on tansu can hang while
other groups join (DESIGN.md): every wait for the group has a deadline and says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from onepipe.tables.kafka import KafkaClients, ensure_topic
from onepipe.tables.kafka.rdkafka_consumer import RdkafkaConsumer
from onepipe.tables.kafka.rdkafka_records import RdkafkaRecord
from onepipe.tables.kafka.security import KafkaSecurity
from tests.fixtures.loop_watch import LoopWatch
from tests.fixtures.services import kafka_for, unique, wait_for

#: Seconds a group may take to (re)assign partitions on tansu (a join: ~half the session).
JOIN = 60.0


async def produced(kafka: KafkaClients, partitions: int, per_partition: int) -> str:
    topic = unique("rdconsumer")
    await ensure_topic(kafka, topic, partitions=partitions, replication_factor=1)
    producer = kafka.producer("test-rdconsumer", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, f"{p}:{i}".encode(), key=b"k", partition=p,
                                    headers=[("h", b"v")])
                for i in range(per_partition) for p in range(partitions)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return topic


def on_librdkafka(kafka: KafkaClients) -> KafkaClients:
    return dataclasses.replace(kafka, consumer_client="librdkafka")


def consumer(kafka: KafkaClients, group: str) -> RdkafkaConsumer:
    built = on_librdkafka(kafka).group_consumer(group)
    assert isinstance(built, RdkafkaConsumer)
    return built


@pytest.fixture
async def started() -> AsyncIterator[list[RdkafkaConsumer]]:
    """Consumers a test appends (started), stopped at its end."""
    consumers: list[RdkafkaConsumer] = []
    yield consumers
    for c in consumers:
        await c.stop()


class Journal(ConsumerRebalanceListener):
    """Writes every callback into a shared list of events."""

    def __init__(self, name: str, events: list[tuple[Any, ...]]) -> None:
        self.name, self.events = name, events

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.events.append((self.name, "revoked", frozenset(revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.append((self.name, "assigned", frozenset(assigned)))


async def read(c: RdkafkaConsumer, seen: dict[TopicPartition, list[int]],
               stop: asyncio.Event) -> None:
    """Fetch until ``stop``, keeping the offsets per partition."""
    while not stop.is_set():
        for tp, records in (await c.getmany(timeout_ms=100, max_records=1000)).items():
            seen.setdefault(tp, []).extend(r.offset for r in records)


async def test_the_factorys_settings_in_librdkafkas_names() -> None:
    security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="onepipe", sasl_password="s3cret-pw")
    kafka = KafkaClients("k1:9092,k2:9092", session_timeout=6.0, security=security,
                         consumer_client="librdkafka")
    c = kafka.group_consumer("g", partition_assignment_strategy=(RangePartitionAssignor,))
    assert isinstance(c, RdkafkaConsumer)
    config = c._config
    assert config["group.id"] == "g" and config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert config["enable.auto.commit"] is False and config["enable.auto.offset.store"] is False
    assert config["auto.offset.reset"] == "earliest"
    assert config["session.timeout.ms"] == 6000 and config["heartbeat.interval.ms"] == 1000
    assert config["partition.assignment.strategy"] == "range"  # dedup's co-partitioning
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512" and config["sasl.password"] == "s3cret-pw"
    assert "s3cret-pw" not in repr(kafka)
    with pytest.raises(TypeError, match="isolation_level"):
        kafka.group_consumer("g", isolation_level="read_committed")
    aio = dataclasses.replace(kafka, consumer_client="aiokafka").group_consumer("g")
    assert not isinstance(aio, RdkafkaConsumer)
    await aio.stop()


async def test_records_carry_aiokafkas_attributes_and_the_fetch_high_watermark(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    kafka = kafka_for(broker)
    topic = await produced(kafka, partitions=2, per_partition=30)
    c = consumer(kafka, unique("group"))
    await c.start()
    started.append(c)
    c.subscribe([topic])
    seen: list[RdkafkaRecord] = []

    async def fetch() -> None:
        while len(seen) < 60:
            for records in (await c.getmany(timeout_ms=500)).values():
                seen.extend(records)
    await asyncio.wait_for(fetch(), JOIN)  # deadline: a join on tansu can hang (DESIGN.md)
    first = seen[0]
    assert isinstance(first, RdkafkaRecord) and first.topic == topic and first.key == b"k"
    assert first.headers == (("h", b"v"),) and first.timestamp > 0
    assert sorted(r.value or b"" for r in seen if r.partition == 0) == sorted(
        f"0:{i}".encode() for i in range(30))
    # tansu's ListOffsets(latest) would say less (DESIGN.md); the fetch says 30.
    assert c.highwater(TopicPartition(topic, 0)) == 30
    assert await c.committed(TopicPartition(topic, 0)) is None  # no auto-commit
    await c.commit({TopicPartition(topic, 0): 30})
    assert await c.committed(TopicPartition(topic, 0)) == 30
    assert topic in await c.topics()


async def test_assigned_partitions_are_positioned_before_anything_is_fetched(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    """The group's committed offset is never read from when the listener seeks, and a
    partition the listener leaves paused yields nothing until it is resumed."""
    kafka = kafka_for(broker)
    topic, group = await produced(kafka, partitions=2, per_partition=20), unique("group")
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    setter = consumer(kafka, group)
    await setter.start()
    started.append(setter)
    await setter.commit({p0: 2, p1: 3})  # the group's committed offsets
    await setter.stop()
    c = consumer(kafka, group)
    looked_up: list[int | None] = []

    class Positions(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            c.pause(*assigned)
            # An await on the consumer itself inside the callback (its thread is in the
            # callback, so it runs the call meanwhile), as the agents await their lookups.
            looked_up.append(await c.committed(p0))
            c.seek(p0, 7)
            c.resume(p0)  # p1 stays paused: a partition an agent stalled

    await c.start()
    started.append(c)
    c.subscribe([topic], listener=Positions())
    seen: dict[TopicPartition, list[int]] = {}

    async def until_p0_read() -> None:
        while len(seen.get(p0, [])) < 13:
            for tp, records in (await c.getmany(timeout_ms=200)).items():
                seen.setdefault(tp, []).extend(r.offset for r in records)
    await asyncio.wait_for(until_p0_read(), JOIN)
    assert looked_up == [2]
    assert seen[p0] == list(range(7, 20))  # from the listener's seek, not @2 nor @0
    for _ in range(3):  # p1 is paused: more fetches return nothing of it
        seen.update(await c.getmany(timeout_ms=100))
    assert p1 not in seen and c.paused() == {p1}
    c.resume(p1)

    async def until_p1_read() -> None:
        while p1 not in seen:
            for tp, records in (await c.getmany(timeout_ms=200)).items():
                seen.setdefault(tp, []).extend(r.offset for r in records)
    await asyncio.wait_for(until_p1_read(), 30)
    assert seen[p1][0] == 3  # resumed without a seek: from the group's committed offset


async def test_every_call_a_listener_made_before_it_returned_is_applied(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    """Seeks queued as the listener's last statements (no await after them) still
    position the assignment: none runs after librdkafka was given the partitions."""
    kafka = kafka_for(broker)
    topic = await produced(kafka, partitions=8, per_partition=10)
    c = consumer(kafka, unique("group"))

    class SeekLast(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            await c.committed(TopicPartition(topic, 0))  # an await first, as agents do
            for tp in sorted(assigned):
                c.seek(tp, 6)

    await c.start()
    started.append(c)
    c.subscribe([topic], listener=SeekLast())
    seen: dict[TopicPartition, list[int]] = {}

    async def until_all_read() -> None:
        while sum(map(len, seen.values())) < 8 * 4:
            for tp, records in (await c.getmany(timeout_ms=200)).items():
                seen.setdefault(tp, []).extend(r.offset for r in records)
    await asyncio.wait_for(until_all_read(), JOIN)
    assert {tp.partition: offsets for tp, offsets in seen.items()} == {
        p: [6, 7, 8, 9] for p in range(8)}


async def test_a_partition_left_paused_is_read_after_the_next_assignment(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    """A listener that fails after pausing (an agent's failed assignment) leaves its
    partitions paused; after unsubscribe and subscribe they are read again (librdkafka
    itself keeps a pause across unassign and assign)."""
    kafka = kafka_for(broker)
    topic = await produced(kafka, partitions=2, per_partition=5)
    c = consumer(kafka, unique("group"))
    failures = [RuntimeError("injected: the first assignment fails")]

    class FailOnce(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            c.pause(*assigned)
            if failures:
                raise failures.pop()
            c.resume(*assigned)

    await c.start()
    started.append(c)
    c.subscribe([topic], listener=FailOnce())

    async def until_assigned() -> None:
        while not c.assignment():
            assert not await c.getmany(timeout_ms=200)  # paused: nothing is read
    await asyncio.wait_for(until_assigned(), JOIN)
    assert not failures and c.paused() == c.assignment()
    c.unsubscribe()
    c.subscribe([topic], listener=FailOnce())
    seen: dict[TopicPartition, list[int]] = {}

    async def until_all_read() -> None:
        while sum(map(len, seen.values())) < 10:
            for tp, records in (await c.getmany(timeout_ms=200)).items():
                seen.setdefault(tp, []).extend(r.offset for r in records)
    await asyncio.wait_for(until_all_read(), JOIN)
    assert sorted(seen[TopicPartition(topic, 0)]) == list(range(5))


async def test_a_revoke_finishes_before_the_next_member_reads(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    """Member A's revoke is held open, then commits where A got to; member B reads
    nothing meanwhile, then exactly from A's commit: no record twice, none lost."""
    kafka = kafka_for(broker)
    topic, group = await produced(kafka, partitions=2, per_partition=50), unique("group")
    events: list[tuple[Any, ...]] = []
    release = asyncio.Event()
    a = consumer(kafka, group)
    a_seen: dict[TopicPartition, list[int]] = {}

    class Holding(Journal):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            events.append(("A", "revoking", frozenset(revoked)))
            await release.wait()  # the test decides when the revoke ends
            await a.commit({tp: a_seen[tp][-1] + 1 for tp in revoked})
            events.append(("A", "revoked", frozenset(revoked)))

    await a.start()
    started.append(a)
    a.subscribe([topic], listener=Holding("A", events))
    stop_a = asyncio.Event()
    a_task = asyncio.create_task(read(a, a_seen, stop_a))
    await wait_for(lambda: sum(map(len, a_seen.values())) == 100, JOIN, what="A reads all")
    b = consumer(kafka, group)
    await b.start()
    started.append(b)
    b.subscribe([topic], listener=Journal("B", events))
    b_seen: dict[TopicPartition, list[int]] = {}

    async def revoking() -> bool:  # B's fetches drive its join meanwhile
        b_seen.update(await b.getmany(timeout_ms=100))
        return ("A", "revoking") in {e[:2] for e in events}
    await wait_for(revoking, JOIN, what="the rebalance B's join starts")
    await produced_more(kafka, topic, per_partition=10)  # offsets 50..59, for B to read
    for _ in range(5):  # fetches while A's revoke is held: B gets nothing
        b_seen.update(await b.getmany(timeout_ms=200))
    assert not b_seen and ("B", "assigned") not in {e[:2] for e in events}
    release.set()
    stop_b = asyncio.Event()
    b_task = asyncio.create_task(read(b, b_seen, stop_b))
    await wait_for(lambda: any(len(o) == 10 for o in b_seen.values()), JOIN,
                   what="B reads after the rebalance")
    stop_a.set()
    stop_b.set()
    await asyncio.gather(a_task, b_task)
    kinds = [e[:2] for e in events]
    assert kinds.index(("A", "revoked")) < kinds.index(("B", "assigned"))
    assert b_seen and all(offsets == list(range(50, 60)) for offsets in b_seen.values())


async def produced_more(kafka: KafkaClients, topic: str, per_partition: int) -> None:
    producer = kafka.producer("test-rdconsumer")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, b"more", partition=p)
                               for _ in range(per_partition) for p in range(2)])
    finally:
        await producer.stop()


@pytest.mark.parametrize("leave", ["stop", "unsubscribe"])
async def test_stop_and_unsubscribe_leave_the_group_without_a_listener_call(
        broker: str, started: list[RdkafkaConsumer], leave: str) -> None:
    """The remaining member gets every partition in a rebalance, not after the leaver's
    session timed out (20 s here: then 30 s with the join tansu holds for half of it)."""
    kafka = dataclasses.replace(kafka_for(broker), session_timeout=20.0)
    topic, group = await produced(kafka, partitions=2, per_partition=1), unique("group")
    events: list[tuple[Any, ...]] = []
    members = [consumer(kafka, group), consumer(kafka, group)]
    seen: dict[TopicPartition, list[int]] = {}
    stops = [asyncio.Event(), asyncio.Event()]
    for name, member in zip("AB", members, strict=True):
        await member.start()
        started.append(member)
        member.subscribe([topic], listener=Journal(name, events))
    tasks = [asyncio.create_task(read(m, seen, s)) for m, s in zip(members, stops, strict=True)]
    await wait_for(lambda: all(m.assignment() for m in members), JOIN,
                   what="both members assigned")
    leaver, stayer = members
    stops[0].set()
    await tasks[0]
    before = len(events)
    if leave == "stop":
        await leaver.stop()
    else:
        leaver.unsubscribe()
    await wait_for(lambda: len(stayer.assignment()) == 2, 20.0,
                   what="the other member to get every partition")
    assert not [e for e in events[before:] if e[0] == "A"]  # no listener call on leaving
    stops[1].set()
    await tasks[1]


@pytest.mark.alone
async def test_consuming_leaves_the_event_loop_free(
        broker: str, started: list[RdkafkaConsumer]) -> None:
    """A ticker's longest gap while 300,000 records are consumed is a small part of it."""
    kafka = kafka_for(broker)
    topic = await produced(kafka, partitions=2, per_partition=150_000)
    c = consumer(kafka, unique("group"))
    await c.start()
    started.append(c)
    c.subscribe([topic])
    await asyncio.wait_for(_first_batch(c), JOIN)
    watch = LoopWatch()

    async def consume_rest() -> int:
        count = 0
        while count < 299_000:  # the first batch was read before the watch started
            batches = await c.getmany(timeout_ms=500, max_records=5000)
            count += sum(map(len, batches.values()))
        return count

    count, took = await watch.during(consume_rest())
    longest = watch.longest
    print(f"\n{count:,} records in {took:.2f} s; longest loop step {longest * 1000:.1f} ms")
    assert longest < took / 4, (longest, took)


async def _first_batch(c: RdkafkaConsumer) -> None:
    while True:
        batches = await c.getmany(timeout_ms=500, max_records=1000)
        if batches:
            return
