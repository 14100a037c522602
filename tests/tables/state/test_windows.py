"""Windows: which hold a time, and the late rule (property tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onepipe.schemas.errors import ConfigError
from onepipe.tables.state.windows import Window, WindowSpec, from_ms, hopping, to_ms, tumbling

times = st.integers(min_value=-(10**13), max_value=10**13)
steps = st.integers(min_value=1, max_value=10**7)


@given(times, steps, st.integers(min_value=1, max_value=12))
def test_a_time_is_in_exactly_size_over_step_hopping_windows(t: int, step: int, n: int) -> None:
    spec = WindowSpec(step * n, step)
    starts = spec.starts(t)
    assert len(starts) == n
    assert all(s <= t < s + spec.size_ms and s % step == 0 for s in starts)
    # and in no other window starting at a multiple of the step
    assert starts[0] - step + spec.size_ms <= t
    assert starts[-1] + step > t


@given(times, times, steps)
def test_tumbling_windows_partition_time(a: int, b: int, size: int) -> None:
    spec = WindowSpec(size, size)
    (wa,), (wb,) = spec.starts(a), spec.starts(b)
    same = wa == wb
    assert same == (a // size == b // size)
    if same:
        assert wa <= min(a, b) and max(a, b) < wa + size


@given(times, steps, st.integers(min_value=0, max_value=10**7), times)
def test_open_starts_are_exactly_the_open_windows(t: int, step: int, grace: int,
                                                  stream: int) -> None:
    spec = WindowSpec(step * 3, step)
    stream = max(stream, t)
    open_starts = spec.open_starts(grace, stream)  # a range: `in` is O(1), never listed
    for s in spec.starts(t):
        assert (s in open_starts) == spec.is_open(s, grace, stream)
        assert spec.is_open(s, grace, stream) == (s > spec.last_closed_start(grace, stream))


def test_window_times_are_utc_datetimes() -> None:
    spec = tumbling(timedelta(hours=1))
    start = datetime(2026, 3, 1, 14, tzinfo=UTC)
    t = to_ms(start + timedelta(minutes=5))
    assert spec.window(spec.starts(t)[0]) == Window(start, start + timedelta(hours=1))
    assert from_ms(to_ms(start)) == start
    with pytest.raises(ConfigError, match="timezone"):
        to_ms(datetime(2026, 3, 1))  # noqa: DTZ001 - the naive datetime is the point


def test_bad_window_specs_are_refused() -> None:
    with pytest.raises(ConfigError, match="multiple"):
        hopping(timedelta(minutes=10), timedelta(minutes=3))
    with pytest.raises(ConfigError, match="positive"):
        tumbling(timedelta(0))
    with pytest.raises(ConfigError, match="whole milliseconds"):
        tumbling(timedelta(microseconds=1500))
