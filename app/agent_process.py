"""One agent process of a worker (``ONEPIPE_AGENT_PROCESSES``, onepipe.app.agent_processes).

Started by the worker as ``python -m onepipe.app.agent_process <fd>``, not by hand: its
settings arrive as the first frame on stdin, its reports (metrics, archive and sink
statuses, what its agents wait for) leave as frames on the pipe ``<fd>``, its log lines
go where the worker's go. It runs the worker's :class:`Runtime` with only the batch
agents on (no HTTP API, no Faust, no developers' agents: those stay in the worker), and
stops on SIGTERM, SIGINT or end-of-file on stdin (the worker gone), within its own bound
(the watchdog stays armed until the process has exited).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from onepipe.agents.archive import shown_metrics
from onepipe.app.agent_processes import EXIT_CONFIG, REPORT_SECONDS
from onepipe.app.agent_reports import (
    ProcessReport,
    read_first_frame,
    read_frame,
    to_frames,
    write_frame,
)
from onepipe.app.log_format import TEXT_FORMAT, configure_logging
from onepipe.app.runtime import Runtime
from onepipe.app.serve import event_loop_factory
from onepipe.app.settings import Settings
from onepipe.app.stopping import StopWatchdog, signals_restored
from onepipe.app.web.metrics import WorkerCollector
from onepipe.schemas.errors import ConfigError

log = logging.getLogger("onepipe")
#: Seconds between two looks at whether the worker is still this process's parent.
_PARENT_CHECK_SECONDS = 1.0


def main() -> int:
    worker = os.getppid()
    out = int(sys.argv[1])
    first = read_first_frame(sys.stdin.fileno())
    if first is None:
        return 0  # the worker went away before it sent anything
    settings, index = first
    configure_logging(settings.log_level, settings.log_format)
    _tag_log_lines(index, text=settings.log_format == "text")
    new_loop, _ = event_loop_factory(settings)  # the worker's loop, uvloop by default
    # uvloop's signal handlers outlive its closed loop: without this, a SIGTERM while the
    # interpreter exits would be swallowed.
    with signals_restored(signal.SIGTERM, signal.SIGINT):
        loop = new_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(_run(settings, index, out, worker))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _tag_log_lines(index: int, *, text: bool) -> None:
    """Its lines interleave with the worker's: each says which process wrote it (the
    text, or the ``agent_process`` field of a JSON line)."""

    def tag(record: logging.LogRecord) -> bool:
        record.agent_process = index
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
        if text:
            handler.setFormatter(logging.Formatter(
                TEXT_FORMAT.replace("]", f"] [agent process {index}]", 1)))


def _report(runtime: Runtime, collector: WorkerCollector) -> ProcessReport:
    """Its figures, and what the worker's /health, /status, /sinks and /readyz show of it."""
    ctx = runtime.context
    return ProcessReport(to_frames(collector.collect()),
                         archive=(shown_metrics(ctx.archive_metrics()) if ctx.archive_metrics
                                  else None),
                         sinks=ctx.sinks() if ctx.sinks else [],
                         waiting=runtime.readiness.waiting())


def _watch_parent(worker: int, gone: Callable[[], None], done: threading.Event) -> None:
    """A thread: the worker gone (this process re-parented) while the loop is held - a
    stop it cannot see on stdin - still starts the bounded stop."""
    while not done.wait(_PARENT_CHECK_SECONDS):
        if os.getppid() != worker:
            gone()
            return


async def _run(settings: Settings, index: int, out: int, worker: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    why: list[str] = []
    runtime: Runtime | None = None
    watchdog = StopWatchdog(settings.stop_timeout_seconds,
                            lambda: sorted(runtime.stopping) if runtime else [])

    def stop_for(reason: str) -> None:
        why.append(reason)
        stop.set()

    def worker_gone() -> None:
        watchdog.arm("the worker is gone")
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: exiting anyway
            loop.call_soon_threadsafe(stop_for, "the worker is gone")

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_for, signal.Signals(signum).name)
    done = threading.Event()
    threading.Thread(target=_watch_parent, args=(worker, worker_gone, done),
                     name="onepipe-watch-worker", daemon=True).start()

    async def until_eof() -> None:
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        while await read_frame(stdin) is not None:
            pass
        stop_for("the worker is gone")

    watching = asyncio.create_task(until_eof())
    stopping = asyncio.create_task(stop.wait())
    transport: asyncio.WriteTransport | None = None
    try:
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol,
                                                     os.fdopen(out, "wb", buffering=0))
        try:
            runtime = Runtime(settings, agents_only=True)
        except ConfigError as exc:  # its message says it all (a developer agent's module)
            log.error("agent process %d cannot start: %s", index, exc)  # noqa: TRY400
            return EXIT_CONFIG
        collector = WorkerCollector(runtime.context)
        starting = asyncio.create_task(runtime.start())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            error = starting.exception()
            log.error("agent process %d could not start: %s", index, error,
                      exc_info=not isinstance(error, ConfigError))
            return EXIT_CONFIG if isinstance(error, ConfigError) else 1
        if starting.done():
            log.info("agent process %d runs the batch agents (pid %d)", index, os.getpid())
        while not stop.is_set():
            # Skipped while the pipe is full (the worker's loop is busy); the worker keeps
            # the last it read, and unpickles it only when a view asks.
            if not transport.get_write_buffer_size():
                write_frame(transport, _report(runtime, collector))
            await asyncio.wait({stopping}, timeout=REPORT_SECONDS)
        # Armed until the process has exited: a thread that hangs at exit is bounded too.
        watchdog.arm(why[0] if why else "stop")
        await runtime.stop()  # a start still running ends at its next step first
        await asyncio.gather(starting, return_exceptions=True)
        # A last report, after the stop: what the agents counted while stopping (the
        # archive's last flush) reaches the worker's sums too (agent_reports.Carried).
        # The pipe holds it unless the worker is gone or stuck, when nobody reads it (one
        # beyond the pipe's buffer may be cut at exit: the worker reads a cut frame as
        # end-of-file and keeps the report before it).
        if not transport.is_closing() and not transport.get_write_buffer_size():
            with contextlib.suppress(OSError, RuntimeError):
                write_frame(transport, _report(runtime, collector))
        return 0
    finally:
        done.set()
        for task in (watching, stopping):
            task.cancel()
        await asyncio.gather(watching, stopping, return_exceptions=True)
        if transport is not None:
            transport.close()


if __name__ == "__main__":
    sys.exit(main())
