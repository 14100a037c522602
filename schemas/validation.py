"""Strict conversion of JSON-decoded records into Avro datums that fastavro can write.

Guarantee: for any Python value, :meth:`RecordConverter.convert` returns either a datum
that ``fastavro.schemaless_writer(buf, schema.parsed, datum)`` writes and fastavro's readers
decode back, or no datum and one :class:`FieldError` per problem, each with a path
(``address.zip``, ``items[2].price``, ``tags["colour"]``; ``""`` is the value itself).
:func:`validate_records` raises nothing but :class:`RecordValidationError`.

Input is Avro's JSON encoding, read strictly: records take no unknown fields and fill
missing ones from their schema default; ints and longs are ints in range (never bools);
floats and doubles are finite numbers (JSON has no NaN or Infinity); bytes and fixed are
strings of code points up to U+00FF; a union takes ``{"branch name": value}`` or a bare
value, trying branches in order. Logical types also take text: ISO-8601 timestamps,
``YYYY-MM-DD`` dates, ``HH:MM:SS[.ffffff]`` times, numeric strings for decimals. The leaf
types live in :mod:`onepipe.schemas.logical_types`, the structure around them is compiled
by :mod:`onepipe.schemas.validation_compile` (which also says what the datums look like).

Why compile: this runs for every record on the HTTP produce path. Each schema is compiled
once (cached by identity) into a chain of direct calls. A record is first converted on
the fast pass (no messages, no paths, stop at the first problem); only when that fails
does :meth:`RecordConverter.convert` run it again collecting errors. Good records never
pay for error reporting.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson

from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import FieldError, RecordValidationError
from onepipe.schemas.refusals import BAD, Conv, Errs
from onepipe.schemas.validation_compile import Compiler, norm

_TOO_DEEP = "nested too deeply to check; flatten the value"


class RecordConverter:
    """Converts values of one schema; build it with :func:`compile_converter`."""

    __slots__ = ("_root",)

    def __init__(self, root: Conv) -> None:
        self._root = root

    def convert(self, value: Any, index: int = 0) -> tuple[Any, list[FieldError]]:
        """Return (datum, errors). errors empty => datum is writable by fastavro."""
        root = self._root
        try:
            datum = root(value, None)
            if datum is not BAD:
                return datum, []
            raw: Errs = []
            datum = root(norm(value), raw)
        except RecursionError:
            return None, [FieldError(index, "", _TOO_DEEP)]
        if not raw and datum is not BAD:  # a subclass of a JSON type, refused by the fast pass
            return datum, []
        return None, [FieldError(index, _path(e), e[0]) for e in raw or [["does not match"]]]

    def convert_many(self, values: list[Any]) -> tuple[list[Any], list[FieldError]]:
        """Convert every record; FieldError.index is the position in `values`."""
        root = self._root
        try:
            data = [root(v, None) for v in values]
        except RecursionError:
            data = [BAD] * len(values)
        if BAD not in data:
            return data, []
        errors: list[FieldError] = []
        for i, value in enumerate(values):
            if data[i] is BAD:
                data[i], errs = self.convert(value, i)
                errors.extend(errs)
        return data, errors


def compile_converter(schema: AvroSchema) -> RecordConverter:
    """The converter for ``schema``, compiled once per distinct schema."""
    return _compile(schema.identity)


def validate_records(schema: AvroSchema, values: list[Any]) -> list[Any]:
    """Convert all; raise RecordValidationError(errors) if any record has an error."""
    data, errors = compile_converter(schema).convert_many(values)
    if errors:
        raise RecordValidationError(errors)
    return data


@functools.lru_cache(maxsize=512)
def _compile(identity: str) -> RecordConverter:
    # The identity is the schema's JSON with sorted keys: the same schema, hashable.
    return RecordConverter(Compiler().node(orjson.loads(identity), "").conv)


def _path(raw: list[Any]) -> str:
    out = ""
    for seg in reversed(raw[1:]):
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif isinstance(seg, tuple):
            out += f"[{json.dumps(seg[0], ensure_ascii=False)}]"
        else:
            out += f".{seg}" if out else seg
    return out
