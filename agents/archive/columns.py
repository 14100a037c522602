"""Fetched records packed as flat bytes: what the archive buffers and hands to its encoders.

The agent packs each fetch's records of a partition at once (:func:`pack`, reading them
through onepipe.tables.kafka.record_columns, so the librdkafka consumer's columns are used
as they are): offsets and timestamps as int64 arrays, keys and values as one ``bytes`` of
data plus int32 offsets (Arrow's binary layout). So a buffer holds a few objects per fetch
instead of one ``ConsumerRecord`` per record (fewer live objects for the garbage collector
to walk while up to the memory bound is buffered), and a flush hands a few large buffers to
the encoder process (through shared memory, onepipe.agents.archive.handoff, or pickled:
pickle writes a ``bytes`` in one copy, where a list of 100k values cost ~0.8 µs a record).
The encoder wraps them as Arrow arrays without a copy (:meth:`Chunk.columns`), and a
partition's chunks as chunked arrays (:func:`columns_of`), never concatenated.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import ConsumerRecord, TopicPartition

from onepipe.sinks.formats.raw import RawColumns
from onepipe.sinks.lake.raw_layout import hour_segments
from onepipe.tables.kafka.record_columns import (
    headers_of,
    keys_of,
    offsets_of,
    timestamps_of,
    values_of,
)

__all__ = ["Binary", "Buffer", "Chunk", "columns_of", "cut", "hour_runs", "pack"]

_HOUR_MS = 3_600_000
_INT64 = struct.Struct("=q")  # native order, as the offsets are packed
#: Bytes of a chunk: its own, or a view of an encoder's shared memory
#: (onepipe.agents.archive.handoff).
Buffer = bytes | memoryview
#: (int32 offsets, data, validity bitmap or None): one binary column's Arrow buffers.
Binary = tuple[Buffer, Buffer, Buffer | None]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records of one partition, in offset order, as flat bytes (see the module doc)."""

    topic: str
    partition: int
    #: Records in the chunk.
    count: int
    #: Kafka offsets, int64 in native byte order.
    offsets: Buffer
    #: Record timestamps (ms since the epoch), int64 in native byte order.
    timestamps: Buffer
    keys: Binary
    values: Binary
    #: Headers per record, or None when no record has any (the common case).
    headers: tuple[tuple[tuple[str, bytes], ...], ...] | None
    #: Key + value bytes of all records, and of the largest record (the memory bound's).
    size: int
    largest: int

    def columns(self) -> RawColumns:
        """The chunk as Arrow columns over its own bytes (no copy)."""
        n = self.count
        return RawColumns(
            self.topic, self.partition,
            offsets=pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(self.offsets)]),
            timestamps=pa.Array.from_buffers(pa.int64(), n,
                                             [None, pa.py_buffer(self.timestamps)]),
            keys=_binary_array(n, self.keys), values=_binary_array(n, self.values),
            headers=self.headers,
        )

    def first_offset(self) -> int:
        return int(_INT64.unpack_from(self.offsets, 0)[0])

    def last_offset(self) -> int:
        # unpack_from, not array(): offsets may be a memoryview (a mapped segment), which
        # array() would read byte by byte.
        return int(_INT64.unpack_from(self.offsets, len(self.offsets) - 8)[0])


def pack(tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]) -> Chunk:
    """The records of one fetch of ``tp`` (offset order, at least one) as a :class:`Chunk`.

    Read through the column readers (onepipe.tables.kafka.record_columns): the
    librdkafka consumer's records are columns already, so no record object is made.
    """
    keys, key_max = _pack_binary(keys_of(records))
    values, value_max = _pack_binary(values_of(records))
    headers = headers_of(records)
    return Chunk(
        tp.topic, tp.partition, len(records),
        offsets=array("q", offsets_of(records)).tobytes(),
        timestamps=array("q", timestamps_of(records)).tobytes(),
        keys=keys, values=values,
        # None when no record has any, as a slice of columns with headers can be.
        headers=tuple(map(tuple, headers)) if headers is not None and any(headers) else None,
        # Largest key + largest value: an upper bound of the largest record (the estimate).
        size=len(keys[1]) + len(values[1]), largest=key_max + value_max,
    )


def columns_of(chunks: Sequence[Chunk]) -> RawColumns:
    """One partition's chunks, in order, as one :class:`RawColumns` of chunked arrays over
    the chunks' own bytes: no copy (concatenating the keys and values cost a copy of
    every record, ~0.2-0.6 µs a 2-KB record, and fresh memory for it)."""
    parts = [c.columns() for c in chunks]
    if len(parts) == 1:
        return parts[0]
    headers: list[tuple[tuple[str, bytes], ...]] | None = None
    if any(p.headers is not None for p in parts):
        headers = []
        for p in parts:
            headers.extend(p.headers if p.headers is not None else ((),) * len(p))
    return RawColumns(
        parts[0].topic, parts[0].partition,
        offsets=pa.chunked_array([p.offsets for p in parts], pa.int64()),
        timestamps=pa.chunked_array([p.timestamps for p in parts], pa.int64()),
        keys=pa.chunked_array([p.keys for p in parts], pa.binary()),
        values=pa.chunked_array([p.values for p in parts], pa.binary()),
        headers=headers,
    )


def cut(chunks: Sequence[Chunk], start: int, stop: int) -> list[Chunk]:
    """Records ``start:stop`` of ``chunks`` (taken as one sequence), as chunks that hold
    only those records' bytes (whole chunks are reused as they are)."""
    kept: list[Chunk] = []
    first = 0
    for chunk in chunks:
        end = first + chunk.count
        lo, hi = max(start, first), min(stop, end)
        if lo < hi:
            kept.append(chunk if (lo, hi) == (first, end) else
                        _repack(chunk.columns(), lo - first, hi - first))
        first = end
    return kept


def hour_runs(chunks: Sequence[Chunk]) -> list[tuple[int, int, str, int]]:
    """onepipe.sinks.lake.raw_layout.hour_segments of the chunks' timestamps, with one
    Python step per *change* of hour instead of one per record.

    Candidate run starts are where the truncated hour number changes, or either neighbour
    is negative (truncation and flooring differ only below zero; the layout clamps those
    to its first hour anyway): a superset of the real boundaries. ``hour_segments`` over
    the candidates' first timestamps then merges candidates of one hour, exactly as it
    would over every record, since all records of a candidate run share their hour.
    """
    stamps = b"".join(c.timestamps for c in chunks)
    n = len(stamps) // 8
    if n == 0:
        return []
    timestamps = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(stamps)])
    hours = pc.divide(timestamps, _HOUR_MS)
    changed = pc.or_(pc.not_equal(hours.slice(1), hours.slice(0, n - 1)),
                     pc.or_(pc.less(timestamps.slice(1), 0),
                            pc.less(timestamps.slice(0, n - 1), 0)))
    starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist())]
    firsts = pc.take(timestamps, pa.array(starts, pa.int64())).to_pylist()
    bounds = [*starts, n]
    return [(bounds[a], bounds[b], date, hour) for a, b, date, hour in hour_segments(firsts)]


def _pack_binary(items: Sequence[bytes | None]) -> tuple[Binary, int]:
    """The column's buffers and its longest item's length."""
    try:
        data = b"".join(items)  # type: ignore[arg-type]  # a None (rare) raises: see below
    except TypeError:  # a null key or a tombstone: Arrow lays out the validity bitmap
        return _buffers(pa.array(items, pa.binary())), max(
            map(len, filter(None, items)), default=0)
    lengths = list(map(len, items))  # type: ignore[arg-type]  # no None: joined above
    offsets = array("i", accumulate(lengths, initial=0)).tobytes()
    return (offsets, data, None), max(lengths, default=0)


def _buffers(column: pa.Array) -> Binary:
    """A binary array's buffers as compact ``bytes`` (offsets rebased to 0)."""
    n = len(column)
    column = pa.concat_arrays([column]) if column.offset else column
    validity, offsets, data = column.buffers()
    offs = array("i")
    offs.frombytes(offsets.to_pybytes()[:4 * (n + 1)])
    first, last = offs[0], offs[n]
    rebased = array("i", (o - first for o in offs)).tobytes() if first else offs.tobytes()
    body = data.to_pybytes()[first:last] if data is not None else b""
    valid = validity.to_pybytes()[:(n + 7) // 8] if validity is not None and column.null_count \
        else None
    return rebased, body, valid


def _lengths(column: Binary) -> list[int]:
    offsets = array("i")
    offsets.frombytes(column[0])
    return [b - a for a, b in zip(offsets, offsets[1:], strict=False)]


def _binary_array(n: int, column: Binary) -> pa.Array:
    offsets, data, validity = column
    return pa.Array.from_buffers(pa.binary(), n, [
        pa.py_buffer(validity) if validity is not None else None, pa.py_buffer(offsets),
        pa.py_buffer(data)])


def _repack(columns: RawColumns, start: int, stop: int) -> Chunk:
    n = stop - start
    keys = _buffers(columns.keys.slice(start, n))
    values = _buffers(columns.values.slice(start, n))
    return Chunk(
        columns.topic, columns.partition, n,
        offsets=array("q", columns.offsets.slice(start, n).to_pylist()).tobytes(),
        timestamps=array("q", columns.timestamps.slice(start, n).to_pylist()).tobytes(),
        keys=keys, values=values,
        headers=tuple(columns.headers[start:stop]) if columns.headers is not None else None,
        size=len(keys[1]) + len(values[1]),
        largest=max(_lengths(keys), default=0) + max(_lengths(values), default=0),
    )
