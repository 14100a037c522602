"""The whole worker as its views show it: its own batch agents and its agent processes'.

Why: with ``ONEPIPE_AGENT_PROCESSES`` the batch agents run in several processes (with
``ONEPIPE_AGENT_PROCESSES_ONLY``, in none but the agent processes), yet ``/health``,
``/status``, ``/sinks``, ``onepipe status`` and ``onepipe sinks`` are asked about the
worker: a partition whose archive stalled in an agent process must show as stalled.

Contract:
- :func:`worker_archive`, :func:`worker_sinks` and :func:`worker_counters` combine the
  worker's own figures with each running agent process's last report
  (onepipe.app.agent_reports.ProcessReport): sent every ``REPORT_SECONDS``, skipped
  while its loop is held, so possibly older; ``/health``'s ``agent_processes`` block
  shows each one's age. An agent process not running (starting, or started again after
  it exited) adds no live figure until it reports again; what it had counted stays.
- Counters add up each process's since it started, plus what the agent processes that
  exited had counted by their last report (onepipe.app.agent_reports.Carried), so a sum
  does not drop when one starts again; it misses what one that was killed counted after
  the last report the worker read. ``/metrics`` has each process's own instead. Carried
  archive and sink counters are added only where a running process shows that archive
  or sink.
- ``/metrics`` does not read these: it shows each process's own figures, labelled with
  its process (onepipe.app.web.metrics), so nothing is counted twice.
- Without agent processes they return the worker's own figures, uncopied.
"""

from __future__ import annotations

from onepipe.agents.archive import ArchiveMetrics, combined_metrics
from onepipe.agents.sink import SinkStatus, combined_statuses
from onepipe.app.agent_reports import ProcessReport, counter_values
from onepipe.app.context import WorkerContext

__all__ = ["worker_archive", "worker_counters", "worker_sinks"]


def _reports(ctx: WorkerContext) -> list[ProcessReport]:
    return list(ctx.processes.reports().values()) if ctx.processes is not None else []


def worker_archive(ctx: WorkerContext) -> ArchiveMetrics | None:
    """The archive agents' counters, positions and stalled partitions, every process's;
    None when no process runs an archive agent."""
    own = ctx.archive_metrics() if ctx.archive_metrics is not None else None
    if ctx.processes is None:
        return own
    parts = [own] if own is not None else []
    parts += [report.archive for report in _reports(ctx) if report.archive is not None]
    carried = ctx.processes.carried.archive
    if parts and carried is not None:
        parts.append(carried)
    return combined_metrics(parts) if parts else None


def worker_sinks(ctx: WorkerContext) -> list[SinkStatus]:
    """Every declared sink's status, one per sink, its agents in every process combined."""
    own = ctx.sinks() if ctx.sinks is not None else []
    if ctx.processes is None:
        return own
    live = [*own, *(s for report in _reports(ctx) for s in report.sinks)]
    shown = {(status.topic, status.spec.name) for status in live}
    carried = ctx.processes.carried.sinks
    return combined_statuses([*live, *(carried[key] for key in shown if key in carried)])


def worker_counters(ctx: WorkerContext, prefix: str) -> dict[str, int]:
    """``onepipe_<prefix>_<name>_total`` by name (unlabelled counters), summed over every
    process.

    Read through what ``/metrics`` exports (the metric sources' ``collect``, the agent
    processes' reported families), so ``/health`` and ``/metrics`` count alike; plus what
    the agent processes that exited had counted, which ``/metrics`` no longer shows.
    """
    head = f"onepipe_{prefix}_"
    found: dict[str, int] = {}

    def add(kind: str, name: str, value: float) -> None:
        if kind == "counter" and name.startswith(head):
            key = name.removeprefix(head)
            found[key] = found.get(key, 0) + int(value)

    # Unlabelled families only: a labelled one's first sample is one label set's.
    for source in ctx.metric_sources:
        for family in source.collect():
            if family.samples and not family.samples[0].labels:
                add(family.type, family.name, family.samples[0].value)
    for report in _reports(ctx):
        for name, value in counter_values(report.families):
            add("counter", name, value)
    if ctx.processes is not None:
        for name, value in ctx.processes.carried.counters.items():
            add("counter", name, value)
    return found
