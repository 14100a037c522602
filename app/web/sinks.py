"""``GET /sinks`` and the sinks' metric families: every declared sink as this worker runs it.

One entry per catalog sink: its state (``running``, ``failing``, ``paused``,
``unconfigured``, ``starting``), last error, rows written, rows refused (sent to
``<topic>.dlq``), the position committed in its database per partition and - from the lag
monitor's last sample, no Kafka request per call - its lag. ``onepipe sinks`` prints the
same document; ``/status`` shows it as a table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from onepipe.app.context import WorkerContext
from onepipe.app.web.http import CTX, json_response
from onepipe.app.web.worker_view import worker_sinks
from onepipe.schemas.topic_names import sink_group

__all__ = ["SinkCollector", "add_sink_routes", "sink_document"]

_LABELS = ["topic", "sink"]


def sink_document(ctx: WorkerContext) -> list[dict[str, Any]]:
    """Every declared sink's status, with its lag when the monitor sampled it."""
    statuses = worker_sinks(ctx)  # every process's agents of each sink, as one
    snapshot = ctx.lag_monitor.snapshot if ctx.lag_monitor is not None else None
    out = []
    for status in statuses:
        entry = status.to_json()
        group = sink_group(ctx.settings.app_id, status.topic, status.spec.name)
        lags = {str(p.partition): p.lag for p in (snapshot.partitions if snapshot else ())
                if p.group == group}
        entry["lag"] = lags or None
        entry["total_lag"] = sum(lags.values()) if lags else None
        out.append(entry)
    return out


async def sinks_json(request: web.Request) -> web.Response:
    return json_response({"sinks": sink_document(request.app[CTX])})


def add_sink_routes(app: web.Application) -> None:
    app.router.add_get("/sinks", sinks_json)


class SinkCollector:
    """``onepipe_sink_*`` families, labelled by topic and sink (a MetricSource)."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Metric]:
        statuses = self._ctx.sinks() if self._ctx.sinks is not None else []
        counters = {name: CounterMetricFamily(f"onepipe_sink_{name}", text, labels=_LABELS)
                    for name, text in (
                        ("rows_written", "Rows upserted into the sink's table."),
                        ("rejected", "Rows the database refused, sent to <topic>.dlq."),
                        ("undecodable", "<topic>.unique records that did not decode."),
                        ("restarts", "Restarts of the sink after a failure."))}
        up = GaugeMetricFamily("onepipe_sink_up", "1 while the sink writes (state running).",
                               labels=_LABELS)
        position = GaugeMetricFamily("onepipe_sink_position",
                                     "Next <topic>.unique offset, as committed in the database.",
                                     labels=[*_LABELS, "partition"])
        for status in statuses:
            labels = [status.topic, status.spec.name]
            metrics = status.metrics
            for name, family in counters.items():
                family.add_metric(labels, float(getattr(metrics, name)))
            up.add_metric(labels, 1.0 if metrics.state == "running" else 0.0)
            for partition, offset in sorted(metrics.positions.items()):
                position.add_metric([*labels, str(partition)], float(offset))
        yield from counters.values()
        yield up
        yield position
