"""One agent process of a worker (``ONEPIPE_AGENT_PROCESSES``, onepipe.app.agent_processes).

Started by the worker as ``python -m onepipe.app.agent_process <fd>``, not by hand: its
settings arrive as the first frame on stdin, its metrics leave as frames on the pipe
``<fd>``, its log lines go where the worker's go. It runs the worker's :class:`Runtime`
with only the batch agents on (no HTTP API, no Faust, no developers' agents: those stay
in the worker), and stops on SIGTERM, SIGINT or end-of-file on stdin (the worker gone),
within its own bound (the watchdog stays armed until the process has exited).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from onepipe.app.agent_processes import (
    EXIT_CONFIG,
    REPORT_SECONDS,
    read_first_frame,
    read_frame,
    to_frames,
    write_frame,
)
from onepipe.app.log_format import TEXT_FORMAT, configure_logging
from onepipe.app.runtime import Runtime
from onepipe.app.serve import event_loop_factory
from onepipe.app.settings import Settings
from onepipe.app.stopping import StopWatchdog
from onepipe.app.web.metrics import WorkerCollector
from onepipe.schemas.errors import ConfigError

log = logging.getLogger("onepipe")

def main() -> int:
    out = int(sys.argv[1])
    first = read_first_frame(sys.stdin.fileno())
    if first is None:
        return 0  # the worker went away before it sent anything
    settings, index = first
    configure_logging(settings.log_level, settings.log_format)
    _tag_log_lines(index, text=settings.log_format == "text")
    new_loop, _ = event_loop_factory(settings)  # the worker's loop, uvloop by default
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_run(settings, index, out))
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


async def _run(settings: Settings, index: int, out: int) -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    stop = asyncio.Event()
    why: list[str] = []

    def stop_for(reason: str) -> None:
        why.append(reason)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_for, signal.Signals(signum).name)

    async def until_eof() -> None:
        while await read_frame(stdin) is not None:
            pass
        stop_for("the worker is gone")

    watching = asyncio.create_task(until_eof())
    closed = loop.create_future()
    transport, _ = await loop.connect_write_pipe(lambda: _Reports(closed),
                                                 os.fdopen(out, "wb", buffering=0))
    stopping = asyncio.create_task(stop.wait())
    try:
        try:
            runtime = Runtime(settings, agents_only=True)
        except ConfigError as exc:  # its message says it all (a developer agent's module)
            log.error("agent process %d cannot start: %s", index, exc)  # noqa: TRY400
            return EXIT_CONFIG
        collector = WorkerCollector(runtime.context)
        watchdog = StopWatchdog(settings.stop_timeout_seconds,
                                lambda: sorted(runtime.stopping))

        def report() -> None:
            # Skipped while the last one is still unread (the worker's loop is busy).
            if not transport.is_closing() and not transport.get_write_buffer_size():
                write_frame(transport, to_frames(collector.collect()))

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
            report()
            await asyncio.wait({stopping}, timeout=REPORT_SECONDS)
        watchdog.arm(why[0] if why else "stop")
        if not starting.done():
            # Stopped while starting: a start past its producer ends at its next step;
            # one before it runs to its end, and is stopped below.
            await runtime.stop()
        await asyncio.gather(starting, return_exceptions=True)
        await runtime.stop()
        report()  # the last figures, with everything flushed
        return 0
    finally:
        for task in (watching, stopping):
            task.cancel()
        await asyncio.gather(watching, stopping, return_exceptions=True)
        transport.close()
        with contextlib.suppress(TimeoutError):  # the last report reaches the worker
            await asyncio.wait_for(closed, 1.0)


class _Reports(asyncio.Protocol):
    """The report pipe's protocol: says when the pipe is closed (what was written went)."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self._closed = closed

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


if __name__ == "__main__":
    sys.exit(main())
