"""The ops surface: /healthz, /readyz and what readiness asks of the broker and agents."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from onepipe.agents.batch import BatchAgent, Batches
from onepipe.app.embedded import EmbeddedBroker, free_port
from onepipe.app.readiness import BrokerProbe, Readiness
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.schemas.registry_state import RegistryState
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic

SCHEMA = {"type": "record", "name": "Tick", "fields": [{"name": "n", "type": "long"}]}
TIMEOUT = 60.0


class Idle(BatchAgent[None]):
    """A batch agent that joins its group for one topic and does nothing with records."""

    kind = "idle"

    def __init__(self, runtime: Runtime, topic: str) -> None:
        super().__init__(kafka=runtime.settings.kafka, group_id=unique("ready"),
                         registry=runtime.registry, metrics=None, topics=[topic])

    async def _wanted(self, consumer: AIOKafkaConsumer, state: RegistryState
                      ) -> frozenset[str]:
        return frozenset(t for t in state.topics if self._wants(t))

    async def _assign(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                      ) -> None:
        for tp in assigned:
            consumer.seek(tp, 0)

    async def _process(self, consumer: AIOKafkaConsumer, batches: Batches) -> None:
        pass


async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(path) as resp:
        return resp.status, await resp.json()


async def test_healthz_answers_while_the_process_lives(http: aiohttp.ClientSession) -> None:
    assert await get(http, "/healthz") == (200, {"status": "ok"})


async def test_readyz_is_ready_with_broker_registry_and_partitions(
        http: aiohttp.ClientSession) -> None:
    status, body = await get(http, "/readyz")
    assert status == 200, body
    assert body["status"] == "ready" and body["failed"] == []
    assert set(body["checks"]) == {"broker", "registry", "partitions"}
    assert all(check["ok"] for check in body["checks"].values())
    assert "answered" in body["checks"]["broker"]["detail"]


async def test_an_agent_is_waited_for_until_its_group_assigns_it(
        runtime: Runtime, http: aiohttp.ClientSession) -> None:
    topic = unique("ready")
    await create_topic(http, topic, SCHEMA, partitions=2)
    agent = Idle(runtime, topic)
    started = False
    readiness = Readiness(started=lambda: started, registry=runtime.registry,
                          broker=runtime.broker_probe, agents=lambda: [agent])

    failed = {c.name: c.detail for c in await readiness.checks() if not c.ok}
    assert set(failed) == {"registry", "partitions"}
    assert "is not running" in failed["partitions"]
    assert "starting" in failed["registry"]

    started = True
    async with agent:
        await wait_for(lambda: agent.waiting_for() is None, timeout=TIMEOUT,
                       what="the agent's partitions")
        assert agent.assigned.is_set()
        assert all(check.ok for check in await readiness.checks())
    assert "is not running" in (agent.waiting_for() or "")


@contextlib.asynccontextmanager
async def worker_on_own_broker(make_settings: Callable[..., Settings], tmp_path: Path
                               ) -> AsyncIterator[tuple[EmbeddedBroker, Runtime]]:
    broker = EmbeddedBroker("127.0.0.1", free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        settings = make_settings(broker=broker.bootstrap, registry_topic=unique("_registry"),
                                 monitor_interval_seconds=0)
        async with Runtime(settings) as runtime:
            yield broker, runtime
    finally:
        broker.stop()


async def test_readyz_names_the_broker_while_it_is_down_and_recovers(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    async with (worker_on_own_broker(make_settings, tmp_path) as (broker, runtime),
                aiohttp.ClientSession(base_url=f"http://127.0.0.1:{runtime.web.port}") as s):
        assert (await get(s, "/readyz"))[0] == 200
        broker.stop()
        answers: list[Any] = []

        async def not_ready() -> bool:
            status, body = await get(s, "/readyz")
            answers.append(body)
            return status == 503

        await wait_for(not_ready, timeout=TIMEOUT, what="readyz to answer 503")
        body = answers[-1]
        assert body["status"] == "not_ready" and body["failed"] == ["broker"]
        assert broker.bootstrap in body["checks"]["broker"]["detail"]
        assert body["checks"]["registry"]["ok"] and body["checks"]["partitions"]["ok"]
        # Liveness does not depend on the broker: no restart for an outage.
        assert await get(s, "/healthz") == (200, {"status": "ok"})

        broker.start()

        async def ready() -> bool:
            return (await get(s, "/readyz"))[0] == 200

        await wait_for(ready, timeout=TIMEOUT, what="readyz to answer 200 again")


async def test_a_request_never_waits_longer_than_the_bound(runtime: Runtime) -> None:
    """A request that gives up leaves the probe running; a later request uses its answer,
    cached for max_age (a frozen clock keeps it fresh)."""
    asked: list[int] = []
    producer = runtime.producer

    def counted() -> AIOKafkaProducer | None:
        asked.append(1)
        return producer

    probe = BrokerProbe(counted, runtime.settings.broker, timeout=0, clock=lambda: 100.0)
    first = await probe.check()
    assert not first.ok and "within 0s" in first.detail

    async def answered() -> bool:
        return (await probe.check()).ok

    await wait_for(answered, timeout=TIMEOUT, what="the probe's answer")
    before = len(asked)
    assert (await probe.check()).ok
    assert len(asked) == before  # from the cache: Kafka was not asked again
    await probe.close()
