"""The clean lake as a ``verify`` source: the topic's Iceberg table at one snapshot.

Contract: see onepipe.agents.verify.sources (the protocol and the clean-lake entry). The
snapshot is resolved once per source (the head, or ``as_of``: a snapshot id or an ISO
time); each day's data files come from Iceberg's scan planning of that snapshot and are
read one at a time (local lake in place, S3 through ``cache_dir``). Files of the head can
vanish only once a newer snapshot exists and this one expired: the read then starts over
from the new head; a named snapshot that expired is an error (it cannot be re-read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from onepipe.agents.verify.sources import A, ArrowDays, scan_parquet
from onepipe.schemas.errors import CompactionError, LakeObjectNotFound
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.sinks.lake.iceberg import day_files, open_catalog, resolve_snapshot, watermark_of
from onepipe.sinks.lake.local_copy import fetch_local
from onepipe.sinks.lake.store import LakeStore

__all__ = ["CleanLakeSource", "PinnedSnapshot"]

_READ_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class PinnedSnapshot:
    """What a clean-lake read is pinned to."""

    #: Snapshot id (None: no table or no snapshot yet).
    snapshot_id: int | None
    #: ``YYYY-MM-DD`` -> lake paths of the day's data files, in order.
    days: Mapping[str, tuple[str, ...]]
    #: The raw watermark the snapshot consumed (partition -> next offset).
    watermark: Mapping[int, int]


class CleanLakeSource(ArrowDays):
    """The clean lake through Iceberg; see the module contract."""

    def __init__(self, view: TopicView, lake: LakeStore, cache_dir: Path | None = None,
                 name: str = "clean", *, catalog_uri: str = "",
                 as_of: int | str | None = None) -> None:
        super().__init__(view)
        self.lake, self.cache_dir, self.name = lake, cache_dir, name
        self.catalog_uri, self.as_of = catalog_uri, as_of
        self._pinned: PinnedSnapshot | None = None

    async def pinned(self, *, fresh: bool = False) -> PinnedSnapshot:
        """The snapshot this source reads (resolved once; ``fresh`` resolves again)."""
        if self._pinned is None or fresh:
            self._pinned = await asyncio.to_thread(self._pin)
        return self._pinned

    async def watermark(self) -> Mapping[int, int]:
        return (await self.pinned()).watermark

    def _pin(self) -> PinnedSnapshot:
        catalog = open_catalog(self.catalog_uri, self.lake)
        try:
            table = catalog.load(self.view.meta.topic)
            snapshot = None if table is None else resolve_snapshot(table, self.as_of)
            if table is None or snapshot is None:
                return PinnedSnapshot(None, {}, {})
            days = {day: tuple(catalog.lake_path(t.file.file_path) for t in tasks)
                    for day, tasks in day_files(table, snapshot).items()}
            return PinnedSnapshot(snapshot.snapshot_id, days, watermark_of(table, snapshot))
        finally:
            catalog.close()

    async def _day_names(self) -> list[str]:
        return sorted((await self.pinned()).days)

    async def _scan(self, day: str, start: Callable[[], A]) -> A:
        for attempt in range(_READ_ATTEMPTS):
            pinned = await self.pinned(fresh=attempt > 0)
            into = start()
            files = pinned.days.get(day)
            if files is None:
                return into
            try:
                for path in files:  # one file in memory (or cached) at a time
                    source = await self._local(path)
                    try:
                        await asyncio.to_thread(scan_parquet, source, self.view, into)
                    except FileNotFoundError as exc:
                        raise LakeObjectNotFound(f"{path!r} vanished from {self.lake.url}"
                                                 ) from exc
            except LakeObjectNotFound:
                if self.as_of is not None:
                    raise  # a named snapshot that expired: starting over would change it
                continue  # expired while we read: start over from the new head
            return into
        raise CompactionError(
            f"the clean files of {self.view.meta.topic!r} day {day} kept disappearing while "
            f"verify read them from {self.lake.url} ({_READ_ATTEMPTS} attempts); raise "
            "ONEPIPE_COMPACT_RETENTION_SECONDS")

    async def _local(self, path: str) -> Path | pa.Buffer:
        local = await fetch_local(self.lake, path, self.cache_dir)
        if local is not None:
            return local
        return pa.py_buffer(await self.lake.get(path))
