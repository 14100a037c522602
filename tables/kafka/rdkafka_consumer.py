"""The batch agents' group consumer on librdkafka: aiokafka's consumer API over
``confluent_kafka.Consumer``.

Contract (:class:`RdkafkaConsumer`): the subset of ``AIOKafkaConsumer`` the batch agents
and the compaction workers use - ``start``/``stop``, ``subscribe(topics, listener=...)``,
``unsubscribe``, ``getmany(timeout_ms=, max_records=)``, ``pause``/``resume``/``paused``,
``seek``, ``seek_to_beginning``, ``seek_to_committed``, ``commit``, ``committed``,
``position``, ``assignment``, ``highwater`` and ``topics`` - with the same types
(aiokafka ``TopicPartition`` keys, :class:`~onepipe.tables.kafka.rdkafka_records.RdkafkaRecord`
records, aiokafka's errors) and the same guarantees:

- ``getmany`` waits up to ``timeout_ms`` for the first record, then returns at once with
  everything already fetched (up to ``max_records``), as aiokafka does; never a record of
  a partition that is paused, sought or revoked after the call that fetched it.
- **Assignment before any fetch.** A listener's ``on_partitions_assigned`` runs before
  librdkafka is given the partitions at all: its ``pause``, ``seek`` and
  ``seek_to_beginning`` become the offsets of the ``assign()`` and the partitions it left
  paused are paused in the same breath, so nothing is fetched from the group's committed
  offset unless the listener asked for it (it sought nothing: then the committed offset,
  else the earliest - ``auto.offset.reset=earliest``).
- **Revoke before release.** ``on_partitions_revoked`` runs to its end (flushes, durable
  writes, commits) while librdkafka still holds the partitions; only then are they
  unassigned, so the next owner cannot read them before this member made them durable.
- ``highwater(tp)`` is the high watermark of the last *fetch response* (librdkafka's cached
  watermark), never ListOffsets: tansu answers ListOffsets(latest) wrongly (DESIGN.md).
- ``stop()`` leaves the group without calling the listener (aiokafka calls none on
  close either); ``unsubscribe()`` also leaves the group at once and calls no listener.
  Stopping twice is harmless.

Threading: one thread per consumer owns the librdkafka handle. confluent-kafka >= 2.16
serialises every call on a handle behind a gate (a ``pause()`` from the event loop waits
for a ``consume()`` in flight: measured 1.8 s of a 2 s consume), so *every* call runs on
that thread, as a job: the sync calls (pause, resume, seek, subscribe, unsubscribe) are
queued and return at once, in order with the next fetch; the async ones (getmany, commit,
committed, topics) await their job's result, delivered by one ``call_soon_threadsafe``
per job - one per ``consume()`` batch, never one per record. A fetch waits in slices of
50 ms and runs the jobs queued meanwhile between slices, so a commit never waits for a
whole fetch timeout. librdkafka calls the rebalance callbacks on that thread from inside
``consume()``: the callback hands the listener's coroutine to the event loop
(``run_coroutine_threadsafe``) and, until it is done, keeps running the jobs the
coroutine queues (its pauses, seeks, commits): the thread blocks, the loop never does.

Eager, not cooperative, assignment: the dedup agent needs the range assignor (partition
p of a topic and of its repartition topic on one member), which librdkafka cannot
combine with cooperative-sticky; eager with aiokafka's assignor names (``roundrobin``,
``range``) lets aiokafka and librdkafka members share a group during a rolling upgrade;
and the agents' revoke/assign contract (the listener sees every partition move) is the
one their crash and rebalance tests prove. Cooperative would keep unmoved partitions
flowing during a rebalance, but a rebalance is rare next to the batches between.

Poll thread versus ``confluent_kafka.aio.AIOConsumer`` (2.16.2; BENCHMARKS.md, "Batch
consumers on librdkafka", measured in the same run, 200-byte records, one tansu broker, two
cores): raw ``Consumer.consume(10000)`` read 1.46M rec/s; this adapter's ``getmany``
(records built) 0.93M; ``AIOConsumer.consume(10000)`` 1.30M handing over bare
``Message`` objects (no records built, 1.28 s of loop time per million records waiting
in a thread pool call per batch). AIOConsumer was not chosen: it runs each call in a
pool of up to 100 threads and its rebalance callbacks as loop coroutines that must call
its *async* ``assign``/``pause`` back through that pool, with no way to pause before
``assign`` (the gate is per call chain, so a listener's sync ``pause`` would block); and
every consumer call is serialised behind ``consume()``, so a commit waits a whole fetch
timeout. The adapter's cost over raw librdkafka is the records it builds (~0.4 us each).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import confluent_kafka
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError

from onepipe.tables.kafka.rdkafka_records import Batches, group_batch, to_kafka_error

__all__ = ["RdkafkaConsumer"]

log = logging.getLogger(__name__)

#: Seconds one wait for records lasts before the jobs queued meanwhile run.
_SLICE = 0.05
#: Seconds between looks at whether the event loop still runs, while a listener runs.
_LISTENER_CHECK = 1.0
#: Seconds an unsubscribe waits for librdkafka to take the partitions back.
_UNSUBSCRIBE_WAIT = 10.0


class _Job:
    """A call to run on the consumer's thread; ``future`` (on the loop) gets its result."""

    __slots__ = ("call", "future", "top_level")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future[Any] | None,
                 top_level: bool) -> None:
        self.call = call
        self.future = future
        #: Runs only outside a fetch (a fetch, an unsubscribe, the close).
        self.top_level = top_level


#: Queued when a listener's coroutine is done: wakes the thread waiting for it.
_WAKE = _Job(lambda: None, None, False)


class RdkafkaConsumer:
    """A group member on librdkafka with aiokafka's API; see the module docstring."""

    def __init__(self, config: Mapping[str, Any], *, timeout: float = 30.0) -> None:
        self._config = dict(config)
        #: Seconds a metadata or committed-offsets request may take.
        self._timeout = timeout
        self._consumer: confluent_kafka.Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._deferred: deque[_Job] = deque()
        self._state = "new"
        # Written by the thread only; the loop reads whole (immutable) values.
        self._listener: ConsumerRebalanceListener | None = None
        self._closing = False
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._paused: frozenset[TopicPartition] = frozenset()
        self._highwaters: dict[TopicPartition, int] = {}
        #: While a listener positions new partitions: the offset each is assigned at.
        self._assigning: dict[TopicPartition, int] | None = None
        #: Partitions paused or sought while a fetch ran: its records of them are dropped.
        self._dropped: dict[TopicPartition, str] = {}
        self._fetching = False
        #: Next offset after the last record handed over, per partition.
        self._positions: dict[TopicPartition, int] = {}
        self._tps: dict[tuple[str, int], TopicPartition] = {}

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create the handle and check that the cluster answers (as aiokafka's start)."""
        if self._state != "new":
            raise IllegalStateError(f"consumer already {self._state}")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"rdkafka-{self._config.get('client.id')}")
        self._state = "started"
        self._thread.start()
        await self._call(self._open, top_level=True)

    async def stop(self) -> None:
        """Leave the group (no listener call) and close; harmless twice."""
        if self._state != "started":
            self._state = "closed"
            return
        self._state = "closing"
        thread = self._thread
        try:
            await asyncio.shield(self._call(self._close, top_level=True, closing=True))
        finally:
            self._state = "closed"
            if thread is not None:
                await asyncio.to_thread(thread.join)

    # ---------------------------------------------------------- subscription
    def subscribe(self, topics: Iterable[str],
                  listener: ConsumerRebalanceListener | None = None) -> None:
        wanted = sorted(topics)

        def subscribe() -> None:
            self._listener = listener
            self._rd().subscribe(wanted, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self._submit(subscribe)

    def unsubscribe(self) -> None:
        self._submit(self._unsubscribe, top_level=True)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    # ------------------------------------------------------------- fetching
    async def getmany(self, *, timeout_ms: int = 0, max_records: int | None = None
                      ) -> Batches:
        """Records per partition: up to ``max_records``, waiting up to ``timeout_ms``."""
        count, timeout = max_records or 10_000, timeout_ms / 1000
        return await self._call(lambda: self._fetch(count, timeout), top_level=True)

    def pause(self, *partitions: TopicPartition) -> None:
        self._submit(lambda: self._pause(set(partitions)))

    def resume(self, *partitions: TopicPartition) -> None:
        self._submit(lambda: self._resume(set(partitions)))

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._submit(lambda: self._seek(partition, offset))

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        def seek() -> None:
            for tp in partitions or self._assigned:
                self._seek(tp, confluent_kafka.OFFSET_BEGINNING)
        await self._call(seek)

    async def seek_to_committed(self, *partitions: TopicPartition) -> dict[TopicPartition, int]:
        def seek() -> dict[TopicPartition, int]:
            committed = self._committed(partitions or self._assigned)
            for tp, offset in committed.items():
                self._seek(tp, offset if offset >= 0 else confluent_kafka.OFFSET_BEGINNING)
            return committed
        return await self._call(seek)

    def highwater(self, partition: TopicPartition) -> int | None:
        """The high watermark of the partition's last fetch response; None before one."""
        return self._highwaters.get(partition)

    async def position(self, partition: TopicPartition) -> int:
        def position() -> int:
            if partition in self._positions:
                return self._positions[partition]
            offset = self._committed([partition]).get(partition, -1)
            if offset < 0:
                raise IllegalStateError(f"no position for {partition} yet")
            return offset
        return await self._call(position)

    # ---------------------------------------------------------------- offsets
    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (default: the position of every assigned partition)."""
        def commit() -> None:
            wanted = dict(offsets) if offsets is not None else {
                tp: self._positions[tp] for tp in self._assigned if tp in self._positions}
            if not wanted:
                return
            try:
                results = self._rd().commit(offsets=[
                    confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)
                    for tp, offset in wanted.items()], asynchronous=False)
            except confluent_kafka.KafkaException as exc:
                raise to_kafka_error(exc, commit=True) from exc
            for result in results or ():
                if result.error is not None:
                    raise to_kafka_error(result.error, commit=True)
        await self._call(commit)

    async def committed(self, partition: TopicPartition) -> int | None:
        offset = (await self._call(lambda: self._committed([partition]))).get(partition, -1)
        return offset if offset >= 0 else None

    async def topics(self) -> set[str]:
        """Every topic of the cluster (a whole-cluster request: it creates nothing)."""
        def topics() -> set[str]:
            try:
                return set(self._rd().list_topics(timeout=self._timeout).topics)
            except confluent_kafka.KafkaException as exc:
                raise to_kafka_error(exc) from exc
        return await self._call(topics)

    # ------------------------------------------------------ the loop's side
    def _submit(self, call: Callable[[], Any], *, top_level: bool = False) -> None:
        """Queue ``call``; it runs on the thread in order with every other call."""
        self._check("closing")
        self._jobs.put(_Job(call, None, top_level))

    async def _call(self, call: Callable[[], Any], *, top_level: bool = False,
                    closing: bool = False) -> Any:
        """Run ``call`` on the thread and return (or raise) what it did."""
        self._check("closing" if closing else "started")
        assert self._loop is not None  # set by start(), which _check implies
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put(_Job(call, future, top_level))
        return await future

    def _check(self, allowed: str) -> None:
        if self._state not in ("started", allowed):
            raise IllegalStateError(f"the librdkafka consumer is {self._state}; "
                                    "start() it first")

    # ---------------------------------------------------- the thread's side
    def _main(self) -> None:
        while self._state != "closed" or self._deferred:
            job = self._deferred.popleft() if self._deferred else self._jobs.get()
            if job is not _WAKE:
                self._run(job, nested=False)
            if job.call == self._close:
                return

    def _run(self, job: _Job, *, nested: bool) -> None:
        if nested and job.top_level:
            self._deferred.append(job)  # after the fetch (or callback) that runs now
            return
        try:
            result = job.call()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            if job.future is None:
                log.warning("librdkafka consumer: a queued call failed: %r", exc)
            else:
                self._deliver(job.future, None, exc)
        else:
            if job.future is not None:
                self._deliver(job.future, result, None)

    def _deliver(self, future: asyncio.Future[Any], result: Any,
                 exc: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return  # the caller was cancelled
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(settle)

    def _run_queued(self) -> None:
        """Run the jobs queued meanwhile (inside a fetch or a callback)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _WAKE:
                self._run(job, nested=True)

    def _rd(self) -> confluent_kafka.Consumer:
        if self._consumer is None:
            raise IllegalStateError("the librdkafka consumer is closed")
        return self._consumer

    def _open(self) -> None:
        self._consumer = confluent_kafka.Consumer(self._config)
        try:
            self._consumer.list_topics(timeout=self._timeout)
        except confluent_kafka.KafkaException as exc:
            self._close()
            raise KafkaConnectionError(
                f"no Kafka broker answered at {self._config.get('bootstrap.servers')} "
                f"within {self._timeout:.0f}s: {exc}") from exc

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._closing, self._listener = True, None
        if consumer is not None:
            consumer.close()  # leaves the group; _on_revoke calls no listener now
        self._state = "closed"

    def _unsubscribe(self) -> None:
        consumer = self._rd()
        self._listener = None
        self._assigned = frozenset()
        consumer.unsubscribe()
        # librdkafka hands the partitions back through the revoke callback, served by a
        # poll: serve it now, so the group rebalances without waiting for a next fetch.
        deadline = time.monotonic() + _UNSUBSCRIBE_WAIT
        while consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(_SLICE)  # a record returned here is dropped: nothing is assigned

    def _fetch(self, count: int, timeout: float) -> Batches:
        consumer = self._rd()
        deadline = time.monotonic() + timeout
        self._fetching, self._dropped = True, {}
        try:
            messages = consumer.consume(count, 0)
            while not messages:
                self._run_queued()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                first = consumer.poll(min(left, _SLICE))
                if first is not None:
                    messages = [first, *consumer.consume(count - 1, 0)] if count > 1 \
                        else [first]
            self._run_queued()  # pauses and seeks queued meanwhile apply to this batch
            batches = group_batch(messages, self._handed_over, self._on_error)
        except confluent_kafka.KafkaException as exc:
            raise to_kafka_error(exc) from exc
        finally:
            self._fetching = False
        for tp, records in batches.items():
            self._positions[tp] = records[-1].offset + 1
        for tp, why in self._dropped.items():
            if why == "pause" and tp in self._positions:
                # librdkafka's position passed the dropped records: fetch them again.
                consumer.seek(self._ctp(tp, self._positions[tp]))
        self._refresh_highwaters(consumer)
        return batches

    def _handed_over(self, topic: str, partition: int) -> TopicPartition | None:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp if tp in self._assigned and tp not in self._dropped else None

    def _on_error(self, message: Any) -> None:
        error: confluent_kafka.KafkaError = message.error()
        if error.fatal():
            raise to_kafka_error(error)
        if error.code() != confluent_kafka.KafkaError._PARTITION_EOF:
            log.warning("librdkafka consumer %s: %s[%s]: %s", self._config.get("group.id"),
                        message.topic(), message.partition(), error.str())

    def _refresh_highwaters(self, consumer: confluent_kafka.Consumer) -> None:
        highwaters = {}
        for tp in self._assigned:
            _, high = consumer.get_watermark_offsets(self._ctp(tp), cached=True)
            if high >= 0:
                highwaters[tp] = high
        self._highwaters = highwaters

    def _pause(self, tps: set[TopicPartition]) -> None:
        self._paused |= tps
        live = [tp for tp in tps if tp in self._assigned and self._assigning is None]
        if live:
            self._rd().pause([self._ctp(tp) for tp in live])
            if self._fetching:
                self._dropped.update(dict.fromkeys(live, "pause"))

    def _resume(self, tps: set[TopicPartition]) -> None:
        self._paused -= tps
        live = [tp for tp in tps if tp in self._assigned and self._assigning is None]
        if live:
            self._rd().resume([self._ctp(tp) for tp in live])

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        if self._assigning is not None and tp in self._assigning:
            self._assigning[tp] = offset  # the offset it is assigned at
            return
        if tp not in self._assigned:
            raise IllegalStateError(f"cannot seek {tp.topic}[{tp.partition}]@{offset}: "
                                    "it is not assigned to this consumer")
        self._rd().seek(self._ctp(tp, offset))
        if offset >= 0:
            self._positions[tp] = offset
        if self._fetching:
            self._dropped[tp] = "seek"

    def _committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            found = self._rd().committed([self._ctp(tp) for tp in tps], timeout=self._timeout)
        except confluent_kafka.KafkaException as exc:
            raise to_kafka_error(exc) from exc
        return {TopicPartition(c.topic, c.partition): c.offset for c in found}

    @staticmethod
    def _ctp(tp: TopicPartition, offset: int = confluent_kafka.OFFSET_INVALID
             ) -> confluent_kafka.TopicPartition:
        return confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)

    # ------------------------------------------- librdkafka's rebalance callbacks
    def _on_assign(self, consumer: confluent_kafka.Consumer,
                   partitions: list[confluent_kafka.TopicPartition]) -> None:
        tps = {TopicPartition(p.topic, p.partition) for p in partitions}
        log.info("group %s assigned %s to this member", self._config.get("group.id"),
                 _names(tps))
        self._assigned, self._paused = frozenset(tps), frozenset()
        self._assigning = dict.fromkeys(tps, confluent_kafka.OFFSET_STORED)
        try:
            self._call_listener("on_partitions_assigned", tps)
        finally:
            offsets, self._assigning = self._assigning, None
            # Not assigned until the listener positioned them; the ones it left paused are
            # paused before librdkafka's fetcher ever sees them unpaused.
            consumer.assign([self._ctp(tp, offset) for tp, offset in offsets.items()])
            paused = [self._ctp(tp) for tp in tps if tp in self._paused]
            if paused:
                consumer.pause(paused)

    def _on_revoke(self, consumer: confluent_kafka.Consumer,
                   partitions: list[confluent_kafka.TopicPartition]) -> None:
        log.info("group %s revokes %s from this member%s", self._config.get("group.id"),
                 _names(self._assigned), " (closing)" if self._closing else "")
        try:
            self._call_listener("on_partitions_revoked", set(self._assigned))
        finally:
            # Only now does librdkafka give them up: the listener made them durable first.
            consumer.unassign()
            self._assigned, self._paused, self._highwaters = frozenset(), frozenset(), {}
            self._positions.clear()

    def _call_listener(self, method: str, tps: set[TopicPartition]) -> None:
        """Run the listener's ``method`` on the event loop; serve its jobs meanwhile."""
        listener, loop = self._listener, self._loop
        if listener is None or self._closing or loop is None or loop.is_closed():
            return
        callback = getattr(listener, method)

        async def call() -> None:
            result = callback(tps)
            if inspect.isawaitable(result):
                await result

        try:
            future = asyncio.run_coroutine_threadsafe(call(), loop)
        except RuntimeError:  # the loop closed meanwhile
            return
        future.add_done_callback(lambda _: self._jobs.put(_WAKE))
        while not future.done():
            try:
                job = self._jobs.get(timeout=_LISTENER_CHECK)
            except queue.Empty:
                if loop.is_closed():
                    future.cancel()
                    return
                continue
            if job is not _WAKE:
                self._run(job, nested=True)
        if not future.cancelled() and future.exception() is not None:
            # aiokafka logs what a listener raises, too; the agents record their own.
            log.error("%s of %s failed for %s", method, self._config.get("group.id"),
                      sorted(tps), exc_info=future.exception())



def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "nothing"
