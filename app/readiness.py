"""Whether a worker should get traffic: ``GET /readyz``'s checks (``/healthz`` needs none).

Contract:
- Three checks, each a :class:`Check` with a reason a person can act on:
  ``broker`` (the broker answers a metadata request), ``registry`` (the worker has
  started: the registry is replayed and every part runs) and ``partitions`` (every batch
  agent has its share of partitions assigned, or has nothing to read; an agent process's
  agents count once, at the worker's start: onepipe.app.agent_processes).
- A readiness request never waits on Kafka for longer than ``timeout``: the broker's answer
  is cached for ``max_age`` seconds, at most one probe is in flight (probes never pile
  up behind a dead broker), and a probe that outlives the request goes on in the
  background and is used by the next request.
- The probe asks for cluster metadata on the produce endpoint's own client, so it checks
  the connection produce requests use; it creates no topic (a metadata request for all
  topics creates none, DESIGN.md).
- ``clock`` (monotonic seconds) decides the cache's age; inject one in tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiokafka.errors import KafkaError

from onepipe.tables.kafka.clients import Producer, broker_count
from onepipe.tables.registry_store import RegistryStore

__all__ = ["BrokerProbe", "Check", "Readiness", "Waiting"]


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check's outcome."""

    #: ``broker``, ``registry`` or ``partitions``.
    name: str
    #: Whether it passed.
    ok: bool
    #: What was found, or what is wrong and why.
    detail: str


class Waiting(Protocol):
    """A part that may still be joining its consumer group (a batch agent)."""

    def waiting_for(self) -> str | None: ...


class BrokerProbe:
    """Whether the broker answers a metadata request; cached and bounded (see module)."""

    def __init__(self, producer: Callable[[], Producer | None], bootstrap: str, *,
                 max_age: float = 5.0, timeout: float = 1.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._producer = producer
        self._bootstrap = bootstrap
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._last: Check | None = None
        self._checked_at = 0.0
        self._probe: asyncio.Task[Check] | None = None

    async def check(self) -> Check:
        if self._last is not None and self._clock() - self._checked_at < self._max_age:
            return self._last
        producer = self._producer()
        if producer is None:
            return Check("broker", False, "the worker has not connected to Kafka yet")
        if self._probe is None:
            self._probe = asyncio.create_task(self._ask(producer), name="readiness-probe")
            self._probe.add_done_callback(self._done)
        try:
            # Shielded: a request that gives up does not cancel the probe the next uses.
            return await asyncio.wait_for(asyncio.shield(self._probe), self._timeout)
        except TimeoutError:
            return Check("broker", False, f"no metadata answer from Kafka at "
                         f"{self._bootstrap} within {self._timeout:g}s (ONEPIPE_BROKER)")

    async def _ask(self, producer: Producer) -> Check:
        try:
            # The producer's own client: the connection produce requests travel on.
            brokers = await broker_count(producer)
        except KafkaError as exc:
            return Check("broker", False,
                         f"Kafka at {self._bootstrap} (ONEPIPE_BROKER) did not answer: {exc}")
        return Check("broker", True,
                     f"{brokers} broker(s) of {self._bootstrap} answered")

    def _done(self, task: asyncio.Task[Check]) -> None:
        self._probe = None
        if not task.cancelled() and task.exception() is None:
            self._last, self._checked_at = task.result(), self._clock()

    async def close(self) -> None:
        """Cancel a probe in flight (at worker stop); harmless twice."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)


class TokenSource(Protocol):
    """What readiness asks of the API's token store (onepipe.app.auth.store.TokenStore)."""

    path: Path
    problem: str | None

    @property
    def tokens(self) -> Sequence[object]: ...

    def reload_if_changed(self) -> bool: ...


def tokens_check(tokens: TokenSource) -> Check:
    """Whether the API's tokens file is in force: a file that stopped parsing leaves the
    tokens read before, so a token removed since may still work."""
    tokens.reload_if_changed()
    if tokens.problem is not None:
        return Check("tokens", False, f"{tokens.problem}; the tokens read before still apply, "
                     "so a token removed since may still work: fix the file")
    return Check("tokens", True, f"{len(tokens.tokens)} token(s) from {tokens.path}")


class Readiness:
    """The worker's readiness checks, read by ``GET /readyz``."""

    def __init__(self, *, started: Callable[[], bool], registry: RegistryStore,
                 broker: BrokerProbe, agents: Callable[[], Iterable[Waiting]]) -> None:
        self._started = started
        self._registry = registry
        self.broker = broker
        self._agents = agents

    async def checks(self) -> Sequence[Check]:
        return [self._registry_check(), await self.broker.check(), self._partitions_check()]

    def _registry_check(self) -> Check:
        if not self._started():
            return Check("registry", False, "the worker is starting (or stopping): the "
                         "registry replays its log and the agents join their groups")
        state = self._registry.state
        return Check("registry", True, f"replayed to offset {state.applied_offset}: "
                     f"{len(state.topics)} topic(s)")

    def waiting(self) -> list[str]:
        """Why each batch agent that is not working its share of partitions yet is not."""
        return [reason for agent in self._agents() if (reason := agent.waiting_for())]

    def _partitions_check(self) -> Check:
        waiting = self.waiting()
        if waiting:
            return Check("partitions", False, "; ".join(waiting))
        return Check("partitions", True, "every batch agent here has its partitions or "
                     "nothing to read (agent processes are checked at the worker's start "
                     "only: /health tells of them)")
