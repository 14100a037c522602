"""Consumer-group progress read from Kafka: committed offset, end offset and lag.

Contract:
- Read-only. :class:`OffsetReader` never joins a group, never commits, and never names a
  topic that does not exist: a metadata request for a missing topic makes brokers with
  auto-creation create it (tansu always, Kafka by default). Callers pass topics that
  :meth:`OffsetReader.existing_topics` listed; :meth:`OffsetReader.group_offsets` does it.
- End offset = the fetch response's high watermark, never ``end_offsets()``: tansu answers
  ListOffsets(latest) with the base offset of the last record batch + 1 (DESIGN.md), and
  the high watermark is what Kafka's own lag figures use, correct on Apache Kafka too. An
  empty partition has end 0.
- Committed offsets come from OffsetFetch naming every partition. The "all partitions of
  the group" form (null topics) is not used: tansu's reply to it does not decode.
- Lag = end - committed; for a partition the group never committed, end - log start (what
  the group would have to read from ``earliest``). Never negative: a committed offset past
  the end (a topic deleted and re-created) counts as lag 0.
- Figures are a moment's view, read partition by partition; a reader does not promise that
  all partitions were read at the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from onepipe.schemas.errors import BrokerError
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import fetch_high_watermarks
from onepipe.tables.lifecycle import Service

log = logging.getLogger(__name__)

#: aiokafka logs every assign/unsubscribe at INFO; a monitor reading every few seconds
#: would fill the worker's log with them.
_CHATTY_LOGGERS = ("aiokafka.consumer.subscription_state", "aiokafka.consumer.consumer")


@contextlib.contextmanager
def _quiet_assignment() -> Iterator[None]:
    """Silence aiokafka's INFO lines around a synchronous assign/unsubscribe (no await)."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


#: Seconds a consumer's stop may wait before its fetch routine is cancelled once more.
_RECANCEL_AFTER = 0.5


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, cancelling aiokafka's fetch routine again if a cancel was lost.

    Why: the fetch routine (aiokafka 0.14 ``Fetcher._fetch_requests_routine``) suppresses
    a CancelledError that reaches it while it awaits its own cancelled fetch tasks, which
    it does right after an assignment change - the unsubscribe at the end of every
    :meth:`OffsetReader.high_watermarks`. ``stop()`` cancels it once and waits for it, so
    a stop landing then waited forever (aio-libs/aiokafka#983; seen as a worker whose lag
    monitor never stopped).
    """
    stopping = asyncio.ensure_future(consumer.stop())
    try:
        while not (await asyncio.wait({stopping}, timeout=_RECANCEL_AFTER))[0]:
            fetcher = getattr(consumer, "_fetcher", None)
            routine = getattr(fetcher, "_fetch_task", None)
            if isinstance(routine, asyncio.Task) and not routine.done():
                log.debug("%s: aiokafka's fetch routine lost its cancel; cancelled again",
                          consumer)
                routine.cancel()
    except BaseException:
        stopping.cancel()
        raise
    await stopping


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """Where one consumer group stands in one partition."""

    #: The consumer group.
    group: str
    #: The topic.
    topic: str
    #: The partition.
    partition: int
    #: Next offset the group will read (its committed offset); None if it never committed.
    committed: int | None
    #: The partition's end (fetch high watermark): the offset the next record will get.
    end: int
    #: First offset still in the log (0 until retention deletes records).
    log_start: int

    @property
    def lag(self) -> int:
        """Records the group has yet to read in this partition."""
        position = self.committed if self.committed is not None else self.log_start
        return max(0, self.end - position)


class _State(Enum):
    NEW = "new"
    STARTED = "started"
    CLOSED = "closed"


class OffsetReader(Service):
    """An admin client plus a group-less consumer; an async context manager.

    ``fetch_wait_ms`` bounds how long the broker holds a fetch of an empty partition (each
    read waits that long at least); ``timeout`` bounds one :meth:`high_watermarks` call.
    """

    def __init__(self, kafka: KafkaClients, *, client_id: str = "onepipe-offsets",
                 fetch_wait_ms: int = 50, timeout: float = 10.0) -> None:
        self.kafka = kafka
        self.bootstrap = kafka.bootstrap
        self._client_id = client_id
        self._fetch_wait_ms = fetch_wait_ms
        self._timeout = timeout
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._state = _State.NEW

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._state is not _State.NEW:
            raise RuntimeError(f"OffsetReader is {self._state.value}; build a new one")
        self._state = _State.STARTED
        admin = self.kafka.admin(self._client_id)
        consumer = self.kafka.reader(
            self._client_id,
            # Only after an out-of-range seek (records deleted by retention): never "latest",
            # which resets through ListOffsets(latest), wrong on tansu.
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_wait_ms,
            # One record per partition is all a read needs; keep lagging partitions cheap.
            max_partition_fetch_bytes=256 * 1024,
        )
        self._admin, self._consumer = admin, consumer
        try:
            # Consumer first: a group-less aiokafka consumer stopped before its background
            # task ever ran re-raises that task's cancellation from stop(); the admin's
            # start gives the task its first turn.
            await consumer.start()
            await admin.start()
        except KafkaError as exc:
            await self.stop()
            raise BrokerError(f"cannot reach Kafka at {self.bootstrap} to read offsets: "
                              f"{exc!r}") from exc
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close both clients; harmless twice."""
        self._state = _State.CLOSED
        admin, self._admin = self._admin, None
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await _stop_consumer(consumer)
        finally:
            if admin is not None:
                await admin.close()

    def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._state is not _State.STARTED or self._admin is None or self._consumer is None:
            raise RuntimeError(f"OffsetReader is {self._state.value}; use it between start() "
                               "and stop()")
        return self._admin, self._consumer

    # ---------------------------------------------------------------- reads
    async def existing_topics(self) -> set[str]:
        """Every topic the cluster has (a metadata request for all topics creates none)."""
        admin, _ = self._clients()
        try:
            return set(await admin.list_topics())
        except KafkaError as exc:
            raise BrokerError(f"cannot list topics on {self.bootstrap}: {exc!r}") from exc

    async def group_ids(self) -> list[str]:
        """Every consumer group the brokers list (ListGroups, asked of each broker), sorted.

        Groups of every protocol type are listed, and groups without members too (on
        tansu a group that only committed, through ``assign``, stays listed).
        """
        admin, _ = self._clients()
        try:
            listed = await admin.list_consumer_groups()
        except KafkaError as exc:
            raise BrokerError(f"cannot list the consumer groups on {self.bootstrap}: {exc!r}"
                              ) from exc
        return sorted({str(group[0]) for group in listed})

    async def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """Partitions per topic, for the given topics that exist; missing ones are left out."""
        admin, _ = self._clients()
        wanted = set(topics)
        if not wanted:
            return {}
        existing = wanted & await self.existing_topics()
        if not existing:
            return {}
        try:
            described = await admin.describe_topics(sorted(existing))
        except KafkaError as exc:
            raise BrokerError(f"cannot describe topics {sorted(existing)} on {self.bootstrap}: "
                              f"{exc!r}") from exc
        counts: dict[str, int] = {}
        for topic in described:
            name = topic.get("topic")
            if name in existing and topic.get("error_code", 0) == 0:
                counts[name] = len(topic.get("partitions", []))
        return counts

    async def committed(self, group: str, partitions: Sequence[TopicPartition]
                        ) -> dict[TopicPartition, int]:
        """The group's committed offset per partition; partitions without one are left out."""
        admin, _ = self._clients()
        if not partitions:
            return {}
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=list(partitions))
        except KafkaError as exc:
            raise BrokerError(f"cannot read the committed offsets of group {group!r} on "
                              f"{self.bootstrap}: {exc!r}") from exc
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}

    async def log_starts(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """First offset still in the log per partition (ListOffsets(earliest))."""
        _, consumer = self._clients()
        tps = sorted(set(partitions))
        if not tps:
            return {}
        try:
            starts = await consumer.beginning_offsets(tps)
        except KafkaError as exc:
            raise BrokerError(f"cannot read log start offsets on {self.bootstrap}: {exc!r}"
                              ) from exc
        return {tp: int(offset) for tp, offset in starts.items()}

    async def high_watermarks(self, partitions: Iterable[TopicPartition],
                              near: Mapping[TopicPartition, int] | None = None
                              ) -> dict[TopicPartition, int]:
        """End offset per partition, from a fetch response's high watermark.

        Each partition is fetched once from ``near[tp]`` (an offset close to the end, e.g.
        a committed offset, so little data moves), or from 0. A fresh assignment per call
        means no high watermark of an earlier call can be taken for a current one.
        """
        _, consumer = self._clients()
        tps = sorted(set(partitions))
        if not tps:
            return {}
        near = near or {}
        # No await between assign and the seeks: the fetcher must start from our positions,
        # never from a reset (which would ask ListOffsets).
        with _quiet_assignment():
            consumer.assign(tps)
        try:
            for tp in tps:
                consumer.seek(tp, max(0, near.get(tp, 0)))
            return await fetch_high_watermarks(consumer, tps, bootstrap=self.bootstrap,
                                               within=self._timeout)
        except KafkaError as exc:
            raise BrokerError(f"cannot fetch from {self.bootstrap} to read end offsets: "
                              f"{exc!r}") from exc
        finally:
            # Stop fetching between reads: an assignment left in place keeps the fetcher
            # pulling records nobody reads.
            with _quiet_assignment():
                consumer.unsubscribe()

    async def group_offsets(self, group: str, topics: Iterable[str]
                            ) -> list[PartitionOffsets]:
        """Committed, end and lag of ``group`` on every partition of ``topics`` that exist."""
        counts = await self.partition_counts(topics)
        tps = [TopicPartition(t, p) for t, n in sorted(counts.items()) for p in range(n)]
        committed = await self.committed(group, tps)
        ends = await self.high_watermarks(tps, committed)
        starts = await self.log_starts(tp for tp in tps if tp not in committed)
        return [PartitionOffsets(group, tp.topic, tp.partition, committed.get(tp), ends[tp],
                                 starts.get(tp, 0)) for tp in tps]
