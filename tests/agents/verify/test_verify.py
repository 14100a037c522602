"""``verify`` on real lakes and the real broker: agreement, then three corruptions.

The end-to-end test builds a topic with duplicates and updates through the produce
endpoint, runs the real dedup and archive agents, compacts, and verifies that the
clean lake and the ``.unique`` stream agree (and the raw lake is whole). Then it
corrupts one system at a time - a row deleted from the clean lake through a new
version, a value changed the same way, an archived raw file removed - and verify must
fail naming the day, the figure and the differing keys (or the raw gap), through the
library, the CLI (as a subprocess) and ``GET /verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from onepipe.agents.compact import Compactor
from onepipe.agents.verify.clean import CleanLakeSource
from onepipe.agents.verify.compare import day_range, verify_registered, verify_topic
from onepipe.agents.verify.sources import DayRange, TopicView
from onepipe.app.runtime import Runtime
from onepipe.schemas.metadata import Checks, TopicMetadata
from onepipe.sinks.lake import LakeStore, open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.archive import agent_for
from tests.fixtures.compact import (
    CATALOGS,
    DAY0,
    DAY_MS,
    RawWriter,
    catalog_for,
    config_for,
    copy_raw,
    meta_for,
    read_clean,
    topic_spec,
    versions,
)
from tests.fixtures.dedup import make_agent
from tests.fixtures.s3 import local_or_s3_lake
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.verify import SCHEMA, day_of, day_report, publish_day, with_note

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))
PARTITIONS = 3
KEYS = 60


def without_key(key: str) -> Callable[[pa.Table], pa.Table]:
    return lambda t: t.filter(pc.not_equal(t.column("id"), key))


# ------------------------------------------------------------ lakes, no broker


async def test_two_clean_lakes_agree_then_the_drill_down_names_the_keys(tmp_path: Path
                                                                        ) -> None:
    topic = unique("vf")
    meta = replace(meta_for(topic), checks=Checks(count_distinct=True, sums=("version",)))
    async with open_lake((tmp_path / "a").as_uri()) as a, \
            open_lake((tmp_path / "b").as_uri()) as b:
        writer = RawWriter(a, topic)
        await writer.write(versions(random.Random(7), range(400), per_key=3))
        await copy_raw(a, b, topic)
        for lake, work in ((a, "wa"), (b, "wb")):
            await Compactor(lake, meta, writer.schema, config_for(tmp_path / work)).run()
        view = TopicView.build(meta, writer.schema)

        def sources() -> list[CleanLakeSource]:
            return [CleanLakeSource(view, a), CleanLakeSource(view, b, name="copy")]

        report = await verify_topic(view, sources(), lake=a)
        assert report.ok, report.to_json()
        assert [d.day for d in report.days] == [day_of(DAY0 + i * DAY_MS) for i in range(3)]
        assert sum(d.figures["clean"].keys for d in report.days) == 400
        assert all(d.raw is not None and d.raw.keys >= d.figures["clean"].keys
                   for d in report.days)

        day0, day1 = report.days[0].day, report.days[1].day
        rows0 = (await read_clean(b, topic, [day0])).column("id").to_pylist()
        rows1 = (await read_clean(b, topic, [day1])).column("id").to_pylist()
        await publish_day(b, topic, day0, without_key(rows0[5]))
        await publish_day(b, topic, day1, with_note(rows1[7], "changed"))
        report = await verify_topic(view, sources(), lake=a)
        assert not report.ok
        first, second, third = report.days
        assert set(first.disagreeing) == {"rows", "keys", "sum:version", "checksum"}
        assert [k.key for k in first.differing_keys] == [{"id": rows0[5]}]
        assert first.differing_keys[0].rows["copy"] == "missing"
        assert second.disagreeing == ("checksum",)
        assert [k.key for k in second.differing_keys] == [{"id": rows1[7]}]
        changed = second.differing_keys[0].rows
        assert changed["clean"] != changed["copy"] and "missing" not in changed.values()
        assert third.ok

        # A day asked for by name, held by nobody: reported, and agreeing.
        empty = await verify_topic(view, sources(), days=DayRange("2001-01-01", "2001-01-01"))
        assert [d.day for d in empty.days] == ["2001-01-01"] and empty.ok

        # The limit caps the keys listed, and says more exist.
        changed_all = lambda t: t.set_column(  # noqa: E731
            t.schema.get_field_index("note"), t.schema.field("note"),
            pa.array(["x"] * t.num_rows, t.schema.field("note").type))
        await publish_day(b, topic, day1, changed_all)
        report = await verify_topic(view, sources(), limit=3)
        assert len(day_report(report, day1).differing_keys) == 3
        assert day_report(report, day1).keys_truncated


async def test_a_topic_without_key_is_compared_by_partition_and_offset(tmp_path: Path
                                                                        ) -> None:
    topic = unique("vf")
    meta = TopicMetadata(topic=topic, partition_time="updated_at", partitions=3)
    async with open_lake((tmp_path / "a").as_uri()) as a, \
            open_lake((tmp_path / "b").as_uri()) as b:
        writer = RawWriter(a, topic)
        await writer.write(versions(random.Random(5), range(50), per_key=2, days=1))
        await copy_raw(a, b, topic)
        for lake, work in ((a, "wa"), (b, "wb")):
            await Compactor(lake, meta, writer.schema, config_for(tmp_path / work)).run()
        view = TopicView.build(meta, writer.schema)
        day = day_of(DAY0)
        first = (await read_clean(b, topic, [day])).slice(0, 1).to_pylist()[0]
        await publish_day(b, topic, day, lambda t: t.slice(1))
        report = await verify_topic(
            view, [CleanLakeSource(view, a), CleanLakeSource(view, b, name="copy")], lake=a)
        (bad,) = report.days
        assert set(bad.disagreeing) == {"rows", "checksum"} and bad.raw is not None
        assert bad.raw.keys == 0 and not report.raw_findings
        assert [k.key for k in bad.differing_keys] == [
            {"_kafka_partition": first["_kafka_partition"],
             "_kafka_offset": first["_kafka_offset"]}]


@pytest.fixture(params=["local", "s3"])
async def some_lake(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> AsyncIterator[LakeStore]:
    async with local_or_s3_lake(request, tmp_path) as store:
        yield store


async def test_a_removed_raw_file_is_a_gap_named_by_partition_and_day(
        some_lake: LakeStore, tmp_path: Path) -> None:
    topic = unique("vf")
    meta = meta_for(topic)
    async with contextlib.nullcontext(some_lake) as lake:
        writer = RawWriter(lake, topic)
        await writer.write(versions(random.Random(3), range(60), per_key=2, days=1),
                           per_file=5)
        catalog = catalog_for(lake, tmp_path)  # an S3 lake names its Iceberg catalog
        await Compactor(lake, meta, writer.schema,
                        config_for(tmp_path, catalog_uri=catalog)).run()
        view = TopicView.build(meta, writer.schema)
        cache = tmp_path / "cache"  # an S3 lake's files are read through a local cache
        assert (await verify_topic(view, [CleanLakeSource(view, lake, cache,
                                                          catalog_uri=catalog)],
                                   lake=lake, cache_dir=cache)).ok
        files = [f for f in (await raw_inventory(lake, topic)).files if f.partition == 1]
        removed = files[len(files) // 2]
        await lake.delete(removed.path)
        report = await verify_topic(
            view, [CleanLakeSource(view, lake, catalog_uri=catalog)], lake=lake)
        assert not report.ok
        (gap,) = report.raw_findings
        assert (gap.kind, gap.partition, gap.first, gap.last) == (
            "gap", 1, removed.first, removed.last)
        assert gap.days == (day_of(DAY0),)
        assert not day_report(report, day_of(DAY0)).ok
        # The last file of a partition: no gap between files, but the snapshot's watermark
        # says it was merged.
        last = [f for f in (await raw_inventory(lake, topic)).files if f.partition == 2][-1]
        await lake.delete(last.path)
        report = await verify_topic(
            view, [CleanLakeSource(view, lake, catalog_uri=catalog)], lake=lake)
        assert [(f.kind, f.partition, f.first, f.last) for f in report.raw_findings] == [
            ("gap", 1, removed.first, removed.last), ("gap", 2, last.first, last.last)]


def test_day_ranges() -> None:
    assert day_range() is None
    assert day_range("2026-11-26") == DayRange("2026-11-26", "2026-11-26")
    assert "2026-11-27" in DayRange("2026-11-26", None)
    for args, message in ((("2026-13-01",), "date must be a UTC day"),
                          (("2026-11-26", "2026-11-01"), "either a date"),
                          ((None, "2026-11-02", "2026-11-01"), "starts")):
        with pytest.raises(ValueError, match=message):
            day_range(*args)


# ------------------------------------------------------------ the real broker


def prices(rng: random.Random) -> list[dict[str, Any]]:
    """Versions of KEYS ids over three days: updates, exact duplicates, stale versions."""
    out = []
    for version in range(1, 4):
        for k in range(KEYS):
            out.append({"id": f"p{k:03d}", "version": version, "amount": rng.random() * 100,
                        "qty": rng.randint(-5, 50),
                        "updated_at": DAY0 + ((k + version) % 3) * DAY_MS + k * 1000,
                        "note": f"v{version}"})
    out += [dict(item) for item in rng.sample(out, 40)]  # producer retries
    out += [{**item, "version": 0, "note": "stale"} for item in rng.sample(out[:KEYS], 10)]
    rng.shuffle(out)
    return out


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ONEPIPE, *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


async def test_verify_end_to_end_then_three_corruptions(
        runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str) -> None:
    topic = unique("vprices")
    body = {"schema": SCHEMA, "partitions": PARTITIONS, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "updated_at",
            "checks": {"count_distinct": "key", "sum": ["amount", "qty"]},
            "archive": {"flush_records": 12, "flush_seconds": 0.3}}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()
    sent = prices(random.Random(11))
    lake_url = runtime.settings.resolved_lake_url
    async with open_lake(lake_url) as lake:
        dedup = make_agent(runtime.registry, tmp_path, unique("vdedup"), [topic])
        async with dedup, agent_for(runtime, lake, topic):
            # Chunks archived one after the other: several raw files per partition.
            for start in range(0, len(sent), 50):
                async with http.post(f"/topics/{topic}/records",
                                     json={"records": sent[start:start + 50]}) as resp:
                    assert resp.status == 200, await resp.text()
                count = min(start + 50, len(sent))

                async def archived(count: int = count) -> bool:
                    return (await raw_inventory(lake, topic)).records == count

                await wait_for(archived, timeout=60, what=f"{count} records archived")
            await asyncio.wait_for(dedup.wait_consumed(len(sent)), 60)
        meta, schema = topic_spec(runtime, topic)
        # The worker's own catalog: its /verify view reads the clean lake through it.
        catalog = CATALOGS[lake.url] = runtime.settings.resolved_catalog_uri
        await Compactor(lake, meta, schema, config_for(tmp_path, catalog_uri=catalog)).run()
        state = runtime.registry.state

        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                         catalog_uri=catalog)
        assert report.ok, report.to_json()
        assert report.systems == ("clean", "stream") and report.skipped == {}
        days = [d.day for d in report.days]
        assert days == [day_of(DAY0 + i * DAY_MS) for i in range(3)]
        assert sum(d.figures["stream"].keys for d in report.days) == KEYS
        assert sum(d.raw.records for d in report.days if d.raw) == len(sent)

        env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
        env.update(ONEPIPE_BROKER=broker, ONEPIPE_LAKE_URL=lake_url,
                   ONEPIPE_REGISTRY_TOPIC=runtime.settings.registry_topic,
                   ONEPIPE_REGISTRY_FETCH_WAIT_MS="10", ONEPIPE_DATA_DIR=str(tmp_path / "d"),
                   ONEPIPE_ICEBERG_CATALOG_URI=catalog,
                   COLUMNS="250")
        good, usage, unknown = await asyncio.gather(
            asyncio.to_thread(run_cli, env, "verify", topic),
            asyncio.to_thread(run_cli, env, "verify", topic, "--date", days[0],
                              "--from", days[0]),
            asyncio.to_thread(run_cli, env, "verify", unique("nope")))
        assert good.returncode == 0, good.stdout + good.stderr
        assert "all systems agree" in good.stdout and days[2] in good.stdout
        assert usage.returncode == 2 and "either a date" in usage.stderr
        assert unknown.returncode == 2 and "not registered" in unknown.stderr

        # 1. a row deleted from the clean lake through a new version
        victim_day = days[0]
        ids0 = (await read_clean(lake, topic, [victim_day])).column("id").to_pylist()
        await publish_day(lake, topic, victim_day, without_key(ids0[3]))
        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                         catalog_uri=catalog)
        bad = day_report(report, victim_day)
        assert not report.ok and [d.day for d in report.days if not d.ok] == [victim_day]
        assert {"rows", "keys", "sum:amount", "sum:qty", "checksum"} == set(bad.disagreeing)
        assert [(k.key, k.rows["clean"]) for k in bad.differing_keys] == [
            ({"id": ids0[3]}, "missing")]

        # 2. a value changed, the same way, on another day
        changed_day = days[1]
        ids1 = (await read_clean(lake, topic, [changed_day])).column("id").to_pylist()
        await publish_day(lake, topic, changed_day, with_note(ids1[0], "tampered"))
        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                         catalog_uri=catalog)
        bad = day_report(report, changed_day)
        assert bad.disagreeing == ("checksum",)
        assert [k.key for k in bad.differing_keys] == [{"id": ids1[0]}]
        assert "missing" not in bad.differing_keys[0].rows.values()

        # 3. an archived file removed from the raw lake
        inventory = await raw_inventory(lake, topic)
        partition = max(range(PARTITIONS),
                        key=lambda p: len([f for f in inventory.files if f.partition == p]))
        files = [f for f in inventory.files if f.partition == partition]
        assert len(files) >= 3
        removed = files[1]
        await lake.delete(removed.path)
        removed_days = {item["updated_at"].strftime("%Y-%m-%d") for item in await _source_rows(
            broker, topic, partition, removed.first, removed.last, schema)}
        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                         catalog_uri=catalog)
        (gap,) = report.raw_findings
        assert (gap.kind, gap.partition, gap.first, gap.last) == (
            "gap", partition, removed.first, removed.last)
        assert set(gap.days) == removed_days
        assert all(not day_report(report, d).ok for d in removed_days)

        cli, (status, doc) = await asyncio.gather(
            asyncio.to_thread(run_cli, env, "verify", topic),
            _get(http, f"/verify/{topic}?date={victim_day}"))
        assert cli.returncode == 1, cli.stdout + cli.stderr
        for text in (victim_day, changed_day, ids0[3], ids1[0], "missing", "checksum",
                     f"gap in partition {partition}"):
            assert text in cli.stdout, (text, cli.stdout)
        assert status == 200 and doc["ok"] is False and [d["day"] for d in doc["days"]] == [
            victim_day]
        assert doc["days"][0]["differing_keys"][0]["key"] == {"id": ids0[3]}
        status_doc = (await _get(http, "/status.json"))[1]
        assert status_doc["last_verify"]["topic"] == topic
        assert status_doc["last_verify"]["disagreeing_days"] == victim_day
        assert (await _get(http, f"/verify/{topic}?date=26-11-2026"))[0] == 400
        assert (await _get(http, f"/verify/{unique('nope')}"))[0] == 404
        as_json = await asyncio.to_thread(run_cli, env, "verify", topic, "--json",
                                          "--date", changed_day)
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["days"][0]["day"] == \
            changed_day


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def _source_rows(broker: str, topic: str, partition: int, first: int, last: int,
                       schema: Any) -> list[dict[str, Any]]:
    """The decoded source records at those offsets (what the removed file held)."""
    from onepipe.schemas.codec import decode  # noqa: PLC0415
    from tests.fixtures.topics import read_topic  # noqa: PLC0415

    records, _ = await read_topic(broker, topic, PARTITIONS)
    return [decode(r.value, lambda _id: schema, schema)[1] for r in records[partition]
            if first <= r.offset <= last]
