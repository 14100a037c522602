"""The registry state machine: the first decision in log order wins on every worker."""

from __future__ import annotations

import pytest

from onepipe.schemas.avro_schema import parse_schema
from onepipe.schemas.errors import (
    IncompatibleSchemaError,
    InvalidVersionError,
    NotFoundError,
    OperationNotPermittedError,
)
from onepipe.schemas.metadata import TopicMetadata
from onepipe.schemas.registry_state import Decision, RegistryState, SchemaVersion, parse_version


def _schema(*fields: str) -> str:
    return ('{"type":"record","name":"r","fields":['
            + ",".join(f'{{"name":"{f}","type":"string","default":""}}' for f in fields) + "]}")


A, B, C = parse_schema(_schema("a")), parse_schema(_schema("a", "b")), parse_schema(_schema("c"))


def _decide(state: RegistryState, subject: str, schema: object) -> Decision:
    decision = state.decide_register(subject, schema)  # type: ignore[arg-type]
    assert isinstance(decision, Decision)
    return decision


def test_register_assigns_versions_and_shares_ids_across_subjects() -> None:
    state = RegistryState()
    state.apply(0, _decide(state, "s1", A).value)
    state.apply(1, _decide(state, "s1", B).value)
    state.apply(2, _decide(state, "s2", A).value)
    assert state.versions("s1") == [1, 2]
    assert state.version("s2", "latest").schema_id == state.version("s1", 1).schema_id == 1
    assert state.version("s1", "latest").schema_id == 2
    again = state.decide_register("s1", A)
    assert isinstance(again, SchemaVersion) and again.version == 1


def test_concurrent_decisions_first_in_log_wins_and_loser_is_ignored() -> None:
    state = RegistryState()
    left, right = _decide(state, "s", A), _decide(state, "s", C)  # both want version 1, id 1
    assert state.apply(0, left.value) is True
    assert state.apply(1, right.value) is False
    assert state.versions("s") == [1]
    assert state.schema_by_id(1).identity == A.identity
    # The loser decides again on the new state and gets version 2 with a fresh id.
    retry = _decide(state, "s2", C)
    assert state.apply(2, retry.value) is True
    assert state.version("s2", 1).schema_id == 2


def test_replaying_the_same_log_gives_the_same_state() -> None:
    first = RegistryState()
    log = []
    for subject, schema in [("s", A), ("t", C), ("s", B), ("t", A)]:
        decision = _decide(first, subject, schema)
        log.append(decision.value)
        first.apply(len(log) - 1, decision.value)
    log.append(log[0])  # an at-least-once duplicate
    second = RegistryState()
    for offset, value in enumerate(log):
        second.apply(offset, value)
    assert second.subjects == first.subjects
    assert {i: s.identity for i, s in second.schemas_by_id.items()} == {
        i: s.identity for i, s in first.schemas_by_id.items()}


def test_incompatible_registration_is_refused_with_reasons() -> None:
    state = RegistryState()
    state.apply(0, _decide(state, "s", A).value)
    strict = parse_schema('{"type":"record","name":"r","fields":[{"name":"z","type":"int"}]}')
    with pytest.raises(IncompatibleSchemaError) as info:
        state.decide_register("s", strict)
    assert "BACKWARD_TRANSITIVE" in info.value.message and info.value.reasons


def test_unknown_records_and_bad_configs_are_skipped() -> None:
    state = RegistryState()
    assert state.apply(0, {"type": "from-the-future"}) is False
    assert state.apply(1, {"type": "config", "subject": "s", "compatibility": "SIDEWAYS"}) is False
    assert state.apply(2, {"type": "schema", "subject": "s", "version": 1, "id": 1,
                           "schema": "not json"}) is False
    assert state.applied_offset == 2 and state.generation == 0


def test_schema_ids_stay_within_what_a_confluent_header_holds() -> None:
    state = RegistryState()
    # A log record no registry wrote (by hand, say): an id no header can carry is skipped.
    for offset, schema_id in enumerate([0, -5, 2**31]):
        assert state.apply(offset, {"type": "schema", "subject": f"s{offset}", "version": 1,
                                    "id": schema_id, "schema": _schema("a")}) is False
    assert state.apply(3, {"type": "schema", "subject": "s", "version": 1, "id": 2**31 - 1,
                           "schema": _schema("a")}) is True
    with pytest.raises(OperationNotPermittedError, match="no id left"):
        state.decide_register("t", C)


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("latest", -1), ("-1", -1), (3, 3)])
def test_parse_version_accepts_numbers_and_latest(raw: str | int, expected: int) -> None:
    assert parse_version(raw) == expected


@pytest.mark.parametrize("raw", ["0", "abc", "-2", "99999999999", True])
def test_parse_version_rejects_the_rest(raw: object) -> None:
    with pytest.raises(InvalidVersionError):
        parse_version(raw)  # type: ignore[arg-type]


def test_missing_things_have_confluent_codes() -> None:
    state = RegistryState()
    with pytest.raises(NotFoundError) as subject:
        state.versions("nope")
    assert subject.value.error_code == 40401
    state.apply(0, _decide(state, "s", A).value)
    with pytest.raises(NotFoundError) as version:
        state.version("s", 2)
    assert version.value.error_code == 40402
    with pytest.raises(NotFoundError) as schema:
        state.schema_by_id(99)
    assert schema.value.error_code == 40403


def test_a_decision_checked_under_an_older_level_is_refused() -> None:
    state = RegistryState()
    state.apply(0, {"type": "config", "subject": "s", "compatibility": "NONE"})
    state.apply(1, _decide(state, "s", A).value)
    strict = parse_schema('{"type":"record","name":"r","fields":[{"name":"z","type":"int"}]}')
    stale = _decide(state, "s", strict)  # allowed under NONE, decided before the change
    state.apply(2, {"type": "config", "subject": "s", "compatibility": "BACKWARD"})
    assert state.apply(3, stale.value) is False
    assert state.versions("s") == [1]
    with pytest.raises(IncompatibleSchemaError):
        state.decide_register("s", strict)  # deciding again applies the new level


def test_decision_keys_are_unique_so_compaction_keeps_accepted_ones() -> None:
    state = RegistryState()
    first, again = _decide(state, "s", A), _decide(state, "s", A)
    assert first.key != again.key
    # Compaction keeps the last record per key; with unique keys it keeps both, in order,
    # so replaying a compacted log gives the same state.
    state.apply(0, first.value)
    state.apply(1, again.value)
    assert state.versions("s") == [1]


def test_metadata_is_parsed_once_and_a_bad_record_keeps_the_previous_entry() -> None:
    state = RegistryState()
    good = {"key": ["id"], "partitions": 3}
    assert state.apply(0, {"type": "metadata", "topic": "t", "metadata": good})
    meta = state.topic_metadata("t")
    assert isinstance(meta, TopicMetadata)
    assert (meta.key, meta.partitions) == (("id",), 3)
    generation = state.generation
    # A field this worker does not know (written by a newer one, or by hand): skipped.
    assert not state.apply(1, {"type": "metadata", "topic": "t",
                               "metadata": {**good, "retention": "7d"}})
    assert state.topic_metadata("t") is meta and state.generation == generation
    assert not state.apply(2, {"type": "metadata", "topic": "bad name!", "metadata": good})
    assert set(state.topics) == {"t"}


@pytest.mark.parametrize("raw", ["²", "-²", "١", "1²", "", "1.0", "0x1"])
def test_versions_that_are_not_ascii_digits_are_42202(raw: str) -> None:
    with pytest.raises(InvalidVersionError):
        parse_version(raw)
