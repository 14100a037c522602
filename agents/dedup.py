"""Dedup agent: the winning version of every unique key, emitted once to ``<topic>.unique``.

Contract:
- Topics in: every registered topic whose metadata has a non-empty ``key`` (the set
  follows the registry while the worker runs), and its ``<topic>.repartition``. Out:
  ``<topic>.unique`` -- same partition count, same partition, same key bytes, same value
  bytes, original timestamp and headers plus ``onepipe.source: b"<partition>:<offset>"``
  (the version's position in the source topic) -- and ``<topic>.repartition``. The agent
  creates both topics (``.unique`` with ``cleanup.policy=compact``).
- A version is emitted to ``.unique`` only if it outranks (schemas.merge) every version of
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
  records) are produced and acknowledged, then the table (RocksDB, tables.dedup_store)
  is written with the ``.unique`` offset it has applied, then Kafka offsets are
  committed. (The next batch is planned while those acks are pending -- against the
  table plus the winners still in flight -- and batches complete strictly in order, so
  this holds for every batch.) ``.unique`` is the table's changelog: on assignment a
  partition's table is brought to the changelog's high watermark
  (tables.dedup_recovery), so a crash after
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
Per batch the Python work is: one container-block decode per schema (tables.dedup_decode),
a vectorised murmur2 (schemas.partitioner), one multi-get and one WriteBatch per
partition, and aiokafka's batch produce API.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from agents.dedup_output import Built, await_acks, build_batches, send_batches
from agents.dedup_plan import PartitionWork, plan_partition, repartition_topic, unique_topic
from schemas.errors import NotFoundError, OnepipeError
from schemas.metadata import TopicMetadata, metadata_from_dict
from tables.dedup_decode import TopicReader
from tables.dedup_recovery import StaleStoreError, recover
from tables.dedup_store import DedupStore, Entry, Winner
from tables.kafka import ensure_topic
from tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["DedupAgent", "DedupMetrics", "WinnerHook"]

#: ``on_winner(topic, partition, key, old_value, new_value)``: called once per key whose
#: winner changed, after the new winner is durable in ``.unique`` and in the table.
WinnerHook = Callable[[str, int, bytes, bytes | None, bytes], None]
#: Batches whose output may await its acks while the next batch is planned.
_MAX_IN_FLIGHT = 2


@dataclass(slots=True)
class DedupMetrics:
    """Counters of one dedup agent (exported by the worker's metrics view)."""

    #: Records consumed from source and repartition topics.
    consumed: int = 0
    #: Winners produced to ``.unique``.
    winners: int = 0
    #: Versions equal in rank to their key's winner (re-deliveries, retries).
    duplicates: int = 0
    #: Versions ranked below their key's winner (out of order, stale).
    losers: int = 0
    #: Versions that led their key within a batch but lost to a later one of it.
    superseded: int = 0
    #: Records that did not decode (skipped).
    undecodable: int = 0
    #: Records forwarded to ``.repartition`` (sent to a non-canonical partition).
    repartitioned: int = 0
    #: Changelog messages folded into tables during recovery.
    recovered: int = 0
    #: Times the consume loop restarted after a failure.
    restarts: int = 0
    #: Next offset to consume, per source/repartition partition assigned here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Completion:
    """A batch in flight: its completion task, and whether its output is handed over."""

    task: asyncio.Task[None]
    handed: asyncio.Event


@dataclass(slots=True)
class _Topic:
    """A keyed topic the agent deduplicates."""

    meta: TopicMetadata
    reader: TopicReader
    partitions: int


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
        self._root = data_dir / "dedup"
        self._replication_factor = replication_factor
        self._idempotent = idempotent_producer
        self._session_timeout = session_timeout
        self._rebalance_timeout = rebalance_timeout
        self._produce_timeout = produce_timeout
        self._max_records = max_records
        #: When given, only these topics are deduplicated (tests, benchmarks).
        self._only_topics = frozenset(topics) if topics is not None else None
        self.on_winner = on_winner
        self._consumer: AIOKafkaConsumer | None = None
        self._recovery: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._topics: dict[str, _Topic] = {}
        #: repartition topic name -> source topic name.
        self._sources: dict[str, str] = {}
        self._stores: dict[tuple[str, int], DedupStore] = {}
        self._subscribed: frozenset[str] = frozenset()
        self._generation = -1
        #: A failure of a rebalance callback (aiokafka only logs those): the loop raises
        #: it, so the supervised restart recovers instead of leaving partitions paused.
        self._failure: BaseException | None = None
        #: Completions of the batches in flight, oldest first (see _process).
        self._completions: deque[_Completion] = deque()
        #: Winners of the batches in flight, per table, one dict per batch (oldest first),
        #: until their table write.
        self._pending: dict[tuple[str, int], list[dict[bytes, Entry]]] = {}
        # Held while a batch is processed and while partitions move: a revoke waits for
        # the batch in flight, so its winners are acked and committed before the move.
        self._lock = asyncio.Lock()
        self._progress = asyncio.Condition()
        self.metrics = DedupMetrics()
        self.assigned = asyncio.Event()

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
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=int(self._session_timeout * 1000),
            rebalance_timeout_ms=int(self._rebalance_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, self._session_timeout / 3) * 1000),
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=200,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
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
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("dedup agent %s had stopped on an error", self._group_id)
        # Let the batches in flight finish (acks, tables, commits) while every client is
        # still up; aiokafka need not call the revoke listener on close.
        async with self._lock:
            await self._drain()
        consumer, self._consumer = self._consumer, None
        recovery, self._recovery = self._recovery, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await consumer.stop()  # revokes: on_revoked closes the tables
        finally:
            self._close_stores(list(self._stores))
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
        if not self._root.exists():
            return 0
        return sum(p.stat().st_size for p in self._root.rglob("*") if p.is_file())

    # ------------------------------------------------------------------- loop
    async def _run(self) -> None:
        """The consume loop, restarted from the changelogs after any failure.

        A produce that failed after its retries, a table that cannot be written, anything
        unexpected: the agent closes its tables and rejoins the group, so every partition
        is recovered from ``.unique`` and re-read from its last commit, then goes on.
        """
        backoff = 1.0
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dedup agent %s failed; recovering from the changelogs in %.0fs",
                              self._group_id, backoff)
                self.metrics.restarts += 1
                await self._restart()
                await asyncio.sleep(backoff)  # do not spin on a failure that persists
                backoff = min(backoff * 2, 60.0)

    async def _restart(self) -> None:
        async with self._lock:
            await self._drain()
            self._failure = None
            self._pending.clear()
            self._close_stores(list(self._stores))
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
        topics: dict[str, _Topic] = {}
        for topic, raw in list(state.topics.items()):
            if self._only_topics is not None and topic not in self._only_topics:
                continue
            meta = metadata_from_dict(topic, raw)
            if not meta.key:
                continue
            try:
                latest = state.version(f"{topic}-value", "latest").schema
            except NotFoundError:
                continue  # metadata before its schema: wait for the schema
            known = self._topics.get(topic)
            partitions = known.partitions if known is not None else await self._ensure(meta)
            if partitions is None:
                continue
            topics[topic] = _Topic(meta, TopicReader(meta, latest, state.schemas_by_id.get),
                                   partitions)
        self._generation = generation
        self._topics = topics
        self._sources = {repartition_topic(t): t for t in topics}
        wanted = frozenset([*topics, *self._sources])
        if wanted == self._subscribed:
            return
        if wanted:
            log.info("dedup agent subscribes to %s", sorted(wanted))
            consumer.subscribe(sorted(wanted), listener=_Rebalance(self, consumer))
        else:
            log.info("dedup agent: no keyed topic any more")
            consumer.unsubscribe()
        self._subscribed = wanted

    async def _ensure(self, meta: TopicMetadata) -> int | None:
        """Create ``.unique`` and ``.repartition`` like the source; its partition count."""
        rf = self._replication_factor
        partitions = await ensure_topic(self._bootstrap, meta.topic, partitions=meta.partitions,
                                        replication_factor=rf)
        unique = await ensure_topic(self._bootstrap, unique_topic(meta.topic),
                                    partitions=partitions, replication_factor=rf,
                                    configs={"cleanup.policy": "compact"})
        routed = await ensure_topic(self._bootstrap, repartition_topic(meta.topic),
                                    partitions=partitions, replication_factor=rf)
        if unique != partitions or routed != partitions:
            log.error("dedup skips topic %s: it has %d partition(s) but %s has %d and %s "
                      "has %d; they must match (delete and let the agent recreate them)",
                      meta.topic, partitions, unique_topic(meta.topic), unique,
                      repartition_topic(meta.topic), routed)
            return None
        return partitions

    # ------------------------------------------------------------------ batch
    async def _process(self, consumer: AIOKafkaConsumer,
                       batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Plan a batch and send its output; its completion runs behind the next batch.

        The broker's acks take a round trip; waiting for them before fetching and
        planning the next batch left the agent idle for ~40% of the time. So a batch's
        completion (acks, then tables, then commit) is a task chained after the previous
        batch's, and the next batch is planned meanwhile against the table *plus* the
        winners still in flight (``_pending``). Completions run strictly in order, so
        every commit still follows the acks and table writes of everything before it.
        """
        grouped: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
        for tp, records in batches.items():
            if not records:
                continue
            source = self._sources.get(tp.topic)
            slot = grouped.setdefault((source or tp.topic, tp.partition), ([], []))
            slot[1 if source is not None else 0].extend(records)
        works: list[tuple[PartitionWork, DedupStore]] = []
        for (topic, partition), (source_records, routed_records) in grouped.items():
            store = self._stores.get((topic, partition))
            described = self._topics.get(topic)
            if store is None or described is None:
                continue  # revoked while fetched: the new owner reads it again
            await self._await_schemas(described.reader, source_records, routed_records)
            in_flight = self._pending.setdefault((topic, partition), [])
            work = plan_partition(topic, partition, described.partitions, described.reader,
                                  source_records, routed_records,
                                  _with_pending(store.get_many, in_flight))
            if work.keys:
                in_flight.append(dict(zip(work.keys, work.entries, strict=True)))
            works.append((work, store))
        grouped.clear()  # the records are not needed past planning: let them go now
        if not works:
            return
        producer = self._producer_or_fail()
        built = [build_batches(producer, work) for work, _ in works]
        previous = self._completions[-1] if self._completions else None
        handed = asyncio.Event()
        task = asyncio.create_task(
            self._complete(consumer, producer, previous, works, built, handed),
            name="dedup-complete")
        task.add_done_callback(_retrieve)  # failures are raised through _failure
        self._completions.append(_Completion(task, handed))
        while len(self._completions) > _MAX_IN_FLIGHT:
            await self._completions[0].task  # bounded: back-pressure on the broker's acks

    def _producer_or_fail(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise OnepipeError("the dedup agent is not running; start() it first")
        return self._producer

    async def _complete(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
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
                    store.apply(zip(work.keys, work.entries, strict=True), next_unique)
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
            await self._commit(consumer, commits)
            metrics.positions.update(commits)
        except BaseException as exc:
            if self._failure is None and not isinstance(exc, asyncio.CancelledError):
                self._failure = exc  # the loop raises it and restarts from the changelogs
            raise
        finally:
            if self._completions and self._completions[0].task is asyncio.current_task():
                self._completions.popleft()
            async with self._progress:
                self._progress.notify_all()

    async def _drain(self) -> None:
        """Wait for every batch in flight to complete (or fail)."""
        while self._completions:
            task = self._completions[0].task
            try:
                await task
            except Exception:  # noqa: BLE001 - recorded in _failure; the loop raises it
                log.debug("a dedup batch failed while draining", exc_info=True)
            finally:
                if self._completions and self._completions[0].task is task:
                    self._completions.popleft()

    async def _await_schemas(self, reader: TopicReader, *batches: list[Any]) -> None:
        """Wait briefly for schema ids this worker's registry has not replayed yet."""
        missing = reader.unknown_ids([r.value for batch in batches for r in batch])
        for schema_id in missing:
            if not await self._registry.wait_for_schema(schema_id, 5.0):
                log.warning("dedup: schema id %d is unknown to the registry; its records "
                            "are counted undecodable", schema_id)
        if missing:
            reader.forget_unknown()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
                      ) -> None:
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The output is durable and the tables hold it: the next owner re-reads these
            # records and finds them duplicates.
            log.warning("dedup commit of %s failed: %r", _describe(offsets), exc)

    # -------------------------------------------------------------- rebalance
    def _close_stores(self, keys: Iterable[tuple[str, int]]) -> None:
        for key in keys:
            store = self._stores.pop(key, None)
            if store is not None:
                store.close()

    def _store_path(self, topic: str, partition: int) -> Path:
        return self._root / topic / str(partition)

    async def _open_and_recover(self, topic: str, partition: int) -> None:
        described = self._topics[topic]
        recovery = self._recovery
        assert recovery is not None
        path = self._store_path(topic, partition)
        tp = TopicPartition(unique_topic(topic), partition)
        store = DedupStore(path)
        try:
            try:
                folded = await recover(recovery, tp, store, described.reader)
            except StaleStoreError:
                log.warning("dedup %s[%d]: local table is ahead of %s@%d; rebuilding it",
                            topic, partition, tp.topic, store.applied_offset)
                store.close()
                shutil.rmtree(path)
                store = DedupStore(path)
                folded = await recover(recovery, tp, store, described.reader)
        except BaseException:
            store.close()
            raise
        self.metrics.recovered += folded
        self._stores[(topic, partition)] = store

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in flight, then close the revoked partitions' tables."""
        async with self._lock:
            await self._drain()
            keys = {(self._sources.get(tp.topic, tp.topic), tp.partition) for tp in revoked}
            self._close_stores(keys)
            for key in keys:
                self._pending.pop(key, None)
            for tp in revoked:
                self.metrics.positions.pop(tp, None)

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                          ) -> None:
        """Recover the assigned partitions' tables from ``.unique`` before consuming."""
        # Paused before the first await: nothing of these partitions may be processed
        # against a table that is not up to date with its changelog.
        consumer.pause(*assigned)
        async with self._lock:
            keys = sorted({(self._sources.get(tp.topic, tp.topic), tp.partition)
                           for tp in assigned})
            try:
                for topic, partition in keys:
                    if (topic, partition) in self._stores or topic not in self._topics:
                        continue
                    await self._open_and_recover(topic, partition)
            except Exception as exc:
                # Partitions stay paused; the loop restarts and recovers them again.
                log.exception("dedup recovery of %s failed", keys)
                self._failure = exc
                return
        consumer.resume(*assigned)
        self.assigned.set()
        async with self._progress:
            self._progress.notify_all()


def _with_pending(get_many: Callable[[list[bytes]], list[Winner | None]],
                  in_flight: list[dict[bytes, Entry]]
                  ) -> Callable[[list[bytes]], list[Winner | Entry | None]]:
    """The table's multi-get, overridden by the winners of batches still in flight."""
    if not in_flight:
        return get_many  # type: ignore[return-value]  # a list of a narrower type

    def lookup(keys: list[bytes]) -> list[Winner | Entry | None]:
        found: list[Winner | Entry | None] = get_many(keys)  # type: ignore[assignment]
        for overlay in in_flight:  # oldest first: the newest winner of a key is last
            found = list(map(overlay.get, keys, found))
        return found

    return lookup


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _describe(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}"
                     for tp, offset in sorted(offsets.items()))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, agent: DedupAgent, consumer: AIOKafkaConsumer) -> None:
        self._agent = agent
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._agent.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._agent.on_assigned(self._consumer, assigned)
