"""The dedup agent: planning each batch against the tables, and the tables' partition moves.

The contract is the package's (onepipe.agents.dedup). This module is the batch step and
the rebalance callbacks; the batches in flight are onepipe.agents.dedup.pipeline, the
tables of assigned partitions onepipe.agents.dedup.partitions, the followed topics
onepipe.agents.dedup.topics. Per batch the Python work is: one container-block decode per
schema (onepipe.tables.dedup.decode), a vectorised murmur2 (onepipe.schemas.partitioner),
one multi-get and one WriteBatch per partition, and aiokafka's batch produce API.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from onepipe.agents.batch.agent import BatchAgent, Batches
from onepipe.agents.dedup.metrics import DedupMetrics, WinnerHook
from onepipe.agents.dedup.partitions import PartitionTables
from onepipe.agents.dedup.pipeline import BatchPipeline
from onepipe.agents.dedup.plan import PartitionWork, group_by_table
from onepipe.agents.dedup.topics import DedupTopic, TableBatch, keyed_topics, plan_tables
from onepipe.schemas.errors import OnepipeError
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import repartition_topic
from onepipe.tables.dedup.store import DedupStore
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["DedupAgent"]


class DedupAgent(BatchAgent[DedupMetrics]):
    """Deduplicates keyed topics into ``<topic>.unique``; an async context manager."""

    kind = "dedup"
    recovery = "recovering from the changelogs"

    def __init__(
        self,
        *,
        kafka: KafkaClients,
        group_id: str,
        registry: RegistryStore,
        data_dir: Path,
        replication_factor: int = 1,
        max_records: int = 2_000,  # ~8 ms of the loop a step (BatchAgent: holding the loop)
        topics: Iterable[str] | None = None,
        on_winner: WinnerHook | None = None,
    ) -> None:
        # Partition p of a topic and of its repartition topic go to the same member.
        super().__init__(kafka=kafka, group_id=group_id, registry=registry,
                         metrics=DedupMetrics(), max_records=max_records, topics=topics,
                         consumer_options={
                             "partition_assignment_strategy": (RangePartitionAssignor,)})
        #: Tables live under ``<data_dir>/dedup/<topic>/<partition>``.
        self._tables = PartitionTables(data_dir / "dedup")
        self._replication_factor = replication_factor
        self._recovery: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._topics: dict[str, DedupTopic] = {}
        #: repartition topic name -> source topic name.
        self._sources: dict[str, str] = {}
        self._pipeline = BatchPipeline(self.metrics, self._progress,
                                       self._kafka.request_timeout, self._fail)
        self.on_winner = on_winner

    @property
    def on_winner(self) -> WinnerHook | None:
        """Called per changed winner once durable (see :data:`WinnerHook`); settable."""
        return self._pipeline.on_winner

    @on_winner.setter
    def on_winner(self, hook: WinnerHook | None) -> None:
        self._pipeline.on_winner = hook

    async def wait_consumed(self, count: int) -> None:
        """Wait until this agent has consumed (and committed) at least ``count`` records."""
        await self.wait_until(lambda m: m.consumed >= count)

    def disk_bytes(self) -> int:
        """Bytes of every table under this agent's data dir."""
        return self._tables.disk_bytes()

    # ------------------------------------------------------------------ hooks
    async def _open(self) -> None:
        self._producer = self._kafka.producer(self._group_id, max_batch_size=1024 * 1024)
        await self._producer.start()
        self._recovery = self._kafka.reader(
            f"{self._group_id}-recovery",
            auto_offset_reset="none",  # a table beyond its changelog's end must be noticed
            max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._recovery.start()

    async def _drain(self) -> None:
        """Let the batches in flight finish (acks, tables, commits) while clients are up.

        A batch cut short is not committed: the next owner reads it again and finds
        whatever of it was already emitted in ``.unique``.
        """
        async with self._lock:
            await self._pipeline.drain()

    async def _close(self) -> None:
        recovery, self._recovery = self._recovery, None
        producer, self._producer = self._producer, None
        try:
            self._tables.close_all()
        finally:
            try:
                if recovery is not None:
                    await recovery.stop()
            finally:
                if producer is not None:
                    await producer.stop()

    async def _reset(self) -> None:
        """Close every table: each partition is recovered from ``.unique`` again."""
        self.metrics.restarts += 1
        await self._pipeline.drain()
        self._pipeline.clear()
        self._tables.close_all()
        self.metrics.positions.clear()

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        """The keyed topics the registry knows, and their repartition topics."""
        topics = await keyed_topics(state, self._only_topics, self._topics, self._kafka,
                                    self._replication_factor)
        self._topics = topics
        self._sources = {repartition_topic(t): t for t in topics}
        return frozenset([*topics, *self._sources])

    # ------------------------------------------------------------------ batch
    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        """Plan a batch per table; its output and completion go to the pipeline.

        The next batch is planned while this one's acks are pending, against the table
        *plus* the winners still in flight (onepipe.agents.dedup.pipeline).
        """
        if not batches:
            return
        grouped = group_by_table(batches, self._sources)
        pipeline = self._pipeline
        by_topic: dict[str, tuple[list[TableBatch], list[DedupStore]]] = {}
        for (topic, partition), (source_records, routed_records) in grouped.items():
            store = self._tables.get((topic, partition))
            if store is None or topic not in self._topics:
                continue  # revoked while fetched: the new owner reads it again
            tables, stores = by_topic.setdefault(topic, ([], []))
            tables.append((partition, source_records, routed_records,
                           pipeline.stored(topic, partition, store)))
            stores.append(store)
        works: list[tuple[PartitionWork, DedupStore]] = []
        for topic, (tables, stores) in by_topic.items():
            planned = await plan_tables(self._registry, self._topics[topic], topic, tables)
            for work, store in zip(planned, stores, strict=True):
                pipeline.hold(work)
                works.append((work, store))
        by_topic.clear()
        grouped.clear()  # the records are not needed past planning: let them go now
        if works:
            if self._producer is None:
                raise OnepipeError("the dedup agent is not running; start() it first")
            await pipeline.submit(consumer, self._producer, works)

    # -------------------------------------------------------------- rebalance
    def _tables_of(self, tps: Iterable[TopicPartition]) -> set[tuple[str, int]]:
        """The (source topic, partition) tables of source and repartition partitions."""
        return {(self._sources.get(tp.topic, tp.topic), tp.partition) for tp in tps}

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batches in flight, then close the revoked partitions' tables."""
        await self._pipeline.drain()
        keys = self._tables_of(revoked)
        self._tables.close(keys)
        self._pipeline.forget(keys)
        for tp in revoked:
            self.metrics.positions.pop(tp, None)

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        """Recover the assigned partitions' tables from ``.unique`` before consuming."""
        recovery = self._recovery
        if recovery is None:
            raise OnepipeError("the dedup agent is not running; start() it first")
        for topic, partition in sorted(self._tables_of(assigned)):
            if (topic, partition) in self._tables or topic not in self._topics:
                continue
            self.metrics.recovered += await self._tables.open(
                recovery, topic, partition, self._topics[topic].reader)
