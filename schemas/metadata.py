"""Topic metadata: the catalog entry of one topic, and the rules it must obey.

A catalog file (``catalog/<topic>.yaml``) and the body of ``PUT /topics/{topic}/metadata``
carry the same fields; :func:`metadata_from_dict` reads them into a
:class:`TopicMetadata`, :func:`validate_against_schema` checks them against the topic's
value schema, and :func:`metadata_to_dict` writes the canonical JSON form back
(``metadata_from_dict(t, metadata_to_dict(m)) == m``). Every error is a
:class:`MetadataError` whose ``field`` is the path of the offending value
(``order.rule``, ``key[1]``, ``archive.flush_bytes``) and whose message names it too.

Why each constraint exists:

- **Unknown keys are errors:** a typo (``partiton_time``) would otherwise fall back to a
  default silently. **Topic names** follow Kafka's rules (1-249 of ``[a-zA-Z0-9._-]``,
  not ``.``/``..``), so the error names the field instead of coming from the broker later.
- **Key fields** identify a record: the dedup table is keyed by them and the Kafka record
  key is their deterministic encoding, so all versions of a key share a partition. They
  must compare and encode exactly. ``float``/``double`` cannot: NaN never equals itself,
  ``0.0 == -0.0`` yet they encode differently, and a trip through JSON or a database can
  change the last bit. Unions (``["null", ...]``) cannot: null identifies nothing, and one
  value under two branches encodes differently (Avro writes the branch index). Records,
  arrays and maps cannot: map entries have no order; list the scalar parts instead.
- **Order is never wall-clock time.** Producer clocks skew and the Kafka timestamp is set
  by whichever client or broker wrote the record, so a clock-based winner could differ
  between the dedup agent, the compactor and each sink, and change on replay. ``max``
  takes a producer-incremented ``int``/``long`` (not nullable: null cannot be compared);
  ``first`` takes the partition's log order, which every reader sees alike;
  ``vector_clock`` takes a ``map<long>`` (not nullable: a missing clock neither dominates
  nor is dominated; write an empty map). The order field cannot be a key field (it would
  be constant within a key), and a topic without a key has nothing to merge: ``first``.
- **partition_time** must place a record in one UTC day: ``kafka`` (record timestamp), a
  ``long`` that is ``timestamp-millis``/``timestamp-micros`` (plain: epoch millis), or an
  ``int`` ``date``. Strings and ``local-timestamp-*`` carry no zone, so two systems could
  pick different days. ``kafka`` means the record timestamp even if a field has that name.
- **checks** must agree across systems: ``count_distinct`` counts keys, so needs a key;
  ``sum`` fields are non-nullable numbers (``int``, ``long``, ``float``, ``double``,
  ``decimal`` bytes/fixed). Float sums agree only if every system sums exactly
  (``math.fsum``): rounded addition depends on row order.
- **Limits:** at most 10000 partitions (each has its own dedup state and lake folders);
  ``flush_bytes`` at most 5 GiB, as a Parquet file is buffered in memory and written in
  one S3 PUT (limit 5 GiB); ``flush_seconds`` at most a day, as verification is per day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, get_args

import orjson

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.compatibility import DEFAULT_COMPATIBILITY, Compatibility
from onepipe.schemas.errors import InvalidCompatibilityError, MetadataError
from onepipe.schemas.sizes import parse_byte_size

__all__ = ["KAFKA_TIMESTAMP", "ArchivePolicy", "Checks", "OrderRule", "OrderRuleName",
           "TopicMetadata", "metadata_from_dict", "metadata_to_dict", "validate_against_schema"]

OrderRuleName = Literal["max", "first", "vector_clock"]
ORDER_RULES: tuple[str, ...] = get_args(OrderRuleName)
#: ``partition_time`` value meaning "the Kafka record timestamp".
KAFKA_TIMESTAMP = "kafka"
MAX_PARTITIONS = 10_000
MAX_FLUSH_BYTES = 5 * 1024**3
MAX_FLUSH_SECONDS = 86_400.0

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Sink names end up in consumer-group ids and metric labels, so they keep to a safe set.
_SINK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TOP_KEYS = ("topic", "schema", "compatibility", "partitions", "key", "order",
             "partition_time", "checks", "archive", "sinks")


@dataclass(frozen=True, slots=True)
class OrderRule:
    """How to choose among versions of the same key; never wall-clock time."""

    #: ``max``: highest ``field`` wins; ``first``: first in log order wins;
    #: ``vector_clock``: the version whose clock dominates wins (ties broken deterministically).
    rule: OrderRuleName = "first"
    #: The version field: ``int``/``long`` for ``max``, ``map<long>`` for ``vector_clock``,
    #: ``None`` for ``first``.
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Checks:
    """Aggregates that must agree between the stream, the lake and every sink."""

    #: Count the distinct keys (catalog value ``count_distinct: key``); needs a key.
    count_distinct: bool = False
    #: Numeric fields whose totals are compared (catalog value ``sum: [...]``).
    sums: tuple[str, ...] = ()
    #: Compare an order-independent checksum of whole rows (catalog ``checksum: row``).
    row_checksum: bool = True


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    """When the archive agent closes a Parquet file in ``raw/``; whichever limit comes first."""

    #: Whether the topic is archived to the lake at all.
    enabled: bool = True
    #: Close a file after this many records.
    flush_records: int = 10_000
    #: Close a file once its buffered records reach this many bytes.
    flush_bytes: int = 64 * 1024**2
    #: Close a file this long after its first record, so quiet topics still land.
    flush_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    """One topic's catalog entry, without its schema (registered separately)."""

    #: The Kafka topic name.
    topic: str
    #: Top-level fields that together identify a record; ``()`` means no unique key.
    key: tuple[str, ...] = ()
    #: How to choose among versions of one key.
    order: OrderRule = OrderRule()
    #: ``"kafka"`` (record timestamp) or the field that places a record in a day/hour.
    partition_time: str = KAFKA_TIMESTAMP
    #: Number of Kafka partitions.
    partitions: int = 1
    #: One of the seven Confluent compatibility modes, upper case.
    compatibility: str = DEFAULT_COMPATIBILITY.value
    #: Aggregates compared across systems.
    checks: Checks = Checks()
    #: Archive flush limits.
    archive: ArchivePolicy = ArchivePolicy()
    #: Names of the online sinks that subscribe to the topic's unique stream.
    sinks: tuple[str, ...] = ()


# ------------------------------------------------------------------------ parsing


def _fail(path: str | None, message: str) -> NoReturn:
    raise MetadataError(f"{path}: {message}" if path else message, field=path)


def _show(value: object) -> str:
    text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."


def _mapping(path: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    keys = ", ".join(allowed)
    if not isinstance(value, Mapping):
        _fail(path, f"must be a mapping with keys {keys}; got {_show(value)}")
    for name in value:
        if name not in allowed:
            _fail(f"{path}.{name}" if path else str(name),
                  f"unknown key {name!r}; allowed keys are {keys}")
    # An explicit null (YAML `checks:` with nothing after it) means "the default".
    return {name: item for name, item in value.items() if item is not None}


def _name(path: str, value: object, what: str) -> str:
    if not isinstance(value, str) or not _AVRO_NAME.fullmatch(value):
        _fail(path, f"must be {what} (an Avro field name such as 'updated_at'); "
                    f"got {_show(value)}")
    return value


def _names(path: str, value: object, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    """A string (one name) or a list of distinct names matching ``pattern``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        _fail(path, f"must be a list of {what}s; got {_show(value)}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, str) or not pattern.fullmatch(item):
            _fail(f"{path}[{i}]", f"must be a {what} matching {pattern.pattern}; "
                                  f"got {_show(item)}")
        if item in seen:
            _fail(f"{path}[{i}]", f"{item!r} is listed twice; list each {what} once")
        seen.add(item)
    return tuple(items)


def _int(path: str, value: object, low: int, high: int | None) -> int:
    allowed = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"must be {allowed}; got {_show(value)}")
    if value < low or (high is not None and value > high):
        _fail(path, f"must be {allowed}; got {value}")
    return value


def _topic(path: str, value: object) -> str:
    if not isinstance(value, str) or not _TOPIC.fullmatch(value) or value in (".", ".."):
        size = f" ({len(value)} characters)" if isinstance(value, str) else ""
        _fail(path, "a Kafka topic name is 1 to 249 characters of [a-zA-Z0-9._-], "
                    f"and not '.' or '..'; got {_show(value)}{size}")
    return value


def _order(value: object) -> OrderRule:
    data = _mapping("order", value, ("rule", "field"))
    rule = data.get("rule")
    if rule not in ORDER_RULES:
        _fail("order.rule", f"must be one of {', '.join(ORDER_RULES)}; got {_show(rule)}")
    field = data.get("field")
    if field is None:
        return OrderRule(rule)
    return OrderRule(rule, _name("order.field", field, "the version field"))


def _flag(path: str, value: object, word: str) -> bool:
    if value == word or value is True:
        return True
    if value is False:
        return False
    _fail(path, f"must be {word!r} (or true), or false to turn the check off; got {_show(value)}")


def _checks(value: object, key: tuple[str, ...]) -> Checks:
    if value is None:
        return Checks(count_distinct=bool(key))
    data = _mapping("checks", value, ("count_distinct", "sum", "checksum"))
    raw_count = data.get("count_distinct")
    return Checks(
        count_distinct=bool(key) if raw_count is None
        else _flag("checks.count_distinct", raw_count, "key"),
        sums=_names("checks.sum", data.get("sum", []), _AVRO_NAME, "numeric field name"),
        row_checksum=_flag("checks.checksum", data.get("checksum", "row"), "row"),
    )


def _archive(value: object) -> ArchivePolicy:
    if value is None:
        return ArchivePolicy()
    data = _mapping("archive", value,
                    ("enabled", "flush_records", "flush_bytes", "flush_seconds"))
    default = ArchivePolicy()
    enabled = data.get("enabled", default.enabled)
    if not isinstance(enabled, bool):
        _fail("archive.enabled", f"must be true or false; got {_show(enabled)}")
    records = _int("archive.flush_records", data.get("flush_records", default.flush_records),
                   1, None)
    raw_bytes = data.get("flush_bytes", default.flush_bytes)
    try:
        size = parse_byte_size(raw_bytes)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"archive.flush_bytes: {exc}", field="archive.flush_bytes") from exc
    if not 1 <= size <= MAX_FLUSH_BYTES:
        _fail("archive.flush_bytes", f"must be from 1 byte to 5GiB (one S3 PUT); "
                                     f"got {raw_bytes!r} = {size} bytes")
    seconds = data.get("flush_seconds", default.flush_seconds)
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or not 0 < seconds <= MAX_FLUSH_SECONDS):
        _fail("archive.flush_seconds", "must be a number of seconds above 0 and at most "
                                       f"86400 (one day); got {_show(seconds)}")
    return ArchivePolicy(enabled, records, size, float(seconds))


def _check_relations(meta: TopicMetadata) -> None:
    """Rules between fields that need no schema; shared by parsing and validation."""
    order = meta.order
    if order.rule == "first" and order.field is not None:
        _fail("order.field", f"rule 'first' takes no field; got {order.field!r}: remove it, "
                             "or use rule 'max' to order by that field")
    if order.rule != "first" and order.field is None:
        need = "an int/long version field" if order.rule == "max" else "a map<long> field"
        _fail("order.field", f"rule {order.rule!r} needs a field naming {need}")
    if not meta.key and order.rule != "first":
        _fail("order.rule", f"got {order.rule!r}, but the topic has no key, so there are no "
                            "versions to choose among; set `key` or use rule 'first'")
    if order.field is not None and order.field in meta.key:
        _fail("order.field", f"{order.field!r} is a key field, so it is the same for every "
                             "version of a key and cannot order them; name another field")
    if meta.checks.count_distinct and not meta.key:
        _fail("checks.count_distinct", "counts distinct keys, but the topic has no key; "
                                       "set `key` or remove count_distinct")


def metadata_from_dict(topic: str, data: Mapping[str, Any]) -> TopicMetadata:
    """Read a catalog entry (YAML or JSON data) for ``topic``; the ``schema`` key is ignored.

    Type-checks every field and the rules between fields, but not the schema: call
    :func:`validate_against_schema` for that. Raises :class:`MetadataError`.
    """
    _topic("topic", topic)
    if not isinstance(data, Mapping):
        _fail(None, f"topic metadata must be a mapping; got {_show(data)}")
    data = _mapping("", data, _TOP_KEYS)
    if "topic" in data and data["topic"] != topic:
        _fail("topic", f"the entry is for {data['topic']!r} but was given for topic {topic!r}")
    raw_compat = data.get("compatibility")
    try:
        compat = DEFAULT_COMPATIBILITY if raw_compat is None else Compatibility.parse(raw_compat)
    except InvalidCompatibilityError as exc:
        raise MetadataError(f"compatibility: {exc.message}", field="compatibility") from exc
    key = _names("key", data.get("key", []), _AVRO_NAME, "key field name")
    partition_time = data.get("partition_time", KAFKA_TIMESTAMP)
    if partition_time != KAFKA_TIMESTAMP:
        partition_time = _name("partition_time", partition_time,
                               "'kafka' or a timestamp field")
    order = data.get("order")
    meta = TopicMetadata(
        topic=topic,
        key=key,
        order=OrderRule() if order is None else _order(order),
        partition_time=partition_time,
        partitions=_int("partitions", data.get("partitions", 1), 1, MAX_PARTITIONS),
        compatibility=compat.value,
        checks=_checks(data.get("checks"), key),
        archive=_archive(data.get("archive")),
        sinks=_names("sinks", data.get("sinks", []), _SINK, "sink name"),
    )
    _check_relations(meta)
    return meta


def metadata_to_dict(meta: TopicMetadata) -> dict[str, Any]:
    """The canonical JSON form (what ``GET /topics/{topic}/metadata`` returns)."""
    order: dict[str, Any] = {"rule": meta.order.rule}
    if meta.order.field is not None:
        order["field"] = meta.order.field
    return {
        "topic": meta.topic,
        "compatibility": meta.compatibility,
        "partitions": meta.partitions,
        "key": list(meta.key),
        "order": order,
        "partition_time": meta.partition_time,
        # Explicit false, not omission: the defaults are "on", so an omitted check
        # would come back switched on.
        "checks": {
            "count_distinct": "key" if meta.checks.count_distinct else False,
            "sum": list(meta.checks.sums),
            "checksum": "row" if meta.checks.row_checksum else False,
        },
        "archive": {
            "enabled": meta.archive.enabled,
            "flush_records": meta.archive.flush_records,
            "flush_bytes": meta.archive.flush_bytes,
            "flush_seconds": meta.archive.flush_seconds,
        },
        "sinks": list(meta.sinks),
    }


# --------------------------------------------------------------- schema checks

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_KEY_KINDS = frozenset({"string", "int", "long", "boolean", "bytes", "enum", "fixed"})
_KEY_REFUSED = {
    "float": "floating-point equality is not exact (NaN, -0.0, rounding)",
    "double": "floating-point equality is not exact (NaN, -0.0, rounding)",
    "union": "a nullable or multi-type key cannot identify a record",
    "null": "null is the same for every record",
}
_TIME_LOGICAL: dict[str, set[str | None]] = {
    "long": {None, "timestamp-millis", "timestamp-micros"}, "int": {"date"}}


@dataclass(frozen=True, slots=True)
class _Type:
    """A field type with name references resolved."""

    #: Primitive name, or record/enum/fixed/array/map/union.
    kind: str
    #: The ``logicalType`` annotation, if any.
    logical: str | None
    #: The resolved JSON node, for nested parts (map values).
    node: Any
    #: The namespace in effect where the node appears, for its nested references.
    namespace: str | None


def _define(node: Mapping[str, Any], enclosing: str | None) -> tuple[str, str | None]:
    """Full name of a named type and the namespace it sets for what it contains."""
    name = str(node["name"])
    if "." in name:
        return name, name.rpartition(".")[0]
    space = node.get("namespace", enclosing) or None
    return (f"{space}.{name}" if space else name), space


def _collect(node: Any, space: str | None, names: dict[str, Any]) -> None:
    """Index every named type in ``node`` by full name (Avro namespace rules)."""
    if isinstance(node, list):
        for branch in node:
            _collect(branch, space, names)
        return
    if not isinstance(node, Mapping):
        return
    kind = node.get("type")
    if kind in _NAMED and isinstance(node.get("name"), str):
        full, space = _define(node, space)
        names[full] = node
        for field in node.get("fields") or []:
            if isinstance(field, Mapping):
                _collect(field.get("type"), space, names)
    elif kind == "array":
        _collect(node.get("items"), space, names)
    elif kind == "map":
        _collect(node.get("values"), space, names)
    elif isinstance(kind, Mapping | list):
        _collect(kind, space, names)


def _resolve(node: Any, space: str | None, names: Mapping[str, Any]) -> _Type:
    if isinstance(node, list):
        return _Type("union", None, node, space)
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return _Type(node, None, node, space)
        # A reference: relative to the enclosing namespace, then the null namespace
        # (as Apache Avro's Java parser looks names up).
        full = node if "." in node or not space else f"{space}.{node}"
        target = names.get(full, names.get(node))
        if target is None:
            return _Type(f"unknown type {node!r}", None, node, space)
        return _resolve(target, space, names)
    if isinstance(node, Mapping):
        kind = node.get("type")
        logical = node.get("logicalType")
        logical = logical if isinstance(logical, str) else None
        if kind in _PRIMITIVES or kind in ("array", "map"):
            return _Type(str(kind), logical, node, space)
        if kind in _NAMED:
            return _Type("record" if kind == "error" else str(kind), logical, node, space)
        return _resolve(kind, space, names)
    return _Type(f"invalid type {node!r}", None, node, space)


def _describe(node: Any) -> str:
    text = orjson.dumps(node).decode()
    return text if len(text) <= 100 else text[:97] + "..."


def validate_against_schema(meta: TopicMetadata, schema: AvroSchema) -> None:
    """Check ``meta`` against the topic's value schema; raise :class:`MetadataError`.

    Every named field must be a top-level field of a type fit for its role (see the
    module docstring for why each type is or is not allowed).
    """
    data = schema.json
    if not isinstance(data, Mapping) or data.get("type") != "record":
        _fail("schema", f"the value schema of topic {meta.topic!r} must be an Avro record, "
                        f"so key and order can name its fields; got {_describe(data)}")
    _check_relations(meta)
    names: dict[str, Any] = {}
    _collect(data, None, names)
    space = _define(data, None)[1]
    fields = {f["name"]: f["type"] for f in data.get("fields", [])}

    def typed(path: str, name: str, role: str) -> tuple[_Type, str]:
        if name not in fields:
            _fail(path, f"{role} {name!r} is not a top-level field of the schema; "
                        f"its fields are {', '.join(fields) or '(none)'}")
        t = _resolve(fields[name], space, names)
        declared = _describe(fields[name])
        shown = declared if t.kind in declared else f"{declared} (a {t.kind})"
        return t, f"{name!r} of type {shown}"

    for i, name in enumerate(meta.key):
        t, desc = typed(f"key[{i}]", name, "key field")
        if t.kind not in _KEY_KINDS:
            why = _KEY_REFUSED.get(t.kind, "a nested value has no single exact identity; "
                                           "list its scalar parts as key fields instead")
            _fail(f"key[{i}]", f"key field {desc} cannot be a key: {why}. Allowed: string, "
                               "int, long, boolean, bytes, enum, fixed (logical types too)")
    order = meta.order
    if order.field is not None:
        t, desc = typed("order.field", order.field, "order field")
        if order.rule == "max" and t.kind not in ("int", "long"):
            _fail("order.field", f"rule 'max' needs an int or long version field (not "
                                 f"nullable, not floating-point); got {desc}")
        values = (_resolve(t.node.get("values"), t.namespace, names).kind
                  if t.kind == "map" else None)
        if order.rule == "vector_clock" and values != "long":
            _fail("order.field", "rule 'vector_clock' needs a field of type "
                                 f'{{"type": "map", "values": "long"}} (not nullable); got {desc}')
    if meta.partition_time != KAFKA_TIMESTAMP:
        t, desc = typed("partition_time", meta.partition_time, "partition_time field")
        if t.logical not in _TIME_LOGICAL.get(t.kind, set()):
            _fail("partition_time", f"must be 'kafka' or a long with logicalType "
                                    "timestamp-millis/timestamp-micros (a plain long is "
                                    f"epoch millis), or an int date; got {desc}")
    for i, name in enumerate(meta.checks.sums):
        t, desc = typed(f"checks.sum[{i}]", name, "sum field")
        numeric = t.kind in ("int", "long", "float", "double") or (
            t.kind in ("bytes", "fixed") and t.logical == "decimal")
        if not numeric:
            _fail(f"checks.sum[{i}]", f"can only sum int, long, float, double or decimal "
                                      f"fields that are not nullable; got {desc}")
