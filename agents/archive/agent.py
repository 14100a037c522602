"""Archive agent: every archived topic into the raw Parquet lake, exactly once.

Contract:
- Topics in: every registered topic whose metadata has ``archive.enabled`` (the default);
  the set follows the registry while the worker runs. Out: raw lake files
  ``raw/<topic>/partition=<p>/date=<D>/hour=<H>/<first>-<last>.parquet`` (onepipe.sinks.lake.raw_layout).
- Exactly once in ``raw/``, crashes and rebalances included: a file holds one contiguous
  offset range and is made visible whole (onepipe.sinks.lake.store), and on partition assignment
  the agent resumes after the highest offset the *lake* holds, not after Kafka's committed
  offset. A crash between writing a file and committing the offset therefore re-reads
  nothing that is archived. Kafka offsets are committed after each file (for lag
  monitoring); they are never the source of truth.
- Flushes per partition when a buffer reaches the topic's ``flush_records`` or
  ``flush_bytes``, when it is ``flush_seconds`` old, when the partition is revoked, and at
  shutdown. All buffers together stay under ``max_buffer_bytes``: past it the largest
  buffers are flushed before anything more is fetched (back-pressure, not growth).
- A value that does not decode is archived anyway (key/value bytes kept, typed columns
  null, ``_kafka_decode_error`` set) and counted in :attr:`ArchiveMetrics.undecodable`.
- Records of every schema version are read with the topic's latest schema, so one file
  has one schema.

Design: this is a batch consumer of its own (``getmany``) in the group
``<app_id>-archive``, hosted by the Faust worker, instead of a Faust agent: Faust's
per-event path runs at ~1/40 of a batch consumer on this hardware (DESIGN.md, "Hot
paths"), far below what archiving every topic needs. The loop only fetches and buffers
Kafka's own record objects; decoding and Parquet encoding run in an encoder process
(onepipe.agents.archive.writer), so fetching and encoding use both cores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from onepipe.agents.archive.writer import SegmentWriter
from onepipe.agents.batch.supervise import Rebalance, end_loop, group_consumer, supervise
from onepipe.schemas.metadata import ArchivePolicy
from onepipe.sinks.lake.raw_layout import next_offset, parse_raw_path
from onepipe.sinks.lake.raw_layout import raw_partition_prefix as partition_prefix
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

#: Extra bytes counted per buffered record (Python object overhead), so the memory bound
#: tracks real RSS rather than payload bytes alone.
_RECORD_OVERHEAD = 200

#: Upper bounds (seconds) of the flush-latency histogram's buckets; a last, unbounded
#: bucket (+Inf) follows them.
FLUSH_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class PartitionFlush:
    """The last durable flush of one partition."""

    #: Wall-clock time (epoch seconds) the file became durable.
    at: float
    #: Records it held.
    records: int
    #: Bytes of Parquet written.
    bytes: int


@dataclass(slots=True)
class ArchiveMetrics:
    """Counters of one archive agent (exported by the worker's metrics view)."""

    #: Records consumed from Kafka.
    records_in: int = 0
    #: Records written to the lake.
    records_archived: int = 0
    #: Records whose value did not decode (archived with null typed columns).
    undecodable: int = 0
    #: Records Kafka delivered again below the archived position (skipped, not archived).
    redelivered: int = 0
    #: Files written.
    files: int = 0
    #: Bytes of Parquet written.
    bytes_written: int = 0
    #: Wall-clock time (epoch seconds) and record count of the last flush.
    last_flush_at: float = 0.0
    last_flush_records: int = 0
    #: Seconds each flush took from buffer hand-over to durable, most recent last (bounded).
    flush_seconds: list[float] = field(default_factory=list)
    #: Last durable flush per partition (kept after the partition moves to another worker).
    last_flushes: dict[TopicPartition, PartitionFlush] = field(default_factory=dict)
    #: Flush latencies as a histogram: count per bucket of :data:`FLUSH_LATENCY_BUCKETS`
    #: plus a last +Inf bucket (not cumulative), and their sum in seconds.
    flush_latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(FLUSH_LATENCY_BUCKETS) + 1))
    flush_latency_sum: float = 0.0
    #: Most bytes buffers and in-flight writes held at once (checks the memory bound).
    peak_buffered_bytes: int = 0
    #: Next offset to archive, per partition assigned here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Buffer:
    """Records of one partition waiting for a flush."""

    records: list[ConsumerRecord[Any, Any]] = field(default_factory=list)
    size: int = 0
    started: float = 0.0


class ArchiveAgent:
    """Batch-consumes archived topics into the raw lake; an async context manager."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        registry: RegistryStore,
        lake: LakeStore,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        session_timeout: float = 10.0,
        rebalance_timeout: float = 10.0,
        encoders: int = 1,
        topics: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._registry = registry
        self._lake = lake
        self._max_buffer_bytes = max_buffer_bytes
        self._session_timeout = session_timeout
        self._rebalance_timeout = rebalance_timeout
        #: When given, only these topics are archived (tests, benchmarks).
        self._only_topics = frozenset(topics) if topics is not None else None
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer = SegmentWriter(lake, registry, self._written, encoders=encoders)
        self._buffers: dict[TopicPartition, _Buffer] = {}
        #: Next offset each assigned partition may buffer: a record below it is already
        #: archived or buffered (Kafka re-delivers around seeks and rebalances).
        self._expected: dict[TopicPartition, int] = {}
        #: Bytes in buffers plus bytes handed to the writer and not yet durable.
        self._held_bytes = 0
        #: Bytes each partition has in flight, released when its write is durable.
        self._flight_bytes: dict[TopicPartition, list[tuple[int, float]]] = {}
        #: Estimated bytes per record; starts high so the first fetch cannot overshoot.
        self._record_size = 64 * 1024
        self._policies: dict[str, ArchivePolicy] = {}
        self._subscribed: frozenset[str] = frozenset()
        self._generation = -1
        self.metrics = ArchiveMetrics()
        self.assigned = asyncio.Event()
        self._progress = asyncio.Condition()

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        await self._writer.start()
        self._consumer = group_consumer(
            self._bootstrap, self._group_id, session_timeout=self._session_timeout,
            rebalance_timeout=self._rebalance_timeout)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="archive-agent")

    async def stop(self) -> None:
        """Flush every buffer, wait until durable, leave the group; harmless twice."""
        task, self._task = self._task, None
        await end_loop(task, f"archive agent {self._group_id}")
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await self._flush(list(self._buffers), reason="shutdown")
        finally:
            try:
                await self._writer.stop()
            finally:
                if consumer is not None:
                    await consumer.stop()

    async def __aenter__(self) -> ArchiveAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_archived(self, count: int) -> None:
        """Wait until this agent has archived at least ``count`` records."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.metrics.records_archived >= count)

    # ------------------------------------------------------------------- loop
    async def _run(self) -> None:
        """The consume loop, restarted from the lake after any failure.

        A write that failed after its retries, or anything else unexpected, must neither
        stop archiving for good nor archive past a hole: the agent drops what it holds,
        waits for the writes in flight, and re-reads every partition from the position
        the lake holds (a rejoin of the group does exactly that), then goes on.
        """
        await supervise(self._consume, self._restart_from_lake,
                        f"archive agent {self._group_id}", "resuming from the lake")

    async def _restart_from_lake(self) -> None:
        await self._writer.reset()
        self._buffers.clear()
        self._expected.clear()
        self._flight_bytes.clear()
        self._held_bytes = 0
        self.metrics.positions.clear()
        consumer = self._consumer
        if consumer is not None and self._subscribed:
            # Leaving and rejoining makes on_assigned seek every partition to the lake.
            consumer.unsubscribe()
            self._subscribed = frozenset()
            self._generation = -1

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            self._writer.raise_failure()  # never archive past a file that failed
            self._follow_registry(consumer)
            if not self._subscribed:
                await asyncio.sleep(0.5)  # nothing to archive yet; re-check the registry
                continue
            try:
                batches = await consumer.getmany(timeout_ms=250,
                                                 max_records=self._fetch_budget())
            except KafkaError:
                log.exception("archive consumer %s failed to fetch; retrying", self._group_id)
                await asyncio.sleep(1.0)  # back off before asking the broker again
                continue
            self._buffer(batches)
            await self._flush_due()

    def _follow_registry(self, consumer: AIOKafkaConsumer) -> None:
        """Subscribe to the archived topics the registry knows now."""
        state = self._registry.state
        if state.generation == self._generation:
            return
        self._generation = state.generation
        policies: dict[str, ArchivePolicy] = {}
        for topic, meta in state.topics.items():
            if self._only_topics is not None and topic not in self._only_topics:
                continue
            policy = meta.archive
            if policy.enabled:
                policies[topic] = policy
        self._policies = policies
        topics = frozenset(policies)
        if topics == self._subscribed:
            return
        if topics:
            log.info("archive agent subscribes to %s", sorted(topics))
            consumer.subscribe(sorted(topics), listener=Rebalance(self, consumer))
        else:
            log.info("archive agent: no topic to archive any more")
            consumer.unsubscribe()
        self._subscribed = topics

    def _fetch_budget(self) -> int:
        """How many records the next fetch may return without passing the memory bound."""
        room = self._max_buffer_bytes - self._held_bytes
        return max(1, min(20_000, room // max(self._record_size, 1)))

    def _buffer(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Append fetched records to their partition buffers (the hot loop: no copies)."""
        now = self._clock()
        for tp, messages in batches.items():
            expected = self._expected.get(tp)
            if expected is not None and messages and messages[0].offset < expected:
                kept = [m for m in messages if m.offset >= expected]
                self.metrics.redelivered += len(messages) - len(kept)
                messages = kept
            if not messages:
                continue
            buffer = self._buffers.get(tp)
            if buffer is None:
                buffer = self._buffers[tp] = _Buffer(started=now)
            buffer.records.extend(messages)
            sizes = [len(m.value or b"") + len(m.key or b"") for m in messages]
            added = sum(sizes) + _RECORD_OVERHEAD * len(messages)
            # The largest recent record sizes the next fetch (_fetch_budget); it decays
            # slowly so one outlier does not throttle fetching for long.
            self._record_size = max(max(sizes) + _RECORD_OVERHEAD, self._record_size * 15 // 16)
            self._expected[tp] = messages[-1].offset + 1
            buffer.size += added
            self._held_bytes += added
            self.metrics.records_in += len(messages)
        self.metrics.peak_buffered_bytes = max(self.metrics.peak_buffered_bytes,
                                               self._held_bytes)

    async def _flush_due(self) -> None:
        now = self._clock()
        due = []
        for tp, buffer in self._buffers.items():
            policy = self._policies.get(tp.topic, ArchivePolicy())
            if (len(buffer.records) >= policy.flush_records or buffer.size >= policy.flush_bytes
                    or now - buffer.started >= policy.flush_seconds):
                due.append(tp)
        if due:
            await self._flush(due, reason="policy")
        # Back-pressure: past the memory bound, hand the largest buffers to the writer and
        # wait for writes to finish before fetching more.
        while self._held_bytes > self._max_buffer_bytes:
            if self._buffers:
                largest = max(self._buffers, key=lambda t: self._buffers[t].size)
                await self._flush([largest], reason="memory bound")
            elif self._writer.in_flight:
                await self._writer.wait_one()
                self._writer.raise_failure()
            else:
                break

    # ------------------------------------------------------------------ flush
    async def _flush(self, partitions: list[TopicPartition], reason: str) -> None:
        """Hand buffers to the writer (it writes them in order per partition)."""
        for tp in partitions:
            await self._writer.wait_capacity()
            # No await from here to submit(): a revoke in between would miss the buffer.
            buffer = self._buffers.pop(tp, None)
            if buffer is None or not buffer.records:
                continue
            self._flight_bytes.setdefault(tp, []).append((buffer.size, time.perf_counter()))
            self._writer.submit(tp, buffer.records, reason)

    async def _written(self, tp: TopicPartition, next_offset: int, records: int,
                       undecodable: int, written_bytes: int, files: int) -> None:
        """A buffer of ``tp`` is durable in the lake: account for it and commit."""
        size, handed_over = self._flight_bytes[tp].pop(0)
        self._held_bytes -= size
        metrics = self.metrics
        metrics.records_archived += records
        metrics.undecodable += undecodable
        metrics.files += files
        metrics.bytes_written += written_bytes
        metrics.last_flush_at = time.time()
        metrics.last_flush_records = records
        latency = time.perf_counter() - handed_over
        metrics.flush_seconds = [*metrics.flush_seconds[-99:], latency]
        metrics.flush_latency_counts[bisect_left(FLUSH_LATENCY_BUCKETS, latency)] += 1
        metrics.flush_latency_sum += latency
        metrics.last_flushes[tp] = PartitionFlush(metrics.last_flush_at, records, written_bytes)
        metrics.positions[tp] = next_offset
        consumer = self._consumer
        if consumer is not None:
            await self._commit(consumer, tp, next_offset)
        async with self._progress:
            self._progress.notify_all()

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
                      ) -> None:
        try:
            await consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The lake already holds the file and is the source of truth; a lost commit
            # only makes the lag figure stale until the next flush.
            log.warning("archive commit of %s[%d]@%d failed: %r", tp.topic, tp.partition,
                        offset, exc)

    # -------------------------------------------------------------- rebalance
    async def resume_position(self, tp: TopicPartition) -> int | None:
        """The offset after the highest one the lake holds for ``tp``."""
        prefix = partition_prefix(tp.topic, tp.partition)
        await self._lake.remove_stale_temp_files(prefix)
        files = [f for f in (parse_raw_path(o.path) for o in await self._lake.list(prefix))
                 if f is not None]
        return next_offset(files)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Make everything of the revoked partitions durable before they move."""
        await self._flush([tp for tp in revoked if tp in self._buffers], reason="rebalance")
        try:
            await self._writer.drain(set(revoked))
        except Exception:
            # The loop restarts from the lake on this failure; the revoke must finish.
            log.exception("archive writes of revoked partitions failed")
        for tp in revoked:
            self.metrics.positions.pop(tp, None)
            self._expected.pop(tp, None)

    async def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
                          ) -> None:
        # Paused before the first await: the fetcher must not hand out records from the
        # reset position while the lake is being listed, or they would be read twice.
        consumer.pause(*assigned)
        ordered = sorted(assigned)
        positions = await asyncio.gather(*(self.resume_position(tp) for tp in ordered))
        for tp, position in zip(ordered, positions, strict=True):
            if position is None:
                await consumer.seek_to_beginning(tp)
                log.info("archive %s[%d]: nothing archived yet, from the beginning",
                         tp.topic, tp.partition)
            else:
                consumer.seek(tp, position)
                log.info("archive %s[%d]: resuming after the lake at @%d", tp.topic,
                         tp.partition, position)
                self.metrics.positions[tp] = position
                self._expected[tp] = position
        consumer.resume(*assigned)
        self.assigned.set()

