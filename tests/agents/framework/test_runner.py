"""The agent runner against the real broker: state, restarts, recovery, sends.

Records go in through the produce endpoint; the expected state is counted independently
from what was produced. Each test declares its own agents (unique names, so unique groups
and changelogs) over its own topics.
"""

from __future__ import annotations

import asyncio
import io
import random
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import fastavro

import onepipe
from onepipe.agents.framework import AgentRunner, AgentSpec, declared
from onepipe.app.runtime import Runtime
from onepipe.schemas.errors import RecordValidationError
from onepipe.tables.state import CURRENT, PartitionState, StateStore, activate
from tests.fixtures.services import unique
from tests.fixtures.topics import create_topic, read_topic

TIMEOUT = 90.0
PARTITIONS = 3
EVENT = {"type": "record", "name": "Event", "fields": [
    {"name": "id", "type": "string"}, {"name": "kind", "type": "string"},
    {"name": "amount", "type": "long"}]}
ALERT = {"type": "record", "name": "Alert", "fields": [
    {"name": "id", "type": "string"}, {"name": "amount", "type": "long"}]}


def spec_of(fn: Any) -> AgentSpec:
    return next(s for s in declared() if s.fn is fn)


def runner(runtime: Runtime, spec: AgentSpec, data_dir: Path) -> AgentRunner:
    settings = runtime.settings
    return AgentRunner(spec, kafka=settings.kafka, app_id=settings.app_id,
                       registry=runtime.registry, data_dir=data_dir)


def events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": unique("e"), "kind": rng.choice("abcde"), "amount": rng.randint(1, 9)}
            for _ in range(count)]


async def produce(http: aiohttp.ClientSession, topic: str, records: list[dict[str, Any]]
                  ) -> None:
    for start in range(0, len(records), 100):
        async with http.post(f"/topics/{topic}/records",
                             json={"records": records[start:start + 100]}) as resp:
            assert resp.status == 200, await resp.text()


async def committed_all(agent: AgentRunner, total: int) -> None:
    """Wait until the runner's partitions have committed ``total`` input records."""
    def done(_: object) -> bool:
        return (len(agent.states) == PARTITIONS
                and sum(s.position.next_offset for s in agent.states.values()) == total)
    await asyncio.wait_for(agent.wait_until(done), TIMEOUT)


def stored(data_dir: Path, spec: AgentSpec, topic: str, table: onepipe.Table
           ) -> dict[Any, Any]:
    """What the stores under ``data_dir`` hold for ``table``, summed over partitions."""
    merged: Counter[Any] = Counter()
    for partition in range(PARTITIONS):
        store = StateStore(data_dir / "state" / spec.slug / f"{topic}-{partition}")
        state = PartitionState(store, spec.tables, agent=spec.name)
        token = activate(state)
        try:
            merged.update(dict(table.items()))
        finally:
            CURRENT.reset(token)
            state.close()
    return dict(merged)


def kinds(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["kind"] for r in records))


async def test_a_stateful_count_survives_restarts_and_a_fresh_data_dir(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    topic = unique("counted")
    await create_topic(http, topic, EVENT, partitions=PARTITIONS, key=["id"],
                       order={"rule": "first"})
    counts = onepipe.Table("counts", default=0)

    @onepipe.batch_agent(topic, name=unique("count"), tables=[counts], max_records=50,
                         max_wait=timedelta(milliseconds=200))
    async def count(batch: onepipe.Batch[dict[str, Any]]) -> None:
        for event in batch:
            counts[event["kind"]] += 1

    spec = spec_of(count)
    first, second = events(300, seed=1), events(200, seed=2)
    await produce(http, topic, first)
    data = tmp_path / "one"
    async with runner(runtime, spec, data) as agent:
        await committed_all(agent, len(first))
        assert agent.metrics.records == len(first) and agent.metrics.undecodable == 0
        assert agent.metrics.batches >= len(first) // 50  # max_records bounds a batch
    assert stored(data, spec, topic, counts) == kinds(first)

    # A new runner on the same data dir: only the new records are read, once.
    await produce(http, topic, second)
    async with runner(runtime, spec, data) as agent:
        await committed_all(agent, len(first) + len(second))
        assert agent.metrics.records == len(second)
    assert stored(data, spec, topic, counts) == kinds(first + second)

    # A fresh data dir: the state comes back from the changelog, nothing is read again.
    fresh = tmp_path / "fresh"
    async with runner(runtime, spec, fresh) as agent:
        await committed_all(agent, len(first) + len(second))
        assert agent.metrics.records == 0
    assert stored(fresh, spec, topic, counts) == kinds(first + second)


async def test_a_failing_batch_is_retried_without_counting_twice(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    topic = unique("flaky")
    await create_topic(http, topic, EVENT, partitions=PARTITIONS, key=["id"],
                       order={"rule": "first"})
    counts = onepipe.Table("counts", default=0)
    failures = [1]

    @onepipe.batch_agent(topic, name=unique("flaky"), tables=[counts],
                         max_wait=timedelta(milliseconds=200))
    async def count(batch: onepipe.Batch[dict[str, Any]]) -> None:
        for i, event in enumerate(batch):
            counts[event["kind"]] += 1
            if failures and i == len(batch) // 2:  # half the batch counted, then a crash
                failures.pop()
                raise RuntimeError("the agent's code failed")

    spec = spec_of(count)
    sent = events(150, seed=3)
    await produce(http, topic, sent)
    async with runner(runtime, spec, tmp_path) as agent:
        await committed_all(agent, len(sent))
        assert agent.metrics.restarts == 1
    assert stored(tmp_path, spec, topic, counts) == kinds(sent)


async def test_a_per_record_agent_sends_validated_records(
    runtime: Runtime, http: aiohttp.ClientSession, tmp_path: Path, broker: str,
) -> None:
    source, alerts = unique("orders"), unique("alerts")
    await create_topic(http, source, EVENT, partitions=PARTITIONS, key=["id"],
                       order={"rule": "first"})
    await create_topic(http, alerts, ALERT, partitions=1, key=["id"], order={"rule": "first"})
    refused: list[str] = []

    @onepipe.agent(source, name=unique("alerts"), sends=[alerts],
                   max_wait=timedelta(milliseconds=200))
    async def alert(stream: onepipe.Stream[dict[str, Any]]) -> None:
        async for event in stream:
            assert stream.current is not None and stream.current.value is event
            if event["amount"] >= 7:
                await stream.send(alerts, {"id": event["id"], "amount": event["amount"]})
            try:
                await stream.send(alerts, {"id": event["id"], "amount": "much"})
            except RecordValidationError:
                refused.append(event["id"])

    spec = spec_of(alert)
    sent = events(120, seed=4)
    await produce(http, source, sent)
    expected = {(e["id"], e["amount"]) for e in sent if e["amount"] >= 7}
    async with runner(runtime, spec, tmp_path) as agent:
        await asyncio.wait_for(agent.wait_until(lambda m: m.sent == len(expected)), TIMEOUT)
    assert len(refused) == len(sent)
    records, _ = await read_topic(broker, alerts, 1)
    parsed = fastavro.parse_schema(ALERT)
    decoded = [fastavro.schemaless_reader(io.BytesIO(r.value[5:]), parsed, None)
               for r in records[0]]
    arrived = {(d["id"], d["amount"]) for d in decoded if isinstance(d, dict)}
    assert arrived == expected
