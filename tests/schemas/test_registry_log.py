"""The registry log with deletes, levels and modes: replay is deterministic and ids are
never given to another schema, for every sequence of decisions (hypothesis), plus the
delete and mode rules one by one, and Avro normalization."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import (
    InvalidModeError,
    NotFoundError,
    OnepipeError,
    OperationNotPermittedError,
)
from onepipe.schemas.registry import decide
from onepipe.schemas.registry.modes import Mode
from onepipe.schemas.registry.normalize import normalize_json, normalized_identity
from onepipe.schemas.registry_state import Decision, RegistryState


def _schema(n: int) -> str:
    """Schemas that all read each other (one optional field each), so any order registers."""
    return ('{"type":"record","name":"r","fields":[{"name":"f' + str(n)
            + '","type":"string","default":""}]}')


SCHEMAS = [parse_schema(_schema(n)) for n in range(4)]
SUBJECTS = ["a", "b", "t-value"]


def snapshot(state: RegistryState) -> dict[str, Any]:
    return {
        "schemas": {i: s.identity for i, s in state.schemas_by_id.items()},
        "histories": {s: (dict(h.ids), sorted(h.deleted)) for s, h in state.histories.items()},
        "subjects": dict(state.subjects),
        "configs": dict(state.configs),
        "modes": dict(state.modes),
        "topics": sorted(state.topics),
    }


def register(state: RegistryState, subject: str, schema_index: int) -> Decision | None:
    outcome = state.decide_register(subject, SCHEMAS[schema_index], check=False)
    return outcome if isinstance(outcome, Decision) else None


OPS = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(SUBJECTS), st.integers(0, 3)),
    st.tuples(st.just("delete_subject"), st.sampled_from(SUBJECTS), st.booleans()),
    st.tuples(st.just("delete_version"), st.sampled_from(SUBJECTS), st.integers(1, 5),
              st.booleans()),
    st.tuples(st.just("config"), st.sampled_from([None, *SUBJECTS]),
              st.sampled_from([None, "NONE", "FULL"])),
    st.tuples(st.just("mode"), st.sampled_from([None, *SUBJECTS]),
              st.sampled_from([None, "READONLY", "READWRITE"])),
    st.tuples(st.just("stale"), st.integers(0, 30)),  # a decision replayed later (a loser)
)


def decision_for(state: RegistryState, op: tuple[Any, ...], log: list[dict[str, Any]]
                 ) -> dict[str, Any] | None:
    """What a writer would append for ``op`` now; None when it refuses (Confluent error)."""
    kind = op[0]
    try:
        if kind == "register":
            decision = register(state, op[1], op[2])
        elif kind == "delete_subject":
            decision = decide.delete_subject(state, op[1], permanent=op[2])[0]
        elif kind == "delete_version":
            decision = decide.delete_version(state, op[1], op[2], permanent=op[3])[0]
        elif kind == "config":
            level = Compatibility.parse(op[2]) if op[2] else None
            decision = decide.set_config(state, op[1], level)
        elif kind == "mode":
            decision = decide.set_mode(op[1], Mode.parse(op[2]) if op[2] else None)
        else:
            return log[op[1] % len(log)] if log else None
    except OnepipeError:
        return None
    return decision.value if decision is not None else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=40))
def test_replay_is_deterministic_and_ids_are_never_reused(ops: list[tuple[Any, ...]]) -> None:
    state = RegistryState()
    log: list[dict[str, Any]] = []
    state.apply(0, {"type": "metadata", "topic": "t", "metadata": {"key": ["f0"]}})
    log.append({"type": "metadata", "topic": "t", "metadata": {"key": ["f0"]}})
    ever: dict[int, str] = {}
    for op in ops:
        value = decision_for(state, op, log)
        if value is None:
            continue
        log.append(value)
        state.apply(len(log) - 1, value)
        for schema_id, schema in state.schemas_by_id.items():
            # An id names one schema forever, and stays answerable whatever was deleted.
            assert ever.setdefault(schema_id, schema.identity) == schema.identity
        assert set(ever) <= set(state.schemas_by_id)
        assert len(set(state.id_by_identity.values())) == len(state.id_by_identity)
        # Live versions are a subset of the history; soft-deleted ones are in it.
        for subject, history in state.histories.items():
            assert history.deleted <= set(history.ids)
            assert state.subjects.get(subject, []) == [history.ids[v] for v in history.live()]
    replayed = RegistryState()
    for offset, value in enumerate(log):
        replayed.apply(offset, value)
    assert snapshot(replayed) == snapshot(state)


def apply_all(state: RegistryState, *decisions: Decision | dict[str, Any]) -> None:
    for d in decisions:
        state.apply(state.applied_offset + 1, d.value if isinstance(d, Decision) else d)


def registered(state: RegistryState, subject: str, index: int) -> int:
    decision = register(state, subject, index)
    assert decision is not None
    apply_all(state, decision)
    return state.version(subject, "latest").schema_id


def test_soft_then_permanent_subject_delete_in_confluents_order() -> None:
    state = RegistryState()
    first, second = registered(state, "s", 0), registered(state, "s", 1)
    with pytest.raises(NotFoundError) as not_soft:
        decide.delete_subject(state, "s", permanent=True)
    assert not_soft.value.error_code == 40405
    decision, versions = decide.delete_subject(state, "s", permanent=False)
    assert versions == [1, 2]
    apply_all(state, decision)
    assert state.subject_names() == [] and state.subject_names(deleted=True) == ["s"]
    with pytest.raises(NotFoundError) as gone:
        state.versions("s")
    assert gone.value.error_code == 40401
    assert state.versions("s", deleted=True) == [1, 2]
    with pytest.raises(NotFoundError) as again:
        decide.delete_subject(state, "s", permanent=False)
    assert again.value.error_code == 40404
    # Re-registering after a soft delete continues the numbering and keeps the id.
    assert registered(state, "s", 1) == second
    assert state.versions("s", deleted=True) == [1, 3]  # v2 superseded by v3 (same id)
    decision, _ = decide.delete_subject(state, "s", permanent=False)
    apply_all(state, decision)
    decision, versions = decide.delete_subject(state, "s", permanent=True)
    assert versions == [1, 3]
    apply_all(state, decision)
    assert "s" not in state.histories
    # Ids stay: answerable by id, and the same schema gets the same id again, at version 1.
    assert state.schema_by_id(first).identity == SCHEMAS[0].identity
    assert registered(state, "s", 0) == first
    assert state.versions("s") == [1]


def test_version_deletes_and_their_codes() -> None:
    state = RegistryState()
    registered(state, "s", 0)
    registered(state, "s", 1)
    with pytest.raises(NotFoundError) as not_soft:
        decide.delete_version(state, "s", 1, permanent=True)
    assert not_soft.value.error_code == 40407
    decision, number = decide.delete_version(state, "s", "latest", permanent=False)
    assert number == 2
    apply_all(state, decision)
    assert state.version("s", "latest").version == 1
    assert state.version("s", 2, deleted=True).version == 2
    with pytest.raises(NotFoundError) as hidden:
        state.version("s", 2)
    assert hidden.value.error_code == 40402
    with pytest.raises(NotFoundError) as soft_again:
        decide.delete_version(state, "s", 2, permanent=False)
    assert soft_again.value.error_code == 40406
    with pytest.raises(NotFoundError) as missing:
        decide.delete_version(state, "s", 7, permanent=False)
    assert missing.value.error_code == 40402
    apply_all(state, decide.delete_version(state, "s", 2, permanent=True)[0])
    assert state.versions("s", deleted=True) == [1]
    assert registered(state, "s", 2) and state.versions("s") == [1, 2]  # 2 is free again


def test_a_topic_subject_keeps_its_last_live_version() -> None:
    state = RegistryState()
    apply_all(state, {"type": "metadata", "topic": "t", "metadata": {"key": ["f0"]}})
    registered(state, "t-value", 0)
    registered(state, "t-value", 1)
    apply_all(state, decide.delete_version(state, "t-value", 1, permanent=False)[0])
    for attempt in (lambda: decide.delete_version(state, "t-value", 2, permanent=False),
                    lambda: decide.delete_subject(state, "t-value", permanent=False)):
        with pytest.raises(OperationNotPermittedError) as refused:
            attempt()
        assert refused.value.error_code == 42205 and "registered topic" in refused.value.message
    # Written anyway (a race with the topic's registration): every worker refuses it.
    assert not state.apply(99, {"type": "delete", "subject": "t-value", "version": None,
                                "permanent": False})
    assert state.versions("t-value") == [2]


def test_read_only_refuses_writes_on_every_worker() -> None:
    state = RegistryState()
    registered(state, "s", 0)
    stale = register(state, "s", 1)
    assert stale is not None
    apply_all(state, decide.set_mode("s", Mode.READONLY))
    with pytest.raises(OperationNotPermittedError):
        state.decide_register("s", SCHEMAS[1])
    with pytest.raises(OperationNotPermittedError):
        decide.delete_subject(state, "s", permanent=False)
    with pytest.raises(OperationNotPermittedError):
        decide.set_config(state, "s", Compatibility.NONE)
    apply_all(state, stale)  # decided before the mode changed: refused when applied
    assert state.versions("s") == [1]
    assert state.lookup("s", SCHEMAS[0]) is not None  # reads go on
    apply_all(state, decide.set_mode(None, Mode.READONLY), decide.set_mode("s", None))
    assert state.mode("s") is Mode.READONLY and state.mode("other") is Mode.READONLY
    apply_all(state, decide.set_mode(None, None))
    assert state.mode("s") is Mode.READWRITE


def test_modes_parse_as_confluent_names_them() -> None:
    assert Mode.parse("readonly") is Mode.READONLY
    assert Mode.parse("READONLY_OVERRIDE").read_only
    for bad in ("IMPORT", "FORWARD", "SIDEWAYS", 3, None):
        with pytest.raises(InvalidModeError) as refused:
            Mode.parse(bad)
        assert refused.value.error_code == 42204


def test_unknown_and_malformed_deletes_and_modes_are_skipped() -> None:
    state = RegistryState()
    registered(state, "s", 0)
    generation = state.generation
    for value in ({"type": "delete", "subject": "s", "version": "1", "permanent": False},
                  {"type": "delete", "subject": 3, "version": None, "permanent": False},
                  {"type": "delete", "subject": "s", "version": True, "permanent": False},
                  {"type": "delete", "subject": "s"},
                  {"type": "mode", "subject": "s", "mode": "IMPORT"},
                  {"type": "mode", "subject": ["s"], "mode": "READONLY"}):
        assert state.apply(state.applied_offset + 1, value) is False
    assert state.generation == generation and state.versions("s") == [1]


def test_normalize_folds_names_and_keeps_defaults() -> None:
    given = {"type": "record", "name": "Order", "namespace": "shop", "doc": "d",
             "fields": [{"name": "id", "type": {"type": "string"}},
                        {"name": "next", "type": ["null", "Order"], "default": None},
                        {"name": "kind", "type": {"type": "enum", "name": "Kind",
                                                  "symbols": ["A"]}},
                        {"name": "again", "type": "shop.Kind"}]}
    assert normalize_json(given) == {
        "type": "record", "name": "shop.Order", "doc": "d",
        "fields": [{"name": "id", "type": "string"},
                   {"name": "next", "type": ["null", "shop.Order"], "default": None},
                   {"name": "kind", "type": {"type": "enum", "name": "shop.Kind",
                                             "symbols": ["A"]}},
                   {"name": "again", "type": "shop.Kind"}]}
    same = {"type": "record", "name": "shop.Order", "doc": "d",
            "fields": [{"name": "id", "type": "string"},
                       {"name": "next", "type": ["null", "Order"], "default": None},
                       {"name": "kind", "type": {"type": "enum", "name": "Kind",
                                                 "symbols": ["A"]}},
                       {"name": "again", "type": "Kind"}]}
    assert normalized_identity(parse_schema(given)) == normalized_identity(parse_schema(same))
    # What Parsing Canonical Form drops still makes a difference.
    assert normalized_identity(parse_schema(same)) != normalized_identity(
        parse_schema({**same, "doc": "other"}))
