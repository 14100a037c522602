"""What one consumed batch of one topic-partition means for the dedup table (pure, no I/O).

Input: the records a batch consumer got from source partition ``T[p]`` and from its
repartition partition ``T.repartition[p]``, the topic's reader (canonical key, order
value) and the table's stored winners. Output (:class:`PartitionWork`): the records to
forward to ``T.repartition`` (a producer sent them to the wrong partition), the winners
to emit to ``T.unique[p]``, the counts, and the offsets to commit once all of it is
durable. The agent (onepipe.agents.dedup.agent) does the I/O in the order that makes it crash-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from onepipe.schemas.errors import CodecError, MergeError
from onepipe.schemas.merge import Rank
from onepipe.schemas.partitioner import partitions_for
from onepipe.schemas.topic_names import repartition_topic
from onepipe.tables.dedup.decode import TopicReader
from onepipe.tables.dedup.fold import (
    SOURCE_HEADER,
    FoldResult,
    fold,
    format_source,
    rank_batch,
    source_of,
)
from onepipe.tables.dedup.store import Entry, Winner

__all__ = ["Outgoing", "PartitionWork", "SourceRead", "group_by_table", "plan_partition",
           "read_sources"]

_VALUE = attrgetter("value")
_OFFSET = attrgetter("offset")
_TIMESTAMP = attrgetter("timestamp")
_HEADERS = attrgetter("headers")
Headers = list[tuple[str, bytes]]
#: A record to produce: (key, value, timestamp ms, headers). Plain tuples: one per winner.
Outgoing = tuple[bytes, bytes, int, Headers]


@dataclass(slots=True)
class PartitionWork:
    """Everything one batch of one source partition asks for."""

    #: Source topic and partition of the table.
    topic: str
    partition: int
    #: Records for ``<topic>.repartition``, by canonical partition.
    repartition: dict[int, list[Outgoing]] = field(default_factory=dict)
    #: Winners for ``<topic>.unique[partition]``.
    unique: list[Outgoing] = field(default_factory=list)
    #: Their canonical keys, table entries and the entries they replace (None: a new key),
    #: index-aligned with ``unique``.
    keys: list[bytes] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    previous: list[Winner | Entry | None] = field(default_factory=list)
    #: The fold's counts.
    fold: FoldResult = field(default_factory=FoldResult)
    #: Records consumed (source and repartition).
    consumed: int = 0
    #: Records that could not be decoded or ranked (skipped).
    undecodable: int = 0
    #: Records forwarded to the repartition topic.
    repartitioned: int = 0
    #: Offsets to commit once the output is durable.
    commits: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(slots=True)
class SourceRead:
    """One source partition's batch read for planning: its values, their canonical keys
    (None: undecodable) and order values, and the canonical partition of each key."""

    values: list[bytes]
    decoded: list[bytes | None]
    orders: list[Any]
    #: Indices of the decodable values, and their keys' canonical partitions (aligned).
    valid: list[int]
    canonical: list[int]


def read_sources(reader: TopicReader, partitions: int,
                 sources: Sequence[Sequence[ConsumerRecord[Any, Any]]]) -> list[SourceRead]:
    """Read the batches of several source partitions of one topic (index-aligned).

    The keys of all of them are hashed in one murmur2 pass: its pyarrow path costs
    ~0.85 ms a call whatever the batch size (BENCHMARKS.md, "Dedup agent"), so a fetch
    spread over 4 partitions paid it 4 times (0.87 us a key at 1,250 keys, 0.33 at 5,000).
    """
    reads: list[SourceRead] = []
    keys: list[bytes] = []
    for source in sources:
        values = list(map(_VALUE, source))
        decoded, orders = reader.read(values)
        if None not in decoded:
            valid = list(range(len(decoded)))
            keys.extend(decoded)  # type: ignore[arg-type]  # no None in it
        else:
            valid = [i for i, k in enumerate(decoded) if k is not None]
            keys.extend(decoded[i] for i in valid)  # type: ignore[misc]  # valid: not None
        reads.append(SourceRead(values, decoded, orders, valid, []))
    canonical = partitions_for(keys, partitions) if keys else []
    start = 0
    for read in reads:
        read.canonical = canonical[start:start + len(read.valid)]
        start += len(read.valid)
    return reads


def group_by_table(batches: Mapping[TopicPartition, Sequence[ConsumerRecord[Any, Any]]],
                   sources: Mapping[str, str]
                   ) -> dict[tuple[str, int], tuple[list[ConsumerRecord[Any, Any]],
                                                    list[ConsumerRecord[Any, Any]]]]:
    """A fetch's records by table (source topic, partition): (source, repartitioned).

    ``sources`` maps each repartition topic to its source topic.
    """
    grouped: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
    for tp, records in batches.items():
        if not records:
            continue
        source = sources.get(tp.topic)
        slot = grouped.setdefault((source or tp.topic, tp.partition), ([], []))
        slot[1 if source is not None else 0].extend(records)
    return grouped


def plan_partition(
    topic: str, partition: int, partitions: int, reader: TopicReader,
    source: Sequence[ConsumerRecord[Any, Any]], repartitioned: Sequence[ConsumerRecord[Any, Any]],
    stored: Callable[[list[bytes]], list[Winner | Entry | None]],
    read: SourceRead | None = None,
) -> PartitionWork:
    """Plan one batch; ``stored`` multi-gets the table's winners of a list of keys.

    ``read``: ``source`` already read by :func:`read_sources` (with other partitions').
    """
    work = PartitionWork(topic, partition, consumed=len(source) + len(repartitioned))
    rule = reader.rule
    rank_of = rule.rank
    # The versions deduplicated here, index-aligned: their record, canonical key, rank,
    # source position (None: the record's own partition and offset), and the record's
    # value and offset as columns (read from the records once: each attribute read of a
    # cold record costs more than a list lookup).
    records: list[ConsumerRecord[Any, Any]] = []
    keys: list[bytes] = []
    ranks: list[Rank] = []
    positions: list[tuple[int, int] | None] = []
    values: list[bytes] = []
    offsets: list[int] = []

    if source:
        work.commits[TopicPartition(topic, partition)] = source[-1].offset + 1
        if read is None:
            read = read_sources(reader, partitions, [source])[0]
        values, decoded, orders = read.values, read.decoded, read.orders
        kept = _local(work, partition, source, read)
        if kept is None:  # the common case: every record decoded and canonical
            records = list(source)
            keys = decoded  # type: ignore[assignment]  # no None in it
        else:
            records = [source[i] for i in kept]
            keys = [decoded[i] for i in kept]  # type: ignore[misc]  # kept: not None
            orders = [orders[i] for i in kept]
            values = [values[i] for i in kept]
        offsets = list(map(_OFFSET, records))
        try:
            ranks = rank_batch(rule, orders, values, partition, offsets)
        except MergeError:
            ranks = []
            for v, o, off in zip(values, orders, offsets, strict=True):
                try:
                    ranks.append(rank_of(o, v, partition, off))
                except MergeError:
                    work.undecodable += 1
                    ranks.append(None)  # type: ignore[arg-type]  # filtered just below
            records, keys, values, offsets, ranks = _without_none(
                ranks, records, keys, values, offsets)
        positions = [None] * len(records)

    if repartitioned:
        work.commits[TopicPartition(repartition_topic(topic), partition)] = (
            repartitioned[-1].offset + 1)
        decoded, orders = reader.read([r.value for r in repartitioned])
        for record, key, order in zip(repartitioned, decoded, orders, strict=True):
            try:
                position = source_of(record.headers)
                routed: Rank | None = (rank_of(order, record.value, *position)
                                       if key is not None and position is not None else None)
            except (CodecError, MergeError):
                routed = None
            if routed is None or key is None:
                work.undecodable += 1  # not decodable, or not forwarded by a dedup agent
                continue
            records.append(record)
            keys.append(key)
            ranks.append(routed)
            positions.append(position)
            values.append(record.value)
            offsets.append(record.offset)

    if keys:
        distinct = list(dict.fromkeys(keys))
        current = dict(zip(distinct, stored(distinct), strict=True))
        work.fold = result = fold(rule, keys, ranks, current)
        _emit(work, result.chosen, current, records, ranks, positions, values, offsets)
    return work


def _emit(work: PartitionWork, chosen: dict[bytes, int],
          current: dict[bytes, Winner | Entry | None], records: list[ConsumerRecord[Any, Any]],
          ranks: list[Rank], positions: list[tuple[int, int] | None],
          all_values: list[bytes], all_offsets: list[int]) -> None:
    """Fill the work's outgoing winners and table entries (column-wise: one per winner)."""
    partition = work.partition
    keys = list(chosen)
    indices = list(chosen.values())
    picked = list(map(records.__getitem__, indices))
    values = list(map(all_values.__getitem__, indices))
    offsets = list(map(all_offsets.__getitem__, indices))
    picked_ranks = list(map(ranks.__getitem__, indices))
    header = SOURCE_HEADER
    if positions.count(None) == len(positions):  # all read here from the source topic
        # Lists: aiokafka's C record builder takes nothing else.
        if any(map(_HEADERS, picked)):
            headers = [[*r.headers, (header, b"%d:%d" % (partition, o))]
                       for r, o in zip(picked, offsets, strict=True)]
        else:
            headers = [[(header, b"%d:%d" % (partition, o))] for o in offsets]
        entries = list(zip(picked_ranks, values, repeat(partition), offsets))
    else:
        headers, entries = [], []
        for record, i, rank, value in zip(picked, indices, picked_ranks, values, strict=True):
            position = positions[i]
            if position is None:
                position = (partition, record.offset)
                headers.append([*record.headers, (header, format_source(*position))])
            else:
                headers.append(list(record.headers))  # the repartition record carries it
            entries.append((rank, value, position[0], position[1]))
    work.unique = list(zip(keys, values, map(_TIMESTAMP, picked), headers, strict=True))
    work.keys = keys
    work.entries = entries
    work.previous = list(map(current.__getitem__, keys))


def _local(work: PartitionWork, partition: int, source: Sequence[ConsumerRecord[Any, Any]],
           read: SourceRead) -> list[int] | None:
    """Count undecodable records and forward misrouted ones; the indices kept here.

    None means "all of them" (checked with two C-level scans instead of a Python loop).
    """
    decoded, valid, canonical = read.decoded, read.valid, read.canonical
    work.undecodable += len(decoded) - len(valid)
    if len(valid) == len(decoded) and canonical.count(partition) == len(canonical):
        return None
    kept: list[int] = []
    for i, target in zip(valid, canonical, strict=True):
        if target == partition:
            kept.append(i)
            continue
        # The producer bypassed the canonical partitioner: the key's table lives on the
        # member owning `target`, which reads it from the repartition topic.
        record = source[i]
        work.repartition.setdefault(target, []).append((
            decoded[i], record.value, record.timestamp,  # type: ignore[arg-type]
            [*record.headers, (SOURCE_HEADER, format_source(partition, record.offset))]))
        work.repartitioned += 1
    return kept


def _without_none(ranks: list[Rank], *columns: list[Any]) -> tuple[list[Any], ...]:
    """``columns`` then ``ranks``, without the versions whose rank is None."""
    kept = [i for i, rank in enumerate(ranks) if rank is not None]
    return (*([column[i] for i in kept] for column in columns), [ranks[i] for i in kept])
