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
  closes stores, and when it stops; a restart drops it (:meth:`Publications.drop`),
  after waiting a few seconds at most for its sends to land.
- A batch stays held until its commit is made: one whose settling a stop cancelled (the
  loop ends inside a fetch's settle) is settled again by the stop's drain, so its
  commit is not lost - no later fetch would commit a partition that receives nothing
  more, and the pipeline's lag would never reach 0. :attr:`Publications.settled` says
  whether everything sent is acknowledged and committed (tests wait for it before they
  read ``<topic>.checksums``).
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
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.topic_names import checksums_topic
from onepipe.tables.checksum import Message

__all__ = ["Publications"]

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]


class Publications:
    """Sent figures and commits, held until the next batch (module doc)."""

    def __init__(self, metrics: ChecksumMetrics) -> None:
        #: Batches sent and not settled yet, oldest first: one between fetches, two
        #: while a batch is held and the one before it settles.
        self._held: list[_Held] = []
        #: ``published`` counts the messages acknowledged.
        self._metrics = metrics

    @property
    def settled(self) -> bool:
        """Whether every figure sent is acknowledged and its batch committed."""
        return not self._held

    @staticmethod
    async def send(producer: AIOKafkaProducer, out: list[tuple[str, list[Message]]]
                   ) -> list[asyncio.Future[Any]]:
        """Hand every topic's messages to the producer; their ack futures, in order."""
        return [await producer.send(checksums_topic(topic), value, key=key, partition=0)
                for topic, messages in out for key, value in messages]

    async def hold(self, sent: list[asyncio.Future[Any]], commits: dict[TopicPartition, int],
                   commit: Commit) -> None:
        """Hold this batch's acks and commits; settle the batches held before."""
        before = len(self._held)
        if sent or commits:
            self._held.append(_Held(sent, commits))
        await self._settle(before, commit)

    async def settle(self, commit: Commit) -> None:
        """Await everything held: its acks, then its commits."""
        await self._settle(len(self._held), commit)

    async def drop(self, bound: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Forget what is held (a restart republishes every partition's figures), once its
        sends have landed or failed, at most ``bound`` seconds: a figure still in flight
        could otherwise land after a new owner's republish of the same day."""
        held, self._held = self._held, []
        pending = [future for batch in held for future in batch.sent]
        if pending:
            await asyncio.wait(pending, timeout=bound)
        for future in pending:
            future.add_done_callback(_retrieve)

    async def _settle(self, count: int, commit: Commit) -> None:
        """Settle the ``count`` oldest batches, in order. A failed ack drops its batch and
        raises; a cancellation leaves it held (its futures untouched: ``asyncio.wait``,
        not ``gather``, which would cancel them)."""
        for _ in range(count):
            if not self._held:
                return
            batch = self._held[0]
            if batch.sent:
                await asyncio.wait(batch.sent)
                failed = next((f for f in batch.sent
                               if f.cancelled() or f.exception() is not None), None)
                if failed is not None:
                    self._forget(batch)
                    for future in batch.sent:
                        future.add_done_callback(_retrieve)
                    if failed.cancelled():
                        raise OnepipeError("a checksum publication was cancelled before the "
                                           "broker acknowledged it")
                    failed.result()  # raises its failure
                self._metrics.published += len(batch.sent)
                batch.sent = []  # acknowledged: counted once, even if the commit is cut short
            if batch.commits:
                await commit(batch.commits)
            self._forget(batch)

    def _forget(self, batch: _Held) -> None:
        if self._held and self._held[0] is batch:
            self._held.pop(0)


class _Held:
    """One batch's ack futures and commits."""

    __slots__ = ("commits", "sent")

    def __init__(self, sent: list[asyncio.Future[Any]],
                 commits: dict[TopicPartition, int]) -> None:
        self.sent = sent
        self.commits = commits


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
