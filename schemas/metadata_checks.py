"""Topic metadata against its value schema: which field types may play which role.

:func:`validate_against_schema` checks a topic's
:class:`~onepipe.schemas.metadata.TopicMetadata` (parsed and checked on its own by
:mod:`onepipe.schemas.metadata`) against the topic's value schema: every field it names
must be a top-level field of the schema, of a type fit for its role. Every error is a
:class:`MetadataError` whose ``field`` is the path of the offending value.

Why each type is or is not allowed:

- **Key fields** identify a record: the dedup table is keyed by them and the Kafka record
  key is their deterministic encoding, so all versions of a key share a partition. They
  must compare and encode exactly. ``float``/``double`` cannot: NaN never equals itself,
  ``0.0 == -0.0`` yet they encode differently, and a trip through JSON or a database can
  change the last bit. Unions (``["null", ...]``) cannot: null identifies nothing, and one
  value under two branches encodes differently (Avro writes the branch index). Records,
  arrays and maps cannot: map entries have no order; list the scalar parts instead.
- **The order field** is never wall-clock time (see :mod:`onepipe.schemas.metadata`):
  ``max`` takes a producer-incremented ``int``/``long`` (not nullable: null cannot be
  compared); ``vector_clock`` takes a ``map<long>`` (not nullable: a missing clock
  neither dominates nor is dominated; write an empty map).
- **partition_time** must place a record in one UTC day: ``kafka`` (record timestamp), a
  ``long`` that is ``timestamp-millis``/``timestamp-micros`` (plain: epoch millis), or an
  ``int`` ``date``. Strings and ``local-timestamp-*`` carry no zone, so two systems could
  pick different days. ``kafka`` means the record timestamp even if a field has that name.
- **sum** fields are non-nullable numbers (``int``, ``long``, ``float``, ``double``,
  ``decimal`` bytes/fixed). Float sums agree only if every system sums exactly
  (``math.fsum``): rounded addition depends on row order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.metadata import KAFKA_TIMESTAMP, TopicMetadata, check_relations, fail

__all__ = ["validate_against_schema"]

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
        fail("schema", f"the value schema of topic {meta.topic!r} must be an Avro record, "
                       f"so key and order can name its fields; got {_describe(data)}")
    check_relations(meta)
    names: dict[str, Any] = {}
    _collect(data, None, names)
    space = _define(data, None)[1]
    fields = {f["name"]: f["type"] for f in data.get("fields", [])}

    def typed(path: str, name: str, role: str) -> tuple[_Type, str]:
        if name not in fields:
            fail(path, f"{role} {name!r} is not a top-level field of the schema; "
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
            fail(f"key[{i}]", f"key field {desc} cannot be a key: {why}. Allowed: string, "
                              "int, long, boolean, bytes, enum, fixed (logical types too)")
    order = meta.order
    if order.field is not None:
        t, desc = typed("order.field", order.field, "order field")
        if order.rule == "max" and t.kind not in ("int", "long"):
            fail("order.field", f"rule 'max' needs an int or long version field (not "
                                f"nullable, not floating-point); got {desc}")
        values = (_resolve(t.node.get("values"), t.namespace, names).kind
                  if t.kind == "map" else None)
        if order.rule == "vector_clock" and values != "long":
            fail("order.field", "rule 'vector_clock' needs a field of type "
                                f'{{"type": "map", "values": "long"}} (not nullable); got {desc}')
    if meta.partition_time != KAFKA_TIMESTAMP:
        t, desc = typed("partition_time", meta.partition_time, "partition_time field")
        if t.logical not in _TIME_LOGICAL.get(t.kind, set()):
            fail("partition_time", f"must be 'kafka' or a long with logicalType "
                                   "timestamp-millis/timestamp-micros (a plain long is "
                                   f"epoch millis), or an int date; got {desc}")
    for i, name in enumerate(meta.checks.sums):
        t, desc = typed(f"checks.sum[{i}]", name, "sum field")
        numeric = t.kind in ("int", "long", "float", "double") or (
            t.kind in ("bytes", "fixed") and t.logical == "decimal")
        if not numeric:
            fail(f"checks.sum[{i}]", f"can only sum int, long, float, double or decimal "
                                     f"fields that are not nullable; got {desc}")
