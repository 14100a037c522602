"""A raw-lake file's records as the columns a producer call takes (pure; no I/O).

:func:`file_chunks` keeps the records of a raw table whose Kafka timestamp lies in
``[start_ms, end_ms)``, in the file's (offset) order, and cuts them into
:class:`ReplayChunk` s of at most ``max_records`` records and about ``max_bytes`` bytes
of keys and values, so what one producer call holds stays bounded whatever the file's
record size. Timestamps come out as integers straight from Arrow (a float detour loses
milliseconds); headers as lists of ``(key, value)`` in order (keys may repeat, values
may be null), None for a record without any, and the whole column None when no record
of the chunk has headers (the common case: nothing to build per record).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["COLUMNS", "ReplayChunk", "file_chunks", "headers_of"]

#: The raw-file columns replay reads.
COLUMNS = ["_kafka_offset", "_kafka_timestamp", "_kafka_key", "_kafka_value", "_kafka_headers"]

#: One record's headers as the producers take them.
Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class ReplayChunk:
    """Records of one raw file for one producer call, column by column (parallel lists)."""

    #: Key bytes (None for a null key).
    keys: list[bytes | None]
    #: Value bytes (None for a tombstone).
    values: list[bytes | None]
    #: Kafka timestamps, epoch milliseconds.
    timestamps_ms: list[int]
    #: Each record's headers (None for none), or None when no record has any.
    headers: list[Headers | None] | None

    def __len__(self) -> int:
        return len(self.values)


def file_chunks(table: pa.Table, start_ms: int | None, end_ms: int | None, *,
                max_records: int, max_bytes: int) -> Iterator[ReplayChunk]:
    """The records of a raw ``table`` (replay's :data:`COLUMNS`) in ``[start_ms, end_ms)``
    (None: unbounded), in table order, as chunks; see the module docstring."""
    stamps = table.column("_kafka_timestamp").cast(pa.int64())
    if start_ms is not None or end_ms is not None:
        keep = None
        if start_ms is not None:
            keep = pc.greater_equal(stamps, start_ms)
        if end_ms is not None:
            below = pc.less(stamps, end_ms)
            keep = below if keep is None else pc.and_(keep, below)
        table = table.filter(keep)
        stamps = stamps.filter(keep)
    rows = table.num_rows
    if not rows:
        return
    size = table.column("_kafka_key").nbytes + table.column("_kafka_value").nbytes
    step = max(1, min(max_records, rows * max_bytes // max(size, 1)))
    for at in range(0, rows, step):
        part = table.slice(at, step)
        yield ReplayChunk(
            keys=part.column("_kafka_key").to_pylist(),
            values=part.column("_kafka_value").to_pylist(),
            timestamps_ms=stamps.slice(at, step).to_pylist(),
            headers=headers_of(part.column("_kafka_headers")),
        )


def headers_of(column: pa.ChunkedArray | pa.Array) -> list[Headers | None] | None:
    """Each record's headers from a ``list<struct<key, value>>`` column; None when no
    record has any.

    Column-wise: the entries flattened once (slices respected) and cut per record, not a
    dict per header from ``to_pylist``."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    entries = lists.flatten()  # only the entries of the (possibly sliced) records
    if not len(entries):
        return None
    keys, values = entries.flatten()  # children, the entries' offset applied
    pairs = list(zip(keys.to_pylist(), values.to_pylist(), strict=True))
    out: list[Headers | None] = []
    at = 0
    for n in pc.list_value_length(lists).to_pylist():
        if n:
            out.append(pairs[at:at + n])
            at += n
        else:
            out.append(None)
    return out
