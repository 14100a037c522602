"""A topic as columns: the figures' spec and the column names every system reads.

:mod:`onepipe.schemas.checksum` computes the figures but may not import ``sinks`` (schemas
is a leaf), so the canonical Arrow type of each Avro field, the one the lake stores
(:func:`onepipe.sinks.formats.arrow_types.record_fields`), is looked up here and handed to
it. Every system builds its spec with :func:`spec_for` from the same reader schema and
metadata, which is what makes their figures comparable; :class:`TopicView` adds what a
reader of Arrow data needs beside it (the key hash's spec, the column placing a row in a
day), and is shared by the checksum tables and ``verify``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyarrow as pa

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.checksum_spec import ChecksumSpec, make_spec
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.merge import OFFSET_COLUMN, PARTITION_COLUMN
from onepipe.schemas.metadata import KAFKA_TIMESTAMP, TopicMetadata
from onepipe.sinks.formats.arrow_types import record_fields
from onepipe.sinks.formats.raw import TIMESTAMP_COLUMN

__all__ = ["TopicView", "spec_for"]


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


@dataclass(frozen=True, slots=True)
class TopicView:
    """What every source needs to know about a topic: specs and column names."""

    #: The topic's catalog entry.
    meta: TopicMetadata
    #: The figures' spec (latest reader schema + catalog checks).
    spec: ChecksumSpec
    #: Spec over the identity columns only: what a key hash hashes.
    key_spec: ChecksumSpec
    #: The column placing a row in a day.
    time_column: str

    @classmethod
    def build(cls, meta: TopicMetadata, schema: AvroSchema) -> TopicView:
        spec = spec_for(schema, meta)
        if meta.key:
            key_schema = pa.schema([spec.schema.field(k) for k in meta.key])
        else:  # the compactor's identity of a keyless row
            key_schema = pa.schema([pa.field(PARTITION_COLUMN, pa.int32()),
                                    pa.field(OFFSET_COLUMN, pa.int64())])
        time_column = TIMESTAMP_COLUMN if meta.partition_time == KAFKA_TIMESTAMP \
            else meta.partition_time
        return cls(meta, spec, make_spec(key_schema), time_column)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column a source reads: spec fields, identity, the time column."""
        names = dict.fromkeys([*self.spec.schema.names, *self.key_spec.schema.names,
                               self.time_column])
        return tuple(names)

    def column_type(self, name: str) -> pa.DataType:
        if name in self.spec.schema.names:
            return self.spec.schema.field(name).type
        if name in self.key_spec.schema.names:
            return self.key_spec.schema.field(name).type
        return pa.timestamp("ms", tz="UTC")
