"""The archive agent's counters (exported by the worker's metrics view and status page)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

__all__ = ["FLUSH_LATENCY_BUCKETS", "ArchiveMetrics", "PartitionFlush", "combined_metrics"]

#: Upper bounds (seconds) of the flush-latency histogram's buckets; a last, unbounded
#: bucket (+Inf) follows them.
FLUSH_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class PartitionFlush:
    """The last durable flush of one partition."""

    #: Wall-clock time (epoch seconds) the file became durable.
    at: float
    #: Records it held.
    records: int
    #: Bytes of Parquet written.
    bytes: int


@dataclass(slots=True)
class ArchiveMetrics:
    """Counters of one archive agent (exported by the worker's metrics view)."""

    #: Records consumed from Kafka.
    records_in: int = 0
    #: Records written to the lake.
    records_archived: int = 0
    #: Records whose value did not decode (archived with null typed columns).
    undecodable: int = 0
    #: Records Kafka delivered again below the archived position (skipped, not archived).
    redelivered: int = 0
    #: Files written.
    files: int = 0
    #: Bytes of Parquet written.
    bytes_written: int = 0
    #: Wall-clock time (epoch seconds) and record count of the last flush.
    last_flush_at: float = 0.0
    last_flush_records: int = 0
    #: Seconds each flush took from buffer hand-over to durable, most recent last (bounded).
    flush_seconds: list[float] = field(default_factory=list)
    #: Last durable flush per partition (kept after the partition moves to another worker).
    last_flushes: dict[TopicPartition, PartitionFlush] = field(default_factory=dict)
    #: Flush latencies as a histogram: count per bucket of :data:`FLUSH_LATENCY_BUCKETS`
    #: plus a last +Inf bucket (not cumulative), and their sum in seconds.
    flush_latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(FLUSH_LATENCY_BUCKETS) + 1))
    flush_latency_sum: float = 0.0
    #: Most bytes buffers and in-flight writes held at once (checks the memory bound).
    peak_buffered_bytes: int = 0
    #: Next offset to archive, per partition assigned here.
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    #: Partitions assigned here but not archived, with why and what to do: the lake holds
    #: more of the partition than its log (the log was reset). They stay so until the
    #: worker restarts or the partition moves.
    stalled: dict[TopicPartition, str] = field(default_factory=dict)


#: The counters :func:`combined_metrics` adds up.
_SUMMED = ("records_in", "records_archived", "undecodable", "redelivered", "files",
           "bytes_written", "flush_latency_sum", "peak_buffered_bytes")


def combined_metrics(parts: Iterable[ArchiveMetrics]) -> ArchiveMetrics:
    """Several archive agents' counters as one worker's (the worker and its agent
    processes, each with a share of the partitions and of the buffer bound).

    Counters add up; positions and stalled partitions are each process's own partitions
    (a partition that just moved keeps the higher position); the last flush is the
    latest; flush times keep their order within each part.
    """
    out = ArchiveMetrics()
    for part in parts:
        for name in _SUMMED:
            setattr(out, name, getattr(out, name) + getattr(part, name))
        if part.last_flush_at > out.last_flush_at:
            out.last_flush_at, out.last_flush_records = part.last_flush_at, part.last_flush_records
        out.flush_seconds.extend(part.flush_seconds)
        out.flush_latency_counts = [a + b for a, b in zip(out.flush_latency_counts,
                                                          part.flush_latency_counts, strict=True)]
        for tp, flush in part.last_flushes.items():
            if tp not in out.last_flushes or flush.at > out.last_flushes[tp].at:
                out.last_flushes[tp] = flush
        for tp, offset in part.positions.items():
            out.positions[tp] = max(offset, out.positions.get(tp, offset))
        out.stalled.update(part.stalled)
    return out
