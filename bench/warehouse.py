"""Warehouse load rate against a plain COPY of the same rows, in one run.

    .venv/bin/python bench/warehouse.py [--rows N] [--rounds 3] [--json]

Needs the machine's PostgreSQL (127.0.0.1:5432, database ``test``; ``BENCH_PG_DSN``
overrides). Setup (not timed): ``--rows`` raw records (default 300,000, 10% extra
versions) of bench/compact.py's ``Item`` topic (~200-byte values, one UTC day) written to
a local lake and compacted into its Iceberg table.

Measured in this process, ``--rounds`` times alternating 1 and 2 (medians reported):
1. the load (onepipe.sinks.warehouse.load_topic, the code ``onepipe warehouse load``
   runs): plan from the Iceberg snapshot, read the day's data files, convert, COPY into a
   new day partition, record and swap it in, in the day's transaction (rounds 2 and 3
   replace the day loaded before);
2. the ceiling: asyncpg ``copy_records_to_table`` of the same rows, already converted to
   the same Python tuples before the clock starts (times as integers, as the load sends
   them: onepipe.sinks.warehouse.codecs), into a table of the same columns (no index, no
   transaction of ours) - what the database takes at best;
   printed as load / ceiling rows/s;
3. an incremental load with nothing changed (the bookkeeping check alone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.common import Row, machine_facts, print_results  # noqa: E402
from bench.compact import TOPIC, compact, generate  # noqa: E402
from onepipe.sinks.db import Column  # noqa: E402
from onepipe.sinks.lake import open_lake  # noqa: E402
from onepipe.sinks.lake.iceberg import open_catalog, scan_days  # noqa: E402
from onepipe.sinks.warehouse import LOADS_TABLE, load_topic  # noqa: E402
from onepipe.sinks.warehouse.codecs import install_codecs  # noqa: E402
from onepipe.sinks.warehouse.load import copy_records  # noqa: E402

PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
#: The load's rate as a share of the ceiling: the bar of the online sinks' COPY path
#: (bench/sink.py), the same kind of writer against the same kind of ceiling.
TARGET = 0.40


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rows(lake: Any) -> tuple[list[Column], list[tuple[Any, ...]]]:
    """The clean rows as COPY records, converted as the load converts them (not timed)."""
    catalog = open_catalog("", lake)
    try:
        table = catalog.load(TOPIC)
        assert table is not None
        columns = [Column(f.name, f.type, key=False) for f in table.schema().as_arrow()]
        batches = iter(list(scan_days(table)))
        out: list[tuple[Any, ...]] = []
        while (records := copy_records(batches, columns)) is not None:
            out += records
        return columns, out
    finally:
        catalog.close()


async def run(rows: int, rounds: int, tmp: Path) -> dict[str, Any]:
    lake_root = tmp / "lake"
    log(f"generating {rows:,} raw rows ...")
    generate(lake_root, rows, 4, 0.1, 50_000, [0] * 4, 0, 1)
    log("compacting ...")
    report, _ = await compact(lake_root.as_uri(), tmp / "work", "1GB", 2)
    suffix = f"{os.getpid()}_{int(time.time())}"
    table, plain = f"bench_wh_{suffix}", f"bench_wh_plain_{suffix}"
    conn = await asyncpg.connect(PG_DSN)
    await install_codecs(conn)  # the same COPY values as the load's (times as integers)
    loads: list[float] = []
    copies: list[float] = []
    try:
        async with open_lake(lake_root.as_uri()) as lake:
            columns, records = await asyncio.to_thread(_rows, lake)
            names = [c.name for c in columns]
            listed = ", ".join(f'"{c.name}" {c.sql_type("postgres")}' for c in columns)
            await conn.execute(f'CREATE TABLE "{plain}" ({listed})')  # not partitioned
            for round_ in range(rounds):  # alternating, so drift hits both alike
                log(f"round {round_ + 1}/{rounds}: load ...")
                started = time.perf_counter()
                loaded = await load_topic(lake, "", TOPIC, PG_DSN, table=table)
                loads.append(time.perf_counter() - started)
                log(f"round {round_ + 1}/{rounds}: ceiling, a plain COPY ...")
                await conn.execute(f'TRUNCATE "{plain}"')
                started = time.perf_counter()
                await conn.copy_records_to_table(plain, records=records, columns=names)
                copies.append(time.perf_counter() - started)
            started = time.perf_counter()
            again = await load_topic(lake, "", TOPIC, PG_DSN, table=table, incremental=True)
            noop_s = time.perf_counter() - started
        assert again.rows == 0 and loaded.rows == len(records) == report.rows_out
    finally:
        for name in (table, plain):
            await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
        await conn.execute(f"DELETE FROM {LOADS_TABLE} WHERE table_name = $1", table)
        await conn.close()
    return {"rows": loaded.rows, "days": len(loaded.loaded), "load_s": statistics.median(loads),
            "copy_s": statistics.median(copies), "noop_s": noop_s,
            "ratios": [c / lo for lo, c in zip(loads, copies, strict=True)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="load and ceiling measured this many times, alternating")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-wh-") as tmp:
        result = asyncio.run(run(args.rows, args.rounds, Path(tmp)))
    load_rate = result["rows"] / result["load_s"]
    copy_rate = result["rows"] / result["copy_s"]
    ratio = load_rate / copy_rate
    rows = [
        Row("rows loaded (clean, one snapshot)", f"{result['rows']:,}",
            note=f"{result['days']} day(s), every column of the Iceberg table"),
        Row("1. ceiling: plain COPY of the same rows", f"{copy_rate:,.0f} rows/s",
            note="asyncpg copy_records_to_table, tuples ready before the clock"),
        Row("2. warehouse load", f"{load_rate:,.0f} rows/s",
            note="plan + read Iceberg + convert + COPY + bookkeeping + swap, per day"),
        Row("ratio to the ceiling (medians)", f"{ratio:.2f}", f">= {TARGET:.2f}", ratio >= TARGET,
            note="per round: " + ", ".join(f"{r:.2f}" for r in result["ratios"])),
        Row("3. incremental load, nothing changed", f"{result['noop_s'] * 1000:.0f} ms"),
    ]
    print_results("Warehouse load: onepipe warehouse load vs a plain COPY", rows,
                  machine_facts(), as_json=args.json)
    if ratio < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
