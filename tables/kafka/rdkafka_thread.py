"""One thread that owns a librdkafka handle and runs every call on it, in order.

Contract (:class:`HandleThread`):

- confluent-kafka >= 2.16 serialises the calls on one handle behind a gate: a ``pause()``
  from the event loop waits for a ``consume()`` in flight on another thread (measured:
  1.8 s of a 2 s consume). So every call on the handle runs on this thread, as a *job*,
  in the order it was queued: :meth:`submit` queues one and returns at once (aiokafka's
  sync calls: pause, seek, subscribe), :meth:`call` awaits its result or its error,
  handed to the loop in one ``call_soon_threadsafe`` per job.
- A job marked ``top_level`` (a fetch, leaving the group, closing) never runs inside
  another job: queued while a fetch or a rebalance callback runs, it runs after them.
- While a job waits inside librdkafka, the jobs queued meanwhile still run: a fetch
  calls :meth:`run_queued` between its polls (so a commit waits one poll slice, not a
  whole fetch), and a rebalance callback hands a coroutine to the loop with
  :meth:`wait_for`, which runs the jobs that coroutine queues (its pauses, seeks,
  commits) until it is done - the thread blocks, the loop never does, and nothing
  deadlocks on the gate.
- The thread is a daemon and gives up waiting for a coroutine once the loop is closed,
  so it never keeps a process from exiting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["HandleThread"]

log = logging.getLogger(__name__)

#: Seconds between looks at whether the event loop still runs, while a coroutine runs.
_LOOP_CHECK = 1.0


class _Job:
    """A call to run on the thread; ``future`` (on the loop) gets its result."""

    __slots__ = ("call", "future", "top_level", "last")

    def __init__(self, call: Callable[[], Any], future: asyncio.Future[Any] | None,
                 top_level: bool, last: bool) -> None:
        self.call = call
        self.future = future
        self.top_level = top_level
        #: The thread ends after this job (the close).
        self.last = last


class HandleThread:
    """Runs the jobs of one librdkafka handle; see the module docstring."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._deferred: deque[_Job] = deque()
        self._thread = threading.Thread(target=self._main, daemon=True, name=name)
        self._thread.start()

    def submit(self, call: Callable[[], Any], *, top_level: bool = False) -> None:
        """Queue ``call``; a failure is logged (nobody awaits it)."""
        self._jobs.put(_Job(call, None, top_level, False))

    async def call(self, call: Callable[[], Any], *, top_level: bool = False,
                   last: bool = False) -> Any:
        """Run ``call`` on the thread and return what it returned (or raise what it
        raised); ``last``: the thread ends after it."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put(_Job(call, future, top_level, last))
        return await future

    async def join(self) -> None:
        await asyncio.to_thread(self._thread.join)

    def run_queued(self) -> None:
        """On the thread, inside a job: run the jobs queued meanwhile."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._run(job, nested=True)

    def wait_for(self, coroutine: Coroutine[Any, Any, None]) -> BaseException | None:
        """On the thread, inside a job: run ``coroutine`` on the loop and the jobs it
        queues here until it is done; what it raised, or None."""
        if self._loop.is_closed():
            coroutine.close()
            return None
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the loop closed meanwhile
            coroutine.close()
            return None
        # Every call the coroutine queued is ahead of this marker (FIFO): run them all,
        # not only until the future is done, or a last seek would run after the caller
        # went on (for a rebalance callback: after librdkafka was given the partitions).
        done = _Job(lambda: None, None, False, False)
        future.add_done_callback(lambda _: self._jobs.put(done))
        while True:
            try:
                job = self._jobs.get(timeout=_LOOP_CHECK)
            except queue.Empty:
                if self._loop.is_closed():
                    future.cancel()
                    return None
                continue
            if job is done:
                break
            self._run(job, nested=True)
        return None if future.cancelled() else future.exception()

    # ------------------------------------------------------------ internals
    def _main(self) -> None:
        while True:
            job = self._deferred.popleft() if self._deferred else self._jobs.get()
            self._run(job, nested=False)
            if job.last:
                return

    def _run(self, job: _Job, *, nested: bool) -> None:
        if nested and (job.top_level or job.last):
            self._deferred.append(job)  # after the fetch or callback that runs now
            return
        try:
            result = job.call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller awaiting it
            if job.future is None:
                log.warning("librdkafka: a queued call failed: %r", exc)
            else:
                self._settle(job.future, None, exc)
        else:
            if job.future is not None:
                self._settle(job.future, result, None)

    def _settle(self, future: asyncio.Future[Any], result: Any,
                exc: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return  # the caller was cancelled
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits the result any more
