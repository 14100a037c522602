"""The archive agent's counters (exported by the worker's metrics view and status page)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

__all__ = ["FLUSH_LATENCY_BUCKETS", "ArchiveMetrics", "PartitionFlush", "combined_metrics",
           "counted", "shown_metrics"]

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


#: The counters a worker's views show (/health, /status): :func:`shown_metrics` keeps
#: them, :func:`combined_metrics` adds them up.
_SHOWN = ("records_in", "records_archived", "undecodable", "redelivered", "files",
          "bytes_written")


def shown_metrics(metrics: ArchiveMetrics) -> ArchiveMetrics:
    """What a worker's views show of an archive agent, alone: counters, last flush,
    positions and stalled partitions (an agent process's report carries this four times
    a second; flush times, the latency histogram, the peak and each partition's last
    flush stay in its own /metrics)."""
    out = counted(metrics)
    out.last_flush_at, out.last_flush_records = metrics.last_flush_at, metrics.last_flush_records
    out.positions, out.stalled = dict(metrics.positions), dict(metrics.stalled)
    return out


def counted(metrics: ArchiveMetrics) -> ArchiveMetrics:
    """The counters :func:`shown_metrics` keeps, alone: what an agent process that exited
    had counted, carried into its worker's sums (no positions, stalled partitions or
    flush: those were its partitions', which it no longer holds)."""
    out = ArchiveMetrics()
    for name in _SHOWN:
        setattr(out, name, getattr(metrics, name))
    return out


def combined_metrics(parts: Iterable[ArchiveMetrics]) -> ArchiveMetrics:
    """Several archive agents' :func:`shown_metrics` figures as one worker's (the worker
    and its agent processes, each with a share of the partitions).

    Counters add up (each process's since it started; onepipe.app.agent_reports.Carried
    adds what the exited ones had counted, as one more part); positions and stalled
    partitions are each process's own partitions (a partition that just moved keeps the
    higher position); the last flush is the latest.
    The figures :func:`shown_metrics` leaves out are left out here too.
    """
    out = ArchiveMetrics()
    for part in parts:
        for name in _SHOWN:
            setattr(out, name, getattr(out, name) + getattr(part, name))
        if part.last_flush_at > out.last_flush_at:
            out.last_flush_at, out.last_flush_records = part.last_flush_at, part.last_flush_records
        for tp, offset in part.positions.items():
            out.positions[tp] = max(offset, out.positions.get(tp, offset))
        out.stalled.update(part.stalled)
    return out
