"""The raw lake's side of ``verify``: counts per day and the archive's own invariants.

Raw files hold every Kafka record (duplicates and superseded versions included), so
their counts are not comparable with the deduplicated figures of the other systems.
What must hold instead (:func:`check_raw`):

- **Offsets are contiguous** per partition from the first archived offset to the last:
  every gap (a missing range: a lost or removed file) and every overlap (a range
  archived twice) is a finding, named with its partition, offsets and the day(s) it
  lies in - the partition-time days of the rows on either side of it (a removed file's
  own rows are gone; its neighbours place it).
- **Nothing merged is lost**: offsets the clean snapshot says it merged (its watermark)
  are still archived, so a removed *last* file shows too. (A removed *first* file of a
  partition looks like an archive that started later: Kafka retention makes that
  legitimate, and nothing records where the archive started.)
- **A file holds what its name says**: ``last - first + 1`` rows, offsets ``first`` to
  ``last``. So the raw record count of a partition is the sum of its file ranges.
- **Distinct keys per day ≥ the clean lake's**: every clean winner of day D comes from a
  decodable raw row of day D (a cheap cross-check, made by onepipe.agents.verify.compare).

Per day (placed by ``partition_time`` with onepipe.schemas.partition_day, exactly like the
compactor; rows without a partition time - undecodable ones, when it is a field - by
their Kafka timestamp, where the raw layout put them): records, undecodable records,
decoded records lacking a key field or the time (left out of clean), and distinct keys
of the rest. Distinct keys are counted over key hashes (8 bytes a row, no Python object
per row); every file is read for its few needed columns only, a batch at a time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from onepipe.agents.verify.sources import BATCH_ROWS, DayRange
from onepipe.schemas.checksum import row_hashes
from onepipe.schemas.errors import LakeObjectNotFound
from onepipe.schemas.partition_day import day_name, partition_days
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.local_copy import fetch_local
from onepipe.sinks.lake.raw_layout import RawFile, offset_gaps
from onepipe.sinks.lake.store import LakeStore

__all__ = ["GapLocator", "OffsetFinding", "RawDay", "RawReport", "check_raw"]

_DECODE_ERROR = "_kafka_decode_error"
_OFFSET = "_kafka_offset"
_TIMESTAMP = "_kafka_timestamp"


@dataclass(frozen=True, slots=True)
class RawDay:
    """One day of the raw lake."""

    #: Raw records placed in the day.
    records: int = 0
    #: Of them, values that did not decode.
    undecodable: int = 0
    #: Of them, decoded values lacking a key field or their partition time.
    incomplete: int = 0
    #: Distinct keys among the rest (0 for a topic without key).
    keys: int = 0

    def to_json(self) -> dict[str, int]:
        return {"records": self.records, "undecodable": self.undecodable,
                "incomplete": self.incomplete, "keys": self.keys}


@dataclass(frozen=True, slots=True)
class OffsetFinding:
    """A defect of one partition's archive."""

    #: ``gap`` (offsets missing), ``overlap`` (archived twice) or ``file`` (a file whose
    #: rows do not match its name).
    kind: str
    #: Kafka partition.
    partition: int
    #: First offset concerned (inclusive).
    first: int
    #: Last offset concerned (inclusive).
    last: int
    #: The day(s) it lies in.
    days: tuple[str, ...]
    #: What is wrong, for people.
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "partition": self.partition, "first": self.first,
                "last": self.last, "days": list(self.days), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class RawReport:
    """The raw lake of one topic, as verify sees it."""

    #: Day -> its counts.
    days: dict[str, RawDay]
    #: Gaps, overlaps and mismatched files, in partition and offset order.
    findings: tuple[OffsetFinding, ...]
    #: Raw files read.
    files: int
    #: Partition -> (first, last) archived offset.
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class _FileScan:
    """What one raw file holds: counts per day, first/last row day, offset range."""

    rows: int = 0
    first_offset: int | None = None
    last_offset: int | None = None
    first_day: str | None = None
    last_day: str | None = None
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    key_hashes: dict[str, list[pa.Array]] = field(default_factory=lambda: defaultdict(list))


def _scan_file(source: Path | pa.Buffer, view: TopicView, count_keys: bool) -> _FileScan:
    handle = pq.ParquetFile(source if isinstance(source, Path) else pa.BufferReader(source))
    present = set(handle.schema_arrow.names)
    key_names = list(view.key_spec.schema.names)
    wanted = dict.fromkeys([_OFFSET, _TIMESTAMP, _DECODE_ERROR, view.time_column, *key_names])
    out = _FileScan()
    for batch in handle.iter_batches(batch_size=BATCH_ROWS,
                                     columns=[n for n in wanted if n in present]):
        n = batch.num_rows
        if n == 0:
            continue
        names = batch.schema.names

        def column(name: str, batch: pa.RecordBatch = batch, names: list[str] = names,
                   n: int = n) -> pa.Array:
            return batch.column(name) if name in names else pa.nulls(n, view.column_type(name))

        offsets = column(_OFFSET)
        low, high = pc.min(offsets).as_py(), pc.max(offsets).as_py()
        out.first_offset = low if out.first_offset is None else min(out.first_offset, low)
        out.last_offset = high if out.last_offset is None else max(out.last_offset, high)
        out.rows += n
        placed = partition_days(column(view.time_column))
        days = pc.coalesce(placed, partition_days(column(_TIMESTAMP))).cast(pa.int32())
        first, last = days[0].as_py(), days[n - 1].as_py()
        out.first_day = out.first_day or (day_name(first) if first is not None else None)
        out.last_day = day_name(last) if last is not None else out.last_day
        undecodable = pc.is_valid(column(_DECODE_ERROR))
        complete = pc.is_valid(placed)
        for name in key_names:
            complete = pc.and_(complete, pc.is_valid(column(name)))
        incomplete = pc.and_(pc.invert(undecodable), pc.invert(complete))
        valid = pc.and_(pc.invert(undecodable), complete)
        table = pa.table({"d": days, "u": undecodable.cast(pa.int64()),
                          "i": incomplete.cast(pa.int64())})
        grouped = table.group_by("d").aggregate([("u", "count"), ("u", "sum"), ("i", "sum")])
        for d, total, bad, partial in zip(*(grouped.column(c).to_pylist() for c in
                                            ("d", "u_count", "u_sum", "i_sum")), strict=True):
            counts = out.counts[day_name(d)]
            counts[0] += total
            counts[1] += bad
            counts[2] += partial
        if count_keys and pc.any(valid).as_py():
            kept = pa.Table.from_batches([batch]).filter(valid)
            full = pa.table({name: kept.column(name) if name in kept.column_names
                             else pa.nulls(kept.num_rows, view.column_type(name))
                             for name in key_names})
            hashes = row_hashes(full, view.key_spec)
            kept_days = days.filter(valid)
            for d in pc.unique(kept_days).to_pylist():
                out.key_hashes[day_name(d)].append(hashes.filter(pc.equal(kept_days, d)))
    return out


#: ``locate(partition, first, last)``: the days of those source offsets (() if unknown).
GapLocator = Callable[[int, int, int], Awaitable[tuple[str, ...]]]


async def check_raw(lake: LakeStore, view: TopicView, days: DayRange | None = None,
                    cache_dir: Path | None = None, *, count_keys: bool = True,
                    locate: GapLocator | None = None,
                    merged: Mapping[int, int] | None = None) -> RawReport:
    """Counts per day (``days`` only, or all) and the archive's findings (always all).

    ``locate`` names a gap's days from the source topic (onepipe.agents.verify.stream
    .SourceGapLocator); without it, or when Kafka no longer holds the offsets, a gap is
    named by the days of the rows on either side of it. ``merged`` (the clean snapshot's
    ``raw_merged``: per partition the next offset the compactor has not merged) catches
    a lost *tail*: offsets the compactor merged must still be archived.
    """
    inventory = await raw_inventory(lake, view.meta.topic)
    by_partition: dict[int, list[RawFile]] = defaultdict(list)
    for f in inventory.files:
        by_partition[f.partition].append(f)
    scans: dict[RawFile, _FileScan] = {}
    findings: list[OffsetFinding] = []
    for f in inventory.files:
        try:
            local = await fetch_local(lake, f.path, cache_dir)
            source: Path | pa.Buffer = local if local is not None \
                else pa.py_buffer(await lake.get(f.path))
            scans[f] = await asyncio.to_thread(_scan_file, source, view, count_keys)
        except (LakeObjectNotFound, FileNotFoundError):
            findings.append(OffsetFinding("file", f.partition, f.first, f.last, (f.date,),
                                          f"{f.path} was listed but could not be read"))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    hashes: dict[str, list[pa.Array]] = defaultdict(list)
    for f, scan in scans.items():
        for day, (total, bad, partial) in scan.counts.items():
            held = counts[day]
            held[0] += total
            held[1] += bad
            held[2] += partial
        for day, arrays in scan.key_hashes.items():
            hashes[day].extend(arrays)
        if (scan.rows, scan.first_offset, scan.last_offset) != (f.records, f.first, f.last):
            findings.append(OffsetFinding(
                "file", f.partition, f.first, f.last, _days_of(scan, f),
                f"{f.path} should hold offsets {f.first}-{f.last} ({f.records} rows) but "
                f"holds {scan.rows} rows, offsets {scan.first_offset}-{scan.last_offset}"))
    for partition, files in sorted(by_partition.items()):
        ordered = sorted(files, key=lambda f: (f.first, f.last))
        for first, last in offset_gaps(ordered):
            finding = _offset_finding(partition, first, last, ordered, scans)
            if finding.kind == "gap" and locate is not None:
                exact = await locate(partition, first, last)
                if exact:
                    finding = replace(finding, days=exact)
            findings.append(finding)
    for partition, end in sorted((merged or {}).items()):
        files = sorted(by_partition.get(partition, []), key=lambda f: f.last)
        start = files[-1].last + 1 if files else 0
        if start < end:
            finding = OffsetFinding(
                "gap", partition, start, end - 1,
                _last_day(scans.get(files[-1]), files[-1]) if files else (),
                f"offsets {start}-{end - 1} of partition {partition} were merged into the "
                "clean lake but are not in the raw lake (its last files are missing)")
            exact = await locate(partition, start, end - 1) if locate is not None else ()
            findings.append(replace(finding, days=exact) if exact else finding)
    report_days = {
        day: RawDay(c[0], c[1], c[2],
                    pc.count_distinct(pa.chunked_array(hashes[day], pa.uint64())).as_py()
                    if hashes.get(day) else 0)
        for day, c in sorted(counts.items()) if days is None or day in days}
    ranges = {p: (min(f.first for f in fs), max(f.last for f in fs))
              for p, fs in by_partition.items()}
    findings.sort(key=lambda x: (x.partition, x.first, x.kind))
    return RawReport(report_days, tuple(findings), len(scans), ranges)


def _days_of(scan: _FileScan | None, f: RawFile) -> tuple[str, ...]:
    if scan is None or scan.first_day is None:
        return (f.date,)
    return tuple(sorted({scan.first_day, scan.last_day or scan.first_day}))


def _last_day(scan: _FileScan | None, f: RawFile) -> tuple[str, ...]:
    return (scan.last_day,) if scan is not None and scan.last_day else (f.date,)


def _offset_finding(partition: int, first: int, last: int, ordered: list[RawFile],
                    scans: dict[RawFile, _FileScan]) -> OffsetFinding:
    """A range offset_gaps reported: an overlap if a file holds its first offset, else a gap.

    (offset_gaps gives both as ``(first, last)`` ranges; whether a file covers the range
    is what tells them apart.)
    """
    involved = [f for f in ordered if f.first <= last and f.last >= first]
    if involved:
        days = {d for f in involved for d in _days_of(scans.get(f), f)}
        return OffsetFinding("overlap", partition, first, last, tuple(sorted(days)),
                             f"offsets {first}-{last} of partition {partition} are archived "
                             f"more than once (files {', '.join(f.path for f in involved)})")
    before = max((f for f in ordered if f.last < first), key=lambda f: f.last, default=None)
    after = min((f for f in ordered if f.first > last), key=lambda f: f.first, default=None)
    days_around: set[str] = set()
    if before is not None:
        scan = scans.get(before)
        days_around.add(scan.last_day if scan and scan.last_day else before.date)
    if after is not None:
        scan = scans.get(after)
        days_around.add(scan.first_day if scan and scan.first_day else after.date)
    return OffsetFinding("gap", partition, first, last, tuple(sorted(days_around)),
                         f"offsets {first}-{last} of partition {partition} are not in the "
                         f"raw lake ({last - first + 1} record(s) missing)")
