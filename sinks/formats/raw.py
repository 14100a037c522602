"""The raw lake's Parquet format: a batch of Kafka records in, Parquet bytes out, no I/O.

Contract of a raw file (what :func:`build_raw_table` and :func:`encode_parquet` make):

- One row per Kafka record, in the order given (the archive gives one contiguous offset
  range of one partition, so rows are in offset order).
- The Kafka metadata columns :data:`KAFKA_COLUMNS` (reserved prefix ``_kafka_``) hold the
  record exactly: topic, partition, offset, timestamp, headers, and the key and value
  **bytes as they were on the broker**. The bytes are the source of truth: replaying a
  file re-produces every record byte for byte (the same key lands in the same partition,
  the same Confluent-framed value reaches every consumer), whatever this module's typed
  view of them is and whichever schema later readers use.
- ``_kafka_schema_id`` is the writer schema id from the Confluent header (null when the
  value has none) and ``_kafka_decode_error`` says why a value did not decode. A record
  that does not decode is still archived, bytes intact, with nulls in every typed column:
  the archive never drops or stalls on a bad record.
- Then one typed column per top-level field of the *reader* schema, named like the field,
  holding the value decoded into the reader's shape (see
  :mod:`onepipe.sinks.formats.arrow_types` for the type mapping). All typed columns, and
  every field nested in them, are nullable. A non-record reader schema gives no typed
  columns; the bytes still hold everything. The reader schema's text is kept in the Arrow
  schema metadata under ``onepipe.reader_schema``.

Parquet: zstd, one row group per :data:`ROW_GROUP_ROWS` rows, column statistics on (so
readers prune on ``_kafka_offset`` and ``_kafka_timestamp``), the Arrow schema stored (so
time zones, dictionaries and nullability come back as written).

Decoding is the caller's job (it owns the schema cache); this module only lays out
columns. It is the archive's hot path, so each column is built by one ``pa.array`` call
per batch (a list per metadata column; the decoded dicts read by pyarrow's C++ as one
struct), never row by row through ``Table.from_pylist``; a caller holding the records as
columns already (:class:`RawColumns`, the archive's encoder) passes them as they are to
:func:`build_raw_table_from_columns`. :func:`encode_parquet` spends
its time in pyarrow with the GIL released, so it can overlap decoding the next batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import SchemaError
from onepipe.sinks.formats.arrow_types import record_fields
from onepipe.sinks.formats.arrow_values import Convert

#: Rows per Parquet row group: big enough for good compression, small enough to prune.
ROW_GROUP_ROWS = 128 * 1024
#: Prefix of the metadata columns; no Avro field may use it.
RESERVED_PREFIX = "_kafka_"
#: The Kafka record timestamp column (UTC milliseconds), which places a raw row in its hour.
TIMESTAMP_COLUMN = "_kafka_timestamp"
#: Arrow schema metadata key holding the reader schema text.
READER_SCHEMA_KEY = b"onepipe.reader_schema"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as archived."""

    #: Kafka topic.
    topic: str
    #: Kafka partition.
    partition: int
    #: Offset within the partition.
    offset: int
    #: Record timestamp, milliseconds since the epoch (UTC), as the broker returned it.
    timestamp_ms: int
    #: Record headers in order; keys may repeat.
    headers: tuple[tuple[str, bytes], ...]
    #: Key bytes (None for a null key).
    key: bytes | None
    #: Value bytes (None for a tombstone).
    value: bytes | None


_HEADER = pa.struct([
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.binary()),  # Kafka allows a null header value
])
_METADATA_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_kafka_topic", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("_kafka_partition", pa.int32(), nullable=False),
    pa.field("_kafka_offset", pa.int64(), nullable=False),
    pa.field(TIMESTAMP_COLUMN, pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("_kafka_headers", pa.list_(pa.field("element", _HEADER, nullable=False)),
             nullable=False),
    pa.field("_kafka_key", pa.binary()),
    pa.field("_kafka_value", pa.binary()),
    pa.field("_kafka_schema_id", pa.int32()),
    pa.field("_kafka_decode_error", pa.string()),
)
_NO_HEADERS = pa.array([], _HEADER)
_DICTIONARY_COLUMNS = ("_kafka_topic", "_kafka_partition", "_kafka_schema_id",
                       "_kafka_decode_error")
_DELTA_COLUMNS = ("_kafka_offset", "_kafka_timestamp")
#: The metadata column names, in order; every raw file starts with these.
KAFKA_COLUMNS: tuple[str, ...] = tuple(f.name for f in _METADATA_FIELDS)


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one reader schema's records become columns (cached per schema)."""

    #: The whole file schema: metadata columns, then typed columns.
    schema: pa.Schema
    #: Typed column names, in order.
    names: tuple[str, ...]
    #: Typed columns pyarrow converts from fastavro values directly, as one struct.
    plain: pa.StructType
    #: (name, Arrow type, converter) of typed columns that need a Python conversion.
    converted: tuple[tuple[str, pa.DataType, Convert], ...]


def raw_arrow_schema(reader: AvroSchema | None) -> pa.Schema:
    """Metadata columns + one nullable typed column per top-level field of ``reader``.

    Raises :class:`~onepipe.schemas.errors.SchemaError` when a field name uses the reserved
    ``_kafka_`` prefix or a named type does not resolve.
    """
    return _layout(reader).schema


@dataclass(frozen=True, slots=True)
class RawColumns:
    """Records of one topic-partition as columns: :class:`RawRecord` s, column-wise.

    The archive's encoder takes these (built once per buffer from the fetched records)
    instead of one Python object per record: pickling and laying out a few arrays costs
    a fraction of a microsecond a record where 100k ``RawRecord`` objects cost several.
    """

    #: Kafka topic.
    topic: str
    #: Kafka partition.
    partition: int
    #: Offsets (int64).
    offsets: pa.Array | pa.ChunkedArray
    #: Record timestamps, milliseconds since the epoch (int64).
    timestamps: pa.Array | pa.ChunkedArray
    #: Key bytes (binary; null for a null key).
    keys: pa.Array | pa.ChunkedArray
    #: Value bytes (binary; null for a tombstone).
    values: pa.Array | pa.ChunkedArray
    #: Headers per record, or None when no record has any (the common case).
    headers: Sequence[tuple[tuple[str, bytes], ...]] | None = None

    def __len__(self) -> int:
        return len(self.offsets)


def build_raw_table(
    records: Sequence[RawRecord],
    schema_ids: Sequence[int | None],
    decoded: Sequence[dict[str, Any] | None],
    errors: Sequence[str | None],
    reader: AvroSchema | None,
    *,
    typed: Sequence[pa.Array] | None = None,
) -> pa.Table:
    """The raw table of one batch; the four sequences are parallel (one item per record).

    ``decoded[i]`` is ``records[i].value`` decoded into ``reader``'s shape by fastavro
    (None when it did not decode, ``errors[i]`` then saying why). A caller that decoded
    the batch into Arrow itself passes the columns of :func:`typed_schema` as ``typed``
    instead (``decoded`` is then ignored).
    """
    n = len(records)
    if typed is not None:
        decoded = [None] * n
    if not len(schema_ids) == len(decoded) == len(errors) == n:
        raise ValueError(
            f"records, schema_ids, decoded and errors must be parallel; got lengths "
            f"{n}, {len(schema_ids)}, {len(decoded)}, {len(errors)}"
        )
    layout = _layout(reader)
    # One comprehension per attribute: measured faster than one loop appending to seven
    # lists, and than zip(*...) whose 100k tuples wake the garbage collector.
    columns: list[pa.Array] = [
        pa.array([r.topic for r in records], pa.string()).dictionary_encode(),
        pa.array([r.partition for r in records], pa.int32()),
        pa.array([r.offset for r in records], pa.int64()),
        # ints are taken as milliseconds since the epoch
        pa.array([r.timestamp_ms for r in records], pa.timestamp("ms", tz="UTC")),
        _headers_array([r.headers for r in records]),
        pa.array([r.key for r in records], pa.binary()),
        pa.array([r.value for r in records], pa.binary()),
        pa.array(schema_ids, pa.int32()),
        pa.array(errors, pa.string()),
    ]
    columns.extend(_typed_columns(layout, decoded) if typed is None else typed)
    return pa.Table.from_arrays(columns, schema=layout.schema)


def build_raw_table_from_columns(
    records: RawColumns,
    schema_ids: pa.Array,
    errors: pa.Array,
    reader: AvroSchema | None,
    *,
    decoded: Sequence[dict[str, Any] | None] | None = None,
    typed: Sequence[pa.Array] | None = None,
) -> pa.Table:
    """:func:`build_raw_table` of one partition's records given as columns.

    ``schema_ids`` (int32) and ``errors`` (string) are parallel to the records; the typed
    columns come either decoded into Arrow already (``typed``) or as fastavro's values
    (``decoded``, as in :func:`build_raw_table`); with neither they are all null.
    """
    n = len(records)
    if not len(schema_ids) == len(errors) == len(records.values) == len(records.keys) \
            == len(records.timestamps) == n:
        raise ValueError("the columns of a raw batch must be parallel (one item per record)")
    layout = _layout(reader)
    topic = pa.DictionaryArray.from_arrays(pa.repeat(pa.scalar(0, pa.int32()), n),
                                           pa.array([records.topic], pa.string()))
    headers = records.headers
    columns: list[pa.Array] = [
        topic,
        pa.repeat(pa.scalar(records.partition, pa.int32()), n),
        records.offsets.cast(pa.int64()),
        records.timestamps.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        _headers_array(headers if headers is not None else ((),) * n),
        records.keys.cast(pa.binary()),
        records.values.cast(pa.binary()),
        schema_ids.cast(pa.int32()),
        errors.cast(pa.string()),
    ]
    if typed is None:
        typed = _typed_columns(layout, decoded if decoded is not None else [None] * n)
    columns.extend(typed)
    return pa.Table.from_arrays(columns, schema=layout.schema)


def typed_schema(reader: AvroSchema | None) -> pa.Schema:
    """The typed (decoded) columns of a raw file for ``reader``, without the metadata."""
    schema = _layout(reader).schema
    return pa.schema(list(schema)[len(KAFKA_COLUMNS):])


def _typed_columns(layout: _Layout, decoded: Sequence[dict[str, Any] | None]) -> list[pa.Array]:
    """The typed columns, in field order.

    Fields whose values pyarrow takes as fastavro gives them are converted by one
    ``pa.array`` over the dicts as a struct, then split into columns: pyarrow's C++ reads
    the dicts (measured 2.5x faster than one Python list per field, which is what the
    others get because their values need a Python conversion first). A null row (not
    decoded) makes every typed column null.
    """
    built: dict[str, pa.Array] = {}
    if layout.plain.num_fields:
        try:
            built = dict(zip(layout.plain.names, pa.array(decoded, layout.plain).flatten(),
                             strict=True))
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise ValueError(
                f"decoded values do not fit the reader schema's Arrow types: {exc}; "
                "decode with the same reader schema that is passed here"
            ) from exc
    for name, arrow_type, convert in layout.converted:
        try:
            built[name] = pa.array(
                [convert(d[name]) if d is not None else None for d in decoded], arrow_type
            )
        except (KeyError, ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise ValueError(
                f"decoded values of field {name!r} do not fit Arrow type {arrow_type}: "
                f"{exc}; decode with the same reader schema that is passed here"
            ) from exc
    return [built[name] for name in layout.names]


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes of a raw table: zstd, ~128k-row row groups, statistics on."""
    names = set(table.column_names)
    # Dictionary pages only where values repeat (topic, partition, schema id, error text,
    # enums): on keys, values and free text the writer builds a dictionary, overflows it
    # and falls back, which measured slower *and* larger than plain pages under zstd.
    dictionary = [n for n in _DICTIONARY_COLUMNS if n in names] + [
        f.name for f in table.schema
        if pa.types.is_dictionary(f.type) and f.name not in _DICTIONARY_COLUMNS
    ]
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=True,
        store_schema=True,
        use_dictionary=dictionary,
        # Offsets and timestamps climb steadily: deltas pack them into a few bits each.
        column_encoding={n: "DELTA_BINARY_PACKED" for n in _DELTA_COLUMNS if n in names},
    )
    return bytes(sink.getvalue().to_pybytes())


def decode_parquet(data: bytes) -> pa.Table:
    """The table a raw file holds (for tests and readers)."""
    return pq.read_table(pa.BufferReader(data))


def _headers_array(headers: Sequence[tuple[tuple[str, bytes], ...]]) -> pa.Array:
    # Flattened by hand: one pass to list offsets and entries beats pyarrow converting a
    # nested Python structure, and most records carry no headers at all.
    if not any(headers):
        offsets = [0] * (len(headers) + 1)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _NO_HEADERS,
                                        type=_METADATA_FIELDS[4].type)
    offsets = [0]
    keys: list[str] = []
    values: list[bytes] = []
    end = 0
    for items in headers:
        if items:
            for key, value in items:
                keys.append(key)
                values.append(value)
            end += len(items)
        offsets.append(end)
    entries = pa.StructArray.from_arrays(
        [pa.array(keys, pa.string()), pa.array(values, pa.binary())], fields=list(_HEADER)
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), entries,
                                    type=_METADATA_FIELDS[4].type)


@functools.lru_cache(maxsize=256)
def _layout(reader: AvroSchema | None) -> _Layout:
    # AvroSchema compares by identity (eq=False) and schemas are parsed once and shared,
    # so the cache holds one layout per schema in use.
    if reader is None or not reader.is_record:
        return _Layout(pa.schema(_METADATA_FIELDS), (), pa.struct([]), ())
    typed = record_fields(reader.json)
    clash = [f.name for f, _ in typed if f.name.startswith(RESERVED_PREFIX)]
    if clash:
        raise SchemaError(
            f"fields {clash} use the prefix {RESERVED_PREFIX!r} reserved for Kafka metadata "
            "columns in the lake; rename them"
        )
    schema = pa.schema([*_METADATA_FIELDS, *(f for f, _ in typed)],
                       metadata={READER_SCHEMA_KEY: reader.text.encode()})
    return _Layout(
        schema,
        names=tuple(f.name for f, _ in typed),
        plain=pa.struct([f for f, conv in typed if conv is None]),
        converted=tuple((f.name, f.type, conv) for f, conv in typed if conv is not None),
    )
