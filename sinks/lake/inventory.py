"""What the raw lake holds per partition and day, from file names alone.

Raw file names carry their offset range (onepipe.sinks.lake.raw_layout), so the inventory needs one
listing and no file reads: records = sum of range lengths, gaps = holes between ranges.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from onepipe.sinks.lake.raw_layout import RawFile, offset_gaps, parse_raw_path, raw_topic_prefix
from onepipe.sinks.lake.store import LakeStore


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """Raw files of one partition on one day."""

    partition: int
    date: str
    files: int
    records: int
    first_offset: int
    last_offset: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Inventory:
    """The raw lake of one topic."""

    topic: str
    rows: list[InventoryRow]
    #: partition -> missing (or doubly archived, as negative-length) offset ranges.
    gaps: dict[int, list[tuple[int, int]]]
    #: Every raw file, sorted by partition and offset.
    files: list[RawFile]

    @property
    def records(self) -> int:
        return sum(row.records for row in self.rows)


async def raw_inventory(lake: LakeStore, topic: str) -> Inventory:
    """List ``raw/<topic>/`` and summarise it."""
    sizes: dict[RawFile, int] = {}
    for obj in await lake.list(raw_topic_prefix(topic)):
        parsed = parse_raw_path(obj.path)
        if parsed is not None:
            sizes[parsed] = obj.size
    files = sorted(sizes, key=lambda f: (f.partition, f.first, f.last))
    groups: dict[tuple[int, str], list[RawFile]] = defaultdict(list)
    by_partition: dict[int, list[RawFile]] = defaultdict(list)
    for f in files:
        groups[(f.partition, f.date)].append(f)
        by_partition[f.partition].append(f)
    rows = [
        InventoryRow(
            partition=partition, date=date, files=len(group),
            records=sum(f.records for f in group),
            first_offset=min(f.first for f in group), last_offset=max(f.last for f in group),
            bytes=sum(sizes[f] for f in group),
        )
        for (partition, date), group in sorted(groups.items())
    ]
    gaps = {p: g for p, fs in by_partition.items() if (g := offset_gaps(fs))}
    return Inventory(topic, rows, gaps, files)
