"""What one consumed batch of one topic-partition means for the dedup table (pure, no I/O).

Input: the records a batch consumer got from source partition ``T[p]`` and from its
repartition partition ``T.repartition[p]``, the topic's reader (canonical key, order
value) and the table's stored winners. Output (:class:`PartitionWork`): the records to
forward to ``T.repartition`` (a producer sent them to the wrong partition), the winners
to emit to ``T.unique[p]``, the counts, and the offsets to commit once all of it is
durable. The agent (onepipe.agents.dedup.agent) does the I/O in the order that makes it crash-safe.

Records are read only as columns, through onepipe.tables.kafka.record_columns' readers:
the librdkafka consumer's :class:`~onepipe.tables.kafka.record_columns.PartitionRecords`
then hands its lists over as they are and no record object is built (~0.5 µs a record
saved on the event loop); aiokafka's records are read with one C-level pass per field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

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
from onepipe.tables.kafka.record_columns import (
    headers_of,
    offsets_of,
    timestamps_of,
    values_of,
)

__all__ = ["Outgoing", "PartitionWork", "Records", "SourceRead", "Unique", "group_by_table",
           "plan_partition", "read_sources"]

Headers = list[tuple[str, bytes]]
#: A record to produce: (key, value, timestamp ms, headers). Plain tuples: one per record.
Outgoing = tuple[bytes, bytes, int, Headers]
#: One partition's records of one fetch (aiokafka's list, or librdkafka's columns).
Records = Sequence[ConsumerRecord[Any, Any]]


class Unique(NamedTuple):
    """Winners for ``<topic>.unique[p]`` as columns (index-aligned; built with ``zip``
    and ``map``, and appended to produce batches with one C-level ``map``)."""

    keys: list[bytes]
    values: list[bytes]
    timestamps: list[int]
    #: Lists: aiokafka's C record builder takes nothing else.
    headers: list[Headers]

    @classmethod
    def empty(cls) -> Unique:
        """No winners (a fresh one each time: its lists are its holder's own)."""
        return cls([], [], [], [])


@dataclass(slots=True)
class PartitionWork:
    """Everything one batch of one source partition asks for."""

    #: Source topic and partition of the table.
    topic: str
    partition: int
    #: Records for ``<topic>.repartition``, by canonical partition.
    repartition: dict[int, list[Outgoing]] = field(default_factory=dict)
    #: Winners for ``<topic>.unique[partition]``.
    unique: Unique = field(default_factory=Unique.empty)
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

    values: Sequence[bytes | None]
    decoded: list[bytes | None]
    orders: list[Any]
    #: Indices of the decodable values, and their keys' canonical partitions (aligned).
    valid: list[int]
    canonical: list[int]


def read_sources(reader: TopicReader, partitions: int,
                 sources: Sequence[Records]) -> list[SourceRead]:
    """Read the batches of several source partitions of one topic (index-aligned).

    The keys of all of them are hashed in one murmur2 pass: a column-wise pass has a
    fixed cost a call (onepipe.schemas.partitioner), so a fetch spread over 4 partitions
    paid it 4 times.
    """
    reads: list[SourceRead] = []
    keys: list[bytes] = []
    for source in sources:
        values = values_of(source)
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


def group_by_table(batches: Mapping[TopicPartition, Records], sources: Mapping[str, str]
                   ) -> dict[tuple[str, int], tuple[Records, Records]]:
    """A fetch's records by table (source topic, partition): (source, repartitioned).

    ``sources`` maps each repartition topic to its source topic. A fetch holds each
    topic-partition once, so each side is one partition's records, passed on as they are
    (no record is touched: columns stay columns).
    """
    grouped: dict[tuple[str, int], tuple[Records, Records]] = {}
    for tp, records in batches.items():
        if not records:
            continue
        source = sources.get(tp.topic)
        table = (source or tp.topic, tp.partition)
        held = grouped.get(table, ((), ()))
        grouped[table] = (held[0], records) if source is not None else (records, held[1])
    return grouped


class _Versions(NamedTuple):
    """The versions deduplicated in one batch, as index-aligned columns."""

    keys: list[bytes]
    ranks: list[Rank]
    values: Sequence[bytes]
    #: The record's own offset (in the source or the repartition topic).
    offsets: Sequence[int]
    timestamps: Sequence[int]
    #: Headers per version; None when no version has any.
    headers: Sequence[Sequence[tuple[str, bytes]]] | None
    #: Source position per version (None: the record's own partition and offset); None
    #: when every version was read from the source topic.
    positions: list[tuple[int, int] | None] | None


def plan_partition(
    topic: str, partition: int, partitions: int, reader: TopicReader,
    source: Records, repartitioned: Records,
    stored: Callable[[list[bytes]], list[Winner | Entry | None]],
    read: SourceRead | None = None,
) -> PartitionWork:
    """Plan one batch; ``stored`` multi-gets the table's winners of a list of keys.

    ``read``: ``source`` already read by :func:`read_sources` (with other partitions').
    """
    work = PartitionWork(topic, partition, consumed=len(source) + len(repartitioned))
    versions = None
    if source:
        if read is None:
            read = read_sources(reader, partitions, [source])[0]
        versions = _source_versions(work, reader, source, read)
    if repartitioned:
        routed = _routed_versions(work, reader, repartitioned)
        versions = routed if versions is None else _concat(versions, routed)
    if versions is not None and versions.keys:
        keys = versions.keys
        distinct = list(dict.fromkeys(keys))
        current = dict(zip(distinct, stored(distinct), strict=True))
        work.fold = result = fold(reader.rule, keys, versions.ranks, current)
        _emit(work, result.chosen, current, versions)
    return work


def _source_versions(work: PartitionWork, reader: TopicReader, source: Records,
                     read: SourceRead) -> _Versions:
    partition = work.partition
    offsets = offsets_of(source)
    work.commits[TopicPartition(work.topic, partition)] = offsets[-1] + 1
    values, decoded, orders = read.values, read.decoded, read.orders
    timestamps = timestamps_of(source)
    headers = headers_of(source)
    kept = _local(work, read, offsets, timestamps, headers)
    if kept is None:  # the common case: every record decoded and canonical
        keys: list[bytes] = decoded  # type: ignore[assignment]  # no None in it
    else:
        keys = [decoded[i] for i in kept]  # type: ignore[misc]  # kept: not None
        orders = [orders[i] for i in kept]
        values = [values[i] for i in kept]
        offsets = [offsets[i] for i in kept]
        timestamps = [timestamps[i] for i in kept]
        if headers is not None:
            headers = [headers[i] for i in kept]
    rule = reader.rule
    try:
        ranks = rank_batch(rule, orders, values, partition, offsets)  # type: ignore[arg-type]  # decoded: not None
    except MergeError:
        ranks = []
        for v, o, off in zip(values, orders, offsets, strict=True):
            try:
                ranks.append(rule.rank(o, v, partition, off))  # type: ignore[arg-type]
            except MergeError:
                work.undecodable += 1
                ranks.append(None)  # type: ignore[arg-type]  # filtered just below
        kept = [i for i, rank in enumerate(ranks) if rank is not None]
        keys, values, offsets, timestamps, ranks = _pick(
            kept, keys, values, offsets, timestamps, ranks)
        if headers is not None:
            headers = [headers[i] for i in kept]
    return _Versions(keys, ranks, values, offsets, timestamps, headers,  # type: ignore[arg-type]
                     None)


def _routed_versions(work: PartitionWork, reader: TopicReader, routed: Records) -> _Versions:
    """The repartition topic's versions: ranked at their source position (header)."""
    offsets = offsets_of(routed)
    work.commits[TopicPartition(repartition_topic(work.topic), work.partition)] = (
        offsets[-1] + 1)
    values = values_of(routed)
    timestamps = timestamps_of(routed)
    headers = headers_of(routed) or [()] * len(offsets)
    decoded, orders = reader.read(values)
    rank_of = reader.rule.rank
    keys: list[bytes] = []
    ranks: list[Rank] = []
    kept: list[int] = []
    positions: list[tuple[int, int] | None] = []
    for i, key in enumerate(decoded):
        try:
            position = source_of(headers[i])
            rank: Rank | None = (rank_of(orders[i], values[i], *position)  # type: ignore[arg-type]  # decoded: not None
                                 if key is not None and position is not None else None)
        except (CodecError, MergeError):
            rank = None
        if rank is None or key is None:
            work.undecodable += 1  # not decodable, or not forwarded by a dedup agent
            continue
        keys.append(key)
        ranks.append(rank)
        kept.append(i)
        positions.append(position)
    return _Versions(keys, ranks, [values[i] for i in kept],  # type: ignore[misc]  # decoded: not None
                     [offsets[i] for i in kept], [timestamps[i] for i in kept],
                     [headers[i] for i in kept], positions)


def _concat(first: _Versions, second: _Versions) -> _Versions:
    """Source versions, then repartitioned ones (rare: a misrouting producer)."""
    count = len(first.keys)
    return _Versions(
        first.keys + second.keys, first.ranks + second.ranks,
        [*first.values, *second.values], [*first.offsets, *second.offsets],
        [*first.timestamps, *second.timestamps],
        [*(first.headers or [()] * count), *(second.headers or ())],
        [*(first.positions or [None] * count), *(second.positions or ())])


def _emit(work: PartitionWork, chosen: dict[bytes, int],
          current: dict[bytes, Winner | Entry | None], versions: _Versions) -> None:
    """Fill the work's outgoing winners and table entries (column-wise: one per winner)."""
    partition = work.partition
    keys = list(chosen)
    indices = list(chosen.values())
    values = list(map(versions.values.__getitem__, indices))
    offsets = list(map(versions.offsets.__getitem__, indices))
    picked_ranks = list(map(versions.ranks.__getitem__, indices))
    timestamps = list(map(versions.timestamps.__getitem__, indices))
    header = SOURCE_HEADER
    all_headers, positions = versions.headers, versions.positions
    if positions is None:  # all read here from the source topic
        if all_headers is None:
            # An f-string then encode: ~0.2 µs a winner less than b"%d:%d" formatting
            # (the same bytes as format_source).
            headers = [[(header, f"{partition}:{o}".encode())] for o in offsets]
        else:
            headers = [[*all_headers[i], (header, f"{partition}:{o}".encode())]
                       for i, o in zip(indices, offsets, strict=True)]
        entries = list(zip(picked_ranks, values, repeat(partition), offsets))
    else:
        assert all_headers is not None  # _concat and _routed_versions fill them
        headers, entries = [], []
        for i, rank, value, offset in zip(indices, picked_ranks, values, offsets,
                                          strict=True):
            position = positions[i]
            if position is None:
                position = (partition, offset)
                headers.append([*all_headers[i], (header, format_source(*position))])
            else:
                headers.append(list(all_headers[i]))  # the repartition record carries it
            entries.append((rank, value, position[0], position[1]))
    work.unique = Unique(keys, values, timestamps, headers)
    work.keys = keys
    work.entries = entries
    work.previous = list(map(current.__getitem__, keys))


def _pick(indices: list[int], *columns: Sequence[Any]) -> tuple[list[Any], ...]:
    """``columns`` at ``indices``."""
    return tuple([column[i] for i in indices] for column in columns)


def _local(work: PartitionWork, read: SourceRead, offsets: Sequence[int],
           timestamps: Sequence[int], headers: Sequence[Sequence[tuple[str, bytes]]] | None
           ) -> list[int] | None:
    """Count undecodable records and forward misrouted ones; the indices kept here.

    None means "all of them" (checked with two C-level scans instead of a Python loop).
    """
    partition = work.partition
    decoded, valid, canonical, values = read.decoded, read.valid, read.canonical, read.values
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
        work.repartition.setdefault(target, []).append((
            decoded[i], values[i], timestamps[i],  # type: ignore[arg-type]
            [*(headers[i] if headers is not None else ()),
             (SOURCE_HEADER, format_source(partition, offsets[i]))]))
        work.repartitioned += 1
    return kept
