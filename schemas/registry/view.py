"""The registry state as readers see it: its fields and every query on them.

:class:`~onepipe.schemas.registry_state.RegistryState` adds how the log changes it; every
query here is Confluent's read (its error codes included) over that state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.codec import MAX_SCHEMA_ID
from onepipe.schemas.compatibility import DEFAULT_COMPATIBILITY, Compatibility, incompatibilities
from onepipe.schemas.errors import (
    IncompatibleSchemaError,
    InvalidVersionError,
    NotFoundError,
    OperationNotPermittedError,
)
from onepipe.schemas.metadata import TopicMetadata
from onepipe.schemas.registry.modes import DEFAULT_MODE, Mode
from onepipe.schemas.registry.normalize import normalized_identity
from onepipe.schemas.registry.types import SchemaVersion, SubjectHistory
from onepipe.schemas.topic_names import source_of_value_subject, value_subject

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_CONFIG_NOT_FOUND = 40408
SUBJECT_MODE_NOT_FOUND = 40409
TOPIC_NOT_FOUND = 40410


@dataclass(slots=True)
class RegistryView:
    """Subjects, schema ids, configs, modes and topic metadata, and the queries on them."""

    #: Every schema ever registered, by id: never removed (ids are reserved forever).
    schemas_by_id: dict[int, AvroSchema] = field(default_factory=dict)
    id_by_identity: dict[str, int] = field(default_factory=dict)
    #: subject -> its versions not permanently deleted (live and soft-deleted).
    histories: dict[str, SubjectHistory] = field(default_factory=dict)
    #: subject -> schema ids of its *live* versions, in version order: the subjects a
    #: producer or reader can use (derived from ``histories`` whenever they change).
    subjects: dict[str, list[int]] = field(default_factory=dict)
    #: subject -> level; the key ``None`` holds the global level.
    configs: dict[str | None, Compatibility] = field(default_factory=dict)
    #: subject -> mode; the key ``None`` holds the global mode.
    modes: dict[str | None, Mode] = field(default_factory=dict)
    #: topic -> its catalog entry, parsed once when its log record is applied.
    topics: dict[str, TopicMetadata] = field(default_factory=dict)
    #: subject (None: global) -> offset of the last record that changed what a
    #: registration under it is checked against (a level, a mode, a delete).
    changed_at: dict[str | None, int] = field(default_factory=dict)
    #: Offset of the last log record applied; -1 before any.
    applied_offset: int = -1
    #: Bumped on every accepted change, so caches know when to refresh.
    generation: int = 0
    #: Schema ids whose log record this worker could not parse (offset, reason): the id
    #: stays taken, so it is never handed to another schema.
    unreadable: dict[int, tuple[int, str]] = field(default_factory=dict)

    # ---------------------------------------------------------------- queries
    def subject_names(self, *, deleted: bool = False, deleted_only: bool = False) -> list[str]:
        """Live subjects; with ``deleted`` soft-deleted ones too; ``deleted_only``: those."""
        if deleted_only:
            return sorted(s for s in self.histories if s not in self.subjects)
        return sorted(self.histories if deleted else self.subjects)

    def versions(self, subject: str, *, deleted: bool = False,
                 deleted_only: bool = False) -> list[int]:
        """Live version numbers (40401 when there is none); the flags as in Confluent."""
        return self.history(subject, deleted=deleted or deleted_only).listed(
            deleted=deleted, deleted_only=deleted_only)

    def version(self, subject: str, version: str | int, *, deleted: bool = False
                ) -> SchemaVersion:
        """A version by number or ``latest`` (or ``-1``), Confluent errors otherwise.

        ``latest`` is the latest live version; with ``deleted`` a soft-deleted version is
        found too (and ``latest`` of a subject with none live is its latest soft-deleted).
        """
        history = self.history(subject, deleted=deleted)
        number = parse_version(version)
        if number == -1:
            candidates = history.live() or (list(history.ids) if deleted else [])
            number = candidates[-1] if candidates else 0
        if number not in history.ids or (number in history.deleted and not deleted):
            raise NotFoundError(
                f"version {version} of subject {subject!r} not found; its live versions are "
                f"{history.live()}", VERSION_NOT_FOUND)
        schema_id = history.ids[number]
        return SchemaVersion(subject, number, schema_id, self.schemas_by_id[schema_id])

    def history(self, subject: str, *, deleted: bool = False) -> SubjectHistory:
        """The subject's versions; 40401 when it has none live (and, without ``deleted``,
        when all of them are soft-deleted)."""
        history = self.histories.get(subject)
        if history is None or not (deleted or subject in self.subjects):
            raise NotFoundError(f"subject {subject!r} not found", SUBJECT_NOT_FOUND)
        return history

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """Any schema ever registered, whatever was deleted since (module docstring)."""
        try:
            return self.schemas_by_id[schema_id]
        except KeyError:
            raise NotFoundError(f"schema id {schema_id} not found", SCHEMA_NOT_FOUND) from None

    def could_learn(self, schema_id: int) -> bool:
        """Whether ``schema_id`` may still become known here (registered on another worker
        moments ago): a registry's id (1..MAX_SCHEMA_ID) that the log did not skip as
        unreadable. Only such an id is worth waiting for."""
        return 1 <= schema_id <= MAX_SCHEMA_ID and schema_id not in self.unreadable

    def lookup(self, subject: str, schema: AvroSchema, *, deleted: bool = False,
               normalize: bool = False) -> SchemaVersion | None:
        """The version of ``subject`` that holds exactly ``schema``, if any (with
        ``deleted`` a soft-deleted one too; with ``normalize`` compared normalized)."""
        history = self.histories.get(subject)
        if history is None:
            return None
        found: int | None = None
        if normalize:
            wanted = normalized_identity(schema)
            found = next((v for v in reversed(history.ids)
                          if normalized_identity(self.schemas_by_id[history.ids[v]])
                          == wanted and (deleted or v not in history.deleted)), None)
        elif (schema_id := self.id_by_identity.get(schema.identity)) is not None:
            found = next((v for v in reversed(history.ids) if history.ids[v] == schema_id
                          and (deleted or v not in history.deleted)), None)
        if found is None:
            return None
        # The registered schema, not the caller's: Confluent answers with the stored text.
        schema_id = history.ids[found]
        return SchemaVersion(subject, found, schema_id, self.schemas_by_id[schema_id])

    def subjects_of_id(self, schema_id: int, *, deleted: bool = False
                       ) -> Iterator[tuple[str, int]]:
        """(subject, version) pairs holding ``schema_id``, soft-deleted ones with ``deleted``."""
        for subject in sorted(self.histories):
            history = self.histories[subject]
            for version, held in history.ids.items():
                if held == schema_id and (deleted or version not in history.deleted):
                    yield subject, version

    def compatibility(self, subject: str | None) -> Compatibility:
        """The effective level: the subject's own, else the global, else the default."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_COMPATIBILITY)

    def mode(self, subject: str | None) -> Mode:
        """The effective mode: the subject's own, else the global, else READWRITE."""
        if subject is not None and subject in self.modes:
            return self.modes[subject]
        return self.modes.get(None, DEFAULT_MODE)

    def topic_of(self, subject: str) -> str | None:
        """The registered topic whose value subject ``subject`` is, if any."""
        topic = source_of_value_subject(subject)
        return topic if topic is not None and topic in self.topics else None

    def reader_schema(self, topic: str) -> AvroSchema:
        """The schema ``topic``'s records are read with: its value subject's latest live
        version (40401/40402 when it has none)."""
        return self.version(value_subject(topic), "latest").schema

    def topic_metadata(self, topic: str) -> TopicMetadata:
        try:
            return self.topics[topic]
        except KeyError:
            raise NotFoundError(
                f"topic {topic!r} is not registered; apply its catalog entry first "
                "(onepipe apply, or PUT /topics/{topic}/metadata)",
                TOPIC_NOT_FOUND,
            ) from None
    # -------------------------------------------------------------- decisions
    def incompatibilities(self, subject: str, schema: AvroSchema,
                          mode: Compatibility | None = None) -> list[str]:
        """Why ``schema`` may not become the next version of ``subject`` under ``mode``
        (default: the subject's effective level); empty when it may. Soft-deleted
        versions are not checked against, as in Confluent."""
        return incompatibilities(schema, self.live_schemas(subject),
                                 mode or self.compatibility(subject))

    def live_schemas(self, subject: str) -> list[AvroSchema]:
        """The live versions' schemas of ``subject``, oldest first: what a new version is
        checked against (a fresh list, safe to hand to a thread)."""
        return [self.schemas_by_id[i] for i in self.subjects.get(subject, [])]

    def check_writable(self, subject: str | None) -> None:
        """42205 when ``subject`` (or the registry) is read-only."""
        if self.mode(subject).read_only:
            where = f"subject {subject!r}" if subject is not None else "the registry"
            raise OperationNotPermittedError(
                f"{where} is in read-only mode ({self.mode(subject).value}); set it back with "
                f"PUT /mode{'/' + subject if subject is not None else ''} "
                '{"mode": "READWRITE"} first')

    def check_register(self, subject: str, schema: AvroSchema,
                       mode: Compatibility | None = None) -> None:
        """Raise :class:`IncompatibleSchemaError` when registering would break ``mode``."""
        if self.lookup(subject, schema) is not None:
            return  # already a version: registering again changes nothing
        mode = mode or self.compatibility(subject)
        reasons = self.incompatibilities(subject, schema, mode)
        if reasons:
            raise incompatible(subject, mode, reasons)


def incompatible(subject: str, mode: Compatibility, reasons: list[str]
                 ) -> IncompatibleSchemaError:
    """The 409 a registration gets when ``mode`` refuses it, for ``reasons``."""
    return IncompatibleSchemaError(
        f"schema being registered is incompatible with an earlier schema for subject "
        f"{subject!r} under {mode.value}: {reasons[0]}", reasons)


def parse_version(version: str | int) -> int:
    """A version number, ``-1`` for latest; 42202 for anything else."""
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    elif isinstance(version, str) and version == "latest":
        return -1
    elif (isinstance(version, str) and version.isascii() and version.lstrip("-").isdigit()
          and len(version) < 11):
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
