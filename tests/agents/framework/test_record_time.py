"""Window tables judge each value against the stream time as of that value, however a
batch agent takes the values (twice, by index in any order) and on both decode paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import onepipe
from onepipe.agents.framework import processor
from onepipe.testing import AgentTest

SCHEMA: dict[str, Any] = {"type": "record", "name": "Tick", "namespace": "test.rt",
                          "fields": [{"name": "id", "type": "string"},
                                     {"name": "kind", "type": "string"},
                                     {"name": "at", "type": {"type": "long",
                                                             "logicalType": "timestamp-millis"}}]}
TOPICS = {"rt-ticks": (SCHEMA, {"partitions": 1, "key": ["id"], "order": {"rule": "first"},
                                "partition_time": "at"})}
START = datetime(2026, 1, 1, tzinfo=UTC)

twice_windows = onepipe.WindowTable("w", onepipe.tumbling(timedelta(seconds=10)), default=0)


@onepipe.batch_agent("rt-ticks", name="test-rt-twice", tables=[twice_windows])
async def twice(batch: onepipe.Batch[dict[str, Any]]) -> None:
    taken = list(batch)  # every value taken once: stream time reaches the batch's last
    assert len(taken) == len(batch)
    for tick in batch:  # and again
        twice_windows.add(tick["kind"], 1)


reversed_windows = onepipe.WindowTable("w", onepipe.tumbling(timedelta(seconds=10)), default=0)


@onepipe.batch_agent("rt-ticks", name="test-rt-reversed", tables=[reversed_windows])
async def backwards(batch: onepipe.Batch[dict[str, Any]]) -> None:
    for i in reversed(range(len(batch))):
        reversed_windows.add(batch[i]["kind"], 1)


@pytest.mark.parametrize("columns", [True, False])
@pytest.mark.parametrize("agent", [twice, backwards])
async def test_early_values_of_a_batch_are_not_late(agent: Any, columns: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not columns:
        monkeypatch.setattr(processor, "decode_columns", lambda *args: None)
    # 20 values in [0 s, 10 s), then one at 12 s that closes [0 s, 10 s) once taken.
    ticks = [{"id": f"t{i}", "kind": "a", "at": (START + timedelta(milliseconds=i * 400)
                                                 ).isoformat()} for i in range(20)]
    ticks.append({"id": "late-closer", "kind": "a",
                  "at": (START + timedelta(seconds=12)).isoformat()})
    async with AgentTest(agent, topics=TOPICS) as t:
        await t.feed("rt-ticks", ticks)
        assert t.late == 0
        # A value of a closed window in a later batch is late, as before.
        await t.feed("rt-ticks", {"id": "t-old", "kind": "a", "at": START.isoformat()})
        assert t.late == 1
