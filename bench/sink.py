"""PostgreSQL sink: write throughput against a plain COPY, and end-to-end latency.

    .venv/bin/python bench/sink.py [--rows N] [--batch B] [--rate R] [--seconds S] [--json]

Needs the machine's PostgreSQL (127.0.0.1:5432, database ``test``; ``BENCH_PG_DSN``
overrides the DSN).

1. Throughput, on the same rows (``widgets``-shaped: key, version, name, price, enum,
   timestamp, array), measured in one run on one database:
   - the ceiling: asyncpg ``copy_records_to_table`` of every row into a fresh table with
     the sink table's definition (same columns, same primary key, no merge rule): the
     fastest way into such a table; COPY into a table without a key is printed too;
   - the sink: onepipe.sinks.db.SinkTable.write in batches of ``--batch`` rows (COPY into
     a staging table, one merge applying the rule, the position; one transaction), as
     the sink agent writes its fetches; the ratio to the ceiling has a target of >= 0.40.
2. End-to-end latency: a real ``onepipe worker`` (embedded tansu broker, dedup and a
   PostgreSQL sink on) receives one record every 1/``--rate`` s (open loop, each sent
   at its scheduled time through ``POST /topics/widgets_bench/records``); a poller sees
   each row appear in PostgreSQL; latency is from the scheduled send to the first poll
   that sees the row. Target: p99 <= 500 ms at 1,000 records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.common import (  # noqa: E402
    Row,
    Services,
    machine_facts,
    percentile,
    print_results,
)
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.merge import rank_bytes  # noqa: E402
from onepipe.sinks.db import SinkRow, SinkTable, columns_of, open_database  # noqa: E402
from onepipe.sinks.db.sql import quote  # noqa: E402
from onepipe.sinks.formats.raw import typed_schema  # noqa: E402

PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = json.loads((ROOT / "catalog" / "widgets.avsc").read_text())


def widgets(count: int) -> list[dict[str, Any]]:
    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    colours = ["RED", "GREEN", "BLUE", "OTHER"]
    return [{"widget_id": f"w{i:09d}", "version": 1, "name": f"widget number {i}",
             "price": i / 100, "colour": colours[i % 4],
             "updated_at": start + dt.timedelta(seconds=i), "tags": ["a", f"t{i % 7}"]}
            for i in range(count)]


async def throughput(rows: int, batch: int) -> list[Row]:
    schema = parse_schema(SCHEMA)
    arrow = typed_schema(schema)
    columns = columns_of(arrow, schema.json["fields"], ("widget_id",))
    records = widgets(rows)
    table = pa.Table.from_pylist(records, arrow)
    adapters = [c.to_db("postgres") for c in columns]
    values = [[adapt(v) for v in table.column(c.name).to_pylist()]
              for c, adapt in zip(columns, adapters, strict=True)]
    params = list(zip(*values, strict=True))
    rank = rank_bytes((1, b"\x00"))
    sink_rows = [SinkRow((p[0],), (*p, rank, 1_764_000_000_000), rank, (0, i))
                 for i, p in enumerate(params)]
    name = f"bench_sink_{uuid.uuid4().hex[:8]}"
    copy_name, loose_name = name + "_copy", name + "_loose"
    db = open_database("postgres", PG_DSN)
    await db.start()
    conn = await asyncpg.connect(PG_DSN)
    try:
        sink = SinkTable(db, name, columns)
        await sink.prepare()
        names = [c.name for c in columns]
        # Information: the same columns, no key, no merge rule (no index to maintain).
        defs = ", ".join(f"{quote('postgres', c.name)} {c.sql_type('postgres')}"
                         for c in columns)
        await conn.execute(f"CREATE TABLE {quote('postgres', loose_name)} ({defs})")
        started = time.perf_counter()
        await conn.copy_records_to_table(loose_name, records=params, columns=names)
        loose_seconds = time.perf_counter() - started
        # The ceiling: COPY into the sink's own table definition (its primary key is what
        # makes it a table of one row per key; any loader into it pays for the index).
        await conn.execute(f"CREATE TABLE {quote('postgres', copy_name)} "
                           f"(LIKE {quote('postgres', name)} INCLUDING ALL)")
        started = time.perf_counter()
        await conn.copy_records_to_table(copy_name, records=[(*p, rank, 0) for p in params],
                                         columns=[*names, "_onepipe_rank",
                                                  "_onepipe_timestamp"])
        copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for offset in range(0, rows, batch):
            await sink.write(sink_rows[offset:offset + batch], "bench", "widgets",
                             {0: offset + batch})
        sink_seconds = time.perf_counter() - started
        count = await conn.fetchval(f"SELECT count(*) FROM {quote('postgres', name)}")
        assert count == rows, (count, rows)
    finally:
        for t in (name, copy_name, loose_name):
            await conn.execute(f"DROP TABLE IF EXISTS {quote('postgres', t)}")
        await conn.close()
        await db.stop()
    copy_rate, sink_rate = rows / copy_seconds, rows / sink_seconds
    loose_rate = rows / loose_seconds
    return [
        Row("   COPY into a table without a key", f"{loose_rate:,.0f} rows/s",
            note=f"information: the sink is {sink_rate / loose_rate:.2f} of it"),
        Row("1. ceiling: COPY into the sink's table", f"{copy_rate:,.0f} rows/s",
            note=f"{rows:,} rows in {copy_seconds:.2f}s (asyncpg copy_records_to_table, "
                 "same columns and primary key)"),
        Row("2. sink: upsert + merge rule + position", f"{sink_rate:,.0f} rows/s",
            note=f"batches of {batch:,}, one transaction each, {sink_seconds:.2f}s"),
        Row("   ratio to the ceiling", f"{sink_rate / copy_rate:.2f}", ">= 0.40",
            sink_rate / copy_rate >= 0.40),
    ]


async def latency(rate: float, seconds: float) -> list[Row]:
    topic, table = "widgets_bench", f"bench_e2e_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-sink-") as folder:
        catalog = Path(folder) / "catalog"
        catalog.mkdir()
        (catalog / "widgets.avsc").write_text(json.dumps(SCHEMA))
        (catalog / "bench.yaml").write_text(
            f"topic: {topic}\nschema: widgets.avsc\npartitions: 4\nkey: [widget_id]\n"
            "order: {rule: max, field: version}\npartition_time: updated_at\n"
            f"sinks: [{{name: pg, kind: postgres, dsn_env: BENCH_SINK_DSN, table: {table}}}]\n")
        with Services(keep=bool(os.environ.get("BENCH_KEEP"))) as services:
            services.start_broker()
            worker = services.start_worker({
                "ONEPIPE_CATALOG_DIR": str(catalog), "BENCH_SINK_DSN": PG_DSN,
                "ONEPIPE_ARCHIVE_ENABLED": "false", "ONEPIPE_CHECKSUMS_ENABLED": "false",
                "ONEPIPE_COMPACT_WORKERS_ENABLED": "false"})
            worker.wait_healthy()
            try:
                return await _measure(worker.url, topic, table, rate, seconds)
            except SystemExit:
                print(worker.log_tail(60), file=sys.stderr)
                raise


async def _measure(url: str, topic: str, table: str, rate: float, seconds: float
                   ) -> list[Row]:
    conn = await asyncpg.connect(PG_DSN)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    count = int(rate * seconds)
    async with aiohttp.ClientSession(url) as http:
        # Warm up: until a first record is readable, every consumer group has joined.
        await _post(http, topic, "warm")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if await conn.fetchval("SELECT to_regclass($1)", quote("postgres", table)) and \
                    await conn.fetchval(f"SELECT count(*) FROM {quote('postgres', table)}"):
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("the warm-up record never reached PostgreSQL; BENCH_KEEP=1 "
                             "keeps the worker's log")
        done = asyncio.Event()

        async def poll() -> None:
            query = f"SELECT widget_id FROM {quote('postgres', table)} WHERE widget_id = ANY($1)"
            while not done.is_set() or len(seen) < len(sent):
                pending = [k for k in sent if k not in seen]
                if pending:
                    found = await conn.fetch(query, pending)
                    now = time.monotonic()
                    for r in found:
                        seen.setdefault(r["widget_id"], now)
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        t0 = time.monotonic() + 0.5
        sends = []
        for i in range(count):
            at = t0 + i / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"lat{i:07d}"
            sent[key] = at
            sends.append(asyncio.create_task(_post(http, topic, key)))
        await asyncio.gather(*sends)
        done.set()
        await asyncio.wait_for(poller, 120)
    await conn.close()
    latencies = sorted((seen[k] - sent[k]) * 1000 for k in sent)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return [
        Row("3. end to end: produce -> row readable", f"p99 {p99:.0f} ms", "<= 500 ms",
            p99 <= 500,
            f"{count:,} records at {rate:,.0f}/s, open loop; p50 {p50:.0f} ms, "
            f"max {latencies[-1]:.0f} ms"),
    ]


async def _post(http: aiohttp.ClientSession, topic: str, key: str) -> None:
    record = {"widget_id": key, "version": 1, "name": "bench", "price": 1.0,
              "updated_at": "2026-11-26T10:00:00Z"}
    async with http.post(f"/topics/{topic}/records", json=record) as resp:
        assert resp.status == 200, await resp.text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(throughput(args.rows, args.batch))
    rows += asyncio.run(latency(args.rate, args.seconds))
    print_results("onepipe PostgreSQL sink benchmark", rows, machine_facts(), as_json=args.json)
    return 1 if any(r.status == "MISS" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
