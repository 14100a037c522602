"""What a dedup agent tailing a topic costs the broker and the worker's event loop.

    .venv/bin/python bench/dedup_tail.py [--rate 3000] [--seconds 10] [--without-agent]

The produce endpoint's single-record path slowed down when the worker also ran the dedup
agent (issue 15). This measures the agent alone, tailing: one embedded tansu broker, a
load thread producing ~200-byte keyed records one ``produce()`` at a time at ``--rate``
records/s (linger 1 ms, like the endpoint's producer), and the dedup agent
(onepipe.agents.dedup.agent, the worker's code, its group consumer of
``ONEPIPE_KAFKA_CONSUMER_CLIENT``) following the topic. After a 3 s warm-up it prints, for
``--seconds``: records deduplicated per second, the broker's CPU, this process's
event-loop thread CPU (the agent's Python work; the worker shares that loop with the
endpoint) and the requests per second each of the agent's aiokafka clients sent, by kind
(counted in aiokafka's connection). ``--without-agent`` runs the load alone: the broker's
CPU for the load itself, to subtract.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import aiokafka.conn  # noqa: E402
import confluent_kafka  # noqa: E402
import fastavro  # noqa: E402

from bench.common import agent_bench, on_worker_loop, tree_cpu  # noqa: E402
from bench.dedup import SCHEMA  # noqa: E402
from onepipe.agents.dedup.agent import DedupAgent  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402

#: (client id, request kind) -> requests sent while counting.
REQUESTS: collections.Counter[tuple[str, str]] = collections.Counter()
_counting = threading.Event()
_send = aiokafka.conn.AIOKafkaConnection.send


def _counted_send(self: Any, request: Any, expect_response: bool = True) -> Any:
    if _counting.is_set():
        REQUESTS[(self._client_id, type(request).__name__.split("_")[0])] += 1  # noqa: SLF001
    return _send(self, request, expect_response)


def load(bootstrap: str, topic: str, schema_id: int, rate: float, stop: threading.Event
         ) -> None:
    """Produce distinct keyed records at ``rate`` a second, one produce() each."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    encoder = KeyEncoder(parse_schema(SCHEMA), ["id"])
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                                         "partitioner": "murmur2_random", "acks": "all"})
    started, i = time.monotonic(), 0
    while not stop.is_set():
        wait = started + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        buf = io.BytesIO()
        ident = f"item-{i:09d}"
        fastavro.schemaless_writer(buf, parsed, {
            "id": ident, "version": 1, "amount": 1.0, "at": 1_764_151_200_000 + i,
            "payload": "x" * 140})
        producer.produce(topic, frame(schema_id, buf.getvalue()), encoder.encode({"id": ident}))
        producer.poll(0)
        i += 1
    producer.flush(10)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    aiokafka.conn.AIOKafkaConnection.send = _counted_send
    async with agent_bench() as (broker, runtime, data):
        settings = runtime.settings
        topic = "bench-dedup-tail"
        applied = await apply_topic(runtime.registry, topic, SCHEMA, {
            "partitions": 4, "key": ["id"], "order": {"rule": "max", "field": "version"}})
        agent = None
        if not args.without_agent:
            agent = DedupAgent(kafka=settings.kafka, group_id="bench-tail",
                               registry=runtime.registry, data_dir=data,
                               topics=[topic])
            await agent.start()
            await agent.assigned.wait()
        stop = threading.Event()
        loader = threading.Thread(target=load, args=(
            broker.bootstrap, topic, applied.schema_id, args.rate, stop), daemon=True)
        loader.start()
        try:
            await asyncio.sleep(3.0)  # warm-up: the agent is tailing
            pid = broker._process.pid if broker._process is not None else 0  # noqa: SLF001
            consumed = agent.metrics.consumed if agent is not None else 0
            broker_cpu, loop_cpu = tree_cpu(pid), time.thread_time()
            started = time.monotonic()
            _counting.set()
            await asyncio.sleep(args.seconds)
            _counting.clear()
            elapsed = time.monotonic() - started
            broker_cpu, loop_cpu = tree_cpu(pid) - broker_cpu, time.thread_time() - loop_cpu
            consumed = (agent.metrics.consumed if agent is not None else 0) - consumed
        finally:
            stop.set()
            await asyncio.to_thread(loader.join)
            if agent is not None:
                await agent.stop()
    return {"rate": args.rate, "consumer_client": settings.kafka_consumer_client,
            "agent": agent is not None, "deduplicated_s": consumed / elapsed,
            "broker_cpu_pct": 100 * broker_cpu / elapsed,
            "loop_cpu_pct": 100 * loop_cpu / elapsed,
            "requests_s": {f"{client} {kind}": n / elapsed
                           for (client, kind), n in sorted(REQUESTS.items())
                           if client.startswith("bench-tail")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=3000.0, help="records/s produced")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--without-agent", action="store_true",
                        help="the load alone (the broker's CPU to subtract)")
    r = on_worker_loop(run(parser.parse_args()))
    who = f"dedup agent ({r['consumer_client']} consumer)" if r["agent"] else "no agent"
    print(f"{r['rate']:,.0f} records/s produced, {who}: {r['deduplicated_s']:,.0f} "
          f"deduplicated/s; broker CPU {r['broker_cpu_pct']:.0f}%, event-loop thread "
          f"{r['loop_cpu_pct']:.1f}%")
    for name, per_second in r["requests_s"].items():
        print(f"  {name:40s} {per_second:7.1f}/s")


if __name__ == "__main__":
    main()
