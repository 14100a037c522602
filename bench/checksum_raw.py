"""The checksum agent's raw record counting: its cost per record, and its rate from Kafka.

    .venv/bin/python bench/checksum_raw.py [--records N] [--kafka-records N]

The checksum agent reads every record of every keyed source topic a second time to count
raw records per partition_time day: onepipe.agents.checksum.raw.RawPlacer places a batch
(the partition_time field decoded in one polars container block) and
onepipe.tables.checksum.count_raw counts the days column-wise. No broker first: the CPU
of placing and counting batches of ``BATCH`` records (fresh bytes each time, as a fetch
hands them over) held as either consumer hands them over - aiokafka's list of
``ConsumerRecord`` and the librdkafka consumer's columns (``PartitionRecords``) - next
to what the dedup agent pays to decode the same values on its hot path
(onepipe.tables.dedup.decode.TopicReader: key and order columns in batch by polars).

Then, from Kafka (one embedded tansu broker): two ceilings over one keyed topic - raw
librdkafka ``Consumer.consume(num_messages=10000)`` and raw aiokafka ``getmany``
(bench/consume_ceilings.py; librdkafka's read again after the agent, the better of the
two counts) - and the checksum agent (onepipe.agents.checksum.agent, the
code the worker runs, its group consumer of ``ONEPIPE_KAFKA_CONSUMER_CLIENT``) counting
every source record of that topic (its ``.unique`` topic exists and stays empty, so the
agent reads the source alone): records/s from assignment until every record is counted,
and the ratio to each ceiling (target, of librdkafka's: >= 0.40; issue 15), and the CPU
the process spent per record over that span (the agent's loop, its consumer and its
threads; on two cores shared with the broker, the figure that decides the rate), split by
thread (Linux ``/proc``): the event loop, the librdkafka consumer's handle thread, the
worker threads that place and count, librdkafka's own C threads.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from aiokafka import AIOKafkaProducer, ConsumerRecord  # noqa: E402

from bench.common import agent_bench, max_records_option, on_worker_loop  # noqa: E402
from bench.consume_ceilings import (  # noqa: E402
    aiokafka_ceiling,
    librdkafka_ceiling,
    librdkafka_ceiling_again,
    report_ratios,
)
from onepipe.agents.checksum.agent import ChecksumAgent  # noqa: E402
from onepipe.agents.checksum.raw import RawPlacer  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.schemas.avro_schema import AvroSchema, parse_schema  # noqa: E402
from onepipe.schemas.codec import frame  # noqa: E402
from onepipe.schemas.metadata import metadata_from_dict  # noqa: E402
from onepipe.schemas.topic_names import unique_topic  # noqa: E402
from onepipe.sinks.formats.topic_view import TopicView  # noqa: E402
from onepipe.tables.checksum import count_raw  # noqa: E402
from onepipe.tables.dedup.decode import TopicReader  # noqa: E402
from onepipe.tables.kafka import ensure_topic  # noqa: E402
from onepipe.tables.kafka.record_columns import PartitionRecords  # noqa: E402

#: Of the librdkafka ceiling (issue 15).
TARGET_RATIO = 0.40
PARTITIONS = 4
#: Records a partition's batch holds (the agent fetches 20,000 at most).
BATCH = 5_000
METADATA = {"key": ["widget_id"], "order": {"rule": "max", "field": "version"},
            "partition_time": "updated_at", "partitions": PARTITIONS,
            "checks": {"count_distinct": "key", "sum": ["price"], "checksum": "row"}}


def _cpu_per_record(runs: int, n: int, make: Callable[[], list[Any]],
                    fn: Callable[[Any], Any]) -> float:
    """Mean process CPU µs a record of ``fn`` over each batch ``make()`` returns, over
    ``runs`` runs (after one to warm up); the batches are made outside the measure."""
    spent = 0.0
    for run in range(runs + 1):
        batches = make()
        started = time.process_time()
        for batch in batches:
            fn(batch)
        if run:
            spent += time.process_time() - started
    return spent / runs / n * 1e6


def _fresh(values: Sequence[bytes]) -> list[bytes]:
    """New bytes objects (not in the cache), as a fetch hands them over."""
    return [bytes(bytearray(v)) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    # 1M: at the agent's 20,000-record steps, 500k records were ~25 fetches and 1.3 s, and
    # its assignment and first fetch weighed more than in the ceiling (timed from its first
    # record): 0.35-0.46 there against 0.41-0.48 over 1M (BENCHMARKS.md, "Checksum steps").
    parser.add_argument("--kafka-records", type=int, default=1_000_000,
                        help="records of the from-Kafka part (0: skip it)")
    parser.add_argument("--max-records", type=int, default=None,
                        help="the agent's records a fetch (default: the agent's, what a "
                             "worker runs)")
    args = parser.parse_args()
    schema: AvroSchema = parse_schema((ROOT / "catalog" / "widgets.avsc").read_text())
    meta = metadata_from_dict("widgets", METADATA)
    day = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    values = []
    for i in range(args.records):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, {
            "widget_id": f"w{i}", "version": i, "name": "bolt", "price": 1.5 * i,
            "updated_at": day + dt.timedelta(seconds=i)})
        values.append(frame(1, buf.getvalue()))
    stamp = 1_764_115_200_000
    placer = RawPlacer(TopicView.build(meta, schema), schema)
    reader = TopicReader(meta, schema, lambda _: schema)
    batches = [values[i:i + BATCH] for i in range(0, len(values), BATCH)]

    def count(records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        placed = placer.place(lambda _: schema, records)
        count_raw({}, placed.days, placed.undecodable, 0)

    def aiokafka_records() -> list[list[ConsumerRecord[Any, Any]]]:
        return [[ConsumerRecord("t", 0, i, stamp, 0, None, v, None, 0, 0, ())
                 for i, v in enumerate(_fresh(batch))] for batch in batches]

    def librdkafka_columns() -> list[PartitionRecords]:
        out = []
        for batch in batches:
            fresh: list[bytes | None] = [*_fresh(batch)]
            out.append(PartitionRecords.of("t", 0, list(range(len(batch))),
                                           [(1, stamp)] * len(batch), [None] * len(batch),
                                           fresh, None))
        return out

    n = args.records
    rows = [("dedup decode (baseline)",
             _cpu_per_record(3, n, lambda: [_fresh(b) for b in batches], reader.read)),
            ("place + count, aiokafka records", _cpu_per_record(3, n, aiokafka_records, count)),
            ("place + count, librdkafka columns",
             _cpu_per_record(3, n, librdkafka_columns, count))]
    print(f"{n:,} widgets records (~{sum(map(len, values)) // n} B), batches of {BATCH:,}, "
          "process CPU a record, mean of 3")
    for label, us in rows:
        print(f"  {label:<36} {us:.2f} us/record")
    if args.kafka_records and not on_worker_loop(
            from_kafka(schema, args.kafka_records, args.max_records)):
        sys.exit(1)  # make bench: a missed target fails the target


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by name (Linux /proc)."""
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        name = names.get(task.name) or stat[stat.index("(") + 1:stat.rindex(")")]
        out[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _by_role(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two :func:`_thread_cpu` readings, by the thread's role."""
    roles: dict[str, float] = collections.defaultdict(float)
    for key, seconds in after.items():
        name = key.rpartition("/")[0]
        role = ("event loop" if name == "MainThread" else
                # the default executor's threads: asyncio's and uvloop's names
                "place + count (worker threads)"
                if name.startswith(("asyncio_", "uvloop_")) else
                "librdkafka consumer's handle thread" if name.startswith("rdkafka-") else
                "librdkafka C threads" if name.startswith("rdk:") else "other")
        roles[role] += seconds - before.get(key, 0.0)
    return roles


async def from_kafka(schema: AvroSchema, count: int, max_records: int | None = None) -> bool:
    """The checksum agent counting ``count`` source records from Kafka, and the ceilings;
    whether it met the target."""
    async with agent_bench() as (broker, runtime, data):
        settings = runtime.settings
        topic = "bench-checksum"
        applied = await apply_topic(runtime.registry, topic, schema.json, METADATA)
        await ensure_topic(settings.kafka, unique_topic(topic), partitions=PARTITIONS,
                           replication_factor=1)
        await produce(broker.bootstrap, topic, schema, applied.schema_id, count)
        before_s = await asyncio.to_thread(librdkafka_ceiling, broker.bootstrap, topic,
                                           PARTITIONS, count)
        aio = count / await aiokafka_ceiling(broker.bootstrap, topic, PARTITIONS, count)
        agent = ChecksumAgent(kafka=settings.kafka, group_id=f"bench-{topic}",
                              registry=runtime.registry, data_dir=data,
                              topics=[topic],
                              **max_records_option(max_records))
        await agent.start()
        try:
            await agent.assigned.wait()
            started, cpu, threads = time.perf_counter(), time.process_time(), _thread_cpu()
            await agent.wait_until(lambda m: m.counted >= count)
            rate = count / (time.perf_counter() - started)
            cpu_us = (time.process_time() - cpu) / count * 1e6
            roles = _by_role(threads, _thread_cpu())
        finally:
            await agent.stop()
        best_s, after_s = await librdkafka_ceiling_again(broker.bootstrap, topic,
                                                         PARTITIONS, count, before_s)
    rd, rd_before, rd_after = count / best_s, count / before_s, count / after_s
    print(f"\nfrom Kafka: {count:,} widgets records, {PARTITIONS} partitions (agent's "
          f"consumer: {settings.kafka_consumer_client})")
    print(f"  raw librdkafka consume (ceiling) {rd:>10,.0f} rec/s (best of before "
          f"{rd_before:,.0f}, after {rd_after:,.0f})")
    print(f"  raw aiokafka getmany (ceiling)   {aio:>10,.0f} rec/s")
    report_ratios("checksum agent raw counting", rate, rd, aio, TARGET_RATIO)
    print(f"  CPU per record                   {cpu_us:>10.2f} us (load "
          f"{os.getloadavg()[0]:.2f})")
    for role, seconds in sorted(roles.items(), key=lambda kv: -kv[1]):
        if seconds:
            print(f"    {role:<38} {seconds / count * 1e6:>6.2f} us")
    return rate / rd >= TARGET_RATIO


async def produce(bootstrap: str, topic: str, schema: AvroSchema, schema_id: int,
                  count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024)
    await producer.start()
    day = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    try:
        pending = []
        for i in range(count):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema.parsed, {
                "widget_id": f"w{i}", "version": i, "name": "bolt", "price": 1.5 * i,
                "updated_at": day + dt.timedelta(seconds=i)})
            pending.append(await producer.send(topic, frame(schema_id, buf.getvalue()),
                                               key=f"w{i}".encode(), partition=i % PARTITIONS))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


if __name__ == "__main__":
    main()
