"""Bounds on a schema a caller may register: size, nesting, fields, and valid names.

Every registered schema is replayed by every worker at every start, parsed by Apache
Avro's recursive parser and compared by its compatibility checker, whose cost grows with
the square of the field count. A schema that is merely *accepted* once can therefore
break every worker later: arrays nested 321 deep parsed on the registry's request path
but overflowed the deeper stack of a worker's start (``RecursionError``, restart after
restart), and 20,000 fields held the event loop for seconds. So a schema is measured
before either parser sees it, by an iterative walk that cannot itself overflow, and
refused with the limit it broke and the setting that moves it.

The limits apply at the door (the registry API, the catalog). The registry's replay
applies only :data:`REPLAY_LIMITS`, fixed and generous: a schema stored under a looser
limit keeps loading after a limit is lowered, and one that no worker can parse safely
(stored before these limits existed) is skipped by every worker alike, whatever the depth
of its stack, so the workers' states stay identical.

Names follow the Avro specification (``[A-Za-z_][A-Za-z0-9_]*``, dotted for full names
and namespaces), which Apache Avro's parser checks for named types but not for field
names: ``a\\0b`` reached the registry, and a field name becomes a Parquet column, a SQL
column and a dataclass attribute downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from onepipe.schemas.errors import SchemaError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FULL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True, slots=True)
class SchemaLimits:
    """What one schema may be; the defaults fit real schemas with room to spare."""

    #: Bytes of the schema's JSON text. The registry log holds it in one Kafka record,
    #: and Kafka's default message limit is 1 MB.
    max_bytes: int = 512 * 1024
    #: Levels of JSON nesting in the schema document (a record's field of an array of
    #: records is 6). Bounds the recursion of every parser and checker that reads it.
    max_depth: int = 64
    #: Fields over all records of the schema, plus the branches of every union beyond
    #: its first two (``["null", T]`` costs nothing; a union of 100 records costs 98).
    #: Avro's compatibility check costs the square of it: ~0.25 s at 2,000 fields, ~1.5 s
    #: at 5,000; a union checked against a union, the square of its width (measured here).
    max_fields: int = 2_000
    #: Branches of one union. A union checked against a union costs more than the square
    #: of its width: 250 branches took 1.2 s, 1,000 took 26 s (measured here); real
    #: unions hold a handful.
    max_union: int = 100
    #: Refuse names the Avro specification does not allow (off for stored schemas).
    check_names: bool = True

    def check(self, text: str, data: Any) -> None:
        """Raise :class:`SchemaError` naming the first limit ``data`` breaks."""
        size = len(text.encode())
        if size > self.max_bytes:
            raise SchemaError(
                f"schema is {size} bytes; the limit is {self.max_bytes} "
                "(ONEPIPE_MAX_SCHEMA_BYTES)")
        fields = self._union(data) if isinstance(data, list) else 0  # a union schema
        stack: list[tuple[Any, int]] = [(data, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > self.max_depth:
                raise SchemaError(
                    f"schema nests deeper than {self.max_depth} levels "
                    "(ONEPIPE_MAX_SCHEMA_DEPTH); flatten it or name the inner types")
            if isinstance(node, list):
                stack.extend((item, depth + 1) for item in node)
                continue
            if not isinstance(node, dict):
                continue
            if self.check_names:
                _check_names(node)
            members = len(node["fields"]) if (isinstance(node.get("fields"), list)
                                              and node.get("type") in ("record", "error")) else 0
            for union in _unions(node):
                members += self._union(union)
            fields += members
            if fields > self.max_fields:
                raise SchemaError(
                    f"schema has more than {self.max_fields} fields and wide-union branches "
                    "(ONEPIPE_MAX_SCHEMA_FIELDS); split the record")
            # Every value is walked, defaults included: a default nested 10,000 deep
            # overflows a parser as surely as a type does.
            stack.extend((value, depth + 1) for value in node.values()
                         if isinstance(value, dict | list))

    def _union(self, branches: list[Any]) -> int:
        """What a union counts toward :attr:`max_fields`."""
        if len(branches) > self.max_union:
            raise SchemaError(
                f"a union of {len(branches)} branches; the limit is {self.max_union} "
                "(ONEPIPE_MAX_SCHEMA_UNION); use a record with optional fields instead")
        return max(len(branches) - 2, 0)


def _unions(node: dict[str, Any]) -> list[list[Any]]:
    """The unions written in one JSON object of a schema: a list where a type goes."""
    return [node[key] for key in ("type", "items", "values") if isinstance(node.get(key), list)]


def _check_names(node: dict[str, Any]) -> None:
    """The Avro names in one JSON object of a schema, per the specification."""
    kind = node.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        _name(node.get("name"), f"{kind} name", full=True)
        if node.get("namespace") not in (None, ""):
            _name(node["namespace"], f"namespace of {kind} {node.get('name')!r}", full=True)
        for alias in _aliases(node):
            _name(alias, f"alias of {kind} {node.get('name')!r}", full=True)
    fields = node.get("fields")
    if kind in ("record", "error") and isinstance(fields, list):
        for field in fields:
            if isinstance(field, dict):
                _name(field.get("name"), f"field name in record {node.get('name')!r}",
                      full=False)
                for alias in _aliases(field):
                    _name(alias, f"alias of field {field.get('name')!r}", full=False)


def _aliases(node: dict[str, Any]) -> list[Any]:
    aliases = node.get("aliases")
    return aliases if isinstance(aliases, list) else []


def _name(value: Any, what: str, *, full: bool) -> None:
    # Not a string: left to the parsers, which say what they expected.
    if isinstance(value, str) and not (_FULL_NAME if full else _NAME).fullmatch(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise SchemaError(
            f"{what} {shown!r} is not a valid Avro name: it must start with a letter or "
            "'_' and hold only letters, digits and '_'" + (", dot-separated" if full else ""))


#: What every worker's replay of the registry log accepts: the same on every worker and
#: safe on any stack a worker runs it on (Avro's parser takes ~3 frames a level: 100
#: levels leave 700 of Python's 1,000 to the caller). The door's depth may not exceed it.
REPLAY_LIMITS = SchemaLimits(max_bytes=64 * 1024 * 1024, max_depth=100,
                             max_fields=1_000_000, max_union=1_000_000, check_names=False)
