"""Waiting for schema ids another worker registered: bounded for a whole batch of ids.

Agents wait for the ids framed in a batch that this worker's registry has not replayed
yet. A batch of values that only look framed, each with another id, must cost one
bounded wait, not one per id, and an id no registry can hold (below 1) none at all.
"""

from __future__ import annotations

import asyncio

from onepipe.schemas.avro_schema import parse_schema
from onepipe.tables.registry_store import RegistryStore
from tests.fixtures.services import kafka_for, unique

SCHEMA = parse_schema({"type": "record", "name": "W", "fields": [
    {"name": "x", "type": "string"}]})


def _store(broker: str, topic: str) -> RegistryStore:
    return RegistryStore(kafka_for(broker), topic, fetch_wait_ms=10, write_timeout=20.0)


async def test_ids_below_one_are_never_waited_for(broker: str) -> None:
    async with _store(broker, unique("_registry")) as store:
        # A wait of an hour for each would fail the bound: these return at once.
        async with asyncio.timeout(30):
            assert await store.wait_for_schemas({0, -1, -(2**31)}, 3600.0) == {0, -1, -(2**31)}
            assert await store.await_schemas([b"\x00\x80\x00\x00\x00", None], 3600.0) \
                == {-(2**31)}


async def test_many_unknown_ids_share_one_deadline(broker: str) -> None:
    async with _store(broker, unique("_registry")) as store:
        ids = set(range(1_000_000, 1_000_040))
        # One 2 s deadline for all 40: a wait per id would take 80 s and fail the bound.
        async with asyncio.timeout(30):
            assert await store.wait_for_schemas(ids, 2.0) == ids


async def test_an_id_registered_on_another_worker_is_found_by_the_wait(broker: str) -> None:
    topic = unique("_registry")
    async with _store(broker, topic) as waiter, _store(broker, topic) as other:
        registered = await other.register("w-value", SCHEMA)
        assert await waiter.wait_for_schemas({registered.schema_id}, 20.0) == set()
        assert await waiter.wait_for_schemas({registered.schema_id, 2**31 - 1}, 0.5) \
            == {2**31 - 1}
        assert waiter.state.schema_by_id(registered.schema_id).identity == SCHEMA.identity
        assert await waiter.wait_for_schema(registered.schema_id, 0.1)
