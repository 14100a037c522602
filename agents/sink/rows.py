"""``.unique`` records as sink rows: decoded to the lake's Arrow values, ranked, bound.

One decode per record (fastavro, into the latest reader schema's shape), one Arrow table
per batch (onepipe.sinks.formats.raw, the lake's type mapping), then per column the
dialect's adapter (onepipe.sinks.db.columns). The rank is the merge rule's
(onepipe.schemas.merge) over the version's *source* position - the ``onepipe.source``
header the dedup agent writes - so a sink ranks exactly as the dedup table and the
compactor do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from aiokafka import ConsumerRecord

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import decode_or_none
from onepipe.schemas.errors import CodecError, MergeError
from onepipe.schemas.merge import MergeRule, rank_bytes
from onepipe.schemas.metadata import TopicMetadata
from onepipe.sinks.db import Column, Dialect, SinkRow
from onepipe.sinks.formats.raw import RawRecord, build_raw_table
from onepipe.tables.dedup.fold import source_of

__all__ = ["Built", "build_rows"]


@dataclass(slots=True)
class Built:
    """The rows of one batch, and what could not become a row."""

    rows: list[SinkRow]
    #: Records whose value did not decode or could not be ranked (left out, counted).
    undecodable: int = 0


def build_rows(meta: TopicMetadata, reader: AvroSchema, columns: Sequence[Column],
               dialect: Dialect, schema_by_id: Callable[[int], AvroSchema],
               records: Sequence[ConsumerRecord[Any, Any]]) -> Built:
    """The sink rows of ``.unique`` ``records`` (one partition's, in offset order)."""
    rule = MergeRule(meta.order)
    kept: list[tuple[ConsumerRecord[Any, Any], bytes]] = []
    raws: list[RawRecord] = []
    ids: list[int | None] = []
    decoded: list[Any] = []
    built = Built([])
    for r in records:
        schema_id, datum = decode_or_none(r.value, schema_by_id, reader)
        if datum is None:
            built.undecodable += 1
            continue
        try:
            partition, offset = source_of(r.headers) or (r.partition, r.offset)
            rank = rank_bytes(rule.rank(rule.order_value(datum), r.value, partition, offset))
        except (CodecError, MergeError):
            built.undecodable += 1
            continue
        kept.append((r, rank))
        raws.append(RawRecord(meta.topic, r.partition, r.offset, r.timestamp, (), r.key,
                              r.value))
        ids.append(schema_id)
        decoded.append(datum)
    if not kept:
        return built
    table = build_raw_table(raws, ids, decoded, [None] * len(raws), reader)
    values = [_column_values(table, column, dialect) for column in columns]
    keys = [i for i, c in enumerate(columns) if c.key]
    for j, (record, rank) in enumerate(kept):
        params = tuple(column[j] for column in values)
        built.rows.append(SinkRow(tuple(params[i] for i in keys),
                                  (*params, rank, record.timestamp), rank,
                                  (record.partition, record.offset)))
    return built


def _column_values(table: pa.Table, column: Column, dialect: Dialect) -> list[Any]:
    adapt = column.to_db(dialect)
    values = table.column(column.name)
    if pa.types.is_timestamp(values.type) and values.type.unit == "ns":
        # Python's datetime stops at microseconds: nanoseconds travel as the epoch int.
        values = values.cast(pa.int64())
    return [adapt(v) for v in values.to_pylist()]
