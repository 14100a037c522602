"""The archive agent: buffers per partition, flush policy, memory bound, lake positions.

The contract is the package's (onepipe.agents.archive). Design: the loop only fetches and
buffers each fetch packed as a few flat ``bytes`` (onepipe.agents.archive.columns); decoding and
Parquet encoding run in an encoder process (onepipe.agents.archive.writer), so fetching
and encoding use both cores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from onepipe.agents.archive.columns import Chunk, pack
from onepipe.agents.archive.metrics import FLUSH_LATENCY_BUCKETS, ArchiveMetrics, PartitionFlush
from onepipe.agents.archive.writer import SegmentWriter
from onepipe.agents.batch.agent import STEP_RECORDS, BatchAgent, Batches
from onepipe.schemas.metadata import ArchivePolicy
from onepipe.schemas.registry_state import RegistryState
from onepipe.sinks.lake.raw_layout import next_offset, parse_raw_path, raw_partition_prefix
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.record_columns import from_offset
from onepipe.tables.kafka.topics import high_watermarks
from onepipe.tables.kafka.types import GroupConsumer
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["ArchiveAgent"]

#: Extra bytes counted per buffered record (Python object overhead), so the memory bound
#: tracks real RSS rather than payload bytes alone.
_RECORD_OVERHEAD = 200


@dataclass(slots=True)
class _Buffer:
    """Records of one partition waiting for a flush: one chunk of columns per fetch."""

    chunks: list[Chunk] = field(default_factory=list)
    count: int = 0
    size: int = 0
    started: float = 0.0


class ArchiveAgent(BatchAgent[ArchiveMetrics]):
    """Batch-consumes archived topics into the raw lake; an async context manager."""

    kind = "archive"
    recovery = "resuming from the lake"
    # A revoke flushes only the revoked partitions' buffers and waits for their writes;
    # holding the lock across a batch's back-pressure waits on other partitions' writes
    # (lake retries included) could outlast the group's rebalance timeout.
    batch_lock = False

    def __init__(
        self,
        *,
        kafka: KafkaClients,
        group_id: str,
        registry: RegistryStore,
        lake: LakeStore,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        encoders: int = 1,
        topics: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(kafka=kafka, group_id=group_id, registry=registry,
                         metrics=ArchiveMetrics(), max_records=STEP_RECORDS, topics=topics)
        self._lake = lake
        self._max_buffer_bytes = max_buffer_bytes
        self._clock = clock
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
        # The status views read the stalled partitions from the metrics: the same dict the
        # skeleton keeps (it only ever clears it and pops from it).
        self.metrics.stalled = self.stalled

    async def wait_archived(self, count: int) -> None:
        """Wait until this agent has archived at least ``count`` records."""
        await self.wait_until(lambda m: m.records_archived >= count)

    # ------------------------------------------------------------------ hooks
    async def _open(self) -> None:
        await self._writer.start()

    async def _drain(self) -> None:
        """Flush every buffer and wait until all of it is durable (commits included)."""
        try:
            await self._flush(list(self._buffers), reason="shutdown")
        finally:
            await self._writer.stop()

    async def _close(self) -> None:
        await self._writer.stop()  # harmless after _drain; stops encoders a failed start left

    def _check(self) -> None:
        self._writer.raise_failure()  # never archive past a file that failed
        super()._check()

    async def _reset(self) -> None:
        """Drop what is buffered and in flight: every partition resumes from the lake."""
        await self._writer.reset()
        self._buffers.clear()
        self._expected.clear()
        self._flight_bytes.clear()
        self._held_bytes = 0
        self.metrics.positions.clear()

    async def _wanted(self, consumer: GroupConsumer, state: RegistryState
                      ) -> frozenset[str]:
        self._policies = {topic: meta.archive for topic, meta in state.topics.items()
                          if self._wants(topic) and meta.archive.enabled}
        return frozenset(self._policies)

    def _fetch_budget(self) -> int:
        """How many records the next fetch may return without passing the memory bound."""
        room = self._max_buffer_bytes - self._held_bytes
        return max(1, min(self._max_records, room // max(self._record_size, 1)))

    async def _process(self, consumer: GroupConsumer, batches: Batches) -> None:
        self._buffer(batches)
        await self._flush_due()

    # ---------------------------------------------------------------- buffers
    def _buffer(self, batches: Batches) -> None:
        """Append fetched records to their partition buffers, packed (one chunk a fetch)."""
        now = self._clock()
        for tp, messages in batches.items():
            expected = self._expected.get(tp)
            if expected is not None:
                kept = from_offset(messages, expected)
                self.metrics.redelivered += len(messages) - len(kept)
                messages = kept
            if not messages:
                continue
            buffer = self._buffers.get(tp)
            if buffer is None:
                buffer = self._buffers[tp] = _Buffer(started=now)
            chunk = pack(tp, messages)
            buffer.chunks.append(chunk)
            buffer.count += len(messages)
            added = chunk.size + _RECORD_OVERHEAD * len(messages)
            # The largest recent record sizes the next fetch (_fetch_budget); it decays
            # slowly so one outlier does not throttle fetching for long.
            self._record_size = max(chunk.largest + _RECORD_OVERHEAD,
                                    self._record_size * 15 // 16)
            self._expected[tp] = chunk.last_offset() + 1
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
            if (buffer.count >= policy.flush_records or buffer.size >= policy.flush_bytes
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

    async def _flush(self, partitions: list[TopicPartition], reason: str) -> None:
        """Hand buffers to the writer (it writes them in order per partition)."""
        for tp in partitions:
            await self._writer.wait_capacity()
            # No await from here to submit(): a revoke in between would miss the buffer.
            buffer = self._buffers.pop(tp, None)
            if buffer is None or not buffer.count:
                continue
            self._flight_bytes.setdefault(tp, []).append((buffer.size, time.perf_counter()))
            self._writer.submit(tp, buffer.chunks, reason)

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
        await self._notify()

    # -------------------------------------------------------------- rebalance
    async def resume_position(self, tp: TopicPartition) -> int | None:
        """The offset after the highest one the lake holds for ``tp``."""
        prefix = raw_partition_prefix(tp.topic, tp.partition)
        await self._lake.remove_stale_temp_files(prefix)
        files = [f for f in (parse_raw_path(o.path) for o in await self._lake.list(prefix))
                 if f is not None]
        return next_offset(files)

    async def _revoke(self, revoked: set[TopicPartition]) -> None:
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

    async def _assign(self, consumer: GroupConsumer, assigned: set[TopicPartition]
                      ) -> None:
        ordered = sorted(assigned)
        positions = await asyncio.gather(*(self.resume_position(tp) for tp in ordered))
        resumed = {tp: p for tp, p in zip(ordered, positions, strict=True) if p is not None}
        ends = await high_watermarks(self._kafka, resumed, client_id=f"{self._group_id}-ends")
        for tp, position in zip(ordered, positions, strict=True):
            coordinates = {"topic": tp.topic, "partition": tp.partition}
            if position is None:
                await consumer.seek_to_beginning(tp)
                log.info("archive %s[%d]: nothing archived yet, from the beginning",
                         tp.topic, tp.partition, extra=coordinates)
            elif position > ends[tp]:
                # Seeking there would make Kafka reset to the new log's start, and every
                # record below the lake's position would be dropped as a redelivery.
                self.stalled[tp] = _reset_log(tp, position, ends[tp])
                log.error("%s", self.stalled[tp], extra={**coordinates, "offset": position})
            else:
                consumer.seek(tp, position)
                log.info("archive %s[%d]: resuming after the lake at @%d", tp.topic,
                         tp.partition, position, extra={**coordinates, "offset": position})
                self.metrics.positions[tp] = position
                self._expected[tp] = position


def _reset_log(tp: TopicPartition, position: int, end: int) -> str:
    """Why ``tp`` is not archived, and what to do about it."""
    return (
        f"archive of {tp.topic}[{tp.partition}] stalled: the lake holds offsets up to "
        f"@{position - 1} but the partition ends at @{end}, so its log was reset (the broker "
        "lost its log - an in-memory broker restarted - or the topic was deleted and "
        "recreated). Nothing of this partition is archived, so the new log's records never "
        f"land beside the old log's files. To go on, either restore the topic from the lake "
        f"while it is empty (`onepipe replay {tp.topic} --into-source` puts every record back "
        "at its own offset), or move the lake's old files aside "
        f"({raw_partition_prefix(tp.topic, tp.partition)}) to archive the new log from "
        "offset 0; then restart the worker.")
