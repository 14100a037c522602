"""Compiling one Avro schema into converters: records, enums, fixed, arrays, maps, unions.

The structural half of :mod:`onepipe.schemas.validation` (whose entry points cache and
run what is compiled here); the leaf types come from :mod:`onepipe.schemas.logical_types`.
Each schema node becomes one closure, so a record is a chain of direct calls; a record's
fast pass is generated code, its common field values checked inline
(:mod:`onepipe.schemas.validation_fast`).

A converter takes ``(value, errs)`` (see :mod:`onepipe.schemas.refusals`). With ``errs``
None it is the fast pass: no messages, no paths, ``BAD`` at the first problem, and
subclasses of JSON types are simply refused. With a list (the second pass, only for a
record the fast pass refused), containers normalise subclasses, keep going past errors,
and append their path segment to the errors their children added.

Datum form: records are dicts in field order, bytes and fixed are ``bytes``, decimals are
``Decimal`` with exactly ``scale`` digits after the point, timestamps, dates and times are
ints (exact, and cheaper than datetimes), uuids are lowercase strings. A union value is
bare unless another branch of its union accepts the same Python type in fastavro's branch
guessing (two records, a record and a map, an int and a double): then it is fastavro's
tuple notation ``(name, value)``, so the branch written is the branch validated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

from onepipe.schemas.errors import SchemaError
from onepipe.schemas.logical_types import PRIMITIVES, Leaf, binary, logical, utf8
from onepipe.schemas.refusals import BAD, Conv, Errs, describe, listing, quote, refuse
from onepipe.schemas.validation_fast import record_fast

__all__ = ["Compiler", "norm"]

_JSON_TYPES = (type(None), bool, int, float, str, list, dict)


class _Node(NamedTuple):
    """One compiled schema node and what a union needs to know about it."""

    conv: Conv
    #: What the node expects, for messages: ``int (32-bit)``.
    label: str
    #: Short type name for a union's list of branches: ``int``, ``Address``.
    brief: str
    #: fastavro's name for the branch in tuple notation: a full name or a type name.
    tag: str
    #: Keys that name this branch in Avro's wrapped union form.
    keys: tuple[str, ...]
    #: JSON input types the node can convert.
    accepts: frozenset[type]
    #: Family of the datum's Python type, as fastavro's union guessing sees it.
    kind: str
    #: Converter for a field default of this type (a union's default is for its first branch).
    default: Conv


def _mark(errs: Errs, start: int, segment: Any) -> None:
    """Prefix the errors a child added since ``start`` with the child's path segment."""
    if len(errs) == start:  # a child refused without saying why: a bug, but never silent
        errs.append(["does not match the schema"])
    for entry in errs[start:]:
        entry.append(segment)


def norm(value: Any) -> Any:
    """A subclass of a JSON type (from Python callers) as the plain type; others unchanged."""
    if type(value) in _JSON_TYPES:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):  # bool is exact, so already returned
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _node(leaf: Leaf, keys: tuple[str, ...] = ()) -> _Node:
    conv, label, brief, tag, accepts, kind, default = leaf
    return _Node(conv, label, brief, tag, keys or (tag,), accepts, kind, default or conv)


_PRIMITIVES = {name: _node(leaf) for name, leaf in PRIMITIVES.items()}
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})


class Compiler:
    """Walks one schema's JSON; ``named`` maps full names to nodes, records before their fields."""

    def __init__(self) -> None:
        self.named: dict[str, _Node] = {}

    def node(self, s: Any, ns: str) -> _Node:
        if isinstance(s, list):
            return _union([self.node(branch, ns) for branch in s])
        if isinstance(s, str):
            return _PRIMITIVES.get(s) or self.lookup(s, ns)
        kind = s["type"]
        if not isinstance(kind, str) or kind not in _COMPLEX and kind not in _PRIMITIVES:
            return self.node(kind, ns)  # {"type": "com.x.Name"} or {"type": {...}}
        if kind in ("record", "error"):
            return self.record(s, ns)
        if kind == "enum":
            return self.enum(s, ns)
        if kind == "fixed":
            return self.fixed(s, ns)
        if kind == "array":
            items = self.node(s["items"], ns).conv
            return _node(Leaf(_array(items), "array", "array", "array", frozenset((list,)), "list"))
        if kind == "map":
            values = self.node(s["values"], ns).conv
            label = "map (a JSON object)"
            return _node(Leaf(_map(values), label, "map", "map", frozenset((dict,)), "dict"))
        leaf = logical(s, kind)
        return _node(leaf) if leaf else _PRIMITIVES[kind]

    def lookup(self, ref: str, ns: str) -> _Node:
        for full in (f"{ns}.{ref}", ref) if ns and "." not in ref else (ref,):
            if full in self.named:
                return self.named[full]
        raise SchemaError(f"unknown type name {ref!r}: define a named type before using it")

    def name(self, s: dict[str, Any], ns: str) -> tuple[str, str, str]:
        """(full name, short name, namespace for nested types), per the Avro spec."""
        space, dot, short = str(s["name"]).rpartition(".")
        if not dot:
            given = s.get("namespace")
            space = ns if given is None else given
        return (f"{space}.{short}" if space else short), short, space

    def enum(self, s: dict[str, Any], ns: str) -> _Node:
        full, short, _ = self.name(s, ns)
        symbols = frozenset(s["symbols"])
        label = f"enum {short} ({listing(s['symbols'])})"

        def conv(v: Any, errs: Errs | None) -> Any:
            if type(v) is str and v in symbols:
                return v
            if errs is not None and type(v) is str:
                errs.append([f"{quote(v)} is not a symbol of {label}"])
                return BAD
            return refuse(errs, label, v)

        leaf = Leaf(conv, label, short, full, frozenset((str,)), "text")
        self.named[full] = node = _node(leaf, (full, short))
        return node

    def fixed(self, s: dict[str, Any], ns: str) -> _Node:
        full, short, _ = self.name(s, ns)
        leaf = logical({**s, "name": full}, "fixed")
        if leaf is None:
            label = f"fixed {short} ({s['size']} bytes as text of code points up to U+00FF)"
            leaf = Leaf(binary(label, s["size"]), label, short, full, frozenset((str,)), "binary")
        self.named[full] = node = _node(leaf._replace(brief=short), (full, short))
        return node

    def record(self, s: dict[str, Any], ns: str) -> _Node:
        full, short, space = self.name(s, ns)
        label = f"record {short} (a JSON object)"
        # Filled in below, after the record is registered, so fields can refer to it:
        # the closures read these variables when called, not when defined.
        fields: tuple[tuple[str, Conv, Conv | None, Any], ...] = ()
        names: frozenset[str] = frozenset()
        known = ""

        fast: Callable[[dict[Any, Any]], Any]

        def conv(v: Any, errs: Errs | None) -> Any:
            if type(v) is not dict:
                return refuse(errs, label, v)
            if errs is None:
                return fast(v)
            return explain(v, errs)

        def explain(v: dict[Any, Any], errs: Errs) -> Any:
            out, ok = {}, True
            for name, fconv, dconv, default in fields:
                start = len(errs)
                if name in v:
                    x = fconv(norm(v[name]), errs)
                elif dconv is None:
                    x = BAD
                    errs.append(["required field missing (no default)"])
                else:
                    x = dconv(default, None)
                    if x is BAD:
                        errs.append(
                            [
                                f"missing, and the schema default {describe(default)} "
                                "does not fit the field type: fix the schema"
                            ]
                        )
                if x is BAD:
                    ok = False
                    _mark(errs, start, name)
                else:
                    out[name] = x
            for key in v:
                if key not in names:
                    ok = False
                    shown = quote(key) if isinstance(key, str) else describe(key)
                    errs.append([f"unknown field {shown} (schema fields: {known})"])
            return out if ok else BAD

        leaf = Leaf(conv, label, short, full, frozenset((dict,)), "dict")
        self.named[full] = node = _node(leaf, (full, short))
        fields = tuple(self.field(f, space) for f in s["fields"])
        names = frozenset(f[0] for f in fields)
        known = listing(f[0] for f in fields)
        fast = record_fast(fields, names, [f["type"] for f in s["fields"]])
        return node

    def field(self, f: dict[str, Any], ns: str) -> tuple[str, Conv, Conv | None, Any]:
        node = self.node(f["type"], ns)
        if "default" in f:
            return f["name"], node.conv, node.default, f["default"]
        return f["name"], node.conv, None, None


def _array(item: Conv) -> Conv:
    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) is not list:
            return refuse(errs, "array", v)
        if errs is None:
            out = [item(x, None) for x in v]
            return BAD if BAD in out else out
        out, ok = [], True
        for i, x in enumerate(v):
            start = len(errs)
            d = item(norm(x), errs)
            if d is BAD:
                ok = False
                _mark(errs, start, i)
            out.append(d)
        return out if ok else BAD

    return conv


def _map(value: Conv) -> Conv:
    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) is not dict:
            return refuse(errs, "map (a JSON object)", v)
        out, ok = {}, True
        for k, x in v.items():
            if type(k) is not str or not (k.isascii() or utf8(k)):
                if errs is None:
                    return BAD
                ok = False
                errs.append([f"map keys must be UTF-8 text, got {describe(k)}"])
                continue
            start = len(errs) if errs is not None else 0
            d = value(x if errs is None else norm(x), errs)
            if d is BAD:
                if errs is None:
                    return BAD
                ok = False
                _mark(errs, start, (k,))
            out[k] = d
        return out if ok else BAD

    return conv


def _union(branches: list[_Node]) -> _Node:
    counts = Counter(b.kind for b in branches)
    # (converter, tag): tag is None when fastavro's guessing cannot pick another branch.
    pairs = [(b.conv, b.tag if counts[b.kind] > 1 else None) for b in branches]
    by_key: dict[str, tuple[Conv, str | None]] = {}
    for b, pair in zip(branches, pairs, strict=True):
        for key in b.keys:
            by_key.setdefault(key, pair)
    by_type = {
        t: [p for b, p in zip(branches, pairs, strict=True) if t in b.accepts] for t in _JSON_TYPES
    }
    choices = listing(b.brief for b in branches)

    def fast(v: Any) -> Any:
        if type(v) is dict and len(v) == 1:  # maybe the wrapped form {"type name": value}
            for key, inner in v.items():
                pair = by_key.get(key)
                if pair is not None:
                    d = pair[0](inner, None)
                    if d is not BAD:
                        return d if pair[1] is None else (pair[1], d)
        for bconv, tag in by_type.get(type(v), []):
            d = bconv(v, None)
            if d is not BAD:
                return d if tag is None else (tag, d)
        return BAD

    def conv(v: Any, errs: Errs | None) -> Any:
        if errs is None:
            return fast(v)
        v = norm(v)
        d = fast(v)
        if d is not BAD:
            return d
        # The wrapped form, or the one branch that takes this JSON type, explains best.
        target, inner = None, v
        if type(v) is dict and len(v) == 1:
            key, inner = next(iter(v.items()))
            target = by_key.get(key) if isinstance(key, str) else None
        if target is None:
            inner = v
            candidates = by_type.get(type(v), [])
            target = candidates[0] if len(candidates) == 1 else None
        if target is None:
            errs.append([f"expected one of ({choices}), got {describe(v)}"])
            return BAD
        d = target[0](norm(inner), errs)
        return d if d is BAD or target[1] is None else (target[1], d)

    root = conv
    if len(branches) == 2 and counts["null"] == 1:
        other = pairs[1][0] if branches[0].kind == "null" else pairs[0][0]

        def optional(v: Any, errs: Errs | None) -> Any:  # ["null", T]: most optional fields
            if v is None:
                return None
            if errs is None and not (type(v) is dict and len(v) == 1):
                return other(v, None)
            return conv(v, errs)

        root = optional
    first, first_tag = pairs[0]

    def default(v: Any, errs: Errs | None) -> Any:
        # The spec ties a union default to the first branch; Apache Avro 1.12 accepts any.
        d = first(v, None)
        if d is BAD:
            return conv(v, errs)
        return d if first_tag is None else (first_tag, d)

    accepts = frozenset().union(*(b.accepts for b in branches))
    return _Node(root, f"one of ({choices})", "union", "union", (), accepts, "union", default)
