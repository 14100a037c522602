"""Bring a dedup table up to date from its changelog, ``<topic>.unique``.

Contract: :func:`recover` reads ``<topic>.unique`` partition ``p`` from the offset the
local table has applied (:attr:`DedupStore.applied_offset`; 0 for a fresh data dir) up to
the *fetch high watermark* (never ``end_offsets()``, which tansu answers wrongly;
onepipe.tables.kafka.topics.read_to_end), folding every message into the table with the merge rule:
the highest rank per key stays, not the last message, so the order in which winners were
written does not matter. Each message's source position comes from its
``onepipe.source`` header (rule ``first`` ranks by it). After it returns, the table
holds the winner of every key the changelog holds up to the high watermark it reached.

A table whose applied offset lies beyond the changelog's end belongs to another log
(the topic was deleted and recreated, or an in-memory broker restarted):
:class:`StaleStoreError` is raised and the caller rebuilds it from an empty table.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from onepipe.schemas.errors import CodecError, MergeError, OnepipeError
from onepipe.schemas.merge import Rank
from onepipe.tables.dedup.decode import TopicReader
from onepipe.tables.dedup.fold import fold, source_of
from onepipe.tables.dedup.store import DedupStore, Winner
from onepipe.tables.kafka.topics import read_to_end

log = logging.getLogger(__name__)

__all__ = ["StaleStoreError", "fold_changelog", "recover"]


class StaleStoreError(OnepipeError):
    """A local dedup table claims more of its changelog than the changelog holds."""

    code = "stale_dedup_store"


def fold_changelog(store: DedupStore, reader: TopicReader,
                   records: list[ConsumerRecord[Any, Any]]) -> int:
    """Fold changelog messages into ``store``; return how many were folded."""
    if not records:
        return 0
    rule = reader.rule
    keys: list[bytes] = []
    ranks: list[Rank] = []
    kept: list[tuple[ConsumerRecord[Any, Any], tuple[int, int]]] = []
    _, orders = reader.read([r.value for r in records])
    for record, order in zip(records, orders, strict=True):
        try:
            position = source_of(record.headers)
            rank = (rule.rank(order, record.value, *position)
                    if record.key is not None and record.value is not None
                    and position is not None else None)
        except (CodecError, MergeError) as exc:
            log.warning("skipping changelog message %s[%d]@%d: %s", record.topic,
                        record.partition, record.offset, exc)
            continue
        if rank is None or position is None:
            log.warning("skipping changelog message %s[%d]@%d: it needs a key, a value and "
                        "a onepipe.source header", record.topic, record.partition,
                        record.offset)
            continue
        keys.append(record.key)
        ranks.append(rank)
        kept.append((record, position))
    distinct = list(dict.fromkeys(keys))
    result = fold(rule, keys, ranks, dict(zip(distinct, store.get_many(distinct), strict=True)))
    changed = []
    for i in result.chosen.values():
        record, (partition, offset) = kept[i]
        changed.append(Winner(ranks[i], record.value, partition, offset))
    store.apply(list(result.chosen), changed, records[-1].offset + 1)
    return len(records)


async def recover(consumer: AIOKafkaConsumer, tp: TopicPartition, store: DedupStore,
                  reader: TopicReader) -> int:
    """Fold ``tp`` (a ``.unique`` partition) from the applied offset to the high watermark.

    ``consumer`` is a group-less consumer created with ``auto_offset_reset="none"``; it is
    (re)assigned to ``tp`` alone. Returns the number of messages folded.
    """
    consumer.assign([tp])
    consumer.seek(tp, store.applied_offset)
    folded = 0

    def on_batch(records: list[ConsumerRecord[Any, Any]]) -> None:
        nonlocal folded
        folded += fold_changelog(store, reader, records)

    stale = (f"dedup table {store.path} has applied {tp.topic}[{tp.partition}] up to "
             f"@{store.applied_offset}, beyond the topic's end; it belongs to another log "
             "and is rebuilt")
    try:
        highwater = await read_to_end(consumer, tp, on_batch)
    except OffsetOutOfRangeError as exc:
        raise StaleStoreError(stale) from exc
    if store.applied_offset > highwater:
        # Brokers that answer a fetch beyond the end with an empty batch (tansu) raise no
        # OffsetOutOfRange: the high watermark tells.
        raise StaleStoreError(stale)
    log.info("dedup %s[%d] recovered to @%d: %d changelog message(s) folded", tp.topic,
             tp.partition, highwater, folded,
             extra={"topic": tp.topic, "partition": tp.partition, "offset": highwater})
    return folded
