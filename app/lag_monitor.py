"""Lag sampling: where every monitored consumer group stands, and which ones are stuck.

Contract:
- Every ``interval`` seconds the monitor reads, for each :class:`MonitoredGroup`, the
  committed offset, end offset (fetch high watermark) and lag of every partition of the
  topics the group reads (onepipe.tables.offsets). Candidate topics are the registered topics and
  their ``<topic>.unique`` and ``<topic>.repartition`` topics that exist; a group shows
  the candidates its ``reads`` predicate selects plus any candidate it has committed
  offsets on. Topics that do not exist are never named to the broker (auto-creation,
  DESIGN.md).
- Which groups: those given, those ``extra_groups`` returns at each sample, and with
  ``discover_every`` the groups of other applications found on the broker
  (onepipe.app.lag_groups: which groups, what each reads, how discovery asks).
- A partition is **stuck** when its lag has not shrunk for ``stuck_after`` seconds (plus
  the group's ``grace`` for the topic) while its end offset grew over that time: records
  keep arriving and the group does not catch up. ``grace`` is how long a healthy member
  may hold records before committing: the archive commits only when a file is durable,
  up to the topic's ``flush_seconds`` after its first record, so without it a trickle-fed
  topic would look stuck before every flush. A consumer that advances, but more slowly
  than producers, counts too (its lag never shrinks); an idle topic never makes a
  consumer stuck; lag 0 is never stuck.
- The monitor keeps the last ``history`` samples per (group, topic, partition) and the
  latest :class:`LagSnapshot`. A failed sample keeps the previous figures and records the
  error in the snapshot; the loop goes on (a monitor must outlive broker hiccups).
- Readers (web views, metrics) only read :attr:`LagMonitor.snapshot`: a scrape costs no
  Kafka request and nothing runs on the agents' hot paths.
- ``clock`` (monotonic seconds) decides stuck; inject one in tests and call
  :meth:`LagMonitor.sample` directly. ``wall_clock`` only stamps snapshots for display.
- An async context manager; stopping twice is harmless; starting a stopped one is an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from aiokafka import TopicPartition

from onepipe.app.lag_groups import (
    DISCOVER_EVERY,
    GroupDiscovery,
    MonitoredGroup,
    source_topics,
    unique_topics,
    worker_groups,
)
from onepipe.app.settings import Settings
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.topic_names import repartition_topic, unique_topic
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.lifecycle import Service, cancel_and_wait
from onepipe.tables.offsets import OffsetReader
from onepipe.tables.registry_store import RegistryStore

__all__ = ["LagMonitor", "LagPoint", "LagSnapshot", "MonitoredGroup", "PartitionLag",
           "source_topics", "unique_topics", "worker_monitor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LagPoint:
    """One sample of one partition of one group."""

    #: Monotonic time of the sample (the monitor's clock).
    at: float
    #: Committed offset; None if the group never committed this partition.
    committed: int | None
    #: End offset (fetch high watermark).
    end: int
    #: Records the group has yet to read.
    lag: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """The latest view of one partition of one group."""

    #: The consumer group.
    group: str
    #: The topic.
    topic: str
    #: The partition.
    partition: int
    #: Committed offset; None if the group never committed this partition.
    committed: int | None
    #: End offset (fetch high watermark).
    end: int
    #: Records the group has yet to read.
    lag: int
    #: Lag has not shrunk for ``stuck_after`` seconds while records kept arriving.
    stuck: bool
    #: Seconds since the lag last shrank or was 0 (0.0 on the sample it did).
    stalled_for: float


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """What the monitor knew after its last sample."""

    #: Wall-clock time (epoch seconds) of the last successful sample; None before the first.
    sampled_at: float | None = None
    #: Every partition of every monitored group, sorted by group, topic, partition.
    partitions: tuple[PartitionLag, ...] = ()
    #: Why the last sample failed (its figures are the previous sample's); None if it worked.
    error: str | None = None
    #: The groups monitored, in the order given.
    groups: tuple[str, ...] = ()

    @property
    def stuck(self) -> tuple[PartitionLag, ...]:
        return tuple(p for p in self.partitions if p.stuck)

    def of_group(self, group: str) -> tuple[PartitionLag, ...]:
        return tuple(p for p in self.partitions if p.group == group)


@dataclass(slots=True)
class _Track:
    """Per-partition history and the moment its lag last shrank."""

    points: deque[LagPoint]
    progress_at: float
    end_at_progress: int


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(slots=True)
class _Targets:
    """What one sample reads: partitions per group."""

    by_group: dict[str, list[TopicPartition]] = field(default_factory=dict)
    committed: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


class LagMonitor(Service):
    """Samples consumer-group lag periodically; an async context manager."""

    def __init__(
        self,
        kafka: KafkaClients,
        groups: Sequence[MonitoredGroup | str],
        topics: Callable[[], Iterable[str]],
        *,
        interval: float = 5.0,
        stuck_after: float = 60.0,
        history: int = 120,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        fetch_wait_ms: int = 50,
        extra_groups: Callable[[], Iterable[MonitoredGroup]] | None = None,
        discover_every: int = 0,
    ) -> None:
        if interval <= 0 or stuck_after <= 0:
            raise ValueError(f"interval and stuck_after must be > 0 seconds, got {interval} "
                             f"and {stuck_after}")
        self.kafka = kafka
        self.groups: tuple[MonitoredGroup, ...] = tuple(
            g if isinstance(g, MonitoredGroup) else MonitoredGroup(g) for g in groups)
        #: Groups that come and go while the worker runs (one per online sink), asked for
        #: at every sample.
        self._extra_groups = extra_groups
        #: Other applications' groups, asked of the broker every ``discover_every`` samples
        #: (0: not looked for).
        self.discovery = GroupDiscovery(discover_every) if discover_every > 0 else None
        self.interval = interval
        self.stuck_after = stuck_after
        self._topics = topics
        self._history = history
        self._clock = clock
        self._wall_clock = wall_clock
        self._fetch_wait_ms = fetch_wait_ms
        self._reader: OffsetReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tracks: dict[tuple[str, str, int], _Track] = {}
        self._state = _State.NEW
        self.snapshot = LagSnapshot(groups=tuple(g.group_id for g in self.groups))
        #: Samples taken (successful or not); lets tests await the loop's progress.
        self.samples = 0

    # -------------------------------------------------------------- lifecycle
    async def start(self, *, loop: bool = True) -> None:
        """Connect; with ``loop`` (the default) sample every ``interval`` seconds."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"LagMonitor is {self._state.value}; build a new one")
        self._state = _State.RUNNING
        self._reader = OffsetReader(self.kafka, client_id="onepipe-lag-monitor",
                                    fetch_wait_ms=self._fetch_wait_ms)
        try:
            await self._reader.start()
        except BaseException:
            await self.stop()
            raise
        if loop:
            self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and close the clients; harmless twice."""
        self._state = _State.STOPPED
        task, self._task = self._task, None
        await cancel_and_wait(task)
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.stop()

    @property
    def running(self) -> bool:
        return self._state is _State.RUNNING

    async def _run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except BrokerError as exc:
                log.warning("lag sample failed (figures kept from the last one): %s",
                            exc.message)
            except Exception as exc:
                # A bug, not the broker: keep the trace, say so in the snapshot, keep going —
                # a monitor that dies silently shows "no lag" forever.
                log.exception("lag sample failed")
                self.snapshot = _with_error(self.snapshot, f"internal error: {exc!r}")
            await asyncio.sleep(self.interval)

    def follow(self, group: MonitoredGroup) -> None:
        """Follow ``group`` from the next sample on, in place of a given group of its id."""
        if any(g.group_id == group.group_id for g in self.groups):
            self.groups = tuple(group if g.group_id == group.group_id else g
                                for g in self.groups)
        else:
            self.groups = (*self.groups, group)

    # --------------------------------------------------------------- queries
    def history(self, group: str, topic: str, partition: int) -> list[LagPoint]:
        """The kept samples of one partition of one group, oldest first."""
        track = self._tracks.get((group, topic, partition))
        return list(track.points) if track is not None else []

    # ---------------------------------------------------------------- sample
    async def sample(self) -> LagSnapshot:
        """Read every group's offsets now and update the snapshot; raise BrokerError."""
        async with self._lock:
            reader = self._reader
            if reader is None or self._state is not _State.RUNNING:
                raise RuntimeError(f"LagMonitor is {self._state.value}; start() it first")
            self.samples += 1
            try:
                snapshot = await self._sample(reader)
            except BrokerError as exc:
                self.snapshot = _with_error(self.snapshot, exc.message)
                raise
            self.snapshot = snapshot
            return snapshot

    async def _sample(self, reader: OffsetReader) -> LagSnapshot:
        groups = self.groups + tuple(self._extra_groups() if self._extra_groups else ())
        if not groups and self.discovery is None:
            return LagSnapshot(sampled_at=self._wall_clock())
        tps = await self._candidates(reader)
        if self.discovery is not None:
            own = {g.group_id for g in groups}
            groups += await self.discovery.groups_for(reader, own, tps)
        group_ids = tuple(g.group_id for g in groups)
        targets = await self._targets(reader, groups, tps)
        needed = sorted({tp for tps in targets.by_group.values() for tp in tps})
        # Fetch each partition from the furthest committed offset: least data moves.
        near: dict[TopicPartition, int] = {}
        for committed in targets.committed.values():
            for tp, offset in committed.items():
                near[tp] = max(offset, near.get(tp, 0))
        ends = await reader.high_watermarks(needed, near)
        never_committed = {tp for group, tps in targets.by_group.items() for tp in tps
                           if tp not in targets.committed[group]}
        starts = await reader.log_starts(never_committed)
        now = self._clock()
        rows: list[PartitionLag] = []
        seen: set[tuple[str, str, int]] = set()
        for spec in groups:
            group = spec.group_id
            group_committed = targets.committed[group]
            thresholds: dict[str, float] = {}
            for tp in targets.by_group[group]:
                done = group_committed.get(tp)
                end = ends[tp]
                position = done if done is not None else starts.get(tp, 0)
                point = LagPoint(now, done, end, max(0, end - position))
                key = (group, tp.topic, tp.partition)
                seen.add(key)
                if tp.topic not in thresholds:
                    thresholds[tp.topic] = self.stuck_after + max(0.0, spec.grace(tp.topic))
                rows.append(self._track(key, point, thresholds[tp.topic]))
        for key in set(self._tracks) - seen:
            del self._tracks[key]  # partition gone (topic removed, group no longer reads it)
        rows.sort(key=lambda r: (r.group, r.topic, r.partition))
        return LagSnapshot(sampled_at=self._wall_clock(), partitions=tuple(rows),
                           groups=group_ids)

    async def _candidates(self, reader: OffsetReader) -> list[TopicPartition]:
        """Every partition of the candidate topics that exist."""
        registered = set(self._topics())
        candidates = registered | {derived(t) for t in registered
                                   for derived in (unique_topic, repartition_topic)}
        counts = await reader.partition_counts(candidates)  # lists first: creates nothing
        return [TopicPartition(t, p) for t, n in sorted(counts.items()) for p in range(n)]

    async def _targets(self, reader: OffsetReader, groups: Sequence[MonitoredGroup],
                       tps: Sequence[TopicPartition]) -> _Targets:
        committed = await asyncio.gather(
            *(reader.committed(g.group_id, tps) for g in groups))
        targets = _Targets()
        for group, offsets in zip(groups, committed, strict=True):
            touched = {tp.topic for tp in offsets}
            targets.committed[group.group_id] = offsets
            targets.by_group[group.group_id] = [
                tp for tp in tps if group.reads(tp.topic) or tp.topic in touched]
        return targets

    def _track(self, key: tuple[str, str, int], point: LagPoint, stuck_after: float
               ) -> PartitionLag:
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(deque(maxlen=self._history), point.at,
                                               point.end)
        elif point.lag == 0 or point.lag < track.points[-1].lag:
            track.progress_at, track.end_at_progress = point.at, point.end
        track.points.append(point)
        stalled_for = point.at - track.progress_at
        stuck = (point.lag > 0 and stalled_for >= stuck_after
                 and point.end > track.end_at_progress)
        return PartitionLag(key[0], key[1], key[2], point.committed, point.end, point.lag,
                            stuck, stalled_for)


def _with_error(snapshot: LagSnapshot, error: str) -> LagSnapshot:
    return LagSnapshot(snapshot.sampled_at, snapshot.partitions, error, snapshot.groups)


def worker_monitor(settings: Settings, registry: RegistryStore) -> LagMonitor | None:
    """The monitor a worker runs: onepipe's own groups (onepipe.app.lag_groups) and every
    other group on the broker with offsets on a registered topic; None when turned off."""
    if settings.monitor_interval_seconds <= 0:
        return None
    groups, sinks = worker_groups(settings, registry)
    return LagMonitor(settings.kafka, groups, lambda: list(registry.state.topics),
                      interval=settings.monitor_interval_seconds,
                      stuck_after=settings.stuck_after_seconds, extra_groups=sinks,
                      discover_every=DISCOVER_EVERY)
