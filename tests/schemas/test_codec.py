"""Confluent framing, schema evolution on decode, and deterministic keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.codec import KeyEncoder, decode, encode, frame, schema_id_of, unframe
from onepipe.schemas.errors import CodecError

V1 = parse_schema({"type": "record", "name": "W", "namespace": "t", "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "int"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
]})
V2 = parse_schema({"type": "record", "name": "W", "namespace": "t", "fields": [
    {"name": "id", "type": "string"},
    {"name": "n", "type": "int"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "note", "type": "string", "default": "none"},
]})
BY_ID = {1: V1, 2: V2}


def test_frame_is_magic_byte_and_big_endian_id() -> None:
    assert frame(258, b"xy") == b"\x00\x00\x00\x01\x02xy"
    schema_id, body = unframe(b"\x00\x00\x00\x01\x02xy")
    assert (schema_id, bytes(body)) == (258, b"xy")


def test_a_header_beyond_int32_reads_as_an_id_no_registry_holds() -> None:
    # Read as Java's getInt reads it: negative, never an id the raw lake cannot store.
    value = b"\x00\x80\x00\x00\x00body"
    assert schema_id_of(value) == unframe(value)[0] == -(2**31)
    assert schema_id_of(b"\x00\xff\xff\xff\xff") == -1


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x00\x00\x01abc", "magic 0x00"),
])
def test_unframe_rejects_what_is_not_confluent_framed(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        unframe(data)


def test_decode_reads_old_data_with_new_schema_and_new_data_with_old() -> None:
    widened = parse_schema({**V1.json, "fields": [
        {"name": "id", "type": "string"}, {"name": "n", "type": "long"}, V1.json["fields"][2]]})
    assert decode(encode(1, V1, {"id": "a", "n": 7, "kind": "B"}), BY_ID.__getitem__,
                  widened)[1]["n"] == 7  # int promoted to long
    old = encode(1, V1, {"id": "a", "n": 7, "kind": "B"})
    assert decode(old, BY_ID.__getitem__, V2) == (1, {"id": "a", "n": 7, "kind": "B",
                                                        "note": "none"})
    new = encode(2, V2, {"id": "a", "n": 7, "kind": "A", "note": "x"})
    assert decode(new, BY_ID.__getitem__, V1) == (2, {"id": "a", "n": 7, "kind": "A"})


def test_decode_of_truncated_body_is_a_codec_error() -> None:
    data = encode(1, V1, {"id": "abcdef", "n": 7, "kind": "B"})
    with pytest.raises(CodecError, match="schema id 1"):
        decode(data[:7], BY_ID.__getitem__)


def test_key_uses_listed_fields_in_order_and_ignores_the_rest() -> None:
    keys = KeyEncoder(V1, ["kind", "id"])
    one = keys.encode({"id": "a", "n": 1, "kind": "B"})
    assert one == keys.encode({"id": "a", "n": 999, "kind": "B"})
    assert one != keys.encode({"id": "b", "n": 1, "kind": "B"})
    assert keys.decode(one) == {"kind": "B", "id": "a"}


def test_key_fields_must_exist() -> None:
    with pytest.raises(CodecError, match="missing"):
        KeyEncoder(V1, ["missing"])


@given(st.text(), st.integers(-(2**31), 2**31 - 1), st.sampled_from(["A", "B"]))
def test_round_trip_and_key_determinism(ident: str, n: int, kind: str) -> None:
    datum: dict[str, Any] = {"id": ident, "n": n, "kind": kind}
    assert decode(encode(1, V1, datum), BY_ID.__getitem__) == (1, datum)
    keys = KeyEncoder(V2, ["id"])
    assert keys.encode(datum) == KeyEncoder(V1, ["id"]).encode(dict(datum))
