"""Compactor throughput and memory on one big day, against a DuckDB copy baseline.

    .venv/bin/python bench/compact.py [--rows N] [--partitions P] [--memory-limit 1GB]
                                      [--threads 2] [--keep DIR] [--json]

Setup (not timed): one UTC day of ``--rows`` raw records (default 5M) with 10% duplicates
(extra versions of earlier keys, so ~4.5M distinct keys), ~200-byte Confluent-framed Avro
values (key long, version long, amount, status, payload, updated_at timestamp-millis),
written as raw files exactly as the archive writes them (onepipe.sinks.formats.raw, split at UTC
hours like the archive, at most ``--file-rows`` rows per file) into a local lake, by two
generator processes.

Measured, in this order, in this process:
1. the compactor (onepipe.agents.compact.compactor, the code ``onepipe compact`` runs)
   merging the whole day from scratch: rows/s, peak RSS of this process while it ran
   (sampled from /proc), peak size of the work dir (DuckDB spill + intermediate files),
   clean bytes;
2. the baseline: DuckDB with the same memory_limit and threads reading every raw file and
   writing one zstd Parquet file, no dedup (the I/O + codec floor of any merge);
   printed as compactor/baseline rows/s;
3. an incremental run: 1% new versions of random existing keys, merged into the day
   (the whole day version is rewritten: the cost of a late update).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import io
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import fastavro  # noqa: E402
import pyarrow as pa  # noqa: E402

from bench.common import Row, machine_facts, print_results, read_proc  # noqa: E402
from onepipe.agents.compact import CompactionConfig, Compactor  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.metadata import OrderRule, TopicMetadata  # noqa: E402
from onepipe.sinks.formats.raw import (  # noqa: E402
    RawRecord,
    build_raw_table,
    encode_parquet,
    typed_schema,
)
from onepipe.sinks.lake import open_lake  # noqa: E402
from onepipe.sinks.lake.raw_layout import hour_segments, raw_file_path  # noqa: E402

TOPIC = "bench-compact"
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
SCHEMA_ID = 1
STATUSES = ["NEW", "PAID", "SHIPPED", "RETURNED"]


# ------------------------------------------------------------------ raw generation


def _partition_rows(partition: int, partitions: int, rows: int, dup_share: float,
                    version_base: int, seed: int) -> list[tuple[int, int, int]]:
    """(id, version, kafka timestamp) of one partition's records in offset order.

    Keys of partition p are p, p + P, p + 2P, ...; a duplicate is a new version of a
    random key already written (out of order: random version numbers).
    """
    rng = random.Random(seed * 1000 + partition)
    out = []
    written = 0
    for i in range(rows):
        ts = DAY0 + i * (DAY_MS - 1) // rows  # archive time climbs through the day
        if written and rng.random() < dup_share:
            key = partition + partitions * rng.randrange(written)
            out.append((key, version_base + rng.randint(2, 9), ts))
        else:
            out.append((partition + partitions * written, version_base + 1, ts))
            written += 1
    return out


def generate_partition(root: str, partition: int, partitions: int, rows: int,
                       dup_share: float, file_rows: int, first_offset: int,
                       version_base: int, seed: int,
                       only_existing: int | None = None) -> tuple[int, int]:
    """Write one partition's raw files; (files, bytes). Runs in a worker process."""
    schema = parse_schema(json.dumps(SCHEMA))
    parsed = schema.parsed
    typed_fields = typed_schema(schema)
    rng = random.Random(seed * 7919 + partition)
    if only_existing is not None:  # new versions of existing keys only (incremental)
        plan = [(partition + partitions * rng.randrange(only_existing),
                 version_base + rng.randint(1, 9), DAY0 + DAY_MS // 2 + i)
                for i in range(rows)]
    else:
        plan = _partition_rows(partition, partitions, rows, dup_share, version_base, seed)
    files = size = 0
    header = b"\x00" + SCHEMA_ID.to_bytes(4, "big")
    for start in range(0, len(plan), file_rows):
        chunk = plan[start:start + file_rows]
        ids, versions, amounts, statuses, payloads, updated, values, records = \
            [], [], [], [], [], [], [], []
        for j, (key, version, ts) in enumerate(chunk):
            updated_at = max(DAY0, ts - rng.randrange(60_000))
            datum = {"id": key, "version": version, "amount": key * 0.01,
                     "status": STATUSES[key % 4],
                     # Random text: a constant filler would compress to nothing.
                     "payload": f"{key:012d}-{version:04d}-" + rng.randbytes(65).hex(),
                     "updated_at": updated_at}
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, datum)
            value = header + buf.getvalue()
            offset = first_offset + start + j
            records.append(RawRecord(TOPIC, partition, offset, ts, (),
                                     key.to_bytes(8, "big"), value))
            ids.append(key)
            versions.append(version)
            amounts.append(datum["amount"])
            statuses.append(datum["status"])
            payloads.append(datum["payload"])
            updated.append(updated_at)
            values.append(value)
        typed = [pa.array(col, typed_fields.field(i).type) for i, col in enumerate(
            [ids, versions, amounts, statuses, payloads, updated])]
        # Split at UTC hours, as the archive does (onepipe.sinks.lake.raw_layout.hour_segments).
        for seg_start, seg_stop, date, hour in hour_segments([r.timestamp_ms for r in records]):
            part = records[seg_start:seg_stop]
            n = len(part)
            table = build_raw_table(part, [SCHEMA_ID] * n, [None] * n, [None] * n, schema,
                                    typed=[c.slice(seg_start, n) for c in typed])
            data = encode_parquet(table)
            path = Path(root) / raw_file_path(TOPIC, partition, date, hour, part[0].offset,
                                              part[-1].offset)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files += 1
            size += len(data)
    return files, size


def generate(root: Path, rows: int, partitions: int, dup_share: float, file_rows: int,
             offsets: list[int], version_base: int, seed: int,
             only_existing: int | None = None) -> tuple[int, int]:
    per = [rows // partitions + (1 if p < rows % partitions else 0) for p in range(partitions)]
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        done = list(pool.map(generate_partition, *zip(*[
            (str(root), p, partitions, per[p], dup_share, file_rows, offsets[p], version_base,
             seed, only_existing) for p in range(partitions)], strict=True)))
    for p in range(partitions):
        offsets[p] += per[p]
    return sum(f for f, _ in done), sum(b for _, b in done)


# ------------------------------------------------------------------ measurement


def dir_bytes(path: Path) -> int:
    total = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += (Path(folder) / name).stat().st_size
            except OSError:
                continue  # removed while walking (spill files come and go)
    return total


class Sampler:
    """Peak RSS of this process and peak size of a folder, sampled in a thread."""

    def __init__(self, folder: Path, every: float = 0.1) -> None:
        self.folder = folder
        self.every = every
        self.peak_rss_mib = 0.0
        self.peak_dir_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = 0

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_rss_mib = max(self.peak_rss_mib, read_proc(os.getpid())[1])
            self._tick += 1
            if self._tick % 5 == 0:  # walking the folder costs more than reading /proc
                self.peak_dir_bytes = max(self.peak_dir_bytes, dir_bytes(self.folder))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def compact(lake_url: str, work: Path, memory_limit: str, threads: int
                  ) -> tuple[Any, Sampler]:
    meta = TopicMetadata(topic=TOPIC, key=("id",), order=OrderRule("max", "version"),
                         partition_time="updated_at")
    config = CompactionConfig(work_dir=work, memory_limit=memory_limit, threads=threads)
    async with open_lake(lake_url) as lake:
        with Sampler(work) as sampler:
            report = await Compactor(lake, meta, parse_schema(json.dumps(SCHEMA)), config).run()
    return report, sampler


def baseline(raw_root: Path, out: Path, memory_limit: str, threads: int) -> tuple[float, int]:
    files = sorted(str(p) for p in raw_root.rglob("*.parquet"))
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads,
                                 "temp_directory": str(out.parent / "baseline-tmp")})
    listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    t0 = time.monotonic()
    con.execute(f"COPY (SELECT * FROM read_parquet({listing}, union_by_name=true, "
                f"hive_partitioning=false)) TO '{out}' (FORMAT PARQUET, COMPRESSION ZSTD, "
                "ROW_GROUP_SIZE 131072)")
    seconds = time.monotonic() - t0
    con.close()
    return seconds, out.stat().st_size


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    lake_root = tmp / "lake"
    work = tmp / "work"
    offsets = [0] * args.partitions
    log(f"generating {args.rows:,} raw rows ({args.partitions} partitions, "
        f"<= {args.file_rows:,} rows/file) ...")
    t0 = time.monotonic()
    files, raw_bytes = generate(lake_root, args.rows, args.partitions, 0.10, args.file_rows,
                                offsets, 0, seed=1)
    log(f"  {files} files, {raw_bytes / 2**20:,.0f} MiB in {time.monotonic() - t0:.0f}s")

    log("compacting the day from scratch ...")
    report, sampler = asyncio.run(compact(lake_root.as_uri(), work, args.memory_limit,
                                          args.threads))
    clean_bytes = dir_bytes(lake_root / "clean")
    log(f"  {report.rows_out:,} rows in {report.duration_seconds:.1f}s "
        f"(snapshot commit {getattr(report, 'commit_seconds', 0.0) * 1000:.0f} ms)")

    log("baseline: DuckDB copy of every raw file into one Parquet file ...")
    base_seconds, base_bytes = baseline(lake_root / "raw", tmp / "baseline.parquet",
                                        args.memory_limit, args.threads)
    log(f"  {base_seconds:.1f}s")

    new_rows = max(1, args.rows // 100)
    log(f"incremental: {new_rows:,} new versions of existing keys ...")
    distinct_per_partition = report.rows_out // args.partitions
    generate(lake_root, new_rows, args.partitions, 0.0, args.file_rows, offsets, 100, seed=2,
             only_existing=distinct_per_partition)
    incr, incr_sampler = asyncio.run(compact(lake_root.as_uri(), work, args.memory_limit,
                                             args.threads))
    log(f"  {incr.duration_seconds:.1f}s")
    return {
        "rows": args.rows, "partitions": args.partitions, "raw_files": files,
        "raw_bytes": raw_bytes, "memory_limit": args.memory_limit, "threads": args.threads,
        "distinct_keys": report.rows_out, "compact_seconds": report.duration_seconds,
        "compact_rows_s": report.rows_in / report.duration_seconds,
        "peak_rss_mib": sampler.peak_rss_mib, "peak_work_dir_bytes": sampler.peak_dir_bytes,
        "clean_bytes": clean_bytes, "baseline_seconds": base_seconds,
        "baseline_rows_s": args.rows / base_seconds, "baseline_bytes": base_bytes,
        "ratio": (report.rows_in / report.duration_seconds) / (args.rows / base_seconds),
        "incremental_rows": incr.rows_in, "incremental_seconds": incr.duration_seconds,
        "incremental_peak_rss_mib": incr_sampler.peak_rss_mib,
        "lifetime_peak_rss_mib": read_proc(os.getpid())[2],
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--file-rows", type=int, default=50_000,
                        help="rows per raw file at most (the archive's flush_records)")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the lake in this folder and keep it")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onepipe-bench-compact-")) if args.keep is None \
        else args.keep
    try:
        r = run(args, tmp)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    mib = 2**20
    rows = [
        Row("raw input", f"{r['rows']:,} rows, {r['raw_files']} files, "
                         f"{r['raw_bytes'] / mib:,.0f} MiB", note=f"{r['partitions']} partitions"),
        Row("compactor (from scratch)", f"{r['compact_rows_s']:,.0f} rows/s",
            note=f"{r['compact_seconds']:.1f}s -> {r['distinct_keys']:,} rows, "
                 f"{r['clean_bytes'] / mib:,.0f} MiB clean"),
        Row("baseline (DuckDB copy, no dedup)", f"{r['baseline_rows_s']:,.0f} rows/s",
            note=f"{r['baseline_seconds']:.1f}s, {r['baseline_bytes'] / mib:,.0f} MiB"),
        Row("ratio compactor / baseline", f"{r['ratio']:.2f}"),
        Row("peak RSS during compaction", f"{r['peak_rss_mib']:,.0f} MiB",
            note=f"DuckDB memory_limit {r['memory_limit']}, {r['threads']} threads"),
        Row("peak work dir (spill + intermediates)",
            f"{r['peak_work_dir_bytes'] / mib:,.0f} MiB"),
        Row("incremental: new versions into the day", f"{r['incremental_rows']:,} rows",
            note=f"{r['incremental_seconds']:.1f}s, peak RSS "
                 f"{r['incremental_peak_rss_mib']:,.0f} MiB (rewrites the day)"),
    ]
    print_results("onepipe compactor benchmark (one day, local lake)", rows, machine_facts(),
                  extra=r, as_json=args.json)


if __name__ == "__main__":
    main()
