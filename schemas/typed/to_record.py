"""``to_record``: a typed record back to the JSON form the produce endpoint validates.

:func:`onepipe.schemas.validation.validate_records` reads Avro's JSON encoding strictly
(module docstring there): bytes are text of code points up to U+00FF, timestamps, dates
and times are numbers or ISO-8601 text, decimals numbers or numeric text, uuids text,
enums their symbol. So every typed value becomes that JSON form here, and an agent's
record goes through the very check a ``POST /topics/{topic}/records`` does.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Callable
from typing import Any

from onepipe.schemas.typed.model import AVRO_NAME

__all__ = ["to_record"]


def to_record(value: Any) -> dict[str, Any]:
    """The JSON-form dict of a dataclass instance, or of a dict holding typed values.

    Field names become their Avro names (``AVRO_NAME`` metadata); nested dataclasses,
    lists, tuples and dicts are converted all the way down. A dict is copied with its
    values converted (an agent's ``{"hour": window.start}`` holds a datetime), so a dict
    of JSON values comes back equal. A naive ``datetime`` stays
    naive (ISO text without offset): right for ``local-timestamp-*``, refused by the
    validation for ``timestamp-*``, which needs an instant.
    """
    if type(value) is dict:
        return {k: _json(x) for k, x in value.items()}
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"to_record takes a dataclass instance or a dict; got "
                        f"{type(value).__name__}")
    out: dict[str, Any] = _json(value)
    return out


def _json(value: Any) -> Any:
    encode = _ENCODERS.get(type(value))
    if encode is not None:
        return encode(value)
    if value is None or type(value) in _PLAIN:
        return value
    return _fallback(value)


def _fallback(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _names(type(value))
        return {avro: _json(getattr(value, name)) for name, avro in names}
    if isinstance(value, enum.Enum):
        return _json(value.value)
    for kind, encode in _ENCODERS.items():  # subclasses (an IntEnum is caught above)
        if isinstance(value, kind):
            return encode(value)
    if isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"to_record cannot encode a {type(value).__name__}: {value!r}")


_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}


def _names(cls: type) -> tuple[tuple[str, str], ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = tuple((f.name, f.metadata.get(AVRO_NAME, f.name))
                      for f in dataclasses.fields(cls))
        _NAMES[cls] = names
    return names


_PLAIN = frozenset({str, int, float, bool})
# datetime before date: a datetime is a date too, and the isinstance loop keeps this order.
_ENCODERS: dict[type, Callable[[Any], Any]] = {
    list: lambda v: [_json(x) for x in v],
    tuple: lambda v: [_json(x) for x in v],
    dict: lambda v: {k: _json(x) for k, x in v.items()},
    datetime.datetime: datetime.datetime.isoformat,
    datetime.date: datetime.date.isoformat,
    datetime.time: datetime.time.isoformat,
    decimal.Decimal: str,
    uuid.UUID: str,
    bytes: lambda v: v.decode("latin-1"),
    bytearray: lambda v: v.decode("latin-1"),
}
