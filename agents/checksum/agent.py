"""Checksum agent: per-day figures of every keyed topic's current winners, as the stream flows.

Contract:

- Topics in: ``<topic>.unique`` of every registered keyed topic and ``<topic>`` itself
  (the source; same consumer and group, routed by topic name). The set follows the
  registry; a topic is subscribed to only once it exists - listed first, since a metadata
  request naming a missing topic would create it. Out: the compacted topic
  ``<topic>.checksums`` (one partition, created by the agent): per source partition the
  figures of every day (``<p>/<day>``) and hour (``<p>/<day>T<HH>``) and the raw record
  count of every day (``<p>/<day>/raw``), tombstoned when dropped
  (onepipe.agents.checksum.publish). onepipe.agents.verify.checksums reads it.
- Windows: a winner's figures count in the day and the hour of its partition time
  (onepipe.schemas.partition_day ``partition_days`` / ``partition_hours``, the same rounding and
  clamping): a day's figures are the sum of its hours'.
- State: one onepipe.tables.checksum.store per ``.unique`` partition under
  ``<data_dir>/checksums/<topic>/<partition>``. Every ``.unique`` message is a new
  winner of its key (onepipe.agents.dedup.agent), so the table is a fold of ``.unique``; each batch's
  changes and the next offset to fold are one RocksDB WriteBatch.
- Raw record counts: every record of the source topic (duplicates, retries, losers)
  counted in its day as the raw lake places it (onepipe.agents.checksum.raw: ``partition_time``,
  else the Kafka timestamp; undecodable ones also counted apart), one
  ``RawCountStore`` per source partition under ``<data_dir>/checksums/<topic>/raw/<p>``;
  counts and the next source offset are one WriteBatch, exactly-once like the fold.
- Delivery: **exactly-once fold and count**. On assignment a partition is sought to its
  store's applied offset (Kafka's committed offset is ignored; it is committed anyway,
  for lag monitoring), and records below it are skipped, so a crash anywhere folds or
  counts nothing twice and loses nothing. A fresh data dir rebuilds from offset 0 (on
  Kafka, the compacted ``.unique`` log still holds every key's winner; raw counts need
  the source topic's retention to reach back, else they start where it does).
- Publication is at-least-once and eventually exact: the touched days of a batch are
  produced after the table is written, and on assignment every day of the partition is
  produced again (so a crash between the write and the produce heals on restart).
- Retention: days more than ``retention_days`` before today (UTC, injectable clock) are
  dropped (figures, their hours, raw counts) and tombstoned.
- Figures are those of onepipe.schemas.figures over the winners decoded with the topic's
  **latest** schema (onepipe.sinks.formats.raw's type mapping, like onepipe.agents.verify.stream) and
  placed in days by onepipe.schemas.partition_day. Known gap: a new schema version changes the
  spec, and contributions folded under the old one are not recomputed (delete the data
  dir to rebuild).

Design: a batch consumer of its own (group ``<app_id>-checksums``), hosted by the worker
like the archive agent, off the dedup agent's hot path. Per batch and partition: one
decode pass, one ``row_hashes`` call and one column pass per sum field, one multi-get,
one WriteBatch; the per-key Python work is the fold itself (onepipe.tables.checksum.store.fold).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from onepipe.agents.batch.supervise import Rebalance, end_loop, group_consumer, supervise
from onepipe.agents.checksum.decode import winner_contributions
from onepipe.agents.checksum.open_tables import ChecksumMetrics, OpenTables
from onepipe.agents.checksum.publish import send_all
from onepipe.agents.checksum.raw import RawPlacer
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import NotFoundError, OnepipeError
from onepipe.schemas.figures import DayFigures
from onepipe.schemas.topic_names import checksums_topic, source_of_unique, unique_topic
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.checksum.published import Message, fold_messages, raw_messages
from onepipe.tables.checksum.store import ChecksumStore, RawCount, RawCountStore, count_raw, fold
from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.lifecycle import Service
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["ChecksumAgent", "ChecksumMetrics"]

_DAY_SECONDS = 86_400
#: Seconds between looks for ``.unique`` topics that do not exist yet.
_LOOK_AGAIN = 1.0


@dataclass(frozen=True, slots=True)
class _Topic:
    """A keyed topic whose ``.unique`` is folded."""

    view: TopicView
    reader: AvroSchema
    placer: RawPlacer


class ChecksumAgent(Service):
    """Folds ``<topic>.unique`` into per-day checksum tables; an async context manager."""

    def __init__(self, *, bootstrap: str, group_id: str, registry: RegistryStore,
                 data_dir: Path, retention_days: int = 400, replication_factor: int = 1,
                 idempotent_producer: bool = True, session_timeout: float = 10.0,
                 rebalance_timeout: float = 10.0, produce_timeout: float = 30.0,
                 max_records: int = 5_000, topics: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._registry = registry
        self._root = data_dir / "checksums"
        self._retention_days = retention_days
        self._replication_factor = replication_factor
        self._idempotent = idempotent_producer
        self._session_timeout = session_timeout
        self._rebalance_timeout = rebalance_timeout
        self._produce_timeout = produce_timeout
        self._max_records = max_records
        #: When given, only these topics are folded (tests, benchmarks).
        self._only_topics = frozenset(topics) if topics is not None else None
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._topics: dict[str, _Topic] = {}
        self._tables = OpenTables()
        self._subscribed: frozenset[str] = frozenset()
        self._generation = -1
        self._missing_since = 0.0
        #: A failure of a rebalance callback (aiokafka only logs those): the loop raises
        #: it, so the supervised restart reopens the tables instead of leaving partitions
        #: paused.
        self._failure: BaseException | None = None
        #: Held while a batch is folded and while partitions move.
        self._lock = asyncio.Lock()
        self._progress = asyncio.Condition()
        self.metrics = ChecksumMetrics()

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._group_id, acks="all",
            enable_idempotence=self._idempotent,
            request_timeout_ms=int(self._produce_timeout * 1000))
        await self._producer.start()
        # auto_offset_reset only matters on Kafka when a compacted-away offset is asked
        # for: the position itself always comes from the store.
        self._consumer = group_consumer(
            self._bootstrap, self._group_id, session_timeout=self._session_timeout,
            rebalance_timeout=self._rebalance_timeout)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="checksum-agent")

    async def stop(self) -> None:
        """Stop folding, close the tables, leave the group; harmless twice."""
        task, self._task = self._task, None
        await end_loop(task, f"checksum agent {self._group_id}")
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            async with self._lock:
                self._close_stores(None)
            if producer is not None:
                await producer.stop()

    # ------------------------------------------------------------ test helpers
    async def wait_until(self, condition: Callable[[ChecksumMetrics], bool]) -> None:
        """Wait until ``condition(metrics)`` holds (checked after every batch/assignment)."""
        async with self._progress:
            await self._progress.wait_for(lambda: condition(self.metrics))

    async def wait_applied(self, topic: str, watermarks: dict[int, int]) -> None:
        """Wait until every ``.unique`` partition of ``topic`` is folded up to its mark."""
        await self.wait_counted(unique_topic(topic), watermarks)

    async def wait_counted(self, name: str, watermarks: dict[int, int]) -> None:
        """Wait until every partition of topic ``name`` is consumed up to its mark."""
        await self.wait_until(lambda m: all(
            m.positions.get(TopicPartition(name, p), -1) >= mark
            for p, mark in watermarks.items()))

    def day_figures(self, topic: str) -> dict[str, DayFigures]:
        """The tables' figures of ``topic`` per day, partitions summed (assigned here)."""
        return self._tables.day_figures(topic)

    def hour_figures(self, topic: str) -> dict[str, DayFigures]:
        """The figures of ``topic`` per hour ``YYYY-MM-DDTHH`` (assigned here)."""
        return self._tables.hour_figures(topic)

    def raw_counts(self, topic: str) -> dict[str, RawCount]:
        """Raw record counts of ``topic`` per day, partitions summed (assigned here)."""
        return self._tables.raw_counts(topic)

    # ------------------------------------------------------------------- loop
    async def _run(self) -> None:
        """The consume loop; after a failure the tables reopen and resume from themselves."""
        await supervise(self._consume, self._restart, f"checksum agent {self._group_id}",
                        "resuming from its tables")

    async def _restart(self) -> None:
        self.metrics.restarts += 1
        async with self._lock:
            self._close_stores(None)
        consumer = self._consumer
        if consumer is not None and self._subscribed:
            # Leaving and rejoining makes on_assigned seek every partition to its table.
            consumer.unsubscribe()
        self._subscribed = frozenset()
        self._generation = -1

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            failure, self._failure = self._failure, None
            if failure is not None:
                raise OnepipeError(f"checksum rebalance failed: {failure!r}") from failure
            await self._follow_registry(consumer)
            if not self._subscribed:
                await asyncio.sleep(0.5)  # nothing to fold yet; re-check the registry
                continue
            try:
                batches = await consumer.getmany(timeout_ms=250, max_records=self._max_records)
            except KafkaError:
                log.exception("checksum consumer %s failed to fetch; retrying", self._group_id)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            if batches:
                async with self._lock:
                    for tp, records in batches.items():
                        if source_of_unique(tp.topic) is not None:
                            await self._fold(consumer, tp, records)
                        else:
                            await self._count(consumer, tp, records)
                async with self._progress:
                    self._progress.notify_all()

    async def _follow_registry(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribe to the ``.unique`` and source topics of the keyed topics that exist."""
        state = self._registry.state
        waiting = len(self._topics) < self._keyed_count()
        if state.generation == self._generation and not (
                waiting and self._clock() - self._missing_since >= _LOOK_AGAIN):
            return
        self._generation = state.generation
        self._missing_since = self._clock()
        existing = set(await consumer.topics())  # whole-cluster listing: creates nothing
        topics: dict[str, _Topic] = {}
        for topic, meta in list(state.topics.items()):
            if self._only_topics is not None and topic not in self._only_topics:
                continue
            if not meta.key or unique_topic(topic) not in existing or topic not in existing:
                continue
            try:
                reader = state.version(f"{topic}-value", "latest").schema
            except NotFoundError:
                continue  # metadata before its schema: wait for the schema
            if topic not in self._topics:
                await ensure_topic(self._bootstrap, checksums_topic(topic), partitions=1,
                                   replication_factor=self._replication_factor,
                                   configs={"cleanup.policy": "compact"})
            view = TopicView.build(meta, reader)
            topics[topic] = _Topic(view, reader, RawPlacer(view, reader))
        self._topics = topics
        wanted = frozenset(unique_topic(t) for t in topics) | frozenset(topics)
        if wanted == self._subscribed:
            return
        if wanted:
            log.info("checksum agent subscribes to %s", sorted(wanted))
            consumer.subscribe(sorted(wanted), listener=Rebalance(self, consumer))
        else:
            consumer.unsubscribe()
        self._subscribed = wanted

    def _keyed_count(self) -> int:
        return sum(1 for topic, meta in list(self._registry.state.topics.items())
                   if (self._only_topics is None or topic in self._only_topics) and meta.key)

    # ------------------------------------------------------------------ batch
    async def _fold(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                    records: list[ConsumerRecord[Any, Any]]) -> None:
        store = self._tables.folds.get(tp)
        topic = source_of_unique(tp.topic)
        described = self._topics.get(topic) if topic is not None else None
        if store is None or described is None or topic is None:
            return  # revoked while fetched: the next owner folds it from its table
        applied = store.applied_offset
        records = [r for r in records if r.offset >= applied]  # redelivered: folded already
        if not records:
            return
        winners = await asyncio.to_thread(winner_contributions, described.view, described.reader,
                                          self._registry.state.schema_by_id, records)
        self.metrics.undecodable += sum(1 for _, c in winners if c is None)
        previous = await asyncio.to_thread(store.get_many, list({k: None for k, _ in winners}))
        result = fold(described.view.spec, store.days, previous, winners, self._cutoff(),
                      store.hours)
        next_offset = records[-1].offset + 1
        await asyncio.to_thread(store.apply, result, next_offset)
        self.metrics.folded += len(records)
        self.metrics.batches += 1
        self.metrics.expired += len([d for d in result.dropped if d < self._cutoff()])
        self._positions_changed(tp, next_offset)
        await self._publish(topic, fold_messages(tp.partition, next_offset, result.days,
                                                 result.dropped, result.hours,
                                                 result.dropped_hours))
        await self._commit(consumer, tp, next_offset)

    async def _count(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                     records: list[ConsumerRecord[Any, Any]]) -> None:
        store = self._tables.raws.get(tp)
        described = self._topics.get(tp.topic)
        if store is None or described is None:
            return  # revoked while fetched: the next owner counts it from its store
        records = [r for r in records if r.offset >= store.applied_offset]  # redelivered
        if not records:
            return
        placed = await asyncio.to_thread(described.placer.place,
                                         self._registry.state.schema_by_id, records)
        days, dropped = count_raw(store.days, placed, self._cutoff())
        next_offset = records[-1].offset + 1
        await asyncio.to_thread(store.apply, days, dropped, next_offset)
        self.metrics.counted += len(records)
        self.metrics.raw_undecodable += sum(1 for _, bad in placed if bad)
        self.metrics.batches += 1
        self._positions_changed(tp, next_offset)
        await self._publish(tp.topic, raw_messages(tp.partition, next_offset, days, dropped))
        await self._commit(consumer, tp, next_offset)

    def _cutoff(self) -> int:
        """The first day kept: days before it are dropped."""
        return int(self._clock() // _DAY_SECONDS) - self._retention_days

    def _positions_changed(self, tp: TopicPartition, offset: int) -> None:
        self.metrics.positions[tp] = offset
        self.metrics.days_tracked = self._tables.days_tracked

    async def _publish(self, topic: str, messages: list[Message]) -> None:
        producer = self._producer
        if producer is None:
            raise OnepipeError("the checksum agent is not running; start() it first")
        self.metrics.published += await send_all(producer, checksums_topic(topic), messages)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
                      ) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The table is the source of truth; a lost commit only staled the lag figure.
            log.warning("checksum commit of %s[%d]@%d failed: %r", tp.topic, tp.partition,
                        offset, exc)

    # -------------------------------------------------------------- rebalance
    def _close_stores(self, tps: Iterable[TopicPartition] | None) -> None:
        """Close the stores of ``tps`` (all when None)."""
        closing = list(tps) if tps is not None else [*self._tables.folds, *self._tables.raws]
        self._tables.close(closing)
        for tp in closing:
            self.metrics.positions.pop(tp, None)
        self.metrics.days_tracked = self._tables.days_tracked

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight, then close the revoked partitions' tables."""
        async with self._lock:
            self._close_stores(revoked)

    async def _open(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        if tp.topic in self._topics:
            await self._open_raw(consumer, tp)
            return
        topic = source_of_unique(tp.topic)
        described = self._topics.get(topic) if topic is not None else None
        if tp in self._tables.folds or topic is None or described is None:
            return
        path = self._root / topic / str(tp.partition)
        store = await asyncio.to_thread(ChecksumStore, path)
        self._tables.folds[tp] = store
        consumer.seek(tp, store.applied_offset)
        log.info("checksums %s[%d]: resuming from the table at @%d", tp.topic, tp.partition,
                 store.applied_offset)
        expired = fold(described.view.spec, store.days, {}, [], self._cutoff(), store.hours)
        if expired.dropped or expired.dropped_hours:
            await asyncio.to_thread(store.apply, expired, store.applied_offset)
            self.metrics.expired += len(expired.dropped)
        # Every window again: heals a publication lost between a table write and its produce.
        await self._publish(topic, fold_messages(
            tp.partition, store.applied_offset, store.days, expired.dropped, store.hours,
            expired.dropped_hours))
        self._positions_changed(tp, store.applied_offset)

    async def _open_raw(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        if tp in self._tables.raws:
            return
        path = self._root / tp.topic / "raw" / str(tp.partition)
        store = await asyncio.to_thread(RawCountStore, path)
        self._tables.raws[tp] = store
        consumer.seek(tp, store.applied_offset)
        log.info("raw counts %s[%d]: resuming from the store at @%d", tp.topic, tp.partition,
                 store.applied_offset)
        _, dropped = count_raw(store.days, (), self._cutoff())
        if dropped:
            await asyncio.to_thread(store.apply, {}, dropped, store.applied_offset)
        await self._publish(tp.topic, raw_messages(tp.partition, store.applied_offset,
                                                   store.days, dropped))
        self._positions_changed(tp, store.applied_offset)

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                          ) -> None:
        """Open each partition's table, seek to its applied offset, republish its days."""
        # Paused before the first await: nothing may be fetched from the group's position.
        consumer.pause(*assigned)
        async with self._lock:
            try:
                for tp in sorted(assigned):
                    await self._open(consumer, tp)
            except Exception as exc:
                # Partitions stay paused; the loop restarts and reopens them.
                log.exception("checksum tables of %s failed to open", sorted(assigned))
                self._failure = exc
                return
        consumer.resume(*assigned)
        async with self._progress:
            self._progress.notify_all()
