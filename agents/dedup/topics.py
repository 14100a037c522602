"""Which topics the dedup agent deduplicates, and the output topics each one needs.

Contract: :func:`keyed_topics` reads the registry's state: every topic with a non-empty
``key`` and a registered value schema (optionally limited to a given set) is
deduplicated. For a topic seen for the first time the source, ``<topic>.unique``
(``cleanup.policy=compact``) and ``<topic>.repartition`` are created with the source's
partition count (idempotent). A topic whose three partition counts differ is skipped
with an error in the log: partition ``p`` of all three must be one table's input and
changelog on one member (range assignor). :func:`plan_tables` plans a fetch's batches of a
topic, giving this worker's registry a few seconds to replay schema ids the batch uses before
their values count undecodable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from onepipe.agents.dedup.pipeline import Lookup
from onepipe.agents.dedup.plan import PartitionWork, Records, plan_partition, read_sources
from onepipe.schemas.errors import NotFoundError
from onepipe.schemas.metadata import TopicMetadata
from onepipe.schemas.registry_state import RegistryState
from onepipe.schemas.topic_names import repartition_topic, unique_topic
from onepipe.tables.dedup.decode import TopicReader
from onepipe.tables.kafka.clients import KafkaClients
from onepipe.tables.kafka.topics import ensure_topic
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["DedupTopic", "TableBatch", "ensure_outputs", "keyed_topics", "plan_tables"]


@dataclass(slots=True)
class DedupTopic:
    """A keyed topic the agent deduplicates."""

    #: Its catalog metadata (key, order rule).
    meta: TopicMetadata
    #: Reads canonical keys and order values of its values.
    reader: TopicReader
    #: Partition count of the topic and of its ``.unique`` and ``.repartition``.
    partitions: int


async def keyed_topics(state: RegistryState, only: frozenset[str] | None,
                       known: dict[str, DedupTopic], kafka: KafkaClients,
                       replication_factor: int
                       ) -> dict[str, DedupTopic]:
    """The topics to deduplicate now; ``known`` ones keep their partition count."""
    topics: dict[str, DedupTopic] = {}
    for topic, meta in list(state.topics.items()):
        if only is not None and topic not in only:
            continue
        if not meta.key:
            continue
        try:
            latest = state.reader_schema(topic)
        except NotFoundError:
            continue  # metadata before its schema: wait for the schema
        previous = known.get(topic)
        partitions = (previous.partitions if previous is not None
                      else await ensure_outputs(kafka, meta, replication_factor))
        if partitions is None:
            continue
        topics[topic] = DedupTopic(meta, TopicReader(meta, latest, state.schemas_by_id.get),
                                   partitions)
    return topics


async def ensure_outputs(kafka: KafkaClients, meta: TopicMetadata, replication_factor: int
                         ) -> int | None:
    """Create ``.unique`` and ``.repartition`` like the source; its partition count."""
    rf = replication_factor
    partitions = await ensure_topic(kafka, meta.topic, partitions=meta.partitions,
                                    replication_factor=rf)
    unique = await ensure_topic(kafka, unique_topic(meta.topic),
                                partitions=partitions, replication_factor=rf,
                                configs={"cleanup.policy": "compact"})
    routed = await ensure_topic(kafka, repartition_topic(meta.topic),
                                partitions=partitions, replication_factor=rf)
    if unique != partitions or routed != partitions:
        log.error("dedup skips topic %s: it has %d partition(s) but %s has %d and %s "
                  "has %d; they must match (delete and let the agent recreate them)",
                  meta.topic, partitions, unique_topic(meta.topic), unique,
                  repartition_topic(meta.topic), routed)
        return None
    return partitions


#: One table's share of a fetch: (partition, source records, repartitioned records, its
#: table's lookup).
TableBatch = tuple[int, Records, Records, Lookup]


async def plan_tables(registry: RegistryStore, described: DedupTopic, topic: str,
                      tables: list[TableBatch]) -> list[PartitionWork]:
    """Plan one fetch's batches of a topic's tables (onepipe.agents.dedup.plan), after the
    schemas they need; index-aligned with ``tables``.

    The tables' source records are read together (one murmur2 pass over all their keys:
    onepipe.agents.dedup.plan.read_sources). Values of a schema id the registry has not
    replayed yet are planned again once it has (waiting up to 5 s for all of them); still
    unknown, they count undecodable.
    """
    reader = described.reader
    reader.take_missed()  # met before (recovery, say): only this batch's ids matter
    works = _plan(described, topic, tables)
    missing = reader.take_missed()
    if not missing:
        return works
    unknown = await registry.wait_for_schemas(missing, 5.0)
    if unknown:
        shown = sorted(unknown)
        log.warning("dedup: %d schema id(s) unknown to the registry (%s%s); their records "
                    "are counted undecodable", len(shown), ", ".join(map(str, shown[:5])),
                    ", ..." if len(shown) > 5 else "")
    reader.forget_unknown()
    works = _plan(described, topic, tables)
    reader.take_missed()
    return works


def _plan(described: DedupTopic, topic: str, tables: list[TableBatch]) -> list[PartitionWork]:
    reader, partitions = described.reader, described.partitions
    with_source = [i for i, table in enumerate(tables) if table[1]]
    reads = dict(zip(with_source, read_sources(reader, partitions,
                                               [tables[i][1] for i in with_source]),
                     strict=True))
    return [plan_partition(topic, partition, partitions, reader, source, routed, stored,
                           reads.get(i))
            for i, (partition, source, routed, stored) in enumerate(tables)]
