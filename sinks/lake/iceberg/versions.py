"""Which snapshot last changed each day of a table: what an incremental copy compares.

Contract: :func:`day_versions` reads the manifests of one snapshot and gives, per day it
holds, the id of the snapshot that added the day's newest data file (highest data
sequence number; a live file keeps the id of the snapshot that added it). A compaction
replaces a day's files wholesale, so a day's version changes exactly when a snapshot
rewrote it; a reader that copied a day at version V (the warehouse load,
onepipe.sinks.warehouse) needs to copy it again only when its version is no longer V.
A day another engine shrank by deleting files only (no file added) keeps its version:
onepipe never does that, and a full load covers it.
"""

from __future__ import annotations

from collections.abc import Collection

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from onepipe.sinks.lake.iceberg.snapshots import day_of_partition

__all__ = ["day_versions"]


def day_versions(table: Table, snapshot: Snapshot | None,
                 days: Collection[str] | None = None) -> dict[str, int]:
    """``YYYY-MM-DD`` -> id of the snapshot that last wrote the day, in day order."""
    if snapshot is None:
        return {}
    newest: dict[str, tuple[int, int]] = {}
    for manifest in snapshot.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            day = day_of_partition(entry.data_file.partition[0])
            if days is not None and day not in days:
                continue
            seq = entry.sequence_number if entry.sequence_number is not None else 0
            if entry.snapshot_id is not None and (day not in newest or seq > newest[day][0]):
                newest[day] = (seq, entry.snapshot_id)
    return {day: newest[day][1] for day in sorted(newest)}
