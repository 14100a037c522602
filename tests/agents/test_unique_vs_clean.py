"""Acceptance: ``<topic>.unique`` and the clean lake hold the same single winner per key.

Per merge rule, one topic (3 partitions) gets duplicates, out-of-order versions, equal
versions with different payloads, concurrent and dominating vector clocks, over three
days of ``partition_time``, through the real produce endpoint and -- misrouted, with
non-canonical keys -- through a raw producer. A real DedupAgent and a real ArchiveAgent
run against the broker; the Compactor turns the raw lake into the clean lake. It happens
in two phases (compacting after each), so some winners move to another day.

Expected winners are computed here in plain Python from the source topic as it was
written (value bytes, partition, offset), never with onepipe.schemas.merge.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from onepipe.agents.archive.agent import ArchiveAgent
from onepipe.agents.compact import CompactionConfig, Compactor
from onepipe.agents.dedup.agent import DedupAgent
from onepipe.app.runtime import Runtime
from onepipe.schemas.codec import frame
from onepipe.schemas.topic_names import unique_topic
from onepipe.sinks.lake import LakeStore
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.compact import catalog_for, clean_state, read_clean
from tests.fixtures.dedup import make_agent, source_position
from tests.fixtures.s3 import local_or_s3_lake
from tests.fixtures.services import unique
from tests.fixtures.topics import read_topic

PARTITIONS = 3
TIMEOUT = 45.0
DAY0 = 1_795_132_800_000  # 2026-11-20T00:00:00Z
DAY_MS = 86_400_000
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Item", "namespace": "test.uvc", "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "clock", "type": {"type": "map", "values": "long"}},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "payload", "type": "string"},
    ]}
PARSED = fastavro.parse_schema(SCHEMA, named_schemas={})
ORDERS: dict[str, dict[str, Any]] = {
    "max": {"rule": "max", "field": "version"},
    "first": {"rule": "first"},
    "vector_clock": {"rule": "vector_clock", "field": "clock"},
}
#: Raw-producer keys that are not the canonical key encoding.
BAD_KEYS = (None, b"wrong")


# ------------------------------------------------------------------ records


def rec(ident: str, version: int, clock: dict[str, int], day: int, payload: str,
        ms: int = 0) -> dict[str, Any]:
    return {"id": ident, "version": version, "clock": clock,
            "updated_at": DAY0 + day * DAY_MS + 3_600_000 + ms, "payload": payload}


def crafted_phase1() -> list[dict[str, Any]]:
    dup = rec("dup", 1, {"a": 1}, 0, "same")
    return [
        dup, dup,  # exact duplicates (a producer retry)
        rec("ooo", 5, {"a": 3, "b": 1}, 1, "high"),  # a lower version follows in phase 2
        # Equal versions / equal clocks, different payloads: the value bytes decide.
        rec("tie", 3, {"a": 1, "b": 1}, 0, "aaa"),
        rec("tie", 3, {"a": 1, "b": 1}, 0, "zzz"),
        rec("tie", 3, {"a": 1, "b": 1}, 0, "mmm"),
        # Concurrent clocks with equal totals, and with different totals.
        rec("conc", 1, {"a": 2}, 0, "left"),
        rec("conc", 1, {"b": 2}, 1, "right"),
        rec("conc3", 2, {"a": 3}, 2, "three"),
        rec("conc3", 2, {"b": 1, "c": 1}, 0, "two"),
        # Dominated, then dominating, then concurrent with a higher total.
        rec("dom", 1, {"a": 1}, 0, "d1"),
        rec("dom", 2, {"a": 1, "b": 1}, 1, "d2"),
        # Winners that move to another day in phase 2.
        *[rec(f"move-{i}", 1, {"a": 1}, 0, f"early-{i}") for i in range(4)],
        # Ids that get misrouted versions in phase 2.
        *[rec(f"mis-{i}", 2, {"a": 1, "b": 1}, 0, f"canonical-{i}") for i in range(6)],
    ]


def crafted_phase2() -> list[dict[str, Any]]:
    return [
        rec("dup", 1, {"a": 1}, 0, "same"),  # re-sent a phase later
        rec("ooo", 2, {"a": 1}, 0, "low"),  # lower version after higher; dominated clock
        rec("tie", 3, {"a": 1, "b": 1}, 0, "bbb"),
        rec("dom", 2, {"b": 5}, 2, "d3"),  # concurrent with {a:1,b:1}, higher total
        rec("dom", 0, {"b": 4}, 0, "d0"),  # dominated by {b:5}
        *[rec(f"move-{i}", 2, {"a": 2}, 2, f"late-{i}") for i in range(4)],
    ]


def bulk(rng: random.Random, ids: int, per_id: int) -> list[dict[str, Any]]:
    """Random versions: version ties, random clocks, three days, 20% exact duplicates."""
    out = []
    for k in range(ids):
        for v in range(per_id):
            clock = {node: rng.randint(0, 3) for node in rng.sample(["a", "b", "c"], 2)}
            out.append(rec(f"b{k:02d}", rng.randint(1, 4), clock, rng.randrange(3),
                           f"r{k}-{v}-{rng.randrange(1000)}", ms=rng.randrange(1000)))
    out += [dict(item) for item in rng.sample(out, len(out) // 5)]
    rng.shuffle(out)
    return out


def encode(schema_id: int, datum: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, PARSED, datum)
    return frame(schema_id, buf.getvalue())


def decode(value: bytes) -> dict[str, Any]:
    datum = fastavro.schemaless_reader(io.BytesIO(value[5:]), PARSED, None)
    assert isinstance(datum, dict)
    return datum


# ------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Version:
    """One record of the source topic, as it was written."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    datum: dict[str, Any]

    @property
    def day(self) -> str:
        updated: datetime = self.datum["updated_at"]
        return updated.strftime("%Y-%m-%d")


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    nodes = set(a) | set(b)
    return (all(a.get(n, 0) >= b.get(n, 0) for n in nodes)
            and any(a.get(n, 0) > b.get(n, 0) for n in nodes))


def winner(rule: str, versions: list[Version]) -> Version:
    """The rule's winner, written out from DESIGN.md / the issue (not onepipe.schemas.merge)."""
    if rule == "max":
        return max(versions, key=lambda v: (v.datum["version"], v.value))
    if rule == "first":
        return min(versions, key=lambda v: (v.partition, v.offset))
    undominated = [v for v in versions
                   if not any(dominates(w.datum["clock"], v.datum["clock"]) for w in versions)]
    return max(undominated, key=lambda v: (sum(v.datum["clock"].values()), v.value))


def by_id(source: dict[int, list[ConsumerRecord[bytes, bytes]]]) -> dict[str, list[Version]]:
    out: dict[str, list[Version]] = defaultdict(list)
    for partition, records in source.items():
        for r in records:
            datum = decode(r.value)
            out[datum["id"]].append(Version(partition, r.offset, r.key, r.value, datum))
    return dict(out)


def canonical_of(versions: dict[str, list[Version]]) -> dict[str, tuple[bytes, int]]:
    """Key bytes and partition of each id, as the produce endpoint placed it."""
    out: dict[str, tuple[bytes, int]] = {}
    for ident, vs in versions.items():
        placed = {(v.key, v.partition) for v in vs if v.key not in BAD_KEYS}
        assert len(placed) == 1, (ident, placed)
        (key, partition), = placed
        assert key is not None
        out[ident] = (key, partition)
    return out


# ------------------------------------------------------------------ fixtures


@pytest.fixture
async def lake(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with local_or_s3_lake(request, tmp_path) as store:
        yield store


# ------------------------------------------------------------------ the test


async def make_topic(http: aiohttp.ClientSession, rule: str) -> str:
    topic = unique(f"uvc-{rule.replace('_', '')}")
    body = {"schema": SCHEMA, "partitions": PARTITIONS, "key": ["id"], "order": ORDERS[rule],
            "partition_time": "updated_at",
            "archive": {"flush_records": 50, "flush_seconds": 0.3}}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()
    return topic


async def produce(http: aiohttp.ClientSession, topic: str, records: list[dict[str, Any]]
                  ) -> None:
    for start in range(0, len(records), 100):
        async with http.post(f"/topics/{topic}/records",
                             json={"records": records[start:start + 100]}) as resp:
            assert resp.status == 200, await resp.text()


async def deadline(what: str, awaitable: Any) -> None:
    try:
        await asyncio.wait_for(awaitable, TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"timed out after {TIMEOUT}s waiting for {what}") from None


async def settle(broker: str, topic: str, dedup: DedupAgent, archive: ArchiveAgent,
                 lake: LakeStore) -> int:
    """Wait until dedup consumed and the archive archived every source record."""
    _, watermarks = await read_topic(broker, topic, PARTITIONS)
    total = sum(watermarks.values())
    # Forwarded records are consumed twice (source, then repartition topic).
    await deadline("dedup to consume everything",
                   dedup.wait_until(lambda m: m.consumed >= total + m.repartitioned))
    await deadline("the archive to archive everything", archive.wait_archived(total))
    inventory = await raw_inventory(lake, topic)
    assert inventory.records == total and inventory.gaps == {}
    return total


async def compact(runtime: Runtime, lake: LakeStore, topic: str, tmp_path: Path) -> int | None:
    state = runtime.registry.state
    meta = state.topic_metadata(topic)
    schema = state.version(f"{topic}-value", "latest").schema
    config = CompactionConfig(work_dir=tmp_path / "work", memory_limit="256MB", threads=2,
                              catalog_uri=catalog_for(lake, tmp_path))
    report = await Compactor(lake, meta, schema, config).run()
    assert report.undecodable == 0 and report.incomplete == 0
    return report.seq


def unique_rank(rule: str, record: ConsumerRecord[bytes, bytes]) -> tuple[Any, ...]:
    if rule == "first":
        p, o = source_position(record)
        return (-p, -o)
    datum = decode(record.value)
    if rule == "max":
        return (datum["version"], record.value)
    return (sum(datum["clock"].values()), record.value)


async def check_agreement(rule: str, topic: str, broker: str, lake: LakeStore
                          ) -> dict[str, Version]:
    """Assertions (1)-(4) against the source topic as it is now; the expected winners."""
    source, _ = await read_topic(broker, topic, PARTITIONS)
    versions = by_id(source)
    expected = {ident: winner(rule, vs) for ident, vs in versions.items()}
    canonical = canonical_of(versions)
    at = {(p, r.offset): r for p, rs in source.items() for r in rs}

    # (1) + (4): .unique ends in the winner, strictly increasing per key, canonical placing.
    emitted, _ = await read_topic(broker, unique_topic(topic), PARTITIONS)
    last: dict[str, bytes] = {}
    ranks: dict[str, tuple[Any, ...]] = {}
    clocks: dict[str, list[dict[str, int]]] = defaultdict(list)
    for partition, records in emitted.items():
        for r in records:
            datum = decode(r.value)
            ident = datum["id"]
            assert (r.key, partition) == canonical[ident], f".unique placing of {ident}"
            position = source_position(r)
            assert position in at and at[position].value == r.value, (
                f".unique[{partition}]@{r.offset} ({ident}): onepipe.source {position} "
                "does not hold these value bytes")
            rank = unique_rank(rule, r)
            assert ident not in ranks or rank > ranks[ident], (
                f"regression in .unique[{partition}]@{r.offset} for {ident}: "
                f"{rank} after {ranks[ident]}")
            if rule == "vector_clock":
                assert not any(dominates(c, datum["clock"]) for c in clocks[ident]), (
                    f".unique emitted {ident} {datum['clock']} after a dominating clock")
                clocks[ident].append(datum["clock"])
            ranks[ident] = rank
            last[ident] = r.value
    want = {ident: w.value for ident, w in expected.items()}
    wrong_unique = {i: (decode(last[i]) if i in last else None, expected[i].datum)
                    for i in want if last.get(i) != want[i]}
    assert not wrong_unique, f"{rule}: .unique winner differs (got, want): {wrong_unique}"
    assert set(last) == set(want)

    # (2): the clean lake, all days at once, then day by day for placement.
    table = await read_clean(lake, topic)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len(expected), "one clean row per key"
    clean: dict[str, tuple[str, bytes, int, int]] = {}
    for day in sorted((await clean_state(lake, topic)).days):
        rows = await read_clean(lake, topic, [day])
        if rows.num_rows == 0:
            continue
        for row in rows.select(["id", "_kafka_value", "_kafka_partition",
                                "_kafka_offset"]).to_pylist():
            assert row["id"] not in clean, f"{row['id']} twice in the clean lake ({day})"
            clean[row["id"]] = (day, row["_kafka_value"], row["_kafka_partition"],
                                row["_kafka_offset"])
    wrong_clean = {}
    for ident, w in expected.items():
        # Provenance: the earliest log position holding the winner's bytes (sql_order).
        p, o = min((v.partition, v.offset) for v in versions[ident] if v.value == w.value)
        want_row = (w.day, w.value, p, o)
        if clean.get(ident) != want_row:
            wrong_clean[ident] = (clean.get(ident), want_row)
    assert not wrong_clean, f"{rule}: clean row differs (got, want): {wrong_clean}"
    assert set(clean) == set(expected)

    # (3): the two agree with each other.
    assert {ident: row[1] for ident, row in clean.items()} == last
    return expected


async def send_misrouted(broker: str, topic: str, schema_id: int,
                         canonical: dict[str, tuple[bytes, int]],
                         versions: dict[str, list[Version]]) -> int:
    """Raw-producer versions of the mis-* ids with non-canonical keys; how many misrouted."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    forwarded = 0
    await producer.start()
    try:
        for i in range(6):
            ident = f"mis-{i}"
            _, home = canonical[ident]
            lower = 0 if home != 0 else 1  # for `first`: a lower partition wins if home > 0
            # Two versions of equal rank but for their bytes (version 10; concurrent
            # clocks of total 9): the misrouted one wins for even ids (its clock encodes
            # higher), the one in the right partition for odd ids.
            forwarded_clock, local_clock = ({"b": 9}, {"a": 9}) if i % 2 == 0 else (
                {"a": 9}, {"b": 9})
            sends: list[tuple[int, bytes | None, bytes]] = [
                # A new version on another day, in the wrong partition, without a key.
                (lower, None,
                 encode(schema_id, rec(ident, 10, forwarded_clock, 1, f"raw-a-{i}"))),
                # An exact copy of the endpoint's record, wrong partition, wrong key.
                ((home + 2) % PARTITIONS, b"wrong", versions[ident][0].value),
                # The other version, in the right partition with a wrong key.
                (home, b"wrong",
                 encode(schema_id, rec(ident, 10, local_clock, 2, f"raw-c-{i}"))),
            ]
            for partition, key, value in sends:
                await producer.send_and_wait(topic, value, key=key, partition=partition)
                forwarded += partition != home
    finally:
        await producer.stop()
    return forwarded


@pytest.mark.parametrize(("rule", "lake"), [("max", "s3"), ("first", "local"),
                                            ("vector_clock", "local")], indirect=["lake"])
async def test_unique_and_clean_hold_the_same_winners(
    rule: str, lake: LakeStore, runtime: Runtime, http: aiohttp.ClientSession,
    broker: str, tmp_path: Path,
) -> None:
    topic = await make_topic(http, rule)
    schema_id = runtime.registry.state.version(f"{topic}-value", "latest").schema_id
    rng = random.Random(rule)
    noise = bulk(rng, 20, 4)
    half = len(noise) // 2
    dedup = make_agent(runtime.registry, tmp_path / "dedup", unique("uvc-dedup"), [topic])
    archive = ArchiveAgent(kafka=runtime.settings.kafka, group_id=unique("uvc-archive"),
                           registry=runtime.registry, lake=lake, topics=[topic])
    async with dedup, archive:
        # Phase 1: the endpoint only; both agents consume, then a first compaction.
        await produce(http, topic, crafted_phase1() + noise[:half])
        await settle(broker, topic, dedup, archive, lake)
        assert await compact(runtime, lake, topic, tmp_path) == 1
        before = await check_agreement(rule, topic, broker, lake)

        # Phase 2: later (and lower) versions through the endpoint, re-sent duplicates,
        # and misrouted versions with non-canonical keys through a raw producer.
        source, _ = await read_topic(broker, topic, PARTITIONS)
        versions = by_id(source)
        await produce(http, topic, crafted_phase2() + noise[half:] + noise[:5])
        misrouted = await send_misrouted(broker, topic, schema_id, canonical_of(versions),
                                         versions)
        await settle(broker, topic, dedup, archive, lake)
        metrics = dedup.metrics
        assert await compact(runtime, lake, topic, tmp_path) == 2
        after = await check_agreement(rule, topic, broker, lake)
    assert metrics.repartitioned == misrouted > 0
    assert metrics.undecodable == 0
    # The data did what it is meant to: some winners moved to another day.
    moved = [i for i in before if before[i].day != after[i].day]
    assert moved, f"{rule}: no winner changed day between the phases"
    # Some winners came through the repartition path (sent keyless to a wrong partition).
    assert any(after[f"mis-{i}"].key is None for i in range(6)), "no misrouted winner"
