"""The streaming checksum table: the fold rule, the store, and the agent on the real broker.

The expected figures are computed here with ``onepipe.schemas.figures.figures`` over the winners
read back from ``<topic>.unique`` (last message per key, decoded with fastavro) grouped
by day -- never through the table's own fold; the expected raw record counts from the
source topic read back (every record, duplicates and losers included) placed by day.
"""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import io
import logging
import random
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from aiokafka import TopicPartition

from onepipe.agents.checksum import agent as checksum_agent
from onepipe.agents.checksum.agent import ChecksumAgent
from onepipe.agents.checksum.raw import RawPlacer
from onepipe.agents.compact import Compactor
from onepipe.agents.verify.checksums import ChecksumTableSource
from onepipe.agents.verify.compare import verify_registered
from onepipe.agents.verify.sources import TopicView
from onepipe.agents.verify.stream import StreamSource
from onepipe.app.runtime import Runtime
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.checksum import row_hashes
from onepipe.schemas.checksum_spec import ChecksumSpec, make_spec
from onepipe.schemas.codec import encode
from onepipe.schemas.figures import DayFigures, figures
from onepipe.schemas.metadata import TopicMetadata
from onepipe.schemas.partition_day import (
    day_name,
    day_number,
    hour_name,
    partition_days,
    partition_hours,
)
from onepipe.schemas.topic_names import unique_topic
from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.tables.checksum import (
    ChecksumStore,
    Contribution,
    RawCount,
    RawCountStore,
    contributions,
    count_raw,
    fold,
)
from onepipe.tables.kafka import ensure_topic
from tests.fixtures.archive import agent_for
from tests.fixtures.compact import DAY0, DAY_MS, config_for, read_clean, topic_spec
from tests.fixtures.dedup import make_agent
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.verify import SCHEMA, day_of, day_report, publish_day, with_note

PARTITIONS = 3
KEYS = 40
TIMEOUT = 30.0
PARSED = fastavro.parse_schema(SCHEMA, named_schemas={})

# ------------------------------------------------------------ the rule, no broker

_ARROW = pa.schema([("id", pa.string()), ("amount", pa.float64()), ("qty", pa.int64()),
                    ("price", pa.decimal128(12, 3)), ("t", pa.timestamp("ms", tz="UTC"))])
_SPEC = make_spec(_ARROW, ["id"], ["amount", "qty", "price"])


def _rows(rng: random.Random, n: int, keys: int = 50) -> list[dict[str, Any]]:
    amounts = [1e-310, -0.0, float("inf"), float("-inf"), float("nan"), 1e300, 0.1]
    return [{"id": f"k{rng.randrange(keys)}",
             "amount": rng.choice([*amounts, rng.random() * 1e6, None]),
             "qty": rng.choice([rng.randint(-2**62, 2**62), None]),
             "price": decimal.Decimal(rng.randint(-10**11, 10**11)).scaleb(-3),
             "t": rng.randrange(0, 5 * DAY_MS)} for _ in range(n)]


def _winners(rows: Sequence[dict[str, Any]], spec: ChecksumSpec
             ) -> list[tuple[bytes, Contribution | None]]:
    table = pa.Table.from_pylist(list(rows), _ARROW)
    days = partition_days(table.column("t")).cast(pa.int32()).to_pylist()
    hours = partition_hours(table.column("t")).to_pylist()
    made = contributions(table, spec, row_hashes(table, spec).to_pylist(), days, hours)
    return [(r["id"].encode(), c) for r, c in zip(rows, made, strict=True)]


def _by_day(rows: Sequence[dict[str, Any]], spec: ChecksumSpec, hours: bool = False
            ) -> dict[int, DayFigures]:
    table = pa.Table.from_pylist(list(rows), _ARROW)
    days = (partition_hours(table.column("t")) if hours
            else partition_days(table.column("t")).cast(pa.int32()))
    return {n: figures(table.filter(pc.equal(days, n)), spec)
            for n in pc.unique(days).to_pylist()}


def _days_of_hours(hours: dict[str, DayFigures]) -> dict[str, DayFigures]:
    """Hour figures summed into their days (``YYYY-MM-DDTHH`` -> ``YYYY-MM-DD``)."""
    out: dict[str, DayFigures] = {}
    for hour, f in hours.items():
        day = hour.partition("T")[0]
        out[day] = out[day] + f if day in out else f
    return out


def test_the_fold_equals_the_figures_of_the_winners_per_day() -> None:
    for seed in range(5):
        rng = random.Random(seed)
        held: dict[bytes, Contribution | None] = {}
        days: dict[int, DayFigures] = {}
        hours: dict[int, DayFigures] = {}
        last: dict[str, dict[str, Any]] = {}
        for _ in range(8):
            batch = _rows(rng, 60)  # keys repeat within a batch: only the last counts
            winners = _winners(batch, _SPEC)
            result = fold(_SPEC, days, {k: held.get(k) for k, _ in winners}, winners, 0, hours)
            held.update(result.entries)
            days = {d: f for d, f in {**days, **result.days}.items() if d not in result.dropped}
            hours = {h: f for h, f in {**hours, **result.hours}.items()
                     if h not in result.dropped_hours}
            last.update({r["id"]: r for r in batch})
        assert days == _by_day(list(last.values()), _SPEC), seed
        assert hours == _by_day(list(last.values()), _SPEC, hours=True), seed
        named = _days_of_hours({hour_name(h): f for h, f in hours.items()})
        assert named == {day_name(d): f for d, f in days.items()}, seed


def test_retention_drops_old_days_for_good() -> None:
    rng = random.Random(9)
    batch = [dict(r, id=f"k{i}", t=DAY_MS * (i % 4)) for i, r in enumerate(_rows(rng, 20))]
    winners = _winners(batch, _SPEC)
    first = fold(_SPEC, {}, {}, winners, cutoff=0)
    assert sorted(first.days) == [0, 1, 2, 3]
    # Day 0 falls out; then its keys move to day 3: day 0 is not resurrected negative.
    moved = [dict(r, t=3 * DAY_MS) for r in batch]
    second = fold(_SPEC, first.days, dict(first.entries), _winners(moved, _SPEC), cutoff=1)
    assert 0 in second.dropped and 0 not in second.days
    assert second.days[3] == _by_day(moved, _SPEC)[3]
    assert {1, 2} <= second.dropped  # emptied by the move


def test_the_store_keeps_a_batch_and_its_offset_together(tmp_path: Path) -> None:
    winners = _winners(_rows(random.Random(3), 30), _SPEC)
    result = fold(_SPEC, {}, {}, winners, 0)
    with ChecksumStore(tmp_path / "t" / "0") as store:
        assert store.applied_offset == 0 and store.days == {}
        store.apply(result, 30)
    with ChecksumStore(tmp_path / "t" / "0") as store:
        assert store.applied_offset == 30 and store.days == result.days
        assert store.hours == result.hours and len(result.hours) > len(result.days)
        keys = [k for k, _ in winners]
        assert store.get_many(keys) == {k: result.entries[k] for k in keys}
        assert store.get_many([b"nope"]) == {b"nope": None}


def test_raw_counts_add_up_expire_and_persist_with_their_offset(tmp_path: Path) -> None:
    days, dropped = count_raw({}, [3, 3, 5, 1], [False, True, False, False], cutoff=2)
    assert days == {3: RawCount(2, 1), 5: RawCount(1, 0)} and dropped == frozenset()
    store = RawCountStore(tmp_path / "raw" / "0")
    store.apply(days, dropped, 4)
    more, _ = count_raw(store.days, [5], [False], cutoff=2)
    store.apply(more, (), 5)
    store.close()
    store.close()
    again = RawCountStore(tmp_path / "raw" / "0")
    try:
        assert again.applied_offset == 5
        assert again.days == {3: RawCount(2, 1), 5: RawCount(2, 0)}
        kept, gone = count_raw(again.days, [], [], cutoff=4)
        assert kept == {} and gone == {3}
    finally:
        again.close()


def test_raw_placement_decodes_only_the_time_and_counts_the_undecodable() -> None:
    reader = parse_schema(SCHEMA)
    meta = TopicMetadata(topic="raw", key=("id",), partition_time="updated_at")
    view = TopicView.build(meta, reader)
    at = DAY0 + 2 * DAY_MS + 5
    good = encode(7, reader, {"id": "a", "version": 1, "amount": 1.0, "qty": 1,
                              "updated_at": at, "note": "x"})

    def record(value: bytes | None, timestamp: int) -> Any:
        return type("R", (), {"value": value, "timestamp": timestamp})()

    records = [record(good, 0), record(b"\x00\x00\x00\x00\x07\xff", DAY0),
               record(None, DAY0 + DAY_MS), record(b"junk", -1)]
    placed = RawPlacer(view, reader).place(lambda _id: reader, records).pairs()
    first = day_number(day_of(DAY0))
    assert placed == [(first + 2, False), (first, True), (first + 1, True), (0, True)]
    kafka = TopicView.build(TopicMetadata(topic="raw", key=("id",)), reader)
    assert RawPlacer(kafka, reader).place(lambda _id: reader, records[:2]).pairs() == [
        (0, False), (first, False)]  # the body is not decoded for a Kafka partition time


# ------------------------------------------------------------ the real broker


def _prices(rng: random.Random, versions: range) -> list[dict[str, Any]]:
    """Versions of KEYS ids: each version moves its key to another day; retries too."""
    out = [{"id": f"p{k:03d}", "version": v, "amount": rng.random() * 100,
            "qty": rng.randint(-5, 50), "updated_at": DAY0 + ((k + v) % 3) * DAY_MS + k * 600_000,
            "note": f"v{v}"} for v in versions for k in range(KEYS)]
    out += [dict(item) for item in rng.sample(out, 15)]  # producer retries
    rng.shuffle(out)
    return out


async def _expected(broker: str, view: TopicView, hours: bool = False
                    ) -> tuple[dict[str, DayFigures], int]:
    """figures() over .unique's last message per key, per day (or hour); .unique's length."""
    unique_records, watermarks = await read_topic(broker, unique_topic(view.meta.topic),
                                                  PARTITIONS)
    last: dict[bytes, bytes] = {}
    for records in unique_records.values():
        for r in records:
            last[r.key] = r.value
    rows = [fastavro.schemaless_reader(io.BytesIO(v[5:]), PARSED, None) for v in last.values()]
    table = pa.Table.from_pylist(rows, view.spec.schema)
    times = table.column("updated_at")
    days = partition_hours(times) if hours else partition_days(times).cast(pa.int32())
    name = hour_name if hours else day_name
    expected = {name(n): figures(table.filter(pc.equal(days, n)), view.spec)
                for n in pc.unique(days).to_pylist()}
    return expected, sum(watermarks.values())


async def _expected_raw(broker: str, view: TopicView
                        ) -> tuple[dict[str, RawCount], int, dict[tuple[int, int], str]]:
    """Every source record placed in its day: counts per day, the total, (p, offset) -> day."""
    source, watermarks = await read_topic(broker, view.meta.topic, PARTITIONS)
    flat = [r for records in source.values() for r in records]
    rows = [fastavro.schemaless_reader(io.BytesIO(r.value[5:]), PARSED, None) for r in flat]
    times = pa.Table.from_pylist(rows, view.spec.schema).column("updated_at")
    days = [day_name(d) for d in partition_days(times).cast(pa.int32()).to_pylist()]
    counts = {day: RawCount(n, 0) for day, n in Counter(days).items()}
    return counts, sum(watermarks.values()), {
        (r.partition, r.offset): d for r, d in zip(flat, days, strict=True)}


async def _caught_up(agent: ChecksumAgent, broker: str, topic: str) -> None:
    _, watermarks = await read_topic(broker, unique_topic(topic), PARTITIONS)
    await asyncio.wait_for(agent.wait_applied(topic, watermarks), TIMEOUT)
    _, source = await read_topic(broker, topic, PARTITIONS)
    await asyncio.wait_for(agent.wait_counted(topic, source), TIMEOUT)


async def _post(http: aiohttp.ClientSession, topic: str, records: list[dict[str, Any]]
                ) -> None:
    async with http.post(f"/topics/{topic}/records", json={"records": records}) as resp:
        assert resp.status == 200, await resp.text()


async def test_checksum_table_follows_winners_restarts_and_verifies(
        runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = unique("cks")
    # The per-winner fold runs in the batch's worker thread, never on the event loop.
    loop_thread = threading.get_ident()  # the test runs on the loop the agents run on
    folded_on: set[int] = set()

    def recording_fold(*args: Any, **kwargs: Any) -> Any:
        if args[3]:  # winners (an assignment's expiry pass folds none, on the loop)
            folded_on.add(threading.get_ident())
        return fold(*args, **kwargs)

    monkeypatch.setattr(checksum_agent, "fold", recording_fold)
    body = {"schema": SCHEMA, "partitions": PARTITIONS, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "updated_at",
            "checks": {"count_distinct": "key", "sum": ["amount", "qty"]},
            "archive": {"flush_records": 1000, "flush_seconds": 0.2}}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()
    rng = random.Random(5)
    phase1, phase2 = _prices(rng, range(1, 3)), _prices(rng, range(3, 4))
    phase2 += [{**item, "version": 0, "note": "stale"} for item in phase1[:10]]
    meta, schema = topic_spec(runtime, topic)
    view = TopicView.build(meta, schema)
    state = runtime.registry.state

    def checksums(data_dir: Path, client: Literal["aiokafka", "librdkafka"] = "aiokafka",
                  **kwargs: Any) -> ChecksumAgent:
        kafka = dataclasses.replace(kafka_for(broker), consumer_client=client)
        return ChecksumAgent(kafka=kafka, group_id=unique("cks-group"),
                             registry=runtime.registry, data_dir=data_dir, topics=[topic],
                             **kwargs)

    def published() -> ChecksumTableSource:
        stream = StreamSource(view, kafka_for(broker), schema, state.schema_by_id)
        return ChecksumTableSource(view, kafka_for(broker), stream)

    async with open_lake(runtime.settings.resolved_lake_url) as lake:
        dedup = make_agent(runtime.registry, tmp_path / "dedup", unique("cks-dedup"), [topic])
        async with dedup, agent_for(runtime, lake, topic):
            async with checksums(tmp_path / "one") as first:
                await _post(http, topic, phase1)
                await asyncio.wait_for(dedup.wait_consumed(len(phase1)), TIMEOUT)
                await _caught_up(first, broker, topic)
                expected1, length1 = await _expected(broker, view)
                raw1, sources1, _ = await _expected_raw(broker, view)
                assert sum(f.keys for f in expected1.values()) == KEYS
                assert first.day_figures(topic) == expected1
                assert first.metrics.folded == length1
                assert sum(c.records for c in raw1.values()) == sources1 == len(phase1)
                assert first.raw_counts(topic) == raw1
                assert first.metrics.counted == sources1
                hours1 = first.hour_figures(topic)
                assert len(hours1) > len(expected1) and _days_of_hours(hours1) == expected1
                assert hours1 == (await _expected(broker, view, hours=True))[0]
                table = published()
                assert await table.figures(None) == expected1
                assert table.raw_counts == raw1 and table.hour_figures == hours1

            # Stopped while the stream goes on: every winner moves to another day.
            await _post(http, topic, phase2)
            await asyncio.wait_for(dedup.wait_consumed(len(phase1) + len(phase2)), TIMEOUT)
            expected2, length2 = await _expected(broker, view)
            raw2, sources2, placed = await _expected_raw(broker, view)
            assert expected2 != expected1 and length2 > length1 and raw2 != raw1

            async with checksums(tmp_path / "one") as again:  # same data dir: the tail only
                await _caught_up(again, broker, topic)
                assert again.metrics.folded == length2 - length1
                assert again.metrics.counted == sources2 - sources1
                assert again.day_figures(topic) == expected2
                assert again.raw_counts(topic) == raw2
                assert _days_of_hours(again.hour_figures(topic)) == expected2
            table = published()
            assert await table.figures(None) == expected2 and table.raw_counts == raw2
            assert _days_of_hours(table.hour_figures) == expected2

            async with checksums(tmp_path / "fresh") as fresh:  # rebuilt from offset 0
                await _caught_up(fresh, broker, topic)
                assert fresh.metrics.folded == length2
                assert fresh.metrics.counted == sources2
                assert fresh.day_figures(topic) == expected2
                assert fresh.raw_counts(topic) == raw2
                assert _days_of_hours(fresh.hour_figures(topic)) == expected2
                hours2 = fresh.hour_figures(topic)
            # The librdkafka consumer hands records over as columns: the same figures.
            async with checksums(tmp_path / "columns", client="librdkafka") as columns:
                await _caught_up(columns, broker, topic)
                assert columns.metrics.folded == length2
                assert columns.metrics.counted == sources2
                assert columns.day_figures(topic) == expected2
                assert columns.raw_counts(topic) == raw2
                assert columns.hour_figures(topic) == hours2
            total = len(phase1) + len(phase2)

            async def archived() -> bool:
                return (await raw_inventory(lake, topic)).records == total

            await wait_for(archived, timeout=TIMEOUT, what=f"{total} records archived")
        await Compactor(lake, meta, schema, config_for(tmp_path)).run()

        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker))
        assert report.ok, report.to_json()
        assert report.systems == ("clean", "stream", "checksum")
        assert {d.day: d.figures["checksum"] for d in report.days} == expected2
        for d in report.days:
            (raw_check,) = [c for c in d.checks if c.figure == "raw_records"]
            assert raw_check.agree
            assert raw_check.values == {"raw": raw2[d.day].records,
                                        "checksum": raw2[d.day].records}
        assert folded_on and loop_thread not in folded_on

        day = sorted(expected2)[1]
        victim = (await read_clean(lake, topic, [day])).column("id").to_pylist()[2]
        await publish_day(lake, topic, day, with_note(victim, "tampered"))
        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker))
        assert not report.ok and [d.day for d in report.days if not d.ok] == [day]
        bad = day_report(report, day)
        assert bad.disagreeing == ("checksum",)
        (check,) = [c for c in bad.checks if c.figure == "checksum"]
        assert check.values["checksum"] == check.values["stream"] != check.values["clean"]
        assert [k.key for k in bad.differing_keys] == [{"id": victim}]

        # A raw file removed from the lake: its days' raw record counts disagree.
        files = sorted((await raw_inventory(lake, topic)).files,
                       key=lambda f: (f.partition, f.first))
        removed = files[len(files) // 2]
        await lake.delete(removed.path)
        lost = Counter(placed[(removed.partition, o)]
                       for o in range(removed.first, removed.last + 1))
        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker))
        assert not report.ok
        for d in report.days:
            (raw_check,) = [c for c in d.checks if c.figure == "raw_records"]
            assert raw_check.values == {"raw": raw2[d.day].records - lost[d.day],
                                        "checksum": raw2[d.day].records}, d.day
            assert ("raw_records" in d.disagreeing) == (d.day in lost)

        # Retention: a clock three days after the first day keeps one day (of the three),
        # in the table and in what verify reads.
        days = sorted(expected2)
        later = (day_number(days[0]) + 3) * 86_400.0
        async with checksums(tmp_path / "fresh", retention_days=1, clock=lambda: later
                             ) as kept:
            await _caught_up(kept, broker, topic)
            assert kept.metrics.folded == 0 and kept.metrics.expired == 2 * PARTITIONS
            assert kept.day_figures(topic) == {days[2]: expected2[days[2]]}
            assert kept.raw_counts(topic) == {days[2]: raw2[days[2]]}
            assert set(_days_of_hours(kept.hour_figures(topic))) == {days[2]}
        table = published()
        assert await table.figures(None) == {days[2]: expected2[days[2]]}
        assert table.raw_counts == {days[2]: raw2[days[2]]}
        assert _days_of_hours(table.hour_figures) == {days[2]: expected2[days[2]]}


async def _recreate(broker: str, *topics: str) -> None:
    """Delete ``topics`` and create them again: every partition starts at offset 0."""
    kafka = kafka_for(broker)
    admin = kafka.admin()
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()
    for name in topics:
        await ensure_topic(kafka, name, partitions=PARTITIONS, replication_factor=1)


async def test_stores_ahead_of_a_recreated_topic_are_rebuilt_from_the_new_log(
        runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str,
        caplog: pytest.LogCaptureFixture) -> None:
    topic = unique("cks-reset")
    body = {"schema": SCHEMA, "partitions": PARTITIONS, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "updated_at",
            "checks": {"count_distinct": "key", "sum": ["amount", "qty"]}}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()
    meta, schema = topic_spec(runtime, topic)
    view = TopicView.build(meta, schema)
    rng = random.Random(11)
    # Three versions of every key over three days, one after the other: three winners each.
    old = [_prices(rng, range(v, v + 1)) for v in range(1, 4)]
    # The new log: one version of every key, all on a day the old log never had.
    new = [{**item, "updated_at": DAY0 + 5 * DAY_MS + i} for i, item in
           enumerate(_prices(rng, range(1, 2)))]

    def checksums() -> ChecksumAgent:
        return ChecksumAgent(kafka=kafka_for(broker), group_id=unique("cks-group"),
                             registry=runtime.registry, data_dir=tmp_path / "cks",
                             topics=[topic])

    async with make_agent(runtime.registry, tmp_path / "dedup", unique("cks-dedup"),
                          [topic]) as dedup, checksums() as first:
        for sent, records in enumerate(old):
            await _post(http, topic, records)
            await asyncio.wait_for(dedup.wait_consumed(sum(map(len, old[:sent + 1]))),
                                   TIMEOUT)
        await _caught_up(first, broker, topic)
        old_days = set(first.day_figures(topic))
        assert len(old_days) == 3 and first.metrics.rebuilt == 0
        applied = dict(first.metrics.positions)

    await _recreate(broker, topic, unique_topic(topic))
    caplog.set_level(logging.WARNING, logger="onepipe.agents.checksum.agent")
    async with make_agent(runtime.registry, tmp_path / "dedup-new", unique("cks-dedup"),
                          [topic]) as dedup:
        await _post(http, topic, new)
        await asyncio.wait_for(dedup.wait_consumed(len(new)), TIMEOUT)
        expected, length = await _expected(broker, view)
        raw, sources, _ = await _expected_raw(broker, view)
        _, ends = await read_topic(broker, unique_topic(topic), PARTITIONS)
        _, source_ends = await read_topic(broker, topic, PARTITIONS)
        # Every store of the old log is ahead of its partition's new end.
        assert all(applied[TopicPartition(unique_topic(topic), p)] > end
                   for p, end in ends.items())
        assert all(applied[TopicPartition(topic, p)] > end for p, end in source_ends.items())
        async with checksums() as again:  # the same data dir
            await _caught_up(again, broker, topic)
            assert again.metrics.rebuilt == 2 * PARTITIONS
            assert again.metrics.folded == length and again.metrics.counted == sources
            assert again.day_figures(topic) == expected
            assert set(expected) == {day_name(day_number(day_of(DAY0)) + 5)}
            assert again.raw_counts(topic) == raw
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    tp = TopicPartition(unique_topic(topic), 0)
    assert (f"checksums {tp.topic}[0]: the store has applied up to @{applied[tp]} but the "
            f"partition ends at @{ends[0]}") in "\n".join(warnings)
    # What verify reads: the old log's days are withdrawn, the new log's published.
    stream = StreamSource(view, kafka_for(broker), schema, runtime.registry.state.schema_by_id)
    table = ChecksumTableSource(view, kafka_for(broker), stream)
    assert await table.figures(None) == expected
    assert table.raw_counts == raw
