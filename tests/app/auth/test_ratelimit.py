"""The per-token bucket, on the test's own clock."""

from __future__ import annotations

import pytest

from onepipe.app.auth import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_then_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    buckets = TokenBuckets(2.0, 4, clock)
    assert [buckets.take("ci") for _ in range(4)] == [0, 0, 0, 0]
    assert buckets.take("ci") == 1  # 0.5 s to the next request, rounded up
    assert buckets.take("other") == 0  # one bucket per token
    clock.now += 0.5
    assert buckets.take("ci") == 0 and buckets.take("ci") == 1
    clock.now += 100  # idle: back to the burst, never beyond
    assert [buckets.take("ci") for _ in range(5)] == [0, 0, 0, 0, 1]


def test_a_slow_rate_says_how_long_and_the_default_burst_is_twice_the_rate() -> None:
    clock = Clock()
    slow = TokenBuckets(0.1, None, clock)
    assert slow.burst == 1
    assert slow.take("ci") == 0 and slow.take("ci") == 10
    clock.now += 9.5
    assert slow.take("ci") == 1  # refused requests cost nothing
    clock.now += 0.5
    assert slow.take("ci") == 0
    assert TokenBuckets(50, None, clock).burst == 100
    with pytest.raises(ValueError, match="above 0"):
        TokenBuckets(0, None, clock)
