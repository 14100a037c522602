"""Avro types as Arrow types, and the few value conversions pyarrow cannot do itself.

Input values are what ``fastavro.schemaless_reader`` returns by default (no
``return_record_name``); most go to ``pa.array`` unchanged, so a column needs no Python
work per value unless a type below says "converted".

=========================  ====================================================
Avro                       Arrow
=========================  ====================================================
null                       null
boolean                    bool
int / long                 int32 / int64
float / double             float32 / float64
bytes / string             binary / string
fixed(n)                   fixed_size_binary(n)
enum                       dictionary<int32, string> as a column; string inside other types
date                       date32
time-millis / time-micros  time32[ms] / time64[us]
timestamp-millis/-micros   timestamp[ms|us, tz=UTC]
timestamp-nanos            timestamp[ns, tz=UTC] (fastavro 1.13 reads it as an int)
local-timestamp-*          timestamp[ms|us|ns] without time zone
decimal(p, s)              decimal128(p, s); decimal256 when p > 38; string past 76
uuid (on string)           string (fastavro reads ``uuid.UUID``; converted with ``str``)
record                     struct (a record without fields: null, Parquet has no empty struct)
array                      list<element>
map                        map<string, value>
[null, T]                  T, nullable
other unions               struct with one nullable child per branch (converted)
recursive reference        string holding the value as JSON (converted)
=========================  ====================================================

Enums inside structs, lists and maps are plain strings because Parquet writers trip over
nested dictionary arrays (pyarrow 26 fails on a struct of dictionaries that is all null);
Parquet dictionary-encodes repeated strings on its own anyway.

Nullability follows Avro inside a type (only a union with ``null`` makes a value
nullable); callers make top-level columns nullable themselves. Other logical types, and
logical types on the wrong base type, are ignored as the Avro spec says (fastavro does
the same), so the column takes the base type.

A general union becomes ``struct<branch: T, ...>`` where exactly one child is set (none
when the value is null). Branches are named after their type: the primitive type name
(``int``, ``string``, also for logical types: ``long`` for a timestamp), ``array``,
``map``, or the short name of a named type (the full name if two branches share a short
name). fastavro's default output does not say which branch a value was written with, so
the branch is the first, in declaration order, whose type accepts the Python value;
records (a dict with exactly their field names) are tried before maps. Two records with
the same field names, or ``int`` beside ``long``, are ambiguous: the first branch wins.
The archived value bytes stay the exact source either way.

Arrow types cannot refer to themselves, so a reference to a named type from inside its
own definition (a linked list's ``next``, a tree's ``children``) becomes a string column
holding that value as JSON (:func:`onepipe.sinks.formats.arrow_values.to_json`). Everything
outside the recursive reference stays typed. The per-value conversions and the tests that
choose a union branch live in :mod:`onepipe.sinks.formats.arrow_values`.
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import pyarrow as pa

from onepipe.schemas.errors import SchemaError
from onepipe.sinks.formats.arrow_values import (
    Accepts,
    Convert,
    accepts_aware,
    accepts_int,
    accepts_int_or_datetime,
    accepts_naive,
    decimal_text,
    is_type,
    list_convert,
    map_convert,
    struct_convert,
    to_json,
    to_str,
)

_DICTIONARY = pa.dictionary(pa.int32(), pa.string())
_DECIMAL128_MAX = 38
_DECIMAL256_MAX = 76


class Mapped(NamedTuple):
    """One Avro type as Arrow sees it."""

    #: The Arrow type.
    type: pa.DataType
    #: Whether the Avro type admits null (a union with ``null``).
    nullable: bool
    #: Per-value conversion, None when fastavro's values go to Arrow unchanged.
    convert: Convert | None
    #: Branch name when this type is one branch of a general union.
    label: str
    #: Whether a fastavro value belongs to this type (chooses a union branch).
    accepts: Accepts


def record_fields(schema: Any) -> list[tuple[pa.Field, Convert | None]]:
    """Arrow fields (all nullable) and converters of a record schema's top-level fields."""
    walker = _Walker()
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        raise SchemaError(f"expected an Avro record schema, got {str(schema)[:80]!r}")
    walker.stack.append(walker.define(schema, None))
    ns = walker.namespace_of(schema, None)
    result = []
    for f in schema["fields"]:
        m = walker.walk(f["type"], ns)
        arrow = _DICTIONARY if walker.is_enum(f["type"], ns) else m.type
        result.append((pa.field(f["name"], relax_nullability(arrow), nullable=True), m.convert))
    return result


def relax_nullability(arrow_type: pa.DataType) -> pa.DataType:
    """``arrow_type`` with every nested field nullable (map keys excepted: never null).

    Raw files declare nested fields nullable even where Avro cannot be null: a batch
    decoder (onepipe.sinks.formats.avro_batch) marks the children of a null struct null,
    and a column must not depend on which decoder made it.
    """
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, relax_nullability(f.type)) for f in arrow_type])
    if pa.types.is_map(arrow_type):
        return pa.map_(arrow_type.key_type, relax_nullability(arrow_type.item_type))
    if pa.types.is_list(arrow_type):
        return pa.list_(relax_nullability(arrow_type.value_type))
    if pa.types.is_large_list(arrow_type):
        return pa.large_list(relax_nullability(arrow_type.value_type))
    if pa.types.is_fixed_size_list(arrow_type):
        return pa.list_(relax_nullability(arrow_type.value_type), arrow_type.list_size)
    return arrow_type


# --- the walk -------------------------------------------------------------------------

_PRIMITIVES: dict[str, tuple[pa.DataType, Accepts]] = {
    "null": (pa.null(), lambda v: v is None),
    "boolean": (pa.bool_(), is_type(bool)),
    "int": (pa.int32(), accepts_int),
    "long": (pa.int64(), is_type(int)),
    "float": (pa.float32(), is_type(float)),
    "double": (pa.float64(), is_type(float)),
    "bytes": (pa.binary(), is_type(bytes)),
    "string": (pa.string(), is_type(str)),
}

# (base type, logicalType) -> (Arrow type, accepts, convert); decimal is handled apart.
_LOGICAL: dict[tuple[str, str], tuple[pa.DataType, Accepts, Convert | None]] = {
    ("int", "date"): (pa.date32(), is_type(date), None),
    ("int", "time-millis"): (pa.time32("ms"), is_type(time), None),
    ("long", "time-micros"): (pa.time64("us"), is_type(time), None),
    ("long", "timestamp-millis"): (pa.timestamp("ms", tz="UTC"), accepts_aware, None),
    ("long", "timestamp-micros"): (pa.timestamp("us", tz="UTC"), accepts_aware, None),
    ("long", "timestamp-nanos"): (pa.timestamp("ns", tz="UTC"), accepts_int_or_datetime, None),
    ("long", "local-timestamp-millis"): (pa.timestamp("ms"), accepts_naive, None),
    ("long", "local-timestamp-micros"): (pa.timestamp("us"), accepts_naive, None),
    ("long", "local-timestamp-nanos"): (pa.timestamp("ns"), accepts_int_or_datetime, None),
    ("string", "uuid"): (pa.string(), lambda v: isinstance(v, UUID | str), to_str),
}


class _Walker:
    """Walks Avro schema JSON, collecting named types under Avro's namespace rules."""

    def __init__(self) -> None:
        #: Full name -> (definition, namespace its insides resolve in).
        self.named: dict[str, tuple[dict[str, Any], str | None]] = {}
        #: Full names of the named types being defined around the current node.
        self.stack: list[str] = []

    @staticmethod
    def namespace_of(node: dict[str, Any], enclosing: str | None) -> str | None:
        name = node["name"]
        if "." in name:
            return str(name.rsplit(".", 1)[0])
        ns = node.get("namespace", enclosing)
        return ns or None  # "" is the null namespace

    def fullname(self, node: dict[str, Any], enclosing: str | None) -> str:
        name = str(node["name"])
        if "." in name:
            return name
        ns = self.namespace_of(node, enclosing)
        return f"{ns}.{name}" if ns else name

    def resolve(self, name: str, ns: str | None) -> str:
        for candidate in (f"{ns}.{name}" if ns and "." not in name else None, name):
            if candidate is not None and candidate in self.named:
                return candidate
        raise SchemaError(
            f"type {name!r} (namespace {ns!r}) is neither a primitive nor a named type "
            "defined before this point of the schema"
        )

    def is_enum(self, node: Any, ns: str | None) -> bool:
        """Whether a type is an enum or a union of null and an enum."""
        if isinstance(node, list):
            others = [b for b in node if b != "null" and b != {"type": "null"}]
            return len(others) == 1 and self.is_enum(others[0], ns)
        if isinstance(node, str) and node not in _PRIMITIVES:
            node = self.named[self.resolve(node, ns)][0]
        return isinstance(node, dict) and node.get("type") == "enum"

    def walk(self, node: Any, ns: str | None) -> Mapped:
        if isinstance(node, list):
            return self._union(node, ns)
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _primitive(node)
            return self._reference(self.resolve(node, ns))
        if not isinstance(node, dict):
            raise SchemaError(f"not an Avro type: {node!r}")
        kind = node.get("type")
        if kind in ("record", "error"):
            return self._record(node, ns)
        if kind == "enum":
            self.define(node, ns)
            symbols = frozenset(node["symbols"])
            return Mapped(pa.string(), False, None, str(node["name"]).rsplit(".", 1)[-1],
                          lambda v: type(v) is str and v in symbols)
        if kind == "fixed":
            self.define(node, ns)
            return self._fixed(node)
        if kind == "array":
            item = self.walk(node["items"], ns)
            conv = list_convert(item.convert) if item.convert else None
            return Mapped(pa.list_(pa.field("element", item.type, nullable=item.nullable)),
                          False, conv, "array", is_type(list))
        if kind == "map":
            value = self.walk(node["values"], ns)
            conv = map_convert(value.convert) if value.convert else None
            arrow = pa.map_(pa.string(), pa.field("value", value.type, nullable=value.nullable))
            return Mapped(arrow, False, conv, "map", is_type(dict))
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _logical(kind, node)
        return self.walk(kind, ns)  # {"type": "Name"} or {"type": {...}}

    def define(self, node: dict[str, Any], ns: str | None) -> str:
        full = self.fullname(node, ns)
        self.named[full] = (node, self.namespace_of(node, ns))
        return full

    def _record(self, node: dict[str, Any], ns: str | None) -> Mapped:
        full = self.define(node, ns)
        inner = self.namespace_of(node, ns)
        self.stack.append(full)
        try:
            children = [(f["name"], self.walk(f["type"], inner)) for f in node["fields"]]
        finally:
            self.stack.pop()
        names = frozenset(name for name, _ in children)
        label = full.rsplit(".", 1)[-1]

        def accepts(v: Any) -> bool:
            return type(v) is dict and v.keys() == names

        if not children:
            return Mapped(pa.null(), True, lambda v: None, label, accepts)
        arrow = pa.struct([pa.field(n, m.type, nullable=m.nullable) for n, m in children])
        convs = [(n, m.convert) for n, m in children]
        conv = struct_convert(convs) if any(c for _, c in convs) else None
        return Mapped(arrow, False, conv, label, accepts)

    def _fixed(self, node: dict[str, Any]) -> Mapped:
        label = str(node["name"]).rsplit(".", 1)[-1]
        if node.get("logicalType") == "decimal":
            return _decimal(node)._replace(label=label)
        size = int(node["size"])
        return Mapped(pa.binary(size), False, None, label,
                      lambda v: type(v) is bytes and len(v) == size)

    def _reference(self, full: str) -> Mapped:
        node, inner = self.named[full]
        if full not in self.stack:
            # Walking the definition again gives the same type; names inside it are
            # already known, so redefining them changes nothing.
            return self.walk(node, inner)
        # A type inside its own definition (only records can be): Arrow has no recursive
        # types, so the value is kept as JSON; the label and test match the record's.
        names = frozenset(f["name"] for f in node["fields"])
        return Mapped(pa.string(), False, to_json, full.rsplit(".", 1)[-1],
                      lambda v: type(v) is dict and v.keys() == names)

    def _union(self, branches: list[Any], ns: str | None) -> Mapped:
        others = [b for b in branches if b != "null" and b != {"type": "null"}]
        has_null = len(others) < len(branches)
        mapped = [self.walk(b, ns) for b in others]
        if not mapped:
            return _primitive("null")
        if len(mapped) == 1:
            return mapped[0]._replace(nullable=mapped[0].nullable or has_null)
        short = [m.label for m in mapped]
        labels = [m.label if short.count(m.label) == 1 else _full_label(b, m, ns, self)
                  for b, m in zip(others, mapped, strict=True)]
        arrow = pa.struct([pa.field(lab, m.type, nullable=True)
                           for lab, m in zip(labels, mapped, strict=True)])
        # Records before maps: a record-shaped dict belongs to the record branch.
        order = sorted(zip(labels, mapped, strict=True), key=lambda lm: lm[1].label == "map")
        choices = [(lab, m.accepts, m.convert) for lab, m in order]

        def convert(v: Any) -> Any:
            if v is None:
                return None
            for lab, accepts, conv in choices:
                if accepts(v):
                    return {lab: conv(v) if conv else v}
            raise ValueError(
                f"value {v!r:.80} of type {type(v).__name__} fits no branch of union "
                f"{labels}; was it decoded with this reader schema?"
            )

        return Mapped(arrow, has_null, convert, "union", lambda v: False)


def _full_label(branch: Any, mapped: Mapped, ns: str | None, walker: _Walker) -> str:
    if isinstance(branch, str):
        return branch if branch in _PRIMITIVES else walker.resolve(branch, ns)
    if isinstance(branch, dict) and "name" in branch:
        return walker.fullname(branch, ns)
    return mapped.label


def _primitive(name: str) -> Mapped:
    arrow, accepts = _PRIMITIVES[name]
    return Mapped(arrow, name == "null", None, name, accepts)


def _logical(base: str, node: dict[str, Any]) -> Mapped:
    logical = node.get("logicalType")
    if logical == "decimal" and base == "bytes":
        return _decimal(node)._replace(label=base)
    found = _LOGICAL.get((base, logical)) if isinstance(logical, str) else None
    if found is None:
        return _primitive(base)
    arrow, accepts, conv = found
    return Mapped(arrow, False, conv, base, accepts)


def _decimal(node: dict[str, Any]) -> Mapped:
    precision, scale = node.get("precision"), node.get("scale", 0)
    accepts: Accepts = lambda v: isinstance(v, Decimal)  # noqa: E731
    if isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision:
        if 1 <= precision <= _DECIMAL128_MAX:
            return Mapped(pa.decimal128(precision, scale), False, None, "bytes", accepts)
        if precision <= _DECIMAL256_MAX:
            return Mapped(pa.decimal256(precision, scale), False, None, "bytes", accepts)
    # Wider than Arrow's widest decimal (or not a valid decimal): exact text instead.
    return Mapped(pa.string(), False, decimal_text, "bytes", accepts)
