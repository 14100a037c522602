"""SchemaLimits: what a caller may register, measured without recursion; and the replay's
fixed limits, which make a stored poison pill skipped alike on every worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.errors import SchemaError
from onepipe.schemas.registry_state import Decision, RegistryState
from onepipe.schemas.schema_limits import REPLAY_LIMITS, SchemaLimits

LIMITS = SchemaLimits()


def nested_arrays(depth: int) -> dict[str, Any]:
    inner: Any = "string"
    for _ in range(depth):
        inner = {"type": "array", "items": inner}
    return {"type": "record", "name": "Deep", "fields": [{"name": "f", "type": inner}]}


def check(schema: Any, limits: SchemaLimits = LIMITS) -> None:
    text = json.dumps(schema)
    limits.check(text, json.loads(text))


def test_real_schemas_pass() -> None:
    check({"type": "record", "name": "Order", "namespace": "com.acme.v_2",
           "aliases": ["Old", "x.Older"],
           "fields": [{"name": "_id", "type": "string", "aliases": ["id0"]},
                      {"name": "items", "type": {"type": "array", "items": {
                          "type": "record", "name": "Item", "fields": [
                              {"name": "sku", "type": "string"}]}}},
                      {"name": "status", "type": {"type": "enum", "name": "S",
                                                  "symbols": ["A"]}},
                      {"name": "note", "type": ["null", "string"], "default": None}]})
    check(nested_arrays(61))
    check({"type": "record", "name": "Wide", "fields": [  # every field optional
        {"name": f"f{i}", "type": ["null", "long"], "default": None} for i in range(2_000)]})
    check("string")
    check(["null", "long"])


@pytest.mark.parametrize(("schema", "fragment"), [
    (nested_arrays(62), "ONEPIPE_MAX_SCHEMA_DEPTH"),
    ({"type": "record", "name": "W", "fields": [
        {"name": f"f{i}", "type": "int"} for i in range(2_001)]}, "ONEPIPE_MAX_SCHEMA_FIELDS"),
    ({"type": "record", "name": "U", "fields": [{"name": "u", "type": [
        {"type": "record", "name": f"R{i}", "fields": []} for i in range(101)]}]},
     "ONEPIPE_MAX_SCHEMA_UNION"),
    ([{"type": "fixed", "name": f"F{i}", "size": 1} for i in range(101)],
     "ONEPIPE_MAX_SCHEMA_UNION"),
    ({"type": "record", "name": "M", "fields": [
        {"name": f"f{i}", "type": [{"type": "record", "name": f"R{i}x{j}", "fields": []}
                                   for j in range(90)]} for i in range(23)]},
     "fields and wide-union branches"),
    ({"type": "record", "name": "B", "doc": "x" * 600_000, "fields": []},
     "ONEPIPE_MAX_SCHEMA_BYTES"),
    ({"type": "record", "name": "1bad", "fields": []}, "record name '1bad'"),
    ({"type": "record", "name": "R", "fields": [{"name": "a\x00b", "type": "int"}]},
     "field name"),
    ({"type": "record", "name": "R", "fields": [{"name": "a.b", "type": "int"}]}, "'a.b'"),
    ({"type": "enum", "name": "E", "namespace": "ok.1no", "symbols": ["A"]}, "namespace"),
    ({"type": "fixed", "name": "F", "size": 2, "aliases": ["a-b"]}, "alias"),
    ({"type": "record", "name": "R", "fields": [
        {"name": "x", "type": "int", "aliases": ["b c"]}]}, "alias of field"),
    # A default nested deep overflows a parser as surely as a type.
    ({"type": "record", "name": "R", "fields": [
        {"name": "x", "type": "string", "default": json.loads("[" * 80 + "]" * 80)}]},
     "ONEPIPE_MAX_SCHEMA_DEPTH"),
])
def test_each_limit_is_refused_with_its_setting(schema: Any, fragment: str) -> None:
    with pytest.raises(SchemaError) as info:
        check(schema)
    assert fragment in info.value.message


def test_the_walk_never_recurses() -> None:
    """100,000 levels: a recursive walk would raise RecursionError, this one refuses."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SchemaError, match="ONEPIPE_MAX_SCHEMA_DEPTH"):
        LIMITS.check("[]", deep)


def test_parse_schema_applies_limits_only_when_given() -> None:
    bad_name = {"type": "record", "name": "R", "fields": [{"name": "a-b", "type": "int"}]}
    assert parse_schema(bad_name).field_names() == ["a-b"]  # stored before: still parses
    with pytest.raises(SchemaError, match="a-b"):
        parse_schema(bad_name, LIMITS)


def poison(schema_id: int, subject: str = "p-value") -> dict[str, Any]:
    return {"type": "schema", "subject": subject, "version": 1, "id": schema_id,
            "schema": json.dumps(nested_arrays(321)), "basis": -1}


def at_depth(frames: int, fn: Any) -> Any:
    """``fn()`` called under ``frames`` extra stack frames (a worker's start is deep)."""
    return fn() if frames == 0 else at_depth(frames - 1, fn)


@pytest.mark.parametrize("frames", [0, 600])
def test_a_stored_poison_pill_is_skipped_alike_at_any_stack_depth(frames: int) -> None:
    state = RegistryState()
    assert at_depth(frames, lambda: state.apply(0, poison(1))) is False
    assert state.unreadable[1][0] == 0
    assert "ONEPIPE_MAX_SCHEMA_DEPTH" in state.unreadable[1][1]
    # The id stays taken: the next schema gets 2, and a decision that reuses 1 loses.
    good = parse_schema({"type": "record", "name": "G", "fields": []})
    decision = state.decide_register("g-value", good)
    assert isinstance(decision, Decision)
    assert decision.value["id"] == 2
    stolen = {**decision.value, "id": 1}
    assert state.apply(1, stolen) is False
    assert state.apply(2, decision.value) is True
    assert state.schemas_by_id[2] is not None


def test_replay_limits_accept_what_the_door_refuses_within_reason() -> None:
    """Stored under a looser limit (or before limits existed): still loads."""
    check({"type": "record", "name": "R", "fields": [
        {"name": f"f-{i}", "type": "int"} for i in range(5_000)]}, REPLAY_LIMITS)
    check(nested_arrays(97), REPLAY_LIMITS)
    with pytest.raises(SchemaError):
        check(nested_arrays(98), REPLAY_LIMITS)


@pytest.mark.parametrize("value", [
    {"type": "schema", "subject": "s", "version": 1, "id": 1, "schema": "{"},
    {"type": "schema", "subject": "s", "version": 1, "id": 1, "schema": '"nope"'},
    {"type": "schema", "subject": ["s"], "version": "1", "id": None, "schema": 5},
    {"type": "config", "subject": 5, "compatibility": "x"},
    {"type": "metadata", "topic": "t", "metadata": {"key": 5}},
    {"type": "future-kind", "anything": [1, 2]},
    {},
])
def test_apply_never_raises_on_a_bad_record(value: dict[str, Any]) -> None:
    state = RegistryState()
    assert state.apply(7, value) is False
    assert state.applied_offset == 7
