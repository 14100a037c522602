"""Cost of the checksum agent's raw record counting, per source record, in one process.

    .venv/bin/python bench/checksum_raw.py [--records N]

The checksum agent reads every record of every keyed source topic a second time to count
raw records per partition_time day (onepipe.agents.checksum.raw.RawPlacer: the partition_time
field decoded with fastavro, record by record). The baseline is what the dedup agent pays
for the same values on its hot path (onepipe.tables.dedup.decode.TopicReader: key and order
columns decoded in batch by polars), measured in the same run on the same values, so the
ratio says how much of a dedup agent's decode budget the counting adds per record.
No broker: decoding only (the Kafka fetch costs the same for both).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make the repo importable
    sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402

from onepipe.agents.checksum.raw import RawPlacer  # noqa: E402
from onepipe.schemas.avro_schema import AvroSchema, parse_schema  # noqa: E402
from onepipe.schemas.codec import frame  # noqa: E402
from onepipe.schemas.metadata import metadata_from_dict  # noqa: E402
from onepipe.sinks.formats.topic_view import TopicView  # noqa: E402
from onepipe.tables.dedup.decode import TopicReader  # noqa: E402


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
    args = parser.parse_args()
    schema: AvroSchema = parse_schema((ROOT / "catalog" / "widgets.avsc").read_text())
    meta = metadata_from_dict("widgets", {
        "key": ["widget_id"], "order": {"rule": "max", "field": "version"},
        "partition_time": "updated_at", "partitions": 4,
        "checks": {"count_distinct": "key", "sum": ["price"], "checksum": "row"}})
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


if __name__ == "__main__":
    main()
