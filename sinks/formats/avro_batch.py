"""Decode a batch of Avro bodies of one writer schema into Arrow columns in one call.

Decoding record by record with fastavro costs ~5 µs a record in Python; the archive's
target needs less. The batch is read in one container block (onepipe.schemas.avro_container:
each body length-prefixed, so a misaligned batch is refused, not misread). A refused batch
(misalignment, a type polars cannot read, a column that does not cast to the expected Arrow
type) returns ``None`` and the caller decodes record by record, which isolates bad values.
Only batches whose writer schema *is* the reader schema come here: polars does not apply
Avro schema resolution. Enums stay strings here (the raw lake keeps their symbols), so a
schema whose enums polars cannot read falls back to record by record.

Limit: on *malformed* bodies (bytes no Avro writer of the schema produces, such as an
``int`` varint beyond 32 bits or a boolean byte 2) the two decoders can disagree: polars
may store a value where fastavro reports the record undecodable. Avro implementations
disagree on such bytes too; the raw file keeps the exact bytes either way, and every
body a serializer wrote decodes identically on both paths (tested property).
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from onepipe.schemas.avro_container import FRAME_LEN, SMALL_VARINTS, container, read_block
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.avro_write import zigzag_varint

log = logging.getLogger(__name__)

#: Writer schemas polars could not read into the expected types: not tried again.
_unsupported: set[str] = set()
#: Consecutive refusals per schema; a schema is given up only after several in a row,
#: since one malformed value can make polars fail on a schema it reads well.
_refusals: dict[str, int] = {}
_GIVE_UP_AFTER = 3


def decode_batch(bodies: Sequence[bytes], writer: AvroSchema, expected: pa.Schema
                 ) -> list[pa.Array] | None:
    """The typed columns of ``expected`` decoded from ``bodies``, or None (see module doc)."""
    if not bodies or not writer.is_record or writer.identity in _unsupported:
        return None

    header, sync = container(writer)
    frame = read_block(header, sync, bodies, on_panic=lambda exc: _refused(writer, exc))
    return _columns(frame, writer, expected)


def decode_framed(values: pa.Array | pa.ChunkedArray, writer: AvroSchema,
                  expected: pa.Schema) -> list[pa.Array] | None:
    """:func:`decode_batch` of Confluent-framed values given as one Arrow binary column
    (chunked or not: a chunked column is laid out chunk by chunk, never concatenated).

    Every value must carry the 5-byte header of ``writer`` (the caller checks; no nulls).
    The container block is laid out by Arrow kernels (each value's length varint taken
    from a table, prepended element-wise) instead of a Python list of slices: ~0.1 µs a
    record less, and no Python object per value. Values of 16 KiB or more go the list way.
    """
    if not len(values) or not writer.is_record or writer.identity in _unsupported:
        return None
    lengths = pc.binary_length(values)
    if values.null_count or pc.max(lengths).as_py() >= len(SMALL_VARINTS):
        return _columns(_read_listed(values.to_pylist(), writer), writer, expected)
    import polars as pl  # heavy: loaded by the encoders that use it, not by every import

    header, sync = container(writer, framed=True)
    joined = pc.binary_join_element_wise(pc.take(_varint_table(), lengths), values, b"")
    payloads = [_data_of(chunk) for chunk in
                (joined.chunks if isinstance(joined, pa.ChunkedArray) else [joined])
                if len(chunk)]
    size = sum(len(p) for p in payloads)
    block = b"".join([header, zigzag_varint(len(values)), zigzag_varint(size), *payloads,
                      sync])
    try:
        frame = pl.read_avro(io.BytesIO(block), columns=[FRAME_LEN, *expected.names])
    except pl.exceptions.PanicException as exc:
        _refused(writer, exc)
        return None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        log.debug("batch decode of %d values refused (%r)", len(values), exc)
        return None
    # Misaligned (some value has bytes its schema does not account for): refused.
    if frame.height != len(values) or not pc.all(pc.equal(
            frame[FRAME_LEN].to_arrow(), lengths.cast(pa.int64()))).as_py():
        return None
    return _columns(frame, writer, expected)


def _data_of(column: pa.Array) -> pa.Buffer:
    """The bytes a binary array's items span, without a copy (its data buffer may be
    longer, and a slice starts inside it)."""
    offsets = column.buffers()[1]
    first, last = (int.from_bytes(offsets[4 * i:4 * i + 4], "little", signed=True)
                   for i in (column.offset, column.offset + len(column)))
    return column.buffers()[2][first:last]


def _read_listed(values: list[Any], writer: AvroSchema) -> Any:
    header, sync = container(writer, framed=True)
    return read_block(header, sync, values, on_panic=lambda exc: _refused(writer, exc))


@functools.cache
def _varint_table() -> pa.Array:
    """:data:`SMALL_VARINTS` as an Arrow column, indexed by length."""
    return pa.array(SMALL_VARINTS, pa.binary())


def _columns(frame: Any, writer: AvroSchema, expected: pa.Schema) -> list[pa.Array] | None:
    """The ``expected`` columns of a decoded frame, cast; None when one does not cast."""
    if frame is None:
        return None
    import polars as pl

    try:
        # polars holds strings as views: handed over as Arrow string views they are not
        # copied into large_string first (then again into string by the cast); measured
        # 1.8 -> 0.3 µs a 2-KB record. Older polars (no CompatLevel) hand large_string.
        newest = getattr(pl, "CompatLevel", None)
        values = frame.to_arrow(compat_level=newest.newest()) if newest is not None \
            else frame.to_arrow()
        # Nested fields of raw files are all nullable (onepipe.sinks.formats.arrow_types),
        # so polars' null children under a null struct cast as they are.
        columns = [values.column(field.name).combine_chunks().cast(field.type)
                   for field in expected]
    except (pl.exceptions.PolarsError, pa.ArrowException, KeyError, ValueError) as exc:
        _refused(writer, exc)
        return None
    _refusals.pop(writer.identity, None)
    return columns


def _refused(writer: AvroSchema, exc: BaseException) -> None:
    count = _refusals.get(writer.identity, 0) + 1
    _refusals[writer.identity] = count
    if count >= _GIVE_UP_AFTER:
        log.info("schema %s decodes record by record from now on: polars refused %d batches "
                 "in a row, last with %r", writer.identity_hash, count, exc)
        _unsupported.add(writer.identity)

