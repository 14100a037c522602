"""The per-value half of :mod:`onepipe.sinks.formats.arrow_types`: converting the few
fastavro values ``pa.array`` cannot take as they are, and telling which type a value is.

A :data:`Convert` turns one fastavro value (or None) into what ``pa.array`` takes for the
Arrow type. A list, map or struct gets one (:func:`list_convert`, :func:`map_convert`,
:func:`struct_convert`) only when a child needs one, so most columns do no Python work
per value. The values converted: a ``uuid.UUID`` becomes its text; a decimal wider than
Arrow's widest becomes its exact text (the hex of its bytes if fastavro did not decode
it); a recursive reference becomes JSON (:func:`to_json`: orjson, bytes as ISO-8859-1
text like Avro's JSON encoding, decimals as text, unions unwrapped as fastavro returns
them).

An :data:`Accepts` says whether a fastavro value belongs to a type: a general union's
value goes to the first branch that accepts it. The tests compare exact types
(``type(v) is int``), since a subclass would mislead: a bool is an int.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["Accepts", "Convert", "accepts_aware", "accepts_int", "accepts_int_or_datetime",
           "accepts_naive", "decimal_text", "is_type", "list_convert", "map_convert",
           "struct_convert", "to_json", "to_str"]

#: Turns one fastavro value (or None) into what ``pa.array`` takes for the Arrow type.
Convert = Callable[[Any], Any]
#: Whether a fastavro value belongs to a type (chooses a union branch).
Accepts = Callable[[Any], bool]

_INT32 = range(-(2**31), 2**31)


# --- conversions ----------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")  # Avro's JSON encoding of bytes: one char per byte
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(value: Any) -> str | None:
    """The JSON text of a fastavro value (None stays None)."""
    if value is None:
        return None
    return orjson.dumps(value, default=_json_default).decode()


def to_str(value: Any) -> str | None:
    return None if value is None else str(value)


def decimal_text(value: Any) -> str | None:
    if value is None or isinstance(value, Decimal | str):
        return to_str(value)
    return bytes(value).hex()  # a decimal fastavro did not decode: keep its bytes visible


# --- which type a value is -----------------------------------------------------------


def is_type(kind: type) -> Accepts:
    return lambda v: type(v) is kind


def accepts_int(v: Any) -> bool:
    return type(v) is int and v in _INT32


def accepts_aware(v: Any) -> bool:
    return type(v) is datetime and v.tzinfo is not None


def accepts_naive(v: Any) -> bool:
    return type(v) is datetime and v.tzinfo is None


def accepts_int_or_datetime(v: Any) -> bool:
    return type(v) is int or type(v) is datetime


# --- nested conversions, only where a child converts -----------------------------------


def list_convert(item: Convert) -> Convert:
    def convert(v: Any) -> Any:
        return None if v is None else [item(x) for x in v]

    return convert


def map_convert(value: Convert) -> Convert:
    def convert(v: Any) -> Any:
        return None if v is None else {k: value(x) for k, x in v.items()}

    return convert


def struct_convert(children: list[tuple[str, Convert | None]]) -> Convert:
    def convert(v: Any) -> Any:
        if v is None:
            return None
        return {name: conv(v[name]) if conv else v[name] for name, conv in children}

    return convert
