"""Time windows of window tables: which windows hold a time, and when one closes. Pure.

Contract:
- Times are epoch milliseconds (a record's partition time). A window holds the times
  ``start <= t < end`` (end exclusive); :class:`Window` shows it as UTC datetimes.
- :func:`tumbling` windows of ``size`` partition time: every time is in exactly one,
  starting at a multiple of ``size`` since the epoch.
- :func:`hopping` windows of ``size`` every ``step`` (``size`` a multiple of ``step``):
  every time is in exactly ``size / step`` of them, starting at multiples of ``step``.
- **The late rule**: a window is open while ``stream_time < end + grace`` (stream time:
  the highest time seen so far in the partition, the record's own included). Since
  stream time only grows record by record, whether a record finds its window open does
  not depend on how records were batched. A window closes (emits, is deleted) once
  ``end + grace <= stream_time``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from onepipe.schemas.errors import ConfigError

__all__ = ["Window", "WindowSpec", "from_ms", "hopping", "to_ms", "tumbling"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(time: datetime) -> int:
    """Epoch milliseconds of an aware datetime (a naive one is refused: which zone?)."""
    if time.tzinfo is None:
        raise ConfigError(f"a window time must be timezone-aware; got {time!r}: use "
                          "datetime(..., tzinfo=UTC)")
    return (time - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class Window:
    """One window: ``start <= time < end``, UTC."""

    #: First instant in the window.
    start: datetime
    #: First instant after it (exclusive).
    end: datetime


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Windows of ``size_ms`` starting every ``step_ms`` (tumbling: equal)."""

    #: Length of a window, ms.
    size_ms: int
    #: Distance between window starts, ms; divides ``size_ms``.
    step_ms: int

    def __post_init__(self) -> None:
        if self.step_ms <= 0 or self.size_ms <= 0 or self.size_ms % self.step_ms:
            raise ConfigError(f"windows of {self.size_ms} ms every {self.step_ms} ms: the "
                              "size and the step must be positive whole milliseconds, the "
                              "size a multiple of the step")

    @property
    def tumbling(self) -> bool:
        """Whether windows do not overlap (each time is in exactly one)."""
        return self.size_ms == self.step_ms

    def starts(self, time_ms: int) -> range:
        """Starts of the windows holding ``time_ms``, ascending (``size/step`` of them)."""
        step = self.step_ms
        last = time_ms - time_ms % step  # floor, negative times too
        return range(last - self.size_ms + step, last + 1, step)

    def is_open(self, start_ms: int, grace_ms: int, stream_time_ms: int | None) -> bool:
        """Whether the window starting at ``start_ms`` still takes records."""
        return stream_time_ms is None or stream_time_ms < start_ms + self.size_ms + grace_ms

    def last_closed_start(self, grace_ms: int, stream_time_ms: int) -> int:
        """Windows starting at or before this are closed at ``stream_time_ms``."""
        return stream_time_ms - self.size_ms - grace_ms

    def open_starts(self, grace_ms: int, stream_time_ms: int) -> range:
        """Starts of every open window that can hold a record already seen (none ends
        after stream time's window), ascending."""
        last = stream_time_ms - stream_time_ms % self.step_ms
        first_open = self.last_closed_start(grace_ms, stream_time_ms) + 1
        first = first_open + (-first_open) % self.step_ms  # round up to a step
        return range(first, last + 1, self.step_ms)

    def window(self, start_ms: int) -> Window:
        """The :class:`Window` starting at ``start_ms``."""
        return Window(from_ms(start_ms), from_ms(start_ms + self.size_ms))


def _ms(span: timedelta, what: str) -> int:
    ms = span // timedelta(milliseconds=1)
    if span <= timedelta(0) or span != timedelta(milliseconds=ms):
        raise ConfigError(f"a window {what} must be positive whole milliseconds; got {span}")
    return ms


def tumbling(size: timedelta) -> WindowSpec:
    """Back-to-back windows of ``size``: each time is in exactly one."""
    size_ms = _ms(size, "size")
    return WindowSpec(size_ms, size_ms)


def hopping(size: timedelta, step: timedelta) -> WindowSpec:
    """Windows of ``size`` starting every ``step``; ``size`` a multiple of ``step``."""
    return WindowSpec(_ms(size, "size"), _ms(step, "step"))
