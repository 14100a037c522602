"""One Confluent v3 ``ProduceRequest`` read into what onepipe sends, and its reply.

The request shape is Confluent's (kafka-rest ``entities/v3/ProduceRequest.java``, and the
``ProduceRequest`` schema of its ``api/v3/openapi.yaml``)::

    {"partition_id"?: int, "headers"?: [{"name": str, "value": base64 | null}],
     "key"?: {"type"?, "data"?}, "value": {"type"?, "subject"?, "subject_name_strategy"?,
     "schema_id"? | "schema_version"?, "data": ...}, "timestamp"?: ISO-8601}

What onepipe keeps of it: the value ``data`` is a record of the topic's registered Avro
schema, validated and encoded by the topic's writer exactly as ``POST /topics/{t}/records``
does; ``schema_id``/``schema_version`` pick the version of ``<topic>-value`` (neither: the
latest). The Kafka key is always derived from the unique key, so a caller's key is a
claim that is checked, in the form it was given (a JSON key: the key fields' values as
sent, one field's value alone or an object of them; BINARY: the exact key bytes in
base64; STRING: the one key field's string), and so is ``partition_id`` (the key's
partition). Headers go to Kafka as given, within the limits below.

Errors are :class:`~onepipe.schemas.errors.OnepipeError` subclasses; their ``to_json`` is
Confluent's ``{"error_code", "message"}`` plus onepipe's ``code``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from onepipe.schemas.errors import NotFoundError, RequestError
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import value_subject

__all__ = ["MAX_HEADER_BYTES", "MAX_HEADERS", "V3Record", "check_key", "parse_record",
           "response_body", "topic_not_found"]

_FIELDS = frozenset({"id", "partition_id", "headers", "key", "value", "timestamp"})
_DATA_FIELDS = frozenset({"type", "subject", "subject_name_strategy", "schema_id",
                          "schema_version", "schema", "data"})
#: Types a value may name: AVRO is what onepipe writes; JSON is read as the record's JSON.
_VALUE_TYPES = frozenset({"AVRO", "JSON"})
_KEY_TYPES = frozenset({"BINARY", "JSON", "STRING"})
#: At most this many headers a record, and this many bytes of names and values together.
MAX_HEADERS = 64
MAX_HEADER_BYTES = 64 * 1024
_MAX_HEADER_NAME = 255
#: Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: a header
#: name is text that ends up in logs and in HTTP-bridged consumers; CR/LF in it is an
#: injection attempt, not a name.
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NO_TOPIC_SUFFIX = "; register it with PUT /topics/{topic}/metadata"


@dataclass(frozen=True, slots=True)
class V3Record:
    """What one produce request asks for, checked for shape (not yet against the schema)."""

    #: The value's data: a record for the topic's schema, as JSON.
    data: Any
    #: Schema version of ``<topic>-value`` to write with, or ``"latest"``.
    version: int | str
    #: Kafka headers as (name, bytes or None).
    headers: list[tuple[str, bytes | None]] | None
    #: Record timestamp, epoch ms; None: the producer's clock.
    timestamp_ms: int | None
    #: The caller's key object (``{"type"?, "data"}``), or None.
    key: dict[str, Any] | None
    #: The partition the caller named, or None.
    partition_id: int | None


def topic_not_found(topic: str) -> NotFoundError:
    """Confluent's unknown topic: 404, error_code 40403 (kafka-rest's ``NotFound``)."""
    return NotFoundError(
        f"This server does not host this topic-partition: topic {topic!r} is not "
        f"registered{_NO_TOPIC_SUFFIX.format(topic=topic)}", 40403)


def _bad(message: str, status: int = 422, code: str = "invalid_produce_request") -> RequestError:
    return RequestError(message, status=status, code=code)


def parse_record(body: Any, topic: str, state: RegistryState) -> V3Record:
    """Read one ProduceRequest; 400 for a wrong shape, 422 for what onepipe refuses."""
    if not isinstance(body, dict):
        raise _bad(f"a produce request is a JSON object; got {type(body).__name__}", 400)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _bad(f"unrecognized field(s) {unknown} in the produce request; known: "
                   f"{sorted(_FIELDS)}", 400)
    partition = body.get("partition_id")
    if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool)):
        raise _bad(f"partition_id must be an integer; got {partition!r}", 400)
    if partition is not None and partition < 0:
        raise NotFoundError(f"Partition not found: partition_id {partition}", 40402)
    value = body.get("value")
    if not isinstance(value, dict) or value.get("data") is None:
        raise _bad(f"the value of a record of {topic!r} is required: "
                   '{"value": {"data": {...record...}}}; a null or missing value (a '
                   "tombstone) is not a record of a schema-enforced topic")
    key = body.get("key")
    if key is not None and not isinstance(key, dict):
        raise _bad(f"key must be an object {{\"type\"?, \"data\"}}; got {key!r:.80}", 400)
    return V3Record(
        data=value["data"],
        version=_version(value, topic, state),
        headers=_headers(body.get("headers")),
        timestamp_ms=_timestamp(body.get("timestamp")),
        key=key if key is not None and key.get("data") is not None else None,
        partition_id=partition,
    )


def _version(value: dict[str, Any], topic: str, state: RegistryState) -> int | str:
    unknown = sorted(set(value) - _DATA_FIELDS)
    if unknown:
        raise _bad(f"unrecognized field(s) {unknown} in value", 400)
    kind, subject = value.get("type"), value_subject(topic)
    if kind is not None and kind not in _VALUE_TYPES:
        raise _bad(f"value type {kind!r} is not accepted: {topic!r} is schema-enforced Avro; "
                   'send the record as JSON with no type (or "AVRO"), it is validated '
                   f"against {subject!r} and written as Confluent-framed Avro",
                   code="unsupported_format")
    schema_id, schema_version = value.get("schema_id"), value.get("schema_version")
    if kind == "JSON" and (schema_id is not None or schema_version is not None):
        raise _bad("'type=JSON' cannot be used with 'schema_id' or 'schema_version'", 400)
    if value.get("schema") is not None:
        raise _bad(f"a raw 'schema' is not accepted: onepipe registers schemas only through "
                   f"the registry API (compatibility checked); use schema_id or "
                   f"schema_version of {subject!r}", code="unsupported_schema")
    named = value.get("subject")
    if named is not None and named != subject:
        raise _bad(f"subject {named!r} is not the value subject of {topic!r}; records of "
                   f"{topic!r} use {subject!r}", code="invalid_subject")
    strategy = value.get("subject_name_strategy")
    if strategy is not None and strategy != "TOPIC_NAME":
        raise _bad(f"subject_name_strategy {strategy!r} is not supported: the value "
                   f"subject is always {subject!r} (TOPIC_NAME)", code="invalid_subject")
    if schema_id is not None and schema_version is not None:
        raise _bad("Only one of 'schema_id', 'schema_version' or 'schema' can be used.", 400)
    if schema_version is not None:
        if not isinstance(schema_version, int) or isinstance(schema_version, bool):
            raise _bad(f"schema_version must be an integer; got {schema_version!r}", 400)
        return "latest" if schema_version == -1 else schema_version
    if schema_id is None:
        return "latest"
    if not isinstance(schema_id, int) or isinstance(schema_id, bool):
        raise _bad(f"schema_id must be an integer; got {schema_id!r}", 400)
    ids = state.subjects.get(subject, [])
    if schema_id in ids:
        return ids.index(schema_id) + 1
    owners = sorted(s for s, _ in state.subjects_of_id(schema_id))
    where = (f"it is registered for {owners}" if owners else "no schema has that id")
    raise _bad(f"schema_id {schema_id} is not a version of {subject!r} ({where}); its ids "
               f"are {ids}", code="schema_not_of_topic")


def _headers(raw: Any) -> list[tuple[str, bytes | None]] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise _bad(f"headers must be a list of {{\"name\", \"value\"}}; got {raw!r:.80}", 400)
    if len(raw) > MAX_HEADERS:
        raise _bad(f"{len(raw)} headers on one record; the limit is {MAX_HEADERS}",
                   code="invalid_header")
    out: list[tuple[str, bytes | None]] = []
    total = 0
    for i, header in enumerate(raw):
        if not isinstance(header, dict) or not isinstance(header.get("name"), str):
            raise _bad(f"headers[{i}] must be {{\"name\": str, \"value\": base64}}; got "
                       f"{header!r:.80}", 400)
        name, value = header["name"], header.get("value")
        bad = _BAD_NAME.search(name)
        if not name or len(name) > _MAX_HEADER_NAME or bad:
            why = (f"control character {bad.group()!r}" if bad else
                   "empty" if not name else f"{len(name)} characters (limit {_MAX_HEADER_NAME})")
            raise _bad(f"headers[{i}] name {name[:40]!r} is not accepted: {why}",
                       code="invalid_header")
        decoded: bytes | None = None
        if value is not None:
            if not isinstance(value, str):
                raise _bad(f"headers[{i}] ({name!r}) value must be a base64 string or null", 400)
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise _bad(f"headers[{i}] ({name!r}) value is not base64: {exc}", 400) from exc
        total += len(name.encode()) + len(decoded or b"")
        if total > MAX_HEADER_BYTES:
            raise _bad(f"headers of one record exceed {MAX_HEADER_BYTES} bytes",
                       code="invalid_header")
        out.append((name, decoded))
    return out


#: How far ahead of the worker's clock a caller's timestamp may be.
_AHEAD_MS = 3_600_000


def _timestamp(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            ms = int(moment.timestamp() * 1000)
            # Kafka refuses negative timestamps, and one far ahead keeps its segment from
            # time-based retention for ever (Kafka's strictest default, after.max.ms, is an
            # hour); a broker that refuses one fails the whole batch it travels in.
            if 0 <= ms <= time.time() * 1000 + _AHEAD_MS:
                return ms
            raise _bad(f"timestamp {raw!r:.60} is before 1970 or more than an hour ahead "
                       "of this worker's clock; send the time the record happened", 422)
    raise _bad(f"timestamp must be an ISO-8601 date-time with an offset, e.g. "
               f"'2021-02-05T19:14:42Z'; got {raw!r:.60}", 400)


def check_key(record: V3Record, key_fields: tuple[str, ...], key: bytes | None,
              partition: int | None, topic: str) -> str | None:
    """Why the caller's key or partition_id disagrees with the derived ones; None if not.

    ``partition`` is the derived key's partition (None when no partition_id was given).
    """
    if record.partition_id is not None and record.partition_id != partition:
        return (f"partition_id {record.partition_id} is not the partition of this record's "
                f"unique key ({partition}): records of {topic!r} are partitioned by their "
                "key so every version of a key lands in one partition; omit partition_id")
    claim = record.key
    if claim is None:
        return None
    if not key_fields or key is None:
        return f"{topic!r} has no unique key: its records are not keyed; omit key"
    if claim.keys() - {"type", "data"}:
        return ("key schema fields are not accepted: the key is the unique key's Avro "
                "encoding, not Confluent-framed; send only type and data")
    kind, data = claim.get("type"), claim.get("data")
    values = {k: record.data.get(k) for k in key_fields} if isinstance(record.data, dict) else {}
    if kind == "BINARY":
        agrees = isinstance(data, str) and data == base64.b64encode(key).decode()
        form = "the base64 of the key bytes (the Avro encoding of the key fields)"
    elif kind == "STRING":
        agrees = len(key_fields) == 1 and data == values.get(key_fields[0])
        form = f"the value of key field {key_fields[0]!r}"
    elif kind in (None, "JSON"):
        agrees = data == values or (len(key_fields) == 1 and data == values[key_fields[0]])
        form = f"an object of the key fields {list(key_fields)} (or the one field's value)"
    else:
        return (f"key type {kind!r} is not accepted: keys are derived from the unique key "
                f"{list(key_fields)}; send BINARY, STRING or JSON, or omit the key")
    if agrees:
        return None
    return (f"key {data!r:.80} disagrees with the record's unique key "
            f"{ {k: values.get(k) for k in key_fields} !r:.120}; expected {form}, or omit key")


def response_body(cluster_id: str, topic: str, partition: int, offset: int,
                  timestamp_ms: int | None, key: bytes | None, key_type: str | None,
                  value_size: int, schema_id: int, version: int) -> dict[str, Any]:
    """Confluent's ``ProduceResponse`` (``error_code`` 200)."""
    body: dict[str, Any] = {
        "error_code": 200,
        "cluster_id": cluster_id,
        "topic_name": topic,
        "partition_id": partition,
        "offset": offset,
        "timestamp": _instant(timestamp_ms) if timestamp_ms is not None and
        timestamp_ms >= 0 else None,
    }
    if key is not None:
        body["key"] = {"type": key_type or "BINARY", "size": len(key)}
    body["value"] = {"type": "AVRO", "subject": value_subject(topic), "schema_id": schema_id,
                     "schema_version": version, "size": value_size}
    return body


def _instant(ms: int) -> str:
    """As Java's ``Instant.toString`` writes it (which Confluent's replies use)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    text = moment.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")
