"""Compatibility rules against Apache Avro's and Confluent's own test cases (pure logic).

The same cases also go through the registry's HTTP API in tests/app/test_registry_vectors.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.compatibility import Compatibility, can_read, incompatibilities
from onepipe.schemas.errors import InvalidCompatibilityError
from tests.fixtures.paths import SHARED

VECTORS = json.loads(
    (SHARED / "testdata" / "avro_compat_vectors.json")
    .read_text()
)


def _parse(schema_json: Any) -> AvroSchema:
    # Vectors hold schemas as JSON data; a bare "int" is JSON data too, so send it as text.
    return parse_schema(json.dumps(schema_json))


def _id(case: dict[str, Any]) -> str:
    return str(case["id"])


@pytest.mark.parametrize("case", VECTORS["pairs"], ids=_id)
def test_reader_writer_pairs(case: dict[str, Any]) -> None:
    reader, writer = _parse(case["reader"]), _parse(case["writer"])
    reasons = can_read(reader, writer)
    assert (not reasons) is case["compatible"], reasons


@pytest.mark.parametrize("case", VECTORS["sequences"], ids=_id)
def test_mode_sequences(case: dict[str, Any]) -> None:
    existing = [_parse(s) for s in case["existing"]]
    reasons = incompatibilities(_parse(case["new"]), existing, Compatibility(case["mode"]))
    assert (not reasons) is case["compatible"], reasons


def test_level_parse_is_case_insensitive_and_refuses_unknown_levels() -> None:
    assert Compatibility.parse("full_transitive") is Compatibility.FULL_TRANSITIVE
    with pytest.raises(InvalidCompatibilityError, match="use one of BACKWARD"):
        Compatibility.parse("SIDEWAYS")


def test_none_accepts_anything_and_transitive_checks_every_version() -> None:
    v1 = parse_schema({"type": "record", "name": "r", "fields": [{"name": "a", "type": "int"}]})
    v2 = parse_schema({"type": "record", "name": "r", "fields": [
        {"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}]})
    v3 = parse_schema({"type": "record", "name": "r", "fields": [
        {"name": "b", "type": "int", "default": 0}, {"name": "c", "type": "string"}]})
    assert incompatibilities(v3, [v1, v2], Compatibility.NONE) == []
    # v3 adds a field without a default: it cannot read v2 or v1 data.
    assert incompatibilities(v3, [v1, v2], Compatibility.BACKWARD)
    # v2 -> v3 under FORWARD: v2 reads v3 data? v2 needs `a`, v3 lacks it and v2 has no default.
    assert incompatibilities(v3, [v2], Compatibility.FORWARD)
    ok = parse_schema({"type": "record", "name": "r", "fields": [
        {"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0},
        {"name": "c", "type": "string", "default": ""}]})
    assert incompatibilities(ok, [v1, v2], Compatibility.FULL_TRANSITIVE) == []
