"""Developers' agents against the raw consume ceilings, measured in one run on one broker.

    .venv/bin/python bench/agents.py [--records N] [--keys K] [--partitions P] [--json]

1. Produces N Confluent-framed Avro values of ~200 bytes (K distinct values of the field
   the agents count by), keyed and partitioned as the produce endpoint does, once.
2. Two ceilings over the same topic, from the same embedded tansu broker: a raw
   librdkafka consumer (confluent-kafka ``Consumer.consume(num_messages=10000)``, the
   hot paths' real ceiling) and a raw aiokafka batch consumer (``getmany``).
3. The same stateful count (``counts[record.kind] += 1`` in a ``onepipe.Table``) as a
   batch agent (``@onepipe.batch_agent``, typed records) and as a per-record agent
   (``@onepipe.agent``, ``async for``), each run by the worker's agent runner
   (onepipe.agents.framework) from assignment until it has committed every record: each
   batch decoded, converted to the dataclass, counted, its state changes produced to the
   changelog and acknowledged, then written to RocksDB with the input position.
4. Both agents' counts are checked against the independent count of what was produced.

Targets: the batch agent >= 0.15 of the librdkafka ceiling (issue 10); the per-record
agent is reported as measured.
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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

import onepipe  # noqa: E402
from bench.common import agent_bench, machine_facts, on_worker_loop  # noqa: E402
from bench.consume_ceilings import aiokafka_ceiling, librdkafka_ceiling  # noqa: E402
from bench.summary import record  # noqa: E402
from onepipe.agents.framework import AgentMetrics, AgentProcessor, AgentRunner, AgentSpec  # noqa: E402
from onepipe.agents.framework.declare import declared  # noqa: E402
from onepipe.app.catalog import apply_topic  # noqa: E402
from onepipe.app.runtime import GC_THRESHOLDS, Runtime  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402
from onepipe.schemas.partitioner import partitions_for  # noqa: E402
from onepipe.tables.state import CURRENT, PartitionState, StateStore, activate  # noqa: E402

TARGET_RATIO = 0.15
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Event", "namespace": "bench.agents", "fields": [
        {"name": "id", "type": "string"},
        {"name": "version", "type": "long"},
        {"name": "kind", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "payload", "type": "string"},
    ]}


@dataclass(frozen=True, slots=True)
class Event:
    """The fields the agents read (a projection of :data:`SCHEMA`)."""

    id: str
    kind: str
    amount: float


batch_counts = onepipe.Table("counts", default=0)
record_counts = onepipe.Table("counts", default=0)


@onepipe.batch_agent("bench-agents", name="bench-batch-count", record=Event,
                     tables=[batch_counts], max_records=10_000)
async def count_batches(batch: onepipe.Batch[Event]) -> None:
    for event in batch:
        batch_counts[event.kind] += 1


@onepipe.agent("bench-agents", name="bench-record-count", record=Event,
               tables=[record_counts], max_records=10_000)
async def count_records(stream: onepipe.Stream[Event]) -> None:
    async for event in stream:
        record_counts[event.kind] += 1


SPECS = {"batch": "bench-batch-count", "record": "bench-record-count"}


def spec_of(kind: str) -> AgentSpec:
    return next(s for s in declared() if s.name == SPECS[kind])


def produce(bootstrap: str, topic: str, schema_id: int, records: int, keys: int,
            partitions: int) -> tuple[Counter[str], int]:
    """Produce the data set with librdkafka; return (records per kind, value bytes)."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    encoder = KeyEncoder(parse_schema(SCHEMA), ["id"])
    rng = random.Random(7)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "batch.size": 1024 * 1024, "acks": "all",
                         "enable.idempotence": False, "queue.buffering.max.messages": 500_000})
    kinds: Counter[str] = Counter()
    total = 0
    chunk = 20_000
    for start in range(0, records, chunk):
        batch: list[tuple[bytes, bytes]] = []
        for i in range(start, min(records, start + chunk)):
            kind = f"kind-{rng.randrange(keys):06d}"
            kinds[kind] += 1
            buf = io.BytesIO()
            ident = f"event-{i:09d}"
            fastavro.schemaless_writer(buf, parsed, {
                "id": ident, "version": 1, "kind": kind, "amount": i * 0.25,
                "at": 1_764_151_200_000 + i, "payload": "x" * 150})
            batch.append((encoder.encode({"id": ident}), frame(schema_id, buf.getvalue())))
        for (key, value), p in zip(batch, partitions_for([k for k, _ in batch], partitions),
                                   strict=True):
            while True:
                try:
                    producer.produce(topic, value=value, key=key, partition=p)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)
            total += len(value)
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit("librdkafka did not deliver every record within 120 s")
    return kinds, total


async def run_agent(runtime: Runtime, kind: str, count: int, kinds: Counter[str],
                    data_dir: Path, samples: list[Any]) -> dict[str, float]:
    """Run one agent over the whole topic; its rate, CPU and a check of its counts."""
    spec = spec_of(kind)
    runner = AgentRunner(spec, kafka=runtime.settings.kafka, app_id="bench",
                         registry=runtime.registry, data_dir=data_dir)
    await runner.start()
    gc.set_threshold(*GC_THRESHOLDS)  # the collector as a worker runs it
    gc.freeze()
    try:
        await runner.assigned.wait()
        started, cpu = time.perf_counter(), time.process_time()
        # Committed, not only handed over: metrics.records counts a batch before a
        # per-record agent's coroutine has taken its values (its feed yields to the loop).
        await runner.wait_until(lambda m: m.restarts > 0 or sum(
            s.position.next_offset for s in runner.states.values()) >= count)
        if runner.metrics.restarts:
            raise SystemExit(f"the {kind} agent failed and restarted; see the log above")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        counted: Counter[str] = Counter()
        for state in runner.states.values():
            token = activate(state)
            try:
                table = batch_counts if kind == "batch" else record_counts
                counted.update(dict(table.items()))
            finally:
                CURRENT.reset(token)
        if counted != kinds:
            raise SystemExit(f"the {kind} agent counted {sum(counted.values()):,} records "
                             f"in {len(counted):,} kinds; {count:,} were produced")
    finally:
        await runner.stop()
    decode_us, user_us = await stage_costs(runtime, spec, samples, data_dir / "stages")
    cpu_us = 1e6 * cpu / count
    return {"records_s": count / elapsed, "cpu_us_per_record": cpu_us,
            "decode_us": decode_us, "user_us": user_us,
            "commit_us": max(0.0, cpu_us - decode_us - user_us)}


async def stage_costs(runtime: Runtime, spec: AgentSpec, samples: list[Any], folder: Path
                      ) -> tuple[float, float]:
    """CPU µs per record of decoding + converting (the processor's own decode step: in
    columns when the batch allows, onepipe.agents.framework.columns), and of the rest of
    the processor's step (the agent's code, its table, the changes serialized and written
    to RocksDB), measured apart over sample records in batches of the agent's size; the
    rest of a record's cost is Kafka (fetch, changelog)."""
    state_view = runtime.registry.state
    topic = spec.topics[0]
    processor = AgentProcessor(spec, state_view, runtime.publisher.writer, AgentMetrics())
    size = max(1, spec.max_records // 4)  # a partition's share of a batch (4 partitions)
    chunks = [samples[i:i + size] for i in range(0, len(samples), size)]
    started = time.process_time()
    for chunk in chunks:
        await processor._decode(topic, chunk)  # noqa: SLF001 - the stage measured alone
    decode_s = time.process_time() - started
    store = StateStore(folder)
    state = PartitionState(store, spec.tables, agent=spec.name)
    try:
        started = time.process_time()
        for chunk in chunks:
            outcome = await processor.process(topic, 0, chunk, state)
            state.commit(outcome.next_offset, None)
        step_s = time.process_time() - started
    finally:
        await processor.close()
        state.close()
    return 1e6 * decode_s / len(samples), 1e6 * max(0.0, step_s - decode_s) / len(samples)


async def sample(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of partition 0, as the runner's consumer hands them."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        while len(records) < count:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=count)
            records.extend(batches.get(tp, []))
        return records[:count]
    finally:
        await consumer.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with agent_bench() as (broker, runtime, data):
        topic = "bench-agents"
        applied = await apply_topic(runtime.registry, topic, SCHEMA, {
            "partitions": args.partitions, "key": ["id"],
            "order": {"rule": "max", "field": "version"}, "partition_time": "at"})
        t0 = time.perf_counter()
        kinds, value_bytes = await asyncio.to_thread(
            produce, broker.bootstrap, topic, applied.schema_id, args.records, args.keys,
            args.partitions)
        count = sum(kinds.values())
        print(f"produced {count:,} records ({value_bytes / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        raw_rd = await asyncio.to_thread(librdkafka_ceiling, broker.bootstrap, topic,
                                         args.partitions, count)
        raw_aio = await aiokafka_ceiling(broker.bootstrap, topic, args.partitions, count)
        samples = await sample(broker.bootstrap, topic, min(20_000, count // 8))
        gc.collect()
        results = {}
        for kind in ("batch", "record"):
            results[kind] = await run_agent(runtime, kind, count, kinds, data / kind,
                                            samples)
    rd, aio = count / raw_rd, count / raw_aio
    return {
        "records": count, "keys": args.keys, "partitions": args.partitions,
        "record_bytes": round(value_bytes / count),
        "librdkafka_records_s": rd, "aiokafka_records_s": aio,
        **{f"{k}_{name}": v for k, r in results.items() for name, v in r.items()},
        **{f"{k}_ratio": r["records_s"] / rd for k, r in results.items()},
        **{f"{k}_ratio_aiokafka": r["records_s"] / aio for k, r in results.items()},
        "target": TARGET_RATIO, "machine": machine_facts(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000, help="distinct values counted")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-records", type=int, default=10_000,
                        help="the batch agent's max_records")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    print(f"bench/agents.py: {args.records:,} records, {args.keys:,} counted values, "
          f"{args.partitions} partitions, {os.cpu_count()} cores", file=sys.stderr)
    r = on_worker_loop(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    ok = "PASS" if r["batch_ratio"] >= TARGET_RATIO else "MISS"
    print(f"\n{r['records']:,} records of ~{r['record_bytes']} bytes, {r['keys']:,} counted "
          f"values, {r['partitions']} partitions")
    print(f"  raw librdkafka consume (ceiling) {r['librdkafka_records_s']:>10,.0f} rec/s")
    print(f"  raw aiokafka getmany             {r['aiokafka_records_s']:>10,.0f} rec/s")
    print(f"  batch agent, stateful count      {r['batch_records_s']:>10,.0f} rec/s  ratio "
          f"{r['batch_ratio']:.3f} (target >= {TARGET_RATIO:.2f}) {ok}; "
          f"{r['batch_ratio_aiokafka']:.2f} of aiokafka")
    print(f"  per-record agent, stateful count {r['record_records_s']:>10,.0f} rec/s  ratio "
          f"{r['record_ratio']:.3f}; {r['record_ratio_aiokafka']:.2f} of aiokafka")
    for kind in ("batch", "record"):
        print(f"  {kind}: {r[f'{kind}_cpu_us_per_record']:.2f} us CPU per record "
              f"(decode+convert {r[f'{kind}_decode_us']:.2f}, user code + tables "
              f"{r[f'{kind}_user_us']:.2f}, commit {r[f'{kind}_commit_us']:.2f})")
    ceilings = (f"ceilings: librdkafka {r['librdkafka_records_s']:,.0f}, aiokafka "
                f"{r['aiokafka_records_s']:,.0f} rec/s")
    record("batch agent, stateful count", f"{r['batch_ratio']:.3f} of librdkafka "
           f"({r['batch_records_s']:,.0f} rec/s)", target=f">= {TARGET_RATIO:.2f}",
           ok=ok == "PASS", note=f"{r['batch_ratio_aiokafka']:.2f} of aiokafka; {ceilings}")
    record("per-record agent, stateful count", f"{r['record_ratio']:.3f} of librdkafka "
           f"({r['record_records_s']:,.0f} rec/s)",
           note=f"{r['record_ratio_aiokafka']:.2f} of aiokafka; {ceilings}")
    if ok == "MISS":
        raise SystemExit(1)


if __name__ == "__main__":
    main()
