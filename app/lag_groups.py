"""Which consumer groups the lag monitor follows, and which topics each is expected to read.

Contract:
- A :class:`MonitoredGroup` names a group, the candidate topics it is expected to read
  (``reads``; a group is shown there even before its first commit) and a ``grace``.
  Candidates (onepipe.app.lag_monitor) it has committed offsets on are shown whatever
  ``reads`` says.
- onepipe's own groups in a worker (:func:`worker_groups`): archive (archived topics, grace
  = the topic's ``flush_seconds``), dedup (keyed topics and their ``.repartition``),
  checksums (keyed topics and their ``.unique``) and one group per declared sink (its
  topic's ``.unique``). Each is followed while its agent is enabled in this worker. The
  developers' agents' groups (``<app_id>-agent-<name>``, on their topics) are added by the
  worker once it loaded them (onepipe.app.developer_agents).
- Every other group (:class:`GroupDiscovery`): the groups the brokers list (ListGroups;
  tansu answers it, groups that only committed through ``assign`` included), other than
  the ones followed already, that have committed offsets on a candidate topic. The list
  is asked for every ``every`` samples, not every sample (each listed group costs an
  OffsetFetch); between two asks the last found set is kept, and a group whose offsets
  are gone leaves it at the next ask. Offsets are asked for naming only partitions of
  candidate topics that exist, never a missing topic (auto-creation, DESIGN.md).
- Nothing is left out silently: onepipe's own groups keep their own entries (with their
  ``reads`` and ``grace``) and are never listed twice; a onepipe group this worker does not
  run (another app id, a disabled agent, a removed sink) is just another group to it.
- A broker that refuses ListGroups (no support, no permission) does not stop the sample:
  one WARNING when asking starts failing, one INFO when it works again; the groups found
  before are kept, onepipe's own groups are sampled as usual, and it is asked again at
  the next ask.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition

from onepipe.app.settings import Settings
from onepipe.schemas.errors import BrokerError
from onepipe.schemas.topic_names import (
    archive_group,
    checksums_group,
    dedup_group,
    sink_group,
    source_of_repartition,
    source_of_unique,
    unique_topic,
)
from onepipe.tables.offsets import OffsetReader
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

#: Samples between two asks for the broker's group list in a worker (30 s at the default
#: 5 s interval): a new group of another application shows up within that.
DISCOVER_EVERY = 6
#: OffsetFetch requests in flight at once while looking at the listed groups.
_CONCURRENT_FETCHES = 8


def source_topics(topic: str) -> bool:
    """The registered topics themselves, not the dedup agent's topics derived from them."""
    return source_of_unique(topic) is None and source_of_repartition(topic) is None


def unique_topics(topic: str) -> bool:
    """The ``<topic>.unique`` streams (online sinks)."""
    return source_of_unique(topic) is not None


def committed_only(topic: str) -> bool:
    """Nothing expected: the group is shown on the topics it committed offsets on."""
    return False


@dataclass(frozen=True, slots=True)
class MonitoredGroup:
    """A consumer group the monitor follows."""

    #: The Kafka consumer group id, e.g. ``<app_id>-archive``.
    group_id: str
    #: Which candidate topics the group is expected to read. Candidates it has committed
    #: offsets on are shown whatever this says.
    reads: Callable[[str], bool] = source_topics
    #: Seconds a healthy member may hold a topic's records uncommitted (added to
    #: ``stuck_after`` for that topic).
    grace: Callable[[str], float] = lambda topic: 0.0


class GroupDiscovery:
    """The groups of other applications: listed by the broker, committed on a candidate."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1 sample, got {every}")
        self.every = every
        #: The groups found at the last successful ask, sorted by id.
        self.groups: tuple[MonitoredGroup, ...] = ()
        #: Asks made (successful or not); lets tests see when the broker was asked.
        self.asks = 0
        self._calls = 0
        self._failing = False

    async def groups_for(self, reader: OffsetReader, own: Collection[str],
                         partitions: Sequence[TopicPartition]) -> tuple[MonitoredGroup, ...]:
        """The discovered groups for this sample; asks the broker every ``every`` calls."""
        due = self._calls % self.every == 0
        self._calls += 1
        if due:
            await self._ask(reader, own, partitions)
        # A group found earlier may have become one of the followed ones since (a sink
        # declared in between): it keeps that entry only.
        return tuple(g for g in self.groups if g.group_id not in own)

    async def _ask(self, reader: OffsetReader, own: Collection[str],
                   partitions: Sequence[TopicPartition]) -> None:
        self.asks += 1
        try:
            # No candidate partition, no group to find: the broker is not asked at all.
            listed = [g for g in await reader.group_ids() if g not in own] if partitions else []
            limit = asyncio.Semaphore(_CONCURRENT_FETCHES)

            async def committed(group: str) -> bool:
                async with limit:
                    return bool(await reader.committed(group, partitions))

            found = await asyncio.gather(*(committed(g) for g in listed))
        except BrokerError as exc:
            if not self._failing:
                log.warning("cannot discover other applications' consumer groups (only "
                            "onepipe's own and those found before are monitored; asked "
                            "again every %d samples): %s", self.every, exc.message)
            self._failing = True
            return
        if self._failing:
            log.info("discovering other applications' consumer groups works again")
        self._failing = False
        self.groups = tuple(MonitoredGroup(g, committed_only)
                            for g, has in zip(listed, found, strict=True) if has)


def worker_groups(settings: Settings, registry: RegistryStore
                  ) -> tuple[list[MonitoredGroup], Callable[[], list[MonitoredGroup]]]:
    """onepipe's own groups in a worker: the fixed ones, and the sinks' (asked each sample)."""

    def archived(topic: str) -> bool:
        meta = registry.state.topics.get(topic)
        return meta is not None and meta.archive.enabled

    def flush_seconds(topic: str) -> float:
        meta = registry.state.topics.get(topic)
        return meta.archive.flush_seconds if meta is not None else 0.0

    def keyed(topic: str) -> bool:
        meta = registry.state.topics.get(topic)
        return meta is not None and bool(meta.key)

    def deduplicated(topic: str) -> bool:
        return keyed(source_of_repartition(topic) or topic)

    def checksummed(topic: str) -> bool:
        """The checksum agent's topics: a keyed topic and its ``.unique``."""
        return source_of_repartition(topic) is None and keyed(source_of_unique(topic) or topic)

    def sinks() -> list[MonitoredGroup]:
        """One group per declared sink, reading ``<topic>.unique``."""
        if not settings.sinks_enabled:
            return []
        return [MonitoredGroup(sink_group(settings.app_id, topic, spec.name),
                               frozenset([unique_topic(topic)]).__contains__)
                for topic, meta in list(registry.state.topics.items()) for spec in meta.sinks]

    groups = []
    if settings.archive_enabled:
        groups.append(MonitoredGroup(archive_group(settings.app_id), archived, flush_seconds))
    if settings.dedup_enabled:
        groups.append(MonitoredGroup(dedup_group(settings.app_id), deduplicated))
    if settings.checksums_enabled:
        groups.append(MonitoredGroup(checksums_group(settings.app_id), checksummed))
    return groups, sinks
