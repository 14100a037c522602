"""A sink survives its worker's SIGKILL and its database connections being killed.

A real ``onepipe worker`` (dedup and a PostgreSQL sink on) receives versions through its
own HTTP API; the test kills it with SIGKILL while the sink writes, starts a new worker on
the same data dir, and checks the table against the winners computed independently from
the source topic: nothing lost, nothing older. A second test terminates the sink's
PostgreSQL connections (``pg_terminate_backend``) while records flow.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from onepipe.schemas.topic_names import dedup_group, unique_topic
from tests.fixtures.databases import PG_DSN
from tests.fixtures.dedup import body, expected_outcome
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import committed_offsets, read_topic
from tests.fixtures.worker_process import GROUP_TIMEOUTS, WorkerProcess, kill_while_producing

PARTITIONS = 2
SCHEMA = {"type": "record", "name": "Item", "namespace": "test.dedup", "fields": [
    {"name": "id", "type": "string"}, {"name": "version", "type": "long"},
    {"name": "payload", "type": "string"}]}
ENV = "ONEPIPE_TEST_CRASH_PG_DSN"


@pytest.fixture
def crash_env(broker: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str, str]]:
    topic = unique("skcrash")
    table = unique("skcrash").replace("-", "_")
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "crash.avsc").write_text(json.dumps(SCHEMA))
    (catalog / "crash.yaml").write_text(
        f"topic: {topic}\nschema: crash.avsc\npartitions: {PARTITIONS}\nkey: [id]\n"
        "order: {rule: max, field: version}\n"
        f"sinks: [{{name: pg, kind: postgres, dsn_env: {ENV}, table: {table}}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_REGISTRY_TOPIC=unique("_registry"),
               ONEPIPE_IDEMPOTENT_PRODUCER="false", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               **GROUP_TIMEOUTS,
               ONEPIPE_APP_ID=unique("skcrashapp"), ONEPIPE_CATALOG_DIR=str(catalog),
               ONEPIPE_ARCHIVE_ENABLED="false", ONEPIPE_CHECKSUMS_ENABLED="false",
               ONEPIPE_COMPACT_WORKERS_ENABLED="false", **{ENV: PG_DSN})
    yield env, topic, table


async def table_rows(table: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f'SELECT id, version, payload FROM "{table}"')
    finally:
        await conn.close()
    return {r["id"]: dict(r) for r in rows}


async def expected_rows(broker: str, topic: str) -> dict[str, dict[str, Any]]:
    source, _ = await read_topic(broker, topic, PARTITIONS)
    return {ident: body(value, "max")
            for ident, value in expected_outcome("max", source).winners.items()}


def producer(topic: str, seed: int) -> Any:
    rng = random.Random(seed)

    async def produce(url: str, count: int) -> None:
        records = [{"id": f"k{rng.randint(0, 59)}", "version": rng.randint(0, 40),
                    "payload": "x" * rng.randint(1, 3)} for _ in range(count)]
        async with aiohttp.ClientSession(url) as http, http.post(
                f"/topics/{topic}/records", json={"records": records}) as resp:
            assert resp.status == 200, await resp.text()

    return produce


async def all_deduplicated(broker: str, env: dict[str, str], topic: str) -> dict[int, int]:
    """Wait until the dedup agent consumed every source record; then ``.unique``'s ends."""
    source_marks = (await read_topic(broker, topic, PARTITIONS))[1]
    group = dedup_group(env["ONEPIPE_APP_ID"])

    async def done() -> bool:
        return await committed_offsets(broker, group, topic, PARTITIONS) == source_marks

    await wait_for(done, timeout=90, what="every source record deduplicated")
    return (await read_topic(broker, unique_topic(topic), PARTITIONS))[1]


async def sink_state(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(url) as http, http.get("/sinks") as resp:
        (found,) = (await resp.json())["sinks"]
        return dict(found)


async def test_sigkill_while_the_sink_writes_loses_and_repeats_nothing(
        crash_env: tuple[dict[str, str], str, str], broker: str, tmp_path: Path) -> None:
    env, topic, table = crash_env
    produce = producer(topic, seed=5)

    async def rows_flow() -> bool:
        try:
            return len(await table_rows(table)) > 5
        except asyncpg.UndefinedTableError:
            return False

    await kill_while_producing(env, tmp_path / "worker-1.log", lambda url: produce(url, 40),
                               rows_flow, what="first rows in PostgreSQL")
    second = WorkerProcess(env, tmp_path / "worker-2.log")
    try:
        await wait_for(second.healthy, timeout=60, what="restarted worker")
        for _ in range(3):
            await produce(second.url, 40)
        marks = await all_deduplicated(broker, env, topic)
        expected = await expected_rows(broker, topic)

        async def caught_up() -> bool:
            state = await sink_state(second.url)
            return all(state["positions"].get(str(p), 0) >= m for p, m in marks.items())

        await wait_for(caught_up, timeout=120, what="the sink to reach .unique's end")
    finally:
        second.stop()
    assert await table_rows(table) == expected


def client_ports(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets: the client ports its database
    connections show in ``pg_stat_activity`` (Linux: ``/proc``; one network namespace)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:  # local_address is "<hex address>:<hex port>"
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_killed_database_connections_are_retried_without_loss(
        crash_env: tuple[dict[str, str], str, str], broker: str, tmp_path: Path) -> None:
    env, topic, table = crash_env
    produce = producer(topic, seed=9)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await wait_for(worker.healthy, timeout=60, what="worker")
        await produce(worker.url, 30)

        async def wrote() -> bool:
            # /health answers before the sink has started (and opened its pool): kill
            # only once it has written, so its connection is there (a CI run's six
            # rounds all ran before the sink started, and killed nothing).
            try:
                state = await sink_state(worker.url)
            except (ValueError, aiohttp.ClientError):  # not listed yet
                return False
            return any(int(n) > 0 for n in state.get("positions", {}).values())

        await wait_for(wrote, timeout=60, what="the sink's first write")
        killed = 0
        for _ in range(6):
            await produce(worker.url, 30)
            admin = await asyncpg.connect(PG_DSN)
            try:
                # This worker's connections only: another test process's sinks share
                # the database and the application name.
                killed += len(await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "datname = 'test' AND pid <> pg_backend_pid() AND "
                    "application_name = 'onepipe-sink' AND client_port = ANY($1::int[])",
                    sorted(client_ports(worker.proc.pid))))
            finally:
                await admin.close()
        marks = await all_deduplicated(broker, env, topic)
        expected = await expected_rows(broker, topic)

        async def caught_up() -> bool:
            state = await sink_state(worker.url)
            return all(state["positions"].get(str(p), 0) >= m for p, m in marks.items())

        await wait_for(caught_up, timeout=120, what="the sink to reach .unique's end")
    finally:
        worker.stop()
    # A killed idle connection is replaced by the pool unnoticed; one killed inside a
    # batch fails it and the sink retries from its committed positions. Either way:
    assert killed > 0, "no sink connection was there to kill"
    assert await table_rows(table) == expected
