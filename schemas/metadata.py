"""Topic metadata: the catalog entry of one topic, and the rules it must obey on its own.

A catalog file (``catalog/<topic>.yaml``) and the body of ``PUT /topics/{topic}/metadata``
carry the same fields; :func:`metadata_from_dict` reads them into a
:class:`TopicMetadata` and :func:`metadata_to_dict` writes the canonical JSON form back
(``metadata_from_dict(t, metadata_to_dict(m)) == m``). Which schema field types may serve
as key, order, partition time or sum is checked against the topic's value schema by
:func:`onepipe.schemas.metadata_checks.validate_against_schema`, which says why. Every
error is a :class:`MetadataError` whose ``field`` is the path of the offending value
(``order.rule``, ``key[1]``, ``archive.flush_bytes``) and whose message names it too.

Why each constraint exists:

- **Unknown keys are errors:** a typo (``partiton_time``) would otherwise fall back to a
  default silently. **Topic names** follow Kafka's rules (1-249 of ``[a-zA-Z0-9._-]``,
  not ``.``/``..``), so the error names the field instead of coming from the broker later.
- **Order is never wall-clock time.** Producer clocks skew and the Kafka timestamp is set
  by whichever client or broker wrote the record, so a clock-based winner could differ
  between the dedup agent, the compactor and each sink, and change on replay. ``max``
  takes a producer-incremented version field; ``first`` takes the partition's log order,
  which every reader sees alike; ``vector_clock`` takes a map of counters. The order field
  cannot be a key field (it would be constant within a key), and a topic without a key
  has nothing to merge: ``first``.
- **checks** must agree across systems: ``count_distinct`` counts keys, so needs a key.
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

from onepipe.schemas.compatibility import DEFAULT_COMPATIBILITY, Compatibility
from onepipe.schemas.errors import InvalidCompatibilityError, MetadataError
from onepipe.schemas.sizes import parse_byte_size

__all__ = ["KAFKA_TIMESTAMP", "SINK_KINDS", "ArchivePolicy", "Checks", "OrderRule", "OrderRuleName",
           "SinkKind", "SinkSpec", "TABLE_NAME",
           "TopicMetadata", "check_relations", "fail", "metadata_from_dict", "metadata_to_dict"]

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
# Environment variable names (POSIX portable) and table names every dialect takes unquoted.
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: Table names every dialect takes unquoted: sinks' tables, and the warehouse load's.
TABLE_NAME = _TABLE
SinkKind = Literal["sqlite", "postgres", "mysql"]
SINK_KINDS: tuple[str, ...] = get_args(SinkKind)
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
class SinkSpec:
    """One online store the topic's winners are written to (catalog ``sinks:`` entry)."""

    #: Unique within the topic; names the sink's consumer group and metrics.
    name: str
    #: ``sqlite``, ``postgres`` or ``mysql``.
    kind: SinkKind
    #: The environment variable holding the DSN (secrets never live in the catalog).
    dsn_env: str
    #: The table the rows go to (created if missing).
    table: str


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
    #: The online stores that receive the topic's winners.
    sinks: tuple[SinkSpec, ...] = ()


# ------------------------------------------------------------------------ parsing


def fail(path: str | None, message: str) -> NoReturn:
    """Raise the :class:`MetadataError` for ``path``; shared with the schema checks, so
    every metadata error names its field the same way."""
    raise MetadataError(f"{path}: {message}" if path else message, field=path)


def _show(value: object) -> str:
    text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= 80 else text[:77] + "..."


def _mapping(path: str, value: object, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    keys = ", ".join(allowed)
    if not isinstance(value, Mapping):
        fail(path, f"must be a mapping with keys {keys}; got {_show(value)}")
    for name in value:
        if name not in allowed:
            fail(f"{path}.{name}" if path else str(name),
                 f"unknown key {name!r}; allowed keys are {keys}")
    # An explicit null (YAML `checks:` with nothing after it) means "the default".
    return {name: item for name, item in value.items() if item is not None}


def _name(path: str, value: object, what: str) -> str:
    if not isinstance(value, str) or not _AVRO_NAME.fullmatch(value):
        fail(path, f"must be {what} (an Avro field name such as 'updated_at'); "
                   f"got {_show(value)}")
    return value


def _names(path: str, value: object, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    """A string (one name) or a list of distinct names matching ``pattern``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        fail(path, f"must be a list of {what}s; got {_show(value)}")
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, str) or not pattern.fullmatch(item):
            fail(f"{path}[{i}]", f"must be a {what} matching {pattern.pattern}; "
                                 f"got {_show(item)}")
        if item in seen:
            fail(f"{path}[{i}]", f"{item!r} is listed twice; list each {what} once")
        seen.add(item)
    return tuple(items)


def _int(path: str, value: object, low: int, high: int | None) -> int:
    allowed = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, f"must be {allowed}; got {_show(value)}")
    if value < low or (high is not None and value > high):
        fail(path, f"must be {allowed}; got {value}")
    return value


def _topic(path: str, value: object) -> str:
    if not isinstance(value, str) or not _TOPIC.fullmatch(value) or value in (".", ".."):
        size = f" ({len(value)} characters)" if isinstance(value, str) else ""
        fail(path, "a Kafka topic name is 1 to 249 characters of [a-zA-Z0-9._-], "
                   f"and not '.' or '..'; got {_show(value)}{size}")
    return value


def _order(value: object) -> OrderRule:
    data = _mapping("order", value, ("rule", "field"))
    rule = data.get("rule")
    if rule not in ORDER_RULES:
        fail("order.rule", f"must be one of {', '.join(ORDER_RULES)}; got {_show(rule)}")
    field = data.get("field")
    if field is None:
        return OrderRule(rule)
    return OrderRule(rule, _name("order.field", field, "the version field"))


def _flag(path: str, value: object, word: str) -> bool:
    if value == word or value is True:
        return True
    if value is False:
        return False
    fail(path, f"must be {word!r} (or true), or false to turn the check off; got {_show(value)}")


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
        fail("archive.enabled", f"must be true or false; got {_show(enabled)}")
    records = _int("archive.flush_records", data.get("flush_records", default.flush_records),
                   1, None)
    raw_bytes = data.get("flush_bytes", default.flush_bytes)
    try:
        size = parse_byte_size(raw_bytes)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"archive.flush_bytes: {exc}", field="archive.flush_bytes") from exc
    if not 1 <= size <= MAX_FLUSH_BYTES:
        fail("archive.flush_bytes", f"must be from 1 byte to 5GiB (one S3 PUT); "
                                    f"got {raw_bytes!r} = {size} bytes")
    seconds = data.get("flush_seconds", default.flush_seconds)
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or not 0 < seconds <= MAX_FLUSH_SECONDS):
        fail("archive.flush_seconds", "must be a number of seconds above 0 and at most "
                                      f"86400 (one day); got {_show(seconds)}")
    return ArchivePolicy(enabled, records, size, float(seconds))


def _sinks(value: object) -> tuple[SinkSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        fail("sinks", f"must be a list of {{name, kind, dsn_env, table}}; got {_show(value)}")
    out: list[SinkSpec] = []
    for i, item in enumerate(value):
        path = f"sinks[{i}]"
        data = _mapping(path, item, ("name", "kind", "dsn_env", "table"))
        missing = [k for k in ("name", "kind", "dsn_env", "table") if k not in data]
        if missing:
            fail(f"{path}.{missing[0]}", "is required: a sink names its name, kind "
                                         "(sqlite, postgres, mysql), dsn_env and table")
        name, kind, env, table = data["name"], data["kind"], data["dsn_env"], data["table"]
        if not isinstance(name, str) or not _SINK.fullmatch(name):
            fail(f"{path}.name", f"must match {_SINK.pattern}; got {_show(name)}")
        if any(s.name == name for s in out):
            fail(f"{path}.name", f"{name!r} is listed twice; sink names are unique per topic")
        if kind not in SINK_KINDS:
            fail(f"{path}.kind", f"must be one of {', '.join(SINK_KINDS)}; got {_show(kind)}")
        if not isinstance(env, str) or not _ENV.fullmatch(env):
            fail(f"{path}.dsn_env", "must name the environment variable holding the DSN "
                                    f"(e.g. WIDGETS_PG_DSN); got {_show(env)}")
        if not isinstance(table, str) or not _TABLE.fullmatch(table):
            fail(f"{path}.table", f"must be a table name matching {_TABLE.pattern}; "
                                  f"got {_show(table)}")
        if table.lower().startswith("_onepipe_"):
            fail(f"{path}.table", f"names starting with _onepipe_ are the sinks' own "
                                  f"tables; got {table!r}")
        out.append(SinkSpec(name, kind, env, table))
    return tuple(out)


def check_relations(meta: TopicMetadata) -> None:
    """Rules between fields that need no schema; shared by parsing and the schema checks
    (:mod:`onepipe.schemas.metadata_checks`), as a TopicMetadata built in code skips parsing."""
    order = meta.order
    if order.rule == "first" and order.field is not None:
        fail("order.field", f"rule 'first' takes no field; got {order.field!r}: remove it, "
                            "or use rule 'max' to order by that field")
    if order.rule != "first" and order.field is None:
        need = "an int/long version field" if order.rule == "max" else "a map<long> field"
        fail("order.field", f"rule {order.rule!r} needs a field naming {need}")
    if not meta.key and order.rule != "first":
        fail("order.rule", f"got {order.rule!r}, but the topic has no key, so there are no "
                           "versions to choose among; set `key` or use rule 'first'")
    if order.field is not None and order.field in meta.key:
        fail("order.field", f"{order.field!r} is a key field, so it is the same for every "
                            "version of a key and cannot order them; name another field")
    if meta.checks.count_distinct and not meta.key:
        fail("checks.count_distinct", "counts distinct keys, but the topic has no key; "
                                      "set `key` or remove count_distinct")
    if meta.sinks and not meta.key:
        fail("sinks", "a sink upserts one row per unique key, but the topic has no key; "
                      "set `key` or remove the sinks")


def metadata_from_dict(topic: str, data: Mapping[str, Any]) -> TopicMetadata:
    """Read a catalog entry (YAML or JSON data) for ``topic``; the ``schema`` key is ignored.

    Type-checks every field and the rules between fields, but not the schema: call
    :func:`onepipe.schemas.metadata_checks.validate_against_schema` for that. Raises
    :class:`MetadataError`.
    """
    _topic("topic", topic)
    if not isinstance(data, Mapping):
        fail(None, f"topic metadata must be a mapping; got {_show(data)}")
    data = _mapping("", data, _TOP_KEYS)
    if "topic" in data and data["topic"] != topic:
        fail("topic", f"the entry is for {data['topic']!r} but was given for topic {topic!r}")
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
        sinks=_sinks(data.get("sinks")),
    )
    check_relations(meta)
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
        "sinks": [{"name": s.name, "kind": s.kind, "dsn_env": s.dsn_env, "table": s.table}
                  for s in meta.sinks],
    }
