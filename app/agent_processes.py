"""Agent processes: one worker's batch agents spread over several processes.

Why: every batch agent is bound by its process's interpreter lock, not by the machine
(BENCHMARKS.md, "Agent processes"): while one agent caught up, a two-core machine was
113-121% busy of 200%. ``ONEPIPE_AGENT_PROCESSES=N`` starts N-1 agent processes beside
the worker. Each runs the archive, dedup, checksum and sink agents as one more member of
their consumer groups - exactly what one more worker does - so partitions, positions and
exactly-once come from the code that scale-out already proves; nothing is handed from
process to process per record (a hand-over costs the sender's lock as much as the work
it hands over, BENCHMARKS.md).

Contract:
- The worker's own process is process 0: it keeps the HTTP API, the registry journal,
  compaction, the lag monitor and the developers' agents, and runs a share of the batch
  agents too - none with ``ONEPIPE_AGENT_PROCESSES_ONLY``: its event loop then serves
  those alone, and no agent's batch waits in its loop ahead of a request or ``/health``
  nor takes its interpreter lock (in one process that lock was shared by the endpoint,
  the agents' planning and the checksum folds' threads: BENCHMARKS.md, "Agent processes
  only"). Agent process ``n`` keeps its state in ``<data_dir>/agent-processes/<n>`` (a
  restart finds its own tables again) and writes the worker's lake and catalog.
- Started after the web server; stopped with the worker's agents, in parallel with them
  and inside the worker's stop bound (each process's own bound is 80% of it). A process
  that exits while the worker runs is started again after a back-off (1 s doubling up to
  30 s, reset once one ran a minute); the other members hold its partitions meanwhile.
- An agent process stops by itself when its worker is gone: its stdin is the worker's
  pipe, and end-of-file (the worker killed with SIGKILL) stops it as SIGTERM does; a
  thread that sees it re-parented starts the same bounded stop while its loop is held.
- ``/metrics`` shows every process: an agent process sends its figures every
  :data:`REPORT_SECONDS` on a pipe of its own; the worker labels
  them ``process="<n>"`` and its own ``process="0"``; consumer lag, group-wide, stays
  unlabelled. ``onepipe_worker_agent_processes`` and
  ``onepipe_worker_agent_process_restarts_total`` tell whether they run.
- The worker's memory budgets (``ONEPIPE_ARCHIVE_BUFFER_BYTES``,
  ``ONEPIPE_STATE_MEMORY_BYTES``) are divided among the processes (the archive buffer
  among those that archive): they stay a worker's.
- ``/health``, ``/status``, ``/readyz`` and ``/sinks`` tell of the whole worker: each
  report also carries the process's archive counters (positions, stalled partitions),
  its sinks' statuses and what its batch agents wait for (onepipe.app.agent_reports), and the
  views combine them with process 0's own (onepipe.app.web.worker_view). ``/readyz``
  waits at the worker's start until each one's agents had their partitions once; later
  ``/health`` tells whether each reports (its last report's age, its restarts). What an
  agent process that exited had counted stays in those views' sums (:attr:`carried`).
- Known cost: every group has a member per process, so a stop may find a group in a join
  round the first leaver started; a member finishes that round before it leaves (tansu
  breaks a group left mid-round, onepipe.tables.kafka.rdkafka_consumer), which on tansu
  takes half the session timeout. A stop cut short by its bound then loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from onepipe.app.agent_reports import (
    Carried,
    ProcessReport,
    Received,
    read_frame_bytes,
    write_frame,
)
from onepipe.app.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["EXIT_CONFIG", "REPORT_SECONDS", "AgentProcesses", "process_settings",
           "shared_budgets"]

#: Seconds between an agent process's reports to the worker. Pickling a report's archive
#: part took 0.04 ms with 16 partitions, 1.4 ms with 1,000 (its metric families, 0.14 ms
#: with none held, grow with them too); the worker unpickles one only when a view asks.
REPORT_SECONDS = 0.25
#: Back-off before a process that exited is started again: first, longest, and how long
#: one must have run for the next exit to start from the first again.
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 1.0, 30.0, 60.0
#: Exit status of an agent process whose settings or registry do not let it start.
EXIT_CONFIG = 2


def process_settings(settings: Settings, index: int) -> Settings:
    """Agent process ``index``'s settings: the worker's, with only what it runs left on."""
    return settings.model_copy(update={
        "data_dir": settings.data_dir / "agent-processes" / str(index),
        # Shared with the worker, not derived from the process's own data dir.
        "lake_url": settings.resolved_lake_url,
        "iceberg_catalog_uri": settings.resolved_catalog_uri,
        "catalog_dir": None, "agents": "", "example_agents": False,
        "monitor_interval_seconds": 0.0, "compact_interval_seconds": 0.0,
        "compact_workers_enabled": False, "agent_processes": 1, "agent_processes_only": False,
        "stop_timeout_seconds": settings.stop_timeout_seconds * 0.8})


def shared_budgets(settings: Settings) -> Settings:
    """One process's share of the worker's memory budgets (the settings of each): the
    archive buffer among the processes that run batch agents (not the worker's own with
    ONEPIPE_AGENT_PROCESSES_ONLY), the state cache among all of them (the developers'
    agents' stores in the worker's own use it too)."""
    count = settings.agent_processes
    if count == 1:
        return settings
    archiving = max(1, count - settings.agent_processes_only)
    return settings.model_copy(update={
        "archive_buffer_bytes": max(1024 * 1024, settings.archive_buffer_bytes // archiving),
        "state_memory_bytes": max(8 * 1024 * 1024, settings.state_memory_bytes // count)})


class AgentProcesses:
    """The worker's side: starts, watches and stops its agent processes."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._indexes = range(1, settings.agent_processes)
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._last: dict[int, Received] = {}
        #: The processes whose batch agents all had their partitions once since the
        #: worker started: /readyz waits for that, not again when one starts again.
        self._ready_once: set[int] = set()
        self._stop = asyncio.Event()
        self.restarts = dict.fromkeys(self._indexes, 0)
        #: What the processes that exited had counted (onepipe.app.web.worker_view adds
        #: it to the worker's sums, which would otherwise drop at each restart).
        self.carried = Carried()

    async def start(self) -> None:
        """Start every agent process, without waiting for them (each joins the groups)."""
        if any(not task.done() for task in self._tasks):
            raise RuntimeError("the agent processes are running: stop() them first")
        self._stop.clear()
        self._ready_once.clear()  # a start waits for them again (/readyz)
        self._tasks = [asyncio.create_task(self._keep(index), name=f"agent-process-{index}")
                       for index in self._indexes]

    async def stop(self) -> None:
        """SIGTERM each; return once every one has exited (the worker's bound covers it)."""
        self._stop.set()
        for proc in self._running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reports(self) -> dict[int, ProcessReport]:
        """Each running agent process's last report (one that does not unpickle is left
        out, logged: a view shows the others rather than failing)."""
        out = {}
        for index, last in self._last.items():
            try:
                out[index] = last.report()
            except Exception:  # noqa: BLE001 - a corrupt frame; its next one may be whole
                log.exception("agent process %d sent a report that does not unpickle", index)
        return out

    def received(self, index: int, frame: bytes) -> None:
        """Agent process ``index``'s report, as its pipe delivered it (pickled).

        Unpickled only when a view asks for it (a report of a thousand partitions takes
        milliseconds of the worker's loop), but at once until its agents have all had
        their partitions once (:meth:`waiting_for`).
        """
        last = self._last[index] = Received(time.monotonic(), frame)
        if index not in self._ready_once and not last.report().waiting:
            self._ready_once.add(index)

    def waiting_for(self) -> str | None:
        """Why the worker's start waits for its agent processes (/readyz's ``partitions``
        check); None once each one's batch agents have all had their partitions.

        Only at the worker's start, so that a rollout waits for them: an agent process
        that exits later is told by ``/health`` and the restart count, not by taking the
        worker's HTTP API out of its load balancer (every worker's would go at once if
        all of them failed alike). Its partitions go to the group's other members
        meanwhile - none with ONEPIPE_AGENT_PROCESSES_ONLY and one worker: they wait.
        """
        reasons = []
        for index in self._indexes:
            if index in self._ready_once:
                continue
            last = self._last.get(index)
            if last is None:
                exits = self.restarts[index]
                reasons.append(f"agent process {index} has not reported yet (starting" + (
                    f"; it exited {exits} time(s): its log lines say why)" if exits else ")"))
            else:
                reasons.extend(f"agent process {index}: {why}" for why in last.report().waiting)
        return "; ".join(reasons) or None

    def health(self) -> dict[str, dict[str, Any]]:
        """Each agent process: whether it runs and has reported, how long ago the worker
        read its last report (sent every REPORT_SECONDS: a growing age is a process whose
        loop is held, or a worker whose loop is), how often it was started again."""
        now = time.monotonic()
        shown: dict[str, dict[str, Any]] = {}
        for index in self._indexes:
            last = self._last.get(index)
            shown[str(index)] = {
                "reporting": last is not None,
                "report_age_seconds": round(now - last.at, 2) if last is not None else None,
                "restarts": self.restarts[index]}
        return shown

    def collect(self) -> Iterator[Metric]:
        """Whether they run (a /metrics source of the worker's own)."""
        running = GaugeMetricFamily("onepipe_worker_agent_processes", "Agent processes "
                                    "running and reporting (ONEPIPE_AGENT_PROCESSES - 1).")
        running.add_metric([], len(self._last))
        yield running
        restarts = CounterMetricFamily("onepipe_worker_agent_process_restarts",
                                       "Agent processes started again after they exited.",
                                       labels=["process"])
        for index, count in self.restarts.items():
            restarts.add_metric([str(index)], count)
        yield restarts

    def exited(self, index: int) -> None:
        """Agent process ``index`` exited: its last report leaves the views, and what it
        had counted by then is carried into the worker's sums (:attr:`carried`)."""
        last = self._last.pop(index, None)
        if last is None:
            return
        try:
            report = last.report()
        except Exception:  # noqa: BLE001 - a corrupt frame: its counters are lost, logged
            log.exception("agent process %d's last report does not unpickle; the worker's "
                          "sums leave out what it counted", index)
            return
        self.carried.add(report)

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_FIRST
        while not self._stop.is_set():
            began = loop.time()
            try:
                code = await self._run(index)
            except Exception:  # noqa: BLE001 - a spawn or a pipe that failed: start again
                log.exception("agent process %d failed", index)
                code = None
            if self._stop.is_set():
                return
            if loop.time() - began >= _BACKOFF_RESET:
                delay = _BACKOFF_FIRST
            why = ("cannot start (its log lines above say why)" if code == EXIT_CONFIG
                   else f"exited with status {code} while the worker runs")
            log.error("agent process %d %s; its partitions go to the other members, and it "
                      "starts again in %.0f s", index, why, delay)
            with contextlib.suppress(TimeoutError):  # a back-off that a stop cuts short
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            if not self._stop.is_set():
                self.restarts[index] += 1

    async def _run(self, index: int) -> int | None:
        """Run agent process ``index`` until it exits; its exit status.

        Its reports come on a pipe of their own (the fd in its argv): nothing it prints
        can mix with them. Its output and log lines go to the worker's stdout, where the
        worker logs. A session of its own: a Ctrl-C in the terminal reaches the worker
        alone, which stops it in order.
        """
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        try:
            pipe = os.fdopen(read_fd, "rb", buffering=0)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            raise
        reports = asyncio.StreamReader()
        transport: asyncio.BaseTransport | None = None
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reports), pipe)
            # -P: not the current directory first on sys.path (the worker has not it).
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "onepipe.app.agent_process", str(write_fd),
                stdin=asyncio.subprocess.PIPE, stdout=1, stderr=1, pass_fds=(write_fd,),
                start_new_session=True)
        except BaseException:
            if transport is not None:
                transport.close()  # closes the pipe (and its fd) once
            else:
                pipe.close()
            raise
        finally:
            os.close(write_fd)  # the child's copy is the one that counts
        self._running[index] = proc
        assert proc.stdin is not None  # noqa: S101 - PIPE above
        try:
            if self._stop.is_set():  # a stop came while it was being started
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionError):  # it died at once: its status says
                write_frame(proc.stdin, (process_settings(self._settings, index), index))
                await proc.stdin.drain()
            while (frame := await read_frame_bytes(reports)) is not None:
                self.received(index, frame)
            return await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a stop cut short, or a corrupt pipe: do not leave it behind
            raise
        finally:
            del self._running[index]
            self.exited(index)
            transport.close()
            # The pipe to it stays open until now: closing it is what stops an agent
            # process whose worker is gone.
            proc.stdin.close()
