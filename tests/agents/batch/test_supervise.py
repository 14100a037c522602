"""supervise(): the backoff doubles while a failure persists and starts over after a
minute of work (a clock and a sleep injected: no time passes)."""

from __future__ import annotations

import asyncio

import pytest

from onepipe.agents.batch.supervise import supervise


async def test_the_backoff_doubles_then_starts_over_after_a_minute_of_work() -> None:
    clock = 0.0
    waits: list[float] = []
    # How long each consume() runs before it fails; the last one ends the test.
    runs = iter([0.0, 0.0, 0.0, 120.0, 0.0, 5.0])

    async def consume() -> None:
        nonlocal clock
        ran = next(runs, None)
        if ran is None:
            raise asyncio.CancelledError
        clock += ran
        raise RuntimeError("broker away")

    async def recover() -> None:
        pass

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with pytest.raises(asyncio.CancelledError):
        await supervise(consume, recover, "test agent", "restarting", clock=lambda: clock,
                        sleep=sleep)
    # 1, 2, 4; then a failure after two minutes of work waits 1 again; then 2, 4.
    assert waits == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]
