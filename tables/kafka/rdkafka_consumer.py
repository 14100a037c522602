"""The batch agents' group consumer on librdkafka: aiokafka's consumer API over
``confluent_kafka.Consumer``.

Contract (:class:`RdkafkaConsumer`): the part of ``AIOKafkaConsumer`` the batch agents
and the compaction workers call (onepipe.tables.kafka.types.GroupConsumer), with the same
types - aiokafka ``TopicPartition`` keys, each partition's records a sequence of aiokafka
``ConsumerRecord`` (held as columns, onepipe.tables.kafka.record_columns: no Python
object per record until one is asked for), aiokafka's errors - and the same guarantees:

- ``getmany`` waits up to ``timeout_ms`` for the first record, then returns at once with
  what is already fetched (up to ``max_records``), as aiokafka does; never a record of a
  partition paused, sought or revoked after the call that fetched it.
- **Positioned before any fetch.** A listener's ``on_partitions_assigned`` runs before
  librdkafka is given the partitions at all: its ``seek``/``seek_to_beginning`` become
  the offsets of the ``assign()``, and the partitions it left paused are paused in the
  same breath, so nothing is fetched from the group's committed offset unless the
  listener positioned nothing (then the committed offset, else the earliest).
- **Revoked after the listener.** ``on_partitions_revoked`` runs to its end (flushes,
  durable writes, commits) while librdkafka still holds the partitions; only then are
  they unassigned, so the next owner cannot read them before this member made its work
  durable. A listener failure is logged (as aiokafka does); the agents record their own.
- ``highwater(tp)`` is the high watermark of the partition's last *fetch response*
  (librdkafka's cached one), never ListOffsets, which tansu answers wrongly (DESIGN.md).
- ``stop()`` and ``unsubscribe()`` leave the group at once and call no listener, as
  aiokafka's; first they let the coordinator tell of a join round in flight (one
  heartbeat) and finish it: tansu keeps a member that leaves inside a round as that
  round's leader for good, and the group never assigns again (every later member waits
  in SyncGroup). Stopping twice is harmless.

Threading: one thread owns the handle and runs every call on it (rdkafka_thread:
confluent-kafka >= 2.16 serialises the calls on a handle); sync calls (pause, resume,
seek, subscribe) are queued and return at once, async ones await their result - one
``call_soon_threadsafe`` per call, per ``consume()`` batch for a fetch, never per record.
Rebalance callbacks run on that thread inside ``consume()`` and run the listener's
coroutine on the loop (time in a callback does not count against
``max.poll.interval.ms``: a 12 s callback with a 6 s interval kept the assignment).

Eager, not cooperative: the dedup agent needs the range assignor (partition p of a topic
and of its repartition topic on one member), which librdkafka cannot combine with
cooperative-sticky; aiokafka's assignor names let both clients share a group during a
rolling upgrade; and the agents' crash and rebalance tests prove the eager contract.
JoinGroup states ``max.poll.interval.ms`` (300 s, as aiokafka's) as the rebalance
timeout, where aiokafka said ``rebalance_timeout``.

Not ``confluent_kafka.aio.AIOConsumer``: its API is async only (aiokafka's pause, seek,
subscribe are sync, called inside the agents' listeners), it serialises every call behind
a whole ``consume(timeout)``, and it hands over bare ``Message`` objects. Figures
(``bench/consume_ceilings.py``: this adapter 0.48-0.83 of raw ``consume()``, 1.0-2.0x
aiokafka's ``getmany``; building records 0.5-0.7 µs each) are in BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import confluent_kafka
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError

from onepipe.tables.kafka.rdkafka_rebalance import RebalanceCallbacks
from onepipe.tables.kafka.rdkafka_records import to_kafka_error
from onepipe.tables.kafka.rdkafka_thread import HandleThread
from onepipe.tables.kafka.record_columns import PartitionRecords, partition_columns

__all__ = ["RdkafkaConsumer"]

log = logging.getLogger(__name__)

#: Seconds one wait for records lasts before the jobs queued meanwhile run.
_SLICE = 0.05
#: Seconds an unsubscribe waits for librdkafka to take the partitions back.
_UNSUBSCRIBE_WAIT = 10.0


class RdkafkaConsumer(RebalanceCallbacks):
    """A group member on librdkafka with aiokafka's API; see the module docstring."""

    def __init__(self, config: Mapping[str, Any], *, timeout: float = 30.0) -> None:
        self._config = dict(config)
        #: Seconds a metadata or committed-offsets request may take.
        self._timeout = timeout
        self._consumer: confluent_kafka.Consumer | None = None
        self._thread: HandleThread | None = None
        self._state = "new"
        # Written by the thread only; the loop reads whole (immutable) values.
        self._listener: ConsumerRebalanceListener | None = None
        self._closing = False
        self._subscribed = False
        #: Revoked by a rebalance and not assigned again yet: in a join round.
        self._rejoining = False
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
            raise IllegalStateError(f"the librdkafka consumer is {self._state} already")
        self._thread = HandleThread(f"rdkafka-{self._config.get('client.id')}",
                                    asyncio.get_running_loop())
        self._state = "started"
        try:
            await self._thread.call(self._open, top_level=True)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Leave the group (no listener call) and close; harmless twice."""
        thread = self._thread
        if self._state != "started" or thread is None:
            self._state = "closed"
            return
        self._state = "closing"
        try:
            await asyncio.shield(thread.call(self._close, last=True))
        finally:
            self._state = "closed"
            await thread.join()

    # ---------------------------------------------------------- subscription
    def subscribe(self, topics: Iterable[str],
                  listener: ConsumerRebalanceListener | None = None) -> None:
        wanted = sorted(topics)

        def subscribe() -> None:
            self._listener, self._subscribed = listener, True
            self._rd().subscribe(wanted, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)
        self._submit(subscribe)

    def unsubscribe(self) -> None:
        self._submit(self._unsubscribe, top_level=True)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    # ------------------------------------------------------------- fetching
    async def getmany(self, *, timeout_ms: int = 0, max_records: int | None = None
                      ) -> dict[TopicPartition, PartitionRecords]:
        """Records per partition (as columns: onepipe.tables.kafka.record_columns): up to
        ``max_records``, waiting up to ``timeout_ms``."""
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
        """Queue ``call`` on the handle's thread, in order with every other call."""
        if self._state != "started" or self._thread is None:
            raise IllegalStateError(f"the librdkafka consumer is {self._state}; "
                                    "start() it first")
        self._thread.submit(call, top_level=top_level)

    async def _call(self, call: Callable[[], Any], *, top_level: bool = False) -> Any:
        """Run ``call`` on the handle's thread and return (or raise) what it did."""
        if self._state != "started" or self._thread is None:
            raise IllegalStateError(f"the librdkafka consumer is {self._state}; "
                                    "start() it first")
        return await self._thread.call(call, top_level=top_level)

    # ---------------------------------------------------- the thread's side
    def _rd(self) -> confluent_kafka.Consumer:
        if self._consumer is None:
            raise IllegalStateError("the librdkafka consumer is closed")
        return self._consumer

    def _open(self) -> None:
        self._consumer = confluent_kafka.Consumer(self._config)
        try:
            self._consumer.list_topics(timeout=self._timeout)
        except confluent_kafka.KafkaException as exc:
            raise KafkaConnectionError(
                f"no Kafka broker answered at {self._config.get('bootstrap.servers')} "
                f"within {self._timeout:.0f}s: {exc}") from exc

    def _close(self) -> None:
        consumer = self._consumer
        self._closing, self._listener = True, None
        try:
            if consumer is not None:
                self._finish_rounds(consumer)
                self._subscribed = False
                consumer.close()  # leaves the group; _on_revoke calls no listener now
        finally:
            self._consumer = None

    def _finish_rounds(self, consumer: confluent_kafka.Consumer) -> None:
        """Before leaving the group: let the coordinator tell of a join round in flight
        (one heartbeat), and finish the round this member is in.

        Why: tansu keeps a member that sends LeaveGroup while it is in a join round as
        the round's leader for good - every later member waits in SyncGroup for an
        assignment that never comes (measured: a new member rejoined every 8 s for the
        whole 60 s deadline of the archive's handover test). aiokafka escapes it: it
        finishes its round before it leaves, and leaves not at all from generation 0.
        Records fetched meanwhile are dropped: this member is leaving.
        """
        if not self._subscribed:
            return
        heartbeat = self._config.get("heartbeat.interval.ms", 3000) / 1000
        bound = 2 * self._config.get("session.timeout.ms", 45_000) / 1000
        started = time.monotonic()
        while (waited := time.monotonic() - started) < bound:
            if waited >= heartbeat + _SLICE and not self._rejoining:
                return
            consumer.poll(_SLICE)
        log.warning("group %s: a join round did not end within %.0fs; leaving anyway",
                    self._config.get("group.id"), bound)

    def _unsubscribe(self) -> None:
        consumer = self._rd()
        self._listener = None
        self._assigned = frozenset()
        self._finish_rounds(consumer)
        self._subscribed = self._rejoining = False
        consumer.unsubscribe()
        # librdkafka hands the partitions back through the revoke callback, served by a
        # poll: serve it now, so the group rebalances without waiting for a next fetch.
        deadline = time.monotonic() + _UNSUBSCRIBE_WAIT
        while consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(_SLICE)  # a record returned here is dropped: nothing is assigned

    def _fetch(self, count: int, timeout: float) -> dict[TopicPartition, PartitionRecords]:
        consumer = self._rd()
        deadline = time.monotonic() + timeout
        self._fetching, self._dropped = True, {}
        try:
            messages = consumer.consume(count, 0)
            while not messages:
                self._thread_of().run_queued()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                first = consumer.poll(min(left, _SLICE))
                if first is not None:
                    messages = [first, *consumer.consume(count - 1, 0)] if count > 1 \
                        else [first]
            self._thread_of().run_queued()  # pauses and seeks queued meanwhile apply to this batch
            batches = partition_columns(messages, self._handed_over, self._on_error)
        except confluent_kafka.KafkaException as exc:
            raise to_kafka_error(exc) from exc
        finally:
            self._fetching = False
        for tp, records in batches.items():
            self._positions[tp] = records.offsets[-1] + 1
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

    def _thread_of(self) -> HandleThread:
        assert self._thread is not None  # jobs run only on a started thread
        return self._thread
