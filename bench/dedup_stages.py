"""The dedup agent's planning, stage by stage: CPU µs a record, no broker.

    .venv/bin/python bench/dedup_stages.py [--batches 15] [--batch 20000] [--duplicates 0.1]

bench/dedup.py times the whole agent against the consume ceiling; this splits the part
that runs on its event loop for every batch (onepipe.agents.dedup.plan and the table
write), so the next bottleneck is visible by name. Batches of ``batch`` records as the
librdkafka consumer hands them over (``PartitionRecords``: real ``confluent_kafka.Message``
objects) of bench/dedup.py's schema (~200-byte Confluent-framed values, rule ``max``),
``duplicates`` of them re-sent versions of earlier keys, planned against a real RocksDB
table (onepipe.tables.dedup.DedupStore in a temporary folder) that each batch's winners
are written to, as the agent does. The collector runs with a worker's thresholds.

Stages (process CPU, so other load on the machine does not count):

- ``read``: keys and order values decoded (one polars container block a batch) and
  the keys' canonical partitions (murmur2), onepipe.agents.dedup.plan.read_sources;
- ``versions``: the batch's offsets, timestamps and ranks (``_source_versions``);
- ``distinct``, ``lookup``: the batch's distinct keys and their stored winners (the
  RocksDB multi-get, winners decoded);
- ``fold``: which versions win, are duplicates or lose;
- ``emit``: the winners' columns for ``.unique`` and the table;
- ``write``: the table write (one RocksDB write batch).

Not here: the consumer (bench/consume_ceilings.py prints its CPU a record) and the
``.unique`` producer.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402

from bench.dedup import SCHEMA  # noqa: E402
from onepipe.agents.dedup import plan  # noqa: E402
from onepipe.app.runtime import GC_THRESHOLDS  # noqa: E402
from onepipe.schemas.avro_schema import parse_schema  # noqa: E402
from onepipe.schemas.codec import KeyEncoder, frame  # noqa: E402
from onepipe.schemas.metadata import metadata_from_dict  # noqa: E402
from onepipe.tables.dedup.decode import TopicReader  # noqa: E402
from onepipe.tables.dedup.fold import fold  # noqa: E402
from onepipe.tables.dedup.store import DedupStore  # noqa: E402
from onepipe.tables.kafka.record_columns import PartitionRecords  # noqa: E402

TOPIC = "bench-stages"
STAGES = ("read", "versions", "distinct", "lookup", "fold", "emit", "write")


def batches(count: int, size: int, duplicates: float) -> list[PartitionRecords]:
    """``count`` batches of one partition's records, keys in order, ``duplicates`` of
    them re-sent versions of keys seen before."""
    parsed = fastavro.parse_schema(SCHEMA, named_schemas={})
    encoder = KeyEncoder(parse_schema(SCHEMA), ["id"])
    rng = random.Random(42)
    made, offset, fresh = [], 0, 0
    for _ in range(count):
        offsets, stamps, keys, values = [], [], [], []
        for _ in range(size):
            resent = fresh > 0 and rng.random() < duplicates
            key = rng.randrange(fresh) if resent else fresh
            fresh += not resent
            ident = f"item-{key:09d}"
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, {
                "id": ident, "version": 1 + key % 7, "amount": key * 0.25,
                "at": 1_764_151_200_000 + key, "payload": "x" * 140})
            offsets.append(offset)
            stamps.append((1, 1_764_151_200_000 + offset))
            keys.append(encoder.encode({"id": ident}))
            values.append(frame(1, buf.getvalue()))
            offset += 1
        made.append(PartitionRecords.of(TOPIC, 0, offsets, stamps, keys, values))
    return made


def run(records: list[PartitionRecords], folder: Path) -> dict[str, float]:
    """CPU seconds per stage over every batch."""
    schema = parse_schema(SCHEMA)
    meta = metadata_from_dict(TOPIC, {"key": ["id"], "partitions": 1,
                                      "order": {"rule": "max", "field": "version"}})
    reader = TopicReader(meta, schema, lambda _: schema)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.process_time
    last = 0.0

    def lap(stage: str) -> None:
        """Charge the CPU since the last lap to ``stage``."""
        nonlocal last
        now = clock()
        spent[stage] += now - last
        last = now

    with DedupStore(folder / "table") as store:
        for batch in records:
            work = plan.PartitionWork(TOPIC, 0, consumed=len(batch))
            last = clock()
            read = plan.read_sources(reader, 1, [batch])[0]
            lap("read")
            versions = plan._source_versions(work, reader, batch, read)  # noqa: SLF001
            lap("versions")
            distinct = list(dict.fromkeys(versions.keys))
            lap("distinct")
            current: dict[bytes, Any] = dict(zip(distinct, store.get_many(distinct),
                                                 strict=True))
            lap("lookup")
            result = fold(reader.rule, versions.keys, versions.ranks, current)
            lap("fold")
            plan._emit(work, result.chosen, current, versions)  # noqa: SLF001
            lap("emit")
            store.apply(work.keys, work.entries, 0)
            lap("write")
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--duplicates", type=float, default=0.10)
    args = parser.parse_args()
    records = batches(args.batches, args.batch, args.duplicates)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="onepipe-bench-") as folder:
        spent = run(records, Path(folder))
    total = args.batches * args.batch
    print(f"dedup planning, {args.batches} batches of {args.batch:,} records "
          f"({args.duplicates:.0%} re-sent), process CPU a record:")
    for stage in STAGES:
        print(f"  {stage:<9} {spent[stage] / total * 1e6:6.2f} µs")
    print(f"  {'all':<9} {sum(spent.values()) / total * 1e6:6.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
