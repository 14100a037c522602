"""The processor's column-wise decoding hands the agent exactly what the value-by-value
path hands it (values, envelopes, partition times, stream time), and every batch it
cannot read falls back to that path."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

import onepipe
from onepipe.agents.framework import columns, processor
from onepipe.testing import AgentTest

UTC = datetime.UTC
EVENT: dict[str, Any] = {"type": "record", "name": "Ev", "namespace": "test.columns",
                         "fields": [
                             {"name": "id", "type": "string"},
                             {"name": "kind", "type": {"type": "enum", "name": "Kind",
                                                       "symbols": ["a", "b", "c"]}},
                             {"name": "amount", "type": ["null", "double"]},
                             {"name": "at", "type": {"type": "long",
                                                     "logicalType": "timestamp-micros"}},
                             {"name": "day", "type": {"type": "int", "logicalType": "date"}},
                             {"name": "tags", "type": {"type": "array", "items": "string"}}]}
MAPPED: dict[str, Any] = {**EVENT, "name": "Mapped", "fields": [
    *EVENT["fields"], {"name": "attrs", "type": {"type": "map", "values": "long"}}]}


def _topic(schema: dict[str, Any], time_field: str) -> dict[str, Any]:
    return {"partitions": 1, "key": ["id"], "order": {"rule": "first"},
            "partition_time": time_field}


@dataclasses.dataclass(frozen=True, slots=True)
class Ev:
    id: str
    kind: str
    amount: float | None
    at: datetime.datetime


seen: dict[str, list[Any]] = {"values": [], "records": []}
marks = onepipe.Table("marks", default=0)


@onepipe.batch_agent("col-events", name="test-col-dicts", tables=[marks])
async def as_dicts(batch: onepipe.Batch[dict[str, Any]]) -> None:
    seen["values"] += list(batch)
    seen["records"] += batch.records
    for value in batch:
        marks[value["id"]] += 1


mapped_marks = onepipe.Table("marks", default=0)


@onepipe.batch_agent("col-mapped", name="test-col-mapped", tables=[mapped_marks])
async def mapped_dicts(batch: onepipe.Batch[dict[str, Any]]) -> None:
    seen["values"] += list(batch)
    seen["records"] += batch.records
    for value in batch:
        mapped_marks[value["id"]] += 1


typed_marks = onepipe.Table("marks", default=0)


@onepipe.batch_agent("col-events", name="test-col-typed-ev", record=Ev, tables=[typed_marks])
async def as_typed(batch: onepipe.Batch[Ev]) -> None:
    seen["values"] += list(batch)
    seen["records"] += batch.records
    for value in batch:
        typed_marks[value.id] += 1


per_record_marks = onepipe.Table("marks", default=0)


@onepipe.agent("col-events", name="test-col-stream", record=Ev, tables=[per_record_marks])
async def per_record(stream: onepipe.Stream[Ev]) -> None:
    async for value in stream:
        seen["values"].append(value)
        seen["records"].append(stream.current)
        per_record_marks[value.id] += 1


def _events(count: int) -> list[dict[str, Any]]:
    base = datetime.datetime(2026, 3, 1, tzinfo=UTC)
    return [{"id": f"e{i}", "kind": "abc"[i % 3], "amount": None if i % 4 == 0 else i * 0.5,
             "at": (base + datetime.timedelta(microseconds=i * 1_234_567)).isoformat(),
             "day": "2026-03-01", "tags": ["x"] * (i % 3)} for i in range(count)]


async def _run(agent: Any, topic: str, time_field: str, events: list[dict[str, Any]]
               ) -> tuple[list[Any], list[Any], int | None, dict[str, Any]]:
    seen["values"], seen["records"] = [], []
    topics = {"col-events": (EVENT, _topic(EVENT, time_field)),
              "col-mapped": (MAPPED, _topic(MAPPED, time_field))}
    async with AgentTest(agent, topics=topics) as t:
        await t.feed(topic, events, timestamp_ms=1_700_000_000_000)
        await t.feed(topic, events[:5], timestamp_ms=1_700_000_000_000)  # below BATCH_MIN
        state = t.states[(topic, 0)]
        return (seen["values"], seen["records"], state.stream_time_ms,
                dict(t.table(next(iter(t.spec.tables)), partition=0)))


@pytest.mark.parametrize("time_field", ["at", "day", "kafka"])
@pytest.mark.parametrize("agent", [as_dicts, as_typed, per_record])
async def test_columns_hand_over_what_value_by_value_does(
        agent: Any, time_field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(40)
    used: list[bool] = []
    real = columns.decode_columns

    def spy(*args: Any) -> Any:
        found = real(*args)
        used.append(found is not None)
        return found

    monkeypatch.setattr(processor, "decode_columns", spy)
    fast = await _run(agent, "col-events", time_field, events)
    assert used == [True, False]  # the 40-record batch read in columns, then 5 one by one
    monkeypatch.setattr(processor, "decode_columns", lambda *args: None)
    slow = await _run(agent, "col-events", time_field, events)
    assert fast == slow
    assert repr(fast[0]) == repr(slow[0]) and repr(fast[1]) == repr(slow[1])


async def test_a_schema_polars_cannot_read_falls_back(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    events = [{**e, "attrs": {"n": 1}} for e in _events(30)]
    used: list[bool] = []
    real = columns.decode_columns
    monkeypatch.setattr(processor, "decode_columns",
                        lambda *args: used.append(real(*args) is not None))
    values, records, _, counts = await _run(mapped_dicts, "col-mapped", "at", events)
    assert used == [False, False]
    assert [v["attrs"] for v in values] == [{"n": 1}] * 35
    assert counts == {e["id"]: 2 if int(e["id"][1:]) < 5 else 1 for e in events}


def test_partition_time_of_a_datetime_is_exact() -> None:
    # int(timestamp() * 1000) was 1 ms short for this one (float rounding).
    moment = datetime.datetime(2004, 8, 20, 10, 29, 51, 817000, tzinfo=UTC)
    assert processor.partition_time_ms(moment) == 1_092_997_791_817
    assert processor.partition_time_ms(moment.replace(tzinfo=None)) == 1_092_997_791_817
    assert processor.partition_time_ms(datetime.date(1969, 12, 31)) == -86_400_000
