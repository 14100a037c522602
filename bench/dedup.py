"""Dedup agent throughput against the raw consume ceiling, measured in one run on one broker.

    .venv/bin/python bench/dedup.py [--records N] [--partitions P] [--duplicates 0.1] [--json]

1. Produces N distinct keys plus ``duplicates`` x N re-sent versions (exact copies of
   earlier records: what producer retries look like) of ~200-byte Confluent-framed Avro
   values, with canonical keys in their canonical partitions (what the endpoint does),
   through a raw aiokafka producer, once.
2. Three ceilings over the same topic from the same embedded tansu broker: a raw librdkafka
   consumer (``Consumer.consume(num_messages=10000)``, the hot paths' real ceiling; read
   again after step 3, the better of the two counts), a
   raw aiokafka batch consumer (``getmany``), and the raw librdkafka consumer re-producing
   every record it reads to another topic until acknowledged, as dedup does to
   ``.unique`` with ~all records (bench/consume_ceilings.py).
3. The dedup agent (onepipe.agents.dedup.agent, the code the worker runs) over the same topic: from
   partition assignment until its consumed counter reaches the total (each batch is then
   emitted to ``.unique``, acknowledged, written to RocksDB and committed), its group
   consumer of ``ONEPIPE_KAFKA_CONSUMER_CLIENT``. The ratio to the librdkafka ceiling has
   a target of >= 0.20 per worker (issue 15); the ratio to aiokafka's is printed too. The
   process's garbage collector is configured as a worker's
   (``onepipe.app.runtime.GC_THRESHOLDS``, ``gc.freeze()`` after start).
4. RocksDB bytes on disk after the run and this process's peak RSS while the agent ran.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.common import (  # noqa: E402
    PeakRss,
    agent_bench,
    machine_facts,
    max_records_option,
    on_worker_loop,
    tree_cpu,
)
from bench.consume_ceilings import (  # noqa: E402
    aiokafka_ceiling,
    librdkafka_ceiling,
    librdkafka_ceiling_again,
    pipe_ceiling,
    report_ratios,
)
from onepipe.agents.dedup.agent import DedupAgent  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.app.runtime import GC_THRESHOLDS, Runtime  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402
from onepipe.schemas.partitioner import partitions_for  # noqa: E402
from onepipe.tables.kafka.topics import ensure_topic  # noqa: E402

#: Of the librdkafka ceiling (issue 15).
TARGET_RATIO = 0.20
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Item", "namespace": "bench.dedup", "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "payload", "type": "string"},
    ]}


async def produce(bootstrap: str, topic: str, schema_id: int, distinct: int,
                  duplicates: float, partitions: int) -> tuple[int, int]:
    """Produce the data set; return (records, value bytes)."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    from onepipe.schemas.avro_schema import parse_schema  # noqa: PLC0415 - bench only

    encoder = KeyEncoder(parse_schema(SCHEMA), ["id"])
    rng = random.Random(42)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_batch_size=1024 * 1024)
    await producer.start()
    total = count = 0
    try:
        chunk = 20_000
        sent: list[tuple[bytes, bytes]] = []
        for start in range(0, distinct, chunk):
            records: list[tuple[bytes, bytes]] = []
            for i in range(start, min(distinct, start + chunk)):
                buf = io.BytesIO()
                ident = f"item-{i:09d}"
                fastavro.schemaless_writer(buf, parsed, {
                    "id": ident, "version": 1 + i % 7, "amount": i * 0.25,
                    "at": 1_764_151_200_000 + i, "payload": "x" * 140})
                records.append((encoder.encode({"id": ident}), frame(schema_id, buf.getvalue())))
            sent.extend(records[:: max(1, int(1 / duplicates))] if duplicates else [])
            # Duplicates: exact re-sends of earlier records, mixed into later chunks.
            dups = [sent[rng.randrange(len(sent))] for _ in range(int(len(records) * duplicates))]
            batch = records + dups
            parts = partitions_for([k for k, _ in batch], partitions)
            by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
            for (key, value), p in zip(batch, parts, strict=True):
                by_partition.setdefault(p, []).append((key, value))
            futures = []
            for p, items in by_partition.items():
                builder = producer.create_batch()
                for key, value in items:
                    if builder.append(key=key, value=value, timestamp=None) is None:
                        futures.append(await producer.send_batch(builder, topic, partition=p))
                        builder = producer.create_batch()
                        builder.append(key=key, value=value, timestamp=None)
                    total += len(value)
                    count += 1
                futures.append(await producer.send_batch(builder, topic, partition=p))
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count, total


async def dedup(runtime: Runtime, topic: str, count: int, data_dir: Path, broker_pid: int,
                max_records: int | None) -> tuple[float, int, int, DedupAgent, tuple[float, float],
                                           float]:
    """(seconds, peak RSS, RocksDB bytes, agent, (process CPU s, event-loop thread CPU s),
    broker CPU s) of the agent over the topic."""
    agent = DedupAgent(kafka=runtime.settings.kafka, group_id=f"bench-{topic}",
                       registry=runtime.registry, data_dir=data_dir, topics=[topic],
                       **max_records_option(max_records))
    with PeakRss() as rss:
        await agent.start()
        # The collector as a worker runs it (onepipe.app.runtime.Runtime.start): its thresholds,
        # and everything built at start-up frozen out of the generations. A worker starts
        # the dedup agent before it freezes, so the agent's clients are frozen here too.
        gc.set_threshold(*GC_THRESHOLDS)
        gc.freeze()
        try:
            await agent.assigned.wait()
            started = time.perf_counter()
            cpu, broker_cpu = time.process_time(), tree_cpu(broker_pid)
            loop_cpu = time.thread_time()  # the event loop's thread: the agent's Python work
            await agent.wait_until(lambda m: m.consumed >= count or m.restarts > 0)
            if agent.metrics.restarts:
                raise SystemExit("the dedup agent failed and restarted during the bench; "
                                 "see the log above")
            elapsed = time.perf_counter() - started
            loop_cpu = time.thread_time() - loop_cpu
            cpu, broker_cpu = time.process_time() - cpu, tree_cpu(broker_pid) - broker_cpu
        finally:
            await agent.stop()
    return elapsed, rss.peak, agent.disk_bytes(), agent, (cpu, loop_cpu), broker_cpu


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with agent_bench() as (broker, runtime, data):
        settings = runtime.settings
        topic = "bench-dedup"
        applied = await apply_topic(runtime.registry, topic, SCHEMA, {
            "partitions": args.partitions, "key": ["id"],
            "order": {"rule": "max", "field": "version"}})
        t0 = time.perf_counter()
        count, value_bytes = await produce(broker.bootstrap, topic, applied.schema_id,
                                           args.records, args.duplicates, args.partitions)
        print(f"produced {count:,} records ({value_bytes / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rd_seconds = await asyncio.to_thread(librdkafka_ceiling, broker.bootstrap, topic,
                                             args.partitions, count)
        raw_seconds = await aiokafka_ceiling(broker.bootstrap, topic, args.partitions,
                                             count)
        await ensure_topic(settings.kafka, "bench-dedup-pipe", partitions=args.partitions,
                           replication_factor=1)
        pipe_seconds = await asyncio.to_thread(pipe_ceiling, broker.bootstrap, topic,
                                               args.partitions, count, "bench-dedup-pipe")
        pid = broker._process.pid if broker._process is not None else 0  # noqa: SLF001
        seconds, peak, disk, agent, (cpu, loop_cpu), broker_cpu = await dedup(
            runtime, topic, count, data, pid, args.max_records)
        rd_before = rd_seconds
        rd_seconds, rd_after = await librdkafka_ceiling_again(
            broker.bootstrap, topic, args.partitions, count, rd_before)
    m = agent.metrics
    result = {
        "records": count, "distinct_keys": args.records, "partitions": args.partitions,
        "record_bytes": round(value_bytes / count),
        "consumer_client": settings.kafka_consumer_client,
        "librdkafka_records_s": count / rd_seconds,
        "librdkafka_before_after": [count / rd_before, count / rd_after],
        "ceiling_records_s": count / raw_seconds,
        "pipe_records_s": count / pipe_seconds,
        "dedup_records_s": count / seconds,
        "ratio": (count / seconds) / (count / rd_seconds),
        "ratio_aiokafka": (count / seconds) / (count / raw_seconds),
        "ratio_pipe": (count / seconds) / (count / pipe_seconds),
        "target": TARGET_RATIO,
        "winners": m.winners, "duplicates": m.duplicates, "losers": m.losers,
        "superseded": m.superseded, "undecodable": m.undecodable,
        "rocksdb_bytes": disk, "peak_rss_mib": peak / 2**20,
        "agent_cpu_pct": 100 * cpu / seconds, "broker_cpu_pct": 100 * broker_cpu / seconds,
        "agent_cpu_us_per_record": 1e6 * cpu / count,
        "loop_thread_cpu_us_per_record": 1e6 * loop_cpu / count,
        "machine": machine_facts(),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="distinct keys")
    parser.add_argument("--duplicates", type=float, default=0.10,
                        help="re-sent versions as a share of the distinct keys")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-records", type=int, default=None,
                        help="records per consumer fetch of the agent (its max_records; "
                             "default: the agent's, what a worker runs)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    print(f"bench/dedup.py: {args.records:,} distinct keys + {args.duplicates:.0%} "
          f"duplicates, {args.partitions} partitions, {os.cpu_count()} cores", file=sys.stderr)
    r = on_worker_loop(run(args))
    met = r["ratio"] >= TARGET_RATIO
    if args.json:
        print(json.dumps(r, indent=2))
        sys.exit(0 if met else 1)
    print(f"\n{r['records']:,} records of ~{r['record_bytes']} bytes, "
          f"{r['distinct_keys']:,} distinct keys, {r['partitions']} partitions "
          f"(agent's consumer: {r['consumer_client']})")
    before, after = r["librdkafka_before_after"]
    print(f"  raw librdkafka consume (ceiling) {r['librdkafka_records_s']:>10,.0f} rec/s "
          f"(best of before {before:,.0f}, after {after:,.0f})")
    print(f"  raw aiokafka getmany (ceiling)   {r['ceiling_records_s']:>10,.0f} rec/s")
    print(f"  raw librdkafka consume + produce {r['pipe_records_s']:>10,.0f} rec/s "
          f"({r['pipe_records_s'] / r['librdkafka_records_s']:.2f} of the consume ceiling)")
    report_ratios("dedup agent -> .unique", r["dedup_records_s"], r["librdkafka_records_s"],
                  r["ceiling_records_s"], TARGET_RATIO)
    print(f"  {'':<30} {r['ratio_pipe']:.2f} of raw consume + produce (every record "
          "re-produced, no work a record)")
    print(f"  winners {r['winners']:,}  duplicates {r['duplicates']:,}  losers {r['losers']:,}"
          f"  superseded {r['superseded']:,}  undecodable {r['undecodable']:,}")
    print(f"  CPU while deduplicating: agent process {r['agent_cpu_pct']:.0f}% "
          f"({r['agent_cpu_us_per_record']:.1f} us/record, event-loop thread "
          f"{r['loop_thread_cpu_us_per_record']:.1f}), broker {r['broker_cpu_pct']:.0f}%")
    print(f"  RocksDB on disk {r['rocksdb_bytes'] / 2**20:,.0f} MiB   "
          f"peak RSS {r['peak_rss_mib']:,.0f} MiB")
    sys.exit(0 if met else 1)  # make bench: a missed target fails the target


if __name__ == "__main__":
    main()
