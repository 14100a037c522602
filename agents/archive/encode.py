"""Decode + Parquet-encode one archive segment: a pure function run in an encoder process.

The archive agent's event loop fetches from Kafka; decoding Avro record by record and
laying out Arrow columns is CPU work that holds the GIL. Running it in a separate process
lets fetching and encoding use both cores of a worker. What crosses the process boundary
is the agent's packed chunks and schema texts (:class:`Segment`): a few large buffers per
fetch (onepipe.agents.archive.columns), not one Python object per record (a list of 100k
values took ~0.8 µs a record to pickle in the worker), read in place from shared memory
where the platform allows (onepipe.agents.archive.handoff). Parsed schemas are cached in
the encoder by their text.
The common case never makes a Python object per record: the values are checked, framed
and decoded as one column (onepipe.sinks.formats.avro_batch.decode_framed) and the
metadata columns are the arrays received (onepipe.sinks.formats.raw.build_raw_table_from_columns).
"""

from __future__ import annotations

import functools
import io
import signal
from dataclasses import dataclass
from typing import Any

import fastavro
import fastavro.validation
import pyarrow as pa
import pyarrow.compute as pc

from onepipe.agents.archive.columns import Chunk, columns_of
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import HEADER_SIZE, schema_id_of
from onepipe.sinks.formats.avro_batch import decode_framed
from onepipe.sinks.formats.raw import (
    RawColumns,
    build_raw_table_from_columns,
    encode_parquet,
    typed_schema,
)
from onepipe.tables.lifecycle import die_with_parent


@dataclass(frozen=True, slots=True)
class Segment:
    """One contiguous offset range of one partition, as columns."""

    #: The records, as the agent buffered them (one chunk a fetch).
    chunks: list[Chunk]
    #: Text of the topic's latest value schema (the reader), or None if it has none.
    reader: str | None
    #: Writer schema texts by id, for every id the values name and the registry knows.
    writers: dict[int, str]


@functools.lru_cache(maxsize=256)
def _schema(text: str) -> AvroSchema:
    return parse_schema(text)


def ignore_stop_signals(parent: int) -> None:
    """Encoder process set-up: outlive Ctrl-C, never outlive the worker.

    Ctrl-C and SIGTERM reach the whole process group; the encoders ignore them because
    the worker stops them itself, after its last flush has been encoded. If the worker
    dies without stopping them (``kill -9``), Linux sends them SIGKILL
    (onepipe.tables.lifecycle.die_with_parent), so no orphan is left behind.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent(parent)


def warm_up() -> None:
    """Runs once in each encoder process so its imports happen at start, not mid-flush.

    polars (the batch decoder's, onepipe.sinks.formats.avro_batch) is imported only where
    it is used; here that is every segment the one-batch path takes (the common case), and
    importing it on the first one held that flush, and every write queued behind it, for
    0.1-0.2 s (95 ms alone, 160 ms sampled under the archive bench's load).
    """
    import polars  # noqa: F401, PLC0415 - imported for its side effect: loaded now


def encode_segment(segment: Segment) -> tuple[bytes, int]:
    """Parquet bytes of the segment and how many values did not decode."""
    reader = _schema(segment.reader) if segment.reader is not None else None
    writers = {schema_id: _schema(text) for schema_id, text in segment.writers.items()}
    records = columns_of(segment.chunks)
    fast = _encode_in_one_batch(records, reader, writers)
    if fast is not None:
        return fast, 0
    return _encode_record_by_record(records, reader, writers)


def _encode_in_one_batch(records: RawColumns, reader: AvroSchema | None,
                         writers: dict[int, AvroSchema]) -> bytes | None:
    """The common case: every value written with the reader schema itself, decoded at
    once (onepipe.sinks.formats.avro_batch); None when the segment does not qualify or is
    refused."""
    if reader is None or len(writers) != 1:
        return None
    ((schema_id, writer),) = writers.items()
    if writer.identity != reader.identity:
        return None  # schema resolution needed: fastavro does it record by record
    header = pa.scalar(b"\x00" + schema_id.to_bytes(4, "big"), pa.binary())
    values = records.values
    if values.null_count or not pc.all(pc.equal(pc.binary_slice(values, 0, HEADER_SIZE),
                                                header)).as_py():
        return None
    typed = decode_framed(values, reader, typed_schema(reader))
    if typed is None:
        return None
    n = len(values)
    table = build_raw_table_from_columns(
        records, pa.repeat(pa.scalar(schema_id, pa.int32()), n),
        pa.nulls(n, pa.string()), reader, typed=typed)
    return encode_parquet(table)


def _encode_record_by_record(records: RawColumns, reader: AvroSchema | None,
                             writers: dict[int, AvroSchema]) -> tuple[bytes, int]:
    reader_parsed = reader.parsed if reader is not None else None
    read = fastavro.schemaless_reader
    schema_ids: list[int | None] = []
    decoded: list[Any] = []
    errors: list[str | None] = []
    for value in records.values.to_pylist():
        schema_id = schema_id_of(value)
        schema_ids.append(schema_id)
        writer = writers.get(schema_id) if schema_id is not None else None
        datum: Any = None
        error: str | None = None
        if schema_id is None or value is None:
            error = "value is not Confluent-framed Avro (no 0x00 magic byte)"
        elif writer is None:
            error = f"schema id {schema_id} is not in the registry"
        elif reader_parsed is None:
            error = "the topic has no registered value schema"
        else:
            try:
                same = reader is not None and writer.identity == reader.identity
                datum = read(io.BytesIO(value[HEADER_SIZE:]), writer.parsed,
                             None if same else reader_parsed)
            except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError,
                    fastavro.read.SchemaResolutionError) as exc:
                error = f"Avro body does not decode with schema id {schema_id}: {exc!r}"
        decoded.append(datum)
        errors.append(error)
    ids = pa.array(schema_ids, pa.int32())
    try:
        table = build_raw_table_from_columns(records, ids, pa.array(errors, pa.string()),
                                             reader, decoded=decoded)
    except ValueError:
        # A body decoded (fastavro reads an int as any varint) but holds a value its
        # schema forbids (an int beyond 32 bits, say): find those values and archive
        # them as undecodable instead of failing the whole segment.
        _reject_invalid(decoded, errors, reader)
        try:
            table = build_raw_table_from_columns(records, ids, pa.array(errors, pa.string()),
                                                 reader, decoded=decoded)
        except ValueError as exc:
            message = f"typed columns could not be built for this segment: {exc}"
            errors = [e or message for e in errors]
            table = build_raw_table_from_columns(records, ids, pa.array(errors, pa.string()),
                                                 reader)
    return encode_parquet(table), sum(1 for e in errors if e is not None)


def _reject_invalid(decoded: list[Any], errors: list[str | None],
                    reader: AvroSchema | None) -> None:
    """Turn decoded values that break their schema's ranges into decode errors."""
    if reader is None:
        return
    for index, datum in enumerate(decoded):
        if datum is not None and not fastavro.validation.validate(
                datum, reader.parsed, raise_errors=False):
            decoded[index] = None
            errors[index] = "decoded value is outside its schema's ranges"
