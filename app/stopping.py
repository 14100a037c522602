"""A bounded stop: a worker exits within ``ONEPIPE_STOP_TIMEOUT_SECONDS`` of a stop signal.

Why a bound at all: Kubernetes gives a pod 30 s between SIGTERM and SIGKILL, ``docker
stop`` 10 s. A worker whose broker is gone retries it for ever (aiokafka reconnects,
Faust's consumer thread waits on a fetch), and a SIGKILL then skips every flush. So the
worker stops its own exactly-once parts first (they flush and commit in parallel), then
lets Faust stop the rest; if the whole stop has not ended when the bound expires, the
watchdog thread below logs what was still stopping, stops every child process (archive
encoders, the embedded broker of ``onepipe dev``) and ends the process.

Why that loses nothing: no part takes its position from Kafka's committed offsets alone
(the archive resumes after the lake's last file, dedup and checksum tables from their
own applied offsets, sinks from the positions in their database), so what a cut-short
stop did not flush or commit is read again after the restart, and found already written
where it was.

The watchdog is a thread, not a task: an event loop blocked in a stuck stop cannot run
a timer of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

__all__ = ["EXIT_STOP_TIMEOUT", "STOP_SIGNALS", "StopWatchdog", "child_pids", "interrupts_kept",
           "running", "signals_restored", "stop_processes"]

#: The exit status of a worker whose stop was cut short by the bound.
EXIT_STOP_TIMEOUT = 3

#: The signals Faust's worker handles (stop, and its two debugging signals).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

#: Seconds between SIGTERM and SIGKILL when the watchdog stops child processes.
_CHILD_GRACE = 0.5


def child_pids(pid: int | None = None) -> list[int]:
    """Pids of the direct children of ``pid`` (this process by default), every thread's."""
    pid = os.getpid() if pid is None else pid
    found: list[int] = []
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():  # not Linux: nothing to look at
        return found
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in (task / "children").read_text().split())
    return sorted(set(found))


def stop_processes(pids: list[int], grace: float = _CHILD_GRACE) -> None:
    """SIGTERM ``pids``, then SIGKILL whichever is still there after ``grace`` seconds."""
    alive = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if running(pid)]
        if alive:
            time.sleep(0.02)  # a thread polling other processes' exit; no loop to await
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (reaping it is its parent's business)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class StopWatchdog:
    """Ends the process ``timeout`` seconds after :meth:`arm` unless :meth:`disarm` came first.

    ``pending`` names what was still stopping when the bound expired (for the log line
    that says what was left undone); ``exit`` is ``os._exit`` except in tests.
    """

    def __init__(self, timeout: float, pending: Callable[[], list[str]],
                 exit: Callable[[int], object] = os._exit) -> None:  # noqa: A002
        self.timeout = timeout
        self._pending = pending
        self._exit = exit
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.reason = ""

    @property
    def armed(self) -> bool:
        return self._thread is not None

    def arm(self, reason: str) -> None:
        """Start the clock (first call only: a second Ctrl-C does not extend the bound)."""
        if self._thread is not None:
            return
        self.reason = reason
        log.info("stopping (%s): at most %.1f s (ONEPIPE_STOP_TIMEOUT_SECONDS)", reason,
                 self.timeout)
        self._thread = threading.Thread(target=self._watch, name="onepipe-stop-watchdog",
                                        daemon=True)
        self._thread.start()

    def disarm(self) -> None:
        """The stop ended in time: the process exits normally."""
        self._done.set()

    def _watch(self) -> None:
        if self._done.wait(self.timeout):
            return
        try:
            pending = ", ".join(self._pending()) or "the Faust worker's own services"
        except Exception as exc:  # noqa: BLE001 - describing must not keep the process alive
            pending = f"(could not tell: {exc!r})"
        children = child_pids()
        log.error("stop after %s did not finish within %.1f s (ONEPIPE_STOP_TIMEOUT_SECONDS); "
                  "still stopping: %s. Exiting now%s: what was not flushed or committed is "
                  "read again after a restart (positions come from the lake and the "
                  "state stores, not from Kafka's commits).", self.reason, self.timeout,
                  pending, f" and stopping {len(children)} child process(es)"
                  if children else "")
        stop_processes(children)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        sys.stderr.flush()
        self._exit(EXIT_STOP_TIMEOUT)


@contextlib.contextmanager
def interrupts_kept() -> Iterator[None]:
    """Start-up before Faust handles stop signals itself: a Ctrl-C is never lost.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; raised in
    a weakref or garbage-collector callback or an at-fork hook, it is printed as
    "Exception ignored" and dropped, and start-up went on as if Ctrl-C had never been
    pressed (``make dev`` interrupted 2.3 s in ran on). Here the handler also records it,
    and leaving the block raises it if it was swallowed. A Ctrl-C the process was started
    to ignore (a background job) stays ignored.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        pressed.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


@contextlib.contextmanager
def signals_restored(*signums: int) -> Iterator[None]:
    """After the block, ``signums`` are handled as before it, and the wakeup fd is too.

    Why: the worker's event loop installs handlers of its own (``add_signal_handler``),
    and uvloop's stay installed after the loop closed (its ``remove_signal_handler`` does
    nothing unless the loop runs), bound to the closed loop: a Ctrl-C or SIGTERM after
    the worker stopped - ``onepipe dev`` stopping its broker, the interpreter waiting
    for threads at exit - was swallowed. asyncio's loop puts the defaults back itself.
    A handler Python did not set (``getsignal`` None) comes back as Python's default,
    as uvloop's own removal does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals, and only it may set them
        return
    saved = {signum: signal.getsignal(signum) for signum in signums}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is None:
                handler = (signal.default_int_handler if signum == signal.SIGINT
                           else signal.SIG_DFL)
            signal.signal(signum, handler)
        # A wakeup fd closed meanwhile (an embedding program's) cannot come back; an
        # error here would hide how the worker ended.
        with contextlib.suppress(OSError, ValueError):
            signal.set_wakeup_fd(wakeup)
