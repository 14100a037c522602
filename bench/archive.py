"""Archive throughput against the raw consume ceiling, measured in one run on one broker.

    .venv/bin/python bench/archive.py [--records N] [--partitions P] [--flush-records N]
                                      [--quick] [--json]

For 200-byte and 2-KB records it prints:
1. two ceilings over the same topic from the same embedded tansu broker, records/s and
   MB/s: a raw librdkafka consumer (``Consumer.consume(num_messages=10000)``, the hot
   paths' real ceiling; read again after step 2, the better of the two counts) and a
   raw aiokafka batch consumer (``getmany``)
   (bench/consume_ceilings.py);
2. the archive agent (onepipe.agents.archive.agent, the code the worker runs, its group
   consumer of ``ONEPIPE_KAFKA_CONSUMER_CLIENT``) archiving the same topic into a
   local-folder lake: records/s and MB/s from partition assignment until the lake holds
   90% of the records (see archive()), and the ratio to each ceiling (targets, of
   librdkafka's: >= 0.25 for 200 B, >= 0.50 for 2 KB; issue 15);
3. peak RSS of this process while the agent ran, against the configured buffer bound +
   150 MiB (the target), and its RSS when the agent started: what the ceilings left,
   after the garbage collector and ``malloc_trim`` returned what they can (the ceilings'
   freed buffers had left 300-380 MiB, varying by 80 MiB from run to run);
4. CPU per archived record over the timed span: the agent's process (event loop, consumer,
   buffering, pickling) and its encoder processes (decode, columns, Parquet): on two cores
   shared with the broker, the figure that decides the rate.
Records are produced once, beforehand, Confluent-framed against a registered schema.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
import pyarrow as pa  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.common import PeakRss, on_worker_loop  # noqa: E402
from bench.consume_ceilings import (  # noqa: E402
    aiokafka_ceiling,
    librdkafka_ceiling,
    librdkafka_ceiling_again,
    report_ratios,
)
from bench.summary import record  # noqa: E402
from onepipe.agents.archive.agent import ArchiveAgent  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.app.embedded import EmbeddedBroker, free_port  # noqa: E402
from onepipe.app.runtime import Runtime  # noqa: E402
from onepipe.app.settings import load_settings  # noqa: E402
from onepipe.schemas.codec import frame  # noqa: E402
from onepipe.sinks.lake import open_lake  # noqa: E402

#: Targets: the ratio to the librdkafka ceiling per record size (issue 15).
TARGET_RATIO = {200: 0.25, 2000: 0.50}
#: Encoder processes of the agent (0: a thread of the agent's own process).
ENCODERS = 1
#: Share of the records whose archiving is timed (see archive()).
STEADY_SHARE = 0.9
RSS_ALLOWANCE = 150 * 1024 * 1024
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Event", "namespace": "bench", "fields": [
        {"name": "id", "type": "string"},
        {"name": "seq", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "payload", "type": "string"},
    ]}


async def produce(bootstrap: str, topic: str, schema_id: int, count: int, size: int,
                  partitions: int) -> int:
    """Produce ``count`` records of about ``size`` bytes; return the total value bytes."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024)
    await producer.start()
    total = 0
    try:
        pending = []
        padding = "x" * max(0, size - 60)
        for i in range(count):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, {
                "id": f"id-{i % 10_000}", "seq": i, "amount": i * 0.25,
                "at": 1_764_151_200_000 + i, "kind": "ABC"[i % 3], "tags": ["t1", "t2"],
                "payload": padding})
            value = frame(schema_id, buf.getvalue())
            total += len(value)
            pending.append(await producer.send(topic, value, key=f"id-{i % 10_000}".encode(),
                                               partition=i % partitions))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return total


def _release_memory() -> None:
    """Return freed memory to the system (Python's, glibc's and Arrow's pools), so the
    agent's peak RSS does not depend on what the ceilings happened to leave behind."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc is not None:
        ctypes.CDLL(libc).malloc_trim(0)
    pa.default_memory_pool().release_unused()


def _encoders_cpu(agent: ArchiveAgent) -> tuple[float, int]:
    """CPU seconds and minor page faults of the agent's encoder processes so far (0
    without any)."""
    pool = agent._writer._pool  # noqa: SLF001 - a benchmark looking inside on purpose
    total, faults = 0.0, 0
    for pid in list(getattr(pool, "_processes", None) or {}):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        faults += int(fields[7])
    return total, faults


def _own_faults() -> int:
    """Minor page faults of this process so far (its threads included)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


async def archive(runtime: Runtime, topic: str, count: int, bound: int
                  ) -> tuple[float, int, int, dict[str, float]]:
    """(seconds, peak RSS, files, CPU figures) of the archive agent.

    Seconds run from partition assignment until 90% of the records are in the lake: the
    last partial buffers wait for the age limit, which measures the limit, not the agent.
    """
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-lake-") as folder:
        async with open_lake(Path(folder).as_uri()) as lake:
            agent = ArchiveAgent(kafka=runtime.settings.kafka, group_id=f"bench-{topic}",
                                 registry=runtime.registry, lake=lake, topics=[topic],
                                 max_buffer_bytes=bound, encoders=ENCODERS)
            _release_memory()
            with PeakRss() as rss:
                start_rss = rss.peak
                await agent.start()
                await agent.assigned.wait()
                # CPU over the timed span only: the encoders' start-up imports are not
                # per-record work.
                cpu, (encoders, encoder_faults) = time.process_time(), _encoders_cpu(agent)
                faults = _own_faults()
                started = time.perf_counter()
                await agent.wait_archived(int(STEADY_SHARE * count))
                elapsed = time.perf_counter() - started
                archived = agent.metrics.records_archived
                encoders_now, encoder_faults_now = _encoders_cpu(agent)
                figures = {
                    "cpu_us_main": (time.process_time() - cpu) / archived * 1e6,
                    "cpu_us_encoders": (encoders_now - encoders) / archived * 1e6,
                    "faults_per_record_main": (_own_faults() - faults) / archived,
                    "faults_per_record_encoders":
                        (encoder_faults_now - encoder_faults) / archived,
                    "start_rss_mib": start_rss / 2**20,
                    # Shared memory the writer keeps for its hand-over: in no RSS.
                    "kept_files_mib": agent._writer.kept_bytes / 2**20,  # noqa: SLF001
                }
                await agent.stop()
            return elapsed, rss.peak, agent.metrics.files, figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"records": args.records, "partitions": args.partitions,
                               "flush_records": flush_records(args),
                               "buffer_bound": args.bound, "cases": []}
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-") as data, EmbeddedBroker(
            port=free_port()) as broker:
        settings = load_settings(broker=broker.bootstrap, web_port=0, data_dir=data,
                                 idempotent_producer=False, archive_enabled=False)
        async with Runtime(settings) as runtime:
            for size in args.sizes:
                topic = f"bench-archive-{size}"
                applied = await apply_topic(runtime.registry, topic, SCHEMA, {
                    "partitions": args.partitions,
                    # ~20 files per partition unless --flush-records says otherwise, so
                    # the 90% mark (below) falls between flushes and the age limit never
                    # decides the time.
                    "archive": {"flush_records": flush_records(args),
                                "flush_bytes": "64MiB", "flush_seconds": 60}})
                value_bytes = await produce(broker.bootstrap, topic, applied.schema_id,
                                            args.records, size, args.partitions)
                rd_seconds = await asyncio.to_thread(librdkafka_ceiling, broker.bootstrap,
                                                     topic, args.partitions, args.records)
                raw_seconds = await aiokafka_ceiling(broker.bootstrap, topic, args.partitions,
                                                     args.records)
                seconds, peak, files, cpu = await archive(runtime, topic, args.records,
                                                          args.bound)
                rd_before = rd_seconds
                rd_seconds, rd_after = await librdkafka_ceiling_again(
                    broker.bootstrap, topic, args.partitions, args.records, rd_before)
                mb = value_bytes / 1e6
                rate = STEADY_SHARE * args.records / seconds
                case = {
                    "record_bytes": round(value_bytes / args.records), "size": size,
                    "consumer_client": runtime.settings.kafka_consumer_client,
                    "librdkafka_records_s": args.records / rd_seconds,
                    "librdkafka_before_after": [args.records / rd_before,
                                                args.records / rd_after],
                    "librdkafka_mb_s": mb / rd_seconds,
                    "ceiling_records_s": args.records / raw_seconds,
                    "ceiling_mb_s": mb / raw_seconds,
                    "archive_records_s": rate,
                    "archive_mb_s": STEADY_SHARE * mb / seconds,
                    "ratio": rate / (args.records / rd_seconds),
                    "ratio_aiokafka": rate / (args.records / raw_seconds),
                    "files": files,
                    "peak_rss_mib": peak / 2**20,
                    "rss_target_mib": (args.bound + RSS_ALLOWANCE) / 2**20,
                    "load_1min": os.getloadavg()[0],
                    **cpu,
                }
                results["cases"].append(case)
                if not args.json:
                    print_case(case)
    return results


def flush_records(args: argparse.Namespace) -> int:
    """Records a file: ``--flush-records``, else ~20 files a partition (3,750 at the
    default 300,000 records: smaller files than the product's default 10,000, so each
    file's fixed cost - a Parquet writer, a hand-over, a lake write - weighs more)."""
    if args.flush_records is not None:
        return int(args.flush_records)
    return max(500, args.records // args.partitions // 20)


def print_case(case: dict[str, Any]) -> None:
    rss_ok = "PASS" if case["peak_rss_mib"] <= case["rss_target_mib"] else "MISS"
    print(f"\n{case['record_bytes']}-byte records (agent's consumer: "
          f"{case['consumer_client']})")
    before, after = case["librdkafka_before_after"]
    print(f"  raw librdkafka consume (ceiling) {case['librdkafka_records_s']:>10,.0f} rec/s "
          f"{case['librdkafka_mb_s']:>7.1f} MB/s (best of before {before:,.0f}, after "
          f"{after:,.0f})")
    print(f"  raw aiokafka getmany (ceiling)   {case['ceiling_records_s']:>10,.0f} rec/s "
          f"{case['ceiling_mb_s']:>7.1f} MB/s")
    report_ratios("archive agent -> local lake", case["archive_records_s"],
                  case["librdkafka_records_s"], case["ceiling_records_s"],
                  TARGET_RATIO[case["size"]],
                  f"  [{case['files']} files, {case['archive_mb_s']:.1f} MB/s]",
                  figure=f"archive agent -> local lake, {case['size']} B records "
                         f"({case['record_bytes']} B)")
    print(f"  peak RSS                         {case['peak_rss_mib']:>10,.0f} MiB "
          f"(target <= {case['rss_target_mib']:.0f} MiB) {rss_ok}; "
          f"{case['start_rss_mib']:.0f} MiB when the agent started; "
          f"+ {case['kept_files_mib']:.0f} MiB of kept memory files (in no RSS)")
    record(f"archive peak RSS, {case['size']} B records", f"{case['peak_rss_mib']:,.0f} MiB",
           target=f"<= {case['rss_target_mib']:.0f} MiB", ok=rss_ok == "PASS",
           note=f"{case['start_rss_mib']:.0f} MiB when the agent started")
    print(f"  CPU per record                   {case['cpu_us_main']:>10.2f} us agent process "
          f"+ {case['cpu_us_encoders']:.2f} us encoders (load {case['load_1min']:.2f})")
    print(f"  minor page faults per record     {case['faults_per_record_main']:>10.3f} agent "
          f"process + {case['faults_per_record_encoders']:.3f} encoders")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bound", type=int, default=256 * 1024 * 1024,
                        help="archive buffer bound in bytes (ONEPIPE_ARCHIVE_BUFFER_BYTES)")
    parser.add_argument("--encoders", type=int, default=1,
                        help="encoder processes (0: encode in a thread)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000],
                        choices=sorted(TARGET_RATIO), help="record sizes to run")
    parser.add_argument("--flush-records", type=int, default=None,
                        help="records a file (the archive policy's flush_records; default "
                             "~20 files a partition; the product's default is 10,000)")
    parser.add_argument("--quick", action="store_true", help="30k records: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.records = 30_000
    if args.flush_records is not None and not (
            0 < args.flush_records <= STEADY_SHARE * args.records // args.partitions):
        # Larger, and no partition fills a file before the timed share: the age limit
        # (60 s) would decide the time, not the agent.
        parser.error(f"--flush-records must be between 1 and "
                     f"{int(STEADY_SHARE * args.records // args.partitions):,} for "
                     f"{args.records:,} records over {args.partitions} partitions")
    global ENCODERS  # noqa: PLW0603 - a run-wide choice read by archive()
    ENCODERS = args.encoders
    print(f"bench/archive.py: {args.records:,} records x {len(args.sizes)} sizes, "
          f"{args.partitions} partitions, {flush_records(args):,} records a file, "
          f"{os.cpu_count()} cores, "
          f"buffer bound {args.bound / 2**20:.0f} MiB",
          file=sys.stderr)
    results = on_worker_loop(run(args))
    if args.json:
        print(json.dumps(results, indent=2))
    # make bench: a missed target (a ratio, or the memory bound) fails the target.
    sys.exit(0 if all(c["ratio"] >= TARGET_RATIO[c["size"]]
                      and c["peak_rss_mib"] <= c["rss_target_mib"]
                      for c in results["cases"]) else 1)


if __name__ == "__main__":
    main()
