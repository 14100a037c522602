"""Strict JSON -> Avro datum conversion: rules, paths and reasons, fastavro round trips."""

from __future__ import annotations

import io
import math
import uuid
import warnings
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any

import avro.errors
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.errors import FieldError, RecordValidationError
from onepipe.schemas.validation import RecordConverter, compile_converter, validate_records

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the repo
    suppress_health_check=[HealthCheck.too_slow],
)


def record(*fields: dict[str, Any], name: str = "R", **extra: Any) -> AvroSchema:
    return parse_schema({"type": "record", "name": name, "fields": list(fields), **extra})


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def one(type_: Any, **extra: Any) -> AvroSchema:
    """A record with one field ``v`` of ``type_``."""
    return record(field("v", type_, **extra))


def convert(schema: AvroSchema, value: Any) -> Any:
    datum, errors = compile_converter(schema).convert(value)
    assert errors == [], errors
    return datum


def errors(schema: AvroSchema, value: Any) -> list[tuple[str, str]]:
    datum, errs = compile_converter(schema).convert(value)
    assert errs, f"expected errors, got datum {datum!r}"
    assert datum is None
    return [(e.path, e.reason) for e in errs]


def reason(schema: AvroSchema, value: Any) -> str:
    """The single error's reason for ``{"v": value}``; its path must be ``v``."""
    [(path, why)] = errors(schema, {"v": value})
    assert path == "v"
    return why


def write(schema: AvroSchema, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, datum)
    return buf.getvalue()


def roundtrip(schema: AvroSchema, datum: Any) -> Any:
    return fastavro.schemaless_reader(
        io.BytesIO(write(schema, datum)),
        schema.parsed,
        None,
        return_record_name=True,
        return_record_name_override=True,
    )


# --- records ------------------------------------------------------------------------------

PRODUCT = record(field("id", "long"), field("name", "string"), field("price", "double"))


def test_record_converts_fields_in_schema_order() -> None:
    datum = convert(PRODUCT, {"price": 2, "name": "pen", "id": 7})
    assert list(datum.items()) == [("id", 7), ("name", "pen"), ("price", 2.0)]
    assert roundtrip(PRODUCT, datum) == {"id": 7, "name": "pen", "price": 2.0}


def test_record_refuses_unknown_fields_naming_the_schema_fields() -> None:
    assert errors(PRODUCT, {"id": 1, "name": "a", "price": 1, "colour": "red"}) == [
        ("", "unknown field 'colour' (schema fields: id, name, price)")
    ]


def test_record_reports_missing_fields_without_default() -> None:
    assert errors(PRODUCT, {"id": 1}) == [
        ("name", "required field missing (no default)"),
        ("price", "required field missing (no default)"),
    ]


def test_record_collects_every_error() -> None:
    assert errors(PRODUCT, {"id": "1", "name": True, "x": 1}) == [
        ("id", "expected long (64-bit), got string '1'"),
        ("name", "expected string, got bool true"),
        ("price", "required field missing (no default)"),
        ("", "unknown field 'x' (schema fields: id, name, price)"),
    ]


def test_record_must_be_a_json_object() -> None:
    assert errors(PRODUCT, [1, 2]) == [
        ("", "expected record R (a JSON object), got array of 2 items")
    ]
    assert errors(PRODUCT, None) == [("", "expected record R (a JSON object), got null")]


def test_missing_fields_take_their_defaults_in_datum_form() -> None:
    schema = record(
        field("n", "int", default=5),
        field("raw", "bytes", default="\u00ff\u0000"),
        field("fx", {"type": "fixed", "name": "Two", "size": 2}, default="ab"),
        field("opt", ["null", "string"], default=None),
        field("num", ["long", "null"], default=3),
        field("e", {"type": "enum", "name": "E", "symbols": ["A", "B"]}, default="B"),
        field(
            "sub", {"type": "record", "name": "S", "fields": [field("x", "int")]}, default={"x": 1}
        ),
        field("xs", {"type": "array", "items": "int"}, default=[1, 2]),
        field("at", {"type": "long", "logicalType": "timestamp-millis"}, default=0),
        field(
            "price",
            {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
            default="\u0004\u00d2",  # 1234 unscaled, as the spec's ISO-8859-1 bytes
        ),
    )
    datum = convert(schema, {})
    assert datum == {
        "n": 5,
        "raw": b"\xff\x00",
        "fx": b"ab",
        "opt": None,
        "num": 3,
        "e": "B",
        "sub": {"x": 1},
        "xs": [1, 2],
        "at": 0,
        "price": b"\x04\xd2",
    }
    back = roundtrip(schema, datum)
    assert back["price"] == Decimal("12.34")
    assert back["at"] == datetime(1970, 1, 1, tzinfo=UTC)


def test_union_default_may_match_a_later_branch() -> None:
    # Apache Avro 1.12 accepts a default for any branch, not only the first.
    assert convert(one(["null", "int"], default=5), {}) == {"v": 5}


def test_defaults_are_fresh_per_record() -> None:
    schema = one({"type": "array", "items": "int"}, default=[1])
    first, second = validate_records(schema, [{}, {}])
    first["v"].append(2)
    assert second == {"v": [1]}


# --- primitives ---------------------------------------------------------------------------


def test_null_and_boolean() -> None:
    assert convert(one("null"), {"v": None}) == {"v": None}
    assert reason(one("null"), 0) == "expected null, got int 0"
    assert convert(one("boolean"), {"v": False}) == {"v": False}
    assert reason(one("boolean"), 1) == "expected boolean, got int 1"
    assert reason(one("boolean"), "true") == "expected boolean, got string 'true'"


def test_int_is_32_bit_and_never_bool() -> None:
    schema = one("int")
    assert convert(schema, {"v": -(2**31)}) == {"v": -(2**31)}
    assert convert(schema, {"v": 2**31 - 1}) == {"v": 2**31 - 1}
    assert reason(schema, 3000000000) == "expected int (32-bit), got 3000000000 (out of range)"
    assert reason(schema, True) == "expected int (32-bit), got bool true"
    assert reason(schema, 1.0) == "expected int (32-bit), got float 1.0"
    assert reason(schema, "1") == "expected int (32-bit), got string '1'"


def test_long_is_64_bit() -> None:
    schema = one("long")
    assert convert(schema, {"v": 2**63 - 1}) == {"v": 2**63 - 1}
    assert convert(schema, {"v": -(2**63)}) == {"v": -(2**63)}
    assert reason(schema, 2**63) == f"expected long (64-bit), got {2**63} (out of range)"
    assert reason(schema, False) == "expected long (64-bit), got bool false"
    huge = reason(schema, 10**5000)
    assert huge.startswith("expected long (64-bit), got an int of 16610 bits")


def test_float_takes_numbers_within_float32_range() -> None:
    schema = one("float")
    assert convert(schema, {"v": 1}) == {"v": 1.0}
    assert convert(schema, {"v": 3.4e38}) == {"v": 3.4e38}
    assert reason(schema, 3.5e38) == "expected float (32-bit), got 3.5e+38 (out of range)"
    assert (
        reason(schema, 10**39) == "expected float (32-bit), got an int of 130 bits (out of range)"
    )
    assert reason(schema, True) == "expected float (32-bit), got bool true"
    assert "not finite" in reason(schema, math.nan)


def test_double_takes_finite_numbers() -> None:
    schema = one("double")
    assert convert(schema, {"v": 1e308}) == {"v": 1e308}
    assert convert(schema, {"v": 2**53}) == {"v": float(2**53)}
    assert reason(schema, math.inf) == (
        "expected double, got inf (not finite; JSON has no NaN or Infinity)"
    )
    assert "not finite" in reason(schema, -math.nan)
    assert reason(schema, 10**400).endswith("(out of range)")
    assert reason(schema, "1.5") == "expected double, got string '1.5'"


def test_string() -> None:
    schema = one("string")
    assert convert(schema, {"v": "héllo ✓"}) == {"v": "héllo ✓"}
    assert reason(schema, True) == "expected string, got bool true"
    assert reason(schema, {"a": 1}) == "expected string, got object with keys 'a'"
    assert "lone surrogate" in reason(schema, "a\ud800")


def test_bytes_are_iso_8859_1_text() -> None:
    schema = one("bytes")
    datum = convert(schema, {"v": "\u0000A\u00ff"})
    assert datum == {"v": b"\x00A\xff"}
    assert roundtrip(schema, datum) == datum
    assert reason(schema, "\u0100") == (
        "expected bytes (text of code points U+0000 to U+00FF), got string 'Ā' "
        "(has characters above U+00FF)"
    )
    assert reason(schema, [1]).startswith("expected bytes")


def test_fixed_checks_the_length() -> None:
    schema = one({"type": "fixed", "name": "Hash", "size": 3})
    assert convert(schema, {"v": "abc"}) == {"v": b"abc"}
    assert reason(schema, "abcd") == (
        "expected fixed Hash (3 bytes as text of code points up to U+00FF), "
        "got string 'abcd' (4 bytes)"
    )


def test_enum_symbols() -> None:
    schema = one({"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]})
    assert convert(schema, {"v": "GREEN"}) == {"v": "GREEN"}
    assert reason(schema, "PURPLE") == "'PURPLE' is not a symbol of enum Colour (RED, GREEN)"
    assert reason(schema, 0) == "expected enum Colour (RED, GREEN), got int 0"


def test_array_items_have_indexed_paths() -> None:
    item = {"type": "record", "name": "Item", "fields": [field("price", "double")]}
    schema = one({"type": "array", "items": item})
    assert convert(schema, {"v": [{"price": 1}, {"price": 2.5}]}) == {
        "v": [{"price": 1.0}, {"price": 2.5}]
    }
    assert errors(schema, {"v": [{"price": 1}, {"price": 2}, {"price": "x"}, 4]}) == [
        ("v[2].price", "expected double, got string 'x'"),
        ("v[3]", "expected record Item (a JSON object), got int 4"),
    ]
    assert reason(schema, {"price": 1}) == "expected array, got object with keys 'price'"


def test_map_values_have_keyed_paths() -> None:
    schema = record(field("tags", {"type": "map", "values": "int"}))
    assert convert(schema, {"tags": {"a": 1, "b": 2}}) == {"tags": {"a": 1, "b": 2}}
    assert errors(schema, {"tags": {"colour": "red", 'say "hi"': 2.5}}) == [
        ('tags["colour"]', "expected int (32-bit), got string 'red'"),
        ('tags["say \\"hi\\""]', "expected int (32-bit), got float 2.5"),
    ]
    assert errors(schema, {"tags": [1]}) == [
        ("tags", "expected map (a JSON object), got array of 1 items")
    ]


def test_map_keys_from_python_callers_must_be_text() -> None:
    schema = one({"type": "map", "values": "int"})
    assert errors(schema, {"v": {1: 1}}) == [("v", "map keys must be UTF-8 text, got int 1")]


# --- unions -------------------------------------------------------------------------------

ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "com.x",
    "fields": [field("zip", "string")],
}
CARD = {"type": "record", "name": "Card", "fields": [field("number", "string")]}
TRANSFER = {"type": "record", "name": "Transfer", "fields": [field("iban", "string")]}


def test_union_takes_a_bare_value_trying_branches_in_order() -> None:
    schema = one(["null", "string", "long"])
    assert convert(schema, {"v": None}) == {"v": None}
    assert convert(schema, {"v": "x"}) == {"v": "x"}
    assert convert(schema, {"v": 5}) == {"v": 5}
    assert reason(schema, 1.5) == "expected one of (null, string, long), got float 1.5"


def test_union_takes_the_wrapped_form() -> None:
    schema = one(["null", "string", ADDRESS])
    assert convert(schema, {"v": {"string": "x"}}) == {"v": "x"}
    assert convert(schema, {"v": {"null": None}}) == {"v": None}
    assert convert(schema, {"v": {"com.x.Address": {"zip": "1"}}}) == {"v": {"zip": "1"}}
    assert convert(schema, {"v": {"Address": {"zip": "1"}}}) == {"v": {"zip": "1"}}


def test_union_wrapped_form_reports_the_branch_errors() -> None:
    schema = one(["null", "string", ADDRESS])
    assert errors(schema, {"v": {"com.x.Address": {"zip": 1}}}) == [
        ("v.zip", "expected string, got int 1")
    ]
    assert reason(schema, {"string": 5}) == "expected string, got int 5"


def test_union_with_one_branch_for_the_json_type_reports_its_errors() -> None:
    schema = one(["null", ADDRESS])
    assert errors(schema, {"v": {"zip": 5}}) == [("v.zip", "expected string, got int 5")]


def test_union_of_two_records_uses_tuple_notation() -> None:
    schema = one([CARD, TRANSFER])
    datum = convert(schema, {"v": {"iban": "DE00"}})
    assert datum == {"v": ("Transfer", {"iban": "DE00"})}
    assert roundtrip(schema, datum) == datum
    assert (
        reason(schema, {"zip": "1"})
        == "expected one of (Card, Transfer), got object with keys 'zip'"
    )


def test_union_of_record_and_map_writes_the_validated_branch() -> None:
    schema = one([{"type": "map", "values": "string"}, CARD])
    as_card = convert(schema, {"v": {"Card": {"number": "4"}}})
    assert as_card == {"v": ("Card", {"number": "4"})}
    assert write(schema, as_card)[0] == 2  # branch 1, zigzag encoded
    as_map = convert(schema, {"v": {"number": "4"}})  # bare: the first branch that fits
    assert as_map == {"v": ("map", {"number": "4"})}
    assert write(schema, as_map)[0] == 0


def test_union_of_numbers_keeps_the_chosen_branch() -> None:
    schema = one(["int", "long", "float", "double"])
    assert convert(schema, {"v": 5}) == {"v": ("int", 5)}
    assert convert(schema, {"v": 2**40}) == {"v": ("long", 2**40)}
    assert convert(schema, {"v": 1.5}) == {"v": ("float", 1.5)}
    assert convert(schema, {"v": 1e300}) == {"v": ("double", 1e300)}
    assert convert(schema, {"v": {"double": 2}}) == {"v": ("double", 2.0)}
    for datum in ({"v": ("long", 2**40)}, {"v": ("double", 2.0)}):
        assert write(schema, datum)[0] == {"long": 2, "double": 6}[datum["v"][0]]


def test_union_at_top_level() -> None:
    schema = parse_schema(["null", "int", CARD])
    assert compile_converter(schema).convert({"number": "1"}) == ({"number": "1"}, [])
    assert compile_converter(schema).convert("x") == (
        None,
        [FieldError(0, "", "expected one of (null, int, Card), got string 'x'")],
    )


# --- logical types -------------------------------------------------------------------------

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
TS_MICROS = {"type": "long", "logicalType": "timestamp-micros"}
LOCAL_MILLIS = {"type": "long", "logicalType": "local-timestamp-millis"}
LOCAL_MICROS = {"type": "long", "logicalType": "local-timestamp-micros"}
DATE = {"type": "int", "logicalType": "date"}
TIME_MILLIS = {"type": "int", "logicalType": "time-millis"}
TIME_MICROS = {"type": "long", "logicalType": "time-micros"}
UUID = {"type": "string", "logicalType": "uuid"}


def decimal_type(precision: int, scale: int, size: int = 0) -> dict[str, Any]:
    base = {"type": "fixed", "name": f"D{size}", "size": size} if size else {"type": "bytes"}
    return {**base, "logicalType": "decimal", "precision": precision, "scale": scale}


def test_timestamp_millis_takes_ints_and_iso_text_with_a_timezone() -> None:
    schema = one(TS_MILLIS)
    assert convert(schema, {"v": 1714564800000}) == {"v": 1714564800000}
    assert convert(schema, {"v": "2024-05-01T12:00:00Z"}) == {"v": 1714564800000}
    assert convert(schema, {"v": "2024-05-01T14:00:00+02:00"}) == {"v": 1714564800000}
    assert convert(schema, {"v": "2024-05-01T12:00:00.123Z"}) == {"v": 1714564800123}
    assert reason(schema, "2024-05-01T12:00:00") == (
        "expected timestamp-millis (epoch millis, or ISO-8601 text with a timezone), "
        "got string '2024-05-01T12:00:00' (no timezone offset; add Z or +HH:MM)"
    )
    assert reason(schema, "yesterday").endswith(
        "(not an ISO-8601 timestamp such as 2024-05-01T12:00:00Z)"
    )
    assert reason(schema, "2024-05-01T12:00:00.0001Z").endswith("(has digits below a millisecond)")
    assert reason(schema, 2**62).endswith(f"got {2**62} (out of range)")
    assert reason(schema, 1.5).endswith("got float 1.5")


def test_timestamp_micros_is_exact() -> None:
    schema = one(TS_MICROS)
    assert convert(schema, {"v": "1969-12-31T23:59:59.999999Z"}) == {"v": -1}
    datum = convert(schema, {"v": "9999-12-31T23:59:59.999999+00:00"})
    assert roundtrip(schema, datum)["v"] == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert reason(schema, "0001-01-01T00:00:00+01:00").endswith("(outside years 1 to 9999 in UTC)")


def test_offsets_other_than_utc_round_trip() -> None:
    schema = one(TS_MICROS)
    moment = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    assert roundtrip(schema, convert(schema, {"v": moment.isoformat()}))["v"] == moment


def test_local_timestamps_take_text_without_a_timezone() -> None:
    assert convert(one(LOCAL_MILLIS), {"v": "1970-01-01T00:00:01"}) == {"v": 1000}
    assert convert(one(LOCAL_MICROS), {"v": "1970-01-01T00:00:00.000002"}) == {"v": 2}
    assert convert(one(LOCAL_MICROS), {"v": 5}) == {"v": 5}
    assert reason(one(LOCAL_MILLIS), "1970-01-01T00:00:01Z").endswith(
        "(a local timestamp has no timezone offset; drop it)"
    )


def test_date_takes_days_or_yyyy_mm_dd() -> None:
    schema = one(DATE)
    assert convert(schema, {"v": "2024-05-01"}) == {"v": 19844}
    assert convert(schema, {"v": -1}) == {"v": -1}
    assert reason(schema, "2024-02-30") == (
        "expected date (days since 1970-01-01, or YYYY-MM-DD), got string '2024-02-30' "
        "(not a calendar date)"
    )
    assert reason(schema, "20240501").endswith("(not a YYYY-MM-DD date)")
    assert reason(schema, "２０２４-05-01").endswith("(not a YYYY-MM-DD date)")  # fullwidth digits
    assert reason(schema, 3_000_000).endswith("(out of range)")  # past year 9999


def test_times_take_counts_or_hh_mm_ss() -> None:
    assert convert(one(TIME_MILLIS), {"v": "12:34:56.789"}) == {"v": 45296789}
    assert convert(one(TIME_MILLIS), {"v": "00:00:01"}) == {"v": 1000}
    assert convert(one(TIME_MICROS), {"v": "00:00:00.000001"}) == {"v": 1}
    assert convert(one(TIME_MICROS), {"v": 86_399_999_999}) == {"v": 86_399_999_999}
    assert reason(one(TIME_MILLIS), "24:00:00") == (
        "expected time-millis (a count after midnight, or HH:MM:SS[.ffffff]), "
        "got string '24:00:00' (not an HH:MM:SS[.ffffff] time of day)"
    )
    assert reason(one(TIME_MILLIS), "00:00:00.0005").endswith("(has digits below a millisecond)")
    assert reason(one(TIME_MILLIS), 86_400_000).endswith("got 86400000 (out of range)")


def test_decimal_takes_numbers_and_numeric_text_quantized_to_scale() -> None:
    schema = one(decimal_type(6, 2))
    for given_ in (12.5, "12.5", "12.500", 12.50, "1.25e1"):
        datum = convert(schema, {"v": given_})
        assert datum == {"v": Decimal("12.50")}
        assert str(datum["v"]) == "12.50"
    assert str(convert(schema, {"v": 0.1})["v"]) == "0.10"  # not 0.1000000000000000055…
    assert str(convert(schema, {"v": -7})["v"]) == "-7.00"
    assert str(convert(schema, {"v": "-0"})["v"]) == "0.00"
    assert reason(schema, "1.005") == (
        "expected decimal(6, 2) (a JSON number or numeric text), got string '1.005' "
        "(needs 3 digits after the point, scale is 2)"
    )
    assert reason(schema, 12345).endswith("(needs more than the 6 digits of the precision)")
    assert reason(schema, 10**100).endswith("(needs more than the 6 digits of the precision)")
    assert reason(schema, "1e999999999999").endswith(
        "(needs more than the 6 digits of the precision)"
    )
    assert reason(schema, "1e-999999999999").endswith(
        "(needs 999999999999 digits after the point, scale is 2)"
    )
    assert reason(schema, "NaN").endswith("(not a decimal number such as 12.50)")
    assert reason(schema, " 1").endswith("(not a decimal number such as 12.50)")
    assert reason(schema, math.inf).endswith("(not a finite number)")
    assert reason(schema, True).endswith("got bool true")


def test_decimal_on_fixed_must_fit_its_bytes() -> None:
    schema = one(decimal_type(4, 1, size=2))
    datum = convert(schema, {"v": "-999.9"})
    assert roundtrip(schema, datum) == {"v": Decimal("-999.9")}
    assert roundtrip(schema, convert(schema, {"v": 999.9})) == {"v": Decimal("999.9")}


def test_decimal_round_trips_at_full_precision() -> None:
    schema = one(decimal_type(38, 10))
    text = "1234567890123456789012345678.0123456789"
    assert roundtrip(schema, convert(schema, {"v": text})) == {"v": Decimal(text)}


def test_uuid_is_validated_and_lowercased() -> None:
    schema = one(UUID)
    text = "123E4567-E89B-12D3-A456-426614174000"
    assert convert(schema, {"v": text}) == {"v": text.lower()}
    assert reason(schema, "123e4567e89b12d3a456426614174000").endswith(
        "(not a UUID such as 123e4567-e89b-12d3-a456-426614174000)"
    )


def test_unknown_and_invalid_logical_types_fall_back_to_the_base_type() -> None:
    assert convert(one({"type": "string", "logicalType": "colour"}), {"v": "x"}) == {"v": "x"}
    assert convert(one({"type": "int", "logicalType": "uuid"}), {"v": 5}) == {"v": 5}
    with warnings.catch_warnings():  # Apache Avro warns about the ignored logical type
        warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
        no_precision = one({"type": "bytes", "logicalType": "decimal", "precision": 0})
    datum = convert(no_precision, {"v": "\u00ff"})
    assert datum == {"v": b"\xff"}
    assert write(no_precision, datum) == b"\x02\xff"


# --- names, namespaces, recursion -------------------------------------------------------------


def test_named_types_are_found_by_full_and_short_name() -> None:
    schema = parse_schema(
        {
            "type": "record",
            "name": "Order",
            "namespace": "com.shop",
            "fields": [
                field("billing", ADDRESS),  # defines com.x.Address
                field("shipping", "com.x.Address"),
                field("item", {"type": "record", "name": "Item", "fields": [field("n", "int")]}),
                field("again", "Item"),  # short name in the enclosing namespace com.shop
                field("other", {"type": "record", "name": "a.b.Item", "fields": []}),
                field("choice", ["Item", "a.b.Item"]),
            ],
        }
    )
    value = {
        "billing": {"zip": "1"},
        "shipping": {"zip": "2"},
        "item": {"n": 1},
        "again": {"n": 2},
        "other": {},
        "choice": {"a.b.Item": {}},
    }
    datum = convert(schema, value)
    assert datum["choice"] == ("a.b.Item", {})
    assert roundtrip(schema, datum)["choice"] == ("a.b.Item", {})
    assert convert(schema, {**value, "choice": {"n": 3}})["choice"] == ("com.shop.Item", {"n": 3})
    assert errors(schema, {**value, "shipping": {"zip": 3}}) == [
        ("shipping.zip", "expected string, got int 3")
    ]


LINKED = {
    "type": "record",
    "name": "Node",
    "fields": [field("value", "int"), field("next", ["null", "Node"], default=None)],
}


def test_recursive_linked_list() -> None:
    schema = parse_schema(LINKED)
    value = {"value": 1, "next": {"value": 2, "next": {"value": 3}}}
    datum = convert(schema, value)
    assert roundtrip(schema, datum) == {
        "value": 1,
        "next": {"value": 2, "next": {"value": 3, "next": None}},
    }
    bad = {"value": 1, "next": {"value": 2, "next": {"value": "3"}}}
    assert errors(schema, bad) == [("next.next.value", "expected int (32-bit), got string '3'")]


def test_top_level_schema_can_be_any_type() -> None:
    ints = compile_converter(parse_schema({"type": "array", "items": "int"}))
    assert ints.convert([1, 2]) == ([1, 2], [])
    assert ints.convert([1, "2"], index=4) == (
        None,
        [FieldError(4, "[1]", "expected int (32-bit), got string '2'")],
    )
    assert compile_converter(parse_schema('"string"')).convert(1) == (
        None,
        [FieldError(0, "", "expected string, got int 1")],
    )


# --- the public API -------------------------------------------------------------------------


def test_convert_many_and_validate_records_index_every_error() -> None:
    values = [{"id": 1, "name": "a", "price": 1}, {"id": "x"}, {"id": 2, "name": "b", "price": 2}]
    data, errs = compile_converter(PRODUCT).convert_many(values)
    assert data[0] == {"id": 1, "name": "a", "price": 1.0}
    assert data[1] is None
    assert [(e.index, e.path) for e in errs] == [(1, "id"), (1, "name"), (1, "price")]
    with pytest.raises(RecordValidationError) as caught:
        validate_records(PRODUCT, values)
    assert caught.value.errors == errs
    assert "indexes [1]" in caught.value.message
    assert validate_records(PRODUCT, [values[0], values[2]]) == [data[0], data[2]]


def test_converter_is_compiled_once_per_schema() -> None:
    first = compile_converter(parse_schema(LINKED))
    again = compile_converter(parse_schema(dict(reversed(list(LINKED.items())))))
    assert isinstance(first, RecordConverter)
    assert first is again
    assert not hasattr(first, "__dict__")


def test_subclasses_of_json_types_from_python_callers_are_accepted() -> None:
    class Level(IntEnum):
        HIGH = 3

    class Name(str):
        pass

    value = OrderedDict([("id", Level.HIGH), ("name", Name("x")), ("price", 1.5)])
    datum = convert(PRODUCT, value)
    assert datum == {"id": 3, "name": "x", "price": 1.5}
    assert type(datum["id"]) is int
    assert write(PRODUCT, datum)


WEIRD = {
    "object": object(),
    "set": {1, 2},
    "bytes": b"bytes",
    "decimal": Decimal("1"),
    "datetime": datetime(2024, 1, 1, tzinfo=UTC),
    "tuple": (1, 2),
    "nan": math.nan,
    "huge int": 10**5000,
}


@pytest.mark.parametrize("weird", WEIRD.values(), ids=WEIRD.keys())
def test_weird_python_values_are_errors_not_crashes(weird: Any) -> None:
    with pytest.raises(RecordValidationError) as caught:
        validate_records(PRODUCT, [{"id": weird, "name": weird, "price": weird}, weird])
    assert {e.index for e in caught.value.errors} == {0, 1}


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    schema = parse_schema(LINKED)
    value: dict[str, Any] = {"value": 0}
    for i in range(5000):
        value = {"value": i, "next": value}
    with pytest.raises(RecordValidationError) as caught:
        validate_records(schema, [value])
    [error] = caught.value.errors
    assert error.path == "" and "nested too deeply" in error.reason


# --- a rich schema: round trip and properties ---------------------------------------------------

RICH = parse_schema(
    {
        "type": "record",
        "name": "Order",
        "namespace": "com.shop",
        "fields": [
            field("id", "long"),
            field("customer", "string"),
            field("active", "boolean"),
            field("quantity", "int"),
            field("weight", "float"),
            field("total", "double"),
            field("blob", "bytes"),
            field(
                "address",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        field("street", "string"),
                        field("zip", ["null", "string"], default=None),
                    ],
                },
            ),
            field(
                "items",
                {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Item",
                        "fields": [field("sku", "string"), field("price", decimal_type(9, 2))],
                    },
                },
            ),
            field("tags", {"type": "map", "values": "string"}),
            field(
                "colour", {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN", "BLUE"]}
            ),
            field("checksum", {"type": "fixed", "name": "Checksum", "size": 4}),
            field(
                "payment",
                [
                    {"type": "record", "name": "Card", "fields": [field("number", "string")]},
                    {
                        "type": "record",
                        "name": "Transfer",
                        "namespace": "com.bank",
                        "fields": [field("iban", "string")],
                    },
                ],
            ),
            field("created", TS_MILLIS),
            field("updated", TS_MICROS),
            field("local_created", LOCAL_MILLIS),
            field("local_updated", LOCAL_MICROS),
            field("day", DATE),
            field("opens", TIME_MILLIS),
            field("closes", TIME_MICROS),
            field("discount", decimal_type(6, 3, size=4)),
            field("order_id", UUID),
            field("chain", LINKED),
            field("note", ["null", "string", "long"], default=None),
        ],
    }
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_rich_schema_round_trip() -> None:
    order_id = uuid.uuid4()
    value = {
        "id": 2**40,
        "customer": "Zoë",
        "active": True,
        "quantity": -3,
        "weight": 0.5,
        "total": 19.99,
        "blob": "\u0001\u00fe",
        "address": {"street": "Main St 1"},
        "items": [{"sku": "A", "price": "9.99"}, {"sku": "B", "price": 10}],
        "tags": {"gift": "yes"},
        "colour": "BLUE",
        "checksum": "\u00de\u00ad\u00be\u00ef",
        "payment": {"com.bank.Transfer": {"iban": "DE00"}},
        "created": "2024-05-01T12:00:00.250+02:00",
        "updated": 1_714_564_800_000_001,
        "local_created": "2024-05-01T12:00:00",
        "local_updated": "2024-05-01T12:00:00.000007",
        "day": "2024-02-29",
        "opens": "08:30:00",
        "closes": "17:45:30.5",
        "discount": "-0.125",
        "order_id": str(order_id).upper(),
        "chain": {"value": 1, "next": {"value": 2, "next": None}},
        "note": {"long": 7},
    }
    assert roundtrip(RICH, convert(RICH, value)) == {
        "id": 2**40,
        "customer": "Zoë",
        "active": True,
        "quantity": -3,
        "weight": 0.5,
        "total": 19.99,
        "blob": b"\x01\xfe",
        "address": {"street": "Main St 1", "zip": None},
        "items": [{"sku": "A", "price": Decimal("9.99")}, {"sku": "B", "price": Decimal("10")}],
        "tags": {"gift": "yes"},
        "colour": "BLUE",
        "checksum": b"\xde\xad\xbe\xef",
        "payment": ("com.bank.Transfer", {"iban": "DE00"}),
        "created": datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC),
        "updated": datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC),
        "local_created": datetime(2024, 5, 1, 12),  # noqa: DTZ001 - local timestamps are naive
        "local_updated": datetime(2024, 5, 1, 12, 0, 0, 7),  # noqa: DTZ001
        "day": date(2024, 2, 29),
        "opens": time(8, 30),
        "closes": time(17, 45, 30, 500000),
        "discount": Decimal("-0.125"),
        "order_id": order_id,
        "chain": {"value": 1, "next": {"value": 2, "next": None}},
        "note": 7,
    }


# Strategies: (JSON input, value fastavro reads back) pairs for each field of RICH.


def pairs(strategy: st.SearchStrategy[Any], to_json: Any = None, read: Any = None) -> Any:
    """(JSON input, read-back value) pairs: ``to_json`` lists the ways to write a value."""
    encoders = st.sampled_from(to_json) if to_json else st.just(lambda x: x)
    return st.tuples(strategy, encoders).map(lambda p: (p[1](p[0]), read(p[0]) if read else p[0]))


def whole_millis(moment: Any) -> Any:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def ticks(moment: datetime, unit: int) -> int:
    base = EPOCH if moment.tzinfo else EPOCH.replace(tzinfo=None)
    return (moment - base) // timedelta(microseconds=unit)


def day_ticks(moment: time, unit: int) -> int:
    micros = ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 10**6 + moment.microsecond
    return micros // unit


def decimals(precision: int, scale: int) -> st.SearchStrategy[Decimal]:
    bound = Decimal(10**precision - 1).scaleb(-scale)
    return st.decimals(-bound, bound, places=scale, allow_nan=False, allow_infinity=False)


def records_of(**fields: Any) -> Any:
    """A strategy of (json, read-back) record pairs from per-field pair strategies."""
    return st.fixed_dictionaries(fields).map(
        lambda chosen: ({k: v[0] for k, v in chosen.items()}, {k: v[1] for k, v in chosen.items()})
    )


def linked(values: list[int]) -> tuple[Any, Any]:
    node: Any = None
    for v in reversed(values):
        node = {"value": v, "next": node}
    return node, node


aware = st.datetimes(
    min_value=datetime(1, 1, 2),  # noqa: DTZ001 - bounds of a naive range, made aware below
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)
naive = st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59))  # noqa: DTZ001
iso_z = [lambda d: d.isoformat(), lambda d: d.isoformat().replace("+00:00", "Z")]
item = records_of(
    sku=pairs(st.text()),
    price=pairs(decimals(9, 2), [str, float, lambda d: f"{d:e}"]),
)
address = st.tuples(pairs(st.text()), st.one_of(st.none(), pairs(st.none() | st.text()))).map(
    lambda p: (
        {"street": p[0][0]} | ({} if p[1] is None else {"zip": p[1][0]}),
        {"street": p[0][1], "zip": None if p[1] is None else p[1][1]},
    )
)
card = pairs(st.text()).map(lambda p: ({"number": p[0]}, ("com.shop.Card", {"number": p[1]})))
transfer = pairs(st.text()).map(lambda p: ({"iban": p[0]}, ("com.bank.Transfer", {"iban": p[1]})))
payment = st.one_of(
    card,
    transfer,
    card.map(lambda p: ({"Card": p[0]}, p[1])),
    transfer.map(lambda p: ({"com.bank.Transfer": p[0]}, p[1])),
)
note = st.one_of(
    pairs(st.none()),
    pairs(st.text()),
    pairs(st.integers(-(2**63), 2**63 - 1)),
    pairs(st.text(), [lambda s: {"string": s}]),
    pairs(st.integers(0, 9), [lambda n: {"long": n}]),
)
valid_orders = records_of(
    id=pairs(st.integers(-(2**63), 2**63 - 1)),
    customer=pairs(st.text()),
    active=pairs(st.booleans()),
    quantity=pairs(st.integers(-(2**31), 2**31 - 1)),
    weight=pairs(st.floats(width=32, allow_nan=False, allow_infinity=False)),
    total=pairs(
        st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        read=float,
    ),
    blob=pairs(st.binary(), [lambda b: b.decode("latin-1")]),
    address=address,
    items=st.lists(item, max_size=3).map(lambda ps: ([p[0] for p in ps], [p[1] for p in ps])),
    tags=st.dictionaries(st.text(), st.text(), max_size=3).map(lambda d: (d, d)),
    colour=pairs(st.sampled_from(["RED", "GREEN", "BLUE"])),
    checksum=pairs(st.binary(min_size=4, max_size=4), [lambda b: b.decode("latin-1")]),
    payment=payment,
    created=pairs(aware.map(whole_millis), [*iso_z, lambda d: ticks(d, 1000)]),
    updated=pairs(aware, [*iso_z, lambda d: ticks(d, 1)]),
    local_created=pairs(naive.map(whole_millis), [datetime.isoformat, lambda d: ticks(d, 1000)]),
    local_updated=pairs(naive, [datetime.isoformat, lambda d: ticks(d, 1)]),
    day=pairs(st.dates(), [date.isoformat, lambda d: (d - date(1970, 1, 1)).days]),
    opens=pairs(st.times().map(whole_millis), [time.isoformat, lambda t: day_ticks(t, 1000)]),
    closes=pairs(st.times(), [time.isoformat, lambda t: day_ticks(t, 1)]),
    discount=pairs(decimals(6, 3), [str, float]),
    order_id=pairs(st.uuids(), [str, lambda u: str(u).upper()]),
    chain=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=5).map(linked),
    note=note,
)


@PROPERTY
@given(valid_orders)
def test_valid_records_convert_and_round_trip(order: tuple[dict[str, Any], Any]) -> None:
    value, expected = order
    [datum] = validate_records(RICH, [value])
    assert roundtrip(RICH, datum) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["2024-05-01", "12:00:00", "2024-05-01T00:00:00Z", "1.5", "RED"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=3)
            | st.sampled_from(["id", "value", "next", "null", "string", "long"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)
LOOSE = [
    RICH,
    parse_schema(LINKED),
    parse_schema(
        ["null", "boolean", "int", "float", "string", {"type": "array", "items": "double"}]
    ),
    parse_schema({"type": "map", "values": ["null", "long", "double", "string", "bytes"]}),
    parse_schema({"type": "array", "items": ["null", TS_MILLIS, DATE, UUID, decimal_type(5, 2)]}),
]


def assert_never_crashes(schema: AvroSchema, values: list[Any]) -> None:
    try:
        data = validate_records(schema, values)
    except RecordValidationError as exc:
        assert exc.errors
        assert {e.index for e in exc.errors} <= set(range(len(values)))
        return
    for datum in data:
        roundtrip(schema, datum)  # writes, and reads back


@PROPERTY
@given(st.sampled_from(LOOSE), st.lists(json_values, min_size=1, max_size=3))
def test_random_json_is_converted_or_refused_never_crashes(
    schema: AvroSchema, values: list[Any]
) -> None:
    assert_never_crashes(schema, values)


@PROPERTY
@given(valid_orders, st.sampled_from([f["name"] for f in RICH.json["fields"]]), json_values)
def test_a_valid_record_with_one_random_field_never_crashes(
    order: tuple[dict[str, Any], Any], name: str, replacement: Any
) -> None:
    value = {**order[0], name: replacement}
    assert_never_crashes(RICH, [value])
