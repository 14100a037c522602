"""Which asyncio producer on librdkafka: a poll thread (ours) or confluent_kafka.aio.

    .venv/bin/python bench/producer_clients.py [--records N] [--singles N] [--linger MS]

One embedded tansu broker; the same pre-encoded records (~215 B values, keyed) through:
raw ``confluent_kafka.Producer`` (the ceiling), onepipe's ``RdkafkaProducer`` (poll
thread handing each poll's reports to the loop), ``confluent_kafka.aio.AIOProducer`` and
raw ``AIOKafkaProducer``. Throughput: 500-record chunks, futures gathered per chunk,
4 concurrent chunk loops. Latency: ``--singles`` records sent and awaited one at a time
(a one-record produce request). Figures go into tables/kafka/rdkafka_producer.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

from confluent_kafka.aio import AIOProducer  # noqa: E402

from bench.ceilings import (  # noqa: E402
    adapter_ceiling,
    aio_ceiling,
    aiokafka_ceiling,
    rdkafka_ceiling,
    rdkafka_config,
)
from bench.common import Services, percentile  # noqa: E402
from onepipe.tables.kafka import ensure_topic  # noqa: E402
from onepipe.tables.kafka.clients import KafkaClients  # noqa: E402


def records(n: int) -> list[tuple[bytes | None, bytes]]:
    return [(f"widget-{i:010d}".encode(), os.urandom(215)) for i in range(n)]


async def singles(send: Callable[[bytes, bytes], Awaitable[Any]], recs: Sequence[
        tuple[bytes | None, bytes]]) -> tuple[float, float]:
    """p50 and p99 (ms) of one record sent and awaited at a time."""
    took = []
    for key, value in recs:
        t = time.perf_counter()
        await send(key or b"", value)
        took.append(time.perf_counter() - t)
    return percentile(took, 50) * 1000, percentile(took, 99) * 1000


async def run(bootstrap: str, args: argparse.Namespace) -> list[tuple[str, float, str]]:
    kafka = KafkaClients(bootstrap, idempotent=False, request_timeout=30.0)
    recs = records(args.records)
    single = records(args.singles)
    rows: list[tuple[str, float, str]] = []
    n = 0

    async def topic() -> str:
        nonlocal n
        n += 1
        name = f"bench-clients-{n}"
        await ensure_topic(kafka, name, partitions=4, replication_factor=1)
        return name

    secs = await asyncio.to_thread(rdkafka_ceiling, kafka, await topic(), recs, args.linger)
    rows.append(("raw confluent_kafka.Producer", len(recs) / secs, "(no asyncio)"))

    adapter = kafka.rdkafka_producer("bench-single", linger_ms=args.linger)
    await adapter.start()
    t = await topic()
    p50, p99 = await singles(lambda k, v: adapter.send_and_wait(t, v, k), single)
    await adapter.stop()
    secs = await adapter_ceiling(kafka, await topic(), recs, args.concurrency, args.linger)
    rows.append(("RdkafkaProducer (poll thread)", len(recs) / secs,
                 f"{p50:.2f} / {p99:.2f} ms"))

    aio = AIOProducer(rdkafka_config(kafka, "bench-aio-single", args.linger))
    t = await topic()

    async def aio_send(k: bytes, v: bytes) -> Any:
        return await (await aio.produce(t, value=v, key=k))

    p50, p99 = await singles(aio_send, single[: max(10, args.singles // 50)])
    await aio.close()
    secs = await aio_ceiling(kafka, await topic(), recs, args.concurrency, args.linger)
    rows.append(("confluent_kafka.aio.AIOProducer", len(recs) / secs,
                 f"{p50:.2f} / {p99:.2f} ms (fewer samples: each waits for its buffer)"))

    aiok = kafka.producer("bench-aiokafka-single", linger_ms=args.linger)
    await aiok.start()
    t = await topic()
    p50, p99 = await singles(lambda k, v: aiok.send_and_wait(t, v, key=k), single)
    await aiok.stop()
    secs = await aiokafka_ceiling(kafka, await topic(), recs, args.concurrency, args.linger)
    rows.append(("raw AIOKafkaProducer", len(recs) / secs, f"{p50:.2f} / {p99:.2f} ms"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--singles", type=int, default=2_000)
    p.add_argument("--linger", type=int, default=5, help="linger.ms (default 5)")
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args(argv)
    with Services() as services:
        services.start_broker()
        rows = asyncio.run(run(services.bootstrap, args))
    ceiling = rows[0][1]
    print(f"{args.records} records, linger {args.linger} ms, 1 MiB batches, acks=all, "
          f"{args.concurrency} loops x 500; load {os.getloadavg()[0]:.1f}")
    print(f"{'client':34} {'rec/s':>10} {'ratio':>6}  one record sequential p50 / p99")
    for name, rps, latency in rows:
        print(f"{name:34} {rps:>10,.0f} {rps / ceiling:>6.2f}  {latency}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
