"""Schema compatibility: the seven Confluent modes, built on Apache Avro's resolution checker.

``can_read(reader, writer)`` answers "can data written with ``writer`` be decoded with
``reader``" using ``avro.compatibility`` (Apache Avro's own implementation of the
specification's schema-resolution rules: promotions, defaults, enum symbols, unions,
nested and recursive records, aliases). It agrees with all 261 cases in
``shared/testdata/avro_compat_vectors.json``; re-deriving those rules by hand is how
registries drift from Avro.

A mode then says which direction is checked against which existing versions:

=====================  =====================================================
BACKWARD               the new schema reads data of the latest version
FORWARD                the latest version reads data of the new schema
FULL                   both
``*_TRANSITIVE``       the same against every existing version, not only the latest
NONE                   nothing is checked
=====================  =====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import InvalidCompatibilityError


class Compatibility(StrEnum):
    """The seven Confluent Schema Registry compatibility levels."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @classmethod
    def parse(cls, value: object) -> Compatibility:
        """Read a level from user input (case-insensitive); raise 42203 otherwise."""
        if isinstance(value, str):
            try:
                return cls(value.upper())
            except ValueError:
                pass
        allowed = ", ".join(m.value for m in cls)
        raise InvalidCompatibilityError(
            f"invalid compatibility level {value!r}; use one of {allowed}"
        )

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def checks_backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def checks_forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))


#: The default for every subject that has no level of its own (DESIGN.md).
DEFAULT_COMPATIBILITY = Compatibility.BACKWARD_TRANSITIVE


def can_read(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why ``reader`` cannot decode data written with ``writer``; empty when it can."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader.avro, writer.avro)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    # Avro keeps messages and locations in unordered sets, so they are reported side by
    # side (sorted, for stable output) rather than paired.
    kinds = ", ".join(sorted({i.value for i in result.incompatibilities})) or "incompatible"
    messages = "; ".join(sorted(str(m) for m in result.messages))
    locations = ", ".join(sorted(str(loc) for loc in result.locations))
    return [f"{kinds}: {messages} at {locations}" if messages else f"{kinds} at {locations}"]


def incompatibilities(
    new: AvroSchema, existing: Sequence[AvroSchema], mode: Compatibility
) -> list[str]:
    """Every reason ``new`` may not follow ``existing`` (oldest first) under ``mode``.

    An empty list means the new version is allowed.
    """
    if mode is Compatibility.NONE or not existing:
        return []
    targets = list(existing) if mode.transitive else [existing[-1]]
    reasons: list[str] = []
    # Newest first: the most relevant message leads, as Confluent reports it.
    for old in reversed(targets):
        version = existing.index(old) + 1
        if mode.checks_backward:
            reasons += [
                f"new schema cannot read data written with version {version}: {r}"
                for r in can_read(new, old)
            ]
        if mode.checks_forward:
            reasons += [
                f"version {version} cannot read data written with the new schema: {r}"
                for r in can_read(old, new)
            ]
    return reasons
