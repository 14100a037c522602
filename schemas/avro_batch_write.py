"""A batch of JSON records to Confluent-framed Avro, column by column, or not at all.

Guarantee: :meth:`ColumnWriter.encode` returns either None or exactly the ``(key,
value)`` pairs the per-record path returns for the same records - the topic's compiled
converter (onepipe.schemas.validation), then ``encode_many`` and the :class:`KeyEncoder`
(onepipe.schemas.codec). It returns None for anything it does not take: a record that is
not a dict, holds a field the schema lacks or lacks one without a default; a value the
converter would refuse or change (but for an int in a double, below); any doubt. The
caller then takes the per-record path, which decides and words every error, so a request
is accepted, refused and answered as before. tests/schemas/test_avro_batch_write.py
checks the two paths agree over generated schemas and hostile records.

What it takes (:func:`column_writer` returns None for any other schema): a record whose
fields are ``null``, ``boolean``, ``int``, ``long`` (and the date, time and timestamp
logical types over them the converter checks by range), ``double``, ``string``, an
inline ``enum``, a ``["null", T]`` union of one of those, or an ``array`` of one of those
(no union, no array). Each value must be what the converter returns unchanged (its fast
pass: onepipe.schemas.validation_fast): the exact builtin type, in range, finite; any
``str`` UTF-8 can encode; and an ``int`` for a ``double``, which the converter takes as
``float(v)``. A field a record leaves out takes the field's default, which must pass the
same checks.

How: one pass per field over the batch in C (``map``, ``set``, numpy, Arrow): the type
check, the range check, the encoding - zigzag varints in numpy, strings, doubles and
booleans from their buffers - and one Arrow ``binary_join_element_wise`` that lays each
record's fields end to end behind the frame. Why: the per-record converter and encoder,
already compiled per schema, cost ~4.4 µs a ``widgets`` record (bench/encode_path.py);
this ~2.1 µs in batches of 500 (a three-field schema: 2.1 -> 1.0). Its fixed cost (tens
of library calls a batch) makes it slower below :data:`MIN_RECORDS` records. In a worker
the endpoint's thread saves ~1.5 µs a record of ~7; part of it goes back to the producer's
poll thread, which takes the interpreter lock each time Arrow or numpy releases it
(BENCHMARKS.md, fourteenth pass).
"""

from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.avro_write import zigzag_varint
from onepipe.schemas.codec import frame
from onepipe.schemas.validation_fast import LOGICAL_RANGES

__all__ = ["MIN_RECORDS", "SLICE_CELLS", "ColumnWriter", "column_writer"]

#: Fewer records than this take the per-record path. A batch here has a fixed cost of
#: ~0.2-0.4 ms (tens of library calls); measured on two schemas, the paths break even at
#: ~130 records, and at 500 this one takes half the time (1.9-2.2x).
MIN_RECORDS = 160

#: Values (records times fields) encoded in one go by :meth:`ColumnWriter.encode`: ~4-6 ms
#: of work, and what ``TopicWriter.encode_async`` encodes between two looks at the clock.
SLICE_CELLS = 16_000

#: One field's encoding for a batch: arrays (or scalars) of n binary values, in order.
Parts = list[Any]

_EMPTY = pa.scalar(b"", pa.binary())
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_BOUNDS = np.array([1 << (7 * k) for k in range(1, 10)], np.uint64)
_SHIFTS = np.array([7 * k for k in range(10)], np.uint64)
_COLUMNS = np.arange(10)
_LOW7 = np.uint64(0x7F)
_ONE = np.uint64(1)
_NONE = type(None)
_REAL = frozenset({float, int})
_INT_DOUBLE_MAX = int(sys.float_info.max)


class _Refused(Exception):
    """A value the converter would not return unchanged: the batch goes per record."""


#: A field left out of a record that has no default: every column refuses its type.
_NO_DEFAULT = object()


def _binary(n: int, offsets: np.ndarray, data: Any) -> pa.Array:
    """A binary array of n values over ``data`` (numpy or an Arrow buffer)."""
    if not isinstance(data, pa.Buffer):
        data = pa.py_buffer(data)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), data])


def _fixed(n: int, width: int, data: Any) -> pa.Array:
    """A binary array of n values of ``width`` bytes each, back to back in ``data``."""
    return _binary(n, np.arange(0, width * n + 1, width, dtype=np.int32), data)


def _cumulative(lengths: np.ndarray, dtype: Any = np.int32) -> np.ndarray:
    """Offsets of consecutive runs of ``lengths``: 0, then the running sums."""
    offsets = np.zeros(len(lengths) + 1, dtype)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _varints(z: np.ndarray) -> pa.Array:
    """Avro's varint of each (already zigzagged) uint64, as a binary array."""
    n = len(z)
    top = int(z.max()) if n else 0
    if top < 128:  # one byte each: the common case (lengths, enums, small numbers)
        return _fixed(n, 1, z.astype(np.uint8))
    # Bytes per value (1 + how many 7-bit boundaries it reaches), then every value's
    # 7-bit groups in one grid, the continuation bit on all but each value's last.
    lengths = np.searchsorted(_BOUNDS, z, side="right").astype(np.int32) + 1
    width = int(lengths.max())
    grid = ((z[:, None] >> _SHIFTS[:width]) & _LOW7).astype(np.uint8)
    grid |= (_COLUMNS[:width] < (lengths - 1)[:, None]).view(np.uint8) << 7
    if int(lengths.min()) == width:  # all as long (timestamps): no gaps to drop
        return _fixed(n, width, grid)
    return _binary(n, _cumulative(lengths), grid[_COLUMNS[:width] < lengths[:, None]])


def _zigzag(values: np.ndarray) -> np.ndarray:
    return ((values << 1) ^ (values >> 63)).view(np.uint64)


def _offsets(array: pa.Array) -> np.ndarray:
    """The offsets of a binary or string array's values in its data buffer."""
    return np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, 4 * array.offset)


def _lengths(array: pa.Array) -> np.ndarray:
    """Each value's byte length of a binary or string array, zigzagged."""
    return np.diff(_offsets(array)).astype(np.uint64) << _ONE


def _only(values: Sequence[Any], kind: type) -> None:
    if set(map(type, values)) - {kind}:
        raise _Refused


def _join(parts: Parts, n: int) -> pa.Array:
    """One binary array of n values: each the concatenation of its parts."""
    if len(parts) == 1 and isinstance(parts[0], pa.Array):
        return parts[0]
    if not any(isinstance(part, pa.Array) for part in parts):  # scalars join to a scalar
        parts = [pa.array([b""] * n, pa.binary()), *parts]
    return pc.binary_join_element_wise(*parts, _EMPTY)


# ---------------------------------------------------------------------- one type each
# A column encoder takes a field's n values and returns their Parts, or raises _Refused.
Column = Callable[[Sequence[Any]], Parts]


def _strings(values: Sequence[Any]) -> Parts:
    _only(values, str)
    try:
        array = pa.array(values, pa.string())  # a lone surrogate: UnicodeEncodeError
    except (ValueError, pa.ArrowException) as exc:
        raise _Refused from exc
    if not isinstance(array, pa.Array):  # chunked: past 2 GiB of text
        raise _Refused
    return [_varints(_lengths(array)), array.view(pa.binary())]


def _integers(low: int, high: int) -> Column:
    def column(values: Sequence[Any]) -> Parts:
        _only(values, int)  # bool is not int here: type() is exact
        try:
            numbers = np.asarray(values, np.int64)
        except (OverflowError, ValueError, TypeError) as exc:  # past 64 bits
            raise _Refused from exc
        if len(numbers) and (numbers.min() < low or numbers.max() > high):
            raise _Refused
        return [_varints(_zigzag(numbers))]
    return column


def _doubles(values: Sequence[Any]) -> Parts:
    # An int is taken as the converter takes it, as float(v): what numpy's conversion
    # gives (correctly rounded, as Python's); a JSON number like 10 is common here.
    kinds = set(map(type, values))
    if kinds - _REAL:
        raise _Refused
    try:
        numbers = np.asarray(values, "<f8")
    except OverflowError as exc:  # an int far past the largest double
        raise _Refused from exc
    if not np.isfinite(numbers).all():  # the converter refuses NaN and the infinities
        raise _Refused
    if int in kinds:
        # An int just past the largest double rounds to it here, where the converter
        # compares exactly and refuses it: the ints are compared exactly too.
        ints = [v for v in values if type(v) is int]
        if max(ints) > _INT_DOUBLE_MAX or min(ints) < -_INT_DOUBLE_MAX:
            raise _Refused
    return [_fixed(len(numbers), 8, numbers)]


def _booleans(values: Sequence[Any]) -> Parts:
    _only(values, bool)
    return [_fixed(len(values), 1, np.asarray(values, np.uint8))]


def _nulls(values: Sequence[Any]) -> Parts:
    _only(values, _NONE)
    return []


def _enum(symbols: Sequence[str]) -> Column:
    index = {s: i for i, s in enumerate(symbols)}

    def column(values: Sequence[Any]) -> Parts:
        _only(values, str)
        try:
            found = np.fromiter(map(index.__getitem__, values), np.int64, len(values))
        except (KeyError, TypeError) as exc:
            raise _Refused from exc
        return [_varints(_zigzag(found))]
    return column


def _nullable(null_branch: int, branch: int, inner: Column) -> Column:
    """``["null", T]`` in either order: the branch's index, then T's encoding."""
    null_byte = pa.scalar(zigzag_varint(null_branch), pa.binary())
    some_byte = pa.scalar(zigzag_varint(branch), pa.binary())

    def column(values: Sequence[Any]) -> Parts:
        present = [v is not None for v in values]
        if all(present):
            return [some_byte, *inner(values)]
        kept = list(itertools.compress(values, present))
        encoded = _join(inner(kept), len(kept)) if kept else pa.array([], pa.binary())
        # Each record's position among the kept values, or one past them: an empty value.
        slots = np.cumsum(present) - 1
        slots[~np.asarray(present)] = len(kept)
        body = pa.concat_arrays([encoded, pa.array([b""], pa.binary())]).take(pa.array(slots))
        return [pc.if_else(pa.array(present), some_byte, null_byte), body]
    return column


def _array(item: Column) -> Column:
    """One block of all items, then the end marker; an empty array is the marker only
    (what fastavro writes)."""
    def column(values: Sequence[Any]) -> Parts:
        _only(values, list)
        n = len(values)
        counts = np.fromiter(map(len, values), np.int64, n)
        items = list(itertools.chain.from_iterable(values))
        if not items:
            return [_varints(_zigzag(counts))]  # every array empty: the marker only
        encoded = _join(item(items), len(items))
        # A record's items are consecutive in ``encoded``: its bytes are one span of
        # that buffer, so the record's array body is a view of it, nothing copied.
        spans = _offsets(encoded)[_cumulative(counts, np.int64)]
        markers = _cumulative((counts > 0).astype(np.int32))
        return [_varints(_zigzag(counts)), _binary(n, spans, encoded.buffers()[2]),
                _binary(n, markers, np.zeros(int(markers[-1]), np.uint8))]
    return column


_PRIMITIVE: dict[str, Column] = {
    "null": _nulls, "boolean": _booleans, "int": _integers(*_INT32),
    "long": _integers(*_INT64), "double": _doubles, "string": _strings,
}


def _scalar_column(schema: Any) -> Column | None:
    """The column for a type that is neither a union nor an array, or None."""
    if isinstance(schema, str):
        return _PRIMITIVE.get(schema)
    if not isinstance(schema, dict):
        return None
    kind, logical = schema.get("type"), schema.get("logicalType")
    if not isinstance(kind, str):
        return None
    if logical is not None:  # the ones the converter checks by range, else per record
        bounds = LOGICAL_RANGES.get((kind, logical)) if isinstance(logical, str) else None
        return _integers(*bounds) if bounds is not None else None
    if kind == "enum" and isinstance(schema.get("symbols"), list):
        return _enum(schema["symbols"])
    return _PRIMITIVE.get(kind)


def _field_column(schema: Any) -> Column | None:
    if isinstance(schema, list):
        if len(schema) != 2 or schema.count("null") != 1:
            return None
        null_branch = schema.index("null")
        inner = _scalar_column(schema[1 - null_branch])
        if inner is None or inner is _nulls:  # {"type": "null"} beside "null"
            return None
        return _nullable(null_branch, 1 - null_branch, inner)
    if isinstance(schema, dict) and schema.get("type") == "array" and "logicalType" not in schema:
        inner = _scalar_column(schema.get("items"))
        return _array(inner) if inner is not None else None
    return _scalar_column(schema)


class ColumnWriter:
    """Encodes batches of one schema version's records; see the module docstring."""

    __slots__ = ("_columns", "_count", "_fill", "_frame", "_get", "_key_positions", "_name_set",
                 "_names", "slice_records")

    def __init__(self, names: list[str], columns: list[Column], frame_bytes: bytes,
                 key_positions: list[int] | None, defaults: list[Any]) -> None:
        self._names = names
        self._columns = columns
        self._count = len(names)
        self._frame = pa.scalar(frame_bytes, pa.binary())
        self._key_positions = key_positions
        self._get = operator.itemgetter(*names) if len(names) > 1 else None
        self._name_set = frozenset(names)
        #: (name, default or _NO_DEFAULT) per field: for records that leave fields out.
        self._fill = list(zip(names, defaults, strict=True))
        #: Records encoded in one go: about :data:`SLICE_CELLS` values (a record counts one
        #: more, for its own share), so a wide schema takes fewer records at a time.
        self.slice_records = max(MIN_RECORDS, SLICE_CELLS // (self._count + 1))

    def encode(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes]] | None:
        """The records' ``(key, value)`` pairs, or None: then take the per-record path."""
        if not records:
            return None
        out: list[tuple[bytes | None, bytes]] = []
        for part in self.slices(records):
            if part is None:
                return None
            out += part
        return out

    def slices(self, records: Sequence[Any]
               ) -> Iterator[list[tuple[bytes | None, bytes]] | None]:
        """:meth:`encode` of :attr:`slice_records` records at a time, in order (records x
        fields: a slice of long strings or arrays can still pass Arrow's 2 GiB of 32-bit
        offsets, which falls back); a caller may stop at the first None, or take a turn
        of its event loop between two."""
        step = self.slice_records
        for start in range(0, len(records), step):
            yield self._encode(records[start:start + step])

    def _encode(self, records: Sequence[Any]) -> list[tuple[bytes | None, bytes]] | None:
        n = len(records)
        if not n or set(map(type, records)) != {dict}:
            return None
        try:
            fields = self._fields(records)
            if fields is None:
                return None
            parts = [column(values) for column, values in zip(self._columns, fields,
                                                              strict=True)]
            values = _join([self._frame, *itertools.chain.from_iterable(parts)], n).to_pylist()
            if self._key_positions is None:
                return list(zip(itertools.repeat(None), values))
            key_parts = [part for i in self._key_positions for part in parts[i]]
            keys = _join(key_parts, n).to_pylist()
        except (KeyError, _Refused, pa.ArrowException):  # Arrow: capacity, above all
            return None
        return list(zip(keys, values, strict=True))

    def _fields(self, records: Sequence[Any]) -> list[Sequence[Any]] | None:
        """Each field's values, in field order; None if a record holds a field the schema
        does not (the converter refuses it)."""
        count = self._count
        lengths = set(map(len, records))
        if lengths == {count}:  # every field in every record: no key unknown
            if self._get is not None:
                return list(zip(*map(self._get, records), strict=True))
            return [[r[self._names[0]] for r in records]] if count else []
        if max(lengths) > count or not all(map(self._name_set.issuperset, records)):
            return None
        # Fields left out take their default, checked by the column as a value would be
        # (the converter's default conversion returns a default that passes unchanged); a
        # field without one gets _NO_DEFAULT, which no column takes.
        return [[r.get(name, default) for r in records] for name, default in self._fill]


def column_writer(schema: AvroSchema, schema_id: int,
                  key_fields: Sequence[str] | None) -> ColumnWriter | None:
    """The column writer for a record schema whose every field it takes, else None."""
    data = schema.json
    if not isinstance(data, dict) or data.get("type") != "record":
        return None
    names: list[str] = []
    columns: list[Column] = []
    defaults: list[Any] = []
    for field in data.get("fields", []):
        column = _field_column(field.get("type"))
        if column is None:
            return None
        names.append(field["name"])
        columns.append(column)
        defaults.append(field.get("default", _NO_DEFAULT))
    if key_fields and not set(key_fields) <= set(names):
        return None
    positions = [names.index(k) for k in key_fields] if key_fields else None
    return ColumnWriter(names, columns, frame(schema_id, b""), positions, defaults)
