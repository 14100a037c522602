"""The registry journal: a lost registry log comes back with every id, never a reused one.

The "lost log" is real: a second tansu process on a fresh memory store stands for a
broker that restarted without its data (what `make dev` does at every start).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onepipe.app.embedded import EmbeddedBroker
from onepipe.schemas.avro_schema import AvroSchema, parse_schema
from onepipe.schemas.compatibility import Compatibility
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.registry.modes import Mode
from onepipe.tables.registry_journal import JournalRecord, RegistryJournal
from onepipe.tables.registry_store import RegistryStore
from tests.fixtures.services import kafka_for, wait_for

TOPIC = "_onepipe_registry"


def _schema(name: str, *fields: str) -> AvroSchema:
    return parse_schema({"type": "record", "name": name,
                         "fields": [{"name": f, "type": ["null", "string"], "default": None}
                                    for f in fields]})


def _view(store: RegistryStore) -> tuple[object, ...]:
    state = store.state
    return (dict(state.subjects), dict(state.configs), dict(state.modes),
            {s: (dict(h.ids), sorted(h.deleted)) for s, h in state.histories.items()})


def _store(broker: EmbeddedBroker, journal: RegistryJournal) -> RegistryStore:
    return RegistryStore(kafka_for(broker.bootstrap), TOPIC, fetch_wait_ms=10,
                         write_timeout=20.0, journal=journal)


def test_the_journal_skips_what_it_has_and_a_torn_last_line(tmp_path: Path) -> None:
    journal = RegistryJournal(tmp_path / "j" / "registry.journal")
    assert journal.last_offset == -1 and journal.read() == []
    journal.append([JournalRecord(0, b"k0", b"{}"), JournalRecord(1, None, None)])
    journal.append([JournalRecord(1, b"again", b"x"), JournalRecord(2, b"k2", b"v2")])
    with journal.path.open("ab") as out:
        out.write(b'{"o": 3, "k": "a')  # a crash in the middle of an append
    again = RegistryJournal(journal.path)
    assert again.read() == [JournalRecord(0, b"k0", b"{}"), JournalRecord(1, None, None),
                            JournalRecord(2, b"k2", b"v2")]
    assert again.last_offset == 2


async def test_an_empty_log_is_restored_with_every_id_and_new_ids_continue(
        own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    journal = RegistryJournal(tmp_path / "registry.journal")
    async with _store(own_broker, journal) as store:
        first = await store.register("a-value", _schema("A", "x"))
        second = await store.register("a-value", _schema("A", "x", "y"))
        other = await store.register("b-value", _schema("B", "z"))
        await store.set_config("a-value", Compatibility.FULL)
        # Deletes and modes are decisions like the others: they come back too.
        gone = await store.register("d-value", _schema("D", "q"))
        assert await store.delete_version("a-value", "latest") == 2
        assert await store.delete_subject("d-value") == [1]
        assert await store.delete_subject("d-value", permanent=True) == [1]
        await store.set_mode("b-value", Mode.READONLY)
        before = _view(store)
    own_broker.stop()
    own_broker.start()  # the same address, an empty log

    async with _store(own_broker, RegistryJournal(journal.path)) as store:
        assert _view(store) == before
        assert store.state.schema_by_id(second.schema_id).identity == second.schema.identity
        third = await store.register("c-value", _schema("C", "w"))
        # A permanently deleted schema keeps its id: registered again, it gets it back.
        assert (await store.register("d-value", _schema("D", "q"))).schema_id == gone.schema_id
    assert third.schema_id > max(first.schema_id, second.schema_id, other.schema_id,
                                 gone.schema_id)

    # The restored log journals again at its own offsets: a third start finds it whole.
    async with _store(own_broker, RegistryJournal(journal.path)) as store:
        assert store.state.lookup("c-value", _schema("C", "w")) is not None


async def test_a_log_shorter_than_the_journal_is_refused(
        own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    journal = RegistryJournal(tmp_path / "registry.journal")
    async with _store(own_broker, journal) as store:
        for n in range(3):
            await store.register(f"s{n}-value", _schema(f"S{n}", "x"))
    own_broker.stop()
    own_broker.start()
    async with RegistryStore(kafka_for(own_broker.bootstrap), TOPIC,
                             fetch_wait_ms=10) as stranger:  # another log, one record long
        await stranger.register("other-value", _schema("Other", "q"))
    with pytest.raises(BrokerError, match="Refusing to start") as refused:
        await _store(own_broker, RegistryJournal(journal.path)).start()
    assert str(journal.path) in str(refused.value)


async def test_a_log_lost_under_a_running_store_stops_its_writes(
        own_broker: EmbeddedBroker, tmp_path: Path) -> None:
    store = _store(own_broker, RegistryJournal(tmp_path / "registry.journal"))
    await store.start()
    try:
        for n in range(3):
            await store.register(f"s{n}-value", _schema(f"S{n}", "x"))
        own_broker.stop()
        own_broker.start()
        await wait_for(lambda: store.lost_log is not None, timeout=60,
                       what="the store to notice its log went back")
        with pytest.raises(BrokerError, match="lost its log"):
            await store.register("late-value", _schema("Late", "x"))
    finally:
        await store.stop()
