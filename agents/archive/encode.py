"""Decode + Parquet-encode one archive segment: a pure function run in an encoder process.

The archive agent's event loop fetches from Kafka; decoding Avro record by record and
laying out Arrow columns is CPU work that holds the GIL. Running it in a separate process
lets fetching and encoding use both cores of a worker. Everything crossing the process
boundary is plain data (:class:`Segment`: lists of ints and bytes, schema texts), cheap
to pickle; parsed schemas are cached in the encoder process by their text.
"""

from __future__ import annotations

import functools
import io
import signal
from dataclasses import dataclass
from typing import Any

import fastavro
import fastavro.validation

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.codec import HEADER_SIZE, schema_id_of
from onepipe.sinks.formats.avro_batch import decode_batch
from onepipe.sinks.formats.raw import RawRecord, build_raw_table, encode_parquet, typed_schema
from onepipe.tables.lifecycle import die_with_parent


@dataclass(frozen=True, slots=True)
class Segment:
    """One contiguous offset range of one partition, as columns."""

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[tuple[str, bytes], ...]]
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
    """Runs once in each encoder process so its imports happen at start, not mid-flush."""


def encode_segment(segment: Segment) -> tuple[bytes, int]:
    """Parquet bytes of the segment and how many values did not decode."""
    reader = _schema(segment.reader) if segment.reader is not None else None
    writers = {schema_id: _schema(text) for schema_id, text in segment.writers.items()}
    fast = _encode_in_one_batch(segment, reader, writers)
    if fast is not None:
        return fast, 0
    return _encode_record_by_record(segment, reader, writers)


def _records(segment: Segment) -> list[RawRecord]:
    return [
        RawRecord(segment.topic, segment.partition, offset, timestamp, headers, key, value)
        for offset, timestamp, headers, key, value in zip(
            segment.offsets, segment.timestamps, segment.headers, segment.keys,
            segment.values, strict=True)
    ]


def _encode_in_one_batch(segment: Segment, reader: AvroSchema | None,
                         writers: dict[int, AvroSchema]) -> bytes | None:
    """The common case: every value written with the reader schema itself, decoded at
    once (onepipe.sinks.formats.avro_batch); None when the segment does not qualify or is
    refused."""
    if reader is None or len(writers) != 1:
        return None
    ((schema_id, writer),) = writers.items()
    if writer.identity != reader.identity:
        return None  # schema resolution needed: fastavro does it record by record
    header = b"\x00" + schema_id.to_bytes(4, "big")
    values = segment.values
    if not all(v is not None and v[:HEADER_SIZE] == header for v in values):
        return None
    typed = decode_batch([v[HEADER_SIZE:] for v in values if v is not None], reader,
                         typed_schema(reader))
    if typed is None:
        return None
    n = len(values)
    table = build_raw_table(_records(segment), [schema_id] * n, [None] * n, [None] * n,
                            reader, typed=typed)
    return encode_parquet(table)


def _encode_record_by_record(segment: Segment, reader: AvroSchema | None,
                             writers: dict[int, AvroSchema]) -> tuple[bytes, int]:
    reader_parsed = reader.parsed if reader is not None else None
    read = fastavro.schemaless_reader
    schema_ids: list[int | None] = []
    decoded: list[Any] = []
    errors: list[str | None] = []
    for value in segment.values:
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
    records = _records(segment)
    try:
        table = build_raw_table(records, schema_ids, decoded, errors, reader)
    except ValueError:
        # A body decoded (fastavro reads an int as any varint) but holds a value its
        # schema forbids (an int beyond 32 bits, say): find those values and archive
        # them as undecodable instead of failing the whole segment.
        _reject_invalid(decoded, errors, reader)
        try:
            table = build_raw_table(records, schema_ids, decoded, errors, reader)
        except ValueError as exc:
            message = f"typed columns could not be built for this segment: {exc}"
            decoded = [None] * len(decoded)
            errors = [e or message for e in errors]
            table = build_raw_table(records, schema_ids, decoded, errors, reader)
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
