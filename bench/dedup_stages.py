"""The dedup agent's planning, stage by stage: CPU µs a record, no broker.

    .venv/bin/python bench/dedup_stages.py [--records 300000] [--step 2000]
                                           [--partitions 4] [--duplicates 0.1]

bench/dedup.py times the whole agent against the consume ceiling; this splits the part
that runs on its event loop for every step (onepipe.agents.dedup.topics: one
``read_sources`` over the step's partitions, then ``plan_partition``'s stages per
partition, and the table write of the step's completion), so the next bottleneck is
visible by name. As the agent runs it:

- steps of ``step`` records (the agent's default ``max_records``), spread over
  ``partitions`` partitions by the canonical partitioner, as the librdkafka consumer hands
  them over (``PartitionRecords``: real ``confluent_kafka.Message`` objects, made just
  before their step so they are young, as a fetch's are);
- bench/dedup.py's schema (~200-byte Confluent-framed values, rule ``max``), of which
  ``duplicates`` are exact re-sends of earlier records;
- a real RocksDB table per partition (onepipe.tables.dedup.DedupStore), looked up through
  the winners of the two steps still in flight (onepipe.agents.dedup.pipeline's overlay)
  and written when a step's completion would write it (two steps later);
- the collector with a worker's thresholds.

Each stage's CPU is the event loop's thread's (``thread_time``): RocksDB's own threads
(memtable flushes) are not charged to whichever stage runs meanwhile; the process's total
is printed beside. Stages:

- ``read``: keys and order values decoded (one polars container block per partition) and
  the keys' canonical partitions (murmur2), onepipe.agents.dedup.plan.read_sources;
- ``versions``: the batch's offsets, timestamps and ranks (``_source_versions``);
- ``distinct``, ``lookup``: the batch's distinct keys and their current winners (the
  RocksDB multi-get, winners decoded, then the overlays of the steps in flight);
- ``fold``: which versions win, are duplicates or lose;
- ``emit``: the winners' columns for ``.unique`` and the table, and their overlay;
- ``write``: the table write (one RocksDB write batch per partition).

Not here: the consumer (bench/consume_ceilings.py prints its CPU a record) and the
``.unique`` producer. The stages are ``plan_partition``'s body taken apart (private names
of onepipe.agents.dedup.plan); a check at the end plans one step with ``plan_partition``
itself and compares, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402

from bench.dedup import SCHEMA  # noqa: E402
from bench.summary import record  # noqa: E402
from onepipe.agents.dedup import plan  # noqa: E402
from onepipe.agents.dedup.pipeline import _MAX_IN_FLIGHT, Lookup, _with_pending  # noqa: E402
from onepipe.app.runtime import GC_THRESHOLDS  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402
from onepipe.schemas.metadata import metadata_from_dict  # noqa: E402
from onepipe.schemas.partitioner import partitions_for  # noqa: E402
from onepipe.tables.dedup.decode import TopicReader  # noqa: E402
from onepipe.tables.dedup.fold import fold  # noqa: E402
from onepipe.tables.dedup.store import DedupStore, Entry  # noqa: E402
from onepipe.tables.kafka.record_columns import PartitionRecords  # noqa: E402

TOPIC = "bench-stages"
STAGES = ("read", "versions", "distinct", "lookup", "fold", "emit", "write")
#: A step's records of one partition: (offsets, keys, values).
Columns = tuple[list[int], list[bytes], list[bytes]]


def data_set(count: int, duplicates: float) -> tuple[list[bytes], list[bytes]]:
    """``count`` (key, value) records, ``duplicates`` of them exact re-sends of earlier
    ones (bytes only: nothing for the collector to track)."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    encoder = KeyEncoder(parse_schema(SCHEMA), ["id"])
    rng = random.Random(42)
    keys: list[bytes] = []
    values: list[bytes] = []
    for _ in range(count):
        if keys and rng.random() < duplicates:
            i = rng.randrange(len(keys))
            keys.append(keys[i])
            values.append(values[i])
            continue
        n = len(keys)
        ident = f"item-{n:09d}"
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, {
            "id": ident, "version": 1 + n % 7, "amount": n * 0.25,
            "at": 1_764_151_200_000 + n, "payload": "x" * 140})
        keys.append(encoder.encode({"id": ident}))
        values.append(frame(1, buf.getvalue()))
    return keys, values


def steps(keys: list[bytes], values: list[bytes], step: int, partitions: int
          ) -> list[dict[int, Columns]]:
    """The records in steps of ``step``, each split by canonical partition, with each
    partition's offsets counting from 0."""
    canonical = partitions_for(keys, partitions)
    next_offset = [0] * partitions
    out = []
    for start in range(0, len(keys), step):
        parts: dict[int, Columns] = {}
        for i in range(start, min(start + step, len(keys))):
            p = canonical[i]
            offsets, ks, vs = parts.setdefault(p, ([], [], []))
            offsets.append(next_offset[p])
            next_offset[p] += 1
            ks.append(keys[i])
            vs.append(values[i])
        out.append(dict(sorted(parts.items())))
    return out


def records(p: int, columns: Columns) -> PartitionRecords:
    offsets, keys, values = columns
    return PartitionRecords.of(TOPIC, p, offsets, [(1, 1_764_151_200_000 + o) for o in offsets],
                               keys, values)


class Stopwatch:
    """The loop thread's CPU, charged lap by lap to the stages."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STAGES, 0.0)
        self._last = time.thread_time()

    def reset(self) -> None:
        """Charge nothing for the time since the last lap (work outside the stages)."""
        self._last = time.thread_time()

    def lap(self, stage: str) -> None:
        """Charge the CPU since the last lap (or reset) to ``stage``."""
        now = time.thread_time()
        self.spent[stage] += now - self._last
        self._last = now


def plan_staged(work: plan.PartitionWork, reader: TopicReader, batch: PartitionRecords,
                read: plan.SourceRead, stored: Lookup, watch: Stopwatch) -> None:
    """``plan_partition``'s body for a batch of the source topic, a lap per stage (what
    :func:`check` compares with ``plan_partition`` itself)."""
    versions = plan._source_versions(work, reader, batch, read)  # noqa: SLF001
    watch.lap("versions")
    distinct = list(dict.fromkeys(versions.keys))
    watch.lap("distinct")
    current: dict[bytes, Any] = dict(zip(distinct, stored(distinct), strict=True))
    watch.lap("lookup")
    work.fold = result = fold(reader.rule, versions.keys, versions.ranks, current)
    watch.lap("fold")
    plan._emit(work, result.chosen, current, versions)  # noqa: SLF001


def run(all_steps: list[dict[int, Columns]], partitions: int, folder: Path
        ) -> tuple[dict[str, float], float]:
    """Loop-thread CPU seconds per stage over every step, and the process's CPU."""
    schema = parse_schema(SCHEMA)
    meta = metadata_from_dict(TOPIC, {"key": ["id"], "partitions": partitions,
                                      "order": {"rule": "max", "field": "version"}})
    reader = TopicReader(meta, schema, lambda _: schema)
    watch = Stopwatch()
    stores = [DedupStore(folder / str(p)) for p in range(partitions)]
    overlays: list[list[dict[bytes, Entry]]] = [[] for _ in range(partitions)]
    in_flight: deque[list[plan.PartitionWork]] = deque()
    process = time.process_time()
    making = 0.0  # the process's CPU making the records (the consumer's work, not planning)
    try:
        for parts in all_steps:
            made = time.process_time()
            batches = {p: records(p, columns) for p, columns in parts.items()}
            making += time.process_time() - made
            watch.reset()
            reads = plan.read_sources(reader, partitions, list(batches.values()))
            watch.lap("read")
            works = []
            for (p, batch), read in zip(batches.items(), reads, strict=True):
                work = plan.PartitionWork(TOPIC, p, consumed=len(batch))
                watch.reset()
                plan_staged(work, reader, batch, read,
                            _with_pending(stores[p].get_many, overlays[p]), watch)
                if work.keys:  # BatchPipeline.hold
                    overlays[p].append(dict(zip(work.keys, work.entries, strict=True)))
                watch.lap("emit")
                works.append(work)
            in_flight.append(works)
            if len(in_flight) > _MAX_IN_FLIGHT:
                _complete(in_flight.popleft(), stores, overlays, watch)
        while in_flight:
            _complete(in_flight.popleft(), stores, overlays, watch)
        process = time.process_time() - process - making
        check(all_steps[-1], partitions, reader, folder)
    finally:
        for store in stores:
            store.close()
    return watch.spent, process


def _complete(works: list[plan.PartitionWork], stores: list[DedupStore],
              overlays: list[list[dict[bytes, Entry]]], watch: Stopwatch) -> None:
    """A step's completion: its tables written, its overlays dropped (oldest first)."""
    watch.reset()
    for work in works:
        stores[work.partition].apply(work.keys, work.entries, 0)
        if work.keys:
            overlays[work.partition].pop(0)
    watch.lap("write")


def check(parts: dict[int, Columns], partitions: int, reader: TopicReader,
          folder: Path) -> None:
    """:func:`plan_staged` is ``plan_partition``: one step through both, on empty
    tables, gives the same winners and counts."""
    batches = {p: records(p, columns) for p, columns in parts.items()}
    reads = plan.read_sources(reader, partitions, list(batches.values()))
    with DedupStore(folder / "check") as store:
        stored = _with_pending(store.get_many, [])
        for (p, batch), read in zip(batches.items(), reads, strict=True):
            whole = plan.plan_partition(TOPIC, p, partitions, reader, batch, (), stored, read)
            work = plan.PartitionWork(TOPIC, p, consumed=len(batch))
            plan_staged(work, reader, batch, read, stored, Stopwatch())
            if (work.keys, work.entries, work.fold) != (whole.keys, whole.entries,
                                                         whole.fold):
                raise SystemExit("bench/dedup_stages.py no longer plans as plan_partition "
                                 "does: update plan_staged")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--step", type=int, default=2_000,
                        help="records a step (the dedup agent's default max_records)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--duplicates", type=float, default=0.10,
                        help="share of the records that are exact re-sends")
    args = parser.parse_args()
    keys, values = data_set(args.records, args.duplicates)
    all_steps = steps(keys, values, args.step, args.partitions)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-") as folder:
        spent, process = run(all_steps, args.partitions, Path(folder))
    total = args.records
    print(f"dedup planning, {total:,} records in steps of {args.step:,} over "
          f"{args.partitions} partitions ({args.duplicates:.0%} exact re-sends); "
          "event-loop thread CPU a record:")
    for stage in STAGES:
        print(f"  {stage:<9} {spent[stage] / total * 1e6:6.2f} µs")
    print(f"  {'all':<9} {sum(spent.values()) / total * 1e6:6.2f} µs "
          f"(the process, RocksDB's threads included: {process / total * 1e6:.2f} µs)")
    record("dedup planning and table write, CPU a record",
           f"{sum(spent.values()) / total * 1e6:.2f} µs",
           note=" / ".join(f"{stage} {spent[stage] / total * 1e6:.2f}" for stage in STAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
