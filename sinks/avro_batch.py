"""Decode a batch of Avro bodies of one writer schema into Arrow columns in one call.

Decoding record by record with fastavro costs ~5 µs a record in Python; the archive's
target needs less. polars decodes an Avro object-container block in Rust, releasing the
GIL, at over a million records a second. This module wraps a batch of schemaless bodies
into an in-memory container block and lets polars read it.

Safety: a container block has no per-record boundaries, so one value with trailing bytes
would shift every record after it without an error (measured: polars then returns wrong
values silently). Each body is therefore prefixed with its length as an Avro long, and
the block's schema is the writer record with a first field ``__onepipe_len`` added (a
record's encoding is its fields' encodings in order, so prefix + body is exactly a
record of that schema). After decoding, every ``__onepipe_len`` must equal the length it
was given, or the batch is refused. A refused batch (misalignment, a type polars cannot
read, a column that does not cast to the expected Arrow type) returns ``None`` and the
caller decodes record by record, which isolates bad values. Only batches whose writer
schema *is* the reader schema come here: polars does not apply Avro schema resolution.

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

import fastavro
import pyarrow as pa

from schemas.avro_schema import AvroSchema
from schemas.codec import zigzag_varint

log = logging.getLogger(__name__)

_FRAME_LEN = "__onepipe_len"
#: Writer schemas polars could not read into the expected types: not tried again.
_unsupported: set[str] = set()
#: Consecutive refusals per schema; a schema is given up only after several in a row,
#: since one malformed value can make polars fail on a schema it reads well.
_refusals: dict[str, int] = {}
_GIVE_UP_AFTER = 3


#: Varints of every body length below 16 KiB, so framing costs a list lookup per record.
SMALL_VARINTS = tuple(zigzag_varint(n) for n in range(16384))


@functools.lru_cache(maxsize=128)
def _container_header(writer: AvroSchema) -> tuple[bytes, bytes]:
    """(header bytes, sync marker) of a null-codec container of frame records."""
    frame = {**writer.json, "fields": [{"name": _FRAME_LEN, "type": "long"},
                                       *writer.json["fields"]]}
    buffer = io.BytesIO()
    writer_obj = fastavro.write.Writer(buffer, fastavro.parse_schema(frame, named_schemas={}),
                                       codec="null")
    writer_obj.flush()
    sync: bytes = writer_obj.sync_marker  # type: ignore[attr-defined]  # set in __init__
    return buffer.getvalue(), sync


def decode_batch(bodies: Sequence[bytes], writer: AvroSchema, expected: pa.Schema
                 ) -> list[pa.Array] | None:
    """The typed columns of ``expected`` decoded from ``bodies``, or None (see module doc)."""
    if not bodies or not writer.is_record or writer.identity in _unsupported:
        return None
    import polars as pl  # heavy: loaded by the encoders that use it, not by every import

    header, sync = _container_header(writer)
    parts: list[bytes] = []
    lengths: list[int] = []
    small = SMALL_VARINTS
    for body in bodies:
        size = len(body)
        lengths.append(size)
        parts.append(small[size] if size < 16384 else zigzag_varint(size))
        parts.append(body)
    payload = b"".join(parts)
    block = b"".join([header, zigzag_varint(len(bodies)), zigzag_varint(len(payload)),
                      payload, sync])
    try:
        frame = pl.read_avro(io.BytesIO(block))
    except pl.exceptions.PanicException as exc:
        # polars' Avro reader panics on types it has no code for (enums inside nested
        # records, say) and on some malformed values.
        _refused(writer, exc)
        return None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        log.debug("batch decode of %d values refused: %r", len(bodies), exc)
        return None
    if frame.height != len(bodies) or frame[_FRAME_LEN].to_list() != lengths:
        return None  # misaligned: some value has bytes its schema does not account for
    try:
        values = frame.to_arrow()
        # Nested fields of raw files are all nullable (sinks.arrow_types), so polars'
        # null children under a null struct cast as they are.
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

