"""Pooled compaction: day tasks over a real tansu broker, executed by DayTaskWorkers.

Two workers ("w1", "w2") share one consumer group for the module; every test compares
the pooled clean lake with a plain local compaction of the same raw lake, row by row
(tests.fixtures.compact helpers), and reads who ran each task from the dispatcher's
outcomes. Time-dependent parts (the scheduler's slots) use an injected clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from onepipe.agents.compact import CompactionConfig, Compactor
from onepipe.agents.compact.day import DayExecutor
from onepipe.agents.compact.messages import (
    DayResult,
    TaskMessage,
    decode_result,
    decode_task,
    encode_result,
    encode_task,
    result_problem,
)
from onepipe.agents.compact.plan import DayTask, DayVersion
from onepipe.agents.compact.pool import DayTaskWorker, KafkaDayDispatcher
from onepipe.agents.compact.schedule import CompactionScheduler
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import CompactionError
from onepipe.schemas.topic_names import compact_results_topic
from onepipe.sinks.lake import LakeStore, S3Options, open_lake
from onepipe.sinks.lake.iceberg import NAMESPACE, open_catalog
from onepipe.sinks.lake.iceberg.layout import (
    claim_prefix,
    data_file_path,
    parse_data_path,
    parse_staging_path,
    staging_prefix,
    staging_topic_prefix,
)
from tests.fixtures.compact import (
    CATALOGS,
    DAY0,
    DAY_MS,
    SCHEMA,
    RawWriter,
    assert_no_stray_files,
    assert_same_rows,
    clean_rows,
    clean_state,
    clean_view,
    config_for,
    day_of,
    expected_clean,
    from_scratch,
    meta_for,
    read_clean,
    versions,
)
from tests.fixtures.databases import PG_DSN
from tests.fixtures.services import kafka_for, unique, wait_for

PARTITIONS = 8


@dataclass
class Pool:
    """Two task workers in one group on one local lake, for the whole module."""

    app_id: str
    lake: LakeStore
    workers: list[DayTaskWorker]
    #: Days whose tasks every worker fails (an injected failure).
    failing: set[str] = field(default_factory=set)


def worker_config(root: Path) -> CompactionConfig:
    return CompactionConfig(work_dir=root, memory_limit="256MB", threads=1)


async def both_assigned(workers: list[DayTaskWorker]) -> bool:
    return all(w.assignment for w in workers) and \
        sum(len(w.assignment) for w in workers) == PARTITIONS


@pytest.fixture(scope="module")
async def pool(broker: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pool]:
    root = tmp_path_factory.mktemp("pool")
    app_id = unique("pool")
    async with open_lake((root / "lake").as_uri()) as lake, AsyncExitStack() as stack:
        failing: set[str] = set()

        async def before(task: DayTask) -> None:
            if task.date in failing:
                raise CompactionError(f"injected failure of day {task.date}")

        workers = [DayTaskWorker(kafka=kafka_for(broker), app_id=app_id, worker_id=name,
                                 executor=DayExecutor(lake, worker_config(root / name)),
                                 partitions=PARTITIONS, before_task=before)
                   for name in ("w1", "w2")]
        for worker in workers:
            await stack.enter_async_context(worker)
        await wait_for(lambda: both_assigned(workers), timeout=40,
                       what="both workers to hold task partitions")
        yield Pool(app_id, lake, workers, failing)


def dispatcher_for(broker: str, app_id: str, lake: LakeStore, config: CompactionConfig,
                   timeout: float) -> KafkaDayDispatcher:
    return KafkaDayDispatcher(kafka=kafka_for(broker), app_id=app_id, timeout=timeout,
                              executor=DayExecutor(lake, config), partitions=PARTITIONS)


def bumped(items: list[dict[str, Any]], by: int = 3) -> list[dict[str, Any]]:
    """New versions that win over earlier ones (and move keys between days)."""
    return [{**item, "version": item["version"] + by} for item in items]


async def assert_like_local(lake: LakeStore, raw: RawWriter, tmp_path: Path) -> None:
    """The pooled clean lake equals one local compaction of the same raw files."""
    topic = raw.topic
    assert clean_view(await read_clean(lake, topic)) == expected_clean(raw.sent, "max")
    assert_same_rows(await clean_rows(lake, topic),
                     await from_scratch(lake, topic, meta_for(topic), raw.schema, tmp_path))
    await assert_no_stray_files(lake, topic)
    assert await lake.list(staging_topic_prefix(topic)) == []  # finished runs unstage


# ------------------------------------------------------------------ pure parts


def test_messages_round_trip_and_reject_garbage() -> None:
    task = DayTask(topic="t", date="2026-11-20", seq=3, run_id="ab", old_files=("x",),
                   winners_file="clean/t/_runs/v3/ab/winners-2026-11-20.parquet",
                   keys_file=None, key=("id",), sort='"id"', field_ids={"id": [1, None]},
                   staged=True)
    message = TaskMessage(task, compact_results_topic("app"), 5)
    assert decode_task(encode_task(message)) == message
    files = (data_file_path("t", "2026-11-20", 3, "ab", 0, "c0ffee"),)
    ok = DayResult("ab", "t", "2026-11-20", 3, "c0ffee", "w1", DayVersion(3, files, 10, 99))
    failed = DayResult("ab", "t", "2026-11-20", 3, "c0ffee", "w1", None, "boom")
    assert decode_result(encode_result(ok)) == ok
    assert decode_result(encode_result(failed)) == failed
    assert result_problem(ok, task) is None
    assert "boom" in (result_problem(failed, task) or "")
    elsewhere = DayVersion(3, (data_file_path("t", "2026-11-21", 3, "ab", 0, "c0ffee"),), 1, 1)
    assert "not a data file of this task" in (
        result_problem(DayResult("ab", "t", "2026-11-20", 3, "c", "w", elsewhere), task) or "")
    for garbage in (b"", b"[]", b'{"format": 1}', b'{"format": 2, "task": {}}'):
        with pytest.raises(CompactionError, match="not a day task message"):
            decode_task(garbage)
        with pytest.raises(CompactionError, match="not a day result message"):
            decode_result(garbage)


def test_attempt_and_staging_names_parse_back() -> None:
    path = data_file_path("t.x", "2026-11-26", 12, "abc", 3, "d00d")
    assert path == "clean/t.x/data/day=2026-11-26/0000000012-abc-d00d-00003.parquet"
    parsed = parse_data_path(path)
    assert parsed is not None
    assert (parsed.run_id, parsed.attempt, parsed.index, parsed.seq) == ("abc", "d00d", 3, 12)
    plain = parse_data_path(data_file_path("t.x", "2026-11-26", 12, "abc", 3))
    assert plain is not None and (plain.run_id, plain.attempt, plain.index) == ("abc", "", 3)
    staged = staging_prefix("t.x", 12, "abc") + "winners-2026-11-26.parquet"
    assert parse_data_path(staged) is None  # no reader or sweep takes it for clean data
    assert parse_staging_path(staged) == (12, "abc")
    assert parse_staging_path(path) is None


# ------------------------------------------------------------------ sweep rules


async def test_sweep_removes_staging_and_attempt_files_of_dead_runs(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        topic = unique("pool-sweep")
        raw = RawWriter(lake, topic)
        await raw.write([*versions(random.Random(1), range(20), 2, days=2)])
        day = day_of(DAY0)
        crashed = staging_prefix(topic, 1, "dead") + f"winners-{day}.parquet"  # planned seq 1
        live = staging_prefix(topic, 2, "live") + f"winners-{day}.parquet"  # plans seq 2
        late = data_file_path(topic, day, 1, "dead", 0, "abcd")  # a late duplicate's file
        for path in (crashed, live, late):
            await lake.put(path, b"x")
        report = await Compactor(lake, meta_for(topic), raw.schema, config_for(tmp_path)).run()
        assert report.seq == 1 and report.files_deleted == 2
        assert not await lake.exists(crashed) and not await lake.exists(late)
        assert await lake.exists(live)  # its run may still commit seq 2


async def test_a_failing_dispatch_unstages_its_inputs(tmp_path: Path) -> None:
    class Crash(Exception):
        pass

    class Broken:
        seen: list[DayTask]

        async def run(self, tasks: list[DayTask]) -> list[DayVersion]:
            self.seen = tasks
            assert all(t.staged for t in tasks)
            assert all(await asyncio.gather(*(lake.exists(t.winners_file) for t in tasks)))
            raise Crash

    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        topic = unique("pool-broken")
        raw = RawWriter(lake, topic)
        await raw.write([*versions(random.Random(2), range(20), 2, days=3)])
        broken = Broken()
        with pytest.raises(Crash):
            await Compactor(lake, meta_for(topic), raw.schema, config_for(tmp_path),
                            dispatcher=broken).run()
        assert len(broken.seen) == 3
        assert await lake.list(staging_topic_prefix(topic)) == []
        assert (await clean_state(lake, topic)).seq == 0


async def test_a_run_whose_staging_a_winner_swept_replans(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        topic = unique("pool-race")
        raw = RawWriter(lake, topic)
        await raw.write([*versions(random.Random(3), range(30), 2, days=3)])

        class Racing:
            calls = 0

            async def run(self, tasks: list[DayTask]) -> list[DayVersion]:
                self.calls += 1
                # Another compactor publishes seq 1 meanwhile; its sweep drops our inputs.
                other = await Compactor(lake, meta_for(topic), raw.schema,
                                        config_for(tmp_path / "other")).run()
                assert other.seq == 1
                executor = DayExecutor(lake, config_for(tmp_path / "pool"))
                return [await executor.run(t, attempt="beef") for t in tasks]

        racing = Racing()
        report = await Compactor(lake, meta_for(topic), raw.schema, config_for(tmp_path),
                                 dispatcher=racing).run()
        assert (racing.calls, report.attempts, report.seq) == (1, 2, None)
        assert clean_view(await read_clean(lake, topic)) == expected_clean(raw.sent, "max")
        await assert_no_stray_files(lake, topic)


# ------------------------------------------------------------------ over Kafka


async def test_two_workers_compact_like_a_local_run(pool: Pool, broker: str,
                                                    tmp_path: Path) -> None:
    topic = unique("pool-two")
    raw = RawWriter(pool.lake, topic)
    rng = random.Random(31)
    await raw.write([*versions(rng, range(150), 3, days=5)])
    config = config_for(tmp_path)
    async with dispatcher_for(broker, pool.app_id, pool.lake, config, timeout=30) as dispatcher:
        first = await Compactor(pool.lake, meta_for(topic), raw.schema, config,
                                dispatcher=dispatcher).run()
        # Round two: old files to merge with, keys moving between days, a keys file.
        await raw.write([*bumped(versions(rng, range(100, 200), 2, days=5))])
        second = await Compactor(pool.lake, meta_for(topic), raw.schema, config,
                                 dispatcher=dispatcher).run()
    assert (first.seq, len(first.days_written)) == (1, 5)
    assert second.seq == 2 and len(second.days_written) >= 4
    ran = {f"{o.run_id}/{o.date}": o.executed_by for o in dispatcher.outcomes}
    assert len(ran) == len(first.days_written) + len(second.days_written)
    assert set(ran.values()) == {"w1", "w2"}, ran  # both workers, never the coordinator
    by_workers = {f"{run}/{key.split('/')[1]}": w.worker_id for w in pool.workers
                  for run, key, _, error in w.executed if error is None}
    assert {k: v for k, v in by_workers.items() if k in ran} == ran
    state = await clean_state(pool.lake, topic)
    names = [parse_data_path(p) for d in state.days.values() for p in d.paths]
    assert all(n is not None and n.attempt for n in names)  # pooled files carry attempts
    await assert_like_local(pool.lake, raw, tmp_path)


async def test_a_task_failing_on_its_worker_is_run_by_the_coordinator(
        pool: Pool, broker: str, tmp_path: Path) -> None:
    topic = unique("pool-fail")
    raw = RawWriter(pool.lake, topic)
    await raw.write([*versions(random.Random(41), range(80), 2, days=4)])
    bad_day = day_of(DAY0 + DAY_MS)
    config = config_for(tmp_path)
    pool.failing.add(bad_day)
    try:
        async with dispatcher_for(broker, pool.app_id, pool.lake, config,
                                  timeout=30) as dispatcher:
            report = await Compactor(pool.lake, meta_for(topic), raw.schema, config,
                                     dispatcher=dispatcher).run()
    finally:
        pool.failing.clear()
    assert report.seq == 1 and len(report.days_written) == 4
    ran = {o.date: o.executed_by for o in dispatcher.outcomes}
    assert ran[bad_day] == "local"
    assert {by for day, by in ran.items() if day != bad_day} <= {"w1", "w2"}
    failures = [error for w in pool.workers for run, key, _, error in w.executed
                if run == report_run(dispatcher) and key.endswith(bad_day)]
    assert failures and all(e is not None and "injected" in e for e in failures)
    await assert_like_local(pool.lake, raw, tmp_path)


def report_run(dispatcher: KafkaDayDispatcher) -> str:
    (run,) = {o.run_id for o in dispatcher.outcomes}
    return run


async def test_without_workers_the_coordinator_runs_every_task_after_the_timeout(
        broker: str, tmp_path: Path) -> None:
    app_id = unique("pool-idle")  # its group has no member: every worker is stopped
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        topic = unique("pool-idle")
        raw = RawWriter(lake, topic)
        await raw.write([*versions(random.Random(51), range(60), 2, days=4)])
        config = config_for(tmp_path)
        async with dispatcher_for(broker, app_id, lake, config, timeout=1.0) as dispatcher:
            report = await Compactor(lake, meta_for(topic), raw.schema, config,
                                     dispatcher=dispatcher).run()
        assert report.seq == 1 and len(report.days_written) == 4
        assert [o.executed_by for o in dispatcher.outcomes] == ["local"] * 4
        await assert_like_local(lake, raw, tmp_path)


async def test_a_worker_on_s3_compacts_like_a_local_run(
        broker: str, s3_lake_url: str, s3_options: S3Options, tmp_path: Path) -> None:
    app_id = unique("pool-s3")
    async with open_lake(s3_lake_url, s3_options) as lake:
        topic = unique("pool-s3")
        raw = RawWriter(lake, topic)
        rng = random.Random(61)
        await raw.write([*versions(rng, range(60), 2, days=4)])
        # Production's shape: an S3 lake and its catalog in PostgreSQL (psycopg 3).
        catalog = CATALOGS[lake.url] = PG_DSN.replace("postgresql://", "postgresql+psycopg://")
        config = config_for(tmp_path, catalog_uri=catalog)
        async with DayTaskWorker(kafka=kafka_for(broker), app_id=app_id, worker_id="s3w",
                                 executor=DayExecutor(lake, worker_config(tmp_path / "s3w")),
                                 partitions=PARTITIONS) as worker, \
                dispatcher_for(broker, app_id, lake, config, timeout=30) as dispatcher:
            await wait_for(lambda: len(worker.assignment) == PARTITIONS, timeout=30,
                           what="the worker to hold every task partition")
            await Compactor(lake, meta_for(topic), raw.schema, config,
                            dispatcher=dispatcher).run()
            await raw.write([*bumped(versions(rng, range(30, 90), 2, days=4))])
            report = await Compactor(lake, meta_for(topic), raw.schema, config,
                                     dispatcher=dispatcher).run()
        assert report.seq == 2
        assert {o.executed_by for o in dispatcher.outcomes} == {"s3w"}
        # The worker's cache keeps nothing single-use (staged inputs, superseded days).
        cached = [p for p in (tmp_path / "s3w" / "cache").rglob("*.parquet")]
        assert cached == []
        await assert_like_local(lake, raw, tmp_path)
        opened = open_catalog(catalog, lake)
        opened.catalog.drop_table((NAMESPACE, topic))  # the database outlives the test
        opened.close()


# ------------------------------------------------------------------ scheduler


async def register(http: aiohttp.ClientSession, topic: str) -> None:
    body = {"schema": SCHEMA, "partitions": 3, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "updated_at"}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()


def scheduler_for(runtime: Runtime, lake: LakeStore, config: CompactionConfig, topic: str,
                  clock: Callable[[], float], **kwargs: Any) -> CompactionScheduler:
    return CompactionScheduler(registry=runtime.registry, lake=lake, config=config,
                               interval=60.0, topics=[topic], clock=clock, **kwargs)


async def test_schedulers_of_two_workers_compact_a_topic_once_per_slot(
        runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    topic = unique("sched")
    await register(http, topic)
    now = [1_800_000_000.0]
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        raw = RawWriter(lake, topic)
        rng = random.Random(71)
        await raw.write([*versions(rng, range(30), 2)])
        schedulers = [scheduler_for(runtime, lake, config_for(tmp_path / name), topic,
                                    lambda: now[0], worker_id=name) for name in ("a", "b")]
        runs = await asyncio.gather(*(s.tick() for s in schedulers))
        assert sorted(len(r) for r in runs) == [0, 1]
        assert sum(s.skipped for s in schedulers) == 1
        assert (await clean_state(lake, topic)).seq == 1
        # Same slot again: already claimed, nobody runs.
        assert [await s.tick() for s in schedulers] == [[], []]
        # Next slot: one runs, and the old claim is gone.
        now[0] += 60
        await raw.write([*bumped(versions(rng, range(10, 40), 2))])
        runs = await asyncio.gather(*(s.tick() for s in schedulers))
        assert sorted(len(r) for r in runs) == [0, 1]
        assert (await clean_state(lake, topic)).seq == 2
        assert len(await lake.list(claim_prefix(topic))) == 1
        assert clean_view(await read_clean(lake, topic)) == expected_clean(raw.sent, "max")
        # A topic without raw files is not claimed at all.
        empty = unique("sched-empty")
        await register(http, empty)
        idle = scheduler_for(runtime, lake, config_for(tmp_path / "c"), empty, lambda: now[0])
        assert await idle.tick() == [] and await lake.list(claim_prefix(empty)) == []


async def test_the_scheduler_loop_compacts_through_the_pool(
        pool: Pool, broker: str, runtime: Runtime, http: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    topic = unique("sched-pool")
    await register(http, topic)
    meta = runtime.registry.state.topic_metadata(topic)
    assert meta.partition_time == "updated_at"
    raw = RawWriter(pool.lake, topic)
    await raw.write([*versions(random.Random(81), range(40), 2, days=4)])
    config = config_for(tmp_path)
    async with dispatcher_for(broker, pool.app_id, pool.lake, config, timeout=30) as dispatcher, \
            CompactionScheduler(registry=runtime.registry, lake=pool.lake, config=config,
                                interval=0.2, dispatcher=dispatcher, topics=[topic]) as loop:
        await wait_for(lambda: any(r.seq for r in loop.reports), timeout=30,
                       what="a scheduled compaction")
    assert loop.failures == 0
    assert {o.executed_by for o in dispatcher.outcomes} <= {"w1", "w2"}
    assert len(dispatcher.outcomes) == 4
    await assert_like_local(pool.lake, raw, tmp_path)
