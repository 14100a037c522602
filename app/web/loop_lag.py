"""How long the worker's event loop was held: ``onepipe_event_loop_lag_seconds`` in /metrics.

Every HTTP request, every agent's batch and every Kafka client of a worker share one event
loop. A step that holds it (a large request validated in one go, an agent's batch planned
without yielding) delays everything else: ``/health`` answers late, a produce request
waits, a consumer misses a heartbeat. This measures it from the inside, so ops see it
without a load test (issue 15's bound: ``/health`` within 100 ms under full load).

Contract:
- A task sleeps :data:`PERIOD` seconds again and again; how much later than asked it woke
  is the lag of that sample (what any callback ready then waited). Nothing is added to
  any request's or record's path; the task costs ~10 wake-ups a second.
- Exported (a :class:`~onepipe.app.context.MetricSource`)::

    onepipe_event_loop_lag_seconds (histogram)       every sample since start
    onepipe_event_loop_lag_max_seconds               longest in the last minute or so

- :meth:`LoopLag.start` on the running loop, :meth:`LoopLag.stop` (harmless twice).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = ["BUCKETS", "PERIOD", "LoopLag"]

#: Seconds between samples: a stall shorter than this may go unseen by one sample.
PERIOD = 0.1
#: Upper bounds of the histogram's buckets, seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Samples per window of the max gauge (the gauge covers the current and last window).
_WINDOW = 300


class LoopLag:
    """The event loop's lag, sampled; see the module docstring."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        #: Samples per bucket (the last one: above every bound).
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self._window_max = [0.0, 0.0]  # the last window's and the current one's
        self._in_window = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def samples(self) -> int:
        return sum(self.counts)

    @property
    def recent_max(self) -> float:
        """The longest lag of the current and the previous window, seconds."""
        return max(self._window_max)

    def record(self, lag: float) -> None:
        """Count one sample of ``lag`` seconds."""
        lag = max(0.0, lag)
        self.counts[bisect.bisect_left(BUCKETS, lag)] += 1
        self.total += lag
        if self._in_window >= _WINDOW:
            self._window_max = [self._window_max[1], 0.0]
            self._in_window = 0
        self._in_window += 1
        self._window_max[1] = max(self._window_max[1], lag)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample(),
                                                                name="onepipe-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample(self) -> None:
        # The clock, not loop.time(): uvloop's counts whole milliseconds, read once a pass
        # (and fires a timer up to a millisecond early by this clock).
        while True:
            asked = time.monotonic() + self.period
            await asyncio.sleep(self.period)
            self.record(max(0.0, time.monotonic() - asked))  # a ms timer may fire early

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "onepipe_event_loop_lag_seconds",
            f"How much later than asked the worker's event loop ran a sample every "
            f"{self.period:g} s: what a request or an agent ready then waited.",
            buckets=buckets, sum_value=self.total)
        yield GaugeMetricFamily(
            "onepipe_event_loop_lag_max_seconds",
            "Longest event-loop lag sampled in the last minute or so.",
            value=self.recent_max)
