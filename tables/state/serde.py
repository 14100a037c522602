"""Keys and values of agents' tables as bytes: orjson, deterministic, round-tripping.

Contract:
- **Keys** are ``str``, ``int`` (64-bit), finite ``float``, ``bool``, ``None`` and tuples of
  those (nested too). :func:`encode_key` gives the same bytes for the same key every time
  (JSON text; tuples as arrays) and :func:`decode_key` gives the key back, tuples as
  tuples. Keys are equal when their bytes are: ``1``, ``1.0`` and ``True`` are three
  keys (as in JSON, unlike a Python dict). Anything else is refused with a
  :class:`~onepipe.schemas.errors.StateError` naming it (a datetime would come back as a
  string, a NaN as None: not the key that was stored).
- **Values** are JSON values: ``str``, ``int``, ``float``, ``bool``, ``None``, lists (or
  tuples) and dicts with string keys, nested. They come back as orjson reads them
  (tuples as lists). Datetimes, dataclasses and other objects are refused.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from onepipe.schemas.errors import StateError

__all__ = ["VALUE_OPTIONS", "Key", "decode_key", "decode_value", "encode_key", "encode_value"]

#: A table key (see the module docstring).
Key = str | int | float | bool | None | tuple[Any, ...]

_dumps = orjson.dumps
_loads = orjson.loads
#: orjson options of values: refuse what would not come back as it went in (a datetime
#: as a string, a dataclass as a dict) instead of storing it.
VALUE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_SCALARS = (str, int, bool, type(None))


def _check_key(key: object) -> None:
    kind = type(key)
    if kind in _SCALARS or isinstance(key, str | int):  # subclasses (enums) too
        return
    if isinstance(key, float):
        if not math.isfinite(key):
            raise StateError(f"a table key cannot be {key!r}: it has no JSON form; use a "
                             "finite number or a string")
        return
    if isinstance(key, tuple):
        for part in key:
            _check_key(part)
        return
    raise StateError(f"a table key must be a str, int, float, bool, None or a tuple of "
                     f"those; got {key!r} ({kind.__name__}): convert it (a datetime to "
                     "epoch ms or an ISO string, a list to a tuple)")


def encode_key(key: Key) -> bytes:
    """The bytes of ``key`` (JSON text); the same bytes for the same key."""
    if type(key) is str:
        return _dumps(key)
    _check_key(key)
    try:
        return _dumps(key)
    except orjson.JSONEncodeError as exc:  # an int beyond 64 bits
        raise StateError(f"table key {key!r} cannot be stored: {exc}") from exc


def _tuples(value: Any) -> Any:
    if type(value) is list:
        return tuple(_tuples(v) for v in value)
    return value


def decode_key(data: bytes) -> Key:
    """Inverse of :func:`encode_key` (JSON arrays back to tuples)."""
    key = _loads(data)
    return _tuples(key) if type(key) is list else key


def encode_value(value: Any) -> bytes:
    """The bytes of a table value (JSON)."""
    try:
        return _dumps(value, option=VALUE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise StateError(f"table value {value!r} cannot be stored: {exc}; a value is "
                         "a JSON value (str, int, float, bool, None, list, dict with "
                         "str keys)") from exc


def decode_value(data: bytes) -> Any:
    """Inverse of :func:`encode_value` (tuples come back as lists)."""
    return _loads(data)
