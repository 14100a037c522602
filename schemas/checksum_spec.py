"""What a topic's figures are computed over: the checksum spec, one per reader schema.

A :class:`ChecksumSpec` holds the canonical Arrow type of each top-level field of the
topic's reader schema, in schema order, and which figures are on (distinct keys, exact
sums, the row checksum). The caller builds that Arrow schema with
``onepipe.sinks.formats.arrow_types`` (see ``onepipe.sinks.formats.topic_view.spec_for``;
``schemas`` may not import ``sinks``). Every system (the checksum table, the clean lake,
each online sink) builds its spec from the same reader schema, so "absent" never has to
be guessed as "null" and :mod:`onepipe.schemas.checksum` casts every system's columns to
the same types before hashing.

:func:`make_spec` refuses, with a :class:`SchemaError`, a spec that could not work: a key
or sum field that is not a column, a sum over a column that is not a number, a type
without a canonical encoding. :func:`hash_type` is the type whose values are encoded for
each canonical type (temporal types as their integer storage, and so on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from onepipe.schemas.errors import SchemaError

__all__ = ["ChecksumSpec", "hash_type", "make_spec"]


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """What to compute for one topic: built once per reader schema, shared by every system."""

    #: Canonical Arrow type of each top-level field of the reader schema, in schema order
    #: (dictionary types replaced by their value type).
    schema: pa.Schema
    #: The unique-key fields (``()``: no key).
    key: tuple[str, ...] = ()
    #: Numeric fields summed exactly.
    sum_fields: tuple[str, ...] = ()
    #: Whether distinct keys are counted.
    count_distinct: bool = False
    #: Whether the row checksum is computed.
    row_checksum: bool = True


def make_spec(schema: pa.Schema, key: Sequence[str] = (), sum_fields: Sequence[str] = (),
              *, count_distinct: bool | None = None, row_checksum: bool = True) -> ChecksumSpec:
    """A spec over canonical column types; raise :class:`SchemaError` if it cannot work.

    ``count_distinct`` defaults to "when there is a key".
    """
    fields = [pa.field(f.name, _undictionary(f.type)) for f in schema]
    canonical = pa.schema(fields)
    for f in fields:
        _check_supported(f.name, f.type)
    names = set(canonical.names)
    for role, listed in (("key field", key), ("sum field", sum_fields)):
        for name in listed:
            if name not in names:
                raise SchemaError(f"{role} {name!r} is not a column of the checksum schema; "
                                  f"its columns are {', '.join(canonical.names) or '(none)'}")
    for name in sum_fields:
        t = canonical.field(name).type
        plain = hash_type(t)
        if not (pa.types.is_integer(plain) or pa.types.is_floating(plain)
                or pa.types.is_decimal(plain)):
            raise SchemaError(f"sum field {name!r} has Arrow type {t}; only integer (or "
                              "temporal), floating-point and decimal columns can be summed")
    if count_distinct is None:
        count_distinct = bool(key)
    if count_distinct and not key:
        raise SchemaError("count_distinct needs key fields; the spec has none")
    return ChecksumSpec(canonical, tuple(key), tuple(sum_fields), count_distinct, row_checksum)


def _undictionary(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _check_supported(name: str, t: pa.DataType) -> None:
    try:
        hash_type(t)
    except SchemaError as exc:
        raise SchemaError(f"column {name!r}: {exc.message}") from exc


def hash_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type whose values are encoded for canonical type ``t``.

    Temporal types become their integer storage (int32 for date32/time32, int64 for the
    others), floats float64, strings ``string``, binaries ``binary``; nested types are
    rebuilt with their children mapped the same way.
    :func:`onepipe.schemas.checksum.encode_value` takes values of these types
    (``Array.to_pylist`` of a column cast to it).
    """
    t = _undictionary(t)
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return pa.int32()
    if (pa.types.is_integer(t) or pa.types.is_date64(t) or pa.types.is_time64(t)
            or pa.types.is_timestamp(t) or pa.types.is_duration(t)):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if (pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t)):
        return pa.binary()
    if pa.types.is_boolean(t) or pa.types.is_null(t) or pa.types.is_decimal(t):
        return t
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, hash_type(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(hash_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(hash_type(t.key_type), hash_type(t.item_type))
    raise SchemaError(f"Arrow type {t} has no canonical encoding for checksums")
