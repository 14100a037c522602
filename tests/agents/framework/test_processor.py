"""The processor's guards: each offset applied once, and a per-record agent restarted after
it raised (review findings, each a regression test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import onepipe
from onepipe.agents.framework.metrics import AgentMetrics
from onepipe.agents.framework.processor import AgentProcessor
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.state import CURRENT, PartitionState, StateStore, activate
from onepipe.testing import AgentTest

SCHEMA: dict[str, Any] = {"type": "record", "name": "Tick", "namespace": "test.proc",
                          "fields": [{"name": "id", "type": "string"},
                                     {"name": "kind", "type": "string"}]}
TOPICS = {"proc-ticks": (SCHEMA, {"partitions": 1, "key": ["id"], "order": {"rule": "first"}})}

ticks = onepipe.Table("ticks", default=0)


@onepipe.batch_agent("proc-ticks", name="test-proc-count", tables=[ticks])
async def count(batch: onepipe.Batch[dict[str, Any]]) -> None:
    for tick in batch:
        ticks[tick["kind"]] += 1


@dataclass(frozen=True, slots=True)
class Raw:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


async def test_a_batch_repeating_offsets_applies_each_record_once(tmp_path: Path) -> None:
    # What a runner gathers when a rebalance hands the partition back mid-fetch: the
    # partition is sought back to its stored position and the next fetch repeats offsets.
    async with AgentTest(count, topics=TOPICS) as t:
        encoded = Publisher(t.registry, None, 5.0).writer("proc-ticks").encode(
            [{"id": f"t{i}", "kind": "a" if i % 2 else "b"} for i in range(10)])
        raw = [Raw("proc-ticks", 0, i, 0, k, v) for i, (k, v) in enumerate(encoded)]
        state = PartitionState(StateStore(tmp_path / "store"), [ticks], agent="test")
        try:
            outcome = await t.processor.process("proc-ticks", 0, raw[:6] + raw + raw[8:],
                                                state)
            assert outcome.next_offset == 10
            state.commit(outcome.next_offset, None)
            again = await t.processor.process("proc-ticks", 0, raw[4:], state)  # all stale
            assert again.next_offset == 10 and not again.changes
            token = activate(state)
            try:
                assert dict(ticks.items()) == {"a": 5, "b": 5}
            finally:
                CURRENT.reset(token)
        finally:
            state.close()


failures = {"left": 1}


@onepipe.agent("proc-ticks", name="test-proc-flaky")
async def flaky(stream: onepipe.Stream[dict[str, Any]]) -> None:
    async for tick in stream:
        if tick["kind"] == "boom" and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("boom")


async def test_a_per_record_agent_that_raised_runs_again_on_the_next_batch() -> None:
    async with AgentTest(flaky, topics=TOPICS) as t:
        with pytest.raises(RuntimeError, match="boom"):
            await t.feed("proc-ticks", {"id": "t1", "kind": "boom"})
        await t.feed("proc-ticks", {"id": "t2", "kind": "fine"})  # a new coroutine takes it
        assert t.metrics.records == 2


V1: dict[str, Any] = {"type": "record", "name": "Ev", "namespace": "test.evolve", "fields": [
    {"name": "id", "type": "string"}, {"name": "note", "type": "string", "default": "-"}]}
V2: dict[str, Any] = {"type": "record", "name": "Ev", "namespace": "test.evolve", "fields": [
    {"name": "id", "type": "string"}]}  # BACKWARD-compatible: drops a field with a default
EVOLVING = {"proc-evolving": ([V1], {"partitions": 1, "key": ["id"],
                                     "order": {"rule": "first"}})}


@dataclass(frozen=True, slots=True)
class Ev:
    id: str
    note: str  # the type needs it; version 2 no longer has it


notes: list[str] = []


@onepipe.batch_agent("proc-evolving", name="test-proc-evolving", record=Ev)
async def evolving(batch: onepipe.Batch[Ev]) -> None:
    notes.extend(f"{e.id}:{e.note}" for e in batch)


async def test_a_typed_agent_keeps_reading_with_the_schema_it_was_checked_against() -> None:
    # Review finding: a compatible version registered while the worker ran made every
    # later batch fail its type check, restarting the agent forever.
    async with AgentTest(evolving, topics=EVOLVING) as t:
        await t.feed("proc-evolving", {"id": "a", "note": "first"})
        t._register("proc-evolving", [V1, V2], EVOLVING["proc-evolving"][1])
        await t.feed("proc-evolving", {"id": "b"})  # written with version 2
        assert notes == ["a:first", "b:-"]  # read as version 1: its default fills `note`


@onepipe.batch_agent("proc-ticks", name="test-proc-ids")
async def read_only(batch: onepipe.Batch[dict[str, Any]]) -> None:
    for _ in batch:
        pass


async def test_a_batch_waits_for_unknown_schema_ids_until_one_wait_timed_out() -> None:
    # Values framed with ids this registry does not hold (registered elsewhere, or junk):
    # the first waits for the registry replica; once that wait timed out the batch waits
    # no more, so a batch of ever new ids costs one bounded wait, not one per record. An
    # id no registry can hold (0) is not waited for, and does not end the waiting.
    async with AgentTest(read_only, topics=TOPICS) as t:
        asked: list[int] = []

        async def wait_in_vain(schema_id: int) -> bool:
            asked.append(schema_id)
            return False

        publisher = Publisher(t.registry, None, 5.0)
        processor = AgentProcessor(t.spec, t.registry, publisher.writer, AgentMetrics(),
                                   wait_for_schema=wait_in_vain)
        good = publisher.writer("proc-ticks").encode([{"id": "t", "kind": "a"}])[0][1]
        values = [b"\x00" + (900 + i).to_bytes(4, "big") + good[5:] for i in range(5)]
        junk = b"\x00\x00\x00\x00\x00" + good[5:]
        raw = [Raw("proc-ticks", 0, i, 0, None, v)
               for i, v in enumerate([good, junk, *values])]
        outcome = await processor.process("proc-ticks", 0, raw, None)
        assert asked == [900]
        assert outcome.next_offset == 7 and processor.metrics.undecodable == 6
