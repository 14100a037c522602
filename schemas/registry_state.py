"""The registry as a deterministic state machine over its log.

The registry's state is a function of one single-partition Kafka topic (the log): every
worker applies the same records in the same order and so holds the same subjects,
versions, ids, configs and topic metadata. The log holds *decisions*, not requests:

``schema``    subject, version, id and schema text, checked for compatibility by the
              writer before it was appended;
``config``    a compatibility level for a subject (or the global one);
``metadata``  a topic's catalog entry, parsed here once into a
              :class:`~onepipe.schemas.metadata.TopicMetadata`: every reader of the
              state gets the typed entry, never a dict to parse again.

Two workers may decide concurrently (both propose version 3, or both hand out id 7).
:meth:`RegistryState.apply` accepts a schema decision only if it is still consistent with
what came before it in the log (its version is the next one, its id is the schema's id or
a fresh one), so the first decision in log order wins on every worker, and the loser sees
its decision ignored and retries against the new state. That is how ids stay identical on
every worker without a leader.

Record keys are unique per decision (``schema/<subject>/<version>/<hash>/<random>``) so
that log compaction never removes an accepted decision in favour of a later duplicate or
loser (which would move it past decisions that depended on it); config and metadata keys
are per subject/topic, where the last value is the state. Producer retries must not
duplicate records for this to hold on a compacting broker: the worker's producer is
idempotent on Apache Kafka (ONEPIPE_IDEMPOTENT_PRODUCER).

A schema decision also carries its ``basis``, the log offset its writer had applied when
it checked compatibility. If the subject's (or the global) compatibility level changed
after that offset, the decision was checked against a level that no longer holds, and
``apply`` refuses it like a lost race; the writer decides again under the new level.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.compatibility import DEFAULT_COMPATIBILITY, Compatibility, incompatibilities
from onepipe.schemas.errors import (
    IncompatibleSchemaError,
    InvalidCompatibilityError,
    InvalidVersionError,
    MetadataError,
    NotFoundError,
    SchemaError,
)
from onepipe.schemas.metadata import TopicMetadata, metadata_from_dict
from onepipe.schemas.schema_limits import REPLAY_LIMITS

log = logging.getLogger(__name__)

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_CONFIG_NOT_FOUND = 40408
TOPIC_NOT_FOUND = 40410


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one subject."""

    #: The subject, e.g. ``widgets-value``.
    subject: str
    #: 1-based version within the subject.
    version: int
    #: Registry-wide schema id (the one in the Confluent header).
    schema_id: int
    #: The parsed schema.
    schema: AvroSchema

    def to_json(self) -> dict[str, Any]:
        """Confluent's ``GET /subjects/{s}/versions/{v}`` body."""
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.schema_id,
            "schema": self.schema.text,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """A record to append to the registry log."""

    key: str
    value: dict[str, Any]


@dataclass(slots=True)
class RegistryState:
    """Subjects, schema ids, configs and topic metadata, as replayed from the log."""

    schemas_by_id: dict[int, AvroSchema] = field(default_factory=dict)
    id_by_identity: dict[str, int] = field(default_factory=dict)
    #: subject -> schema ids, index + 1 is the version.
    subjects: dict[str, list[int]] = field(default_factory=dict)
    #: subject -> level; the key ``None`` holds the global level.
    configs: dict[str | None, Compatibility] = field(default_factory=dict)
    #: topic -> its catalog entry, parsed once when its log record is applied.
    topics: dict[str, TopicMetadata] = field(default_factory=dict)
    #: subject (None: global) -> offset of the record that last changed its level.
    config_offsets: dict[str | None, int] = field(default_factory=dict)
    #: Offset of the last log record applied; -1 before any.
    applied_offset: int = -1
    #: Bumped on every accepted change, so caches know when to refresh.
    generation: int = 0
    #: Schema ids whose log record this worker could not parse (offset, reason): the id
    #: stays taken, so it is never handed to another schema.
    unreadable: dict[int, tuple[int, str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ apply
    def apply(self, offset: int, value: dict[str, Any]) -> bool:
        """Apply one log record; return whether it changed the state.

        Unknown or malformed records are skipped rather than fatal: a newer worker may
        write record types this one does not know, and replay must not stop on them.
        """
        self.applied_offset = offset
        try:
            changed = self._apply(value)
        except Exception:  # noqa: BLE001 - one bad record must not stop every worker's start
            # A bug of this worker's on a record it should understand: it is skipped and
            # reported, as a malformed one is, rather than ending the replay (every
            # worker replays the log at every start: a raise here would be a crash loop).
            log.exception("registry log: skipping the record at offset %d, which this "
                          "worker failed to apply", offset)
            return False
        if changed:
            self.generation += 1
        return changed

    def _apply(self, value: dict[str, Any]) -> bool:
        kind = value.get("type")
        changed = False
        if kind == "schema":
            changed = self._apply_schema(value)
        elif kind == "config":
            changed = self._apply_config(value)
        elif kind == "metadata":
            topic = value.get("topic")
            meta = value.get("metadata")
            if isinstance(topic, str) and isinstance(meta, dict):
                changed = self._apply_metadata(topic, meta)
        return changed

    def _apply_schema(self, value: dict[str, Any]) -> bool:
        subject, version, schema_id, text = (
            value.get("subject"),
            value.get("version"),
            value.get("id"),
            value.get("schema"),
        )
        if not (isinstance(subject, str) and isinstance(version, int)
                and isinstance(schema_id, int) and isinstance(text, str)):
            return False
        try:
            schema = parse_schema(text, REPLAY_LIMITS)
        except SchemaError as exc:
            self._skip_unreadable(schema_id, subject, version, exc.message)
            return False
        versions = self.subjects.get(subject, [])
        if version != len(versions) + 1:
            return False  # another decision took this version first
        basis = value.get("basis")
        if isinstance(basis, int) and max(self.config_offsets.get(subject, -1),
                                           self.config_offsets.get(None, -1)) > basis:
            return False  # checked under a compatibility level that changed since
        known = self.id_by_identity.get(schema.identity)
        if known is not None and known != schema_id:
            return False
        if known is None and (schema_id in self.schemas_by_id or schema_id in self.unreadable):
            return False  # the id went to another schema first
        if known is not None and known in versions:
            return False  # already a version of this subject
        if known is None:
            self.schemas_by_id[schema_id] = schema
            self.id_by_identity[schema.identity] = schema_id
        self.subjects.setdefault(subject, []).append(schema_id)
        return True

    def _skip_unreadable(self, schema_id: int, subject: str, version: int, reason: str) -> None:
        """A stored schema no worker parses safely (stored before the door's limits): the
        same on every worker, so their states stay equal; its id stays taken."""
        if schema_id not in self.schemas_by_id:
            self.unreadable.setdefault(schema_id, (self.applied_offset, reason))
        log.error("registry log: schema id %d (subject %r, version %d) at offset %d is "
                  "skipped, by every worker: %s. Its id stays reserved; records written "
                  "with it are undecodable. Register a fixed version of the subject.",
                  schema_id, subject, version, self.applied_offset, reason)

    def _apply_metadata(self, topic: str, data: dict[str, Any]) -> bool:
        try:
            parsed = metadata_from_dict(topic, data)
        except MetadataError as exc:
            # Written by a newer worker with fields this one does not know, or by hand:
            # the topic keeps the entry it had, so nothing downstream sees half a change.
            log.warning("registry log: skipping metadata of topic %r that does not parse "
                        "here: %s", topic, exc.message)
            return False
        self.topics[topic] = parsed
        return True

    def _apply_config(self, value: dict[str, Any]) -> bool:
        subject = value.get("subject")
        if subject is not None and not isinstance(subject, str):
            return False
        level = value.get("compatibility")
        if level is None:
            removed = self.configs.pop(subject, None) is not None
            if removed:
                self.config_offsets[subject] = self.applied_offset
            return removed
        try:
            self.configs[subject] = Compatibility.parse(level)
        except InvalidCompatibilityError:
            return False  # written by a newer worker with a level this one does not know
        self.config_offsets[subject] = self.applied_offset
        return True

    # ---------------------------------------------------------------- queries
    def subject_names(self) -> list[str]:
        return sorted(self.subjects)

    def versions(self, subject: str) -> list[int]:
        return list(range(1, len(self._subject(subject)) + 1))

    def version(self, subject: str, version: str | int) -> SchemaVersion:
        """A version by number or ``latest`` (or ``-1``), Confluent errors otherwise."""
        ids = self._subject(subject)
        number = parse_version(version)
        if number == -1:
            number = len(ids)
        if not 1 <= number <= len(ids):
            raise NotFoundError(
                f"version {version} of subject {subject!r} not found; it has versions "
                f"1..{len(ids)}",
                VERSION_NOT_FOUND,
            )
        schema_id = ids[number - 1]
        return SchemaVersion(subject, number, schema_id, self.schemas_by_id[schema_id])

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        try:
            return self.schemas_by_id[schema_id]
        except KeyError:
            raise NotFoundError(f"schema id {schema_id} not found", SCHEMA_NOT_FOUND) from None

    def lookup(self, subject: str, schema: AvroSchema) -> SchemaVersion | None:
        """The version of ``subject`` that holds exactly ``schema``, if any."""
        schema_id = self.id_by_identity.get(schema.identity)
        ids = self.subjects.get(subject, [])
        if schema_id is None or schema_id not in ids:
            return None
        # The registered schema, not the caller's: Confluent answers with the stored text.
        return SchemaVersion(subject, ids.index(schema_id) + 1, schema_id,
                             self.schemas_by_id[schema_id])

    def subjects_of_id(self, schema_id: int) -> Iterator[tuple[str, int]]:
        for subject, ids in self.subjects.items():
            if schema_id in ids:
                yield subject, ids.index(schema_id) + 1

    def compatibility(self, subject: str | None) -> Compatibility:
        """The effective level: the subject's own, else the global, else the default."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_COMPATIBILITY)

    def topic_metadata(self, topic: str) -> TopicMetadata:
        try:
            return self.topics[topic]
        except KeyError:
            raise NotFoundError(
                f"topic {topic!r} is not registered; apply its catalog entry first "
                "(onepipe apply, or PUT /topics/{topic}/metadata)",
                TOPIC_NOT_FOUND,
            ) from None

    def _subject(self, subject: str) -> list[int]:
        try:
            return self.subjects[subject]
        except KeyError:
            raise NotFoundError(f"subject {subject!r} not found", SUBJECT_NOT_FOUND) from None

    # -------------------------------------------------------------- decisions
    def incompatibilities(self, subject: str, schema: AvroSchema,
                          mode: Compatibility | None = None) -> list[str]:
        """Why ``schema`` may not become the next version of ``subject`` under ``mode``
        (default: the subject's effective level); empty when it may."""
        mode = mode or self.compatibility(subject)
        older = [self.schemas_by_id[i] for i in self.subjects.get(subject, [])]
        return incompatibilities(schema, older, mode)

    def check_register(self, subject: str, schema: AvroSchema,
                       mode: Compatibility | None = None) -> None:
        """Raise :class:`IncompatibleSchemaError` when registering would break ``mode``."""
        if self.lookup(subject, schema) is not None:
            return  # already a version: registering again changes nothing
        mode = mode or self.compatibility(subject)
        reasons = self.incompatibilities(subject, schema, mode)
        if reasons:
            raise IncompatibleSchemaError(
                f"schema being registered is incompatible with an earlier schema for "
                f"subject {subject!r} under {mode.value}: {reasons[0]}",
                reasons,
            )

    def decide_register(
        self, subject: str, schema: AvroSchema, *, check: bool = True
    ) -> SchemaVersion | Decision:
        """What registering ``schema`` under ``subject`` means now.

        Returns the existing version when the subject already holds the schema (no
        write needed), a :class:`Decision` to append otherwise, and raises
        :class:`IncompatibleSchemaError` when the subject's mode forbids it.
        """
        existing = self.lookup(subject, schema)
        if existing is not None:
            return existing
        if check:
            self.check_register(subject, schema)
        schema_id = self.id_by_identity.get(schema.identity)
        if schema_id is None:
            schema_id = max(max(self.schemas_by_id, default=0),
                            max(self.unreadable, default=0)) + 1
        version = len(self.subjects.get(subject, [])) + 1
        return Decision(
            key=f"schema/{subject}/{version}/{schema.identity_hash}/{uuid.uuid4().hex[:16]}",
            value={
                "type": "schema",
                "subject": subject,
                "version": version,
                "id": schema_id,
                "schema": schema.text,
                "basis": self.applied_offset,
            },
        )


def parse_version(version: str | int) -> int:
    """A version number, ``-1`` for latest; 42202 for anything else."""
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and version == "latest":
        return -1
    elif isinstance(version, str) and version.lstrip("-").isdigit() and len(version) < 11:
        number = int(version)
    else:
        raise InvalidVersionError(
            f"the specified version {version!r} is not a valid version id; use a positive "
            "integer or 'latest'"
        )
    if number == -1:
        return -1
    if number < 1 or number > 2**31 - 1:
        raise InvalidVersionError(
            f"the specified version {version!r} is not a valid version id; use a positive "
            "integer or 'latest'"
        )
    return number
