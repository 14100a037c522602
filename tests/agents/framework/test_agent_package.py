"""A developer's agent package, outside onepipe, in real workers: SIGKILL and handover.

The package (tests/fixtures/agent_packages/acme_rollups) is loaded only by
``ONEPIPE_AGENTS`` with its folder on ``PYTHONPATH``: a stateful batch agent keeping
per-kind totals and one-minute windows by partition time, sending each closed window to
a derived topic. Records are produced through the workers' HTTP endpoint; some are late
on purpose. Each test ends with the proof: the agent's state, recovered from its
changelog into a new store (what a new owner would hold) and as the worker left it on
disk, equals an independent computation over what was acknowledged (in each partition's
offset order), and the derived topic after dedup holds exactly the closed windows.
"""

from __future__ import annotations

import io
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import fastavro
from aiokafka import AIOKafkaConsumer, TopicPartition

from onepipe.schemas.codec import unframe
from onepipe.schemas.topic_names import agent_group, changelog_topic, unique_topic
from onepipe.tables.state import (
    CURRENT,
    PartitionState,
    StateStore,
    Table,
    WindowTable,
    activate,
    recover,
    tumbling,
)
from onepipe.tables.state.windows import to_ms
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.worker_process import GROUP_TIMEOUTS, WorkerProcess

PACKAGES = Path(__file__).resolve().parents[2] / "fixtures" / "agent_packages"
AGENT = "acme-rollups"
PARTITIONS = 4
KINDS = 5
RECORDS = 6_000
T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=100)
WINDOW = timedelta(minutes=1)
GRACE = timedelta(seconds=20)
#: Every LATE-th record is stamped this much earlier than its neighbours: behind its
#: partition's stream time by more than the grace, so its window has closed.
LATE = 331
LATE_BY = timedelta(minutes=3)

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Event", "namespace": "test.acme", "fields": [
        {"name": "id", "type": "string"},
        {"name": "kind", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "note", "type": "string", "default": ""},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]}
ROLLUP_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Rollup", "namespace": "test.acme", "fields": [
        {"name": "partition", "type": "int"},
        {"name": "kind", "type": "string"},
        {"name": "minute", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "records", "type": "long"},
        {"name": "amount", "type": "long"},
    ]}

# The package's tables as a reader sees them (names and window spec are what matter).
TOTALS = Table("totals")
MINUTES = WindowTable("minutes", window=tumbling(WINDOW), grace=GRACE)


def event(n: int) -> dict[str, Any]:
    at = T0 + n * STEP - (LATE_BY if n % LATE == LATE - 1 else timedelta(0))
    return {"id": f"e{n:06d}", "kind": f"k{n % KINDS}", "amount": n % 97,
            "at": int(at.timestamp() * 1000)}


class Setup:
    """Topics, catalog and the environment of every worker of one test."""

    def __init__(self, broker: str, tmp: Path) -> None:
        self.broker = broker
        self.tmp = tmp
        self.source = unique("acme-events")
        self.rollup = unique("acme-rollups")
        catalog = tmp / "catalog"
        catalog.mkdir()
        (catalog / "events.avsc").write_text(json.dumps(SOURCE_SCHEMA))
        (catalog / "events.yaml").write_text(
            f"topic: {self.source}\nschema: events.avsc\npartitions: {PARTITIONS}\n"
            "key: [id]\norder: {rule: first}\npartition_time: at\n")
        (catalog / "rollups.avsc").write_text(json.dumps(ROLLUP_SCHEMA))
        (catalog / "rollups.yaml").write_text(
            f"topic: {self.rollup}\nschema: rollups.avsc\npartitions: 2\n"
            "key: [partition, kind, minute]\norder: {rule: max, field: records}\n"
            "partition_time: minute\n")
        self.app_id = unique("acmeapp")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
        self.env.update(
            ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
            ONEPIPE_IDEMPOTENT_PRODUCER="false", **GROUP_TIMEOUTS,
            ONEPIPE_REGISTRY_FETCH_WAIT_MS="10",
            ONEPIPE_MONITOR_INTERVAL_SECONDS="0", ONEPIPE_APP_ID=self.app_id,
            ONEPIPE_CATALOG_DIR=str(catalog), ONEPIPE_ARCHIVE_ENABLED="false",
            ONEPIPE_CHECKSUMS_ENABLED="false", ONEPIPE_COMPACT_WORKERS_ENABLED="false",
            ONEPIPE_AGENTS="acme_rollups", ACME_SOURCE_TOPIC=self.source,
            ACME_ROLLUP_TOPIC=self.rollup,
            PYTHONPATH=os.pathsep.join([str(PACKAGES), os.environ.get("PYTHONPATH", "")]))
        self.starts: dict[str, int] = defaultdict(int)
        #: What the endpoint acknowledged: (partition, offset) -> record.
        self.acked: dict[tuple[int, int], dict[str, Any]] = {}

    def worker(self, name: str, **env: str) -> WorkerProcess:
        self.starts[name] += 1
        return WorkerProcess({**self.env, "ONEPIPE_DATA_DIR": str(self.tmp / name), **env},
                             self.tmp / f"{name}-{self.starts[name]}.log")

    def store_path(self, worker: str, partition: int) -> Path:
        return self.tmp / worker / "state" / AGENT / f"{self.source}-{partition}"

    async def produce(self, url: str, numbers: range) -> None:
        """POST the records in chunks; remember where each was acknowledged."""
        async with aiohttp.ClientSession() as session:
            for start in range(numbers.start, numbers.stop, 500):
                chunk = [event(n) for n in range(start, min(start + 500, numbers.stop))]
                async with session.post(f"{url}/topics/{self.source}/records",
                                        json={"records": chunk}) as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                for record, place in zip(chunk, body["offsets"], strict=True):
                    self.acked[(place["partition"], place["offset"])] = record

    async def committed(self) -> int:
        """Records of the source the agent's group has committed (its position)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker,
                                    group_id=agent_group(self.app_id, AGENT),
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            offsets = [await consumer.committed(TopicPartition(self.source, p))
                       for p in range(PARTITIONS)]
        finally:
            await consumer.stop()
        return sum(o or 0 for o in offsets)


# ----------------------------------------------------------------- the independent truth


def expected(acked: dict[tuple[int, int], dict[str, Any]]
             ) -> tuple[dict[str, list[int]], dict[tuple[int, str, int], list[int]],
                        dict[tuple[int, str, int], list[int]], int]:
    """(totals per kind, open windows, closed windows, late records) from the records in
    each partition's offset order, by the documented rules: stream time is the highest
    partition time seen in the partition; a record whose window's end + grace is not after
    the stream time is late; a window closes once stream time reaches its end + grace."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    windows: dict[tuple[int, str, int], list[int]] = defaultdict(lambda: [0, 0])
    stream_time: dict[int, int] = {}
    late = 0
    size, grace = to_ms_span(WINDOW), to_ms_span(GRACE)
    for (partition, _), record in sorted(acked.items()):
        at = record["at"]
        now = stream_time[partition] = max(stream_time.get(partition, at), at)
        totals[record["kind"]][0] += 1
        totals[record["kind"]][1] += record["amount"]
        start = at - at % size
        if start + size + grace <= now:
            late += 1
            continue
        window = windows[(partition, record["kind"], start)]
        window[0] += 1
        window[1] += record["amount"]
    closed = {k: v for k, v in windows.items() if k[2] + size + grace <= stream_time[k[0]]}
    still = {k: v for k, v in windows.items() if k not in closed}
    return dict(totals), still, closed, late


def to_ms_span(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)


# ----------------------------------------------------------------- what the systems hold


def read_store(store: StateStore) -> tuple[dict[str, list[int]],
                                           dict[tuple[int, str, int], list[int]]]:
    """Totals (summed over partitions) and windows of one partition's store."""
    state = PartitionState(store, [TOTALS, MINUTES], agent=AGENT)
    token = activate(state)
    try:
        totals = dict(TOTALS.items())
        windows = {(key[0], key[1], to_ms(window.start)): value
                   for (key, window), value in MINUTES.items()}
    finally:
        CURRENT.reset(token)
    return totals, windows


def merge(parts: Iterator[tuple[dict[str, list[int]], dict[tuple[int, str, int], list[int]]]]
          ) -> tuple[dict[str, list[int]], dict[tuple[int, str, int], list[int]]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    windows: dict[tuple[int, str, int], list[int]] = {}
    for part_totals, part_windows in parts:
        for kind, (records, amount) in part_totals.items():
            totals[kind][0] += records
            totals[kind][1] += amount
        windows.update(part_windows)
    return dict(totals), windows


async def recovered_state(setup: Setup) -> tuple[dict[str, list[int]],
                                                 dict[tuple[int, str, int], list[int]]]:
    """The state a new owner recovers from the changelog, into empty stores."""
    reader = kafka_for(setup.broker).reader("test-recovery", auto_offset_reset="none")
    await reader.start()
    parts = []
    try:
        for p in range(PARTITIONS):
            store = StateStore(setup.tmp / "recovered" / str(p))
            try:
                position = await recover(
                    reader, TopicPartition(changelog_topic(setup.app_id, AGENT), p), store)
                assert position.next_offset == sum(1 for q, _ in setup.acked if q == p), (
                    f"partition {p}: the changelog's last position is {position}")
                parts.append(read_store(store))
            finally:
                store.close()
    finally:
        await reader.stop()
    return merge(iter(parts))


def disk_state(setup: Setup, worker: str, partitions: range) -> tuple[
        dict[str, list[int]], dict[tuple[int, str, int], list[int]]]:
    parts = []
    for p in partitions:
        store = StateStore(setup.store_path(worker, p))
        try:
            parts.append(read_store(store))
        finally:
            store.close()
    return merge(iter(parts))


async def rollups(setup: Setup) -> dict[tuple[int, str, int], list[int]]:
    """The derived topic's records after dedup, by key; a key twice would fail."""
    found: dict[tuple[int, str, int], list[int]] = {}
    for key, figures in await read_rollups(setup.broker, unique_topic(setup.rollup)):
        assert key not in found, f"{key} is twice in {unique_topic(setup.rollup)}"
        found[key] = figures
    return found


async def raw_rollups(setup: Setup) -> dict[tuple[int, str, int], list[list[int]]]:
    """Every record of the derived topic, by key (repeats allowed: at-least-once)."""
    found: dict[tuple[int, str, int], list[list[int]]] = defaultdict(list)
    for key, figures in await read_rollups(setup.broker, setup.rollup):
        found[key].append(figures)
    return found


async def read_rollups(broker: str, topic: str
                       ) -> list[tuple[tuple[int, str, int], list[int]]]:
    """Every rollup record of ``topic``: its key and its ``[records, amount]``."""
    records, _ = await read_topic(broker, topic, 2)
    parsed = fastavro.parse_schema(ROLLUP_SCHEMA)
    found = []
    for record in (r for part in records.values() for r in part):
        _, body = unframe(record.value)
        value: Any = fastavro.schemaless_reader(io.BytesIO(body), parsed, None)
        found.append(((value["partition"], value["kind"], to_ms(value["minute"])),
                      [value["records"], value["amount"]]))
    return found


async def caught_up(setup: Setup) -> bool:
    return await setup.committed() == len(setup.acked)


# ----------------------------------------------------------------- the tests


async def test_a_windowed_agent_killed_mid_stream_neither_loses_nor_double_counts(
        broker: str, tmp_path: Path) -> None:
    setup = Setup(broker, tmp_path)
    worker = setup.worker("w1")
    try:
        await wait_for(worker.healthy, timeout=90, what="the worker")
        await setup.produce(worker.url, range(RECORDS))
        # SIGKILL while the agent is part-way through (it commits every 100 records).
        await wait_for(lambda: _at_least(setup, RECORDS // 5), timeout=120, interval=0.05,
                       what="the agent to get a fifth of the way")
        worker.kill()
        at_kill = await setup.committed()
        assert at_kill < RECORDS, "the agent had finished before the kill: nothing to prove"
        worker = setup.worker("w1")
        await wait_for(worker.healthy, timeout=90, what="the restarted worker")
        await setup.produce(worker.url, range(RECORDS, RECORDS + 1_000))
        await wait_for(lambda: caught_up(setup), timeout=180, interval=0.5,
                       what="the agent to commit every record")
        totals, still, closed, late = expected(setup.acked)
        assert late > 0 and closed and still  # the data exercises every rule

        async def derived_complete() -> bool:
            return set(await rollups(setup)) >= set(closed)

        await wait_for(derived_complete, timeout=120, interval=0.5,
                       what="every closed window in the derived topic after dedup")
        assert await rollups(setup) == closed
        repeats = sum(len(v) - 1 for v in (await raw_rollups(setup)).values())
        print(f"\n[agent sigkill] killed at {at_kill}/{RECORDS} committed; {late} late; "
              f"{len(closed)} windows closed, {len(still)} open; {repeats} rollup(s) sent "
              "again after the kill (removed by dedup)")
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, "the worker did not stop cleanly"
    assert await recovered_state(setup) == (totals, still)
    assert disk_state(setup, "w1", range(PARTITIONS)) == (totals, still)


async def test_stopping_one_of_two_workers_moves_partitions_and_state_to_the_other(
        broker: str, tmp_path: Path) -> None:
    setup = Setup(broker, tmp_path)
    # Dedup off: fewer groups to join on tansu; the derived topic is checked per key here.
    w1 = setup.worker("w1", ONEPIPE_DEDUP_ENABLED="false")
    w2 = setup.worker("w2", ONEPIPE_DEDUP_ENABLED="false")
    try:
        await wait_for(w1.healthy, timeout=90, what="worker 1")
        await wait_for(w2.healthy, timeout=90, what="worker 2")
        await setup.produce(w1.url, range(RECORDS // 2))

        def both_hold_state() -> bool:
            return all(any(setup.store_path(w, p).exists() for p in range(PARTITIONS))
                       for w in ("w1", "w2"))

        await wait_for(both_hold_state, timeout=120, interval=0.2,
                       what="both workers to own partitions of the agent")
        await wait_for(lambda: _at_least(setup, RECORDS // 4), timeout=120, interval=0.05,
                       what="the agent to get part of the way")
        w1.stop()  # SIGTERM: its partitions and their state move to w2
        assert w1.proc.returncode == 0
        await setup.produce(w2.url, range(RECORDS // 2, RECORDS))
        await wait_for(lambda: caught_up(setup), timeout=180, interval=0.5,
                       what="the agent to commit every record")
        totals, still, closed, _ = expected(setup.acked)

        async def derived_complete() -> bool:
            return set(await raw_rollups(setup)) >= set(closed)

        await wait_for(derived_complete, timeout=120, interval=0.5,
                       what="every closed window in the derived topic")
        sent = await raw_rollups(setup)
        assert set(sent) == set(closed)
        assert all(v == [closed[k]] * len(v) for k, v in sent.items()), (
            "a window was sent with different figures")
    finally:
        w1.stop()
        w2.stop()
    assert await recovered_state(setup) == (totals, still)
    # Worker 2 now holds every partition's state on disk.
    assert disk_state(setup, "w2", range(PARTITIONS)) == (totals, still)


async def _at_least(setup: Setup, records: int) -> bool:
    return await setup.committed() >= records


def test_the_independent_computation_follows_the_late_rule() -> None:
    # Partition 0: 08:00:10 then 08:03:00 (stream time) then 08:01:30 - its window
    # [08:01, 08:02) ended at 08:02:00, + 20 s grace = 08:02:20 <= 08:03:00: late.
    at = [T0 + timedelta(seconds=10), T0 + timedelta(minutes=3),
          T0 + timedelta(minutes=1, seconds=30)]
    acked = {(0, i): {"kind": "k", "amount": 1, "at": to_ms(t)} for i, t in enumerate(at)}
    totals, still, closed, late = expected(acked)
    assert late == 1 and totals == {"k": [3, 3]}
    assert closed == {(0, "k", to_ms(T0)): [1, 1]}
    assert still == {(0, "k", to_ms(T0 + timedelta(minutes=3))): [1, 1]}
