"""Verify throughput and memory on one big clean day, against a plain pyarrow read.

    .venv/bin/python bench/verify.py [--rows N] [--file-rows N] [--keep DIR] [--json]

Setup (not timed): one UTC day of ``--rows`` clean rows (default 5M, one per key, sorted
by key) written straight into the topic's Iceberg table (onepipe.sinks.lake.iceberg)
and committed as one snapshot, as the compactor would leave it: zstd Parquet, 128k-row
row groups, files of ``--file-rows`` rows; columns ``id`` long, ``version`` long, ``amount`` double,
``status`` string, ``payload`` string (~40 bytes), ``updated_at`` timestamp-millis,
plus the ``_kafka_partition``/``_kafka_offset``/``_kafka_timestamp`` provenance
columns. (Real clean files also hold the key/value bytes; verify never reads those
columns, Parquet skips them.) The spec: key ``id``, ``count_distinct``, sums of
``amount`` and ``version``, row checksum - every figure.

Measured, in this process (the lake is written by a child process, so the RSS here is
verify's), each with peak RSS sampled from /proc every 0.1 s:
1. the clean-lake source's figures for the day (onepipe.agents.verify.clean.CleanLakeSource,
   what ``onepipe verify`` runs per system and day): rows/s;
2. the baseline: pyarrow reading the same files' same columns in the same batches, with
   no hashing or sums (the I/O + decode floor): printed as verify/baseline rows/s;
3. one drill-down level: 256 bucket summaries of the day (every row's key hash and row
   hash), what a disagreeing day costs per level.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pyiceberg.io.pyarrow import schema_to_pyarrow  # noqa: E402

from bench.common import Row, machine_facts, print_results, read_proc  # noqa: E402
from bench.compact import Sampler  # noqa: E402
from onepipe.agents.verify.clean import CleanLakeSource  # noqa: E402
from onepipe.agents.verify.sources import BATCH_ROWS, DayRange  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.metadata import Checks, OrderRule, TopicMetadata  # noqa: E402
from onepipe.sinks.formats.topic_view import TopicView  # noqa: E402
from onepipe.sinks.lake import open_lake  # noqa: E402
from onepipe.sinks.lake.iceberg import (  # noqa: E402
    DAY_COLUMN,
    TableState,
    ensure_table,
    open_catalog,
    replace_days,
)
from onepipe.sinks.lake.iceberg.layout import data_file_path  # noqa: E402

TOPIC = "bench-verify"
DAY = "2026-11-20"
DAY0 = 1_795_132_800_000  # 2026-11-20T00:00:00Z
DAY_MS = 86_400_000
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Item", "namespace": "bench", "fields": [
        {"name": "id", "type": "long"},
        {"name": "version", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "status", "type": "string"},
        {"name": "payload", "type": "string"},
        {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ]}
STATUSES = ["NEW", "PAID", "SHIPPED", "RETURNED"]
META = TopicMetadata(topic=TOPIC, key=("id",), order=OrderRule("max", "version"),
                     partition_time="updated_at",
                     checks=Checks(count_distinct=True, sums=("amount", "version")))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ints(n: int, low: int, high: int) -> pa.Array:
    """``n`` pseudo-random int64 in ``low``..``high - 1`` (pyarrow kernels, no numpy)."""
    return pc.add(pc.floor(pc.multiply(pc.random(n), high - low)).cast(pa.int64()), low)


def _file_table(start: int, stop: int) -> pa.Table:
    """Rows ``start``..``stop`` of the day, built column-wise (no Python object per row)."""
    n = stop - start
    ids = pa.array(range(start, stop), pa.int64())
    status = pa.DictionaryArray.from_arrays(_ints(n, 0, len(STATUSES)).cast(pa.int32()),
                                            pa.array(STATUSES))
    # ~40-byte payloads: a fixed prefix and the id, by Arrow kernels
    payload = pc.binary_join_element_wise("payload-0123456789-abcdefghij-",
                                          ids.cast(pa.string()), "")
    return pa.table({
        "_kafka_partition": pc.bit_wise_and(ids, 3).cast(pa.int32()),
        "_kafka_offset": pc.shift_right(ids, 2),
        "_kafka_timestamp": _ints(n, DAY0, DAY0 + DAY_MS).cast(pa.timestamp("ms", tz="UTC")),
        "id": ids,
        "version": _ints(n, 1, 50),
        "amount": pc.multiply(pc.random(n), 1000.0),
        "status": status.cast(pa.string()),
        "payload": payload,
        "updated_at": _ints(n, DAY0, DAY0 + DAY_MS).cast(pa.timestamp("ms", tz="UTC")),
        DAY_COLUMN: pa.array([DAY0 // DAY_MS] * n, pa.int32()).cast(pa.date32()),
    })


def _build(lake_url: str, rows: int, file_rows: int) -> tuple[int, int]:
    return asyncio.run(build_lake(lake_url, rows, file_rows))


async def build_lake(lake_url: str, rows: int, file_rows: int) -> tuple[int, int]:
    """Write the day and commit it as the table's first snapshot; (files, bytes)."""
    paths, total = [], 0
    async with open_lake(lake_url) as lake:
        catalog = open_catalog("", lake)
        table = ensure_table(catalog, TOPIC, _file_table(0, 1).schema, DAY_COLUMN, ("id",))
        typed = schema_to_pyarrow(table.schema())  # carries the field ids into the files
        for index, start in enumerate(range(0, rows, file_rows)):
            part = _file_table(start, min(start + file_rows, rows))
            part = part.cast(pa.schema([typed.field(n) for n in part.column_names]))
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink, compression="zstd", row_group_size=131_072)
            data = sink.getvalue().to_pybytes()
            path = data_file_path(TOPIC, DAY, 1, "bench0", index)
            await lake.put(path, data)
            paths.append(path)
            total += len(data)
        replace_days(catalog, TableState(table), {DAY: paths}, {}, "bench0")
        catalog.close()
    return len(paths), total


async def measure_figures(lake_url: str, view: TopicView) -> tuple[float, Any]:
    async with open_lake(lake_url) as lake:
        source = CleanLakeSource(view, lake)
        started = time.perf_counter()
        got = await source.figures(DayRange(DAY, DAY))
        return time.perf_counter() - started, got[DAY]


async def measure_buckets(lake_url: str, view: TopicView) -> tuple[float, int]:
    async with open_lake(lake_url) as lake:
        source = CleanLakeSource(view, lake)
        started = time.perf_counter()
        buckets = await source.bucket_summaries(DAY, 8)
        return time.perf_counter() - started, len(buckets)


def baseline(folder: Path, columns: list[str]) -> tuple[float, int]:
    """pyarrow reading the same columns in the same batches, nothing computed."""
    started = time.perf_counter()
    rows = 0
    for path in sorted(folder.rglob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
            rows += batch.num_rows
    return time.perf_counter() - started, rows


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    lake_dir = tmp / "lake"
    lake_url = lake_dir.as_uri()
    log(f"writing {args.rows:,} clean rows to {lake_dir} ...")
    # In a child process, so this one's RSS measures verify, not the generator.
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        files, size = pool.submit(_build, lake_url, args.rows, args.file_rows).result()
    idle_rss = read_proc(os.getpid())[1]
    view = TopicView.build(META, parse_schema(SCHEMA))
    log("computing the day's figures ...")
    with Sampler(lake_dir) as sampler:
        seconds, figures = asyncio.run(measure_figures(lake_url, view))
    assert figures.rows == args.rows and figures.keys == args.rows, figures
    log("baseline: reading the same columns ...")
    with Sampler(lake_dir) as base_sampler:
        base_seconds, base_rows = baseline(lake_dir / "clean", list(view.columns))
    assert base_rows == args.rows
    log("drill-down level: 256 buckets ...")
    with Sampler(lake_dir) as bucket_sampler:
        bucket_seconds, buckets = asyncio.run(measure_buckets(lake_url, view))
    return {
        "rows": args.rows, "files": files, "clean_bytes": size,
        "figures_seconds": seconds, "figures_rows_s": args.rows / seconds,
        "baseline_seconds": base_seconds, "baseline_rows_s": args.rows / base_seconds,
        "ratio": (args.rows / seconds) / (args.rows / base_seconds),
        "peak_rss_mib": sampler.peak_rss_mib, "baseline_peak_rss_mib": base_sampler.peak_rss_mib,
        "buckets_seconds": bucket_seconds, "buckets_rows_s": args.rows / bucket_seconds,
        "buckets": buckets, "buckets_peak_rss_mib": bucket_sampler.peak_rss_mib,
        "lifetime_peak_rss_mib": read_proc(os.getpid())[2], "idle_rss_mib": idle_rss,
        "checksum": f"{figures.checksum:016x}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--file-rows", type=int, default=1_000_000,
                        help="rows per clean file (the compactor splits days by size)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the lake in this folder and keep it")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onepipe-bench-verify-")) if args.keep is None \
        else args.keep
    try:
        r = run(args, tmp)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    mib = 2**20
    rows = [
        Row("clean day", f"{r['rows']:,} rows, {r['files']} files, "
                         f"{r['clean_bytes'] / mib:,.0f} MiB"),
        Row("verify: clean-lake figures", f"{r['figures_rows_s']:,.0f} rows/s",
            note=f"{r['figures_seconds']:.1f}s: rows, keys, 2 exact sums, checksum"),
        Row("baseline (pyarrow read, same columns)", f"{r['baseline_rows_s']:,.0f} rows/s",
            note=f"{r['baseline_seconds']:.1f}s"),
        Row("ratio verify / baseline", f"{r['ratio']:.2f}"),
        Row("peak RSS during figures", f"{r['peak_rss_mib']:,.0f} MiB",
            note=f"before: {r['idle_rss_mib']:,.0f} MiB (imports); baseline after it "
                 f"{r['baseline_peak_rss_mib']:,.0f} MiB"),
        Row("drill-down level (256 buckets)", f"{r['buckets_rows_s']:,.0f} rows/s",
            note=f"{r['buckets_seconds']:.1f}s, peak RSS {r['buckets_peak_rss_mib']:,.0f} MiB"),
    ]
    print_results("onepipe verify benchmark (one clean day, local lake)", rows,
                  machine_facts(), extra=r, as_json=args.json)


if __name__ == "__main__":
    main()
