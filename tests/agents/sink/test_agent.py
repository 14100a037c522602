"""Sink agents against the real broker and the real PostgreSQL, MariaDB and a SQLite file.

Versions go in through the produce endpoint (duplicates, out-of-order versions,
concurrent clocks); a real dedup agent writes ``.unique``; a sink agent per topic writes
the database. The table must hold exactly the winners computed independently
(tests/fixtures/dedup.py) for every rule, stay the same when the sink re-reads
``.unique`` from the beginning, and send a refused row to ``<topic>.dlq``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from onepipe.agents.sink import SinkAgent
from onepipe.app.runtime import Runtime
from onepipe.schemas.metadata import SinkSpec
from onepipe.schemas.topic_names import dlq_topic, sink_group, unique_topic
from onepipe.sinks.db import SinkTable, open_database
from onepipe.sinks.db.sql import POSITIONS, quote
from tests.fixtures.databases import dsn_for
from tests.fixtures.dedup import ORDERS, PARTITIONS, SCHEMAS, body, expected_outcome, make_agent
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.worker_process import ONEPIPE

TIMEOUT = 90.0
ENV = "ONEPIPE_TEST_SINK_DSN"


def versions(rule: str, keys: int, seed: int) -> list[dict[str, Any]]:
    """Several versions per key, out of order, with exact duplicates."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(4):
        for k in range(keys):
            n = rng.randint(1, 5)
            item: dict[str, Any] = {"id": f"id-{k}", "payload": f"p{n}-{rng.randint(0, 9)}"}
            if rule == "max":
                item["version"] = n
            elif rule == "vector_clock":
                a = rng.randint(0, 3)
                item["clock"] = {"a": a, "b": max(n - a, 0)}
            out.append(item)
        out.extend(out[-keys // 3:])
    return out


async def declare(http: aiohttp.ClientSession, rule: str, spec: SinkSpec) -> str:
    topic = unique(f"sk-{rule.replace('_', '')}")
    body_ = {"schema": SCHEMAS[rule], "partitions": PARTITIONS, "key": ["id"],
             "order": ORDERS[rule], "sinks": [{"name": spec.name, "kind": spec.kind,
                                               "dsn_env": spec.dsn_env, "table": spec.table}]}
    async with http.put(f"/topics/{topic}/metadata", json=body_) as resp:
        assert resp.status == 200, await resp.text()
    return topic


async def produce(http: aiohttp.ClientSession, topic: str, records: list[dict[str, Any]]
                  ) -> None:
    async with http.post(f"/topics/{topic}/records", json={"records": records}) as resp:
        assert resp.status == 200, await resp.text()


def spec_for(kind: str) -> SinkSpec:
    return SinkSpec("s", kind, ENV, unique("sk").replace("-", "_"))  # type: ignore[arg-type]


def sink_for(runtime: Runtime, topic: str, spec: SinkSpec, dsn: str) -> SinkAgent:
    return SinkAgent(kafka=runtime.settings.kafka, group_id=unique(sink_group("t", topic, "s")),
                     registry=runtime.registry, topic=topic, spec=spec,
                     database=open_database(spec.kind, dsn))


async def table_rows(sink: SinkAgent) -> dict[str, dict[str, Any]]:
    table = sink._table  # noqa: SLF001 - the agent's own table, as it created it
    assert isinstance(table, SinkTable)
    rows = {}
    for fetched in await table.read():
        values = {c.name: c.from_db(sink.database.dialect)(v)
                  for c, v in zip(table.columns, fetched, strict=False)}
        rows[values["id"]] = values
    return rows


def expected_rows(rule: str, winners: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    out = {}
    for ident, value in winners.items():
        datum = body(value, rule)
        if rule == "vector_clock":  # a map reads back as key/value pairs, as Arrow has it
            datum["clock"] = sorted(datum["clock"].items())
        out[ident] = datum
    return out


def normalised(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {**v, **({"clock": sorted(v["clock"])} if "clock" in v else {})}
            for k, v in rows.items()}


async def test_each_database_holds_exactly_the_winners_of_every_rule(
        kind: str, runtime: Runtime, http: aiohttp.ClientSession, broker: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = dsn_for(kind, tmp_path)
    monkeypatch.setenv(ENV, dsn)
    specs = {rule: spec_for(kind) for rule in SCHEMAS}
    topics = {rule: await declare(http, rule, specs[rule]) for rule in SCHEMAS}
    sent = {rule: versions(rule, 30, seed=i) for i, rule in enumerate(SCHEMAS)}
    half = {rule: len(v) // 2 for rule, v in sent.items()}
    for rule, topic in topics.items():
        await produce(http, topic, sent[rule][:half[rule]])
    sinks = {rule: sink_for(runtime, topics[rule], specs[rule], dsn) for rule in SCHEMAS}
    async with make_agent(runtime.registry, tmp_path / "dedup", unique("sk-dedup"),
                          list(topics.values())) as dedup:
        for sink in sinks.values():
            await sink.start()
        try:
            for rule, topic in topics.items():  # the rest while the sinks run
                await produce(http, topic, sent[rule][half[rule]:])
            await asyncio.wait_for(dedup.wait_consumed(sum(len(v) for v in sent.values())),
                                   TIMEOUT)
            for rule, topic in topics.items():
                _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
                await asyncio.wait_for(sinks[rule].wait_written(marks), TIMEOUT)
                source, _ = await read_topic(broker, topic, PARTITIONS)
                winners = expected_outcome(rule, source).winners
                assert normalised(await table_rows(sinks[rule])) == \
                    expected_rows(rule, winners), rule
                assert sinks[rule].metrics.state == "running"
            before = {rule: await table_rows(sink) for rule, sink in sinks.items()}
        finally:
            for sink in sinks.values():
                await sink.stop()
    # Re-read .unique from the beginning (positions gone): older versions pass by again
    # and never replace the winners.
    for rule, topic in topics.items():
        again = sink_for(runtime, topic, specs[rule], dsn)
        await again.database.start()
        await again.database.ddl([f"DELETE FROM {quote(again.database.dialect, POSITIONS)} "
                                  f"WHERE topic = '{topic}'"])
        async with again:
            _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
            await asyncio.wait_for(again.wait_written(marks), TIMEOUT)
            assert await table_rows(again) == before[rule]


@pytest.mark.parametrize("kind", ["postgres"])
async def test_a_refused_row_goes_to_the_dead_letter_topic(
        kind: str, runtime: Runtime, http: aiohttp.ClientSession, broker: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = dsn_for(kind, tmp_path)
    monkeypatch.setenv(ENV, dsn)
    spec = spec_for(kind)
    topic = await declare(http, "first", spec)
    # PostgreSQL text cannot hold NUL, which Avro strings can.
    await produce(http, topic, [{"id": "ok-1", "payload": "fine"},
                                {"id": "bad", "payload": "nul\u0000inside"},
                                {"id": "ok-2", "payload": "fine too"}])
    async with make_agent(runtime.registry, tmp_path / "dedup", unique("sk-dedup"),
                          [topic]) as dedup, sink_for(runtime, topic, spec, dsn) as sink:
        await asyncio.wait_for(dedup.wait_consumed(3), TIMEOUT)
        _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
        await asyncio.wait_for(sink.wait_written(marks), TIMEOUT)
        assert sorted(await table_rows(sink)) == ["ok-1", "ok-2"]
        assert sink.metrics.rejected == 1
    dead, _ = await read_topic(broker, dlq_topic(topic), 1)
    (record,) = dead[0]
    headers = dict(record.headers)
    assert body(record.value, "first")["id"] == "bad"
    assert headers["onepipe.sink"] == b"s"
    assert b"0x00" in headers["onepipe.reason"] or b"\\x00" in headers["onepipe.reason"]
    assert "onepipe.source" in headers and "onepipe.unique" in headers
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")},
           "ONEPIPE_BROKER": broker, "ONEPIPE_DATA_DIR": str(tmp_path / "cli")}
    cli = await asyncio.to_thread(subprocess.run, [ONEPIPE, "dlq", "ls", topic], env=env,
                                  capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "sink=s" in cli.stdout and "1 dead letter(s)" in cli.stdout


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_a_new_schema_version_adds_its_field_as_a_column(
        kind: str, runtime: Runtime, http: aiohttp.ClientSession, broker: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = dsn_for(kind, tmp_path)
    monkeypatch.setenv(ENV, dsn)
    spec = spec_for(kind)
    topic = await declare(http, "max", spec)
    await produce(http, topic, [{"id": "a", "version": 1, "payload": "one"}])
    async with make_agent(runtime.registry, tmp_path / "dedup", unique("sk-dedup"),
                          [topic]) as dedup, sink_for(runtime, topic, spec, dsn) as sink:
        await asyncio.wait_for(dedup.wait_consumed(1), TIMEOUT)
        _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
        await asyncio.wait_for(sink.wait_written(marks), TIMEOUT)
        v2 = {**SCHEMAS["max"], "fields": [*SCHEMAS["max"]["fields"],
                                          {"name": "colour", "type": ["null", "string"],
                                           "default": None}]}
        async with http.post(f"/subjects/{topic}-value/versions",
                             json={"schema": json.dumps(v2)}) as resp:
            assert resp.status == 200, await resp.text()
        await produce(http, topic, [{"id": "a", "version": 2, "payload": "two",
                                     "colour": "red"},
                                    {"id": "b", "version": 1, "payload": "b", "colour": None}])
        await asyncio.wait_for(dedup.wait_consumed(3), TIMEOUT)
        _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
        await asyncio.wait_for(sink.wait_written(marks), TIMEOUT)
        rows = await table_rows(sink)
    assert any(c.startswith("added column colour") for c in sink.metrics.changes)
    assert {k: (v["version"], v["payload"], v["colour"]) for k, v in rows.items()} == {
        "a": (2, "two", "red"), "b": (1, "b", None)}


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_a_position_beyond_the_log_stops_the_sink_and_says_why(
        kind: str, runtime: Runtime, http: aiohttp.ClientSession, broker: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database followed another log (a recreated topic, a broker that lost its log):
    the sink must not wait silently for offsets that will never come."""
    dsn = dsn_for(kind, tmp_path)
    monkeypatch.setenv(ENV, dsn)
    spec = spec_for(kind)
    topic = await declare(http, "first", spec)
    await produce(http, topic, [{"id": "a", "payload": "one"}])
    async with make_agent(runtime.registry, tmp_path / "dedup", unique("sk-dedup"),
                          [topic]) as dedup:
        await asyncio.wait_for(dedup.wait_consumed(1), TIMEOUT)
        sink = sink_for(runtime, topic, spec, dsn)
        async with sink:
            await wait_for(lambda: sink.metrics.state == "running", timeout=TIMEOUT,
                           what="the sink to prepare its table")
            table = sink._table  # noqa: SLF001 - the agent's own table
            assert table is not None
            await table.write([], spec.name, topic, {p: 500 for p in range(PARTITIONS)})
        again = sink_for(runtime, topic, spec, dsn)
        async with again:
            await wait_for(lambda: again.metrics.state == "failing", timeout=TIMEOUT,
                           what="the sink to notice its position is beyond the log")
    assert "ends at" in (again.metrics.last_error or "")
    assert "@500" in (again.metrics.last_error or "")


@pytest.mark.parametrize("kind", ["postgres"])
async def test_partitions_moving_between_two_sink_members_lose_and_repeat_nothing(
        kind: str, runtime: Runtime, http: aiohttp.ClientSession, broker: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = dsn_for(kind, tmp_path)
    monkeypatch.setenv(ENV, dsn)
    spec = spec_for(kind)
    topic = await declare(http, "max", spec)
    sent = versions("max", 40, seed=21)
    thirds = [sent[i * len(sent) // 3:(i + 1) * len(sent) // 3] for i in range(3)]
    group = unique("sk-rebalance")

    def member() -> SinkAgent:
        return SinkAgent(kafka=runtime.settings.kafka, group_id=group,
                         registry=runtime.registry, topic=topic, spec=spec,
                         database=open_database(spec.kind, dsn))

    async def written(agent: SinkAgent, *others: SinkAgent) -> None:
        """Every .unique partition committed in the database by one of the members."""
        _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)

        def done() -> bool:
            best = {p: max(a.metrics.positions.get(p, 0) for a in (agent, *others))
                    for p in marks}
            return all(best[p] >= m for p, m in marks.items())

        await wait_for(done, timeout=TIMEOUT, what="the members to write every partition")

    async with make_agent(runtime.registry, tmp_path / "dedup", unique("sk-dedup"),
                          [topic]) as dedup:
        first, second = member(), member()
        async with first:
            await produce(http, topic, thirds[0])
            await asyncio.wait_for(dedup.wait_consumed(len(thirds[0])), TIMEOUT)
            await written(first)
            async with second:  # joins: the partitions are split between the two
                await wait_for(lambda: second.assigned.is_set(), timeout=TIMEOUT,
                               what="the second member's assignment")
                await produce(http, topic, thirds[1])
                await asyncio.wait_for(dedup.wait_consumed(len(sent) - len(thirds[2])),
                                       TIMEOUT)
                await written(first, second)
                # Each shows the positions of its own partitions only: none went stale
                # in the member that gave it up (/sinks combines them).
                assert not set(first.metrics.positions) & set(second.metrics.positions)
            # The second leaves: its partitions come back to the first.
            await produce(http, topic, thirds[2])
            await asyncio.wait_for(dedup.wait_consumed(len(sent)), TIMEOUT)
            await written(first)
            rows = await table_rows(first)
    source, _ = await read_topic(broker, topic, PARTITIONS)
    assert normalised(rows) == expected_rows("max", expected_outcome("max", source).winners)
