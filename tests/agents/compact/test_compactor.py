"""The compactor on real lakes: winners, increments, crashes, races, readers, S3, the CLI.

Raw lakes are built two ways: by the real archive agent from records produced through
the HTTP API (end-to-end tests), or by :class:`RawWriter` (tests.fixtures.compact), which
lays files out exactly as the archive does (onepipe.sinks.formats.raw +
onepipe.sinks.lake.raw_layout) so a test controls offsets, days, duplicates and overlaps.
Expected clean contents are computed there in plain Python, independently of
onepipe.schemas.merge's SQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from onepipe.agents.compact import CompactionReport, Compactor
from onepipe.agents.compact.plan import DayTask, select_raw
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import CompactionConflict, CompactionError
from onepipe.schemas.metadata import TopicMetadata, metadata_from_dict
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.iceberg.layout import parse_data_path
from onepipe.sinks.lake.raw_layout import RawFile
from tests.fixtures.archive import agent_for, count_is, make_topic, order, produce
from tests.fixtures.compact import (
    DAY0,
    DAY_MS,
    PARTITIONS,
    RULES,
    SCHEMA,
    SEQ_KEY,
    RawWriter,
    assert_no_stray_files,
    assert_same_rows,
    catalog_for,
    clean_rows,
    clean_state,
    clean_view,
    config_for,
    data_files,
    day_of,
    expected_clean,
    from_scratch,
    meta_for,
    read_clean,
    topic_spec,
    versions,
)
from tests.fixtures.paths import REPO
from tests.fixtures.s3 import local_or_s3_lake
from tests.fixtures.services import unique, wait_for

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
SCHEMA_V2: dict[str, Any] = {**SCHEMA, "fields": [
    *SCHEMA["fields"], {"name": "extra", "type": ["null", "string"], "default": None}]}


@pytest.fixture
async def local_lake(tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        yield lake


# ------------------------------------------------------------------ pure parts


def test_select_raw_stops_at_gaps_and_trims_overlaps() -> None:
    def f(partition: int, first: int, last: int) -> RawFile:
        return RawFile("t", partition, first, last, "2026-11-20", 0)

    files = [f(0, 0, 9), f(0, 10, 19), f(0, 15, 24), f(0, 30, 39),  # zombie copy, then gap
             f(1, 0, 4), f(1, 5, 9),
             f(2, 100, 109)]  # retention removed 0-99 before the archive started
    selected = select_raw(files, {0: 12, 1: 10})
    p0 = selected[0]
    assert (p0.start, p0.end, p0.trims, p0.duplicates) == (12, 25, True, True)
    assert [x.first for x in p0.files] == [10, 15]
    assert 1 not in selected  # fully merged
    assert (selected[2].start, selected[2].end, selected[2].records) == (100, 110, 10)


def test_day_task_is_plain_data() -> None:
    task = DayTask(topic="t", date="2026-11-20", seq=3, run_id="ab", old_files=("x",),
                   winners_file="/w.parquet", keys_file=None, key=("id",), sort='"id"',
                   field_ids={"id": [1, None], "clock": [2, {"key": [3, None],
                                                            "value": [4, None]}]})
    assert DayTask.from_dict(json.loads(json.dumps(task.to_dict()))) == task


# ------------------------------------------------------------------ merge rules


@pytest.mark.parametrize("rule", ["max", "first", "vector_clock"])
async def test_clean_holds_the_winner_of_every_key(rule: str, local_lake: LakeStore,
                                                   tmp_path: Path) -> None:
    topic = unique(f"compact-{rule}")
    raw = RawWriter(local_lake, topic)
    items: list[dict[str, Any] | bytes] = [*versions(random.Random(rule), range(60), 4)]
    items += [b"not avro", b"\x00\x00\x00\x00\x09junk"]
    await raw.write(items)
    report = await Compactor(local_lake, meta_for(topic, rule), raw.schema,
                             config_for(tmp_path)).run()
    expected = expected_clean(raw.sent, rule)
    assert clean_view(await read_clean(local_lake, topic)) == expected
    assert report.seq == 1 and report.undecodable == 2 and report.incomplete == 0
    assert report.rows_in == len(items) and report.rows_out == 60
    assert report.days_written == tuple(sorted(expected))
    state = await clean_state(local_lake, topic)
    assert {d: v.rows for d, v in state.days.items()} == {
        d: len(keys) for d, keys in expected.items()}
    assert state.watermark == dict(raw.next_offset)  # in the snapshot summary


async def test_topic_without_key_keeps_every_record_once(local_lake: LakeStore,
                                                         tmp_path: Path) -> None:
    topic = unique("compact-keyless")
    raw = RawWriter(local_lake, topic)
    items = versions(random.Random(7), range(20), 2, duplicates=0.0)
    await raw.write(items[:20])
    meta = TopicMetadata(topic=topic, partition_time="updated_at", partitions=PARTITIONS)
    await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    await raw.write(items[20:])
    await raw.write_copy(1, 3, 12)  # a zombie's overlapping file
    await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    table = await read_clean(local_lake, topic)
    positions = list(zip(table.column("_kafka_partition").to_pylist(),
                         table.column("_kafka_offset").to_pylist(), strict=True))
    assert sorted(positions) == sorted({(s.record.partition, s.record.offset)
                                        for s in raw.sent})
    stamps = table.column("updated_at").to_pylist()
    for day in {day_of(i["updated_at"]) for i in items}:
        in_day = [(t, p) for t, p in zip(stamps, positions, strict=True)
                  if t.strftime("%Y-%m-%d") == day]
        assert in_day == sorted(in_day)


async def test_rows_without_key_or_time_are_left_out_and_counted(
        local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-incomplete")
    raw = RawWriter(local_lake, topic)
    items = versions(random.Random(2), range(5), 1, duplicates=0.0)
    await raw.write(items)
    await raw.write_without_typed_columns(items[0])
    report = await Compactor(local_lake, meta_for(topic), raw.schema, config_for(tmp_path)).run()
    assert (report.incomplete, report.undecodable, report.rows_in, report.rows_out) == (1, 0, 6, 5)
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")


TIMES_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Times", "namespace": "test.compact", "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "t_plain", "type": "long"},
        {"name": "t_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "t_date", "type": {"type": "int", "logicalType": "date"}},
    ]}


@pytest.mark.parametrize("field", ["kafka", "t_plain", "t_micros", "t_date"])
async def test_partition_time_of_every_kind_places_rows_in_utc_days(
        field: str, local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-times")
    raw = RawWriter(local_lake, topic, schema_json=TIMES_SCHEMA)
    items: list[dict[str, Any]] = []
    for i in range(12):  # every field puts a record in a different day than the others
        items.append({"id": f"k{i:04d}", "version": 1,
                      "updated_at": DAY0 + (i % 3) * DAY_MS + 1,
                      "t_plain": DAY0 + ((i + 1) % 3) * DAY_MS + DAY_MS - 1,
                      "t_micros": (DAY0 + ((i + 2) % 3) * DAY_MS) * 1000 + 5,
                      "t_date": DAY0 // DAY_MS + 10 + i % 2})
    await raw.write([*items])
    meta = TopicMetadata(topic=topic, key=("id",), order=RULES["max"], partition_time=field)
    await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()

    def day(item: dict[str, Any]) -> str:
        if field == "t_date":
            return day_of(item["t_date"] * DAY_MS)
        if field == "t_micros":
            return day_of(item["t_micros"] // 1000)
        return day_of(item["updated_at" if field == "kafka" else field])

    expected: dict[str, list[str]] = defaultdict(list)
    for item in items:
        expected[day(item)].append(item["id"])
    assert sorted((await clean_state(local_lake, topic)).days) == sorted(expected)
    for date, ids in expected.items():
        table = await read_clean(local_lake, topic, [date])
        assert table.column("id").to_pylist() == sorted(ids)


# ------------------------------------------------------------------ increments


async def test_incremental_equals_from_scratch(local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-incr")
    meta = meta_for(topic)
    rng = random.Random(11)
    raw = RawWriter(local_lake, topic)
    await raw.write([*versions(rng, range(80), 3, days=2)])
    compactor = Compactor(local_lake, meta, raw.schema, config_for(tmp_path))
    first = await compactor.run()
    assert first.seq == 1
    first_count = len(raw.sent)
    # New versions of old keys (many winning, on a third day too: keys move between
    # days), new keys, and a newer schema with an extra column.
    raw.schema_json, raw.schema_id = SCHEMA_V2, 2
    later = versions(rng, range(40, 120), 2, days=3)
    for item in later:
        item["version"] += 3
        item["extra"] = "x"
    await raw.write([*later])
    await raw.write_copy(2, 0, 5)  # a zombie file below the watermark: ignored
    second = await Compactor(local_lake, meta, raw.schema, config_for(tmp_path, jobs=3)).run()
    assert second.seq == 2
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")
    before = {k: d for d, keys in expected_clean(raw.sent[:first_count], "max").items()
              for k in keys}
    after = {k: d for d, keys in expected_clean(raw.sent, "max").items() for k in keys}
    assert len(after) == 120
    assert sum(1 for k, d in before.items() if after[k] != d) >= 5  # keys changed day
    assert_same_rows(await clean_rows(local_lake, topic),
                     await from_scratch(local_lake, topic, meta, raw.schema, tmp_path))
    table = await read_clean(local_lake, topic)
    assert "extra" in table.column_names
    # Nothing new: no new snapshot, nothing deleted.
    again = await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    assert again.seq is None and again.files_deleted == 0
    assert (await clean_state(local_lake, topic)).seq == 2
    await assert_no_stray_files(local_lake, topic)


async def test_a_big_day_is_split_into_ordered_files(local_lake: LakeStore,
                                                     tmp_path: Path) -> None:
    topic = unique("compact-split")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    rng = random.Random(13)
    await raw.write([*versions(rng, range(5000), 1, days=1, duplicates=0.0)], per_file=1000)
    # DuckDB closes a file after each row group once it passes max_file_bytes.
    config = config_for(tmp_path, max_file_bytes=1, row_group_rows=2048)
    await Compactor(local_lake, meta, raw.schema, config).run()
    await raw.write([*versions(rng, range(0, 5000, 7), 1, days=1, duplicates=0.0)])
    await Compactor(local_lake, meta, raw.schema, config).run()
    (day,) = (await clean_state(local_lake, topic)).days.values()
    assert len(day.paths) >= 2 and day.rows == 5000
    assert {parse_data_path(p).seq for p in day.paths} == {2}  # type: ignore[union-attr]
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")


async def test_expired_snapshots_free_their_files_after_the_retention(
        local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-retire")
    meta = meta_for(topic)
    now = [time.time()]  # snapshots carry wall-clock times; the test moves on from now
    raw = RawWriter(local_lake, topic)
    rng = random.Random(5)

    def compactor() -> Compactor:
        return Compactor(local_lake, meta, raw.schema,
                         config_for(tmp_path, retention_seconds=600), clock=lambda: now[0])

    await raw.write([*versions(rng, range(10), 2, days=1)])
    first = await compactor().run()
    old = set((await clean_state(local_lake, topic)).days[day_of(DAY0)].paths)
    await raw.write([*versions(rng, range(10), 2, days=1)])
    await compactor().run()
    # Replaced, but the first snapshot still references them: time travel reads them.
    assert all(await asyncio.gather(*(local_lake.exists(p) for p in old)))
    assert (await read_clean(local_lake, topic, as_of=first.snapshot_id)).num_rows == 10
    now[0] = time.time() + 601  # the first snapshot was replaced over 600 s ago
    report = await compactor().run()  # nothing new, but an expired snapshot to drop
    assert report.seq is None and report.files_deleted == len(old)
    assert not any(await asyncio.gather(*(local_lake.exists(p) for p in old)))
    await assert_no_stray_files(local_lake, topic)


async def test_a_replaced_head_stays_readable_for_the_retention(local_lake: LakeStore,
                                                               tmp_path: Path) -> None:
    # Retention runs from a snapshot's replacement, not its creation: a head older than the
    # retention is what readers - and a compactor that planned from it and then loses the
    # race - still read when another compactor replaces it.
    topic = unique("compact-old-head")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    rng = random.Random(13)
    await raw.write([*versions(rng, range(40), 2)])
    config = config_for(tmp_path, retention_seconds=600)
    first = await Compactor(local_lake, meta, raw.schema, config).run()
    state = await clean_state(local_lake, topic)
    head = state.table.current_snapshot() if state.table is not None else None
    assert head is not None and head.snapshot_id == first.snapshot_id and len(state.days) >= 2
    # Half a millisecond past the retention of the first snapshot, counted from its creation.
    late = head.timestamp_ms / 1000 + 600.0005
    await raw.write([*versions(rng, range(40), 2)])
    won: list[int | None] = []

    async def win_meanwhile(task: DayTask, paths: tuple[str, ...]) -> None:
        if won:
            return
        # The loser has merged its first day; its other days still read the first snapshot.
        winner = await Compactor(local_lake, meta, raw.schema, config, clock=lambda: late).run()
        won.append(winner.seq)
        await raw.write([*versions(rng, range(20, 60), 2)])

    loser = await Compactor(local_lake, meta, raw.schema, config, clock=lambda: late,
                            on_day_written=win_meanwhile).run()
    assert won == [2]
    assert (loser.seq, loser.attempts) == (3, 2)
    assert (await read_clean(local_lake, topic, as_of=first.snapshot_id)).num_rows == first.rows_out
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")
    await assert_no_stray_files(local_lake, topic)


# ------------------------------------------------------------------ crashes


class SimulatedCrash(Exception):
    pass


async def test_crash_before_commit_then_rerun(local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-crash")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    await raw.write([*versions(random.Random(3), range(50), 3)])
    await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    await raw.write([*versions(random.Random(4), range(25, 75), 2)])

    async def crash(task: DayTask, paths: tuple[str, ...]) -> None:
        raise SimulatedCrash(task.date)

    with pytest.raises(SimulatedCrash):
        await Compactor(local_lake, meta, raw.schema, config_for(tmp_path),
                        on_day_written=crash).run()
    assert (await clean_state(local_lake, topic)).seq == 1
    # the crashed run's unreferenced day file
    assert any(parse_data_path(p).seq == 2  # type: ignore[union-attr]
               for p in await data_files(local_lake, topic))
    report = await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    assert report.seq == 2 and report.files_deleted >= 1
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")
    assert_same_rows(await clean_rows(local_lake, topic),
                     await from_scratch(local_lake, topic, meta, raw.schema, tmp_path))
    await assert_no_stray_files(local_lake, topic)


_KILLED_RUN = """
import asyncio, json, sys
sys.path.insert(0, sys.argv[1])
from onepipe.agents.compact import CompactionConfig, Compactor
from pathlib import Path
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.metadata import metadata_from_dict
from onepipe.sinks.lake import open_lake

async def main():
    args = json.loads(sys.argv[2])
    async def pause(task, paths):
        print("written", task.date, flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the test kills us
    meta = metadata_from_dict(args["topic"], args["meta"])
    config = CompactionConfig(work_dir=Path(args["work"]), memory_limit="256MB")
    async with open_lake(args["lake"]) as lake:
        await Compactor(lake, meta, parse_schema(args["schema"]), config,
                        on_day_written=pause).run()

asyncio.run(main())
"""


async def test_sigkill_before_commit_then_rerun(local_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("compact-kill")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    await raw.write([*versions(random.Random(8), range(40), 3)])
    args = {"topic": topic, "lake": local_lake.url, "work": str(tmp_path / "work"),
            "schema": SCHEMA, "meta": {"key": ["id"], "order": {"rule": "max", "field":
                                       "version"}, "partition_time": "updated_at",
                                       "partitions": PARTITIONS}}
    child_meta = metadata_from_dict(topic, args["meta"])  # type: ignore[arg-type]
    assert (child_meta.key, child_meta.order, child_meta.partition_time) == (
        meta.key, meta.order, meta.partition_time)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_RUN, str(REPO), json.dumps(args),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stderr is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line.startswith(b"written"):
            raise AssertionError((await process.stderr.read()).decode())
        process.send_signal(signal.SIGKILL)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    assert (await clean_state(local_lake, topic)).seq == 0
    assert await data_files(local_lake, topic)  # a day file, unreferenced
    runs = tmp_path / "work" / "runs"
    assert len(list(runs.iterdir())) == 2  # the killed run's folder and lock file
    report = await Compactor(local_lake, meta, raw.schema, config_for(tmp_path)).run()
    assert report.seq == 1
    assert list(runs.iterdir()) == []  # removed: its process is gone
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")
    assert_same_rows(await clean_rows(local_lake, topic),
                     await from_scratch(local_lake, topic, meta, raw.schema, tmp_path))
    await assert_no_stray_files(local_lake, topic)


# ------------------------------------------------------------------ concurrency


async def test_readers_only_ever_see_whole_versions(local_lake: LakeStore,
                                                    tmp_path: Path) -> None:
    topic = unique("compact-readers")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    rng = random.Random(21)
    # Each read pins one snapshot (kept for the retention while newer ones are committed)
    # and must see exactly what that snapshot published, never a mix of two.
    config = config_for(tmp_path, retention_seconds=600)
    published: dict[int, dict[str, dict[str, bytes]]] = {0: {}}
    observed: list[tuple[int, dict[str, dict[str, bytes]]]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            table = await read_clean(local_lake, topic)
            seq = int((table.schema.metadata or {})[SEQ_KEY])
            observed.append((seq, clean_view(table)))
            # No pause needed: read_clean lists and reads in threads, so each read
            # hands the loop to the compactor while it waits.

    task = asyncio.create_task(reader())
    try:
        for _ in range(6):
            await raw.write([*versions(rng, range(30), 2)])
            reads = len(observed)
            report = await Compactor(local_lake, meta, raw.schema, config).run()
            assert report.seq is not None
            table = await read_clean(local_lake, topic)
            assert int((table.schema.metadata or {})[SEQ_KEY]) == report.seq
            published[report.seq] = clean_view(table)
            await wait_for(lambda reads=reads: len(observed) > reads + 1, timeout=30,  # type: ignore[misc]
                           what="the reader to read during the next round")
    finally:
        done.set()
        await task
    seqs = {seq for seq, _ in observed}
    assert len(seqs) >= 3
    for seq, view in observed:
        assert view == published[seq], f"reader saw a mix at seq {seq}"
    assert published[6] == expected_clean(raw.sent, "max")


async def test_two_compactors_race_one_commit_per_seq(local_lake: LakeStore,
                                                      tmp_path: Path) -> None:
    topic = unique("compact-race")
    meta = meta_for(topic)
    raw = RawWriter(local_lake, topic)
    rng = random.Random(9)
    await raw.write([*versions(rng, range(40), 2)])
    planned = asyncio.Barrier(2)
    more_written = asyncio.Barrier(2)
    waited: set[int] = set()

    def hook(me: int) -> Any:
        async def on_day(task: DayTask, paths: tuple[str, ...]) -> None:
            if me in waited:
                return
            waited.add(me)
            if await planned.wait() == 0:  # both planned from seq 0; now raw grows
                await raw.write([*versions(rng, range(20, 60), 2)])
            await more_written.wait()
        return on_day

    reports: list[CompactionReport] = await asyncio.gather(*(
        Compactor(local_lake, meta, raw.schema, config_for(tmp_path), on_day_written=hook(i))
        .run() for i in range(2)))
    assert sorted(r.seq or 0 for r in reports) == [1, 2]
    assert sorted(r.attempts for r in reports) == [1, 2]
    assert (await clean_state(local_lake, topic)).seq == 2
    assert clean_view(await read_clean(local_lake, topic)) == expected_clean(raw.sent, "max")
    await assert_no_stray_files(local_lake, topic)


async def test_a_loser_whose_new_files_were_swept_replans(any_lake: LakeStore,
                                                          tmp_path: Path) -> None:
    # The race above, with its worst order forced: the winner commits and sweeps the
    # loser's new files (seq 1, never publishable) before the loser reads their footers
    # for its own commit. That once failed the loser with pyiceberg's FileNotFoundError.
    topic = unique("compact-swept")
    meta = meta_for(topic)
    raw = RawWriter(any_lake, topic)
    rng = random.Random(10)
    await raw.write([*versions(rng, range(40), 2)])
    config = config_for(tmp_path, catalog_uri=catalog_for(any_lake, tmp_path))
    swept: list[str] = []

    async def win_meanwhile(task: DayTask, paths: tuple[str, ...]) -> None:
        if swept:
            return
        assert task.seq == 1 and paths
        winner = await Compactor(any_lake, meta, raw.schema, config).run()
        assert (winner.seq, winner.attempts) == (1, 1)
        assert [p for p in paths if await any_lake.exists(p)] == []  # swept by the winner
        swept.extend(paths)
        await raw.write([*versions(rng, range(20, 60), 2)])

    loser = await Compactor(any_lake, meta, raw.schema, config,
                            on_day_written=win_meanwhile).run()
    assert swept
    assert (loser.seq, loser.attempts) == (2, 2)
    assert (await clean_state(any_lake, topic)).seq == 2
    assert clean_view(await read_clean(any_lake, topic)) == expected_clean(raw.sent, "max")
    await assert_no_stray_files(any_lake, topic)


async def test_a_new_file_lost_on_an_unmoved_table_is_no_conflict(local_lake: LakeStore,
                                                                  tmp_path: Path) -> None:
    # A vanished new file is a lost race only when another commit came first; otherwise
    # something outside onepipe deletes clean files, and re-planning would hide it.
    topic = unique("compact-lost")
    raw = RawWriter(local_lake, topic)
    await raw.write([*versions(random.Random(12), range(10), 1)])

    async def delete_them(task: DayTask, paths: tuple[str, ...]) -> None:
        for path in paths:
            await local_lake.delete(path)

    with pytest.raises(CompactionError, match="vanished before its commit") as caught:
        await Compactor(local_lake, meta_for(topic), raw.schema, config_for(tmp_path),
                        on_day_written=delete_them).run()
    assert not isinstance(caught.value, CompactionConflict)
    assert (await clean_state(local_lake, topic)).seq == 0


# ------------------------------------------------------------------ end to end


@pytest.fixture(params=["local", "s3"])
async def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with local_or_s3_lake(request, tmp_path) as store:
        yield store


async def test_archive_then_compact_end_to_end(runtime: Runtime, http: aiohttp.ClientSession,
                                               any_lake: LakeStore, tmp_path: Path) -> None:
    topic = await make_topic(http)
    sent = [order(i) for i in range(120)] + [order(i, note=True) for i in range(120, 200)]
    await produce(http, topic, sent[:120], version=1)
    await produce(http, topic, sent[120:])
    async with agent_for(runtime, any_lake, topic):
        await wait_for(lambda: count_is(any_lake, topic, 200), timeout=60, what="200 rows")
    meta, schema = topic_spec(runtime, topic)
    config = config_for(tmp_path, catalog_uri=catalog_for(any_lake, tmp_path))
    report = await Compactor(any_lake, meta, schema, config).run()
    assert report.seq == 1 and report.rows_in == 200 and report.rows_out == 37
    table = await read_clean(any_lake, topic)
    best = {f"o{k}": max(i for i in range(200) if i % 37 == k) for k in range(37)}
    assert {r["order_id"]: r["version"] for r in table.to_pylist()} == best
    assert table.column("order_id").to_pylist() == sorted(best)
    today = datetime.now(tz=UTC).strftime("%Y-%m-%d")
    assert set((await clean_state(any_lake, topic)).days) == {today}
    # More versions arrive: only the changed keys get new winners.
    await produce(http, topic, [order(i, note=True) for i in range(200, 250)])
    async with agent_for(runtime, any_lake, topic):
        await wait_for(lambda: count_is(any_lake, topic, 250), timeout=60, what="250 rows")
    second = await Compactor(any_lake, meta, schema, config).run()
    assert second.seq == 2 and second.rows_in == 50
    table = await read_clean(any_lake, topic)
    best = {f"o{k}": max(i for i in range(250) if i % 37 == k) for k in range(37)}
    assert {r["order_id"]: r["version"] for r in table.to_pylist()} == best
    assert (await Compactor(any_lake, meta, schema, config).run()).seq is None
    await assert_no_stray_files(any_lake, topic)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ONEPIPE, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_compact_and_lake_read_commands(runtime: Runtime, http: aiohttp.ClientSession,
                                              tmp_path: Path, broker: str) -> None:
    lake_url = (tmp_path / "lake").as_uri()
    topic = await make_topic(http)
    await produce(http, topic, [order(i, note=True) for i in range(80)])
    async with open_lake(lake_url) as lake, agent_for(runtime, lake, topic):
        await wait_for(lambda: count_is(lake, topic, 80), timeout=60, what="80 rows")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env.update(ONEPIPE_BROKER=broker, ONEPIPE_LAKE_URL=lake_url,
               ONEPIPE_REGISTRY_TOPIC=runtime.settings.registry_topic,
               ONEPIPE_REGISTRY_FETCH_WAIT_MS="10", ONEPIPE_DATA_DIR=str(tmp_path / "data"),
               ONEPIPE_COMPACT_MEMORY_LIMIT="256MB", COLUMNS="200")

    compacted, unknown, empty = await asyncio.gather(
        asyncio.to_thread(run_cli, env, "compact", topic),
        asyncio.to_thread(run_cli, env, "compact", unique("nope")),
        asyncio.to_thread(run_cli, env, "lake", "read", unique("nope")))
    assert compacted.returncode == 0, compacted.stderr
    assert "(sequence number 1)" in compacted.stdout and "37 row(s)" in compacted.stdout
    assert unknown.returncode == 2 and "not registered" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert empty.returncode == 1 and "onepipe compact" in empty.stderr

    as_json, table, raw, again = await asyncio.gather(
        asyncio.to_thread(run_cli, env, "lake", "read", topic, "--json", "--limit", "0"),
        asyncio.to_thread(run_cli, env, "lake", "read", topic, "--limit", "5"),
        asyncio.to_thread(run_cli, env, "lake", "read", topic, "--raw", "--json", "--limit",
                          "7"),
        asyncio.to_thread(run_cli, env, "compact", topic))
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["order_id"]: r["version"] for r in rows} == {
        f"o{k}": max(i for i in range(80) if i % 37 == k) for k in range(37)}
    assert table.returncode == 0 and "sequence number 1): 5 row(s)" in table.stdout
    assert "order_id" in table.stdout
    assert raw.returncode == 0 and len(raw.stdout.splitlines()) == 7
    assert again.returncode == 0 and "up to date" in again.stdout
    bad_day = run_cli(env, "lake", "read", topic, "--date", "yesterday")
    assert bad_day.returncode == 2 and "2026-11-26" in bad_day.stderr
