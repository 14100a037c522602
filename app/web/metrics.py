"""``GET /metrics``: the worker's progress in Prometheus text format (version 0.0.4).

Contract:
- Built at scrape time from live objects by one custom collector: the lag monitor's last
  snapshot, the archive agent's counters, and every :class:`~onepipe.app.context.MetricSource`
  in ``WorkerContext.metric_sources``. Nothing is recorded per record for it: agents keep
  their plain counters, and a scrape reads them (no Kafka request either: lag comes from
  the monitor's last sample).
- Families (labels in braces)::

    onepipe_consumer_committed_offset{group,topic,partition}  absent before a first commit
    onepipe_consumer_end_offset{group,topic,partition}
    onepipe_consumer_lag{group,topic,partition}
    onepipe_consumer_stuck{group,topic,partition}              1 when stuck, else 0
    onepipe_lag_monitor_up                                     1 if the last sample worked
    onepipe_lag_monitor_last_sample_timestamp_seconds
    onepipe_archive_*_total, onepipe_archive_last_flush_*{topic,partition},
    onepipe_archive_flush_latency_seconds (histogram)
    onepipe_archive_stalled_partitions                         partitions not archived
    onepipe_archive_partition_stalled{topic,partition}         1 per such partition
    onepipe_agent_*_total{agent}                               developers' agents' counters
    onepipe_event_loop_lag_seconds (histogram), onepipe_event_loop_lag_max_seconds
                                                               (onepipe.app.web.loop_lag)
    onepipe_worker_agent_processes, onepipe_worker_agent_process_restarts_total{process}
                                                  (onepipe.app.agent_processes)

  With ``ONEPIPE_AGENT_PROCESSES`` > 1 every family but the consumer lag's and those two
  carries ``process`` ("0": the worker's own process), one sample per process.

- Another agent plugs in with one line at start-up, e.g. the dedup agent::

    ctx.metric_sources.append(CounterSource("dedup", lambda: agent.metrics, DEDUP_COUNTERS))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from onepipe.agents.archive import FLUSH_LATENCY_BUCKETS, ArchiveMetrics
from onepipe.app.agent_reports import label_processes
from onepipe.app.context import WorkerContext
from onepipe.app.lag_monitor import LagMonitor
from onepipe.app.web.http import CTX

#: ``DedupMetrics`` counters (agents/dedup.py) and their help, for a :class:`CounterSource`.
DEDUP_COUNTERS: Mapping[str, str] = {
    "consumed": "Records consumed from source and repartition topics.",
    "winners": "Winning versions produced to <topic>.unique.",
    "duplicates": "Versions equal in rank to their key's winner, dropped.",
    "losers": "Versions ranked below their key's winner, dropped.",
    "undecodable": "Records whose value did not decode (skipped).",
    "repartitioned": "Records forwarded to the repartition topic.",
}

#: The dedup agent's exported counters: :data:`DEDUP_COUNTERS`, plus two /health shows.
DEDUP_EXPORTED: Mapping[str, str] = {
    **DEDUP_COUNTERS,
    "superseded": "Versions that led their key within a batch but lost to a later one.",
    "recovered": "Changelog messages folded into dedup tables during recovery.",
}
#: The checksum agent's exported counters.
CHECKSUM_EXPORTED: Mapping[str, str] = {
    "folded": "<topic>.unique messages folded into checksum tables.",
    "undecodable": "Winners that did not decode or had no day (counted nowhere).",
    "counted": "Source records counted into per-day raw record counts.",
    "raw_undecodable": "Source records counted whose value did not decode.",
    "published": "Day, hour and raw-count figures produced to <topic>.checksums.",
    "expired": "(Partition, day) figures dropped by retention.",
    "restarts": "Checksum agent restarts after a failure.",
}

_ARCHIVE_COUNTERS: Mapping[str, str] = {
    "records_in": "Records the archive agent consumed from Kafka.",
    "records_archived": "Records written to the raw lake.",
    "undecodable": "Records archived whose value did not decode.",
    "redelivered": "Records Kafka delivered again below the archived position (skipped).",
    "files": "Parquet files written to the raw lake.",
    "bytes_written": "Bytes of Parquet written to the raw lake.",
}

_LAG_LABELS = ["group", "topic", "partition"]
_TP_LABELS = ["topic", "partition"]


class CounterSource:
    """Exports integer attributes of a metrics object as ``onepipe_<prefix>_<name>_total``.

    ``metrics`` is called at every scrape (the agent may be replaced after a restart).
    Every name is checked once here, so a renamed field fails at start-up, not at scrape.
    """

    def __init__(self, prefix: str, metrics: Callable[[], object],
                 counters: Mapping[str, str]) -> None:
        sample = metrics()
        missing = [name for name in counters if not hasattr(sample, name)]
        if missing:
            raise TypeError(f"{type(sample).__name__} has no counter(s) {missing}; "
                            f"it has {sorted(a for a in dir(sample) if not a.startswith('_'))}")
        self._prefix = prefix
        self._metrics = metrics
        self._counters = dict(counters)

    def collect(self) -> Iterator[Metric]:
        current = self._metrics()
        for name, help_text in self._counters.items():
            yield CounterMetricFamily(f"onepipe_{self._prefix}_{name}", help_text,
                                      value=float(getattr(current, name)))


class LabelledCounterSource:
    """Exports the same integer attributes of several metrics objects as one family per
    counter, ``onepipe_<prefix>_<name>_total{<label>=...}`` (developers' agents by name).

    ``items`` is called at every scrape: ``(label value, metrics object)`` pairs.
    """

    def __init__(self, prefix: str, label: str,
                 items: Callable[[], Iterable[tuple[str, object]]],
                 counters: Mapping[str, str]) -> None:
        self._prefix = prefix
        self._label = label
        self._items = items
        self._counters = dict(counters)

    def collect(self) -> Iterator[Metric]:
        items = list(self._items())
        for name, help_text in self._counters.items():
            family = CounterMetricFamily(f"onepipe_{self._prefix}_{name}", help_text,
                                         labels=[self._label])
            for value, metrics in items:
                family.add_metric([value], float(getattr(metrics, name)))
            yield family


def lag_families(monitor: LagMonitor) -> Iterator[Metric]:
    snapshot = monitor.snapshot
    committed = GaugeMetricFamily("onepipe_consumer_committed_offset",
                                  "Committed offset of the group (next offset it reads).",
                                  labels=_LAG_LABELS)
    end = GaugeMetricFamily("onepipe_consumer_end_offset",
                            "End offset of the partition (fetch high watermark).",
                            labels=_LAG_LABELS)
    lag = GaugeMetricFamily("onepipe_consumer_lag", "Records the group has yet to read.",
                            labels=_LAG_LABELS)
    stuck = GaugeMetricFamily(
        "onepipe_consumer_stuck",
        "1 when the group's lag has not shrunk for stuck_after seconds while records arrive.",
        labels=_LAG_LABELS)
    for row in snapshot.partitions:
        labels = [row.group, row.topic, str(row.partition)]
        if row.committed is not None:
            committed.add_metric(labels, row.committed)
        end.add_metric(labels, row.end)
        lag.add_metric(labels, row.lag)
        stuck.add_metric(labels, 1.0 if row.stuck else 0.0)
    yield from (committed, end, lag, stuck)
    yield GaugeMetricFamily("onepipe_lag_monitor_up",
                            "1 if the lag monitor's last sample succeeded.",
                            value=1.0 if snapshot.error is None and monitor.running else 0.0)
    if snapshot.sampled_at is not None:
        yield GaugeMetricFamily("onepipe_lag_monitor_last_sample_timestamp_seconds",
                                "When the lag figures were read (epoch seconds).",
                                value=snapshot.sampled_at)


def archive_families(metrics: ArchiveMetrics) -> Iterator[Metric]:
    for name, help_text in _ARCHIVE_COUNTERS.items():
        yield CounterMetricFamily(f"onepipe_archive_{name}", help_text,
                                  value=float(getattr(metrics, name)))
    at = GaugeMetricFamily("onepipe_archive_last_flush_timestamp_seconds",
                           "When the partition's last file became durable (epoch seconds).",
                           labels=_TP_LABELS)
    records = GaugeMetricFamily("onepipe_archive_last_flush_records",
                                "Records in the partition's last file.", labels=_TP_LABELS)
    size = GaugeMetricFamily("onepipe_archive_last_flush_bytes",
                             "Bytes of the partition's last file.", labels=_TP_LABELS)
    position = GaugeMetricFamily("onepipe_archive_position",
                                 "Next offset to archive, per partition assigned here.",
                                 labels=_TP_LABELS)
    for tp, flush in sorted(metrics.last_flushes.items()):
        labels = [tp.topic, str(tp.partition)]
        at.add_metric(labels, flush.at)
        records.add_metric(labels, flush.records)
        size.add_metric(labels, flush.bytes)
    for tp, offset in sorted(metrics.positions.items()):
        position.add_metric([tp.topic, str(tp.partition)], offset)
    yield from (at, records, size, position)
    stalled = sorted(metrics.stalled)
    yield GaugeMetricFamily("onepipe_archive_stalled_partitions",
                            "Partitions assigned here that are not archived: their log was "
                            "reset (the worker's log and /status say what to do).",
                            value=len(stalled))
    flags = GaugeMetricFamily("onepipe_archive_partition_stalled",
                              "1 for a partition not archived because its log was reset.",
                              labels=_TP_LABELS)
    for tp in stalled:
        flags.add_metric([tp.topic, str(tp.partition)], 1.0)
    yield flags
    yield GaugeMetricFamily("onepipe_archive_peak_buffered_bytes",
                            "Most bytes buffers and in-flight writes held at once.",
                            value=metrics.peak_buffered_bytes)
    cumulative, buckets = 0, []
    bounds = [*(str(b) for b in FLUSH_LATENCY_BUCKETS), "+Inf"]
    for bound, count in zip(bounds, metrics.flush_latency_counts, strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    yield HistogramMetricFamily("onepipe_archive_flush_latency_seconds",
                                "Seconds from handing a buffer to the writer until durable.",
                                buckets=buckets, sum_value=metrics.flush_latency_sum)


class WorkerCollector:
    """The one collector of a worker's ``/metrics``: everything read at scrape time."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterable[Metric]:
        ctx = self._ctx
        if ctx.processes is None:
            return self._own()
        # With agent processes: each one's figures, labelled with its process.
        return label_processes(self._own(), {index: report.families for index, report
                                             in ctx.processes.reports().items()})

    def _own(self) -> Iterator[Metric]:
        ctx = self._ctx
        if ctx.lag_monitor is not None:
            yield from lag_families(ctx.lag_monitor)
        if ctx.archive_metrics is not None:
            yield from archive_families(ctx.archive_metrics())
        for source in ctx.metric_sources:
            yield from source.collect()


_REGISTRY = web.AppKey("onepipe_metrics_registry", CollectorRegistry)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def add_metrics_routes(app: web.Application) -> None:
    # A registry of its own, not prometheus_client's global one: two workers in one
    # process (tests) must not export each other's figures.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(app[CTX]))
    app[_REGISTRY] = registry
    app.router.add_get("/metrics", metrics)
