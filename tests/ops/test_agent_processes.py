"""One worker's batch agents in two processes (``ONEPIPE_AGENT_PROCESSES=2``).

A real ``onepipe worker`` with one agent process, a producer sending through its
endpoint: both processes take a share of every group's partitions (their figures in
``/metrics``, labelled by process), the agent process killed with SIGKILL is started
again, and the end-of-test check finds nothing lost, nothing twice and ``onepipe verify``
agreeing. A SIGTERM stops the agent process with its worker; a worker killed with SIGKILL
leaves no agent process behind either (its end of the pipe is what stops it).

With ``ONEPIPE_AGENT_PROCESSES_ONLY`` the worker's own process runs no batch agent: its
agent process takes every record of every group, and nothing is lost either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from onepipe.app.stopping import running
from tests.fixtures.pipeline_check import Pipeline, check_pipeline, make_pipeline
from tests.fixtures.producer_loop import ProducerLoop
from tests.fixtures.services import wait_for
from tests.fixtures.worker_process import WorkerProcess

PARTITIONS = 4
#: A figure of each batch agent, per process.
COUNTERS = ("onepipe_dedup_consumed_total", "onepipe_archive_records_in_total",
            "onepipe_checksums_counted_total")


def agent_processes(worker: WorkerProcess) -> list[int]:
    """Pids of the worker's agent processes (not its archive encoders)."""
    found = []
    for pid in worker.children():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"onepipe.app.agent_process" in command:
            found.append(pid)
    return found


async def get_json(worker: WorkerProcess, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(worker.url + path) as resp:
        return resp.status, await resp.json()


async def samples(worker: WorkerProcess) -> dict[str, dict[str, float]]:
    """``/metrics``: each sample name's value per ``process`` label ("" when none)."""
    async with aiohttp.ClientSession() as http, http.get(worker.url + "/metrics") as resp:
        text = await resp.text()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_process = found.setdefault(sample.name, {})
            process = sample.labels.get("process", "")
            by_process[process] = by_process.get(process, 0.0) + sample.value
    return found


@contextlib.asynccontextmanager
async def producing(broker: str, tmp_path: Path, only: bool = False
                    ) -> AsyncIterator[tuple[Pipeline, ProducerLoop, WorkerProcess]]:
    """A worker with two processes (``only``: the batch agents in the second only) and a
    producer through its endpoint, 300 records acked."""
    pipeline = make_pipeline(broker, tmp_path, partitions=PARTITIONS,
                             ONEPIPE_AGENT_PROCESSES="2",
                             ONEPIPE_AGENT_PROCESSES_ONLY=str(only).lower())
    producer = ProducerLoop(pipeline.topic, pipeline.urls)
    try:
        worker = pipeline.worker("w1")
        await wait_for(worker.healthy, timeout=90, what="the worker")
        producer.start()
        await producer.wait_acked(300)
        yield pipeline, producer, worker
    finally:
        await producer.cancel()
        await asyncio.to_thread(pipeline.stop_all)


async def test_agent_processes_share_every_group_and_lose_nothing(
        broker: str, tmp_path: Path) -> None:
    async with producing(broker, tmp_path) as (pipeline, producer, worker):
        async def both_work() -> bool:
            found = await samples(worker)
            ready, _ = await get_json(worker, "/readyz")  # every agent has its partitions
            return ready == 200 and all(found.get(name, {}).get(process, 0) > 0
                                        for name in COUNTERS for process in ("0", "1"))

        await wait_for(both_work, timeout=120, what="both processes consuming every group")
        [first] = agent_processes(worker)
        counted = (await samples(worker))["onepipe_dedup_consumed_total"]["1"]
        os.kill(first, signal.SIGKILL)

        async def gone() -> bool:  # until it is started again and reports
            _, health = await get_json(worker, "/health")
            return health["agent_processes"]["1"]["reporting"] is False

        await wait_for(gone, timeout=30, what="/health telling the agent process is gone")
        # It had its partitions once: its exit does not take the worker's API out of its
        # load balancer (the worker's own members hold its partitions meanwhile).
        ready, body = await get_json(worker, "/readyz")
        assert ready == 200 and body["checks"]["partitions"]["ok"], body
        # What it had counted stays in the worker's sums (its /metrics figures start
        # again with it): /health's count is the worker's own and at least that.
        own = (await samples(worker))["onepipe_dedup_consumed_total"]["0"]
        _, health = await get_json(worker, "/health")
        assert health["dedup"]["consumed"] >= own + counted, (own, counted, health["dedup"])

        async def started_again() -> bool:
            found = await samples(worker)
            return (found.get("onepipe_worker_agent_process_restarts_total", {}).get("1") == 1
                    and found.get("onepipe_worker_agent_processes", {}).get("") == 1
                    and agent_processes(worker) not in ([], [first]))

        await wait_for(started_again, timeout=60, what="the agent process started again")
        await producer.wait_acked(300)
        await producer.finish()
        await check_pipeline(pipeline, producer, "agent processes")

        [second] = agent_processes(worker)
        await asyncio.to_thread(worker.stop)
        assert worker.proc.returncode == 0
        assert not running(second), "the agent process outlived its worker's stop"

        # Restarted with its data dirs, then killed: its agent process stops by itself.
        worker = pipeline.worker("w1")
        await wait_for(worker.healthy, timeout=90, what="the restarted worker")

        async def reporting() -> bool:  # its agents started: it sends their figures
            return "1" in (await samples(worker)).get("onepipe_dedup_consumed_total", {})

        await wait_for(reporting, timeout=60, what="the restarted worker's agent process")
        [third] = agent_processes(worker)
        worker.kill()
        await wait_for(lambda: not running(third), timeout=30,
                       what="the agent process to stop after its worker was killed")


async def test_agent_processes_only_run_every_batch_agent_outside_the_worker_process(
        broker: str, tmp_path: Path) -> None:
    async with producing(broker, tmp_path, only=True) as (pipeline, producer, worker):
        async def agent_process_works() -> bool:
            found = await samples(worker)
            return all(found.get(name, {}).get("1", 0) > 0 for name in COUNTERS)

        await wait_for(agent_process_works, timeout=120,
                       what="the agent process consuming every group")
        await producer.finish()
        await check_pipeline(pipeline, producer, "agent processes only")

        async def shown_by_the_worker() -> bool:
            # The worker's own process runs no batch agent: what /health, /status and
            # /readyz show of them is the agent process's report.
            ready, _ = await get_json(worker, "/readyz")
            _, health = await get_json(worker, "/health")
            _, status = await get_json(worker, "/status.json")
            archive = health.get("archive") or {}
            positions = [p for p in archive.get("positions", {})
                         if p.startswith(f"{pipeline.topic}[")]
            return (ready == 200 and len(positions) == PARTITIONS
                    and archive["records_archived"] >= len(producer.acked)
                    and health.get("dedup", {}).get("consumed", 0) >= len(producer.acked)
                    and status["archive"] is not None and status["archive"]["stalled"] == [])

        await wait_for(shown_by_the_worker, timeout=30,
                       what="the worker's /health, /status and /readyz showing its agents")
        found = await samples(worker)
        # The worker's own process ran none of them: the agent process took every record
        # (in one run: its counters start again with a restart).
        assert found["onepipe_worker_agent_process_restarts_total"]["1"] == 0
        assert all("0" not in found[name] for name in COUNTERS), found
        assert found["onepipe_dedup_consumed_total"]["1"] >= len(producer.acked)
        [child] = agent_processes(worker)
        await asyncio.to_thread(worker.stop)
        assert worker.proc.returncode == 0
        assert not running(child), "the agent process outlived its worker's stop"
