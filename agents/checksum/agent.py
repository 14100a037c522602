"""The checksum agent: folding ``.unique`` and counting the source, per partition store.

The contract is the package's (onepipe.agents.checksum). Per batch and partition: one
decode pass, one ``row_hashes`` call and one column pass per sum field, one multi-get, one
WriteBatch, and the fold, the per-key Python work (onepipe.tables.checksum.fold), all in
one worker thread: the loop only hands batches over and publishes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from onepipe.agents.batch.agent import STEP_RECORDS, STEP_RECORDS_CHECKSUM, BatchAgent, Batches
from onepipe.agents.checksum.decode import winner_contributions
from onepipe.agents.checksum.open_tables import ChecksumMetrics, OpenTables
from onepipe.agents.checksum.publish import Publications
from onepipe.agents.checksum.raw import RawPlacer
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import NotFoundError, OnepipeError
from onepipe.schemas.figures import DayFigures
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import checksums_topic, source_of_unique, unique_topic
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.tables.checksum import (
    ChecksumStore,
    FoldResult,
    Message,
    RawCount,
    RawCountStore,
    count_raw,
    fold,
    fold_messages,
    raw_messages,
)
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.record_columns import from_offset, offsets_of
from onepipe.tables.kafka.topics import ensure_topic, high_watermarks
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["ChecksumAgent"]

_DAY_SECONDS = 86_400
#: Seconds a restart waits at most for the sends it drops to land (Publications.drop).
_DROP_WAIT = 5.0
#: Seconds between looks for ``.unique`` topics that do not exist yet.
_LOOK_AGAIN = 1.0


@dataclass(frozen=True, slots=True)
class _Topic:
    """A keyed topic whose ``.unique`` is folded."""

    view: TopicView
    reader: AvroSchema
    placer: RawPlacer


class ChecksumAgent(BatchAgent[ChecksumMetrics]):
    """Folds ``<topic>.unique`` into per-day checksum tables; an async context manager."""

    kind = "checksum"
    recovery = "resuming from its tables"

    def __init__(self, *, kafka: KafkaClients, group_id: str, registry: RegistryStore,
                 data_dir: Path, retention_days: int = 400, replication_factor: int = 1,
                 max_records: int | None = None, topics: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(kafka=kafka, group_id=group_id, registry=registry,
                         metrics=ChecksumMetrics(), max_records=max_records or (
                             STEP_RECORDS_CHECKSUM if kafka.consumer_client == "librdkafka"
                             else STEP_RECORDS), topics=topics)
        self._root = data_dir / "checksums"
        self._retention_days = retention_days
        self._replication_factor = replication_factor
        self._clock = clock
        self._producer: AIOKafkaProducer | None = None
        self._topics: dict[str, _Topic] = {}
        self._tables = OpenTables()
        self._missing_since = 0.0
        self._publications = Publications(self.metrics)

    # ------------------------------------------------------------ test helpers
    async def wait_applied(self, topic: str, watermarks: dict[int, int]) -> None:
        """Wait until every ``.unique`` partition of ``topic`` is folded up to its mark."""
        await self.wait_counted(unique_topic(topic), watermarks)

    async def wait_counted(self, name: str, watermarks: dict[int, int]) -> None:
        """Wait until every partition of topic ``name`` is consumed up to its mark and
        what that published is acknowledged (a batch's acks settle one fetch later:
        onepipe.agents.checksum.publish), so ``<topic>.checksums`` can be read."""
        await self.wait_until(lambda m: self._publications.settled and all(
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

    # ------------------------------------------------------------------ hooks
    async def _open(self) -> None:
        self._producer = self._kafka.producer(self._group_id)
        await self._producer.start()
        # The batch decoders load polars lazily (~0.5 s of imports): at start, not inside
        # the first batch, which would hold every partition's progress meanwhile.
        await asyncio.to_thread(importlib.import_module, "polars")

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        try:
            async with self._lock:
                self._close_stores(None)
        finally:
            if producer is not None:
                await producer.stop()

    async def _drain(self) -> None:
        async with self._lock:  # not beside a revoke's settle of the same batches
            await self._settle()

    async def _settle(self) -> None:
        """Await the held publications' acks, then commit their batches."""
        consumer = self._consumer
        if consumer is not None:
            await self._publications.settle(partial(self._commit_offsets, consumer))

    async def _reset(self) -> None:
        """Close every store: each partition resumes from its own applied offset."""
        self.metrics.restarts += 1
        await self._publications.drop(_DROP_WAIT)
        self._close_stores(None)

    def _look_again(self) -> bool:
        waiting = len(self._topics) < self._keyed_count()
        return waiting and self._clock() - self._missing_since >= _LOOK_AGAIN

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        """The ``.unique`` and source topics of the keyed topics that exist."""
        self._missing_since = self._clock()
        existing = set(await consumer.topics())  # whole-cluster listing: creates nothing
        topics: dict[str, _Topic] = {}
        for topic, meta in list(state.topics.items()):
            if not self._wants(topic) or not meta.key or unique_topic(topic) not in existing \
                    or topic not in existing:
                continue
            try:
                reader = state.reader_schema(topic)
            except NotFoundError:
                continue  # metadata before its schema: wait for the schema
            if topic not in self._topics:
                await ensure_topic(self._kafka, checksums_topic(topic), partitions=1,
                                   replication_factor=self._replication_factor,
                                   configs={"cleanup.policy": "compact"})
            view = TopicView.build(meta, reader)
            topics[topic] = _Topic(view, reader, RawPlacer(view, reader))
        self._topics = topics
        return frozenset(unique_topic(t) for t in topics) | frozenset(topics)

    def _keyed_count(self) -> int:
        return sum(1 for topic, meta in list(self._registry.state.topics.items())
                   if self._wants(topic) and meta.key)

    # ------------------------------------------------------------------ batch
    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        """Fold or count each partition of the batch; then publish what changed and
        commit, once for the whole batch (a produce and a commit round trip per partition
        per batch had cost as much as the counting itself), settled one batch later."""
        out: list[tuple[str, list[Message]]] = []
        commits: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            if source_of_unique(tp.topic) is not None:
                done = await self._fold(tp, records)
            else:
                done = await self._count(tp, records)
            if done is not None:
                topic, messages, next_offset = done
                out.append((topic, messages))
                commits[tp] = next_offset
        sent = await Publications.send(self._running(), out) if out else []
        # Acks and commit one batch later (onepipe.agents.checksum.publish); an empty
        # fetch settles what is held.
        await self._publications.hold(sent, commits, partial(self._commit_offsets, consumer))

    async def _fold(self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
                    ) -> tuple[str, list[Message], int] | None:
        store = self._tables.folds.get(tp)
        topic = source_of_unique(tp.topic)
        described = self._topics.get(topic) if topic is not None else None
        if store is None or described is None or topic is None:
            return None  # revoked while fetched: the next owner folds it from its table
        records = from_offset(records, store.applied_offset)  # those below: folded already
        if not records:
            return None
        view, reader, cutoff = described.view, described.reader, self._cutoff()
        schema_by_id, next_offset = self._registry.state.schema_by_id, offsets_of(records)[-1] + 1

        def fold_batch() -> tuple[FoldResult, int]:
            # One thread hop for decoding, the multi-get, the fold (Python per winner: not
            # on the loop) and the write, under the batch lock (a stop that cancels the
            # step closes the store, and a late call on it fails instead of writing).
            winners = winner_contributions(view, reader, schema_by_id, tp.partition, records)
            previous = store.get_many(list({k: None for k, _ in winners}))
            result = fold(view.spec, store.days, previous, winners, cutoff, store.hours)
            store.apply(result, next_offset)
            return result, sum(1 for _, c in winners if c is None)

        result, undecodable = await asyncio.to_thread(fold_batch)
        self.metrics.undecodable += undecodable
        self.metrics.folded += len(records)
        self.metrics.batches += 1
        self.metrics.expired += len([d for d in result.dropped if d < cutoff])
        self._positions_changed(tp, next_offset)
        return topic, fold_messages(tp.partition, next_offset, result.days, result.dropped,
                                    result.hours, result.dropped_hours), next_offset

    async def _count(self, tp: TopicPartition, records: Sequence[ConsumerRecord[Any, Any]]
                     ) -> tuple[str, list[Message], int] | None:
        store = self._tables.raws.get(tp)
        described = self._topics.get(tp.topic)
        if store is None or described is None:
            return None  # revoked while fetched: the next owner counts it from its store
        records = from_offset(records, store.applied_offset)  # those below: redelivered
        if not records:
            return None
        next_offset, cutoff = offsets_of(records)[-1] + 1, self._cutoff()
        schema_by_id, placer = self._registry.state.schema_by_id, described.placer

        def count() -> tuple[dict[int, RawCount], frozenset[int], int]:
            # One thread hop for placing, counting and writing, under the batch lock, which
            # a revoke waits for (a stop that cancels the step: as in _fold).
            placed = placer.place(schema_by_id, records)
            days, dropped = count_raw(store.days, placed.days, placed.undecodable, cutoff)
            store.apply(days, dropped, next_offset)
            return days, dropped, placed.undecodable.true_count

        days, dropped, undecodable = await asyncio.to_thread(count)
        self.metrics.counted += len(records)
        self.metrics.raw_undecodable += undecodable
        self.metrics.batches += 1
        self._positions_changed(tp, next_offset)
        return tp.topic, raw_messages(tp.partition, next_offset, days, dropped), next_offset

    def _cutoff(self) -> int:
        """The first day kept: days before it are dropped."""
        return int(self._clock() // _DAY_SECONDS) - self._retention_days

    def _positions_changed(self, tp: TopicPartition, offset: int) -> None:
        self.metrics.positions[tp] = offset
        self.metrics.days_tracked = self._tables.days_tracked

    async def _publish(self, topic: str, messages: list[Message]) -> None:
        """Produce one topic's messages and wait for their acks (a resumed partition)."""
        sent = await Publications.send(self._running(), [(topic, messages)])
        if sent:
            await asyncio.gather(*sent)
        self.metrics.published += len(sent)

    def _running(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise OnepipeError("the checksum agent is not running; start() it first")
        return self._producer

    # -------------------------------------------------------------- rebalance
    def _close_stores(self, tps: Iterable[TopicPartition] | None) -> None:
        """Close the stores of ``tps`` (all when None)."""
        closing = list(tps) if tps is not None else [*self._tables.folds, *self._tables.raws]
        self._tables.close(closing)
        for tp in closing:
            self.metrics.positions.pop(tp, None)
        self.metrics.days_tracked = self._tables.days_tracked

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
        try:
            await self._settle()  # the held batch's acks and commits, before they move
        finally:
            # Closed even when an ack failed (the loop restarts): an assignment in the
            # same rebalance must open, seek and republish them, not find them open.
            self._close_stores(revoked)

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        """Open each partition's store (rebuilt when ahead of its log), seek, republish."""
        opened = [tp for tp in sorted(assigned) if await self._open_store(tp)]
        ahead = {tp: applied for tp in opened if (applied := self._applied(tp)) > 0}
        ends = await high_watermarks(self._kafka, ahead, client_id=f"{self._group_id}-ends")
        gone: dict[TopicPartition, tuple[list[int], list[int]]] = {}
        for tp, applied in ahead.items():
            if applied > ends[tp]:
                gone[tp] = await self._rebuild(tp, applied, ends[tp])
        for tp in opened:
            days, hours = gone.get(tp, ([], []))
            if tp in self._tables.raws:
                await self._resume_raw(consumer, tp, days)
            else:
                await self._resume_fold(consumer, tp, days, hours)

    def _store_path(self, tp: TopicPartition) -> Path | None:
        """Where ``tp``'s store lives; None for a partition of no topic folded here."""
        if tp.topic in self._topics:
            return self._root / tp.topic / "raw" / str(tp.partition)
        topic = source_of_unique(tp.topic)
        if topic is None or topic not in self._topics:
            return None
        return self._root / topic / str(tp.partition)

    async def _open_store(self, tp: TopicPartition) -> bool:
        """Open ``tp``'s store; False when it is open already or not folded here."""
        path = self._store_path(tp)
        if path is None or tp in self._tables.folds or tp in self._tables.raws:
            return False
        if tp.topic in self._topics:
            self._tables.raws[tp] = await asyncio.to_thread(RawCountStore, path)
        else:
            self._tables.folds[tp] = await asyncio.to_thread(ChecksumStore, path)
        return True

    def _applied(self, tp: TopicPartition) -> int:
        store = self._tables.raws.get(tp) or self._tables.folds[tp]
        return store.applied_offset

    async def _rebuild(self, tp: TopicPartition, applied: int, end: int
                       ) -> tuple[list[int], list[int]]:
        """Replace ``tp``'s store, which is ahead of its log, by an empty one; return the
        days and hours it held (their published figures are withdrawn)."""
        log.warning("checksums %s[%d]: the store has applied up to @%d but the partition "
                    "ends at @%d, so it belongs to another log (the topic was deleted and "
                    "recreated, or the broker lost its log); rebuilding it from offset 0",
                    tp.topic, tp.partition, applied, end,
                    extra={"topic": tp.topic, "partition": tp.partition, "offset": applied})
        raw = self._tables.raws.get(tp)
        if raw is not None:
            days, hours = list(raw.days), []
        else:
            table = self._tables.folds[tp]
            days, hours = list(table.days), list(table.hours)
        path = self._store_path(tp)
        self._tables.close([tp])
        if path is not None:
            await asyncio.to_thread(shutil.rmtree, path)
        await self._open_store(tp)
        self.metrics.rebuilt += 1
        return days, hours

    async def _resume_fold(self, consumer: GroupConsumer, tp: TopicPartition,
                           gone_days: list[int], gone_hours: list[int]) -> None:
        topic = source_of_unique(tp.topic)
        described = self._topics.get(topic) if topic is not None else None
        store = self._tables.folds[tp]
        if topic is None or described is None:
            return
        consumer.seek(tp, store.applied_offset)
        log.info("checksums %s[%d]: resuming from the table at @%d", tp.topic, tp.partition,
                 store.applied_offset)
        expired = fold(described.view.spec, store.days, {}, [], self._cutoff(), store.hours)
        if expired.dropped or expired.dropped_hours:
            await asyncio.to_thread(store.apply, expired, store.applied_offset)
            self.metrics.expired += len(expired.dropped)
        # Every window again: heals a publication lost between a table write and its produce
        # (and withdraws the windows of a store rebuilt because it was of another log).
        await self._publish(topic, fold_messages(
            tp.partition, store.applied_offset, store.days,
            [*expired.dropped, *(d for d in gone_days if d not in store.days)], store.hours,
            [*expired.dropped_hours, *(h for h in gone_hours if h not in store.hours)]))
        self._positions_changed(tp, store.applied_offset)

    async def _resume_raw(self, consumer: GroupConsumer, tp: TopicPartition,
                          gone_days: list[int]) -> None:
        store = self._tables.raws[tp]
        consumer.seek(tp, store.applied_offset)
        log.info("raw counts %s[%d]: resuming from the store at @%d", tp.topic, tp.partition,
                 store.applied_offset)
        _, dropped = count_raw(store.days, (), (), self._cutoff())
        if dropped:
            await asyncio.to_thread(store.apply, {}, dropped, store.applied_offset)
        await self._publish(tp.topic, raw_messages(
            tp.partition, store.applied_offset, store.days,
            [*dropped, *(d for d in gone_days if d not in store.days)]))
        self._positions_changed(tp, store.applied_offset)
