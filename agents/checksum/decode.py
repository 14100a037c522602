"""Winners of a ``.unique`` batch as checksum contributions: decode, day, hash, sum values.

One decode pass per batch (fastavro per record into the reader's shape), one Arrow table
(onepipe.sinks.formats.raw, the lakes' type mapping), then one ``partition_days`` (and
``partition_hours``), one
``row_hashes`` and one column pass per sum field for the whole batch: the same figures
functions every other system uses, never per-row hashing of Python objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
from aiokafka import ConsumerRecord

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.checksum import row_hashes
from onepipe.schemas.codec import decode_or_none
from onepipe.schemas.partition_day import partition_days, partition_hours
from onepipe.sinks.formats.raw import RawRecord, build_raw_table
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.checksum import Contribution, contributions

__all__ = ["winner_contributions"]


def winner_contributions(view: TopicView, reader: AvroSchema,
                         schema_by_id: Callable[[int], AvroSchema],
                         records: Sequence[ConsumerRecord[Any, Any]]
                         ) -> list[tuple[bytes, Contribution | None]]:
    """Each record's (key, contribution); None where it did not decode or has no day."""
    kept: list[int] = []
    raws: list[RawRecord] = []
    ids: list[int | None] = []
    decoded: list[Any] = []
    for i, r in enumerate(records):
        schema_id, datum = decode_or_none(r.value, schema_by_id, reader)
        if datum is None:
            continue
        kept.append(i)
        raws.append(RawRecord(view.meta.topic, r.partition, r.offset, r.timestamp, (),
                              r.key, r.value))
        ids.append(schema_id)
        decoded.append(datum)
    out: list[tuple[bytes, Contribution | None]] = [(r.key or b"", None) for r in records]
    if not kept:
        return out
    table = build_raw_table(raws, ids, decoded, [None] * len(raws), reader)
    times = table.column(view.time_column)
    days = partition_days(times).cast(pa.int32()).to_pylist()
    hours = partition_hours(times).to_pylist()
    hashes = row_hashes(table, view.spec).to_pylist()
    for i, c in zip(kept, contributions(table, view.spec, hashes, days, hours), strict=True):
        out[i] = (out[i][0], c)
    return out
