"""``record_converter`` on what fastavro really decodes, and ``to_record`` back through the
produce endpoint's validation: the round trip is the identity."""

from __future__ import annotations

import datetime
import decimal
import enum
import io
import uuid
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.errors import RecordTypeError
from onepipe.schemas.typed import AVRO_NAME, converter_many, record_converter, to_record
from onepipe.schemas.validation import validate_records

SCHEMA = parse_schema({
    "type": "record", "name": "Order", "fields": [
        {"name": "order_id", "type": "string"},
        {"name": "status", "type": {"type": "enum", "name": "Status",
                                    "symbols": ["NEW", "PAID"]}},
        {"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": "Line", "fields": [
                {"name": "sku", "type": "string"},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal",
                                           "precision": 9, "scale": 2}}]}}},
        {"name": "by_name", "type": {"type": "map", "values": "Line"}},
        {"name": "ship_to", "type": ["null", {"type": "record", "name": "Address", "fields": [
            {"name": "city", "type": "string"}]}], "default": None},
        {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ref_text", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "blob", "type": "bytes"},
        {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 2}},
        {"name": "pair", "type": {"type": "array", "items": "int"}},
        {"name": "either", "type": ["int", "string", "Address"]},
        {"name": "class", "type": "boolean"},
    ]})


class Status(enum.Enum):
    NEW = "NEW"
    PAID = "PAID"


@dataclass(frozen=True, slots=True)
class Line:
    sku: str
    price: decimal.Decimal


@dataclass(frozen=True, slots=True)
class Address:
    city: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    order_id: str
    status: Status
    lines: list[Line]
    by_name: dict[str, Line]
    ship_to: Address | None
    placed_at: datetime.datetime
    local: datetime.datetime
    day: datetime.date
    at: datetime.time
    ref: uuid.UUID
    ref_text: str
    blob: bytes
    hash: bytes
    pair: tuple[int, ...]
    either: int | str | Address
    class_: bool = field(metadata={AVRO_NAME: "class"})
    seen: int = 0  # not in the schema: keeps its default


def _decode(schema: AvroSchema, record: dict[str, Any]) -> dict[str, Any]:
    data = validate_records(schema, [record])[0]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, data)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, schema.parsed, None)
    assert isinstance(decoded, dict)
    return decoded


JSON_RECORD: dict[str, Any] = {
    "order_id": "o1", "status": "PAID",
    "lines": [{"sku": "a", "price": "1.50"}, {"sku": "b", "price": "20.00"}],
    "by_name": {"a": {"sku": "a", "price": "1.50"}},
    "ship_to": {"city": "Oslo"},
    "placed_at": "2024-05-01T12:00:00.123456+00:00", "local": "2024-05-01T12:00:00.250000",
    "day": "2024-05-01", "at": "12:30:00.500000",
    "ref": "123e4567-e89b-12d3-a456-426614174000",
    "ref_text": "00000000-0000-0000-0000-000000000001",
    "blob": "\u00ff\u0000a", "hash": "ab", "pair": [1, 2], "either": {"city": "Rome"},
    "class": True,
}


def test_round_trip_through_fastavro_and_the_produce_validation() -> None:
    decoded = _decode(SCHEMA, JSON_RECORD)
    order = record_converter(Order, SCHEMA, topic="orders")(decoded)
    assert order.status is Status.PAID and order.lines[1] == Line("b", decimal.Decimal("20.00"))
    assert order.by_name["a"].price == decimal.Decimal("1.50")
    assert order.ship_to == Address("Oslo") and order.either == Address("Rome")
    assert order.placed_at == datetime.datetime(2024, 5, 1, 12, 0, 0, 123456,
                                                tzinfo=datetime.UTC)
    assert order.local.tzinfo is None and order.day == datetime.date(2024, 5, 1)
    assert order.ref == uuid.UUID(JSON_RECORD["ref"]) and order.ref_text == JSON_RECORD["ref_text"]
    assert order.blob == b"\xff\x00a" and order.pair == (1, 2) and order.class_ is True
    assert order.seen == 0
    with pytest.raises(FrozenInstanceError):
        order.order_id = "x"  # type: ignore[misc]  # the point: frozen

    back = to_record(order)
    assert back["class"] is True and back["status"] == "PAID" and "seen" in back
    back.pop("seen")  # a field the schema lacks: the class must not send it
    assert _decode(SCHEMA, back) == decoded


def test_unions_pick_the_branch_by_value() -> None:
    convert = record_converter(Order, SCHEMA)
    for either, expected in ((7, 7), ("x", "x"), ({"city": "Rome"}, Address("Rome"))):
        assert convert(_decode(SCHEMA, {**JSON_RECORD, "either": either})).either == expected
    assert convert(_decode(SCHEMA, {**JSON_RECORD, "ship_to": None})).ship_to is None


def test_converter_many_and_the_cache() -> None:
    decoded = _decode(SCHEMA, JSON_RECORD)
    many = converter_many(Order, SCHEMA, topic="orders")
    orders = many([decoded] * 3)
    assert len(orders) == 3 and orders[0] == orders[2]
    assert record_converter(Order, SCHEMA) is record_converter(Order, SCHEMA)


def test_the_converter_checks_first() -> None:
    @dataclass
    class Wrong:
        order_id: int

    with pytest.raises(RecordTypeError, match="Wrong.order_id: wrong type"):
        record_converter(Wrong, SCHEMA, topic="orders")


@dataclass
class Plain:  # not frozen, not slotted, with a __post_init__: built through __init__
    order_id: str
    status: str
    label: str = ""

    def __post_init__(self) -> None:
        self.label = f"{self.order_id}/{self.status}"


def test_a_class_with_post_init_is_built_by_its_constructor() -> None:
    plain = record_converter(Plain, SCHEMA)(_decode(SCHEMA, JSON_RECORD))
    assert plain == Plain("o1", "PAID", "o1/PAID")


def test_to_record_converts_the_typed_values_of_dicts_and_refuses_others() -> None:
    record = {"a": datetime.date(2024, 1, 1), "b": [datetime.date(2024, 1, 2)], "c": 1}
    assert to_record(record) == {"a": "2024-01-01", "b": ["2024-01-02"], "c": 1}
    with pytest.raises(TypeError, match="dataclass instance or a dict"):
        to_record(Order)


SMALL = parse_schema({"type": "record", "name": "Small", "fields": [
    {"name": "n", "type": "long"}, {"name": "x", "type": "double"},
    {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"},
    {"name": "opt", "type": ["null", "int"], "default": None},
    {"name": "m", "type": {"type": "map", "values": "boolean"}}]})


@dataclass(frozen=True, slots=True)
class Small:
    n: int
    x: float
    s: str
    b: bytes
    opt: int | None
    m: dict[str, bool]


@given(st.builds(
    Small, n=st.integers(-(2**63), 2**63 - 1),
    x=st.floats(allow_nan=False, allow_infinity=False), s=st.text(
        alphabet=st.characters(codec="utf-8")),
    b=st.binary(), opt=st.none() | st.integers(-(2**31), 2**31 - 1),
    m=st.dictionaries(st.text(alphabet=st.characters(codec="utf-8")),
                      st.booleans())))
def test_every_small_record_round_trips(small: Small) -> None:
    assert record_converter(Small, SMALL)(_decode(SMALL, to_record(small))) == small
