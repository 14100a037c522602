"""Bring an agent's state store up to date from its changelog, whole batches only.

Contract: :func:`recover` reads the changelog partition from the store's
``position.changelog_offset`` (0 for a new store) up to the *fetch high watermark*
(onepipe.tables.kafka.topics.read_to_end; never ``end_offsets()``, which tansu answers
wrongly). Entries are buffered; at each position marker the buffer and the marker's
position (its next input offset and stream time; changelog offset: the marker's + 1) are
written to the store in one ``WriteBatch`` (the markers of one fetch together). Entries
after the last marker belong to a batch whose commit did not finish: they are not applied
(its records are read again from ``Position.next_offset``), and their keys are left in
``store.discarded`` so the next commit writes their committed values after them (a later
reader, folding from an earlier marker or from offset 0, would otherwise apply the
failed batch's values with the next batch's marker).

A store whose changelog offset lies beyond the changelog's end belongs to another log
(the topic deleted and recreated, a broker that lost its memory): it is emptied
(``StateStore.reset``) and rebuilt from offset 0, logged with its coordinates.

Compaction keeps only the last marker and the last value of each key; every value
before the last marker is a committed one (or a failed batch's, written back by the
repair above), so a compacted log recovers to the same state. A failed batch's entries
*after* the last marker can outlive a committed value of the same key only once the
segment holding them is compacted, which Kafka never does to the active segment; the
runner's next commit puts the repair after them before that.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from onepipe.schemas.errors import StaleStateError
from onepipe.tables.kafka.topics import read_to_end
from onepipe.tables.state.changelog import MARKER_KEY, decode_marker
from onepipe.tables.state.store import Position, StateStore

log = logging.getLogger(__name__)

__all__ = ["recover"]


async def recover(reader: AIOKafkaConsumer, changelog: TopicPartition, store: StateStore
                  ) -> Position:
    """Apply ``changelog`` to ``store`` up to its last marker; the store's position then.

    ``reader`` is a group-less consumer (KafkaClients.reader); it is (re)assigned to
    ``changelog`` alone. A stale store is rebuilt from offset 0 (module docstring).
    """
    tp = changelog
    try:
        return await _fold(reader, tp, store)
    except StaleStateError as exc:
        log.warning("state %s: %s; deleting it and rebuilding from %s[%d]@0", store.path,
                    exc, tp.topic, tp.partition,
                    extra={"topic": tp.topic, "partition": tp.partition,
                           "offset": store.position.changelog_offset})
        store.reset()
        return await _fold(reader, tp, store)


async def _fold(reader: AIOKafkaConsumer, tp: TopicPartition, store: StateStore) -> Position:
    start = store.position.changelog_offset
    reader.assign([tp])
    reader.seek(tp, start)
    tail: dict[bytes, bytes | None] = {}  # entries after the last marker read
    markers = 0
    applied = 0

    def on_batch(records: list[ConsumerRecord[Any, Any]]) -> None:
        nonlocal markers, applied
        ready: dict[bytes, bytes | None] = {}
        position: Position | None = None
        for record in records:
            key = record.key
            if key == MARKER_KEY:
                marker = decode_marker(record.value)
                position = Position(marker.next_offset, record.offset + 1,
                                    marker.stream_time_ms)
                ready.update(tail)
                tail.clear()
                markers += 1
            elif key:
                tail[key] = record.value
            else:
                log.warning("skipping changelog message %s[%d]@%d: it has no key",
                            record.topic, record.partition, record.offset)
        if position is not None:
            store.apply(ready.items(), position)
            applied += len(ready)

    stale = (f"it has applied {tp.topic}[{tp.partition}] up to @{start}, beyond the "
             "topic's end, so it belongs to another log")
    try:
        highwater = await read_to_end(reader, tp, on_batch)
    except OffsetOutOfRangeError as exc:
        raise StaleStateError(stale) from exc
    if start > highwater:
        # Brokers that answer a fetch beyond the end with an empty batch (tansu) raise no
        # OffsetOutOfRange: the high watermark tells.
        raise StaleStateError(stale)
    store.discarded = tuple(tail)
    position = store.position
    if tail:
        log.warning("state %s[%d]: %d entr(ies) after the last marker (@%d) discarded: a "
                    "batch whose commit did not finish; its records are read again from "
                    "input offset %d", tp.topic, tp.partition, len(tail),
                    position.changelog_offset - 1, position.next_offset,
                    extra={"topic": tp.topic, "partition": tp.partition,
                           "offset": position.changelog_offset})
    log.info("state %s[%d] recovered to @%d: %d marker(s), %d entr(ies) applied; input "
             "from offset %d", tp.topic, tp.partition, highwater, markers, applied,
             position.next_offset,
             extra={"topic": tp.topic, "partition": tp.partition, "offset": highwater})
    return position
