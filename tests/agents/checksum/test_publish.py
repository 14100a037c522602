"""The checksum agent's held publications (onepipe.agents.checksum.publish), without a
broker: a batch's acks and commit settle one batch later, in order; a failed ack raises
and is dropped; a settle a stop cancels leaves its batch held, and the stop's drain
commits it (its futures not cancelled by the cancellation)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from onepipe.agents.checksum.open_tables import ChecksumMetrics
from onepipe.agents.checksum.publish import Publications

A, B = TopicPartition("t.unique", 0), TopicPartition("t", 1)


class Commits:
    def __init__(self) -> None:
        self.made: list[dict[TopicPartition, int]] = []

    async def __call__(self, offsets: dict[TopicPartition, int]) -> None:
        self.made.append(dict(offsets))


class Ack(asyncio.Future[Any]):
    """An ack future that says when something started waiting for it (``asyncio.wait``
    adds a done callback), so a test awaits that instead of guessing a loop turn."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = asyncio.Event()

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        self.awaited.set()
        super().add_done_callback(fn, context=context)


def acks(n: int) -> list[asyncio.Future[Any]]:
    return [Ack() for _ in range(n)]


async def test_a_batch_settles_when_the_next_one_is_held() -> None:
    metrics, commits = ChecksumMetrics(), Commits()
    held = Publications(metrics)
    first = acks(2)
    for f in first:
        f.set_result(None)
    await held.hold(first, {A: 10}, commits)
    assert commits.made == [] and metrics.published == 0 and not held.settled
    await held.hold(acks(0), {}, commits)  # an empty fetch settles what is held
    assert commits.made == [{A: 10}] and metrics.published == 2 and held.settled


async def test_a_failed_ack_raises_and_commits_nothing() -> None:
    metrics, commits = ChecksumMetrics(), Commits()
    held = Publications(metrics)
    sent = acks(2)
    sent[0].set_result(None)
    sent[1].set_exception(KafkaTimeoutError("no ack"))
    await held.hold(sent, {A: 10}, commits)
    with pytest.raises(KafkaTimeoutError):
        await held.hold([], {B: 3}, commits)
    assert commits.made == [] and metrics.published == 0
    await held.drop(1.0)  # the restart
    assert held.settled


async def test_a_restart_waits_for_sends_in_flight_before_it_forgets_them() -> None:
    # A figure still in flight could land after a new owner's republish of its day.
    metrics, commits = ChecksumMetrics(), Commits()
    held = Publications(metrics)
    in_flight = Ack()
    await held.hold([in_flight], {A: 10}, commits)
    dropping = asyncio.ensure_future(held.drop(60.0))
    await in_flight.awaited.wait()
    assert not dropping.done()  # waiting for the send to land
    in_flight.set_result(None)
    await dropping
    assert held.settled and commits.made == []


async def test_a_settle_cut_short_by_a_stop_is_settled_by_the_drain() -> None:
    metrics, commits = ChecksumMetrics(), Commits()
    held = Publications(metrics)
    slow = Ack()
    await held.hold([slow], {A: 10}, commits)
    # The loop is cancelled (a stop) while the next fetch's step waits for the ack.
    step = asyncio.ensure_future(held.hold([], {B: 3}, commits))
    await slow.awaited.wait()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert not slow.cancelled() and not held.settled
    slow.set_result(None)
    await held.settle(commits)  # the stop's drain
    assert commits.made == [{A: 10}, {B: 3}] and metrics.published == 1 and held.settled
