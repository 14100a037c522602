"""The warehouse load (onepipe.sinks.warehouse) into the machine's real PostgreSQL.

Judged: a full load, then ``incremental`` re-loads of the changed days only; the days'
replacement (a partition swap) is atomic - a COPY the database refuses (a CHECK
constraint) and a load process killed between copying a day and swapping it in both
leave the previous rows of that day and no stray partition (a reader meanwhile sees the
old day); the loaded table's figures agree with the
clean lake's in ``verify`` (and a row changed by hand in the warehouse is named).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from onepipe.agents.verify.clean import CleanLakeSource
from onepipe.agents.verify.compare import verify_registered, verify_topic
from onepipe.agents.verify.warehouse import WarehouseSource
from onepipe.app.warehouse_cli import warehouse_sources
from onepipe.schemas.errors import ConfigError, WarehouseError
from onepipe.schemas.metadata import metadata_to_dict
from onepipe.schemas.registry_state import Decision, RegistryState
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.iceberg import open_catalog, read_state, replace_days
from onepipe.sinks.warehouse import LOADS_TABLE, load_topic, plan_days, warehouse_table
from onepipe.sinks.warehouse.load import DayPlan
from onepipe.sinks.warehouse.sql import partition_prefix
from tests.fixtures.clean_lake import CleanTopic, build_clean, snapshot_ids
from tests.fixtures.databases import PG_DSN
from tests.fixtures.services import unique, wait_for
from tests.fixtures.verify import publish_day, with_note

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))


def test_table_names_and_plans() -> None:
    assert warehouse_table("orders.v2-eu") == "orders_v2_eu"
    assert warehouse_table("2024.orders") == "t_2024_orders"
    with pytest.raises(ConfigError, match="--table"):
        warehouse_table("x" * 70)
    versions, rows = {"d1": 1, "d2": 2, "d3": 3}, {"d1": 10, "d2": 20, "d3": 30}
    loaded = {"d1": 1, "d2": 1, "d0": 1}
    plans, same = plan_days(versions, rows, loaded, incremental=True)
    assert plans == [DayPlan("d0", None, 0), DayPlan("d2", 2, 20), DayPlan("d3", 3, 30)]
    assert same == ["d1"]
    plans, same = plan_days(versions, rows, loaded, first="d1", last="d2")
    assert [p.day for p in plans] == ["d1", "d2"] and same == []


@pytest.fixture
async def lake(tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with open_lake((tmp_path / "lake").as_uri()) as store:
        yield store


@pytest.fixture
async def pg() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(PG_DSN)
    yield conn
    await conn.close()


async def day_rows(pg: asyncpg.Connection, table: str, day: str) -> list[tuple[Any, ...]]:
    rows = await pg.fetch(f'SELECT id, note, qty FROM "{table}" WHERE _kafka_clean_day = $1 '
                          "ORDER BY id", dt.date.fromisoformat(day))
    return [tuple(r) for r in rows]


async def loads(pg: asyncpg.Connection, topic: str, table: str) -> dict[str, int]:
    rows = await pg.fetch(f"SELECT day, snapshot_id FROM {LOADS_TABLE} WHERE topic = $1 AND "
                          "table_name = $2", topic, table)
    return {r[0].isoformat(): r[1] for r in rows}


def drop_day(lake: LakeStore, uri: str, topic: str, day: str) -> None:
    """Commit a snapshot in which ``day`` holds no file."""
    catalog = open_catalog(uri, lake)
    try:
        state = read_state(catalog, topic)
        replace_days(catalog, state, {day: []}, state.watermark, uuid.uuid4().hex)
    finally:
        catalog.close()


async def partitions(pg: asyncpg.Connection, table: str, day: str) -> int:
    """Tables named as ``day``'s partitions (attached or not)."""
    count: int = await pg.fetchval("SELECT count(*) FROM pg_class WHERE starts_with(relname, "
                                   "$1) AND relkind = 'r'", partition_prefix(table, day))
    return count


async def verify(lake: LakeStore, clean: CleanTopic, table: str) -> Any:
    sources = [CleanLakeSource(clean.view, lake, catalog_uri=clean.catalog_uri),
               WarehouseSource(clean.view, PG_DSN, table)]
    return await verify_topic(clean.view, sources)


async def test_full_then_incremental_loads_agree_with_the_lake(
        lake: LakeStore, pg: asyncpg.Connection, tmp_path: Path) -> None:
    topic = f"{unique('wh')}.v2-eu"
    clean = await build_clean(lake, tmp_path, topic)
    table = warehouse_table(topic)
    progress: list[tuple[int, int]] = []

    full = await load_topic(lake, clean.catalog_uri, topic, PG_DSN,
                            on_progress=lambda done, total: progress.append((done, total)))
    days = [p.day for p in full.loaded]
    assert len(days) == 3 and full.rows == 120 and full.table == table
    assert progress[0] == (0, 120) and progress[-1] == (120, 120)
    report = await verify(lake, clean, table)
    assert report.ok and report.systems == ("clean", "warehouse"), report.to_json()
    (first, _), = await snapshot_ids(lake, clean.catalog_uri, topic)
    assert await loads(pg, topic, table) == dict.fromkeys(days, first)

    # Nothing changed: an incremental load copies nothing.
    again = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, incremental=True)
    assert again.loaded == () and again.unchanged == tuple(days) and again.rows == 0

    # One day rewritten by a new snapshot: only that day is copied again.
    key = (await day_rows(pg, table, days[1]))[3][0]
    await publish_day(lake, topic, days[1], with_note(key, "changed"))
    changed = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, incremental=True)
    assert [p.day for p in changed.loaded] == [days[1]]
    assert changed.unchanged == (days[0], days[2])
    assert ("changed" in {r[1] for r in await day_rows(pg, table, days[1])})
    second = (await snapshot_ids(lake, clean.catalog_uri, topic))[-1][0]
    assert await loads(pg, topic, table) == {days[0]: first, days[1]: second, days[2]: first}
    assert (await verify(lake, clean, table)).ok

    # A row changed by hand in the warehouse: verify names its key, a full load of its
    # day (a range) puts it back.
    other = (await day_rows(pg, table, days[2]))[0][0]
    await pg.execute(f'UPDATE "{table}" SET qty = qty + 1 WHERE id = $1', other)
    report = await verify(lake, clean, table)
    bad = [d for d in report.days if not d.ok]
    assert [d.day for d in bad] == [days[2]]
    assert [k.key for k in bad[0].differing_keys] == [{"id": other}]
    fixed = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, first=days[2],
                             last=days[2])
    assert [p.day for p in fixed.loaded] == [days[2]]
    assert (await verify(lake, clean, table)).ok

    # `onepipe verify TOPIC --warehouse DSN`: the CLI's sources for a registered topic.
    state = RegistryState()
    decision = state.decide_register(f"{topic}-value", clean.writer.schema)
    assert isinstance(decision, Decision)
    state.apply(0, decision.value)
    state.apply(1, {"type": "metadata", "topic": topic,
                    "metadata": metadata_to_dict(clean.meta)})
    report = await verify_registered(
        topic, state, lake=lake, kafka=None, catalog_uri=clean.catalog_uri,
        extra=warehouse_sources(state, topic, PG_DSN, None))
    assert report.systems == ("clean", "warehouse") and report.ok, report.to_json()
    assert report.raw_checked and len(report.days) == 3

    # A day the lake no longer holds (a snapshot removed its files) is emptied.
    await asyncio.to_thread(drop_day, lake, clean.catalog_uri, topic, days[2])
    emptied = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, incremental=True)
    assert emptied.loaded == (DayPlan(days[2], None, 0),) and emptied.rows == 0
    assert await day_rows(pg, table, days[2]) == [] and await partitions(pg, table, days[2]) == 0
    assert sorted(await loads(pg, topic, table)) == days[:2]
    assert (await verify(lake, clean, table)).ok


async def test_a_refused_copy_leaves_the_day_as_it_was(
        lake: LakeStore, pg: asyncpg.Connection, tmp_path: Path) -> None:
    topic = unique("wh-bad")
    clean = await build_clean(lake, tmp_path, topic, keys=60)
    table = warehouse_table(topic)
    full = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, table=f"{table}_x")
    table = full.table
    days = [p.day for p in full.loaded]
    before = {d: await day_rows(pg, table, d) for d in days}
    recorded = await loads(pg, topic, table)
    await pg.execute(f"ALTER TABLE \"{table}\" ADD CONSTRAINT no_poison CHECK (note <> 'poison')")

    await publish_day(lake, topic, days[0], with_note(before[days[0]][0][0], "fine"))
    await publish_day(lake, topic, days[1], with_note(before[days[1]][0][0], "poison"))
    with pytest.raises(WarehouseError, match=rf"day {days[1]} .*no_poison.*keeps its previous "
                       rf"rows. Days committed before it: {days[0]}"):
        await load_topic(lake, clean.catalog_uri, topic, PG_DSN, table=table, incremental=True)
    assert await day_rows(pg, table, days[1]) == before[days[1]]  # whole, old
    assert await partitions(pg, table, days[1]) == 1
    assert (await day_rows(pg, table, days[0]))[0][1] == "fine"  # committed before: new
    now = await loads(pg, topic, table)
    assert now[days[1]] == recorded[days[1]] and now[days[0]] != recorded[days[0]]


async def test_a_load_killed_before_commit_leaves_the_day_as_it_was(
        lake: LakeStore, pg: asyncpg.Connection, tmp_path: Path) -> None:
    topic = unique("wh-kill")
    clean = await build_clean(lake, tmp_path, topic, keys=60)
    table = warehouse_table(topic)
    days = [p.day for p in (await load_topic(lake, clean.catalog_uri, topic, PG_DSN)).loaded]
    before = await day_rows(pg, table, days[0])
    await publish_day(lake, topic, days[0], with_note(before[0][0], "new"))

    # Hold the day's bookkeeping row: the load deletes and COPYs the day, then waits
    # for it - between copying and committing - where it is killed.
    locker = await asyncpg.connect(PG_DSN)
    hold = locker.transaction()
    await hold.start()
    await locker.execute(f"SELECT 1 FROM {LOADS_TABLE} WHERE topic = $1 AND table_name = $2 "
                         "AND day = $3 FOR UPDATE", topic, table, dt.date.fromisoformat(days[0]))
    env = {**os.environ, "ONEPIPE_DATA_DIR": str(tmp_path / "data"),
           "ONEPIPE_LAKE_URL": lake.url,
           "ONEPIPE_ICEBERG_CATALOG_URI": f"sqlite:///{tmp_path / 'lake' / 'iceberg.db'}"}
    child = await asyncio.create_subprocess_exec(
        ONEPIPE, "warehouse", "load", topic, "--dsn", PG_DSN, "--incremental", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    blocked: list[int] = []

    async def waiting() -> bool:
        blocked[:] = [r[0] for r in await pg.fetch(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            locker.get_server_pid())]
        return bool(blocked)

    try:
        await wait_for(waiting, timeout=60, what="the load waiting to record the day")
        assert await day_rows(pg, table, days[0]) == before  # a reader sees the old day
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await hold.rollback()
        await locker.close()

    async def gone() -> bool:
        return not await pg.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                                     blocked[0])

    await wait_for(gone, timeout=30, what="the killed load's session to end")
    assert await day_rows(pg, table, days[0]) == before
    # The partition it was building went with its transaction: one table per day.
    assert await partitions(pg, table, days[0]) == 1
    (first, _), *_ = await snapshot_ids(lake, clean.catalog_uri, topic)
    assert (await loads(pg, topic, table))[days[0]] == first

    resumed = await load_topic(lake, clean.catalog_uri, topic, PG_DSN, incremental=True)
    assert [p.day for p in resumed.loaded] == [days[0]]
    assert (await verify(lake, clean, table)).ok
