"""A registry log holding a poison-pill schema (arrays nested 321 deep, registered before
the door bounded schemas) no longer stops a worker: its start skips the entry, says so,
keeps the id reserved, and serves everything else."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.schemas.avro_schema import parse_schema
from tests.fixtures.services import unique


def nested_arrays(depth: int) -> dict[str, Any]:
    inner: Any = "string"
    for _ in range(depth):
        inner = {"type": "array", "items": inner}
    return {"type": "record", "name": "Deep", "fields": [{"name": "f", "type": inner}]}


GOOD = {"type": "record", "name": "Good", "fields": [{"name": "x", "type": "string"}]}


async def test_a_worker_starts_on_a_log_with_a_poison_pill(
        make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(registry_topic=unique("_registry"))
    decisions = [
        ("schema/poison-value/1/x/a", {"type": "schema", "subject": "poison-value",
                                       "version": 1, "id": 1, "basis": -1,
                                       "schema": json.dumps(nested_arrays(321))}),
        ("schema/good-value/1/y/b", {"type": "schema", "subject": "good-value",
                                     "version": 1, "id": 2, "basis": -1,
                                     "schema": json.dumps(GOOD)}),
    ]
    producer = settings.kafka.producer("poison-writer")
    await producer.start()
    try:
        for key, value in decisions:
            await producer.send_and_wait(settings.registry_topic, orjson.dumps(value),
                                         key=key.encode(), partition=0)
    finally:
        await producer.stop()

    caplog.set_level(logging.ERROR, logger="onepipe")
    async with Runtime(settings) as runtime:
        state = runtime.registry.state
        assert "poison-value" not in state.subject_names()
        assert state.version("good-value", "latest").schema_id == 2
        assert 1 in state.unreadable
        # The poison's id is never given to another schema.
        other = parse_schema({"type": "record", "name": "Other", "fields": []})
        assert (await runtime.registry.register("other-value", other)).schema_id == 3
    assert any("schema id 1" in r.getMessage() and "skipped" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]
