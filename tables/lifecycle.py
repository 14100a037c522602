"""Start/stop plumbing shared by every long-running part (agents, monitors, readers).

Each part is an async context manager whose ``stop`` is harmless twice and releases
everything even when one step fails: these helpers are that contract, written once.
Child processes (archive encoders, the embedded broker) follow two rules, also here: a
stop signal meant for the worker never reaches them (the worker stops them itself, after
its last use of them), and they never outlive the worker (a ``kill -9`` runs no cleanup).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any, Protocol, Self

__all__ = ["Service", "cancel_and_wait", "close_all", "die_with_parent",
           "stop_signals_blocked", "unblock_stop_signals"]

#: prctl(2) option: the signal a process gets when the thread that started it exits.
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a child process: receive ``sig`` when its parent (pid ``parent``) dies (Linux).

    The kernel ties this to the *thread* that started the child: start children from a
    thread that lives as long as the process (the main thread, the event loop's). A
    parent already gone before the call is caught by comparing ``parent``.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread while it starts child processes.

    Why: a child inherits the mask, so a Ctrl-C to the process group while a child is
    still importing (before it can ignore the signal) cannot kill it half-started. A
    signal that arrives meanwhile waits and reaches this process when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unblock_stop_signals() -> None:
    """In a child started under :func:`stop_signals_blocked` that must still obey stop
    signals itself (one that does not set its own handling, such as the embedded
    broker): unblock them, in its ``preexec_fn``."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


class _Closable(Protocol):
    async def stop(self) -> None: ...


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished; its cancellation is
    swallowed, any other exception it ends with is raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def close_all(*clients: _Closable | None) -> None:
    """``await client.stop()`` for each client in order; all are stopped even if one
    fails (the first failure is raised after the rest are stopped)."""
    failure: BaseException | None = None
    for client in clients:
        if client is None:
            continue
        try:
            await client.stop()
        except BaseException as exc:  # noqa: BLE001 - re-raised once the rest are stopped
            failure = failure or exc
    if failure is not None:
        raise failure


class Service:
    """``async with part:`` runs ``start()`` and ``stop()``; subclasses define both."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
