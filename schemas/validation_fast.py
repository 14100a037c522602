"""A record converter's fast pass as generated code: one function per record type.

Part of :mod:`onepipe.schemas.validation_compile`, which calls :func:`record_fast` once a
record's fields are compiled. The function takes a dict (the caller checked the type) and
returns what the closure loop it replaces returned: the datum, a dict in field order, or
``BAD`` at the first problem. Fields of the commonest types are checked inline for their
commonest values, each the value that field's own converter would return unchanged: ASCII
text for ``string``, an int in range for ``int``, ``long`` and the logical types counted
in them (timestamps, dates, times), a finite float for
``double``, a bool, a symbol of an inline enum, ``None`` for a ``["null", T]`` union. Any
other value and any other type goes through the field's compiled converter (or its
default, when missing), exactly as before.

Why: the loop cost ~200 ns a field in tuple unpacking, calls and checks; this runs on every
field of every record the produce endpoint takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from onepipe.schemas.logical_types import (
    MAX_DAYS,
    MAX_MICROS,
    MAX_MILLIS,
    MIN_DAYS,
    MIN_MICROS,
    MIN_MILLIS,
    PRIMITIVES,
)
from onepipe.schemas.refusals import BAD, Conv

__all__ = ["LOGICAL_RANGES", "Field", "record_fast"]

#: (name, converter, default converter or None, default) as the compiler builds them.
Field = tuple[str, Conv, Conv | None, Any]

_MISSING: Any = object()
_PRIMITIVE_CONVS = {leaf.conv: name for name, leaf in PRIMITIVES.items()}
#: Values a primitive's converter returns unchanged, as a condition on ``x``.
_ACCEPT = {
    "string": "type({x}) is str and {x}.isascii()",
    "int": "type({x}) is int and -2147483648 <= {x} <= 2147483647",
    "long": "type({x}) is int and -9223372036854775808 <= {x} <= 9223372036854775807",
    "double": "type({x}) is float and -1.7976931348623157e308 <= {x} <= 1.7976931348623157e308",
    "boolean": "{x} is True or {x} is False",
    "null": "{x} is None",
}

#: (type, logicalType) -> the counts its converter takes as they are (what fastavro's
#: readers can turn back into datetimes, dates and times: see logical_types).
LOGICAL_RANGES = {
    ("long", "timestamp-millis"): (MIN_MILLIS, MAX_MILLIS),
    ("long", "local-timestamp-millis"): (MIN_MILLIS, MAX_MILLIS),
    ("long", "timestamp-micros"): (MIN_MICROS, MAX_MICROS),
    ("long", "local-timestamp-micros"): (MIN_MICROS, MAX_MICROS),
    ("int", "date"): (MIN_DAYS, MAX_DAYS),
    ("int", "time-millis"): (0, 86_400_000 - 1),
    ("long", "time-micros"): (0, 86_400_000_000 - 1),
}


def record_fast(fields: Sequence[Field], names: frozenset[str],
                types: Sequence[Any]) -> Callable[[dict[Any, Any]], Any]:
    """The fast pass for a record of ``fields``; ``types`` holds each field's schema JSON."""
    scope: dict[str, Any] = {"BAD": BAD, "_names": names, "_MISSING": _MISSING}
    lines = ["def fast(v):", "    if not v.keys() <= _names: return BAD", "    get = v.get"]
    for i, ((name, conv, dconv, default), schema) in enumerate(zip(fields, types, strict=True)):
        scope[f"_f{i}"] = _slow(conv, dconv, default)
        accept = _accepts(conv, schema, scope, f"_s{i}", "x")
        lines.append(f"    x = get({name!r}, _MISSING)")
        item = _array_item(schema, scope, i)
        if item is not None:  # a list of such values: a copy, as the array converter makes
            lines += ["    if type(x) is list:",
                      "        for e in x:",
                      f"            if not ({item}): x{i} = _f{i}(x); break",
                      f"        else: x{i} = x[:]",
                      f"    else: x{i} = _f{i}(x)"]
        elif accept is None:
            lines.append(f"    x{i} = _f{i}(x)")
        else:
            lines.append(f"    x{i} = x if {accept} else _f{i}(x)")
        lines.append(f"    if x{i} is BAD: return BAD")
    items = ", ".join(f"{f[0]!r}: x{i}" for i, f in enumerate(fields))
    lines.append(f"    return {{{items}}}")
    exec(compile("\n".join(lines), "<record fast pass>", "exec"), scope)  # noqa: S102 - source built here from the schema
    fast: Callable[[dict[Any, Any]], Any] = scope["fast"]
    return fast


def _slow(conv: Conv, dconv: Conv | None, default: Any) -> Callable[[Any], Any]:
    """A field's value (or ``_MISSING``) through its converter, as the loop did."""

    def slow(x: Any) -> Any:
        if x is not _MISSING:
            return conv(x, None)
        if dconv is not None:
            return dconv(default, None)
        return BAD

    return slow


def _accepts(conv: Conv | None, schema: Any, scope: dict[str, Any], const: str,
             x: str) -> str | None:
    """The inline condition under which ``conv`` (the converter compiled for ``schema``)
    returns the value ``x`` itself, or None."""
    if conv is not None:
        primitive = _PRIMITIVE_CONVS.get(conv)
    else:
        primitive = schema if isinstance(schema, str) else None
    if primitive in _ACCEPT:
        return _ACCEPT[primitive].format(x=x)
    logical = (schema.get("type"), schema.get("logicalType")) if isinstance(schema, dict) else ()
    if conv is not None and logical in LOGICAL_RANGES:
        low, high = LOGICAL_RANGES[logical]
        return f"type({x}) is int and {low} <= {x} <= {high}"
    if isinstance(schema, dict) and schema.get("type") == "enum":
        scope[const] = frozenset(schema["symbols"])
        return f"type({x}) is str and {x} in {const}"
    if (conv is not None and isinstance(schema, list) and len(schema) == 2
            and schema.count("null") == 1
            and not any(isinstance(b, dict) and b.get("type") == "null" for b in schema)):
        return f"{x} is None"  # the compiled ["null", T] returns None for None
    return None


def _array_item(schema: Any, scope: dict[str, Any], i: int) -> str | None:
    """For an array of strings, ints, longs, doubles, booleans or an inline enum: the
    inline condition on an item ``e`` that its converter returns unchanged."""
    if not isinstance(schema, dict) or schema.get("type") != "array":
        return None
    return _accepts(None, schema["items"], scope, f"_a{i}", "e")
