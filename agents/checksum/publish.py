"""The checksum agent's publications: produced at once, acknowledged one batch later.

Contract (:class:`Publications`):

- :meth:`Publications.send` hands one batch's figures (``<topic>.checksums`` messages,
  key and value, partition 0) to the producer and returns their ack futures without
  waiting; :meth:`Publications.hold` keeps them with the batch's commits and settles the
  batch held before: its acks are awaited (a failure raises, and the agent restarts:
  every partition republishes its figures when it is assigned again), then its offsets
  are committed.
- So a batch's acks and commit are awaited while the next batch is counted, not before
  it is fetched. The stores are written before anything is sent (the figures a message
  carries are durable first); a commit only tells the lag monitor, so one batch later
  changes nothing a restart reads. The agent settles what it holds on every fetch, empty
  ones included (so an idle agent commits within one fetch timeout), before a revoke
  closes stores, and when it stops; a restart drops it (:meth:`Publications.drop`).
- Order: one producer, partition 0, messages sent in batch order - a later figure of a
  day never lands before an earlier one (the producer keeps a partition's order).

Why: awaiting the acks and the commit round trips inline left the counting idle for two
round trips a batch - more so with the few-thousand-record steps a worker's agents take
(onepipe.agents.batch.agent, "Holding the loop").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from onepipe.agents.checksum.open_tables import ChecksumMetrics
from onepipe.schemas.topic_names import checksums_topic
from onepipe.tables.checksum import Message

__all__ = ["Publications"]

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]


class Publications:
    """One batch's sent figures and commits, held until the next batch (module doc)."""

    def __init__(self, metrics: ChecksumMetrics) -> None:
        self._held: tuple[list[asyncio.Future[Any]], dict[TopicPartition, int]] | None = None
        #: ``published`` counts the messages acknowledged.
        self._metrics = metrics

    @staticmethod
    async def send(producer: AIOKafkaProducer, out: list[tuple[str, list[Message]]]
                   ) -> list[asyncio.Future[Any]]:
        """Hand every topic's messages to the producer; their ack futures, in order."""
        return [await producer.send(checksums_topic(topic), value, key=key, partition=0)
                for topic, messages in out for key, value in messages]

    async def hold(self, sent: list[asyncio.Future[Any]], commits: dict[TopicPartition, int],
                   commit: Commit) -> None:
        """Hold this batch's acks and commits; settle the batch held before."""
        previous, self._held = self._held, (sent, commits) if sent or commits else None
        if previous is not None:
            await self._settle(previous, commit)

    async def settle(self, commit: Commit) -> None:
        """Await what is held: its acks, then its commit."""
        held, self._held = self._held, None
        if held is not None:
            await self._settle(held, commit)

    def drop(self) -> None:
        """Forget what is held (a restart republishes every partition's figures)."""
        held, self._held = self._held, None
        if held is not None:
            for future in held[0]:
                future.add_done_callback(_retrieve)

    async def _settle(self, held: tuple[list[asyncio.Future[Any]], dict[TopicPartition, int]],
                      commit: Commit) -> None:
        sent, commits = held
        try:
            if sent:
                await asyncio.gather(*sent)
        except BaseException:
            for future in sent:
                future.add_done_callback(_retrieve)
            raise
        self._metrics.published += len(sent)
        if commits:
            await commit(commits)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
