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
from onepipe.sinks.formats.raw import RawColumns, build_raw_table_from_columns
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.checksum import Contribution, contributions
from onepipe.tables.kafka.record_columns import keys_of, offsets_of, timestamps_of, values_of

__all__ = ["winner_contributions"]


def winner_contributions(view: TopicView, reader: AvroSchema,
                         schema_by_id: Callable[[int], AvroSchema], partition: int,
                         records: Sequence[ConsumerRecord[Any, Any]]
                         ) -> list[tuple[bytes, Contribution | None]]:
    """Each record's (key, contribution); None where it did not decode or has no day.

    ``records`` are one partition's (``partition``), read only through
    onepipe.tables.kafka.record_columns' readers: no record object is made for the
    librdkafka consumer's columns.
    """
    values = values_of(records)
    keys = keys_of(records)
    kept: list[int] = []
    ids: list[int | None] = []
    decoded: list[Any] = []
    for i, value in enumerate(values):
        schema_id, datum = decode_or_none(value, schema_by_id, reader)
        if datum is None:
            continue
        kept.append(i)
        ids.append(schema_id)
        decoded.append(datum)
    out: list[tuple[bytes, Contribution | None]] = [(key or b"", None) for key in keys]
    if not kept:
        return out
    take = pa.array(kept, pa.int64())
    columns = RawColumns(
        view.meta.topic, partition, pa.array(offsets_of(records), pa.int64()).take(take),
        pa.array(timestamps_of(records), pa.int64()).take(take),
        pa.array(keys, pa.binary()).take(take), pa.array(values, pa.binary()).take(take))
    table = build_raw_table_from_columns(columns, pa.array(ids, pa.int32()),
                                         pa.nulls(len(kept), pa.string()), reader,
                                         decoded=decoded)
    times = table.column(view.time_column)
    days = partition_days(times).cast(pa.int32()).to_pylist()
    hours = partition_hours(times).to_pylist()
    hashes = row_hashes(table, view.spec).to_pylist()
    for i, c in zip(kept, contributions(table, view.spec, hashes, days, hours), strict=True):
        out[i] = (out[i][0], c)
    return out
