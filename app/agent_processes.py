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
  its sinks' statuses and what its batch agents wait for (:class:`ProcessReport`), and the
  views combine them with process 0's own (onepipe.app.web.worker_view). A process not
  reporting (starting, or started again after it exited) makes ``/readyz`` say so.
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
import pickle
import signal
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Sample

from onepipe.agents.archive import ArchiveMetrics
from onepipe.agents.sink import SinkStatus
from onepipe.app.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["EXIT_CONFIG", "REPORT_SECONDS", "AgentProcesses", "ProcessReport",
           "label_processes", "process_settings", "read_first_frame", "read_frame",
           "shared_budgets", "to_frames", "write_frame"]

#: Seconds between an agent process's reports of its metrics to the worker (one report:
#: 0.14 ms of CPU measured with no partition held, more with per-partition figures).
REPORT_SECONDS = 0.25
#: Back-off before a process that exited is started again: first, longest, and how long
#: one must have run for the next exit to start from the first again.
_BACKOFF_FIRST, _BACKOFF_MAX, _BACKOFF_RESET = 1.0, 30.0, 60.0
_HEADER = struct.Struct(">I")
#: The largest frame either side accepts (a report is tens of kilobytes).
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Exit status of an agent process whose settings or registry do not let it start.
EXIT_CONFIG = 2
#: Metric families that are not one process's own (group-wide lag, these processes):
#: never labelled.
_GROUP_WIDE = ("onepipe_consumer_", "onepipe_lag_monitor_")
_WORKER_WIDE = frozenset({"onepipe_worker_agent_processes",
                          "onepipe_worker_agent_process_restarts"})

#: A metric family as sent between processes: name, help, type, unit, samples.
Family = tuple[str, str, str, str, list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class ProcessReport:
    """What an agent process sends every :data:`REPORT_SECONDS`: its ``/metrics``
    families, and what the worker's other views show of it."""

    families: list[Family]
    #: Its archive agent's counters; None when it runs none.
    archive: ArchiveMetrics | None = None
    #: Its sink agents' statuses.
    sinks: list[SinkStatus] = field(default_factory=list)
    #: Why each of its batch agents that is not working its share yet is not (/readyz).
    waiting: list[str] = field(default_factory=list)


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


def write_frame(stream: asyncio.WriteTransport | asyncio.StreamWriter, value: object) -> None:
    """One length-prefixed pickle (between a worker and its own agent processes only)."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)


async def read_frame(stream: asyncio.StreamReader) -> Any:
    """The next frame, or None at end-of-file; ValueError for one beyond the bound."""
    try:
        header = await stream.readexactly(_HEADER.size)
        return pickle.loads(await stream.readexactly(_size(header)))  # noqa: S301
    except asyncio.IncompleteReadError:
        return None


def _size(header: bytes) -> int:
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:  # not a frame of ours: something else wrote into the pipe
        msg = f"a frame of {size} bytes, beyond {MAX_FRAME_BYTES}: the pipe is corrupt"
        raise ValueError(msg)
    return int(size)


def read_first_frame(fd: int) -> Any:
    """The first frame, read before any event loop exists; None at end-of-file."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, _size(header))
    return None if body is None else pickle.loads(body)  # noqa: S301 - from the worker


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def to_frames(families: Iterable[Metric]) -> list[Family]:
    """Metric families as plain tuples: what an agent process reports."""
    return [(f.name, f.documentation, f.type, f.unit, [tuple(s) for s in f.samples])
            for f in families]


def label_processes(own: Iterable[Metric], others: dict[int, list[Family]]) -> list[Metric]:
    """Every process's families as one family a name, each sample labelled with its
    process (the worker's own ``0``); group-wide families stay as they are."""
    merged: dict[str, Metric] = {}

    def add(family: Family, process: str | None) -> None:
        name, documentation, kind, unit, samples = family
        if process is not None and (name.startswith(_GROUP_WIDE) or name in _WORKER_WIDE):
            process = None
        target = merged.get(name)
        if target is None:
            target = merged[name] = Metric(name, documentation, kind, unit)
        for sample in samples:
            labels = sample[1] if process is None else {**sample[1], "process": process}
            target.samples.append(Sample(sample[0], labels, *sample[2:]))

    for family in to_frames(own):
        add(family, "0")
    for index, families in sorted(others.items()):
        for family in families:
            add(family, str(index))
    return list(merged.values())


class AgentProcesses:
    """The worker's side: starts, watches and stops its agent processes."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._indexes = range(1, settings.agent_processes)
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[int, asyncio.subprocess.Process] = {}
        self._reports: dict[int, ProcessReport] = {}
        self._stop = asyncio.Event()
        self.restarts = dict.fromkeys(self._indexes, 0)

    async def start(self) -> None:
        """Start every agent process, without waiting for them (each joins the groups)."""
        self._stop.clear()
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
        """Each running agent process's last report."""
        return dict(self._reports)

    def waiting_for(self) -> str | None:
        """Why some agent process's batch agents are not all working their share yet
        (/readyz's ``partitions`` check); None when they are."""
        reasons = []
        for index in self._indexes:
            report = self._reports.get(index)
            if report is None:
                reasons.append(f"agent process {index} is not reporting (starting, or "
                               "starting again after it exited)")
            else:
                reasons.extend(f"agent process {index}: {why}" for why in report.waiting)
        return "; ".join(reasons) or None

    def collect(self) -> Iterator[Metric]:
        """Whether they run (a /metrics source of the worker's own)."""
        running = GaugeMetricFamily("onepipe_worker_agent_processes", "Agent processes "
                                    "running and reporting (ONEPIPE_AGENT_PROCESSES - 1).")
        running.add_metric([], len(self._reports))
        yield running
        restarts = CounterMetricFamily("onepipe_worker_agent_process_restarts",
                                       "Agent processes started again after they exited.",
                                       labels=["process"])
        for index, count in self.restarts.items():
            restarts.add_metric([str(index)], count)
        yield restarts

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
            while (report := await read_frame(reports)) is not None:
                self._reports[index] = report
            return await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # a stop cut short, or a corrupt pipe: do not leave it behind
            raise
        finally:
            del self._running[index]
            self._reports.pop(index, None)
            transport.close()
            # The pipe to it stays open until now: closing it is what stops an agent
            # process whose worker is gone.
            proc.stdin.close()
