"""The parts of agent processes that need no process: settings, budgets, /metrics labels.

The processes themselves (start, share of the groups, restart, stop, a killed worker)
are tests/ops/test_agent_processes.py's.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from onepipe.app.agent_processes import process_settings, shared_budgets
from onepipe.app.agent_reports import MAX_FRAME_BYTES, label_processes, read_frame, to_frames
from onepipe.app.runtime import Runtime
from onepipe.app.settings import load_settings
from onepipe.app.web.metrics import CounterSource
from onepipe.schemas.errors import ConfigError


def test_an_agent_process_runs_only_the_batch_agents_on_the_shared_lake(
        tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", agent_processes=3,
                             catalog_dir=tmp_path, agents="my.agents", example_agents=True,
                             compact_interval_seconds=60, stop_timeout_seconds=10)
    child = process_settings(settings, 2)
    assert child.data_dir == tmp_path / "data" / "agent-processes" / "2"
    # The worker's lake and catalog, not ones under the process's own data dir.
    assert child.resolved_lake_url == (tmp_path / "data" / "lake").resolve().as_uri()
    assert child.resolved_catalog_uri == settings.resolved_catalog_uri
    assert (child.catalog_dir, child.agents, child.example_agents) == (None, "", False)
    assert (child.compact_interval_seconds, child.compact_workers_enabled) == (0, False)
    assert (child.monitor_interval_seconds, child.agent_processes) == (0, 1)
    assert child.stop_timeout_seconds < settings.stop_timeout_seconds  # inside the worker's
    assert (child.archive_enabled, child.dedup_enabled, child.checksums_enabled,
            child.sinks_enabled) == (True, True, True, True)


def test_the_memory_budgets_stay_the_workers(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, agent_processes=4,
                             archive_buffer_bytes=400 * 2**20, state_memory_bytes=128 * 2**20)
    shared = shared_budgets(settings)
    assert shared.archive_buffer_bytes * 4 == settings.archive_buffer_bytes
    assert shared.state_memory_bytes * 4 == settings.state_memory_bytes
    single = load_settings(data_dir=tmp_path)
    assert shared_budgets(single) is single
    # Each process's settings are already shared: its own Runtime divides no further.
    child = process_settings(shared, 1)
    assert shared_budgets(child).archive_buffer_bytes == shared.archive_buffer_bytes


def test_agent_processes_only_leave_the_worker_process_no_batch_agent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ONEPIPE_AGENT_PROCESSES_ONLY=true needs "
                       "ONEPIPE_AGENT_PROCESSES of 2 or more"):
        load_settings(data_dir=tmp_path, agent_processes_only=True)
    settings = load_settings(data_dir=tmp_path / "data", agent_processes=3,
                             agent_processes_only=True, archive_buffer_bytes=400 * 2**20,
                             state_memory_bytes=300 * 2**20)
    # The two agent processes archive, so they share that budget; the state cache is the
    # three processes' (the developers' agents' stores in the worker's own use it too).
    assert shared_budgets(settings).archive_buffer_bytes * 2 == settings.archive_buffer_bytes
    assert shared_budgets(settings).state_memory_bytes * 3 == settings.state_memory_bytes
    child = process_settings(shared_budgets(settings), 1)
    assert (child.agent_processes, child.agent_processes_only) == (1, False)
    assert (child.archive_enabled, child.dedup_enabled, child.checksums_enabled,
            child.sinks_enabled) == (True, True, True, True)
    worker, agent_process = Runtime(settings), Runtime(child, agents_only=True)
    # What /health, /metrics and /sinks of the worker's own process are built from.
    assert (worker.sinks, worker.context.archive_metrics) == (None, None)
    assert not [s for s in worker.context.metric_sources if isinstance(s, CounterSource)]
    assert worker.processes is not None
    assert agent_process.sinks is not None
    assert agent_process.context.archive_metrics is not None
    assert len([s for s in agent_process.context.metric_sources
                if isinstance(s, CounterSource)]) == 2  # dedup's and the checksums'


def test_metrics_of_every_process_are_one_family_each_labelled_by_process() -> None:
    def own() -> list[Metric]:
        consumed = CounterMetricFamily("onepipe_dedup_consumed", "Records consumed.",
                                       labels=["agent"])
        consumed.add_metric(["dedup"], 5)
        lag = GaugeMetricFamily("onepipe_consumer_lag", "Lag.", labels=["group"])
        lag.add_metric(["g"], 7)
        return [consumed, lag]

    child_consumed = CounterMetricFamily("onepipe_dedup_consumed", "Records consumed.",
                                         labels=["agent"])
    child_consumed.add_metric(["dedup"], 11)
    only_child = GaugeMetricFamily("onepipe_event_loop_lag_max_seconds", "Lag.")
    only_child.add_metric([], 0.5)
    merged = {f.name: f for f in label_processes(
        own(), {1: to_frames([child_consumed, only_child])})}

    consumed = merged["onepipe_dedup_consumed"]
    assert consumed.type == "counter"
    assert [(s.name, s.labels, s.value) for s in consumed.samples] == [
        ("onepipe_dedup_consumed_total", {"agent": "dedup", "process": "0"}, 5),
        ("onepipe_dedup_consumed_total", {"agent": "dedup", "process": "1"}, 11)]
    # Group-wide figures are not a process's: no label, not repeated.
    assert [(s.labels, s.value) for s in merged["onepipe_consumer_lag"].samples] == [
        ({"group": "g"}, 7)]
    assert [(s.labels, s.value)
            for s in merged["onepipe_event_loop_lag_max_seconds"].samples] == [
        ({"process": "1"}, 0.5)]
    assert list(merged) == ["onepipe_dedup_consumed", "onepipe_consumer_lag",
                            "onepipe_event_loop_lag_max_seconds"]


async def test_a_frame_beyond_the_bound_is_refused_not_buffered() -> None:
    stream = asyncio.StreamReader()
    stream.feed_data(struct.pack(">I", MAX_FRAME_BYTES + 1) + b"x" * 10)
    with pytest.raises(ValueError, match="the pipe is corrupt"):
        await read_frame(stream)
    good = asyncio.StreamReader()
    good.feed_data(struct.pack(">I", 5) + b"ab")  # a frame cut short
    good.feed_eof()
    assert await read_frame(good) is None  # end-of-file mid-frame: the process is gone
