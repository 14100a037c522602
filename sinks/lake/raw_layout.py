"""Where things live in the lake, and how to read positions back from names.

``raw/<topic>/partition=<p>/date=<YYYY-MM-DD>/hour=<HH>/<first>-<last>.parquet``

Every raw file holds one *contiguous* offset range of one partition (``first`` to
``last`` inclusive, zero-padded to 20 digits so names sort by offset). That is what lets
the lake itself answer "what is archived" without reading any file: the record count of a
file is ``last - first + 1``, the next offset to archive is the highest ``last`` + 1, and a
gap between files is a gap in the archive.

Raw files are placed by the Kafka record timestamp (UTC). A flush is split wherever the
hour changes in offset order, so each file stays contiguous; timestamps that jump back
and forth across an hour boundary only make more, smaller files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

RAW = "raw"
OFFSET_DIGITS = 20
_RAW_FILE = re.compile(
    r"^raw/(?P<topic>[^/]+)/partition=(?P<partition>\d+)/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"hour=(?P<hour>\d{2})/(?P<first>\d{20})-(?P<last>\d{20})\.parquet$"
)


@dataclass(frozen=True, slots=True, order=True)
class RawFile:
    """One raw Parquet file, as its path describes it."""

    #: Kafka topic.
    topic: str
    #: Kafka partition.
    partition: int
    #: First offset in the file (inclusive).
    first: int
    #: Last offset in the file (inclusive).
    last: int
    #: UTC day of the records' Kafka timestamps, ``YYYY-MM-DD``.
    date: str
    #: UTC hour, 0-23.
    hour: int

    @property
    def records(self) -> int:
        return self.last - self.first + 1

    @property
    def path(self) -> str:
        return raw_file_path(self.topic, self.partition, self.date, self.hour, self.first,
                             self.last)


def raw_topic_prefix(topic: str) -> str:
    return f"{RAW}/{topic}/"


def raw_partition_prefix(topic: str, partition: int) -> str:
    return f"{RAW}/{topic}/partition={partition}/"


def raw_file_path(topic: str, partition: int, date: str, hour: int, first: int,
                  last: int) -> str:
    return (f"{raw_partition_prefix(topic, partition)}date={date}/hour={hour:02d}/"
            f"{first:0{OFFSET_DIGITS}d}-{last:0{OFFSET_DIGITS}d}.parquet")


def parse_raw_path(path: str) -> RawFile | None:
    """The file a raw path names, or None for anything else (temp files, manifests)."""
    match = _RAW_FILE.match(path)
    if match is None:
        return None
    return RawFile(
        topic=match["topic"], partition=int(match["partition"]), first=int(match["first"]),
        last=int(match["last"]), date=match["date"], hour=int(match["hour"]),
    )


#: Kafka timestamps are whatever producers set; these bound the buckets a file can get.
_FIRST_MS = 0  # 1970-01-01T00:00Z; Kafka's "no timestamp" is -1
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def hour_bucket(timestamp_ms: int) -> tuple[str, int]:
    """(UTC date, UTC hour) of a Kafka timestamp in milliseconds.

    Timestamps before 1970 (including Kafka's -1, "none") go to 1970-01-01 hour 00 and
    those past year 9999 to 9999-12-31 hour 23: one producer's odd clock must not stop
    its partition's archive. The exact timestamp stays in the file's rows.
    """
    clamped = min(max(timestamp_ms, _FIRST_MS), _LAST_MS)
    moment = datetime.fromtimestamp(clamped / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.hour


def hour_segments(timestamps_ms: Sequence[int]) -> list[tuple[int, int, str, int]]:
    """Split records (in offset order) into runs of one hour: (start, stop, date, hour).

    ``stop`` is exclusive. Runs are contiguous and cover every index exactly once.
    """
    segments: list[tuple[int, int, str, int]] = []
    start = 0
    current: tuple[str, int] | None = None
    # Bucket boundaries are compared in whole hours, so most records cost one division.
    current_hour = None
    for index, ts in enumerate(timestamps_ms):
        hour_number = min(max(ts, _FIRST_MS), _LAST_MS) // 3_600_000
        if hour_number != current_hour:
            if current is not None:
                segments.append((start, index, current[0], current[1]))
            start, current_hour, current = index, hour_number, hour_bucket(ts)
    if current is not None:
        segments.append((start, len(timestamps_ms), current[0], current[1]))
    return segments


def next_offset(files: Sequence[RawFile]) -> int | None:
    """The offset after the highest archived one, or None when nothing is archived."""
    return max((f.last for f in files), default=-1) + 1 if files else None


def offset_gaps(files: Sequence[RawFile]) -> list[tuple[int, int]]:
    """Missing offset ranges (inclusive) between files of one partition, and overlaps.

    An overlap (a range archived twice) is reported as a negative-length gap
    ``(first, previous_last)`` so callers can tell both defects apart from the numbers.
    """
    gaps: list[tuple[int, int]] = []
    ordered = sorted(files, key=lambda f: (f.first, f.last))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after.first > before.last + 1:
            gaps.append((before.last + 1, after.first - 1))
        elif after.first <= before.last:
            gaps.append((after.first, before.last))
    return gaps
