"""Dedup agent against the real broker: winners, no regressions, repartitioning, recovery.

Records go in through the produce endpoint (canonical keys and partitions) or a raw
producer (misrouted); the expected winners and counts are computed independently in
tests/fixtures/dedup.py from what the source topic holds.
"""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from onepipe.app.runtime import Runtime
from onepipe.schemas.codec import frame
from onepipe.schemas.topic_names import unique_topic
from tests.fixtures.dedup import (
    ORDERS,
    PARTITIONS,
    SCHEMAS,
    check_unique,
    expected_outcome,
    make_agent,
)
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic, read_topic

TIMEOUT = 60.0


async def make_topic(http: aiohttp.ClientSession, rule: str) -> str:
    topic = unique(f"dd-{rule.replace('_', '')}")
    await create_topic(http, topic, SCHEMAS[rule], partitions=PARTITIONS, key=["id"],
                       order=ORDERS[rule])
    return topic


async def produce(http: aiohttp.ClientSession, topic: str, records: list[dict[str, Any]]
                  ) -> None:
    for start in range(0, len(records), 200):
        async with http.post(f"/topics/{topic}/records",
                             json={"records": records[start:start + 200]}) as resp:
            assert resp.status == 200, await resp.text()


def versions(rule: str, keys: int, seed: int) -> list[dict[str, Any]]:
    """Versions of ``keys`` ids: duplicates, out-of-order and (vector_clock) concurrent."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(6):
        for k in range(keys):
            ident = f"id-{k}"
            n = rng.randint(1, 5)
            if rule == "max":
                out.append({"id": ident, "version": n, "payload": f"p{n}"})
            elif rule == "first":
                out.append({"id": ident, "payload": f"p{n}"})
            else:
                # Concurrent clocks ({a:2,b:1} vs {a:1,b:2}) and dominated ones.
                a = rng.randint(0, 3)
                out.append({"id": ident, "clock": {"a": a, "b": n - a if n > a else 0},
                            "payload": f"p{n}"})
        # Exact duplicates: a producer retry re-sends the last round.
        out.extend(out[-keys // 2:])
    return out


async def test_winners_duplicates_and_losers_for_every_rule(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    topics = {rule: await make_topic(http, rule) for rule in SCHEMAS}
    sent = {rule: versions(rule, 40, seed=i) for i, rule in enumerate(SCHEMAS)}
    rounds = 5
    chunks = {rule: [v[i * len(v) // rounds:(i + 1) * len(v) // rounds] for i in range(rounds)]
              for rule, v in sent.items()}
    for rule, topic in topics.items():
        await produce(http, topic, chunks[rule][0])
    total = sum(len(v) for v in sent.values())
    winners_seen: list[tuple[str, int, bytes, bytes | None, bytes]] = []
    async with make_agent(runtime.registry, tmp_path, unique("dedup"), list(topics.values()),
                          on_winner=lambda *a: winners_seen.append(a)) as agent:
        # One round before the agent joins, the others while it runs, each consumed
        # before the next: several batches, so keys see several winners in turn.
        consumed = sum(len(c[0]) for c in chunks.values())
        await asyncio.wait_for(agent.wait_consumed(consumed), TIMEOUT)
        for i in range(1, rounds):
            for rule, topic in topics.items():
                await produce(http, topic, chunks[rule][i])
                consumed += len(chunks[rule][i])
            await asyncio.wait_for(agent.wait_consumed(consumed), TIMEOUT)
        metrics = agent.metrics
    duplicates = losers = 0
    for rule, topic in topics.items():
        source, _ = await read_topic(broker, topic, PARTITIONS)
        expected = expected_outcome(rule, source)
        emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
        count = check_unique(rule, emitted, expected.winners)
        # Same partition and key bytes as the source versions of that key.
        source_keys = {r.key: p for p, records in source.items() for r in records}
        assert all(source_keys[r.key] == p for p, records in emitted.items() for r in records)
        duplicates += expected.duplicates
        losers += expected.losers
        assert len([w for w in winners_seen if w[0] == topic]) == count
        assert len(expected.winners) == 40
    assert metrics.consumed == total
    assert metrics.winners > 120  # keys saw several winners in turn over the rounds
    assert metrics.undecodable == 0 and metrics.repartitioned == 0
    assert (metrics.duplicates, metrics.losers) == (duplicates, losers)
    assert metrics.winners + metrics.duplicates + metrics.losers + metrics.superseded == total
    # The hook sees each replacement with the value it replaces.
    previous: dict[tuple[str, bytes], bytes] = {}
    for topic, _, key, old, new in winners_seen:
        assert old == previous.get((topic, key))
        previous[(topic, key)] = new


def framed(schema_id: int, rule: str, datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMAS[rule], named_schemas={}),
                               datum)
    return frame(schema_id, buf.getvalue())


async def test_misrouted_records_are_repartitioned_to_their_canonical_partition(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    rule = "max"
    topic = await make_topic(http, rule)
    schema_id = runtime.registry.state.version(f"{topic}-value", "latest").schema_id
    rng = random.Random(7)
    records = [{"id": f"id-{rng.randint(0, 29)}", "version": rng.randint(1, 9),
                "payload": f"p{i % 3}"} for i in range(300)]
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for i, datum in enumerate(records):
            # No key, a wrong key, or the right key in a round-robin partition.
            key = [None, b"wrong", None][i % 3]
            await producer.send(topic, framed(schema_id, rule, datum), key=key,
                                partition=i % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()
    # The endpoint's records (canonical) interleave with the misrouted ones.
    await produce(http, topic, records[:50])
    async with make_agent(runtime.registry, tmp_path, unique("dedup"), [topic]) as agent:
        await asyncio.wait_for(
            agent.wait_until(lambda m: m.consumed >= 350 + m.repartitioned), TIMEOUT)
        metrics = agent.metrics
    assert metrics.repartitioned > 0
    source, _ = await read_topic(broker, topic, PARTITIONS)
    best: dict[str, tuple[int, bytes]] = {}
    for partition_records in source.values():
        for record in partition_records:
            version = record.value  # rank (version, value bytes), written out plainly
            decoded = fastavro.schemaless_reader(
                io.BytesIO(version[5:]),
                fastavro.parse_schema(SCHEMAS[rule], named_schemas={}), None)
            assert isinstance(decoded, dict)
            key_id, rank = str(decoded["id"]), (int(decoded["version"]), record.value)
            if key_id not in best or rank > best[key_id]:
                best[key_id] = rank
    emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    check_unique(rule, emitted, {k: v[1] for k, v in best.items()})
    # Winners are keyed canonically: as the endpoint keys the same id, in its partition.
    endpoint: dict[str, tuple[bytes, int]] = {}
    for p, rs in source.items():
        for r in rs:
            if r.key not in (None, b"wrong"):
                endpoint[_id(r.value)] = (r.key, p)
    for p, rs in emitted.items():
        for r in rs:
            if _id(r.value) in endpoint:
                assert endpoint[_id(r.value)] == (r.key, p)


def _id(value: bytes) -> str:
    datum = fastavro.schemaless_reader(
        io.BytesIO(value[5:]), fastavro.parse_schema(SCHEMAS["max"], named_schemas={}), None)
    assert isinstance(datum, dict)
    return str(datum["id"])


async def test_fresh_data_dir_rebuilds_the_table_from_unique(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    rule = "max"
    topic = await make_topic(http, rule)
    group = unique("dedup")
    first_batch = versions(rule, 30, seed=11)
    await produce(http, topic, first_batch)
    async with make_agent(runtime.registry, tmp_path / "a", group, [topic]) as first:
        await asyncio.wait_for(first.wait_consumed(len(first_batch)), TIMEOUT)
    emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    emitted_count = sum(len(v) for v in emitted.values())

    # Everything re-sent (a replay, a producer retrying a whole day), plus newer versions
    # of 5 ids; a new member with an empty data dir must know every winner so far.
    newer = [{"id": f"id-{k}", "version": 100, "payload": "new"} for k in range(5)]
    await produce(http, topic, first_batch + newer)
    async with make_agent(runtime.registry, tmp_path / "b", group, [topic]) as second:
        await asyncio.wait_for(second.wait_consumed(len(first_batch) + 5), TIMEOUT)
        assert second.metrics.recovered == emitted_count
        assert second.metrics.winners == 5
        assert second.metrics.duplicates + second.metrics.losers == len(first_batch)

    # The first data dir has applied the changelog up to where it stopped: a restart on
    # it reads only the 5 winners emitted since (the tail), not the whole changelog.
    async with make_agent(runtime.registry, tmp_path / "a", group, [topic]) as third:
        await asyncio.wait_for(third.assigned.wait(), TIMEOUT)
        assert third.metrics.recovered == 5

    source, _ = await read_topic(broker, topic, PARTITIONS)
    emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    check_unique(rule, emitted, expected_outcome(rule, source).winners)
    assert sum(len(v) for v in emitted.values()) == emitted_count + 5


async def test_rebalance_mid_stream_loses_and_regresses_nothing(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str
) -> None:
    rule = "max"
    topic = await make_topic(http, rule)
    group = unique("dedup")
    sent = versions(rule, 60, seed=5) + versions(rule, 60, seed=6)
    half = len(sent) // 2
    first = make_agent(runtime.registry, tmp_path / "a", group, [topic])
    second = make_agent(runtime.registry, tmp_path / "b", group, [topic])
    await first.start()
    try:
        await produce(http, topic, sent[: half // 2])
        await asyncio.wait_for(first.wait_consumed(half // 2), TIMEOUT)
        await second.start()  # joins: partitions move between the two
        producing = asyncio.create_task(produce(http, topic, sent[half // 2: half]))
        await asyncio.wait_for(second.assigned.wait(), TIMEOUT)
        await producing
        await first.stop()  # mid-stream: its partitions go to the second agent
        await produce(http, topic, sent[half:])
        # Every record is consumed (and committed) by one of them.
        source, watermarks = await read_topic(broker, topic, PARTITIONS)

        async def all_committed() -> bool:
            return await committed(broker, group, topic) == watermarks

        await wait_for(all_committed, timeout=TIMEOUT, what="every offset committed")
    finally:
        await first.stop()
        await second.stop()
    await first.stop()  # harmless twice
    emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    check_unique(rule, emitted, expected_outcome(rule, source).winners)


async def committed(broker: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (without joining it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = {p: await consumer.committed(TopicPartition(topic, p))
                   for p in range(PARTITIONS)}
    finally:
        await consumer.stop()
    return {p: o for p, o in offsets.items() if o is not None}
