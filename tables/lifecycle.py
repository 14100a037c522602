"""Start/stop plumbing shared by every long-running part (agents, monitors, readers).

Each part is an async context manager whose ``stop`` is harmless twice and releases
everything even when one step fails: these helpers are that contract, written once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, Self

__all__ = ["Service", "cancel_and_wait", "close_all"]


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
