"""``onepipe dev`` keeps its data: an empty embedded broker is filled again from the data dir.

Why: the embedded broker (tansu) keeps its log in memory, so every ``make dev`` starts
with no topics, while the data dir keeps the registry journal, the raw lake, the RocksDB
tables and the SQLite sink. Without this, a restarted dev stack showed no topics, gave
``widgets`` a new schema id and archived nothing (the lake was ahead of the log).

Contract (run after the broker starts and before the worker does):
- The registry log comes back from the worker's journal (onepipe.tables.registry_journal):
  the same subjects, versions, ids, configs and catalog entries.
- Every registered topic whose raw lake holds offsets 0..N of each partition without a
  gap, and whose topic is empty, is replayed from the lake into itself (onepipe.agents.replay:
  same key, value, headers and timestamp, partition by partition in offset order), so
  each record is back at its own offset and the archive resumes exactly where it was.
  A topic whose lake does not start at 0 or has gaps is left empty, with a warning (its
  offsets could not be kept).
- What is derived from those topics rebuilds itself from them: ``<topic>.unique`` by the
  dedup agent (its tables are ahead of the empty log and are rebuilt), the checksum
  tables likewise; the sinks' positions over ``<topic>.unique`` are deleted here (the
  rebuilt log has other offsets) and the sinks upsert every winner again, which leaves
  their rows as they were (the merge rule decides, not the order).
- Records acknowledged but not yet archived when the previous dev stack stopped are
  lost with the broker's memory; a stop (Ctrl-C) flushes the archive first, a kill -9
  does not. With Apache Kafka nothing here runs: ``onepipe worker`` never restores.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition

from onepipe.agents.replay import replay
from onepipe.app.settings import Settings
from onepipe.schemas.metadata import TopicMetadata
from onepipe.sinks.db import open_database
from onepipe.sinks.db.sql import POSITIONS
from onepipe.sinks.lake import LakeStore
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.raw_layout import RawFile, next_offset
from onepipe.tables.kafka.topics import ensure_topic, high_watermarks
from onepipe.tables.registry_journal import RegistryJournal
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger(__name__)

__all__ = ["Restored", "restore_dev_state"]


@dataclass(slots=True)
class Restored:
    """What a restore put back."""

    #: Registered topics after the registry came back.
    topics: int = 0
    #: Records replayed per topic.
    records: dict[str, int] = field(default_factory=dict)
    #: Topics left empty, with the reason.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Sinks whose positions over a rebuilt ``<topic>.unique`` were deleted.
    sinks_reset: list[str] = field(default_factory=list)


async def restore_dev_state(settings: Settings) -> Restored:
    """Registry from the journal, then every topic from the lake; see the module doc."""
    done = Restored()
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms,
                             journal=RegistryJournal(settings.registry_journal_path)) as store:
        topics = dict(store.state.topics)
    done.topics = len(topics)
    if not topics:
        return done
    producer = settings.kafka.producer("onepipe-dev-restore", linger_ms=5,
                                       max_batch_size=1024 * 1024)
    await producer.start()
    try:
        async with settings.open_lake() as lake:
            for topic, meta in sorted(topics.items()):
                if meta.archive.enabled:
                    await _restore_topic(settings, lake, producer, topic, meta, done)
    finally:
        await producer.stop()
    for topic in done.records:
        await _forget_sink_positions(topics[topic], topic, done)
    return done


async def _restore_topic(settings: Settings, lake: LakeStore, producer: AIOKafkaProducer,
                         topic: str, meta: TopicMetadata, done: Restored) -> None:
    inventory = await raw_inventory(lake, topic)
    if not inventory.files:
        return
    by_partition: dict[int, list[RawFile]] = {}
    for f in inventory.files:  # sorted by partition and offset
        by_partition.setdefault(f.partition, []).append(f)
    if inventory.gaps or any(files[0].first != 0 for files in by_partition.values()):
        done.skipped[topic] = ("its lake does not hold every offset from 0 (gaps or "
                               "retention); replaying it would move records to other offsets")
        log.warning("dev restore: %s left empty: %s", topic, done.skipped[topic])
        return
    await ensure_topic(settings.kafka, topic, partitions=meta.partitions,
                       replication_factor=settings.replication_factor)
    tps = [TopicPartition(topic, p) for p in range(meta.partitions)]
    if any((await high_watermarks(settings.kafka, tps)).values()):
        return  # the broker kept it (not the memory broker of a fresh start)
    summary = await replay(lake, producer, topic, to_topic=topic, into_source=True)
    done.records[topic] = summary.records
    ends = await high_watermarks(settings.kafka, tps)
    expected = {TopicPartition(topic, partition): next_offset(files)
                for partition, files in by_partition.items()}
    moved = {f"{tp.topic}[{tp.partition}]": (ends.get(tp), end)
             for tp, end in expected.items() if ends.get(tp) != end}
    if moved:
        log.error("dev restore: %s came back at other offsets than the lake's (log end, "
                  "lake end): %s; the archive will report these partitions", topic, moved)
    log.info("dev restore: %s: %d record(s) back from the lake", topic, summary.records)


async def _forget_sink_positions(meta: TopicMetadata, topic: str, done: Restored) -> None:
    """``<topic>.unique`` is rebuilt with other offsets: its sinks start it again."""
    for sink in meta.sinks:
        dsn = os.environ.get(sink.dsn_env)
        if not dsn:
            continue
        database = open_database(sink.kind, dsn)
        await database.start()
        try:
            if await database.columns(POSITIONS) is None:
                continue
            # Rows are keyed by the source topic and hold offsets of <topic>.unique.
            await database.ddl([f"DELETE FROM {POSITIONS} WHERE topic = '{topic}'"])  # noqa: S608 - a registered topic name, validated
            done.sinks_reset.append(sink.name)
        finally:
            await database.stop()
