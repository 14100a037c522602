"""Confluent wire format and deterministic record keys.

Value bytes: ``0x00`` magic, 4-byte big-endian schema id, Avro binary body (the framing
Confluent serializers and deserializers use, so they interoperate with onepipe).

Key bytes: the Avro binary encoding of the unique-key fields, in the order the topic
metadata lists them, *without* framing. No schema id goes into the key on purpose: the
Kafka partitioner hashes key bytes, and an id that changes with a new schema version
would move a key to another partition. The key schema is derived from the value schema's
field types, so equal key values always give equal bytes.

Encoding goes through :mod:`onepipe.schemas.avro_write`: exactly fastavro's bytes, compiled
once per schema; the ``*_many`` forms write a whole batch into one buffer.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import fastavro

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.avro_write import AvroWriter
from onepipe.schemas.errors import CodecError, OnepipeError

MAGIC_BYTE = 0
#: Magic byte and schema id, read signed as Confluent's Java deserializer reads it
#: (``ByteBuffer.getInt``): registry ids are 1..2**31-1, so any other header - a value
#: that only looks framed - reads as an id no registry holds (never one beyond int32,
#: which the raw lake's ``schema_id`` column could not store).
_HEADER = struct.Struct(">bi")
#: The largest schema id a header carries (registry ids are 1..MAX_SCHEMA_ID).
MAX_SCHEMA_ID = 2**31 - 1
HEADER_SIZE = _HEADER.size


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent header."""
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def schema_id_of(value: bytes | None) -> int | None:
    """The schema id of a Confluent-framed value, or None for anything else."""
    if value is None or len(value) < HEADER_SIZE or value[0] != MAGIC_BYTE:
        return None
    return int.from_bytes(value[1:HEADER_SIZE], "big", signed=True)


def header_id(head: bytes) -> int:
    """The schema id of a 5-byte Confluent header whose magic byte was checked."""
    return int(_HEADER.unpack(head)[1])


def unframe(data: bytes) -> tuple[int, memoryview]:
    """Split Confluent-framed bytes into (schema id, Avro body)."""
    if len(data) < HEADER_SIZE:
        raise CodecError(
            f"value of {len(data)} bytes is too short for the Confluent header "
            f"({HEADER_SIZE} bytes: magic 0x00 + schema id)"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise CodecError(
            f"value starts with byte 0x{magic & 0xFF:02x}, not the Confluent magic 0x00: "
            "it was not written by a registry-aware serializer"
        )
    return schema_id, memoryview(data)[HEADER_SIZE:]


def avro_writer(schema: AvroSchema) -> AvroWriter:
    """The compiled writer of ``schema`` (once per distinct schema): the bytes
    ``fastavro.schemaless_writer`` writes, several times faster."""
    writer = _WRITERS.get(schema.identity)
    if writer is None:
        if len(_WRITERS) >= _MAX_WRITERS:  # a registry churning schemas: start over
            _WRITERS.clear()
        writer = _WRITERS[schema.identity] = AvroWriter(schema.parsed)
    return writer


_WRITERS: dict[str, AvroWriter] = {}
_MAX_WRITERS = 512


def encode_body(schema: AvroSchema, datum: Any) -> bytes:
    """Avro binary body of a datum already converted for ``schema``."""
    return avro_writer(schema).encode(datum)


def encode_bodies(schema: AvroSchema, datums: Iterable[Any]) -> list[bytes]:
    """:func:`encode_body` of each datum, in one buffer (cheaper per datum)."""
    return avro_writer(schema).encode_many(datums)


def encode(schema_id: int, schema: AvroSchema, datum: Any) -> bytes:
    """Confluent-framed Avro bytes of ``datum``."""
    return frame(schema_id, encode_body(schema, datum))


def encode_many(schema_id: int, schema: AvroSchema, datums: Iterable[Any]) -> list[bytes]:
    """:func:`encode` of each datum: the header is written with each body, not added after."""
    return avro_writer(schema).encode_many(datums, _HEADER.pack(MAGIC_BYTE, schema_id))


def decode(
    data: bytes,
    writer_for_id: Callable[[int], AvroSchema],
    reader: AvroSchema | None = None,
) -> tuple[int, Any]:
    """Decode framed bytes with the writer schema resolved by id.

    With ``reader`` given, Avro schema resolution turns the data into the reader's
    shape (new fields get defaults, removed fields vanish, promotions apply), so a
    consumer can read every version as one.
    """
    schema_id, body = unframe(data)
    writer = writer_for_id(schema_id)
    try:
        datum = fastavro.schemaless_reader(
            io.BytesIO(body),
            writer.parsed,
            # Resolution only when the schemas differ: reading with an equal schema is the
            # same datum at several times the cost.
            reader.parsed if reader is not None and reader.identity != writer.identity
            else None,
        )
    except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError) as exc:
        raise CodecError(f"Avro body does not decode with schema id {schema_id}: {exc}") from exc
    except fastavro.read.SchemaResolutionError as exc:
        raise CodecError(
            f"schema id {schema_id} cannot be read with the requested reader schema: {exc}"
        ) from exc
    return schema_id, datum


def decode_or_none(data: bytes | None, writer_for_id: Callable[[int], AvroSchema],
                   reader: AvroSchema | None = None) -> tuple[int | None, Any]:
    """:func:`decode`, with ``(None, None)`` for whatever does not decode (a tombstone,
    no frame, an unknown schema id, a bad body): for readers that count such records
    and go on rather than stop."""
    if data is None:
        return None, None
    try:
        return decode(data, writer_for_id, reader)
    except (OnepipeError, KeyError):  # KeyError: a plain dict as the id lookup
        return None, None


class KeyEncoder:
    """Encodes the unique-key fields of converted records into Kafka key bytes."""

    __slots__ = ("_fields", "_parsed", "_writer")

    def __init__(self, value_schema: AvroSchema, key_fields: Sequence[str]) -> None:
        self._fields = tuple(key_fields)
        by_name = {f["name"]: f for f in value_schema.json.get("fields", [])}
        missing = [k for k in self._fields if k not in by_name]
        if missing:
            raise CodecError(f"key fields {missing} are not fields of the value schema")
        # The key record reuses the value fields' types (named types included, so a key
        # field typed by a named enum keeps its definition) but drops docs and defaults.
        key_schema = {
            "type": "record",
            "name": "onepipe_key",
            "fields": [{"name": k, "type": _inline_named(value_schema.json, by_name[k]["type"])}
                       for k in self._fields],
        }
        self._parsed = fastavro.parse_schema(key_schema, named_schemas={})
        self._writer = AvroWriter(self._parsed, self._fields)

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    def encode(self, datum: dict[str, Any]) -> bytes:
        """Key bytes for a converted record (the datum produced by validation)."""
        return self._writer.encode(datum)

    def encode_many(self, datums: Iterable[dict[str, Any]]) -> list[bytes]:
        """:meth:`encode` of each datum, in one buffer."""
        return self._writer.encode_many(datums)

    def decode(self, data: bytes) -> dict[str, Any]:
        result = fastavro.schemaless_reader(io.BytesIO(data), self._parsed, None)
        assert isinstance(result, dict)  # the key schema is a record
        return result


def _inline_named(root: Any, field_type: Any) -> Any:
    """Replace a reference to a named type (enum/fixed) by its definition."""
    if not isinstance(field_type, str):
        return field_type
    found = _find_named(root, field_type, root.get("namespace") if isinstance(root, dict) else None)
    return found if found is not None else field_type


def _find_named(node: Any, name: str, namespace: str | None) -> Any:
    if isinstance(node, list):
        for item in node:
            hit = _find_named(item, name, namespace)
            if hit is not None:
                return hit
        return None
    if not isinstance(node, dict):
        return None
    ns = node.get("namespace", namespace)
    if node.get("type") in ("enum", "fixed", "record") and "name" in node:
        short = node["name"].rsplit(".", 1)[-1]
        full = node["name"] if "." in node["name"] else (f"{ns}.{short}" if ns else short)
        if name in (short, full):
            return node
    for child_key in ("fields", "type", "items", "values"):
        if child_key in node:
            hit = _find_named(node[child_key], name, ns)
            if hit is not None:
                return hit
    return None
