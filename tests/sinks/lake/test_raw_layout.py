"""Raw lake paths: names sort by offset and describe their contents exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from onepipe.sinks.lake.raw_layout import (
    RawFile,
    hour_bucket,
    hour_segments,
    next_offset,
    offset_gaps,
    parse_raw_path,
    raw_file_path,
)


def test_path_round_trip_and_sorting_by_offset() -> None:
    path = raw_file_path("widgets", 3, "2026-11-26", 7, 9, 120)
    assert path == ("raw/widgets/partition=3/date=2026-11-26/hour=07/"
                    "00000000000000000009-00000000000000000120.parquet")
    parsed = parse_raw_path(path)
    assert parsed == RawFile("widgets", 3, 9, 120, "2026-11-26", 7)
    assert parsed is not None and parsed.records == 112 and parsed.path == path
    assert raw_file_path("t", 0, "d", 0, 9, 9) < raw_file_path("t", 0, "d", 0, 10, 10)


def test_other_names_are_not_raw_files() -> None:
    assert parse_raw_path("raw/w/partition=0/date=2026-11-26/hour=07/.x.tmp-1") is None
    assert parse_raw_path("clean/w/date=2026-11-26/v1/part.parquet") is None


def test_hour_bucket_is_utc() -> None:
    assert hour_bucket(0) == ("1970-01-01", 0)
    assert hour_bucket(1_764_151_200_000) == ("2025-11-26", 10)


@given(st.lists(st.integers(0, 4 * 3_600_000), max_size=60))
def test_segments_cover_every_record_once_and_share_one_hour(timestamps: list[int]) -> None:
    segments = hour_segments(timestamps)
    covered = [i for start, stop, _, _ in segments for i in range(start, stop)]
    assert covered == list(range(len(timestamps)))
    for start, stop, date, hour in segments:
        assert stop > start
        assert {hour_bucket(t) for t in timestamps[start:stop]} == {(date, hour)}


def test_next_offset_and_gaps() -> None:
    files = [RawFile("t", 0, 0, 9, "d", 0), RawFile("t", 0, 10, 19, "d", 0),
             RawFile("t", 0, 25, 30, "d", 1)]
    assert next_offset(files) == 31
    assert next_offset([]) is None
    assert offset_gaps(files) == [(20, 24)]
    assert offset_gaps([*files, RawFile("t", 0, 28, 40, "d", 1)]) == [(20, 24), (28, 30)]


def test_timestamps_outside_the_calendar_are_clamped_not_fatal() -> None:
    assert hour_bucket(-1) == ("1970-01-01", 0)  # Kafka's "no timestamp"
    assert hour_bucket(253_402_300_800_000) == ("9999-12-31", 23)  # year 10000
    assert hour_segments([-5, 0, 10**18]) == [(0, 2, "1970-01-01", 0),
                                             (2, 3, "9999-12-31", 23)]
