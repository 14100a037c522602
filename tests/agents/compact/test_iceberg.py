"""The clean lake as plain Iceberg: any engine reads it, and old lakes migrate into it.

- An outside reader - a child process importing only pyiceberg and DuckDB, given the
  catalog URI, the warehouse and the S3 properties - finds exactly one row per key, equal
  to the winners computed in plain Python (tests.fixtures.compact.expected_clean), on a
  local lake and on the moto S3 lake; the table is partitioned by day, sorted by the key,
  and its snapshot summary holds the raw watermark.
- Time travel: a replaced day is still read as of the earlier snapshot.
- Migration: a clean lake in the first (manifest) layout, laid out here by hand, becomes
  one snapshot with equal figures on every day, keeping its raw watermark, and the next
  compaction continues from it exactly as if the lake had always been Iceberg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from onepipe.agents.compact import Compactor, migrate
from onepipe.agents.compact.migrate import MIGRATED_KEY, migrate_topic
from onepipe.app.catalog import apply_topic
from onepipe.app.lake_cli import run_lake_migrate
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.iceberg import WATERMARK_KEY, embedded_catalog_uri
from onepipe.sinks.lake.iceberg.catalog import io_properties, lake_base_url
from tests.fixtures.compact import (
    DAY0,
    PARTITIONS,
    SCHEMA,
    RawWriter,
    assert_same_rows,
    catalog_for,
    clean_rows,
    clean_state,
    clean_view,
    config_for,
    copy_raw,
    day_of,
    expected_clean,
    meta_for,
    read_clean,
    versions,
)
from tests.fixtures.s3 import local_or_s3_lake
from tests.fixtures.services import unique

#: Runs in a child: plain pyiceberg + DuckDB, the catalog settings only (its name is
#: ``onepipe``: a SQL catalog keeps the tables of each name apart), no onepipe import.
_OUTSIDE_READER = """
import json, sys
import duckdb
from pyiceberg.catalog.sql import SqlCatalog

args = json.loads(sys.argv[1])
catalog = SqlCatalog("onepipe", uri=args["uri"], warehouse=args["warehouse"], **args["io"])
table = catalog.load_table(("onepipe", args["topic"]))
rows = table.scan(selected_fields=("id", "_kafka_value", "updated_at")).to_arrow()
con = duckdb.connect()
con.register("clean", rows)
per_key = con.sql("SELECT max(n) FROM (SELECT count(*) n FROM clean GROUP BY id)").fetchall()[0]
# DuckDB over pyiceberg's scan, the other way round: the table registered by pyiceberg.
table.scan().to_duckdb("t", connection=con)
days = con.sql("SELECT strftime(_kafka_clean_day, '%Y-%m-%d') d, id, hex(_kafka_value) v "
               "FROM t ORDER BY d, id").fetchall()
snapshot = table.current_snapshot()
print(json.dumps({
    "onepipe_imported": any(m == "onepipe" or m.startswith("onepipe.") for m in sys.modules),
    "max_rows_per_key": per_key[0], "rows": days,
    "spec": str(table.spec()),
    "sort": [table.schema().find_column_name(f.source_id) for f in table.sort_order().fields],
    "watermark": snapshot.summary.additional_properties.get(args["watermark_key"]),
    "snapshots": len(table.snapshots()),
}))
"""


@pytest.fixture(params=["local", "s3"])
async def lake(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LakeStore]:
    async with local_or_s3_lake(request, tmp_path) as store:
        yield store


async def test_plain_pyiceberg_and_duckdb_read_one_winner_per_key(lake: LakeStore,
                                                                   tmp_path: Path) -> None:
    topic = unique("ice-plain")
    raw = RawWriter(lake, topic)
    rng = random.Random(17)
    await raw.write([*versions(rng, range(50), 3)])
    uri = catalog_for(lake, tmp_path) or embedded_catalog_uri(lake)
    config = config_for(tmp_path, catalog_uri=uri)
    await Compactor(lake, meta_for(topic), raw.schema, config).run()
    await raw.write([*versions(rng, range(30, 70), 2)])  # moves keys between days
    await Compactor(lake, meta_for(topic), raw.schema, config).run()

    args = {"uri": uri, "warehouse": f"{lake_base_url(lake)}/clean", "io": io_properties(lake),
            "topic": topic, "watermark_key": WATERMARK_KEY}
    child = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _OUTSIDE_READER, json.dumps(args)],
        capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    assert seen["onepipe_imported"] is False
    assert seen["max_rows_per_key"] == 1
    got: dict[str, dict[str, bytes]] = {}
    for day, key, value in seen["rows"]:
        got.setdefault(day, {})[key] = bytes.fromhex(value)
    assert got == expected_clean(raw.sent, "max")
    assert "day(" in seen["spec"] and "_kafka_clean_day" not in seen["spec"].split("day(")[0]
    assert seen["sort"] == ["id"]
    assert json.loads(seen["watermark"]) == {str(p): o for p, o in raw.next_offset.items()}
    assert seen["snapshots"] == 2  # one snapshot per run


async def test_time_travel_reads_an_earlier_snapshot(tmp_path: Path) -> None:
    async with open_lake((tmp_path / "lake").as_uri()) as lake:
        topic = unique("ice-travel")
        raw = RawWriter(lake, topic)
        rng = random.Random(23)
        await raw.write([*versions(rng, range(20), 2, days=1)])
        first = await Compactor(lake, meta_for(topic), raw.schema, config_for(tmp_path)).run()
        before = clean_view(await read_clean(lake, topic))
        await raw.write([{**item, "version": item["version"] + 10}
                         for item in versions(rng, range(20), 1, days=1)])
        second = await Compactor(lake, meta_for(topic), raw.schema, config_for(tmp_path)).run()
        assert (first.seq, second.seq) == (1, 2)
        assert clean_view(await read_clean(lake, topic, as_of=first.snapshot_id)) == before
        assert clean_view(await read_clean(lake, topic)) == expected_clean(raw.sent, "max")
        assert clean_view(await read_clean(lake, topic)) != before


# ------------------------------------------------------------------ migration


async def write_manifest_lake(source: LakeStore, target: LakeStore, topic: str) -> int:
    """``source``'s clean lake laid out in ``target`` as the first layout did: day files
    ``clean/<topic>/date=<D>/v1/<run>-00000.parquet`` and manifest 1; its row count."""
    state = await clean_state(source, topic)
    run, days, rows = uuid.uuid4().hex, {}, 0
    for day in sorted(state.days):
        table = await read_clean(source, topic, [day])
        sink = pa.BufferOutputStream()
        pq.write_table(table.replace_schema_metadata(None), sink)
        path = f"clean/{topic}/date={day}/v1/{run}-00000.parquet"
        data = sink.getvalue().to_pybytes()
        await target.put(path, data)
        days[day] = {"version": 1, "files": [path], "rows": table.num_rows, "bytes": len(data)}
        rows += table.num_rows
    manifest: dict[str, Any] = {
        "format": 1, "topic": topic, "seq": 1, "created_at": "2026-11-26T10:00:00+00:00",
        "run_id": run, "days": days, "retired": [],
        "raw_merged": {str(p): o for p, o in state.watermark.items()}}
    await target.put(f"clean/{topic}/_manifest/{1:020d}.json", orjson.dumps(manifest))
    return rows


async def test_a_manifest_lake_migrates_with_equal_checksums(tmp_path: Path) -> None:
    topic = unique("ice-migrate")
    meta = meta_for(topic)
    async with open_lake((tmp_path / "a").as_uri()) as a, \
            open_lake((tmp_path / "b").as_uri()) as b:
        raw = RawWriter(a, topic)
        rng = random.Random(29)
        await raw.write([*versions(rng, range(60), 3)])
        await Compactor(a, meta, raw.schema, config_for(tmp_path / "wa")).run()
        await copy_raw(a, b, topic)
        rows = await write_manifest_lake(a, b, topic)

        report = await migrate_topic(b, meta, raw.schema, config_for(tmp_path / "wb"))
        assert report.ok and (report.manifest_seq, report.rows, report.days) == (1, rows, 3)
        assert report.deleted == 4  # three day files and the manifest
        assert [o.path for o in await b.list(f"clean/{topic}/") if "date=" in o.path
                or "_manifest" in o.path] == []
        state = await clean_state(b, topic)
        assert state.watermark == dict(raw.next_offset)
        assert_same_rows(await clean_rows(b, topic), await clean_rows(a, topic))
        again = await migrate_topic(b, meta, raw.schema, config_for(tmp_path / "wb"))
        assert again.ok and again.manifest_seq == 0  # nothing left to migrate

        # The next compaction continues from the manifest's watermark on both lakes.
        more = [{**item, "version": item["version"] + 5}
                for item in versions(rng, range(40, 90), 2)]
        raw.lake = a
        await raw.write(more)
        await copy_raw(a, b, topic)
        for lake, work in ((a, "wa"), (b, "wb")):
            report2 = await Compactor(lake, meta, raw.schema,
                                      config_for(tmp_path / work)).run()
            assert report2.rows_in == len(more)
        assert_same_rows(await clean_rows(b, topic), await clean_rows(a, topic))
        assert clean_view(await read_clean(b, topic)) == expected_clean(raw.sent, "max")
        head = (await clean_state(b, topic)).table
        assert head is not None
        summaries = [s.summary.additional_properties for s in head.snapshots()
                     if s.summary is not None]
        assert summaries[0][MIGRATED_KEY] == "1"


async def test_a_migration_whose_figures_differ_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topic = unique("ice-migrate-bad")
    meta = meta_for(topic)
    async with open_lake((tmp_path / "a").as_uri()) as a, \
            open_lake((tmp_path / "b").as_uri()) as b:
        raw = RawWriter(a, topic)
        await raw.write([*versions(random.Random(31), range(20), 2, days=1)])
        await Compactor(a, meta, raw.schema, config_for(tmp_path / "wa")).run()
        await write_manifest_lake(a, b, topic)
        old = sorted(o.path for o in await b.list(f"clean/{topic}/"))
        real = migrate._table_figures

        def one_day_lost(table: Any, view: Any) -> dict[str, Any]:
            return dict(list(real(table, view).items())[1:])  # as if a day went missing

        monkeypatch.setattr(migrate, "_table_figures", one_day_lost)
        report = await migrate_topic(b, meta, raw.schema, config_for(tmp_path / "wb"))
        assert not report.ok and report.differing == (day_of(DAY0),)
        assert "NOT migrated" in report.describe()
        assert sorted(o.path for o in await b.list(f"clean/{topic}/")) == old  # untouched
        assert (await clean_state(b, topic)).table is None  # the new table was dropped


async def test_the_migrate_command_converts_every_registered_manifest_lake(
        tmp_path: Path, runtime: Runtime, make_settings: Callable[..., Settings],
        capsys: pytest.CaptureFixture[str]) -> None:
    """``onepipe lake migrate --all`` end to end: the topics come from the registry and
    the manifest lakes found; a second run finds nothing left to migrate."""
    topic = unique("ice-cli")
    entry = {"schema": SCHEMA, "key": ["id"], "order": {"rule": "max", "field": "version"},
             "partition_time": "updated_at", "partitions": PARTITIONS}
    await apply_topic(runtime.registry, topic, SCHEMA, entry)
    async with open_lake((tmp_path / "a").as_uri()) as a, \
            open_lake((tmp_path / "b").as_uri()) as b:
        raw = RawWriter(a, topic)
        await raw.write([*versions(random.Random(31), range(40), 2)])
        await Compactor(a, meta_for(topic), raw.schema, config_for(tmp_path / "wa")).run()
        await copy_raw(a, b, topic)
        rows = await write_manifest_lake(a, b, topic)
    settings = make_settings(registry_topic=runtime.settings.registry_topic,
                             lake_url=(tmp_path / "b").as_uri(), data_dir=tmp_path / "data")
    args = argparse.Namespace(topic=None, all_topics=True)
    assert await run_lake_migrate(settings, args) == 0
    out = capsys.readouterr().out
    assert f"{topic}: manifest 1 -> Iceberg snapshot" in out and f"{rows} row(s)" in out
    assert await run_lake_migrate(settings, args) == 0
    assert "nothing to migrate" in capsys.readouterr().out
