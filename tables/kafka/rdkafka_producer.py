"""The hot paths' producer: librdkafka (confluent-kafka) behind an asyncio adapter.

Contract (:class:`RdkafkaProducer`):

- The subset of aiokafka's ``AIOKafkaProducer`` onepipe uses, with the same meaning:
  ``start``/``stop``/``flush``, ``await send(topic, value, key, partition, timestamp_ms,
  headers)`` returning a future that resolves to a :class:`RecordMetadata` (``topic``,
  ``partition``, ``offset``, ``timestamp``) once the broker acknowledged the record
  (``acks=all``), ``send_and_wait`` and ``partitions_for``. So the Publisher
  (onepipe.sinks.publish's ``RecordSender``), the registry, replay and readiness take
  either client; :class:`onepipe.tables.kafka.clients.KafkaClients` builds both. Beyond
  aiokafka: ``await send_many(topic, [(key, value), ...])``, one future for a whole call,
  resolving to ``(partition, offset, timestamp)`` per record in order (the Publisher uses
  it when the sender has it); ``await send_columns(topic, keys, values, partition=,
  timestamps_ms=, headers=)``, one future for a call resolving to its record count
  (replay uses it when the producer has it). Their produce() loops: rdkafka_enqueue.py.
- Errors are aiokafka's exception classes, so every caller's existing handling (and the
  HTTP mapping: 413 for a record too large, 503 with Retry-After for the rest) applies
  unchanged: ``MSG_SIZE_TOO_LARGE`` -> ``MessageSizeTooLargeError``; a record not
  delivered within the request timeout -> ``KafkaTimeoutError``; transport failures ->
  ``KafkaConnectionError``; anything else -> ``KafkaError``. An unreachable broker at
  ``start`` raises ``KafkaConnectionError`` (a bounded metadata request), as aiokafka does.
- Per partition, records are acknowledged in the order they were sent (librdkafka keeps
  order per partition; with idempotence off, a retry after a failed request may reorder,
  as in aiokafka and Kafka's own producer).
- ``stop`` flushes: it waits (at most the request timeout) for every record sent to be
  acknowledged or fail, then fails what is left with ``KafkaTimeoutError``. Harmless
  twice; ``send`` after ``stop`` raises ``ProducerClosed``.
- The event loop never blocks: ``produce()`` only enqueues (a full queue makes ``send``
  wait for acknowledgements, as aiokafka's buffer does); metadata requests run in a
  worker thread; delivery reports are collected by a daemon thread (below).

Why a poll thread, not ``confluent_kafka.aio.AIOProducer`` (measured with
``bench/producer_clients.py`` on one tansu broker, 2 cores, load 0.9: 300k records of
215 B, keyed, linger 5 ms, 1 MiB batches, acks=all; 4 loops of 500-record chunks with
their futures gathered; latency: one record sent and awaited at a time):

================================  ===========  =====  ===================================
client                            records/s    ratio  one record, p50 / p99
================================  ===========  =====  ===================================
raw ``confluent_kafka.Producer``  696,168      1.00   (no asyncio: the ceiling)
this adapter (poll thread)        139,942      0.20   5.44 / 6.65 ms
``confluent_kafka.aio``           2,015        0.003  2,004 / 2,320 ms
raw aiokafka                      86,197       0.12   5.67 / 6.81 ms
================================  ===========  =====  ===================================

(An earlier run on the machine under other load: 388k / 77k / 2.0k / 66k.) The adapter's
cost is Python's, per record: the coroutine of ``send``, a future, the delivery callback
and its metadata - 6.5-6.9 µs of CPU a record, send to ack, against aiokafka's 9.8-10.9 µs
(bench/produce.py's stage figures, default GC thresholds; produce() itself is ~1.5 µs).
So the endpoint's path is :meth:`RdkafkaProducer.send_many`: one future per request and
one delivery callback per record, 2.7 µs a record in the same stage figure.

AIOProducer (confluent-kafka 2.16; ``confluent_kafka.experimental.aio`` before 2.13)
buffers sends in Python until 1,000 records or ``buffer_timeout`` (1 s) and serves
delivery reports only when a later batch or the timeout polls, so a lone record waits up
to a second; it resolves futures from its pool threads (``Future.set_result`` off the
loop, which asyncio does not allow); and it refuses headers, which replay needs. Here,
one daemon thread calls ``poll()`` (which returns as soon as a report arrives; a
produce response acknowledges a whole batch), gathers that poll's reports and hands them
to the loop in one ``call_soon_threadsafe`` - one loop callback per poll, not per record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import confluent_kafka
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed
from confluent_kafka.admin import ClusterMetadata

from onepipe.tables.kafka.rdkafka_enqueue import (
    ANY_PARTITION,
    Headers,
    enqueue_columns,
    enqueue_pairs,
)
from onepipe.tables.kafka.rdkafka_reports import (
    BatchReports,
    CountReports,
    RecordMetadata,
    Report,
    to_aiokafka_error,
    topic_partitions,
)

__all__ = ["RdkafkaProducer", "RecordMetadata", "to_aiokafka_error"]

log = logging.getLogger(__name__)

#: Seconds one poll waits for a report: how long ``stop`` may wait for the thread to end.
_POLL_SECONDS = 0.1
#: Most delivery reports settled in one step of the event loop.
_HANDOVER = 2_000


class RdkafkaProducer:
    """An asyncio producer on librdkafka; see the module docstring."""

    def __init__(self, config: dict[str, Any], *, timeout: float) -> None:
        #: librdkafka configuration (onepipe.tables.kafka.clients builds it).
        self.config = dict(config)
        self._timeout = timeout
        self._producer: confluent_kafka.Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._closed = False
        # Delivery reports of the poll in progress; appended to inside poll() only.
        self._reports: list[Report] = []
        # Futures not yet settled: stop() fails whatever librdkafka never reported.
        self._pending: set[asyncio.Future[Any]] = set()
        # Woken by the next reports (a send waiting for room) / when nothing is pending.
        self._room: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._fatal: KafkaError | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect (one metadata request, bounded by the timeout) and start polling."""
        if self._closed:
            raise ProducerClosed
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        config = {**self.config, "logger": log, "error_cb": self._on_error}
        self._producer = confluent_kafka.Producer(config)
        # librdkafka connects lazily; ask once so a wrong address fails the start.
        await self._metadata(None, self._timeout)
        self._running = True
        self._thread = threading.Thread(target=self._poll, daemon=True,
                                        name=f"rdkafka-poll-{config.get('client.id', '')}")
        self._thread.start()

    async def stop(self) -> None:
        """Flush (bounded by the timeout), fail what is left, close; harmless twice."""
        if self._closed:
            return
        self._closed = True
        if self._producer is None:
            return
        try:
            if self._running:
                await self.flush(self._timeout)
        finally:
            self._running = False
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)
            producer, self._producer = self._producer, None
            await asyncio.to_thread(self._close, producer)
            # The purged records' reports (served by _close, nobody handed them over).
            reports, self._reports = self._reports, []
            self._resolve(reports)
            for future in self._pending:
                if not future.done():
                    future.set_exception(KafkaTimeoutError(
                        "the producer stopped before the broker acknowledged this record"))
            self._pending.clear()

    @staticmethod
    def _close(producer: confluent_kafka.Producer) -> None:
        producer.purge()
        producer.flush(1.0)  # serves the purged records' reports
        producer.close()

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiokafka's signature
        """Wait until every record sent so far is acknowledged or failed."""
        if not self._pending or self._loop is None:
            return
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drained), timeout)
        except TimeoutError:
            log.warning("%d record(s) not acknowledged within %gs of a flush",
                        len(self._pending), timeout)

    # ------------------------------------------------------------------ sends
    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue one record; the future resolves when the broker acknowledged it."""
        # The hot path (~2.5 µs a record with produce() itself): no per-record object but
        # the future and the callback, which runs in the poll thread inside poll().
        producer = self._open()
        future: asyncio.Future[RecordMetadata] = asyncio.Future(loop=self._loop)
        append = self._reports.append

        def delivered(error: confluent_kafka.KafkaError | None,
                      message: confluent_kafka.Message) -> None:
            # In the poll thread: where the record landed, read before the message goes.
            if error is None:
                kind, stamp = message.timestamp()
                append((future, None, RecordMetadata(
                    topic, message.partition() or 0, message.offset() or 0,
                    stamp if kind != confluent_kafka.TIMESTAMP_NOT_AVAILABLE else None)))
            else:
                append((future, error, None))

        try:
            if partition is None and timestamp_ms is None and not headers:
                producer.produce(topic, value, key, ANY_PARTITION, delivered)
            else:  # positional, in produce()'s order (rdkafka_enqueue.enqueue_columns)
                producer.produce(topic, value, key,
                                 ANY_PARTITION if partition is None else partition, delivered,
                                 None, timestamp_ms or 0, list(headers) if headers else None)
        except BufferError:
            await self._produce_when_room(
                topic, value, key, ANY_PARTITION if partition is None else partition,
                delivered, None, timestamp_ms or 0, list(headers) if headers else None)
        except confluent_kafka.KafkaException as exc:
            raise to_aiokafka_error(exc.args[0]) from exc
        self._pending.add(future)
        return future

    async def _produce_when_room(self, *args: Any) -> None:
        """librdkafka's queue is full: wait for acks and retry ``produce(*args)``, as
        aiokafka waits for room in its buffer (the caller's deadline bounds the wait)."""
        assert self._loop is not None
        while True:
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            await asyncio.shield(self._room)
            producer = self._producer
            if producer is None or self._closed:
                raise ProducerClosed
            try:
                producer.produce(*args)
            except BufferError:
                continue
            except confluent_kafka.KafkaException as exc:
                raise to_aiokafka_error(exc.args[0]) from exc
            return

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes | None]],
    ) -> asyncio.Future[list[tuple[int, int, int | None]]]:
        """Enqueue ``(key, value)`` records; one future for all of them.

        It resolves to ``(partition, offset, timestamp)`` per record, in the order given,
        once the broker acknowledged every one, or fails with the first error (records
        after a failed one may still be written; the caller retries, dedup absorbs it).
        Why beside :meth:`send`: a future, a coroutine and a metadata object per record
        cost the produce endpoint more than librdkafka's ``produce()`` itself (measured in
        BENCHMARKS.md, "Produce endpoint"); here a record costs one ``produce()`` and one
        delivery callback.
        """
        producer = self._open()
        future: asyncio.Future[list[tuple[int, int, int | None]]] = asyncio.Future(
            loop=self._loop)
        if not records:
            future.set_result([])
            return future
        done = BatchReports(future, len(records), self._reports.append)
        return await self._enqueued(future, enqueue_pairs(
            producer.produce, self._produce_when_room, self._turn, topic, records,
            done.delivered))

    async def send_columns(
        self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes | None], *,
        partition: int | None = None, timestamps_ms: Sequence[int] | None = None,
        headers: Sequence[Headers | None] | None = None,
    ) -> asyncio.Future[int]:
        """Enqueue records given as columns (one entry per record in each) to ``partition``
        (None: the partitioner's), each with its timestamp (0: the producer's clock) and
        headers (a list of ``(key, value)``, or None); one future for the call: the count
        of records once the broker acknowledged all, or the first error (as send_many).
        Why beside it: replay needs no record's place, so a record costs one produce()
        and one call of one shared callback - no index, no metadata read back."""
        producer = self._open()
        future: asyncio.Future[int] = asyncio.Future(loop=self._loop)
        if not len(values):
            future.set_result(0)
            return future
        done = CountReports(future, len(values), self._reports.append)
        return await self._enqueued(future, enqueue_columns(
            producer.produce, self._produce_when_room, self._turn, topic, keys, values,
            partition, timestamps_ms, headers, done.delivered))

    def _open(self) -> confluent_kafka.Producer:
        """The producer, if it may take records now."""
        if self._producer is None or self._closed:
            raise ProducerClosed
        if self._fatal is not None:
            raise self._fatal
        return self._producer

    async def _enqueued(self, future: asyncio.Future[Any],
                        enqueue: Coroutine[Any, Any, None]) -> asyncio.Future[Any]:
        """Run a batch call's produce() loop; ``future`` pending until its reports are in."""
        self._pending.add(future)
        try:
            await enqueue
        except BaseException as exc:
            # Cut short (a produce() error, the caller's deadline, a stop): the records
            # enqueued count down a batch that can no longer complete, so nothing is
            # handed over for it; nobody waits for its future any more (flush, stop).
            self._pending.discard(future)
            future.cancel()
            if isinstance(exc, confluent_kafka.KafkaException):
                raise to_aiokafka_error(exc.args[0]) from exc
            raise
        return future

    async def _turn(self) -> None:
        """A turn of the event loop inside a long produce() loop."""
        await asyncio.sleep(0)
        if self._closed:
            raise ProducerClosed

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None,
        partition: int | None = None, timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
    ) -> RecordMetadata:
        """:meth:`send` and wait for the broker's acknowledgement."""
        return await (await self.send(topic, value, key, partition, timestamp_ms, headers))

    # ------------------------------------------------------------------ metadata
    async def partitions_for(self, topic: str) -> set[int]:
        """The partitions of ``topic`` (a metadata request naming it: brokers with
        auto-creation create a missing topic, as aiokafka's ``partitions_for`` does)."""
        return topic_partitions(await self._metadata(topic, self._timeout), topic)

    async def broker_count(self) -> int:
        """How many brokers a metadata request for the cluster names (creates no topic)."""
        metadata = await self._metadata(None, self._timeout)
        return len(metadata.brokers)

    async def _metadata(self, topic: str | None, bound: float) -> ClusterMetadata:
        producer = self._producer
        if producer is None:
            raise ProducerClosed
        try:
            # list_topics blocks until the answer: in a worker thread, never on the loop.
            return await asyncio.to_thread(producer.list_topics, topic, bound)
        except confluent_kafka.KafkaException as exc:
            error = to_aiokafka_error(exc.args[0])
            bootstrap = self.config.get("bootstrap.servers")
            raise type(error)(f"no metadata from Kafka at {bootstrap}: {error}") from exc

    # ------------------------------------------------------------------ the poll thread
    def _poll(self) -> None:
        producer, loop = self._producer, self._loop
        assert producer is not None and loop is not None
        while self._running:  # stop() flushed before it clears this
            served = producer.poll(_POLL_SECONDS)
            if served and not self._reports and self._room is not None:
                # Records were acknowledged, none completing a send_many call (reports are
                # handed over per call): there is room in the queue all the same, and a
                # call waiting for it may be the one that has to complete.
                loop.call_soon_threadsafe(self._wake_room)
            if self._reports:
                reports = self._reports[:]
                del self._reports[:]
                try:
                    # At most _HANDOVER reports per loop step: one poll can serve tens of
                    # thousands (a request's worth), which would hold the loop for as
                    # many future callbacks at once.
                    for start in range(0, len(reports), _HANDOVER):
                        loop.call_soon_threadsafe(self._resolve,
                                                  reports[start:start + _HANDOVER])
                except RuntimeError:  # the loop closed under a leaked producer
                    return

    def _resolve(self, reports: list[Report]) -> None:
        """On the loop: settle one poll's futures."""
        pending = self._pending
        for future, error, metadata in reports:
            pending.discard(future)
            if future.done():  # cancelled by a caller that gave up
                continue
            if error is not None:
                future.set_exception(to_aiokafka_error(error))
            elif metadata is not None:
                future.set_result(metadata)
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if not pending and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_room(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _on_error(self, error: confluent_kafka.KafkaError) -> None:
        # librdkafka retries transient errors itself; a fatal one (an idempotent producer
        # fenced, say) ends the producer: later sends raise it.
        if error.fatal():
            self._fatal = to_aiokafka_error(error)
            log.error("librdkafka producer failed for good: %s", error)
        else:
            log.warning("librdkafka: %s", error)
