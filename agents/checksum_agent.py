"""Checksum agent: per-day figures of every keyed topic's current winners, as the stream flows.

Contract:

- Topics in: ``<topic>.unique`` of every registered keyed topic (the set follows the
  registry; a ``.unique`` topic is subscribed to only once it exists - listed first, since
  a metadata request naming a missing topic would create it). Out: the compacted topic
  ``<topic>.checksums`` (one partition, created by the agent), keyed ``<partition>/<day>``,
  valued JSON ``{figures, unique_offset, partition, day}`` (``figures``:
  :meth:`DayFigures.to_json`); a tombstone when a day is dropped. agents.verify_checksums
  reads it.
- State: one tables.checksum_store per ``.unique`` partition under
  ``<data_dir>/checksums/<topic>/<partition>``. Every ``.unique`` message is a new
  winner of its key (agents.dedup), so the table is a fold of ``.unique``; each batch's
  changes and the next offset to fold are one RocksDB WriteBatch.
- Delivery: **exactly-once fold**. On assignment a partition is sought to its store's
  applied offset (Kafka's committed offset is ignored; it is committed anyway, for lag
  monitoring), and records below it are skipped, so a crash anywhere folds nothing twice
  and nothing is lost. A fresh data dir rebuilds from ``.unique`` offset 0 (on Kafka,
  the compacted log still holds every key's winner).
- Publication is at-least-once and eventually exact: the touched days of a batch are
  produced after the table is written, and on assignment every day of the partition is
  produced again (so a crash between the write and the produce heals on restart).
- Retention: days more than ``retention_days`` before today (UTC, injectable clock) are
  dropped from the table and tombstoned.
- Figures are those of schemas.figures over the winners decoded with the topic's
  **latest** schema (sinks.raw_format's type mapping, like agents.verify_stream) and
  placed in days by schemas.partition_day. Known gap: a new schema version changes the
  spec, and contributions folded under the old one are not recomputed (delete the data
  dir to rebuild).

Design: a batch consumer of its own (group ``<app_id>-checksums``), hosted by the worker
like the archive agent, off the dedup agent's hot path. Per batch and partition: one
decode pass, one ``row_hashes`` call and one column pass per sum field, one multi-get,
one WriteBatch; the per-key Python work is the fold itself (tables.checksum_store.fold).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from agents.checksum_decode import winner_contributions
from agents.dedup_plan import unique_topic
from agents.verify_sources import TopicView
from schemas.avro_schema import AvroSchema
from schemas.errors import NotFoundError, OnepipeError
from schemas.figures import DayFigures
from schemas.metadata import metadata_from_dict
from schemas.partition_day import day_name
from tables.checksum_store import ChecksumStore, fold
from tables.kafka import ensure_topic
from tables.lifecycle import Service
from tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["ChecksumAgent", "ChecksumMetrics", "checksum_topic", "checksums_source_topic"]

_DAY_SECONDS = 86_400
#: Seconds between looks for ``.unique`` topics that do not exist yet.
_LOOK_AGAIN = 1.0


def checksum_topic(topic: str) -> str:
    """The compacted topic the checksum table of ``topic`` is published to."""
    return f"{topic}.checksums"


def checksums_source_topic(name: str) -> str | None:
    """``topic`` of ``<topic>.unique``; None for another name."""
    suffix = unique_topic("")
    return name[: -len(suffix)] if name.endswith(suffix) else None


@dataclass(slots=True)
class ChecksumMetrics:
    """Counters of one checksum agent (exported by the worker's metrics view)."""

    #: ``.unique`` messages folded into tables (redeliveries below the applied offset not).
    folded: int = 0
    #: Winners whose value did not decode or had no day (their key counts nowhere).
    undecodable: int = 0
    #: Batches applied.
    batches: int = 0
    #: Day records produced to ``<topic>.checksums`` (tombstones included).
    published: int = 0
    #: (Partition, day) figures dropped by retention (a day counts once per partition).
    expired: int = 0
    #: Restarts after a failure.
    restarts: int = 0
    #: (Partition, day) figures held by the tables of the partitions assigned here.
    days_tracked: int = 0
    #: Next ``.unique`` offset to fold, per partition assigned here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Topic:
    """A keyed topic whose ``.unique`` is folded."""

    view: TopicView
    reader: AvroSchema


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
        self._stores: dict[TopicPartition, ChecksumStore] = {}
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
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._group_id,
            enable_auto_commit=False,
            # Only reached on Kafka when a compacted-away offset is asked for: the
            # position itself always comes from the store.
            auto_offset_reset="earliest",
            session_timeout_ms=int(self._session_timeout * 1000),
            rebalance_timeout_ms=int(self._rebalance_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, self._session_timeout / 3) * 1000),
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="checksum-agent")

    async def stop(self) -> None:
        """Stop folding, close the tables, leave the group; harmless twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("checksum agent %s had stopped on an error", self._group_id)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await consumer.stop()
        finally:
            async with self._lock:
                self._close_stores(list(self._stores))
            if producer is not None:
                await producer.stop()

    # ------------------------------------------------------------ test helpers
    async def wait_until(self, condition: Callable[[ChecksumMetrics], bool]) -> None:
        """Wait until ``condition(metrics)`` holds (checked after every batch/assignment)."""
        async with self._progress:
            await self._progress.wait_for(lambda: condition(self.metrics))

    async def wait_applied(self, topic: str, watermarks: dict[int, int]) -> None:
        """Wait until every ``.unique`` partition of ``topic`` is folded up to its mark."""
        name = unique_topic(topic)
        await self.wait_until(lambda m: all(
            m.positions.get(TopicPartition(name, p), -1) >= mark
            for p, mark in watermarks.items()))

    def day_figures(self, topic: str) -> dict[str, DayFigures]:
        """The tables' figures of ``topic`` per day, partitions summed (assigned here)."""
        out: dict[str, DayFigures] = {}
        for tp, store in self._stores.items():
            if checksums_source_topic(tp.topic) != topic:
                continue
            for day, figures in store.days.items():
                name = day_name(day)
                out[name] = out[name] + figures if name in out else figures
        return out

    # ------------------------------------------------------------------- loop
    async def _run(self) -> None:
        """The consume loop; after a failure the tables reopen and resume from themselves."""
        backoff = 1.0
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("checksum agent %s failed; resuming from its tables in %.0fs",
                              self._group_id, backoff)
                self.metrics.restarts += 1
                await self._restart()
                await asyncio.sleep(backoff)  # do not spin on a failure that persists
                backoff = min(backoff * 2, 60.0)

    async def _restart(self) -> None:
        async with self._lock:
            self._close_stores(list(self._stores))
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
                        await self._fold(consumer, tp, records)
                async with self._progress:
                    self._progress.notify_all()

    async def _follow_registry(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribe to the ``.unique`` topics of the keyed topics that exist now."""
        state = self._registry.state
        waiting = len(self._topics) < self._keyed_count()
        if state.generation == self._generation and not (
                waiting and self._clock() - self._missing_since >= _LOOK_AGAIN):
            return
        self._generation = state.generation
        self._missing_since = self._clock()
        existing = set(await consumer.topics())  # whole-cluster listing: creates nothing
        topics: dict[str, _Topic] = {}
        for topic, raw in list(state.topics.items()):
            if self._only_topics is not None and topic not in self._only_topics:
                continue
            meta = metadata_from_dict(topic, raw)
            if not meta.key or unique_topic(topic) not in existing:
                continue
            try:
                reader = state.version(f"{topic}-value", "latest").schema
            except NotFoundError:
                continue  # metadata before its schema: wait for the schema
            if topic not in self._topics:
                await ensure_topic(self._bootstrap, checksum_topic(topic), partitions=1,
                                   replication_factor=self._replication_factor,
                                   configs={"cleanup.policy": "compact"})
            topics[topic] = _Topic(TopicView.build(meta, reader), reader)
        self._topics = topics
        wanted = frozenset(unique_topic(t) for t in topics)
        if wanted == self._subscribed:
            return
        if wanted:
            log.info("checksum agent subscribes to %s", sorted(wanted))
            consumer.subscribe(sorted(wanted), listener=_Rebalance(self, consumer))
        else:
            consumer.unsubscribe()
        self._subscribed = wanted

    def _keyed_count(self) -> int:
        count = 0
        for topic, raw in list(self._registry.state.topics.items()):
            if (self._only_topics is None or topic in self._only_topics) and raw.get("key"):
                count += 1
        return count

    # ------------------------------------------------------------------ batch
    async def _fold(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                    records: list[ConsumerRecord[Any, Any]]) -> None:
        store = self._stores.get(tp)
        topic = checksums_source_topic(tp.topic)
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
        result = fold(described.view.spec, store.days, previous, winners, self._cutoff())
        next_offset = records[-1].offset + 1
        await asyncio.to_thread(store.apply, result, next_offset)
        self.metrics.folded += len(records)
        self.metrics.batches += 1
        self.metrics.expired += len([d for d in result.dropped if d < self._cutoff()])
        self._positions_changed(tp, next_offset)
        await self._publish(topic, tp.partition, next_offset, result.days, result.dropped)
        await self._commit(consumer, tp, next_offset)

    def _cutoff(self) -> int:
        """The first day kept: days before it are dropped."""
        return int(self._clock() // _DAY_SECONDS) - self._retention_days

    def _positions_changed(self, tp: TopicPartition, offset: int) -> None:
        self.metrics.positions[tp] = offset
        self.metrics.days_tracked = sum(len(s.days) for s in self._stores.values())

    async def _publish(self, topic: str, partition: int, offset: int,
                       days: dict[int, DayFigures], dropped: Iterable[int]) -> None:
        producer = self._producer
        if producer is None:
            raise OnepipeError("the checksum agent is not running; start() it first")
        out = checksum_topic(topic)
        sends = []
        for day, figures in sorted(days.items()):
            value = orjson.dumps({"figures": figures.to_json(), "unique_offset": offset,
                                  "partition": partition, "day": day_name(day)})
            sends.append(await producer.send(out, value, key=f"{partition}/{day_name(day)}"
                                             .encode(), partition=0))
        for day in sorted(dropped):
            sends.append(await producer.send(out, None, key=f"{partition}/{day_name(day)}"
                                             .encode(), partition=0))
        if sends:
            await asyncio.gather(*sends)
            self.metrics.published += len(sends)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
                      ) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The table is the source of truth; a lost commit only staled the lag figure.
            log.warning("checksum commit of %s[%d]@%d failed: %r", tp.topic, tp.partition,
                        offset, exc)

    # -------------------------------------------------------------- rebalance
    def _close_stores(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            store = self._stores.pop(tp, None)
            if store is not None:
                store.close()
            self.metrics.positions.pop(tp, None)
        self.metrics.days_tracked = sum(len(s.days) for s in self._stores.values())

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight, then close the revoked partitions' tables."""
        async with self._lock:
            self._close_stores(revoked)

    async def _open(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        topic = checksums_source_topic(tp.topic)
        described = self._topics.get(topic) if topic is not None else None
        if tp in self._stores or topic is None or described is None:
            return
        path = self._root / topic / str(tp.partition)
        store = await asyncio.to_thread(ChecksumStore, path)
        self._stores[tp] = store
        consumer.seek(tp, store.applied_offset)
        log.info("checksums %s[%d]: resuming from the table at @%d", tp.topic, tp.partition,
                 store.applied_offset)
        expired = fold(described.view.spec, store.days, {}, [], self._cutoff())
        if expired.dropped:
            await asyncio.to_thread(store.apply, expired, store.applied_offset)
            self.metrics.expired += len(expired.dropped)
        # Every day again: heals a publication lost between a table write and its produce.
        await self._publish(topic, tp.partition, store.applied_offset, store.days,
                            expired.dropped)
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


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, agent: ChecksumAgent, consumer: AIOKafkaConsumer) -> None:
        self._agent = agent
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._agent.on_assigned(self._consumer, assigned)
