"""One agent process of a worker (``ONEPIPE_AGENT_PROCESSES``, onepipe.app.agent_processes).

Started by the worker as ``python -m onepipe.app.agent_process``, not by hand: its
settings arrive as the first frame on stdin, its metrics leave as frames on stdout, its
log lines go to stderr (the worker's). It runs the worker's :class:`Runtime` with only
the batch agents on (no HTTP API, no Faust: those stay in the worker), and stops on
SIGTERM, SIGINT or end-of-file on stdin (the worker gone), within its own bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from onepipe.app.agent_processes import (
    REPORT_SECONDS,
    read_first_frame,
    read_frame,
    report_fd,
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

#: Exit status of an agent process whose settings or catalog do not let it start.
EXIT_CONFIG = 2


def main() -> int:
    out = report_fd()
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
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(out, "wb"))
    runtime = Runtime(settings, agents_only=True)
    collector = WorkerCollector(runtime.context)
    watchdog = StopWatchdog(settings.stop_timeout_seconds, lambda: sorted(runtime.stopping))

    def report() -> None:
        if not transport.is_closing():
            write_frame(transport, to_frames(collector.collect()))

    starting = asyncio.create_task(runtime.start())
    stopping = asyncio.create_task(stop.wait())
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
        # A stop while starting (the worker gone at once): the start stops what it
        # started, as it does when a step fails.
        starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    await runtime.stop()
    report()  # the last figures, with everything flushed
    watching.cancel()
    transport.close()
    watchdog.disarm()
    return 0


if __name__ == "__main__":
    sys.exit(main())
