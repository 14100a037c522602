"""The registry's records: a version as clients see it, a subject's versions, a decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onepipe.schemas.avro_schema import AvroSchema


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
class SubjectHistory:
    """A subject's versions that were not permanently deleted: live and soft-deleted."""

    #: version -> schema id, in ascending version order (a new version is always the
    #: highest, so insertion order is version order).
    ids: dict[int, int] = field(default_factory=dict)
    #: The soft-deleted versions among them.
    deleted: set[int] = field(default_factory=set)

    def live(self) -> list[int]:
        """The live versions, ascending."""
        return [v for v in self.ids if v not in self.deleted]

    def listed(self, *, deleted: bool = False, deleted_only: bool = False) -> list[int]:
        """Versions as ``GET .../versions`` lists them under its ``deleted`` flags."""
        if deleted_only:
            return [v for v in self.ids if v in self.deleted]
        return list(self.ids) if deleted else self.live()

    def next_version(self) -> int:
        """The next version number: after the highest one not permanently deleted, soft
        deleted ones included (as Confluent numbers them)."""
        return max(self.ids, default=0) + 1
