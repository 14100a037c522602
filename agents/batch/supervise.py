"""Keeping a consume loop alive, and handing a group's partition moves to its owner.

:func:`supervise` restarts a loop after any failure (with the owner's recovery first, and
a backoff), :func:`end_loop` stops one; :class:`Rebalance` is the aiokafka listener that
calls the owner's ``on_revoked``/``on_assigned``. The batch agents use them through
onepipe.agents.batch.agent; the client settings live in the one Kafka client factory
(onepipe.tables.kafka.clients).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

from onepipe.tables.kafka.types import GroupConsumer

__all__ = ["Rebalance", "RebalanceOwner", "end_loop", "supervise"]

log = logging.getLogger(__name__)
#: Longest wait between restarts of a loop whose failure persists.
_MAX_BACKOFF = 60.0


class RebalanceOwner(Protocol):
    """An agent that reacts to its group's partition moves."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None: ...

    async def on_assigned(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                          ) -> None: ...


class Rebalance(ConsumerRebalanceListener):
    """Hands the group's partition moves to the agent that owns the consumer."""

    def __init__(self, agent: RebalanceOwner, consumer: GroupConsumer) -> None:
        self._agent = agent
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._agent.on_assigned(self._consumer, assigned)


async def supervise(consume: Callable[[], Awaitable[None]],
                    recover: Callable[[], Awaitable[None]], what: str, how: str, *,
                    clock: Callable[[], float] | None = None,
                    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run an agent's consume loop forever, recovering after any failure.

    A failure must neither stop the agent for good nor let it go on past what it lost:
    ``recover`` drops what the agent holds and makes it rejoin its group (so every
    partition restarts from its source of truth), then the loop runs again, after a
    backoff that doubles up to a minute so a persistent failure does not spin, and starts
    again from a second after a minute without failure. ``clock`` and ``sleep`` are the
    loop's unless a test gives its own.
    """
    backoff = 1.0
    now = clock or asyncio.get_running_loop().time
    while True:
        started = now()
        try:
            await consume()
        except asyncio.CancelledError:
            raise
        except Exception:
            if now() - started >= _MAX_BACKOFF:
                # It worked for a while before this failure: a new failure, not the same
                # one persisting, so it waits as a first one does (a backoff that never
                # came down left agents idle up to a minute after a broker came back).
                backoff = 1.0
            log.exception("%s failed; %s in %.0fs", what, how, backoff)
            await recover()
            await sleep(backoff)  # do not spin on a failure that persists
            backoff = min(backoff * 2, _MAX_BACKOFF)


async def end_loop(task: asyncio.Task[None] | None, what: str) -> None:
    """Cancel a supervised loop and wait for it; a failure it ended on is logged, not
    raised, so stopping still releases everything after it."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("%s had stopped on an error", what)
