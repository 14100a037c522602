"""Dedup agent: the winning version of every unique key, emitted once to ``<topic>.unique``.

Contract:
- Topics in: every registered topic whose metadata has a non-empty ``key`` (the set
  follows the registry while the worker runs), and its ``<topic>.repartition``. Out:
  ``<topic>.unique`` -- same partition count, same partition, same key bytes, same value
  bytes, original timestamp and headers plus ``onepipe.source: b"<partition>:<offset>"``
  (the version's position in the source topic) -- and ``<topic>.repartition``. The agent
  creates both topics (``.unique`` with ``cleanup.policy=compact``).
- A version is emitted to ``.unique`` only if it outranks (onepipe.schemas.merge) every version of
  its key emitted before it: per key, ``.unique`` is strictly increasing in rank, and
  its last message is the key's winner. Duplicates (equal rank) and losers (lower rank)
  are counted and dropped. Within one consumed batch only a key's best version is
  emitted. Undecodable values (tombstones, no frame, unknown schema, bad body) are
  counted and skipped.
- Records whose key bytes are not canonical are deduplicated under the canonical key;
  records in the wrong partition for that key (a producer that bypassed the endpoint's
  partitioner) are forwarded to ``<topic>.repartition`` at the canonical partition and
  deduplicated by the member owning it.
- Delivery: at-least-once, without regressions. Per batch: winners (and forwarded
  records) are produced and acknowledged, then the table (RocksDB, onepipe.tables.dedup.store)
  is written with the ``.unique`` offset it has applied, then Kafka offsets are
  committed. (The next batch is planned while those acks are pending -- against the
  table plus the winners still in flight -- and batches complete strictly in order, so
  this holds for every batch.) ``.unique`` is the table's changelog: on assignment a
  partition's table is brought to the changelog's high watermark
  (onepipe.tables.dedup.recovery), so a crash after
  the acks and before the commit re-reads the batch and finds its winners already
  there (duplicates, not re-emitted), and a new owner after a rebalance starts from
  everything the old owner emitted. A fresh data dir rebuilds every table from
  ``.unique``. A zombie member (one that lost its session but keeps producing) can still
  emit a version the new owner emits again; ``.unique`` stays at-least-once.
- Rebalance: partition ``p`` of a topic and of its repartition topic go to the same
  member (range assignor, equal partition counts). A revoke waits for the batches in
  flight, so their winners are acknowledged and committed before the partition moves.
- Failures: any error in a batch or a rebalance closes the tables and rejoins the group
  (backing off up to 60 s), so every partition is recovered from ``.unique`` again and
  re-read from its last commit. ``on_winner`` (for checksum tables) sees a winner change
  once it is durable in ``.unique`` and in the table. A crash between the acks and the
  table write hides that change from the hook (the re-read finds a duplicate), so a
  table fed by the hook must recover from ``.unique`` as this one does.

Design: a batch consumer of its own (group ``<app_id>-dedup``) hosted by the worker, like
the archive agent, because Faust's per-event path runs at ~1/40 of a batch consumer.
This module is the loop, the planning of each batch and the rebalance callbacks; the
batches in flight are onepipe.agents.dedup.pipeline, the tables of assigned partitions
onepipe.agents.dedup.partitions, the followed topics onepipe.agents.dedup.topics.
Per batch the Python work is: one container-block decode per schema (onepipe.tables.dedup.decode),
a vectorised murmur2 (onepipe.schemas.partitioner), one multi-get and one WriteBatch per
partition, and aiokafka's batch produce API.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from onepipe.agents.batch.supervise import Rebalance, end_loop, group_consumer, supervise
from onepipe.agents.dedup.metrics import DedupMetrics, WinnerHook
from onepipe.agents.dedup.partitions import PartitionTables
from onepipe.agents.dedup.pipeline import BatchPipeline
from onepipe.agents.dedup.plan import PartitionWork, group_by_table
from onepipe.agents.dedup.topics import DedupTopic, keyed_topics, plan_table
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.topic_names import repartition_topic
from onepipe.tables.dedup.store import DedupStore
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["DedupAgent", "DedupMetrics", "WinnerHook"]


class DedupAgent:
    """Deduplicates keyed topics into ``<topic>.unique``; an async context manager."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        registry: RegistryStore,
        data_dir: Path,
        replication_factor: int = 1,
        idempotent_producer: bool = True,
        session_timeout: float = 10.0,
        rebalance_timeout: float = 10.0,
        produce_timeout: float = 30.0,
        max_records: int = 5_000,
        topics: Iterable[str] | None = None,
        on_winner: WinnerHook | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._registry = registry
        #: Tables live under ``<data_dir>/dedup/<topic>/<partition>``.
        self._tables = PartitionTables(data_dir / "dedup")
        self._replication_factor = replication_factor
        self._idempotent = idempotent_producer
        self._session_timeout = session_timeout
        self._rebalance_timeout = rebalance_timeout
        self._produce_timeout = produce_timeout
        self._max_records = max_records
        #: When given, only these topics are deduplicated (tests, benchmarks).
        self._only_topics = frozenset(topics) if topics is not None else None
        self._consumer: AIOKafkaConsumer | None = None
        self._recovery: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._topics: dict[str, DedupTopic] = {}
        #: repartition topic name -> source topic name.
        self._sources: dict[str, str] = {}
        self._subscribed: frozenset[str] = frozenset()
        self._generation = -1
        #: A failure of a batch or a rebalance callback (aiokafka only logs the latter):
        #: the loop raises it, so the supervised restart recovers instead of leaving
        #: partitions paused.
        self._failure: BaseException | None = None
        # Held while a batch is processed and while partitions move: a revoke waits for
        # the batch in flight, so its winners are acked and committed before the move.
        self._lock = asyncio.Lock()
        self._progress = asyncio.Condition()
        self.metrics = DedupMetrics()
        self._pipeline = BatchPipeline(self.metrics, self._progress, produce_timeout,
                                       self._failed)
        self.on_winner = on_winner
        self.assigned = asyncio.Event()

    @property
    def on_winner(self) -> WinnerHook | None:
        """Called per changed winner once durable (see :data:`WinnerHook`); settable."""
        return self._pipeline.on_winner

    @on_winner.setter
    def on_winner(self, hook: WinnerHook | None) -> None:
        self._pipeline.on_winner = hook

    def _failed(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc  # the loop raises it and restarts from the changelogs

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._group_id,
            acks="all",
            enable_idempotence=self._idempotent,
            max_batch_size=1024 * 1024,
            request_timeout_ms=int(self._produce_timeout * 1000),
        )
        await self._producer.start()
        self._consumer = group_consumer(
            self._bootstrap, self._group_id, session_timeout=self._session_timeout,
            rebalance_timeout=self._rebalance_timeout,
            partition_assignment_strategy=(RangePartitionAssignor,))
        await self._consumer.start()
        self._recovery = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=f"{self._group_id}-recovery",
            enable_auto_commit=False,
            auto_offset_reset="none",  # a table beyond its changelog's end must be noticed
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._recovery.start()
        self._task = asyncio.create_task(self._run(), name="dedup-agent")

    async def stop(self) -> None:
        """Stop consuming, close the tables, leave the group; harmless twice.

        A batch cut short is not committed: the next owner reads it again and finds
        whatever of it was already emitted in ``.unique``.
        """
        task, self._task = self._task, None
        await end_loop(task, f"dedup agent {self._group_id}")
        # Let the batches in flight finish (acks, tables, commits) while every client is
        # still up; aiokafka need not call the revoke listener on close.
        async with self._lock:
            await self._pipeline.drain()
        consumer, self._consumer = self._consumer, None
        recovery, self._recovery = self._recovery, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await consumer.stop()  # revokes: on_revoked closes the tables
        finally:
            self._tables.close_all()
            if recovery is not None:
                await recovery.stop()
            if producer is not None:
                await producer.stop()

    async def __aenter__(self) -> DedupAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ test helpers
    async def wait_until(self, condition: Callable[[DedupMetrics], bool]) -> None:
        """Wait until ``condition(metrics)`` holds (checked after every batch)."""
        async with self._progress:
            await self._progress.wait_for(lambda: condition(self.metrics))

    async def wait_consumed(self, count: int) -> None:
        """Wait until this agent has consumed (and committed) at least ``count`` records."""
        await self.wait_until(lambda m: m.consumed >= count)

    def disk_bytes(self) -> int:
        """Bytes of every table under this agent's data dir."""
        return self._tables.disk_bytes()

    # ------------------------------------------------------------------- loop
    async def _run(self) -> None:
        """The consume loop, restarted from the changelogs after any failure.

        A produce that failed after its retries, a table that cannot be written, anything
        unexpected: the agent closes its tables and rejoins the group, so every partition
        is recovered from ``.unique`` and re-read from its last commit, then goes on.
        """
        await supervise(self._consume, self._restart, f"dedup agent {self._group_id}",
                        "recovering from the changelogs")

    async def _restart(self) -> None:
        self.metrics.restarts += 1
        async with self._lock:
            await self._pipeline.drain()
            self._failure = None
            self._pipeline.clear()
            self._tables.close_all()
            self.metrics.positions.clear()
        consumer = self._consumer
        if consumer is not None and self._subscribed:
            # Leaving and rejoining makes on_assigned recover every partition again.
            consumer.unsubscribe()
            self._subscribed = frozenset()
            self._generation = -1

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            failure, self._failure = self._failure, None
            if failure is not None:
                raise OnepipeError(f"dedup batch or rebalance failed: {failure!r}"
                                   ) from failure
            await self._follow_registry(consumer)
            if not self._subscribed:
                await asyncio.sleep(0.5)  # nothing keyed yet; re-check the registry
                continue
            try:
                batches = await consumer.getmany(timeout_ms=250, max_records=self._max_records)
            except KafkaError:
                log.exception("dedup consumer %s failed to fetch; retrying", self._group_id)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            if batches:
                async with self._lock:
                    await self._process(consumer, batches)
                del batches  # not alive during the next fetch (fewer objects for the GC)
                async with self._progress:
                    self._progress.notify_all()

    async def _follow_registry(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribe to the keyed topics (and their repartition topics) the registry knows."""
        state = self._registry.state
        if state.generation == self._generation:
            return
        generation = state.generation
        topics = await keyed_topics(state, self._only_topics, self._topics, self._bootstrap,
                                    self._replication_factor)
        self._generation = generation
        self._topics = topics
        self._sources = {repartition_topic(t): t for t in topics}
        wanted = frozenset([*topics, *self._sources])
        if wanted == self._subscribed:
            return
        if wanted:
            log.info("dedup agent subscribes to %s", sorted(wanted))
            consumer.subscribe(sorted(wanted), listener=Rebalance(self, consumer))
        else:
            log.info("dedup agent: no keyed topic any more")
            consumer.unsubscribe()
        self._subscribed = wanted

    # ------------------------------------------------------------------ batch
    async def _process(self, consumer: AIOKafkaConsumer,
                       batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Plan a batch per table; its output and completion go to the pipeline.

        The next batch is planned while this one's acks are pending, against the table
        *plus* the winners still in flight (onepipe.agents.dedup.pipeline).
        """
        grouped = group_by_table(batches, self._sources)
        pipeline = self._pipeline
        works: list[tuple[PartitionWork, DedupStore]] = []
        for (topic, partition), (source_records, routed_records) in grouped.items():
            store = self._tables.get((topic, partition))
            described = self._topics.get(topic)
            if store is None or described is None:
                continue  # revoked while fetched: the new owner reads it again
            work = await plan_table(self._registry, described, topic, partition,
                                    source_records, routed_records,
                                    pipeline.stored(topic, partition, store))
            pipeline.hold(work)
            works.append((work, store))
        grouped.clear()  # the records are not needed past planning: let them go now
        if works:
            if self._producer is None:
                raise OnepipeError("the dedup agent is not running; start() it first")
            await pipeline.submit(consumer, self._producer, works)

    # -------------------------------------------------------------- rebalance
    def _tables_of(self, tps: Iterable[TopicPartition]) -> set[tuple[str, int]]:
        """The (source topic, partition) tables of source and repartition partitions."""
        return {(self._sources.get(tp.topic, tp.topic), tp.partition) for tp in tps}

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight, then close the revoked partitions' tables."""
        async with self._lock:
            await self._pipeline.drain()
            keys = self._tables_of(revoked)
            self._tables.close(keys)
            self._pipeline.forget(keys)
            for tp in revoked:
                self.metrics.positions.pop(tp, None)

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                          ) -> None:
        """Recover the assigned partitions' tables from ``.unique`` before consuming."""
        # Paused before the first await: nothing of these partitions may be processed
        # against a table that is not up to date with its changelog.
        consumer.pause(*assigned)
        async with self._lock:
            keys = sorted(self._tables_of(assigned))
            try:
                for topic, partition in keys:
                    if (topic, partition) in self._tables or topic not in self._topics:
                        continue
                    recovery = self._recovery
                    assert recovery is not None
                    self.metrics.recovered += await self._tables.open(
                        recovery, topic, partition, self._topics[topic].reader)
            except Exception as exc:
                # Partitions stay paused; the loop restarts and recovers them again.
                log.exception("dedup recovery of %s failed", keys)
                self._failure = exc
                return
        consumer.resume(*assigned)
        self.assigned.set()
        async with self._progress:
            self._progress.notify_all()

