"""The one exception hierarchy of onepipe.

Every error a user can see derives from :class:`OnepipeError`. It carries a stable
machine-readable ``code``, an HTTP ``status`` for the web views, and ``retriable`` so
retry loops ask the error instead of matching messages::

    OnepipeError
    ├── ConfigError                 a setting or catalog file is wrong (names the variable/field)
    │   └── RecordTypeError         a typed record class does not fit its topic's schema
    ├── SchemaError                 an Avro schema is unusable            (HTTP 422, 42201)
    │   └── IncompatibleSchemaError a new version breaks the subject's mode (HTTP 409)
    ├── MetadataError               topic metadata contradicts the schema (HTTP 422, 42202)
    ├── RecordValidationError       records do not match the schema       (HTTP 422, per-field list)
    ├── CodecError                  bytes are not Confluent-framed Avro of a known schema
    ├── MergeError                  a version cannot be ranked by its topic's order rule
    ├── RegistryError               Confluent-compatible registry errors
    │   ├── NotFoundError           subject / version / schema / topic unknown (HTTP 404)
    │   ├── InvalidVersionError     a version that is not a positive int or "latest" (422, 42202)
    │   ├── InvalidCompatibilityError  an unknown compatibility level (422, 42203)
    │   ├── InvalidSubjectError     a subject with control characters or a path (422, 42208)
    │   ├── InvalidModeError        an unknown or unsupported registry mode (422, 42204)
    │   ├── OperationNotPermittedError  read-only subject, topic's last version, no id (422, 42205)
    │   └── RegistryConflictError   a concurrent writer won; retriable
    ├── RequestError                malformed HTTP input (400/413/415)
    ├── AuthenticationError         no valid API token was presented      (HTTP 401, 40101)
    ├── ForbiddenError              the token lacks the right to do this  (HTTP 403, 40301)
    ├── RateLimitedError            the token spent its request budget    (HTTP 429, 42901)
    ├── LakeError                   the lake (folder or S3) refused or lost an object
    │   └── LakeObjectNotFound      a path that is not in the lake
    ├── BrokerError                 Kafka did not accept or answer; retriable
    ├── CatalogError                the Iceberg catalog is unreachable or holds another lake's table
    ├── CompactionError             the compactor cannot publish a clean version
    │   └── CompactionConflict      another compactor committed a snapshot first; retriable
    ├── QueryError                  DuckDB refused an ``onepipe sql`` query
    ├── StateError                  an agent's table state cannot be read, written or recovered
    │   └── StaleStateError         a local state store claims more of its changelog than it holds
    └── WarehouseError              a warehouse load failed; the days it did not finish keep
                                    their previous rows

This module is a leaf: it imports nothing from onepipe, so every package can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OnepipeError(Exception):
    """Root of every onepipe error."""

    code: str = "onepipe_error"
    status: int = 500
    #: Confluent Schema Registry ``error_code``; defaults to ``status`` as Confluent does.
    error_code: int | None = None
    retriable: bool = False
    #: Seconds a client should wait before retrying (the HTTP ``Retry-After`` header), for
    #: errors that pass by themselves; None: no advice.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, Any]:
        """The JSON error body: Confluent's ``error_code``/``message`` plus our ``code``."""
        return {
            "error_code": self.error_code if self.error_code is not None else self.status,
            "message": self.message,
            "code": self.code,
        }


class ConfigError(OnepipeError):
    """A setting or catalog value is wrong; the message names the variable or field."""

    code = "config_error"
    status = 400


class RecordTypeError(ConfigError):
    """A typed record class (onepipe.schemas.typed) does not fit its topic's reader schema.

    The message names the topic, the class, every field path that does not fit
    (``Order.address.city``, ``Widget.tags[]``) with the reason, and how to regenerate the
    class; ``problems`` holds the same as ``(path, reason)`` pairs.
    """

    code = "record_type_mismatch"

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class SchemaError(OnepipeError):
    """An Avro schema cannot be parsed or is not allowed where it was given."""

    code = "invalid_schema"
    status = 422
    error_code = 42201


class IncompatibleSchemaError(SchemaError):
    """A new schema version breaks the subject's compatibility mode."""

    code = "incompatible_schema"
    status = 409
    error_code = 409

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["reasons"] = self.reasons
        return body


class MetadataError(OnepipeError):
    """Topic metadata (key, order, partition_time, checks) contradicts the schema."""

    code = "invalid_metadata"
    status = 422
    error_code = 42202

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["field"] = self.field
        return body


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason one record does not match its schema."""

    #: Position of the record in the request (0 for a single record).
    index: int
    #: Dotted path to the field, e.g. ``address.zip`` or ``items[2].price``; ``""`` is the record.
    path: str
    #: What is wrong, naming what was expected and what was received.
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "path": self.path, "reason": self.reason}


class RecordValidationError(OnepipeError):
    """One or more records do not match the topic's schema; nothing was produced."""

    code = "invalid_records"
    status = 422
    error_code = 42210

    def __init__(self, errors: list[FieldError]) -> None:
        bad = sorted({e.index for e in errors})
        super().__init__(
            f"{len(bad)} record(s) do not match the schema (indexes {bad[:20]}); "
            "nothing was produced: fix them and send the request again"
        )
        self.errors = errors

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["errors"] = [e.to_json() for e in self.errors]
        return body


class CodecError(OnepipeError):
    """Bytes are not Confluent-framed Avro, or name a schema id nobody registered."""

    code = "codec_error"
    status = 422


class MergeError(OnepipeError):
    """A version's order field cannot be ranked (wrong type, missing)."""

    code = "merge_error"
    status = 422


class RegistryError(OnepipeError):
    """Base of the Confluent-compatible registry errors."""

    code = "registry_error"


class NotFoundError(RegistryError):
    """A subject, version, schema id or topic does not exist."""

    code = "not_found"
    status = 404

    def __init__(self, message: str, error_code: int) -> None:
        super().__init__(message)
        self.error_code = error_code


class InvalidVersionError(RegistryError):
    """A version that is neither a positive integer nor ``latest``."""

    code = "invalid_version"
    status = 422
    error_code = 42202


class InvalidSubjectError(RegistryError):
    """A subject name a registry may not create (control characters, path separators)."""

    code = "invalid_subject"
    status = 422
    error_code = 42208


class InvalidCompatibilityError(RegistryError):
    """A compatibility level that is not one of the seven Confluent modes."""

    code = "invalid_compatibility_level"
    status = 422
    error_code = 42203


class InvalidModeError(RegistryError):
    """A registry mode that is not one of those onepipe supports."""

    code = "invalid_mode"
    status = 422
    error_code = 42204


class OperationNotPermittedError(RegistryError):
    """A registry write the subject's state forbids (read-only mode, a topic's last version),
    or a new schema when every id a Confluent header can carry is taken."""

    code = "operation_not_permitted"
    status = 422
    error_code = 42205


class RegistryConflictError(RegistryError):
    """Another worker registered first; the write can be tried again."""

    code = "registry_conflict"
    status = 503
    error_code = 50003
    retriable = True


class RequestError(OnepipeError):
    """Malformed HTTP input: bad JSON, wrong content type, body too large."""

    code = "bad_request"

    def __init__(self, message: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(OnepipeError):
    """No valid API token came with a request that needs one (onepipe.app.auth).

    The message says what was missing or wrong and how to get a token; it never repeats
    the credentials received.
    """

    code = "unauthorized"
    status = 401
    error_code = 40101  # Confluent Schema Registry's code for a missing/wrong credential


class ForbiddenError(OnepipeError):
    """A valid token without the right to do this (publish to a topic, change the registry)."""

    code = "forbidden"
    status = 403
    error_code = 40301  # Confluent's "user is denied operation"


class RateLimitedError(OnepipeError):
    """A token sent more requests than its rate allows; retriable after ``retry_after``."""

    code = "rate_limited"
    status = 429
    error_code = 42901
    retriable = True

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BrokerError(OnepipeError):
    """Kafka did not accept a write or did not answer in time."""

    code = "broker_unavailable"
    status = 503
    error_code = 50301
    retriable = True
    #: A broker that is back reconnects within a second or two (client reconnect backoff).
    retry_after = 2


class LakeError(OnepipeError):
    """The lake (a local folder or S3) refused a read or write; retriable."""

    code = "lake_error"
    status = 503
    retriable = True


class LakeObjectNotFound(LakeError):
    """A lake path that does not exist."""

    code = "lake_not_found"
    status = 404
    retriable = False


class CatalogError(OnepipeError):
    """The clean lake's Iceberg catalog cannot be reached, or it disagrees with the lake
    (a table located in another lake); retriable when the database did not answer."""

    code = "catalog_error"
    status = 503


class CompactionError(OnepipeError):
    """The compactor cannot read its inputs or publish a clean version."""

    code = "compaction_error"
    status = 500


class CompactionConflict(CompactionError):
    """Another compactor committed a snapshot of the table first; re-plan and run again."""

    code = "compaction_conflict"
    status = 409
    retriable = True


class StateError(OnepipeError):
    """An agent's table state (onepipe.tables.state) cannot be used: a closed store, a key
    or value that cannot be stored, a window table used without a record time."""

    code = "state_error"
    status = 500


class StaleStateError(StateError):
    """A local state store claims more of its changelog than the changelog holds: it
    belongs to another log (a topic deleted and recreated, a broker that lost its memory)
    and is rebuilt from the changelog."""

    code = "stale_state"


class QueryError(OnepipeError):
    """DuckDB refused an ``onepipe sql`` query; the message is DuckDB's (it says where)."""

    code = "query_error"
    status = 400


class WarehouseError(OnepipeError):
    """A warehouse load failed (the database refused a row, a table, a connection); every
    day it had not committed keeps its previous rows. Retriable when the database did not
    answer."""

    code = "warehouse_error"
    status = 502
