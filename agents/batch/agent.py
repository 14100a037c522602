"""The skeleton every batch agent fills in: lifecycle, supervised loop, registry, rebalances.

A batch agent is a consumer-group member of its own, hosted by the worker, that fetches
records in batches (``getmany``) instead of one event at a time: Faust's per-event path
runs at ~1/40 of a batch consumer here (DESIGN.md, "Hot paths"). What every such agent
does the same way is written once in :class:`BatchAgent`:

- **Lifecycle.** ``start()`` starts the agent's own clients (:meth:`_open`), then its group
  consumer, then the loop; ``stop()`` ends the loop, lets the agent finish what it holds
  while its clients are up (:meth:`_drain`), leaves the group, and closes the rest
  (:meth:`_close`). Stopping twice is harmless; an async context manager.
- **Supervised loop.** Fetch, hand the batch to :meth:`_process`, repeat; a fetch error
  is retried after a second. Any other failure - raised by the step, or recorded by a
  rebalance callback through :meth:`_fail` (aiokafka only logs what its listeners raise) -
  makes the agent drop what it holds (:meth:`_reset`) and rejoin its group, so every
  partition restarts from the agent's own source of truth, after a backoff that doubles
  up to a minute (onepipe.agents.batch.supervise).
- **Following the registry.** When the registry's generation changes, the agent says
  which topics it reads now (:meth:`_wanted`) and the consumer subscribes to exactly those.
- **Rebalances.** A revoke (:meth:`_revoke`) and an assignment (:meth:`_assign`) run under
  the same lock as a batch, so a partition moves only between batches (an agent whose
  revoke makes the revoked partitions' work durable by itself may process without the
  lock: :attr:`BatchAgent.batch_lock`). A failed revoke restarts the loop like any other
  failure. Assigned
  partitions are paused before the first await and resumed only once :meth:`_assign`
  returned: no record is fetched from the group's committed position while the agent
  looks up its own (the lake, a state store, a changelog). If :meth:`_assign` fails, the
  partitions stay paused and the loop restarts.
- **Stalled partitions.** :meth:`_assign` may find a partition it must not read (its own
  state lies beyond the partition's end: the log was reset). It records the partition and
  a reason a user can act on in :attr:`BatchAgent.stalled`; the partition stays paused,
  and the record stays until the partition is revoked or the loop restarts (its next
  assignment looks again). Status pages and metrics read it.
- **Holding the loop.** A worker runs the produce endpoint, ``/health`` and every agent
  on one event loop, and one step of an agent - its fetch's records built (aiokafka
  builds them on the loop, ~1.5 µs each) and :meth:`_process` up to its first real wait -
  holds that loop throughout; ready steps of several agents run back to back. So
  ``max_records`` sizes a step, not only a fetch: the worker's agents take a few thousand
  records a step (:data:`STEP_RECORDS`; measured in the full worker under batched load,
  dedup's 5,000-record steps took up to 75 ms of the loop's CPU and checksum's 20,000
  65 ms - then on aiokafka, whose records are built on the loop - and ``/health``
  answered in 111-228 ms against a 100 ms target). An agent whose step leaves the loop
  alone may take more (:data:`STEP_RECORDS_CHECKSUM`).
- **Commits** (:meth:`_commit`) are for lag monitoring only: a failed one is logged, as
  every batch agent keeps its position in its own durable state.

Progress (:meth:`wait_until`) is signalled after every batch and assignment, for tests
and benchmarks that await a condition on the agent's metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from onepipe.agents.batch.supervise import Rebalance, end_loop, supervise
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.registry_state import RegistryState
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.lifecycle import Service
from onepipe.tables.registry_store import RegistryStore

__all__ = ["STEP_RECORDS", "STEP_RECORDS_CHECKSUM", "Batches", "BatchAgent"]

log = logging.getLogger(__name__)

#: What one fetch returns: records per partition (a list of records from aiokafka, columns
#: from librdkafka: onepipe.tables.kafka.record_columns reads either as columns).
Batches = Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]]
M = TypeVar("M")

#: Records a step of the worker's agents by default (module docstring, "Holding the
#: loop"): ~5-10 ms of the loop at the archive's cost a record; dedup, at ~4 µs a record,
#: takes fewer.
STEP_RECORDS = 5_000
#: The checksum agent's on librdkafka: its step barely holds the loop (records built on
#: the consumer's thread, then placed, counted and folded in worker threads; the loop's
#: work is per partition, not per record), and at 5,000 its per-call costs (polars, the
#: loop) cost ~25% more CPU a record (BENCHMARKS.md, "Checksum steps"). On aiokafka, whose
#: records are built on the loop, it takes :data:`STEP_RECORDS`.
STEP_RECORDS_CHECKSUM = 20_000
#: Seconds between looks at the registry while the agent has nothing to read.
_IDLE = 0.5
#: Seconds before fetching again after a fetch failed.
_FETCH_RETRY = 1.0


class BatchAgent(Service, Generic[M]):
    """A batch consumer hosted by the worker; subclasses fill in the hooks."""

    #: Short name in logs and task names: ``archive``, ``dedup``, ``checksum``.
    kind = "batch"
    #: What a restart does, for the log line of a failure.
    recovery = "rejoining its group"
    #: Whether a batch holds the lock partition moves take (so a partition never moves in
    #: the middle of one). An agent whose revoke already makes the revoked partitions'
    #: work durable on its own may turn it off, so a rebalance need not wait for a batch
    #: that is waiting on other partitions' writes.
    batch_lock = True

    def __init__(self, *, kafka: KafkaClients, group_id: str, registry: RegistryStore,
                 metrics: M, max_records: int = STEP_RECORDS, topics: Iterable[str] | None = None,
                 consumer_options: dict[str, Any] | None = None) -> None:
        self._kafka = kafka
        self._group_id = group_id
        self._registry = registry
        self._max_records = max_records
        #: When given, only these topics are read (tests, benchmarks).
        self._only_topics = frozenset(topics) if topics is not None else None
        self._consumer_options = dict(consumer_options or {})
        self._consumer: GroupConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscribed: frozenset[str] = frozenset()
        self._generation = -1
        self._failure: BaseException | None = None
        #: Held while a batch is processed and while partitions move.
        self._lock = asyncio.Lock()
        self._progress = asyncio.Condition()
        self.metrics = metrics
        #: Partitions assigned here but not read, with why and what to do (set by
        #: :meth:`_assign`; cleared when they are revoked and when the loop restarts).
        self.stalled: dict[TopicPartition, str] = {}
        #: Set once the group has assigned this member partitions (and they are ready);
        #: cleared when the loop restarts after a failure.
        self.assigned = asyncio.Event()

    @property
    def name(self) -> str:
        return f"{self.kind} agent {self._group_id}"

    # ----------------------------------------------------------------- hooks
    async def _open(self) -> None:
        """Start the agent's own clients (producers, writers), before the consumer."""

    async def _drain(self) -> None:
        """At stop, with every client still up: finish or flush what the agent holds."""

    async def _close(self) -> None:
        """At stop, after leaving the group: close what :meth:`_open` started."""

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        """The topics to read given the registry ``state`` (filtered by ``topics``)."""
        raise NotImplementedError

    def _look_again(self) -> bool:
        """Whether to ask :meth:`_wanted` again although the registry did not change
        (an agent waiting for topics to exist)."""
        return False

    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        """One fetch's records (possibly none: the loop also ticks when idle)."""
        raise NotImplementedError

    async def _reset(self) -> None:
        """After a failure: drop everything held, so partitions restart from the truth."""

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        """Make the revoked partitions' work durable and release them."""

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        """Position the (paused) assigned partitions from the agent's own state."""

    def _check(self) -> None:
        """Raise a failure recorded outside the loop; called before every fetch."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise OnepipeError(f"{self.name}: a batch or rebalance failed: {failure!r}"
                               ) from failure

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self._open()
        consumer = self._kafka.group_consumer(self._group_id, **self._consumer_options)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # a half-started client still holds connections
            await self._close()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"{self.kind}-agent")

    async def stop(self) -> None:
        """End the loop, drain, leave the group, close; harmless twice."""
        task, self._task = self._task, None
        await end_loop(task, self.name)
        consumer = self._consumer
        try:
            if consumer is not None:
                await self._drain()  # the consumer is still there: drained work commits
        finally:
            self._consumer = None
            try:
                if consumer is not None:
                    # Leaves the group; aiokafka calls no revoke listener on close, so
                    # _close releases whatever partitions the agent still holds.
                    await consumer.stop()
            finally:
                await self._close()

    def waiting_for(self) -> str | None:
        """Why the agent is not working its share of partitions yet; None when it is.

        It is once its group has assigned this member its share since it last (re)joined:
        possibly no partition at all, when the group has more members than partitions.
        An agent with nothing to read has nothing to wait for. A rebalance of a working
        agent (a topic registered, a member added) does not count: every member of the
        group would report it at once. The worker's readiness (GET /readyz) asks this.
        """
        if self._task is None or self._task.done():
            return f"the {self.name} is not running"
        if self._generation == -1:
            return (f"the {self.name} has not looked at the registry yet (starting, or "
                    "restarting after a failure)")
        if self._subscribed and not self.assigned.is_set():
            return (f"the {self.name} waits for its group to assign it partitions of "
                    f"{', '.join(sorted(self._subscribed))}")
        return None

    async def wait_until(self, condition: Callable[[M], bool]) -> None:
        """Wait until ``condition(metrics)`` holds (checked after every batch/assignment)."""
        async with self._progress:
            await self._progress.wait_for(lambda: condition(self.metrics))

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _fail(self, exc: BaseException) -> None:
        """Record a failure of a callback; the loop raises it and restarts."""
        if self._failure is None:
            self._failure = exc

    def _wants(self, topic: str) -> bool:
        return self._only_topics is None or topic in self._only_topics

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        await supervise(self._consume, self._restart, self.name, self.recovery)

    async def _restart(self) -> None:
        async with self._lock:
            await self._reset()
            self._failure = None
            self.stalled.clear()  # rejoining looks at every partition again
        consumer = self._consumer
        if consumer is not None and self._subscribed:
            # Leaving and rejoining makes _assign position every partition again.
            consumer.unsubscribe()
        self._subscribed = frozenset()
        self._generation = -1
        self.assigned.clear()  # its partitions are positioned again when it rejoins

    async def _consume(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise OnepipeError(f"the {self.name} is not running; start() it first")
        while True:
            self._check()
            await self._follow_registry(consumer)
            if not self._subscribed:
                await asyncio.sleep(_IDLE)  # nothing to read yet; look at the registry again
                continue
            try:
                batches = await self._fetch(consumer)
            except KafkaError:
                log.exception("%s failed to fetch; retrying", self.name)
                await asyncio.sleep(_FETCH_RETRY)  # back off before asking the broker again
                continue
            if self.batch_lock:
                async with self._lock:
                    await self._process(consumer, batches)
            else:
                await self._process(consumer, batches)
            del batches  # not alive during the next fetch (fewer objects for the GC)
            await self._notify()

    async def _fetch(self, consumer: GroupConsumer) -> Batches:
        """One fetch; an agent may gather several into one batch (its own bounds)."""
        return await consumer.getmany(timeout_ms=250, max_records=self._fetch_budget())

    def _fetch_budget(self) -> int:
        """How many records the next fetch may return."""
        return self._max_records

    async def _follow_registry(self, consumer: GroupConsumer) -> None:
        """Subscribe to the topics :meth:`_wanted` names, when the registry changed."""
        state = self._registry.state
        if state.generation == self._generation and not self._look_again():
            return
        self._generation = state.generation
        wanted = await self._wanted(consumer, state)
        if wanted == self._subscribed:
            return
        if wanted:
            log.info("%s subscribes to %s", self.name, sorted(wanted))
            consumer.subscribe(sorted(wanted), listener=Rebalance(self, consumer))
        else:
            log.info("%s: nothing to read any more", self.name)
            consumer.unsubscribe()
        self._subscribed = wanted

    # ------------------------------------------------------------- rebalance
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight, then release the revoked partitions."""
        async with self._lock:
            try:
                await self._revoke(revoked)
            except Exception as exc:
                # aiokafka only logs what a listener raises: the loop restarts instead, so
                # nothing half-released is reused when a partition comes back.
                log.exception("%s: releasing %s failed", self.name, sorted(revoked))
                self._fail(exc)
            finally:
                for tp in revoked:
                    self.stalled.pop(tp, None)

    async def on_assigned(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                          ) -> None:
        # Paused before the first await: nothing may be fetched from the group's position
        # while the agent looks up its own.
        consumer.pause(*assigned)
        async with self._lock:
            try:
                await self._assign(consumer, assigned)
            except Exception as exc:
                if self._task is None:  # the stop raced the assignment: nothing to restart
                    log.info("%s: assigning %s ended by the stop (%r)", self.name,
                             sorted(assigned), exc)
                    return
                # Partitions stay paused; the loop restarts and assigns them again.
                log.exception("%s: assigning %s failed", self.name, sorted(assigned))
                self._fail(exc)
                return
        # A partition _assign stalled stays paused (until revoked or a restart).
        consumer.resume(*(tp for tp in assigned if tp not in self.stalled))
        self.assigned.set()
        await self._notify()

    async def _commit(self, consumer: GroupConsumer, tp: TopicPartition, offset: int
                      ) -> None:
        await self._commit_offsets(consumer, {tp: offset})

    async def _commit_offsets(self, consumer: GroupConsumer,
                              offsets: dict[TopicPartition, int]) -> None:
        """Commit the group offsets of several partitions in one request."""
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The agent's own state is the source of truth; a lost commit only makes the
            # lag figure stale until the next one.
            for tp, offset in offsets.items():
                log.warning("%s: commit of %s[%d]@%d failed: %r", self.name, tp.topic,
                            tp.partition, offset, exc,
                            extra={"topic": tp.topic, "partition": tp.partition,
                                   "offset": offset})
