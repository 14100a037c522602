"""Writes archive buffers to the lake: in order per partition, in parallel across them.

Contract:
- Files of one partition are written strictly one after another, in offset order. The
  archive resumes after the highest offset in the lake, so a later file must never land
  before an earlier one (a crash in between would leave a hole the resume skips). Only
  the writes wait for each other: a buffer's (first) file is encoded as soon as the
  buffer is handed over, while its partition's earlier files are still being written
  (bench/archive.py at 200 B, three alternating pairs with and without: 276-310k ->
  348-382k rec/s; the encoder busy 49-54% -> 63-70% of a core, the machine 64-66% ->
  84-85%: it had waited for each write before it). A write still ends only after its
  partition's earlier one, even when it fails first, so waiting for a partition's last
  write waits for all of them.
- Memory: at most ``max_in_flight`` encoded files wait for their turn (before encoding
  ahead: one per partition with a write in flight; now possibly several of one
  partition), and memory files of up to onepipe.agents.archive.handoff.KEEP_BYTES (64
  MiB) together are kept between segments (shared memory outside the agent's bound and
  its RSS; :attr:`SegmentWriter.kept_bytes`).
- Each buffer's reader schema is the topic's latest when its write starts, so while the
  registry waits for a new schema, a later buffer of a partition may carry an older
  reader than the buffer before it; each file still holds one schema.
- Different partitions are written concurrently, and decoding + Parquet encoding run in
  encoder processes, so the agent keeps fetching while files are being made. A segment
  reaches its encoder through shared memory (onepipe.agents.archive.handoff) where the
  platform allows, through the pool's pipe otherwise; the file is the same either way.
- A failed write is retried with backoff (lake errors are usually transient); if it still
  fails, that partition's later writes fail too and :meth:`raise_failure` re-raises the
  error in the agent, which stops rather than archive past a hole.
- ``on_written(tp, next_offset, records, undecodable, bytes, files)`` runs after every
  buffer is durable in the lake (the agent commits the Kafka offset there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable

import pyarrow.compute as pc
from aiokafka import TopicPartition

from onepipe.agents.archive import handoff
from onepipe.agents.archive.columns import Chunk, cut, hour_runs
from onepipe.agents.archive.encode import (
    Segment,
    encode_segment,
    ignore_stop_signals,
    warm_up,
)
from onepipe.schemas.codec import HEADER_SIZE, schema_id_of
from onepipe.schemas.errors import LakeError
from onepipe.schemas.topic_names import value_subject
from onepipe.sinks.lake.raw_layout import raw_file_path
from onepipe.sinks.lake.store import LakeStore
from onepipe.tables.lifecycle import stop_signals_blocked
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

OnWritten = Callable[[TopicPartition, int, int, int, int, int], Awaitable[None]]
_RETRIES = 5
#: Most bytes of records one encoder call takes (Arrow's binary columns have 32-bit
#: offsets); a larger buffer is written as several files of consecutive offsets.
_MAX_SEGMENT_BYTES = 1 << 30


class SegmentWriter:
    """Pipelined, per-partition-ordered writer of raw lake files."""

    def __init__(self, lake: LakeStore, registry: RegistryStore, on_written: OnWritten, *,
                 encoders: int = 1, max_in_flight: int = 4) -> None:
        self._lake = lake
        self._registry = registry
        self._on_written = on_written
        self._encoders = encoders
        self._max_in_flight = max_in_flight
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        #: The last write task of each partition; the next one waits for it.
        self._tails: dict[TopicPartition, asyncio.Task[None]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        #: Segments reach the encoders through shared memory (onepipe.agents.archive.handoff)
        #: while it works; through the pool's pipe otherwise.
        self._shared = handoff.available()
        self._files = handoff.MemoryFiles(handoff.KEEP_BYTES)

    async def start(self) -> None:
        self._files = handoff.MemoryFiles(handoff.KEEP_BYTES)  # a stop closed the last
        if self._encoders > 0:
            # spawn, not fork: the worker runs threads (aiokafka, asyncio executors) that a
            # forked child would inherit in an unknown state.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self._encoders, mp_context=multiprocessing.get_context("spawn"),
                initializer=ignore_stop_signals, initargs=(os.getpid(),))
            # Start the encoders now (imports take a second), not on the first flush;
            # the pool starts its processes in submit().
            loop = asyncio.get_running_loop()
            with stop_signals_blocked():
                warming = [loop.run_in_executor(self._pool, warm_up)
                           for _ in range(self._encoders)]
            await asyncio.gather(*warming)

    async def reset(self) -> None:
        """Wait for every write, forget failures: the agent re-reads from the lake after."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        self._tails.clear()
        self._failure = None

    async def stop(self) -> None:
        """Wait for every write, then stop the encoders; harmless twice."""
        try:
            await self.drain()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            self._files.close()

    @property
    def kept_bytes(self) -> int:
        """Bytes of the memory files kept for later segments (module docstring)."""
        return self._files.held_bytes

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def wait_capacity(self) -> None:
        """Wait until another write may start (call before taking a buffer to submit)."""
        while len(self._in_flight) >= self._max_in_flight:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    def submit(self, tp: TopicPartition, records: list[Chunk], reason: str) -> None:
        """Queue ``records`` of ``tp`` (chunks in offset order) for writing after that
        partition's earlier writes.

        Synchronous on purpose: between taking a buffer and registering its write there
        is no await, so a rebalance callback either sees the buffer or sees the write.
        """
        previous = self._tails.get(tp)
        task = asyncio.create_task(self._write_after(previous, tp, records, reason),
                                   name=f"archive-write-{tp.topic}[{tp.partition}]")
        self._tails[tp] = task
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def wait_one(self) -> None:
        """Wait until at least one in-flight write finishes (memory back-pressure)."""
        if self._in_flight:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def drain(self, partitions: set[TopicPartition] | None = None) -> None:
        """Wait for the writes of ``partitions`` (default: all); raise the first failure."""
        tails = [t for tp, t in self._tails.items() if partitions is None or tp in partitions]
        if tails:
            await asyncio.wait(tails)
        for tp in list(self._tails):
            if (partitions is None or tp in partitions) and self._tails[tp].done():
                del self._tails[tp]
        self.raise_failure()

    async def _write_after(self, previous: asyncio.Task[None] | None, tp: TopicPartition,
                           chunks: list[Chunk], reason: str) -> None:
        try:
            await self._write(previous, tp, chunks, reason)
        except BaseException:
            if previous is not None and not previous.done():
                # A write ends only after its partition's earlier one, failed or not:
                # drain() and stop() wait for each partition's last write alone, and a
                # revoke must not hand over a partition whose earlier file is still
                # being written (the next owner would archive its offsets again).
                await asyncio.wait({previous})
            raise

    async def _write(self, previous: asyncio.Task[None] | None, tp: TopicPartition,
                     chunks: list[Chunk], reason: str) -> None:
        reader, writers = await self._schema_texts(tp, chunks)
        files = written_bytes = undecodable = 0
        for start, stop, date, hour in hour_runs(chunks):
            for part in _bounded(cut(chunks, start, stop)):
                first, last = part[0].first_offset(), part[-1].last_offset()
                if previous is not None and previous.done():
                    await previous  # failed: raise now rather than encode for nothing
                    previous = None
                # The first file is encoded while the partition's earlier writes still
                # run; only the files land in order.
                data, bad = await self._encode(Segment(part, reader, writers))
                if previous is not None:
                    await previous  # raises if it failed: never write past a hole
                    previous = None
                path = raw_file_path(tp.topic, tp.partition, date, hour, first, last)
                await self._put(path, data)
                log.debug("archived %s[%d]@%d-%d to %s (%s)", tp.topic, tp.partition,
                          first, last, path, reason,
                          extra={"topic": tp.topic, "partition": tp.partition,
                                 "offset": first, "last_offset": last})
                files += 1
                written_bytes += len(data)
                undecodable += bad
        await self._on_written(tp, chunks[-1].last_offset() + 1, sum(c.count for c in chunks),
                               undecodable, written_bytes, files)

    async def _schema_texts(self, tp: TopicPartition, chunks: list[Chunk]
                            ) -> tuple[str | None, dict[int, str]]:
        """The reader schema text and every writer schema text the values name."""
        # Distinct 5-byte headers first, a column at a time: the parsing per header.
        headers = {h for c in chunks for h in pc.unique(pc.binary_slice(
            c.columns().values.drop_null(), 0, HEADER_SIZE)).to_pylist()}
        await self._registry.await_schemas(headers)
        state = self._registry.state  # after the wait: it may have brought new schemas
        subject = value_subject(tp.topic)
        reader = state.version(subject, "latest").schema.text if subject in state.subjects \
            else None
        writers: dict[int, str] = {}
        for schema_id in {schema_id_of(h) for h in headers} - {None}:
            if schema_id is not None and schema_id in state.schemas_by_id:
                writers[schema_id] = state.schemas_by_id[schema_id].text
        return reader, writers

    async def _encode(self, segment: Segment) -> tuple[bytes, int]:
        pool = self._pool
        if pool is not None:
            loop = asyncio.get_running_loop()
            try:
                if self._shared:
                    encoded = await self._encode_shared(pool, segment)
                    if encoded is not None:
                        return encoded
                    log.warning("archive encoder cannot read the worker's shared memory "
                                "(/proc/<pid>/fd); segments go through its pipe from now on")
                    self._shared = False
                    self._files.close()  # kept files would sit unused until the stop
                return await loop.run_in_executor(pool, encode_segment, segment)
            except concurrent.futures.process.BrokenProcessPool:
                # An encoder died (killed from outside, out of memory): keep archiving
                # in this process rather than stop; slower, never lossy.
                log.warning("archive encoder process died; encoding in the worker from now on")
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
        return await asyncio.to_thread(encode_segment, segment)

    async def _encode_shared(self, pool: concurrent.futures.Executor, segment: Segment
                             ) -> tuple[bytes, int] | None:
        """Encode through a memory file (onepipe.agents.archive.handoff); None when the
        encoder could not open it."""
        loop = asyncio.get_running_loop()
        # (Were the task of this thread cancelled before it ran - a loop torn down - a
        # taken file would stay open: closing it here instead could close it under the
        # thread, or a number reused by then.)
        sharing = asyncio.ensure_future(
            asyncio.to_thread(handoff.share, segment, self._files.take()))
        try:
            fd, shared = await asyncio.shield(sharing)
        except asyncio.CancelledError:
            # The thread goes on and writes the file: close it once written (no leak).
            sharing.add_done_callback(_close_shared)
            raise
        except OSError as exc:  # no memory file to be had now (descriptors, memory)
            log.warning("archive segment goes through the encoder's pipe: %s", exc)
            return await loop.run_in_executor(pool, encode_segment, segment)
        try:
            encoded = await loop.run_in_executor(pool, handoff.encode_shared, shared)
        except BaseException:
            # Cancelled, the encoder may still be reading the file: never write it again.
            os.close(fd)
            raise
        self._files.give(fd)  # the encoder answered: it reads the file no more
        return encoded

    async def _put(self, path: str, data: bytes) -> None:
        delay = 0.2
        for attempt in range(1, _RETRIES + 1):
            try:
                await self._lake.put(path, data)
                return
            except LakeError as exc:
                if not exc.retriable or attempt == _RETRIES:
                    raise
                log.warning("lake write of %s failed (attempt %d of %d), retrying: %s",
                            path, attempt, _RETRIES, exc.message)
                await asyncio.sleep(delay)  # backoff before the next attempt
                delay *= 2


def _bounded(chunks: list[Chunk]) -> list[list[Chunk]]:
    """Consecutive chunks grouped into runs of at most :data:`_MAX_SEGMENT_BYTES` (a
    chunk is one fetch, far smaller)."""
    groups: list[list[Chunk]] = [[]]
    size = 0
    for chunk in chunks:
        if groups[-1] and size + chunk.size > _MAX_SEGMENT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += chunk.size
    return groups


def _close_shared(sharing: asyncio.Future[tuple[int, handoff.SharedSegment]]) -> None:
    """Close the memory file of a hand-over its writer gave up on (cancelled)."""
    if not sharing.cancelled() and sharing.exception() is None:
        os.close(sharing.result()[0])
