"""The checksum agent's raw record counting: its cost per record, and its rate from Kafka.

    .venv/bin/python bench/checksum_raw.py [--records N] [--kafka-records N]

The checksum agent reads every record of every keyed source topic a second time to count
raw records per partition_time day (onepipe.agents.checksum.raw.RawPlacer: the partition_time
field decoded with fastavro, record by record). The baseline is what the dedup agent pays
for the same values on its hot path (onepipe.tables.dedup.decode.TopicReader: key and order
columns decoded in batch by polars), measured in the same run on the same values, so the
ratio says how much of a dedup agent's decode budget the counting adds per record.
No broker: decoding only (the Kafka fetch costs the same for both).

Then, from Kafka (one embedded tansu broker): two ceilings over one keyed topic - raw
librdkafka ``Consumer.consume(num_messages=10000)`` and raw aiokafka ``getmany``
(bench/consume_ceilings.py) - and the checksum agent (onepipe.agents.checksum.agent, the
code the worker runs, its group consumer of ``ONEPIPE_KAFKA_CONSUMER_CLIENT``) counting
every source record of that topic (its ``.unique`` topic exists and stays empty, so the
agent reads the source alone): records/s from assignment until every record is counted,
and the ratio to each ceiling (target, of librdkafka's: >= 0.40; issue 15), and the CPU
the process spent per record over that span (the agent's loop, its consumer and its
threads; on two cores shared with the broker, the figure that decides the rate).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.common import agent_bench  # noqa: E402
from bench.consume_ceilings import aiokafka_ceiling, librdkafka_ceiling, ratios  # noqa: E402
from onepipe.agents.checksum.agent import ChecksumAgent  # noqa: E402
from onepipe.agents.checksum.raw import RawPlacer  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.schemas.avro_schema import AvroSchema, parse_schema  # noqa: E402
from onepipe.schemas.codec import frame  # noqa: E402
from onepipe.schemas.metadata import metadata_from_dict  # noqa: E402
from onepipe.schemas.topic_names import unique_topic  # noqa: E402
from onepipe.sinks.formats.topic_view import TopicView  # noqa: E402
from onepipe.tables.dedup.decode import TopicReader  # noqa: E402
from onepipe.tables.kafka import ensure_topic  # noqa: E402

#: Of the librdkafka ceiling (issue 15).
TARGET_RATIO = 0.40
PARTITIONS = 4
METADATA = {"key": ["widget_id"], "order": {"rule": "max", "field": "version"},
            "partition_time": "updated_at", "partitions": PARTITIONS,
            "checks": {"count_distinct": "key", "sum": ["price"], "checksum": "row"}}


class _Record(NamedTuple):
    value: bytes
    timestamp: int


def _best(runs: int, fn: Callable[[], Any]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--kafka-records", type=int, default=500_000,
                        help="records of the from-Kafka part (0: skip it)")
    args = parser.parse_args()
    schema: AvroSchema = parse_schema((ROOT / "catalog" / "widgets.avsc").read_text())
    meta = metadata_from_dict("widgets", METADATA)
    day = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    records = []
    for i in range(args.records):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, {
            "widget_id": f"w{i}", "version": i, "name": "bolt", "price": 1.5 * i,
            "updated_at": day + dt.timedelta(seconds=i)})
        records.append(_Record(frame(1, buf.getvalue()), 1_764_115_200_000))
    values = [r.value for r in records]
    placer = RawPlacer(TopicView.build(meta, schema), schema)
    reader = TopicReader(meta, schema, lambda _: schema)
    counting = _best(3, lambda: placer.place(lambda _: schema, records))
    dedup = _best(3, lambda: reader.read(values))
    n = args.records
    print(f"{n:,} widgets records (~{sum(map(len, values)) // n} B), best of 3")
    print(f"  dedup decode (baseline)  {n / dedup:>12,.0f} rec/s  {dedup / n * 1e6:.2f} us/record")
    print(f"  raw day counting         {n / counting:>12,.0f} rec/s  "
          f"{counting / n * 1e6:.2f} us/record")
    print(f"  counting / dedup decode time: {counting / dedup:.1f}x")
    if args.kafka_records:
        asyncio.run(from_kafka(schema, args.kafka_records))


async def from_kafka(schema: AvroSchema, count: int) -> None:
    """The checksum agent counting ``count`` source records from Kafka, and the ceilings."""
    async with agent_bench() as (broker, runtime, data):
        settings = runtime.settings
        topic = "bench-checksum"
        applied = await apply_topic(runtime.registry, topic, schema.json, METADATA)
        await ensure_topic(settings.kafka, unique_topic(topic), partitions=PARTITIONS,
                           replication_factor=1)
        await produce(broker.bootstrap, topic, schema, applied.schema_id, count)
        rd = count / await asyncio.to_thread(librdkafka_ceiling, broker.bootstrap, topic,
                                             PARTITIONS, count)
        aio = count / await aiokafka_ceiling(broker.bootstrap, topic, PARTITIONS, count)
        agent = ChecksumAgent(kafka=settings.kafka, group_id=f"bench-{topic}",
                              registry=runtime.registry, data_dir=data,
                              topics=[topic])
        await agent.start()
        try:
            await agent.assigned.wait()
            started, cpu = time.perf_counter(), time.process_time()
            await agent.wait_until(lambda m: m.counted >= count)
            rate = count / (time.perf_counter() - started)
            cpu_us = (time.process_time() - cpu) / count * 1e6
        finally:
            await agent.stop()
    print(f"\nfrom Kafka: {count:,} widgets records, {PARTITIONS} partitions (agent's "
          f"consumer: {settings.kafka_consumer_client})")
    print(f"  raw librdkafka consume (ceiling) {rd:>10,.0f} rec/s")
    print(f"  raw aiokafka getmany (ceiling)   {aio:>10,.0f} rec/s")
    print(ratios("checksum agent raw counting", rate, rd, aio, TARGET_RATIO))
    print(f"  CPU per record                   {cpu_us:>10.2f} us (load "
          f"{os.getloadavg()[0]:.2f})")


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
