"""The consume ceilings, measured in the same run as the agents compared with them.

Each function reads every record of ``topic`` (``count`` of them, partitions 0..n-1) from
the beginning and returns the seconds from the first record to the last:

- :func:`librdkafka_ceiling` - raw ``confluent_kafka.Consumer.consume(num_messages=10000)``
  in a plain loop (no asyncio): the hot paths' real ceiling (issue 15).
- :func:`aiokafka_ceiling` - raw ``AIOKafkaConsumer.getmany``: the old ceiling, kept for
  continuity with earlier figures.
- :func:`adapter_ceiling` - onepipe's librdkafka group consumer
  (onepipe.tables.kafka.rdkafka_consumer) as the factory builds it, ``getmany`` records
  built: what the batch agents' consumer costs before any agent code.
- :func:`pipe_ceiling` - the raw librdkafka consumer of the first, producing every record
  it reads to another topic's same partition with a raw librdkafka producer (acks=all,
  linger 5 ms), until every record is acknowledged: what a consume-and-produce path (the
  dedup agent's ``.unique``) can reach on this broker before any work a record.
- :func:`aio_ceiling` - ``confluent_kafka.aio.AIOConsumer.consume(10000)`` (the
  alternative the adapter was chosen against; bare ``Message`` objects, no records).

:func:`report_ratios` prints an agent's rate against the first two and hands it to
``make bench``'s closing table (bench/summary.py). Run as a script, it prints each
consumer's rate and the process CPU per record it costs (librdkafka's own threads
included).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer  # noqa: E402
from confluent_kafka import TopicPartition as CTopicPartition  # noqa: E402
from confluent_kafka.aio import AIOConsumer  # noqa: E402

from bench.summary import record  # noqa: E402
from onepipe.app.embedded import EmbeddedBroker, free_port  # noqa: E402
from onepipe.tables.kafka.clients import KafkaClients  # noqa: E402
from onepipe.tables.kafka.rdkafka_consumer import RdkafkaConsumer  # noqa: E402
from onepipe.tables.kafka.topics import ensure_topic  # noqa: E402

__all__ = ["adapter_ceiling", "aio_ceiling", "aiokafka_ceiling", "librdkafka_ceiling",
           "librdkafka_ceiling_again",
           "pipe_ceiling", "report_ratios"]

#: The factory's fetch settings (onepipe.tables.kafka.clients), so the ceilings compare
#: alike: librdkafka's default fetch.queue.backoff.ms of 1 s idles a consumer that drains
#: its queue faster than that (the raw ceiling read 150-230k rec/s of 60-byte records).
RAW_CONFIG = {"enable.auto.commit": False, "auto.offset.reset": "earliest",
              "fetch.max.bytes": 16 * 1024 * 1024, "queued.max.messages.kbytes": 16 * 1024,
              "fetch.queue.backoff.ms": 10}


def librdkafka_ceiling(bootstrap: str, topic: str, partitions: int, count: int) -> float:
    """Seconds a raw librdkafka consumer takes to read every record (first record on)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{topic}",
                         **RAW_CONFIG})
    try:
        consumer.assign([CTopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(partitions)])
        seen, started = 0, None
        while seen < count:
            messages = consumer.consume(num_messages=10_000, timeout=1.0)
            if messages and started is None:
                started = time.perf_counter()
            seen += sum(1 for m in messages if m.error() is None)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()


def pipe_ceiling(bootstrap: str, topic: str, partitions: int, count: int, out: str) -> float:
    """Seconds to read every record and have each one acknowledged in ``out`` (which has
    at least ``partitions`` partitions), first record on."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-pipe-{topic}",
                         **RAW_CONFIG})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                         "batch.size": 1024 * 1024, "enable.idempotence": False})
    try:
        consumer.assign([CTopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(partitions)])
        seen, started = 0, None
        produce = producer.produce
        while seen < count:
            messages = consumer.consume(num_messages=10_000, timeout=1.0)
            if messages and started is None:
                started = time.perf_counter()
            for m in messages:
                if m.error() is not None:
                    continue
                seen += 1
                while True:
                    try:
                        produce(out, m.value(), m.key(), m.partition() or 0)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
        if producer.flush(120) != 0:
            raise RuntimeError("the pipe ceiling's records were not all acknowledged")
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()


async def librdkafka_ceiling_again(bootstrap: str, topic: str, partitions: int, count: int,
                                   before: float) -> tuple[float, float]:
    """:func:`librdkafka_ceiling` read once more (after the agent under test), and the
    better of that and ``before``: ``(best seconds, this reading's seconds)``.

    Why twice: one lucky or unlucky minute of this shared machine moved a single reading
    by up to 40%; the better of the two is the conservative ceiling (bench/produce.py
    takes the best of its readings too).
    """
    after = await asyncio.to_thread(librdkafka_ceiling, bootstrap, topic, partitions, count)
    return min(before, after), after


async def aiokafka_ceiling(bootstrap: str, topic: str, partitions: int, count: int) -> float:
    """Seconds a raw aiokafka batch consumer takes to read every record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=200,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            seen += sum(len(b) for b in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def adapter_ceiling(kafka: KafkaClients, topic: str, count: int) -> float:
    """Seconds onepipe's librdkafka group consumer takes (first record on)."""
    consumer = KafkaClients(kafka.bootstrap, session_timeout=kafka.session_timeout,
                            security=kafka.security, consumer_client="librdkafka",
                            ).group_consumer(f"bench-adapter-{topic}")
    assert isinstance(consumer, RdkafkaConsumer)
    await consumer.start()
    try:
        consumer.subscribe([topic])
        seen, started = 0, None
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches and started is None:
                started = time.perf_counter()
            seen += sum(len(b) for b in batches.values())
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()


async def aio_ceiling(bootstrap: str, topic: str, partitions: int, count: int) -> float:
    """Seconds ``confluent_kafka.aio.AIOConsumer`` takes (first record on)."""
    consumer = AIOConsumer({"bootstrap.servers": bootstrap, "group.id": f"bench-aio-{topic}",
                            **RAW_CONFIG})
    try:
        await consumer.assign([CTopicPartition(topic, p, OFFSET_BEGINNING)
                               for p in range(partitions)])
        seen, started = 0, None
        while seen < count:
            messages = await consumer.consume(num_messages=10_000, timeout=1.0)
            if messages and started is None:
                started = time.perf_counter()
            seen += sum(1 for m in messages if m.error() is None)
        return time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.close()


def report_ratios(label: str, rate: float, librdkafka: float, aiokafka: float, target: float,
                  extra: str = "", figure: str | None = None) -> None:
    """Print one line - the agent's rate and its ratio to each ceiling (the target is for
    the librdkafka one, issue 15), ``extra`` after it - and hand the figure (named
    ``figure``, else ``label``) to ``make bench``'s summary (bench/summary.py)."""
    share, old_share = rate / librdkafka, rate / aiokafka
    ok = share >= target
    print(f"  {label:<30} {rate:>10,.0f} rec/s  ratio {share:.2f} of librdkafka (target >= "
          f"{target:.2f}) {'PASS' if ok else 'MISS'}, {old_share:.2f} of aiokafka{extra}")
    # Three decimals: a ratio printed as 0.20 may be 0.197, a miss.
    record(figure or label, f"{share:.3f} of librdkafka ({rate:,.0f} rec/s)",
           target=f">= {target:.2f}", ok=ok,
           note=f"{old_share:.2f} of aiokafka; ceilings: librdkafka {librdkafka:,.0f}, "
                f"aiokafka {aiokafka:,.0f} rec/s")


async def _all(records: int, partitions: int) -> None:
    with EmbeddedBroker(port=free_port()) as broker:
        kafka = KafkaClients(broker.bootstrap, idempotent=False, session_timeout=6.0)
        topic = "bench-ceilings"
        await ensure_topic(kafka, topic, partitions=partitions, replication_factor=1)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for i in range(records):
            while True:
                try:
                    producer.produce(topic, b"x" * 200, key=b"k%d" % i, partition=i % partitions)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        producer.flush(120)
        for name, run in (
                ("raw librdkafka Consumer.consume", lambda: asyncio.to_thread(
                    librdkafka_ceiling, broker.bootstrap, topic, partitions, records)),
                ("raw aiokafka getmany", lambda: aiokafka_ceiling(
                    broker.bootstrap, topic, partitions, records)),
                ("onepipe RdkafkaConsumer.getmany", lambda: adapter_ceiling(
                    kafka, topic, records)),
                ("confluent_kafka.aio AIOConsumer", lambda: aio_ceiling(
                    broker.bootstrap, topic, partitions, records))):
            cpu = time.process_time()
            seconds = await run()
            # The whole process's CPU (librdkafka's own threads included) per record read.
            used = (time.process_time() - cpu) / records * 1e6
            print(f"  {name:<34} {records / seconds:>12,.0f} rec/s  {used:5.2f} us CPU/record")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    print(f"bench/consume_ceilings.py: {count:,} records of 200 B, 4 partitions")
    asyncio.run(_all(count, 4))
