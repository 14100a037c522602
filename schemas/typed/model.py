"""An Avro schema as a tree of resolved nodes: what fastavro's reader returns for each.

Named types are resolved (a reference to ``Address`` is the same :class:`RecordNode`
object as its definition), so a recursive record is a cycle of nodes; walkers keep a set
of what they are visiting. Logical types follow fastavro's readers exactly: a logical
type fastavro does not decode leaves the base type (``timestamp-nanos`` is a long).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from dataclasses import dataclass, field
from typing import Any

from onepipe.schemas.avro_schema import AvroSchema

__all__ = [
    "AVRO_NAME",
    "ArrayNode",
    "EnumNode",
    "FieldNode",
    "LeafNode",
    "MapNode",
    "Node",
    "RecordNode",
    "UnionNode",
    "resolve",
]

#: Dataclass field metadata key naming the Avro field when it differs from the Python
#: name (``class_`` for ``class``): ``field(metadata={AVRO_NAME: "class"})``.
AVRO_NAME = "avro_name"

#: (base type, logicalType) -> the Python type fastavro's reader returns.
LOGICAL: dict[tuple[str, str], type] = {
    ("long", "timestamp-millis"): datetime.datetime,
    ("long", "timestamp-micros"): datetime.datetime,
    ("long", "local-timestamp-millis"): datetime.datetime,
    ("long", "local-timestamp-micros"): datetime.datetime,
    ("int", "date"): datetime.date,
    ("int", "time-millis"): datetime.time,
    ("long", "time-micros"): datetime.time,
    ("bytes", "decimal"): decimal.Decimal,
    ("fixed", "decimal"): decimal.Decimal,
    ("string", "uuid"): uuid.UUID,
}
#: Avro primitive -> the Python type fastavro's reader returns.
PRIMITIVE: dict[str, type] = {
    "null": type(None),
    "boolean": bool,
    "int": int,
    "long": int,
    "float": float,
    "double": float,
    "bytes": bytes,
    "string": str,
}


@dataclass(eq=False, slots=True)
class LeafNode:
    """A primitive, a fixed or a logical type: one Python type comes back."""

    #: ``long``, ``timestamp-millis``, ``fixed Hash`` - for messages.
    label: str
    #: What fastavro's reader returns.
    python: type
    #: The Avro base type (``long`` for a timestamp, ``fixed`` for a fixed).
    base: str


@dataclass(eq=False, slots=True)
class EnumNode:
    full: str
    short: str
    symbols: tuple[str, ...]
    doc: str | None

    @property
    def label(self) -> str:
        return f"enum {self.short}"


@dataclass(eq=False, slots=True)
class ArrayNode:
    items: Node

    @property
    def label(self) -> str:
        return f"array<{self.items.label}>"


@dataclass(eq=False, slots=True)
class MapNode:
    values: Node

    @property
    def label(self) -> str:
        return f"map<{self.values.label}>"


@dataclass(eq=False, slots=True)
class FieldNode:
    name: str
    type: Node
    doc: str | None
    #: Whether the schema gives a default; ``default`` is its JSON value.
    has_default: bool
    default: Any


@dataclass(eq=False, slots=True)
class RecordNode:
    full: str
    short: str
    doc: str | None
    fields: list[FieldNode] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"record {self.short}"


@dataclass(eq=False, slots=True)
class UnionNode:
    branches: list[Node]

    @property
    def label(self) -> str:
        return "union[" + ", ".join(b.label for b in self.branches) + "]"

    @property
    def nullable(self) -> bool:
        return any(isinstance(b, LeafNode) and b.base == "null" for b in self.branches)

    @property
    def others(self) -> list[Node]:
        """The branches that are not null."""
        return [b for b in self.branches if not (isinstance(b, LeafNode) and b.base == "null")]


Node = LeafNode | EnumNode | ArrayNode | MapNode | RecordNode | UnionNode


def resolve(schema: AvroSchema | Any) -> Node:
    """The node tree of ``schema``, or of schema JSON data, already valid
    (:func:`~onepipe.schemas.avro_schema.parse_schema` checked it)."""
    data = schema.json if isinstance(schema, AvroSchema) else schema
    return _Resolver().node(data, "")


class _Resolver:
    def __init__(self) -> None:
        self.named: dict[str, Node] = {}

    def node(self, s: Any, ns: str) -> Node:
        if isinstance(s, list):
            return UnionNode([self.node(b, ns) for b in s])
        if isinstance(s, str):
            if s in PRIMITIVE:
                return LeafNode(s, PRIMITIVE[s], s)
            return self.lookup(s, ns)
        kind = s["type"]
        if isinstance(kind, list | dict) or kind not in PRIMITIVE and kind not in (
            "record", "error", "enum", "fixed", "array", "map"
        ):
            return self.node(kind, ns)  # {"type": "com.x.Name"} or {"type": {...}}
        if kind in ("record", "error"):
            full, short, space = self.name(s, ns)
            rec = RecordNode(full, short, s.get("doc"))
            self.named[full] = rec  # before the fields: they may refer to it
            rec.fields = [
                FieldNode(f["name"], self.node(f["type"], space), f.get("doc"),
                          "default" in f, f.get("default"))
                for f in s["fields"]
            ]
            return rec
        if kind == "enum":
            full, short, _ = self.name(s, ns)
            node: Node = EnumNode(full, short, tuple(s["symbols"]), s.get("doc"))
            self.named[full] = node
            return node
        if kind == "array":
            return ArrayNode(self.node(s["items"], ns))
        if kind == "map":
            return MapNode(self.node(s["values"], ns))
        logical = s.get("logicalType")
        python = LOGICAL.get((kind, logical)) if isinstance(logical, str) else None
        if kind == "fixed":
            full, short, _ = self.name(s, ns)
            label = str(logical) if python else f"fixed {short}"
            node = LeafNode(label, python or bytes, "fixed")
            self.named[full] = node
            return node
        if python is not None:
            return LeafNode(str(logical), python, kind)
        return LeafNode(kind, PRIMITIVE[kind], kind)

    def lookup(self, ref: str, ns: str) -> Node:
        for full in (f"{ns}.{ref}", ref) if ns and "." not in ref else (ref,):
            if full in self.named:
                return self.named[full]
        raise KeyError(ref)  # parse_schema refused undefined names already

    @staticmethod
    def name(s: dict[str, Any], ns: str) -> tuple[str, str, str]:
        """(full name, short name, namespace for nested types), per the Avro spec."""
        space, dot, short = str(s["name"]).rpartition(".")
        if not dot:
            given = s.get("namespace")
            space = ns if given is None else given
        return (f"{space}.{short}" if space else short), short, space
