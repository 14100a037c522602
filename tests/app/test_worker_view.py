"""What a worker's /health, /status, /sinks and /readyz show of its agent processes.

Each agent process reports its archive counters, its sinks and what its agents wait for
(onepipe.app.agent_processes.ProcessReport); the worker's views combine them with its own
(onepipe.app.web.worker_view). A real worker with an agent process is
tests/ops/test_agent_processes.py's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import TopicPartition
from prometheus_client.metrics_core import CounterMetricFamily

from onepipe.agents.archive import ArchiveMetrics, PartitionFlush, combined_metrics
from onepipe.agents.sink import SinkMetrics, SinkStatus, combined_statuses
from onepipe.app.agent_processes import ProcessReport, read_frame, to_frames, write_frame
from onepipe.app.runtime import Runtime
from onepipe.app.settings import load_settings
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
    both = combined_metrics([first, second])
    assert (both.records_in, both.records_archived, both.files, both.bytes_written) == (
        8, 8, 2, 80)
    # TP1 just moved from the first to the second: the higher position is the real one.
    assert both.positions == {TP0: 5, TP1: 9, TP2: 3}
    assert both.stalled == {TP2: "the log was reset: ..."}
    assert (both.last_flush_at, both.last_flush_records) == (200.0, 3)
    assert both.last_flushes[TP1] == PartitionFlush(200.0, 3, 10)
    assert both.flush_latency_counts[0] == 2
    assert both.flush_seconds == [0.1, 0.2]
    # The parts are not changed.
    assert first.positions == {TP0: 5, TP1: 7} and first.records_in == 5


def test_a_sinks_agents_in_several_processes_show_as_one_sink() -> None:
    other = SinkStatus("widgets", SinkSpec("lite", "sqlite", "LITE_DSN", "w"), None,
                       SinkMetrics(state="unconfigured", last_error="LITE_DSN is not set"))
    merged = combined_statuses([
        sink("running", rows=10, positions={0: 4, 1: 6}, changes=["added column a"]),
        other,
        sink("failing", rows=5, positions={1: 8, 2: 2}, error="connection refused",
             error_at=50.0, changes=["added column a", "widened b"]),
    ])
    assert [(s.topic, s.spec.name) for s in merged] == [("widgets", "lite"), ("widgets", "pg")]
    pg = merged[1].metrics
    # The state that most needs a person, the counters added, each partition's position.
    assert (pg.state, pg.rows_written, pg.batches) == ("failing", 15, 2)
    assert (pg.last_error, pg.last_error_at) == ("connection refused", 50.0)
    assert pg.positions == {0: 4, 1: 8, 2: 2}
    assert pg.changes == ["added column a", "widened b"]
    assert merged[1].where == "postgres://127.0.0.1/test"
    assert merged[0].metrics.state == "unconfigured"


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


def test_the_workers_views_show_its_agent_processes_too(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, agent_processes=2,
                             agent_processes_only=True)
    worker = Runtime(settings)
    ctx = worker.context
    assert worker.processes is not None
    # Before its agent process reports: nothing of it, and /readyz says why.
    assert worker_archive(ctx) is None
    assert worker_sinks(ctx) == []
    assert worker.readiness.waiting() == [
        "agent process 1 is not reporting (starting, or starting again after it exited)"]

    consumed = CounterMetricFamily("onepipe_dedup_consumed", "Records consumed.")
    consumed.add_metric([], 42)
    worker.processes._reports[1] = ProcessReport(  # what its pipe delivers
        to_frames([consumed]),
        archive=archive(records=4, positions={TP0: 4}, at=1.0, stalled={TP1: "reset"}),
        sinks=[sink("running", rows=3, positions={0: 3})],
        waiting=["the archive agent waits for its group to assign it partitions"])
    shown = worker_archive(ctx)
    assert shown is not None
    assert (shown.records_archived, shown.positions, shown.stalled) == (
        4, {TP0: 4}, {TP1: "reset"})
    assert [(s.spec.name, s.metrics.rows_written) for s in worker_sinks(ctx)] == [("pg", 3)]
    assert worker_counters(ctx, "dedup") == {"consumed": 42}
    assert worker.readiness.waiting() == [
        "agent process 1: the archive agent waits for its group to assign it partitions"]
