"""Parsed Avro schemas: one object per distinct schema, parsed once, shared everywhere.

Two parsers look at every schema on purpose. Apache Avro's ``avro.schema`` is the
authority on validity and on compatibility (its checker agrees with Apache Avro's and
Confluent's test suites); fastavro's parsed form drives encoding and decoding on the hot
path. A schema both accept is usable; anything else is a :class:`SchemaError`.

Identity: two schema texts are the same schema when their JSON is equal after sorting
object keys. Parsing Canonical Form is *not* used for identity because it drops
``default``, ``doc`` and ``aliases``, and two schemas that differ in a default are
different versions for compatibility.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import avro.errors
import avro.schema
import fastavro
import fastavro.schema
import orjson

from onepipe.schemas.errors import SchemaError
from onepipe.schemas.schema_limits import SchemaLimits


@dataclass(frozen=True, slots=True, eq=False)
class AvroSchema:
    """One parsed Avro schema."""

    #: The schema text as first given (what the registry returns).
    text: str
    #: The schema as JSON data (dict, list or str).
    json: Any
    #: Sorted-key compact JSON: equal for equal schemas, different when anything differs.
    identity: str
    #: Avro Parsing Canonical Form (names, types, order; no docs, defaults or aliases).
    canonical: str
    #: fastavro's parsed form, for schemaless reads and writes.
    parsed: Any = field(repr=False)
    #: Apache Avro's parsed form, for compatibility checks.
    avro: avro.schema.Schema = field(repr=False)

    @property
    def type_name(self) -> str:
        """The top-level Avro type: ``record``, ``string``, ``union`` ..."""
        return str(self.avro.type)

    @property
    def is_record(self) -> bool:
        return self.type_name == "record"

    @property
    def identity_hash(self) -> str:
        """A short stable digest of :attr:`identity`, for log keys and file names."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:32]

    def field_names(self) -> list[str]:
        """Top-level field names of a record schema, in declaration order."""
        if not isinstance(self.json, dict) or self.json.get("type") != "record":
            return []
        return [f["name"] for f in self.json.get("fields", [])]


def parse_schema(text: str | bytes | dict[str, Any] | list[Any],
                 limits: SchemaLimits | None = None) -> AvroSchema:
    """Parse a schema given as JSON text or JSON data; raise :class:`SchemaError`.

    ``limits`` bound what a caller may send (the registry API and the catalog pass
    them); schemas already stored are parsed without, so a lowered limit never stops
    a worker from replaying what it accepted before.
    """
    try:
        if isinstance(text, str | bytes):
            try:
                raw = text.decode() if isinstance(text, bytes) else text
                data = orjson.loads(raw)
            except ValueError as exc:  # orjson.JSONDecodeError, UnicodeDecodeError
                raise SchemaError(f"schema is not valid JSON: {exc}") from exc
        else:
            data = text
            raw = _dumps(data)
        if limits is not None:
            limits.check(raw, data)
        return _parse_data(raw, data)
    except RecursionError as exc:
        # Deeper than this thread's stack allows (a worker's start runs deeper than a
        # request): a schema error to report, never a crash of the caller.
        raise SchemaError("schema nests too deep to parse") from exc


def _dumps(data: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON text; the standard encoder takes what orjson refuses (ints > 64 bits)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS if sort_keys else None).decode()
    except TypeError:
        try:
            return json.dumps(data, sort_keys=sort_keys, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"schema is not JSON data: {exc}") from exc


def _parse_data(raw: str, data: Any) -> AvroSchema:
    if not isinstance(data, dict | list | str):
        raise SchemaError(
            f"schema must be a JSON object, array or type name; got {type(data).__name__}"
        )
    try:
        with warnings.catch_warnings():
            # The spec says unknown logical types are ignored; Avro warns, we accept.
            warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
            avro_parsed = avro.schema.parse(_dumps(data))
    except (avro.errors.AvroException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc
    try:
        fast_parsed = fastavro.parse_schema(data, named_schemas={})
        canonical = fastavro.schema.to_parsing_canonical_form(fast_parsed)
    except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(f"invalid Avro schema: {exc}") from exc
    return AvroSchema(
        text=raw,
        json=data,
        identity=_dumps(data, sort_keys=True),
        canonical=canonical,
        parsed=fast_parsed,
        avro=avro_parsed,
    )
