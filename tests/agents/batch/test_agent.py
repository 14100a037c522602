"""The batch-agent skeleton on its own, against the real broker, with a minimal agent.

The agent under test keeps its "source of truth" in memory (the next offset per
partition, like the lake or a state store would) and records every offset it processed,
so the skeleton's promises show directly: it reads the topics the registry offers, a
failure in a batch or in an assignment restarts from the truth (nothing lost, nothing
processed twice past it), and stop drains before it closes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from onepipe.agents.batch import BatchAgent, Batches
from onepipe.app.runtime import Runtime
from onepipe.schemas.registry_state import RegistryState
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic

SCHEMA = {"type": "record", "name": "Tick", "fields": [{"name": "n", "type": "long"}]}
PARTITIONS = 2
TIMEOUT = 60.0


@dataclass
class Seen:
    """What the test agent did (its metrics)."""

    offsets: Counter[tuple[int, int]] = field(default_factory=Counter)
    resets: int = 0
    drained: bool = False
    closed: bool = False
    events: list[str] = field(default_factory=list)


class Recorder(BatchAgent[Seen]):
    """Records each offset once it is "durable" (moved past in ``truth``)."""

    kind = "recorder"

    def __init__(self, runtime: Runtime, topic: str, *, fail_batch_at: int | None = None,
                 fail_assign: bool = False) -> None:
        super().__init__(kafka=runtime.settings.kafka, group_id=unique("batch"),
                         registry=runtime.registry, metrics=Seen(), topics=[topic],
                         max_records=7)
        #: The agent's own source of truth: next offset per partition.
        self.truth: dict[TopicPartition, int] = {}
        self._fail_batch_at = fail_batch_at
        self._fail_assign = fail_assign

    async def _wanted(self, consumer: AIOKafkaConsumer, state: RegistryState
                      ) -> frozenset[str]:
        return frozenset(t for t in state.topics if self._wants(t))

    async def _assign(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                      ) -> None:
        if self._fail_assign:
            self._fail_assign = False
            raise RuntimeError("injected: assignment failed once")
        for tp in assigned:
            consumer.seek(tp, self.truth.get(tp, 0))

    async def _process(self, consumer: AIOKafkaConsumer, batches: Batches) -> None:
        for tp, records in batches.items():
            kept = [r for r in records if r.offset >= self.truth.get(tp, 0)]
            if self._fail_batch_at is not None and any(
                    r.offset == self._fail_batch_at for r in kept):
                self._fail_batch_at = None
                raise RuntimeError("injected: batch failed once, before it was durable")
            for r in kept:
                self.metrics.offsets[(tp.partition, r.offset)] += 1
            if kept:
                self.truth[tp] = kept[-1].offset + 1
                await self._commit(consumer, tp, self.truth[tp])

    async def _reset(self) -> None:
        self.metrics.resets += 1
        self.metrics.events.append("reset")

    async def _drain(self) -> None:
        self.metrics.drained = True
        self.metrics.events.append("drain")

    async def _close(self) -> None:
        self.metrics.closed = True
        self.metrics.events.append("close")


async def make_topic(http: aiohttp.ClientSession, runtime: Runtime, count: int) -> str:
    topic = unique("ticks")
    await create_topic(http, topic, SCHEMA, partitions=PARTITIONS)
    async with http.post(f"/topics/{topic}/records",
                         json={"records": [{"n": i} for i in range(count)]}) as resp:
        assert resp.status == 200, await resp.text()
    return topic


async def test_reads_every_record_of_the_registered_topic_once(
        runtime: Runtime, http: aiohttp.ClientSession) -> None:
    topic = await make_topic(http, runtime, 40)
    async with Recorder(runtime, topic) as agent:
        await asyncio.wait_for(agent.wait_until(lambda m: sum(m.offsets.values()) >= 40),
                               TIMEOUT)
        assert agent.assigned.is_set()
    assert set(agent.metrics.offsets.values()) == {1}
    assert agent.metrics.events == ["drain", "close"]
    assert agent.metrics.resets == 0


async def test_a_failed_batch_restarts_from_the_truth(
        runtime: Runtime, http: aiohttp.ClientSession) -> None:
    topic = await make_topic(http, runtime, 40)
    async with Recorder(runtime, topic, fail_batch_at=3) as agent:
        await asyncio.wait_for(agent.wait_until(lambda m: sum(m.offsets.values()) >= 40),
                               TIMEOUT)
    assert agent.metrics.resets == 1
    # Offset 3 of the partition that failed was re-read after the restart, processed once.
    assert sum(agent.metrics.offsets.values()) == 40
    assert set(agent.metrics.offsets.values()) == {1}


async def test_a_failed_assignment_stays_paused_then_recovers(
        runtime: Runtime, http: aiohttp.ClientSession) -> None:
    topic = await make_topic(http, runtime, 20)
    async with Recorder(runtime, topic, fail_assign=True) as agent:
        await wait_for(lambda: agent.metrics.resets >= 1, timeout=TIMEOUT,
                       what="the loop to restart after the failed assignment")
        await asyncio.wait_for(agent.wait_until(lambda m: sum(m.offsets.values()) >= 20),
                               TIMEOUT)
    assert set(agent.metrics.offsets.values()) == {1}
    assert sum(agent.metrics.offsets.values()) == 20


async def test_stop_is_harmless_twice_and_before_start(runtime: Runtime) -> None:
    agent = Recorder(runtime, unique("never"))
    await agent.stop()  # never started: nothing to drain, only the close hook runs
    assert agent.metrics.events == ["close"]
    await agent.start()
    await agent.stop()
    await agent.stop()
    assert agent.metrics.events == ["close", "drain", "close", "close"]
