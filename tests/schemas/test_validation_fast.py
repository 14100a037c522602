"""The generated fast pass of a record converter returns what the loop it replaced returned.

The reference is that loop, kept here verbatim; both are compiled for generated schemas
(the ones tests/schemas/test_avro_write.py draws: unions, enums, arrays, maps, nested and
optional records, logical types) and the catalog's, and given valid datums, values
validation refuses and values of the wrong Python type. Results are compared with their
types (``1``, ``1.0`` and ``True`` differ).
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas import validation_compile
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.refusals import BAD
from onepipe.schemas.validation_compile import Compiler
from onepipe.schemas.validation_fast import Field
from tests.schemas.test_avro_write import _CATALOG, _records, datums

_MISSING: Any = object()


def _loop(fields: tuple[Field, ...], names: frozenset[str], types: Any) -> Any:
    """The fast pass as it was before it was generated."""

    def fast(v: dict[Any, Any]) -> Any:
        if not v.keys() <= names:
            return BAD
        out = {}
        get = v.get
        for name, fconv, dconv, default in fields:
            x = get(name, _MISSING)
            if x is not _MISSING:
                x = fconv(x, None)
            elif dconv is not None:
                x = dconv(default, None)
            else:
                return BAD
            if x is BAD:
                return BAD
            out[name] = x
        return out

    return fast


def _typed(x: Any) -> Any:
    if isinstance(x, dict):
        return ("dict", [(_typed(k), _typed(v)) for k, v in x.items()])
    if isinstance(x, list | tuple):
        return (type(x).__name__, [_typed(v) for v in x])
    return (type(x).__name__, repr(x))


def _json_forms(value: Any) -> Any:
    """A datum as a client would send it (bytes as text, decimals as strings, ...)."""
    if isinstance(value, dict):
        return {k: _json_forms(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_forms(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _compare(schema: Any, drawn: st.DataObject) -> None:
    try:
        parsed = parse_schema(json.dumps(schema)).parsed
    except SchemaError:
        return  # a schema the registry refuses is never compiled
    named: dict[str, Any] = {}
    fastavro.parse_schema(parsed, named)
    new = Compiler().node(schema, "").conv
    with mock.patch.object(validation_compile, "record_fast", _loop):
        old = Compiler().node(schema, "").conv
    for odd in (False, True, True):
        value = drawn.draw(datums(parsed, named, odd))
        for form in (value, _json_forms(value)):
            assert _typed(new(form, None)) == _typed(old(form, None)), form


_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


@_SETTINGS
@given(_records(), st.data())
def test_generated_schemas_convert_as_the_loop_did(schema: Any, drawn: st.DataObject) -> None:
    _compare(schema, drawn)


@_SETTINGS
@given(st.sampled_from(_CATALOG), st.data())
def test_catalog_schemas_convert_as_the_loop_did(schema: Any, drawn: st.DataObject) -> None:
    _compare(schema, drawn)


def test_logical_counts_are_taken_inline_exactly_where_their_converter_takes_them() -> None:
    ranges = validation_compile.record_fast.__globals__["LOGICAL_RANGES"]
    for (kind, logical), (low, high) in ranges.items():
        t = {"type": kind, "logicalType": logical}
        for ftype in (t, {"type": "array", "items": t}, ["null", t]):
            schema = {"type": "record", "name": "R", "fields": [{"name": "t", "type": ftype}]}
            new = Compiler().node(schema, "").conv
            with mock.patch.object(validation_compile, "record_fast", _loop):
                old = Compiler().node(schema, "").conv
            for edge in (low, high, 0):
                for value in (edge - 1, edge, edge + 1, float(edge), str(edge), True):
                    record = {"t": [value] if "items" in ftype else value}
                    assert _typed(new(record, None)) == _typed(old(record, None)), (t, value)
