"""Reading a batch in columns gives exactly fastavro's values, for every supported shape
(hypothesis over generated schemas and records); unsupported shapes have no plan."""

from __future__ import annotations

import dataclasses
import decimal
import enum
import functools
import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_columns import column_plan, read_columns
from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import frame
from onepipe.schemas.typed import columns_converter, record_converter

_PRIMITIVES = {
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=12),
    "string": st.text(max_size=12),
}
_MS = (-62_135_596_800_000, 253_402_300_799_999)  # datetime's range, in ms
_LOGICAL = {
    ("long", "timestamp-millis"): st.integers(*_MS),
    ("long", "local-timestamp-millis"): st.integers(*_MS),
    ("long", "timestamp-micros"): st.integers(_MS[0] * 1000, _MS[1] * 1000),
    ("long", "local-timestamp-micros"): st.integers(_MS[0] * 1000, _MS[1] * 1000),
    ("int", "date"): st.integers(-719_162, 2_932_896),
    ("int", "time-millis"): st.integers(0, 86_399_999),
    ("long", "time-micros"): st.integers(0, 86_399_999_999),
    ("string", "uuid"): st.uuids(),
}


class _Names:
    """Unique names for the named types of one schema, and those defined so far."""

    def __init__(self) -> None:
        self.count = 0
        #: (name, value strategy) of the enums defined so far, for references (the only
        #: named types polars reads by reference).
        self.defined: list[tuple[str, st.SearchStrategy[Any]]] = []

    def new(self) -> str:
        self.count += 1
        return f"N{self.count}"


def _decimal(scale: int, unscaled: int) -> decimal.Decimal:
    return decimal.Decimal(unscaled).scaleb(-scale)


@st.composite
def _leaf(draw: st.DrawFn, names: _Names) -> tuple[Any, st.SearchStrategy[Any]]:
    kind = draw(st.sampled_from(["primitive", "logical", "fixed", "enum", "decimal", "ref"]))
    if kind == "primitive":
        name = draw(st.sampled_from(sorted(_PRIMITIVES)))
        return draw(st.sampled_from([name, {"type": name}])), _PRIMITIVES[name]
    if kind == "logical":
        base, logical = draw(st.sampled_from(sorted(_LOGICAL)))
        return {"type": base, "logicalType": logical}, _LOGICAL[(base, logical)]
    if kind == "fixed":
        size = draw(st.integers(1, 6))
        return ({"type": "fixed", "name": names.new(), "size": size},
                st.binary(min_size=size, max_size=size))
    if kind == "enum":
        symbols = draw(st.lists(st.sampled_from("ABCDEFG"), min_size=1, max_size=5,
                                unique=True))
        name = names.new()
        names.defined.append((name, st.sampled_from(symbols)))
        return {"type": "enum", "name": name, "symbols": symbols}, names.defined[-1][1]
    if kind == "decimal":
        precision = draw(st.integers(1, 12))
        scale = draw(st.integers(0, precision))
        values = st.integers(-(10**precision) + 1, 10**precision - 1).map(
            functools.partial(_decimal, scale))
        if draw(st.booleans()):
            return {"type": "bytes", "logicalType": "decimal", "precision": precision,
                    "scale": scale}, values
        return {"type": "fixed", "name": names.new(), "size": 8, "logicalType": "decimal",
                "precision": precision, "scale": scale}, values
    if not names.defined:
        return "string", _PRIMITIVES["string"]
    return draw(st.sampled_from(names.defined))


@st.composite
def _type(draw: st.DrawFn, names: _Names, depth: int) -> tuple[Any, st.SearchStrategy[Any]]:
    kind = draw(st.sampled_from(["leaf", "leaf", "nullable", "array", "record"] if depth < 2
                                else ["leaf", "nullable"]))
    if kind == "leaf":
        return draw(_leaf(names))
    if kind == "nullable":
        inner, values = draw(_type(names, depth + 1))
        if isinstance(inner, list):  # already nullable (no filter: names were drawn)
            return inner, values
        branches = ["null", inner] if draw(st.booleans()) else [inner, "null"]
        return branches, st.none() | values
    if kind == "array":
        inner, values = draw(_type(names, depth + 1))
        return {"type": "array", "items": inner}, st.lists(values, max_size=3)
    return draw(_record(names, depth + 1))


@st.composite
def _record(draw: st.DrawFn, names: _Names, depth: int) -> tuple[Any, st.SearchStrategy[Any]]:
    name = names.new()
    count = draw(st.integers(1, 4))
    fields, values = [], {}
    for i in range(count):
        ftype, strategy = draw(_type(names, depth))
        fields.append({"name": f"f{i}", "type": ftype})
        values[f"f{i}"] = strategy
    return {"type": "record", "name": name, "fields": fields}, st.fixed_dictionaries(values)


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    schema, values = draw(_record(_Names(), 0))
    return schema, draw(st.lists(values, min_size=1, max_size=20))


def _framed(schema: dict[str, Any], records: list[Any]) -> list[bytes]:
    parsed = fastavro.parse_schema(schema, named_schemas={})
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(frame(1, buf.getvalue()))
    return out


def _fastavro(schema: dict[str, Any], values: list[bytes]) -> list[Any]:
    parsed = fastavro.parse_schema(schema, named_schemas={})
    return [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_columns_are_exactly_what_fastavro_reads(batch: tuple[dict[str, Any], list[Any]]
                                                 ) -> None:
    schema, records = batch
    values = _framed(schema, records)
    plan = column_plan(parse_schema(schema))
    assert plan is not None
    read = read_columns(plan, values, None)
    assert read is not None
    columns, _ = read
    rows = [dict(zip(plan.names, row, strict=True))
            for row in zip(*[columns[n] for n in plan.names], strict=True)]
    expected = _fastavro(schema, values)
    assert rows == expected
    assert repr(rows) == repr(expected)  # same types too: tzinfo, float vs int, str vs enum


@pytest.mark.parametrize("field", [
    {"name": "m", "type": {"type": "map", "values": "long"}},
    {"name": "n", "type": "null"},
    {"name": "u", "type": ["string", "long"]},
    {"name": "u", "type": ["null", "string", "long"]},
    {"name": "r", "type": ["null", "Node"]},  # recursive
    {"name": "f", "type": {"type": "fixed", "name": "Empty", "size": 0}},
    {"name": "f", "type": {"type": "record", "name": "P", "fields": [
        {"name": "a", "type": {"type": "fixed", "name": "F", "size": 2}},
        {"name": "b", "type": "F"}]}},
    {"name": "a", "type": {"type": "array", "items": {"type": "map", "values": "int"}}},
])
def test_unsupported_shapes_have_no_plan(field: dict[str, Any]) -> None:
    schema = {"type": "record", "name": "Node", "fields": [{"name": "id", "type": "string"},
                                                           field]}
    assert column_plan(parse_schema(schema)) is None


def test_a_misaligned_batch_is_refused() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]}
    values = _framed(schema, [{"id": "a"}, {"id": "b"}])
    plan = column_plan(parse_schema(schema))
    assert plan is not None
    assert read_columns(plan, [values[0] + b"\x02x", values[1]], None) is None


class Color(enum.Enum):
    RED = "R"
    BLUE = "B"


@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    x: int
    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Slotted:
    id: str
    color: Color
    inner: Inner | None
    extra: int = 7


@dataclasses.dataclass(kw_only=True)
class Plain:
    color: str
    id: str
    extra: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Nothing:
    n: int = 0


@pytest.mark.parametrize("cls", [Slotted, Plain, Nothing])
def test_columns_converter_builds_what_record_converter_builds(cls: type[Any]) -> None:
    schema = parse_schema({"type": "record", "name": "T", "fields": [
        {"name": "id", "type": "string"},
        {"name": "color", "type": {"type": "enum", "name": "C", "symbols": ["R", "B"]}},
        {"name": "inner", "type": ["null", {"type": "record", "name": "I", "fields": [
            {"name": "x", "type": "int"},
            {"name": "tags", "type": {"type": "array", "items": "string"}}]}]}]})
    dicts = [{"id": f"i{n}", "color": "RB"[n % 2],
              "inner": None if n % 3 else {"x": n, "tags": ["a"] * n}} for n in range(7)]
    names, build = columns_converter(cls, schema, topic="t")
    built = build([[d[n] for d in dicts] for n in names], len(dicts))
    one = record_converter(cls, schema, topic="t")
    assert built == [one(d) for d in dicts]
    assert len(built) == len(dicts)
