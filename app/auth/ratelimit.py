"""Per-token rate limit: a token bucket per token name.

Each token may send ``rate`` requests a second on average and ``burst`` at once. A
request over the limit is refused (429) with the seconds until the bucket holds one
request again; refused requests cost nothing, so a client that honours ``Retry-After``
gets through next time. Buckets are per process: with N workers behind a balancer a
token may send up to N times the rate in all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """One bucket per name; ``clock`` (monotonic seconds) is injectable for tests."""

    __slots__ = ("_buckets", "_clock", "burst", "rate")

    def __init__(self, rate: float, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be above 0 requests a second, got {rate}")
        self.rate = rate
        #: Twice the rate by default: a client may send a second's worth again at once
        #: after a pause, but no more.
        self.burst = burst if burst is not None else max(1, math.ceil(2 * rate))
        self._clock = clock
        #: name -> [requests available, when that was computed]
        self._buckets: dict[str, list[float]] = {}

    def take(self, name: str) -> int:
        """0 when ``name`` may send this request (it is counted); else the whole
        seconds (at least 1) until it may send one."""
        now = self._clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = [float(self.burst), now]
        level = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if level >= 1.0:
            bucket[0] = level - 1.0
            return 0
        bucket[0] = level
        return max(1, math.ceil((1.0 - level) / self.rate))
