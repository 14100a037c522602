"""A batch of Avro values read into Python columns, each value exactly what fastavro's
reader returns for it.

fastavro's ``schemaless_reader`` costs ~3.6 µs a 200-byte record; the developers' agents
(onepipe.agents.framework.processor) read a partition batch instead in one polars call
(onepipe.schemas.avro_container: length-prefixed values, a misaligned batch refused) and
turn the columns they need into fastavro's values here: ~0.4 µs a record for 4 plain
columns of bench/agents.py's 200-byte records (fastavro: ~3 µs for the whole record).

Exactness: the container is the writer schema with every ``logicalType`` removed and
every enum read as its symbol's index (onepipe.schemas.avro_container ``enums_as_ints``),
so polars hands back only primitives, bytes, lists and struct dicts; each logical type is
then decoded by fastavro's own logical reader (``fastavro.read.LOGICAL_READERS``, the
functions its reader calls) and each enum index becomes its symbol. Supported shapes
(:func:`column_plan` returns None for any other schema, and the caller reads value by
value): a record whose fields are, recursively, primitives but ``null``, fixed, enums,
logical types, arrays, records and two-branch unions of ``null`` and one of those, each
named type but enums used once. Not supported (polars refuses or panics): maps, ``null``
fields, other unions, a second use (a reference) of a fixed or a record (so no recursive
record), a fixed of size 0.

As in onepipe.tables.dedup.decode, values only come here read as their writer wrote them
(polars applies no schema resolution), and on malformed bytes no Avro writer produces
the two readers may disagree; every value a writer produced reads identically (tested).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastavro.read import LOGICAL_READERS

from onepipe.schemas.avro_container import container, read_block
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.errors import SchemaError

__all__ = ["ColumnPlan", "column_plan", "read_columns"]

log = logging.getLogger(__name__)

#: Turns one value as polars returns it into fastavro's value.
Conv = Callable[[Any], Any]
_PLAIN = frozenset({"boolean", "int", "long", "float", "double", "bytes", "string"})


class Unsupported(Exception):  # noqa: N818 - internal signal, never leaves this module
    """A schema shape this module does not read (the caller reads value by value)."""


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How values of one writer schema are read into columns."""

    #: The writer schema.
    writer: AvroSchema
    #: Top-level field names, in order.
    names: tuple[str, ...]
    #: Per field: the function from polars' value to fastavro's, or None (the same).
    convert: dict[str, Conv | None]
    #: Per field of a primitive type: its base and logical type (``("long",
    #: "timestamp-millis")``), else None; so a caller can read partition times from the
    #: raw column without building datetimes.
    kinds: dict[str, tuple[str, str | None] | None]
    header: bytes
    sync: bytes


@functools.lru_cache(maxsize=256)
def column_plan(writer: AvroSchema) -> ColumnPlan | None:
    """How to read ``writer``'s values in columns; None when its shape is not supported."""
    if not writer.is_record:
        return None
    walker = _Walker()
    try:
        raw = walker.node(writer.json, writer.json.get("namespace", ""))
        stripped = parse_schema(raw)
    except (Unsupported, SchemaError) as exc:
        log.debug("schema %s is read value by value: %s", writer.identity_hash, exc)
        return None
    fields = writer.json["fields"]
    names = tuple(f["name"] for f in fields)
    header, sync = container(stripped, framed=True, enums_as_ints=True)
    return ColumnPlan(writer, names, dict(zip(names, walker.top, strict=True)),
                      {f["name"]: _kind(f["type"]) for f in fields}, header, sync)


def read_columns(plan: ColumnPlan, values: Sequence[bytes], names: Sequence[str] | None,
                 raw: Sequence[str] = ()
                 ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]] | None:
    """Columns of framed ``values`` written with the plan's schema: ``names`` (all when
    None) as fastavro's values, and ``raw`` as polars reads them (logical types as their
    base, enums as indexes); None when polars refuses the batch or a value does not
    convert (the caller then reads value by value, which isolates the bad one)."""
    wanted = plan.names if names is None else tuple(names)
    frame = read_block(plan.header, plan.sync, values, list(dict.fromkeys((*wanted, *raw))))
    if frame is None:
        return None
    columns: dict[str, list[Any]] = {}
    raws: dict[str, list[Any]] = {}
    try:
        for name in raw:
            raws[name] = frame[name].to_list()
        for name in wanted:
            column = raws[name] if name in raws else frame[name].to_list()
            conv = plan.convert[name]
            columns[name] = column if conv is None else list(map(conv, column))
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
        log.debug("batch of %d values does not convert (%r)", len(values), exc)
        return None
    return columns, raws


def _kind(node: Any) -> tuple[str, str | None] | None:
    """(base, logicalType) of a field of a primitive type; None for anything else."""
    if isinstance(node, str):
        return (node, None) if node in _PLAIN else None
    if isinstance(node, dict) and node.get("type") in _PLAIN:
        logical = node.get("logicalType")
        return node["type"], logical if isinstance(logical, str) else None
    return None


class _Walker:
    """One walk of a schema: the container's schema (logical types removed) and, for each
    node, the converter from polars' value to fastavro's."""

    def __init__(self) -> None:
        #: Full name -> converter of a named type defined so far (records: once built).
        self.named: dict[str, Conv | None] = {}
        #: Full names of the records being defined, and of the enums defined so far.
        self.open: set[str] = set()
        self.enums: set[str] = set()
        #: The converters of the top-level record's fields.
        self.top: list[Conv | None] = []
        self._convs: list[Conv | None] = []

    def node(self, s: Any, ns: str) -> Any:
        """``s`` for the container; its converter is left in ``self._convs[-1]``."""
        conv: Conv | None = None
        if isinstance(s, list):
            out: Any = self._union(s, ns)
            return out
        if isinstance(s, str):
            if s == "null":
                raise Unsupported("a null field (polars cannot read it)")
            if s in _PLAIN:
                self._convs.append(None)
                return s
            full = self._full(s, ns)
            if full not in self.enums:
                raise Unsupported(f"a reference to {s} (polars reads only enum references)")
            self._convs.append(self.named[full])
            return s  # the container turns enum references into int
        kind = s["type"]
        if not isinstance(kind, str) or kind not in (*_PLAIN, "record", "error", "enum",
                                                     "fixed", "array", "map"):
            return self.node(kind, ns)
        if kind in ("record", "error"):
            return self._record(s, ns)
        if kind == "enum":
            full, _ = self._name(s, ns)
            symbols = tuple(s["symbols"])
            conv = self.named[full] = symbols.__getitem__
            self.enums.add(full)
            self._convs.append(conv)
            return s
        if kind == "array":
            items = self.node(s["items"], ns)
            item = self._convs.pop()
            self._convs.append(None if item is None else lambda v: [item(x) for x in v])
            return {**s, "items": items}
        if kind == "map":
            raise Unsupported("a map (polars cannot read it)")
        out = {k: v for k, v in s.items() if k != "logicalType"}
        logical = s.get("logicalType")
        reader = LOGICAL_READERS.get(f"{kind}-{logical}") if isinstance(logical, str) else None
        if reader is not None:
            conv = functools.partial(_logical, reader, s)
        if kind == "fixed":
            if not s["size"]:
                raise Unsupported("a fixed of size 0 (polars panics)")
            full, _ = self._name(s, ns)
            self.named[full] = conv
        self._convs.append(conv)
        return out

    def _union(self, branches: list[Any], ns: str) -> Any:
        others = [b for b in branches if b != "null"]
        if len(branches) != 2 or len(others) != 1:
            raise Unsupported(f"union {branches} (only null and one other type)")
        other = self.node(others[0], ns)
        if isinstance(others[0], list):
            raise Unsupported("a union in a union")
        conv = self._convs.pop()
        self._convs.append(None if conv is None else lambda v: None if v is None else conv(v))
        return [other if b != "null" else b for b in branches]

    def _record(self, s: dict[str, Any], ns: str) -> Any:
        full, space = self._name(s, ns)
        if not s["fields"]:
            raise Unsupported(f"record {full} has no fields")
        top = not self.open  # the top-level record: no record is being defined
        self.open.add(full)
        fields, pairs = [], []
        for f in s["fields"]:
            fields.append({k: v for k, v in f.items() if k != "default"}
                          | {"type": self.node(f["type"], space)})
            pairs.append((f["name"], self._convs.pop()))
        self.open.discard(full)
        conv: Conv | None = None
        if any(c is not None for _, c in pairs):
            conv = functools.partial(_rebuild, tuple(pairs))
        if top:
            self.top = [c for _, c in pairs]
        self.named[full] = conv
        self._convs.append(conv)
        return {**s, "fields": fields}

    @staticmethod
    def _name(s: dict[str, Any], ns: str) -> tuple[str, str]:
        """(full name, namespace of what it contains), per the Avro spec."""
        space, dot, short = str(s["name"]).rpartition(".")
        if not dot:
            given = s.get("namespace")
            space = ns if given is None else given
        return (f"{space}.{short}" if space else short), space

    def _full(self, ref: str, ns: str) -> str:
        for full in (f"{ns}.{ref}", ref) if ns and "." not in ref else (ref,):
            if full in self.named or full in self.open:
                return full
        raise Unsupported(f"unknown name {ref}")


def _logical(reader: Callable[[Any, Any, Any], Any], schema: dict[str, Any], value: Any
             ) -> Any:
    return reader(value, schema, None)


def _rebuild(pairs: tuple[tuple[str, Conv | None], ...], value: dict[str, Any]
             ) -> dict[str, Any]:
    return {name: value[name] if conv is None else conv(value[name]) for name, conv in pairs}
