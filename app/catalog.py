"""Applying topic catalog entries: schema + metadata + Kafka topic, in one checked step.

Used by ``PUT /topics/{topic}/metadata`` and ``onepipe apply <dir>``. Everything is
checked before anything is written (the schema parses and is a record, the metadata fits
the schema, the new version passes the compatibility mode, the partition count matches an
existing topic), so a refused entry changes nothing. Applying the same entry twice
changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onepipe.app.web.schema_input import off_loop
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.catalog_folder import load_catalog
from onepipe.schemas.compatibility import Compatibility, incompatibilities
from onepipe.schemas.errors import MetadataError, SchemaError
from onepipe.schemas.metadata import metadata_from_dict, metadata_to_dict
from onepipe.schemas.metadata_checks import validate_against_schema
from onepipe.schemas.registry.view import incompatible
from onepipe.schemas.schema_limits import SchemaLimits
from onepipe.schemas.topic_names import value_subject
from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.registry_store import RegistryStore


@dataclass(slots=True)
class ApplyResult:
    """What applying one catalog entry changed."""

    #: The topic applied.
    topic: str
    #: Human-readable changes, empty when the entry was already in force.
    changes: list[str] = field(default_factory=list)
    #: Id and version of the topic's current value schema.
    schema_id: int = 0
    version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "changes": self.changes, "id": self.schema_id,
                "version": self.version}


async def apply_topic(
    store: RegistryStore,
    topic: str,
    schema_data: Any,
    entry: Mapping[str, Any],
    *,
    replication_factor: int = 1,
    limits: SchemaLimits | None = None,
    check_seconds: float = 30.0,
) -> ApplyResult:
    """Apply one topic: register its schema, set its mode, create it, store its metadata.

    ``limits`` bound the schema (the HTTP view passes the settings'); parsing and the
    compatibility check run in a thread, refused after ``check_seconds``, so a large
    schema never holds the event loop.
    """
    if schema_data is None:
        raise MetadataError("`schema` is required: the topic's Avro record schema", "schema")
    schema = await off_loop(check_seconds, "parsing the schema", parse_schema, schema_data,
                            limits)
    meta = metadata_from_dict(topic, entry)
    validate_against_schema(meta, schema)
    state = store.state
    subject = value_subject(topic)
    mode = Compatibility.parse(meta.compatibility)
    # Checked under the catalog's level before anything is written, so a refusal changes
    # nothing (the level itself is written first, below).
    if state.lookup(subject, schema) is None:  # in a thread, on inputs taken here
        reasons = await off_loop(check_seconds, "checking compatibility", incompatibilities,
                                 schema, state.live_schemas(subject), mode)
        if reasons:
            raise incompatible(subject, mode, reasons)
    result = ApplyResult(topic)

    # Kafka topic first: a topic whose partitions differ from the declaration is an error
    # the user must resolve (changing the count moves keys between partitions).
    partitions = await ensure_topic(
        store.kafka, topic, partitions=meta.partitions, replication_factor=replication_factor
    )
    if partitions != meta.partitions:
        raise MetadataError(
            f"topic {topic!r} exists with {partitions} partition(s) but the catalog declares "
            f"{meta.partitions}; changing the count moves keys to other partitions, so "
            "declare the existing count",
            "partitions",
        )
    if topic not in state.topics:
        result.changes.append(f"topic: ensured Kafka topic with {partitions} partition(s)")

    if state.configs.get(subject) is not mode:
        # Pinned per subject even when it equals the default, so a later change of the
        # global default does not silently change this topic's rules.
        before = state.configs.get(subject)
        await store.set_config(subject, mode)
        result.changes.append(
            f"compatibility: {before.value} -> {mode.value}" if before
            else f"compatibility: set to {mode.value}")

    existed = state.lookup(subject, schema)
    version = await store.register(subject, schema)
    if existed is None:
        result.changes.append(
            f"schema: registered version {version.version} (id {version.schema_id})")
    result.schema_id, result.version = version.schema_id, version.version

    previous = state.topics.get(topic)
    if previous != meta:
        await store.put_metadata(topic, metadata_to_dict(meta))
        result.changes.append("metadata: " + ("updated" if previous is not None else "created"))
    return result


async def apply_catalog(
    store: RegistryStore, folder: Path, *, replication_factor: int = 1
) -> list[ApplyResult]:
    """Apply every entry of a catalog folder in file order; stop at the first refusal.

    A refusal raises an error whose message starts with the file that was refused.
    """
    results = []
    for item in load_catalog(folder):
        try:
            results.append(
                await apply_topic(store, item.topic, item.schema, item.entry,
                                  replication_factor=replication_factor)
            )
        except (SchemaError, MetadataError) as exc:
            exc.message = f"{item.path}: {exc.message}"
            exc.args = (exc.message,)
            raise
    return results
