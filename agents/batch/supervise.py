"""The consumer-group plumbing every batch agent (archive, dedup, checksums) shares.

Each agent is a batch consumer of its own, in its own group, hosted by the worker: the
client settings (manual commits, short group timeouts for brokers that hold joins, 4 MiB
fetches) and the hand-over of partition moves to the agent are written once here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

__all__ = ["Rebalance", "RebalanceOwner", "end_loop", "group_consumer", "supervise"]

log = logging.getLogger(__name__)
#: Longest wait between restarts of a loop whose failure persists.
_MAX_BACKOFF = 60.0


def group_consumer(bootstrap: str, group_id: str, *, session_timeout: float,
                   rebalance_timeout: float, **overrides: Any) -> AIOKafkaConsumer:
    """A batch consumer in ``group_id`` that commits only when the agent says so.

    Heartbeats every third of the session (at most 3 s), so a short session survives a
    busy loop; ``max_poll_interval`` is generous because a batch may wait for a lake
    write. ``overrides`` are passed to aiokafka (e.g. the partition assignor).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": int(session_timeout * 1000),
        "rebalance_timeout_ms": int(rebalance_timeout * 1000),
        "heartbeat_interval_ms": int(min(3.0, session_timeout / 3) * 1000),
        "max_poll_interval_ms": 300_000,
        "fetch_max_wait_ms": 200,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)


class RebalanceOwner(Protocol):
    """An agent that reacts to its group's partition moves."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None: ...

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                          ) -> None: ...


class Rebalance(ConsumerRebalanceListener):
    """Hands the group's partition moves to the agent that owns the consumer."""

    def __init__(self, agent: RebalanceOwner, consumer: AIOKafkaConsumer) -> None:
        self._agent = agent
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._agent.on_assigned(self._consumer, assigned)


async def supervise(consume: Callable[[], Awaitable[None]],
                    recover: Callable[[], Awaitable[None]], what: str, how: str) -> None:
    """Run an agent's consume loop forever, recovering after any failure.

    A failure must neither stop the agent for good nor let it go on past what it lost:
    ``recover`` drops what the agent holds and makes it rejoin its group (so every
    partition restarts from its source of truth), then the loop runs again, after a
    backoff that doubles up to a minute so a persistent failure does not spin.
    """
    backoff = 1.0
    while True:
        try:
            await consume()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; %s in %.0fs", what, how, backoff)
            await recover()
            await asyncio.sleep(backoff)  # do not spin on a failure that persists
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
