"""``verify`` covers online sinks: the same figures from the table, and the keys that differ.

Prices over three days go through the endpoint; the archive, dedup agent and a
PostgreSQL sink run; the compactor builds the clean lake. Then every system agrees, until
a row is changed by hand in the sink's table (verify names the sink, the day and the key,
and ``onepipe verify`` exits 1) and until a row is deleted there.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from onepipe.agents.compact import Compactor
from onepipe.agents.sink import SinkAgent
from onepipe.agents.verify import verify_registered
from onepipe.app.runtime import Runtime
from onepipe.schemas.metadata import SinkSpec
from onepipe.schemas.topic_names import unique_topic
from onepipe.sinks.db import open_database
from onepipe.sinks.lake import open_lake
from onepipe.sinks.lake.iceberg import embedded_catalog_uri
from onepipe.sinks.lake.inventory import raw_inventory
from tests.fixtures.archive import agent_for
from tests.fixtures.compact import DAY0, DAY_MS, config_for, topic_spec
from tests.fixtures.databases import PG_DSN
from tests.fixtures.dedup import make_agent
from tests.fixtures.services import kafka_for, unique, wait_for
from tests.fixtures.topics import read_topic
from tests.fixtures.verify import SCHEMA, day_of, day_report
from tests.fixtures.worker_process import ONEPIPE

PARTITIONS = 2
KEYS = 40
ENV = "ONEPIPE_TEST_VERIFY_PG_DSN"


def prices(rng: random.Random) -> list[dict[str, Any]]:
    out = [{"id": f"p{k:03d}", "version": version, "amount": rng.random() * 100,
            "qty": rng.randint(-5, 50), "updated_at": DAY0 + ((k + version) % 3) * DAY_MS,
            "note": f"v{version}"} for version in range(1, 4) for k in range(KEYS)]
    out += [{**item, "version": 0, "note": "stale"} for item in rng.sample(out[:KEYS], 10)]
    rng.shuffle(out)
    return out


async def sql(statement: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_verify_compares_the_sink_and_names_the_keys_it_changed(
        runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str) -> None:
    topic, table = unique("vsink"), unique("vsink").replace("-", "_")
    spec = SinkSpec("pg", "postgres", ENV, table)
    body = {"schema": SCHEMA, "partitions": PARTITIONS, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "updated_at",
            "checks": {"count_distinct": "key", "sum": ["amount", "qty"]},
            "archive": {"flush_records": 20, "flush_seconds": 0.3},
            "sinks": [{"name": "pg", "kind": "postgres", "dsn_env": ENV, "table": table}]}
    async with http.put(f"/topics/{topic}/metadata", json=body) as resp:
        assert resp.status == 200, await resp.text()
    sent = prices(random.Random(3))
    environ = {ENV: PG_DSN}
    lake_url = runtime.settings.resolved_lake_url
    async with open_lake(lake_url) as lake:
        sink = SinkAgent(kafka=runtime.settings.kafka, group_id=unique("vsink"),
                         registry=runtime.registry, topic=topic, spec=spec,
                         database=open_database("postgres", PG_DSN))
        dedup = make_agent(runtime.registry, tmp_path, unique("vdedup"), [topic])
        async with dedup, sink, agent_for(runtime, lake, topic):
            async with http.post(f"/topics/{topic}/records", json={"records": sent}) as resp:
                assert resp.status == 200, await resp.text()

            async def archived() -> bool:
                return (await raw_inventory(lake, topic)).records == len(sent)

            await wait_for(archived, timeout=60, what="every record archived")
            await asyncio.wait_for(dedup.wait_consumed(len(sent)), 60)
            _, marks = await read_topic(broker, unique_topic(topic), PARTITIONS)
            await asyncio.wait_for(sink.wait_written(marks), 60)
        meta, schema = topic_spec(runtime, topic)
        await Compactor(lake, meta, schema, config_for(tmp_path)).run()
        state = runtime.registry.state

        report = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                         environ=environ)
        assert report.ok, report.to_json()
        assert report.systems == ("clean", "stream", "pg")
        assert sum(d.figures["pg"].keys for d in report.days) == KEYS
        unset = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                        environ={})
        assert unset.skipped["pg"] == f"environment variable {ENV} is not set here"

        await sql(f"UPDATE \"{table}\" SET note = 'by hand' WHERE id = 'p000'")
        changed = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                          environ=environ)
        changed_day = [d for d in changed.days if not d.ok]
        # p000's winner is version 3, placed on DAY0 + ((0 + 3) % 3) days.
        assert [d.day for d in changed_day] == [day_of(DAY0)]
        assert [k.key for k in changed_day[0].differing_keys] == [{"id": "p000"}]
        assert changed_day[0].differing_keys[0].rows["pg"] != \
            changed_day[0].differing_keys[0].rows["clean"]

        await sql(f"DELETE FROM \"{table}\" WHERE id = 'p001'")
        deleted = await verify_registered(topic, state, lake=lake, kafka=kafka_for(broker),
                                          environ=environ)
        p001 = [k for d in deleted.days for k in d.differing_keys if k.key == {"id": "p001"}]
        assert len(p001) == 1 and p001[0].rows["pg"] == "missing"
        # p001's winner (version 3) lives on DAY0 + ((1 + 3) % 3) days.
        assert "rows" in day_report(deleted, day_of(DAY0 + DAY_MS)).disagreeing

        env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
        env.update(ONEPIPE_BROKER=broker, ONEPIPE_LAKE_URL=lake_url,
                   ONEPIPE_REGISTRY_TOPIC=runtime.settings.registry_topic,
                   ONEPIPE_REGISTRY_FETCH_WAIT_MS="10", ONEPIPE_DATA_DIR=str(tmp_path / "d"),
                   ONEPIPE_ICEBERG_CATALOG_URI=embedded_catalog_uri(lake),
                   COLUMNS="250", **environ)
        cli = await asyncio.to_thread(
            subprocess.run, [ONEPIPE, "verify", topic], env=env, capture_output=True,
            text=True, timeout=180, check=False)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "pg" in cli.stdout and "p000" in cli.stdout and "p001" in cli.stdout
    assert day_of(DAY0) in cli.stdout and day_of(DAY0 + DAY_MS) in cli.stdout
