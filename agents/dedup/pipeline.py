"""The dedup agent's batches in flight: output sent, then acks, tables, commit -- in order.

Contract:
- :meth:`BatchPipeline.submit` takes the planned work of one consumed batch (one
  :class:`~onepipe.agents.dedup.plan.PartitionWork` per table) and returns as soon as its output
  is built; its *completion* runs as a task chained after the previous batch's: send
  (once the previous batch has handed its records to the producer, so ``.unique`` gets
  them in order), then (a) every ack, (b) every table written with the ``.unique`` offset
  it has applied, (c) the Kafka offsets committed, then the counters and ``on_winner``.
  Completions run strictly in order, so a commit always follows the acks and table writes
  of everything consumed before it.
- Up to ``_MAX_IN_FLIGHT`` completions are pending; ``submit`` then waits for the oldest
  (back-pressure on the broker's acks).
- Winners of batches still in flight overlay the table for planning the next batch
  (:meth:`BatchPipeline.stored`) until their own table write.
- A failed completion is reported once through ``on_failure`` (the agent rejoins and
  recovers from the changelogs); a failed commit is only logged, since the output is
  durable and a re-read finds duplicates. :meth:`BatchPipeline.drain` waits for every
  completion, failed or not, and is what a revoke and a stop do first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from onepipe.agents.dedup.metrics import DedupMetrics, WinnerHook
from onepipe.agents.dedup.output import Built, await_acks, build_batches, send_batches
from onepipe.agents.dedup.plan import PartitionWork
from onepipe.tables.dedup.store import DedupStore, Entry, Winner
from onepipe.tables.kafka.types import GroupConsumer

log = logging.getLogger(__name__)

__all__ = ["BatchPipeline", "Lookup"]

#: Batches whose output may await its acks while the next batch is planned.
_MAX_IN_FLIGHT = 2

#: A table's multi-get: the stored winner of each key (None for a new key).
Lookup = Callable[[list[bytes]], list[Winner | Entry | None]]


@dataclass(frozen=True, slots=True)
class _Completion:
    """A batch in flight: its completion task, and whether its output is handed over."""

    task: asyncio.Task[None]
    handed: asyncio.Event


class BatchPipeline:
    """The chain of batch completions of one dedup agent (see the module docstring)."""

    def __init__(self, metrics: DedupMetrics, progress: asyncio.Condition,
                 produce_timeout: float, on_failure: Callable[[BaseException], None]) -> None:
        self.metrics = metrics
        #: Called per changed winner once it is durable (the agent's ``on_winner``).
        self.on_winner: WinnerHook | None = None
        self._progress = progress
        self._produce_timeout = produce_timeout
        self._on_failure = on_failure
        #: Completions of the batches in flight, oldest first.
        self._completions: deque[_Completion] = deque()
        #: Winners of the batches in flight, per table, one dict per batch (oldest first),
        #: until their table write.
        self._pending: dict[tuple[str, int], list[dict[bytes, Entry]]] = {}

    # --------------------------------------------------------------- planning
    def stored(self, topic: str, partition: int, store: DedupStore) -> Lookup:
        """The table's multi-get, overridden by the winners of batches still in flight."""
        return _with_pending(store.get_many, self._pending.setdefault((topic, partition), []))

    def hold(self, work: PartitionWork) -> None:
        """Overlay ``work``'s winners on its table until its completion writes them."""
        if work.keys:
            self._pending.setdefault((work.topic, work.partition), []).append(
                dict(zip(work.keys, work.entries, strict=True)))

    def forget(self, tables: Iterable[tuple[str, int]]) -> None:
        """Drop the overlays of tables that are closed (revoked, or a restart)."""
        for table in tables:
            self._pending.pop(table, None)

    def clear(self) -> None:
        self._pending.clear()

    # ------------------------------------------------------------- completion
    async def submit(self, consumer: GroupConsumer, producer: AIOKafkaProducer,
                     works: list[tuple[PartitionWork, DedupStore]]) -> None:
        """Build the batch's output and chain its completion (module docstring).

        The broker's acks take a round trip; waiting for them before fetching and
        planning the next batch left the agent idle for ~40% of the time.
        """
        built = [build_batches(producer, work) for work, _ in works]
        previous = self._completions[-1] if self._completions else None
        handed = asyncio.Event()
        task = asyncio.create_task(
            self._complete(consumer, producer, previous, works, built, handed),
            name="dedup-complete")
        task.add_done_callback(_retrieve)  # failures are reported through on_failure
        self._completions.append(_Completion(task, handed))
        while len(self._completions) > _MAX_IN_FLIGHT:
            await self._completions[0].task  # bounded: back-pressure on the broker's acks

    async def _complete(self, consumer: GroupConsumer, producer: AIOKafkaProducer,
                        previous: _Completion | None,
                        works: list[tuple[PartitionWork, DedupStore]], built: list[Built],
                        handed: asyncio.Event) -> None:
        """Send, then (a) acks, (b) tables with their applied offset, (c) commit; in order.

        Sending waits only until the previous batch has handed its records to the
        producer (so ``.unique`` gets them in order), not for its acks.
        """
        try:
            if previous is not None:
                await previous.handed.wait()
            try:
                await send_batches(producer, built)
            finally:
                handed.set()
            if previous is not None:
                await previous.task
            applied = await await_acks(built, [store.applied_offset for _, store in works],
                                       self._produce_timeout)
            commits: dict[TopicPartition, int] = {}
            metrics = self.metrics
            hook = self.on_winner
            for (work, store), next_unique in zip(works, applied, strict=True):
                if work.keys:
                    store.apply(work.keys, work.entries, next_unique)
                    # This batch's winners are in the table now; completions run in
                    # order, so its overlay is the oldest of its table.
                    in_flight = self._pending.get((work.topic, work.partition))
                    if in_flight:
                        in_flight.pop(0)
                result = work.fold
                metrics.consumed += work.consumed
                metrics.winners += len(work.keys)
                metrics.duplicates += result.duplicates
                metrics.losers += result.losers
                metrics.superseded += result.superseded
                metrics.undecodable += work.undecodable
                metrics.repartitioned += work.repartitioned
                commits.update(work.commits)
                if hook is not None:
                    for key, entry, old in zip(work.keys, work.entries, work.previous,
                                               strict=True):
                        hook(work.topic, work.partition, key,
                             old[1] if old is not None else None, entry[1])
            await _commit(consumer, commits)
            metrics.positions.update(commits)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._on_failure(exc)  # the loop raises it and restarts from the changelogs
            raise
        finally:
            if self._completions and self._completions[0].task is asyncio.current_task():
                self._completions.popleft()
            async with self._progress:
                self._progress.notify_all()

    async def drain(self) -> None:
        """Wait for every batch in flight to complete (or fail)."""
        while self._completions:
            task = self._completions[0].task
            try:
                await task
            except Exception:  # noqa: BLE001 - reported through on_failure; the loop raises it
                log.debug("a dedup batch failed while draining", exc_info=True)
            finally:
                if self._completions and self._completions[0].task is task:
                    self._completions.popleft()


def _with_pending(get_many: Callable[[list[bytes]], list[Winner | None]],
                  in_flight: list[dict[bytes, Entry]]) -> Lookup:
    """The table's multi-get, overridden by the winners of batches still in flight."""
    if not in_flight:
        return get_many  # type: ignore[return-value]  # a list of a narrower type

    def lookup(keys: list[bytes]) -> list[Winner | Entry | None]:
        found: list[Winner | Entry | None] = get_many(keys)  # type: ignore[assignment]
        for overlay in in_flight:  # oldest first: the newest winner of a key is last
            found = list(map(overlay.get, keys, found))
        return found

    return lookup


async def _commit(consumer: GroupConsumer, offsets: dict[TopicPartition, int]) -> None:
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        # The output is durable and the tables hold it: the next owner re-reads these
        # records and finds them duplicates.
        log.warning("dedup commit of %s failed: %r", _describe(offsets), exc)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _describe(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}"
                     for tp, offset in sorted(offsets.items()))
