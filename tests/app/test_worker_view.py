"""What a worker's /health, /status, /sinks and /readyz show of its agent processes.

Each agent process reports its archive counters, its sinks and what its agents wait for
(onepipe.app.agent_reports.ProcessReport); the worker's views combine them with its own
(onepipe.app.web.worker_view), built here from a worker's Runtime that is not started.
A real worker with an agent process is tests/ops/test_agent_processes.py's.
"""

from __future__ import annotations

import asyncio
import copy
import html
import pickle
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client.metrics_core import CounterMetricFamily

from onepipe.agents.archive import (
    ArchiveMetrics,
    PartitionFlush,
    combined_metrics,
    shown_metrics,
)
from onepipe.agents.sink import SinkMetrics, SinkStatus, combined_statuses
from onepipe.app.agent_reports import ProcessReport, read_frame, to_frames, write_frame
from onepipe.app.runtime import Runtime
from onepipe.app.settings import load_settings
from onepipe.app.status_cli import agent_process_warnings
from onepipe.app.web.metrics import WorkerCollector
from onepipe.app.web.sinks import sink_document
from onepipe.app.web.status import render_status_html, status_document
from onepipe.app.web.worker_view import worker_archive, worker_counters, worker_sinks
from onepipe.schemas.metadata import SinkSpec

TP0, TP1, TP2 = (TopicPartition("widgets", p) for p in range(3))
SPEC = SinkSpec("pg", "postgres", "PG_DSN", "widgets")


def archive(*, records: int, positions: dict[TopicPartition, int], at: float,
            stalled: dict[TopicPartition, str] | None = None) -> ArchiveMetrics:
    m = ArchiveMetrics(records_in=records, records_archived=records, files=1,
                       bytes_written=10 * records, last_flush_at=at, last_flush_records=records,
                       flush_seconds=[at / 1000], positions=positions, stalled=stalled or {},
                       last_flushes={tp: PartitionFlush(at, records, 10) for tp in positions})
    m.flush_latency_counts[0] = 1
    return m


def sink(state: str, *, rows: int, positions: dict[int, int], error: str | None = None,
         error_at: float = 0.0, changes: list[str] | None = None) -> SinkStatus:
    return SinkStatus("widgets", SPEC, "postgres://127.0.0.1/test", SinkMetrics(
        state=state, rows_written=rows, batches=1, positions=positions, last_error=error,
        last_error_at=error_at, changes=changes or []))


def test_archive_counters_of_several_processes_add_up_and_keep_each_partition() -> None:
    first = archive(records=5, positions={TP0: 5, TP1: 7}, at=100.0)
    second = archive(records=3, positions={TP1: 9, TP2: 3}, at=200.0,
                     stalled={TP2: "the log was reset: ..."})
    before = copy.deepcopy([first, second])
    both = combined_metrics([shown_metrics(first), shown_metrics(second)])
    assert (both.records_in, both.records_archived, both.files, both.bytes_written) == (
        8, 8, 2, 80)
    # TP1 just moved from the first to the second: the higher position is the real one.
    assert both.positions == {TP0: 5, TP1: 9, TP2: 3}
    assert both.stalled == {TP2: "the log was reset: ..."}
    assert (both.last_flush_at, both.last_flush_records) == (200.0, 3)
    # What the views do not show is not sent four times a second, nor combined.
    assert (both.flush_seconds, both.last_flushes, both.peak_buffered_bytes) == ([], {}, 0)
    assert shown_metrics(first).last_flushes == {} and shown_metrics(first).records_in == 5
    assert [first, second] == before  # the parts are not changed


def test_a_sinks_agents_in_several_processes_show_as_one_sink() -> None:
    other = SinkStatus("widgets", SinkSpec("lite", "sqlite", "LITE_DSN", "w"), None,
                       SinkMetrics(state="unconfigured", last_error="LITE_DSN is not set"))
    parts = [
        sink("running", rows=10, positions={0: 4, 1: 6}, changes=["added column a"]),
        other,
        sink("failing", rows=5, positions={1: 8, 2: 2}, error="connection refused",
             error_at=50.0, changes=["added column a", "widened b"]),
    ]
    before = copy.deepcopy(parts)
    merged = combined_statuses(parts)
    assert [(s.topic, s.spec.name) for s in merged] == [("widgets", "lite"), ("widgets", "pg")]
    pg = merged[1].metrics
    # The state that most needs a person, the counters added, each partition's position.
    assert (pg.state, pg.rows_written, pg.batches) == ("failing", 15, 2)
    assert (pg.last_error, pg.last_error_at) == ("connection refused", 50.0)
    assert pg.positions == {0: 4, 1: 8, 2: 2}
    assert pg.changes == ["added column a", "widened b"]
    assert merged[1].where == "postgres://127.0.0.1/test"
    assert merged[0].metrics.state == "unconfigured"
    assert parts == before  # the parts are not changed


async def test_a_report_crosses_the_pipe_whole() -> None:
    report = ProcessReport([], archive=archive(records=2, positions={TP0: 2}, at=1.0,
                                               stalled={TP1: "why"}),
                           sinks=[sink("running", rows=1, positions={0: 1})],
                           waiting=["the dedup agent waits for its group"])

    class Pipe:
        def __init__(self) -> None:
            self.reader = asyncio.StreamReader()

        def write(self, data: bytes) -> None:
            self.reader.feed_data(data)

    pipe = Pipe()
    write_frame(pipe, report)  # type: ignore[arg-type]  # what a transport's write gets
    assert await read_frame(pipe.reader) == report


def report(*, consumed: int, waiting: list[str], sink_state: str = "running") -> bytes:
    """An agent process's report as its pipe delivers it."""
    family = CounterMetricFamily("onepipe_dedup_consumed", "Records consumed.")
    family.add_metric([], consumed)
    # A labelled counter: one label set's sample is not the family's total.
    labelled = CounterMetricFamily("onepipe_dedup_per_topic", "Per topic.", labels=["topic"])
    labelled.add_metric(["widgets"], consumed)
    error = "connection refused" if sink_state != "running" else None
    return pickle.dumps(ProcessReport(
        to_frames([family, labelled]),
        archive=archive(records=4, positions={TP1: 4}, at=1.0, stalled={TP2: "reset"}),
        sinks=[sink(sink_state, rows=3, positions={0: 3}, error=error, error_at=2.0)],
        waiting=waiting))


def test_the_workers_views_show_its_agent_processes_too(tmp_path: Path) -> None:
    # Process 0 runs batch agents too (not ONEPIPE_AGENT_PROCESSES_ONLY): its own figures
    # and the agent process's are combined.
    worker = Runtime(load_settings(data_dir=tmp_path, agent_processes=2))
    ctx = worker.context
    processes = worker.processes
    assert processes is not None
    own_only = worker_archive(ctx)
    assert own_only is not None and own_only.positions == {}
    assert worker.readiness.waiting() == ["agent process 1 has not reported yet (starting)"]
    assert processes.health() == {
        "1": {"reporting": False, "report_age_seconds": None, "restarts": 0}}

    processes.received(1, report(consumed=42, waiting=["the archive agent waits for its "
                                                       "group to assign it partitions"]))
    assert worker.readiness.waiting() == [
        "agent process 1: the archive agent waits for its group to assign it partitions"]
    shown = worker_archive(ctx)
    assert shown is not None
    assert (shown.records_archived, shown.positions, shown.stalled) == (
        4, {TP1: 4}, {TP2: "reset"})
    assert worker_counters(ctx, "dedup")["consumed"] == 42  # its own 0, plus the report's
    assert [(s.spec.name, s.metrics.rows_written) for s in worker_sinks(ctx)] == [("pg", 3)]
    # The views the HTTP API serves (/status.json, /sinks) read these.
    document = status_document(ctx)
    assert document["archive"]["stalled"] == [
        {"topic": "widgets", "partition": 2, "reason": "reset"}]
    assert [(s["sink"], s["rows_written"]) for s in sink_document(ctx)] == [("pg", 3)]
    assert processes.health()["1"]["reporting"] is True
    # /metrics: each process's own figure, labelled; no sum of them to count twice.
    [consumed] = [f for f in WorkerCollector(ctx).collect()
                  if f.name == "onepipe_dedup_consumed"]
    assert [(s.labels, s.value) for s in consumed.samples] == [
        ({"process": "0"}, 0), ({"process": "1"}, 42)]

    # Its agents had their partitions once: a later report of waiting (it was started
    # again) no longer holds the worker's readiness; /health tells instead.
    processes.received(1, report(consumed=1, waiting=[]))
    assert worker.readiness.waiting() == []
    processes.received(1, report(consumed=2, waiting=["the dedup agent is not running"]))
    assert worker.readiness.waiting() == []
    # A report that does not unpickle: the views show the rest, not a 500.
    processes.received(1, b"not a pickle")
    assert processes.reports() == {}
    assert worker_archive(ctx) == own_only


def test_what_an_exited_agent_process_counted_stays_in_the_workers_sums(
        tmp_path: Path) -> None:
    worker = Runtime(load_settings(data_dir=tmp_path, agent_processes=2))
    ctx = worker.context
    processes = worker.processes
    assert processes is not None
    processes.received(1, report(consumed=42, waiting=[], sink_state="paused"))
    processes.exited(1)  # killed: its report leaves, its counters stay
    assert processes.reports() == {} and processes.health()["1"]["reporting"] is False
    assert worker_counters(ctx, "dedup")["consumed"] == 42
    shown = worker_archive(ctx)  # the worker's own archive agent shows it, with the counts
    assert shown is not None
    assert (shown.records_in, shown.records_archived, shown.files, shown.bytes_written) == (
        4, 4, 1, 40)
    # Not its partitions, nor what was stalled there: it holds none any more.
    assert (shown.positions, shown.stalled, shown.last_flush_at) == ({}, {}, 0.0)
    # No sink shows in the worker's own process: a sink no process runs is not shown.
    assert worker_sinks(ctx) == []

    # Started again: its new counters add to what it counted before, and again after a
    # second exit (nothing counted twice: the carried report left the live ones).
    processes.received(1, report(consumed=5, waiting=[]))
    assert worker_counters(ctx, "dedup")["consumed"] == 47
    shown = worker_archive(ctx)
    assert shown is not None and (shown.records_in, shown.positions) == (8, {TP1: 4})
    [pg] = worker_sinks(ctx)
    assert (pg.metrics.state, pg.metrics.rows_written, pg.metrics.batches) == ("running", 6, 2)
    # Its counters only: not the state, error or positions of the process that exited.
    assert (pg.metrics.last_error, pg.metrics.positions) == (None, {0: 3})
    assert processes.carried.counters == {"onepipe_dedup_consumed": 42}  # unlabelled only
    processes.exited(1)
    processes.received(1, report(consumed=1, waiting=[]))
    assert worker_counters(ctx, "dedup")["consumed"] == 48
    # /metrics keeps each process's own counter, which started again with it.
    [consumed] = [f for f in WorkerCollector(ctx).collect()
                  if f.name == "onepipe_dedup_consumed"]
    assert [(s.labels, s.value) for s in consumed.samples] == [
        ({"process": "0"}, 0), ({"process": "1"}, 1)]
    # A last report that does not unpickle: the rest of the sums stay.
    processes.received(1, b"not a pickle")
    processes.exited(1)
    assert worker_counters(ctx, "dedup")["consumed"] == 47


def test_an_agent_process_that_keeps_exiting_at_start_says_so(tmp_path: Path) -> None:
    worker = Runtime(load_settings(data_dir=tmp_path, agent_processes=2))
    assert worker.processes is not None
    worker.processes.restarts[1] = 3
    assert worker.readiness.waiting() == [
        "agent process 1 has not reported yet (starting; it exited 3 time(s): its log lines "
        "say why)"]


def test_with_agent_processes_only_the_views_are_the_agent_processes(tmp_path: Path) -> None:
    worker = Runtime(load_settings(data_dir=tmp_path, agent_processes=2,
                                   agent_processes_only=True))
    ctx = worker.context
    assert worker.processes is not None
    assert (worker_archive(ctx), worker_sinks(ctx), worker_counters(ctx, "dedup")) == (
        None, [], {})
    # Not running yet: /status.json, the page and `onepipe status` say so.
    document = status_document(ctx)
    assert document["agent_processes"] == {
        "1": {"reporting": False, "report_age_seconds": None, "restarts": 0}}
    [warning] = agent_process_warnings(document)
    assert warning.startswith("Agent process 1 is not reporting (starting, or it exited: "
                              "started again 0 time(s) so far")
    assert html.escape(warning, quote=True) in render_status_html(document)
    worker.processes.received(1, report(consumed=7, waiting=[]))
    shown = worker_archive(ctx)
    assert shown is not None and shown.positions == {TP1: 4}
    assert worker_counters(ctx, "dedup") == {"consumed": 7}
    assert worker.readiness.waiting() == []
    assert agent_process_warnings(status_document(ctx)) == []
