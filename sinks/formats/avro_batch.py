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

import logging
from collections.abc import Sequence

import pyarrow as pa

from onepipe.schemas.avro_container import container, read_block
from onepipe.schemas.avro_schema import AvroSchema

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
    import polars as pl  # heavy: loaded by the encoders that use it, not by every import

    header, sync = container(writer)
    frame = read_block(header, sync, bodies, on_panic=lambda exc: _refused(writer, exc))
    if frame is None:
        return None
    try:
        values = frame.to_arrow()
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

