"""The checksum spec of a topic: its reader schema's Arrow types plus its catalog checks.

:mod:`schemas.checksum` computes the figures but may not import ``sinks`` (schemas is a
leaf), so the canonical Arrow type of each Avro field, the one the lake stores
(:func:`sinks.arrow_types.record_fields`), is looked up here and handed to it. Every
system builds its spec with :func:`spec_for` from the same reader schema and metadata,
which is what makes their figures comparable.
"""

from __future__ import annotations

import functools

import pyarrow as pa

from schemas.avro_schema import AvroSchema
from schemas.checksum import ChecksumSpec, make_spec
from schemas.errors import SchemaError
from schemas.metadata import TopicMetadata
from sinks.arrow_types import record_fields


def spec_for(schema: AvroSchema, metadata: TopicMetadata) -> ChecksumSpec:
    """The spec for records read with ``schema`` under ``metadata``'s checks.

    Raises :class:`SchemaError` when ``schema`` is not a record or names a type the
    checksum cannot encode, or when the metadata's key or sum fields are not its fields.
    """
    return _spec(schema, metadata)


@functools.lru_cache(maxsize=256)
def _spec(schema: AvroSchema, metadata: TopicMetadata) -> ChecksumSpec:
    # AvroSchema compares by identity and is parsed once per schema, TopicMetadata is a
    # frozen value: one spec per (schema, metadata) in use.
    if not schema.is_record:
        raise SchemaError(f"checksums need a record reader schema; got a {schema.type_name}")
    arrow = pa.schema([f for f, _ in record_fields(schema.json)])
    checks = metadata.checks
    return make_spec(arrow, metadata.key, checks.sums, count_distinct=checks.count_distinct,
                     row_checksum=checks.row_checksum)
