"""The clean table's state and its commits: one snapshot per compaction run.

Contract:
- :func:`read_state` is what a run plans from: the current snapshot, the table's
  sequence number, the raw-lake watermark that snapshot consumed, and per day the data
  files it holds (lake paths, rows, and pyiceberg's ``DataFile`` s to delete later).
- **The watermark** lives in the snapshot summary, as Kafka Connect's Iceberg sink keeps
  its offsets: :data:`WATERMARK_KEY` is JSON ``{"<partition>": <next raw offset>}``, and
  :data:`RUN_KEY` the run id. A snapshot without it (another engine's commit) inherits
  its parent's: the ancestry is walked back to the newest snapshot that has one.
- :func:`replace_days` commits **one snapshot** (``overwrite``) that deletes every data
  file of the days given and adds their new files, with the new watermark, asserting
  that the table's head is still the snapshot the run planned from. Another commit in
  between makes it raise :class:`~onepipe.schemas.errors.CompactionConflict` (retriable:
  re-plan); nothing it wrote is referenced. So does a new file gone before the commit on a
  table that moved: the winner's sweep may delete the loser's files (they can never be
  published) while the loser still reads their footers. Whole day partitions are
  replaced, so no row-level delete files are ever written.
- :func:`expire` removes snapshots replaced longer than the retention ago (never the
  current one; a head however old is being read when it is replaced);
  :func:`referenced_paths` lists every data file any remaining snapshot references - what
  a sweep must keep. pyiceberg calls block: run them in a thread from async code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import (
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from onepipe.schemas.errors import CompactionConflict, CompactionError
from onepipe.sinks.lake.iceberg.catalog import CleanCatalog, catalog_errors

__all__ = ["RUN_KEY", "WATERMARK_KEY", "DayFiles", "TableState", "day_of_partition",
           "expire", "read_state", "referenced_paths", "replace_days", "table_seq",
           "watermark_of"]

#: Snapshot summary key: the raw-lake watermark a snapshot consumed (JSON).
WATERMARK_KEY = "onepipe.raw-watermark"
#: Snapshot summary key: the compaction run that committed it.
RUN_KEY = "onepipe.run-id"
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class DayFiles:
    """The data files of one day in one snapshot."""

    #: ``YYYY-MM-DD``.
    date: str
    #: Lake paths, sorted (the order rows are sorted across).
    paths: tuple[str, ...]
    #: Rows in all of them.
    rows: int
    #: pyiceberg's entries, to delete them in a later commit.
    files: tuple[DataFile, ...] = field(repr=False, default=())


@dataclass(frozen=True, slots=True)
class TableState:
    """A table as one run plans from it (an absent table is the empty state)."""

    #: The table (None: not created yet).
    table: Table | None = None
    #: The head snapshot (None: no snapshot yet).
    snapshot_id: int | None = None
    #: The table's last sequence number (0: none yet); the next snapshot gets seq + 1.
    seq: int = 0
    #: Kafka partition -> the next raw offset not merged into the table yet.
    watermark: Mapping[int, int] = field(default_factory=dict)
    #: ``YYYY-MM-DD`` -> its files in the head snapshot.
    days: Mapping[str, DayFiles] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.days.values())


def day_of_partition(value: object) -> str:
    """The ``YYYY-MM-DD`` of a day-partition value (days since the epoch)."""
    if isinstance(value, date):
        return value.isoformat()
    return (_EPOCH + timedelta(days=int(value))).isoformat()  # type: ignore[call-overload]


def table_seq(table: Table) -> int:
    """The table's last sequence number (0 before its first snapshot)."""
    # Format 1 tables have none; ours are format 2 (schema.TABLE_PROPERTIES).
    return int(getattr(table.metadata, "last_sequence_number", 0))


def watermark_of(table: Table, snapshot: Snapshot | None) -> dict[int, int]:
    """The watermark ``snapshot`` consumed (its own, or its nearest ancestor's)."""
    while snapshot is not None:
        summary = snapshot.summary
        text = summary.get(WATERMARK_KEY) if summary is not None else None
        if text is not None:
            try:
                return {int(p): int(o) for p, o in orjson.loads(text).items()}
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
                raise CompactionError(
                    f"snapshot {snapshot.snapshot_id} of {table.name()} has a malformed "
                    f"{WATERMARK_KEY} {text!r}; it was not written by onepipe - roll the "
                    "table back to the previous snapshot") from exc
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None
    return {}


def read_state(catalog: CleanCatalog, topic: str) -> TableState:
    """What a run plans from (see the module contract)."""
    table = catalog.load(topic)
    if table is None:
        return TableState()
    snapshot = table.current_snapshot()
    if snapshot is None:
        return TableState(table, None, table_seq(table))
    by_day: dict[str, list[DataFile]] = {}
    with catalog_errors(catalog.uri):
        for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
            if task.delete_files:
                raise CompactionError(
                    f"{table.name()} has row-level delete files (written by another engine); "
                    "onepipe replaces whole days - compact them away with that engine first")
            by_day.setdefault(day_of_partition(task.file.partition[0]), []).append(task.file)
    days = {}
    for day, files in by_day.items():
        files.sort(key=lambda f: f.file_path)
        days[day] = DayFiles(day, tuple(catalog.lake_path(f.file_path) for f in files),
                             sum(f.record_count for f in files), tuple(files))
    return TableState(table, snapshot.snapshot_id, table_seq(table),
                      watermark_of(table, snapshot), days)


def data_file(catalog: CleanCatalog, table: Table, path: str, local: str | None = None
              ) -> DataFile:
    """The ``DataFile`` of lake path ``path`` (footer read from ``local`` when given)."""
    url = catalog.file_url(path)
    if local is not None:
        metadata = pq.read_metadata(local)
        size = Path(local).stat().st_size
    else:
        source = table.io.new_input(url)
        with source.open() as stream:
            metadata = pq.read_metadata(stream)
        size = len(source)
    schema = table.schema()
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=metadata,
        stats_columns=compute_statistics_plan(schema, table.metadata.properties),
        parquet_column_mapping=parquet_path_to_id_mapping(schema))
    return DataFile.from_args(
        content=DataFileContent.DATA, file_path=url, file_format=FileFormat.PARQUET,
        partition=stats.partition(table.spec(), schema), file_size_in_bytes=size,
        sort_order_id=table.sort_order().order_id, spec_id=table.spec().spec_id,
        equality_ids=None, key_metadata=None, **stats.to_serialized_dict())


def replace_days(catalog: CleanCatalog, state: TableState,
                 new_files: Mapping[str, Sequence[str]], watermark: Mapping[int, int],
                 run_id: str, extra: Mapping[str, str] | None = None) -> Snapshot:
    """Commit one snapshot replacing the days of ``new_files`` (see the module contract).

    ``new_files``: day -> lake paths of its new data files (empty: the day is emptied);
    ``extra``: more summary properties.
    """
    table = state.table
    if table is None:
        raise CompactionError("replace_days needs the table (create it with ensure_table)")
    properties = {WATERMARK_KEY: orjson.dumps({str(p): o for p, o in sorted(
        watermark.items())}).decode(), RUN_KEY: run_id, **(extra or {})}
    with catalog_errors(catalog.uri):
        try:
            added = [data_file(catalog, table, path) for paths in new_files.values()
                     for path in paths]
        except FileNotFoundError as exc:
            raise _vanished(table, state, exc) from exc
        try:
            with table.transaction() as tx:
                with tx.update_snapshot(snapshot_properties=properties).overwrite() as change:
                    for day in new_files:
                        old = state.days.get(day)
                        for f in old.files if old is not None else ():
                            change.delete_data_file(f)
                    for f in added:
                        change.append_data_file(f)
        except CommitFailedException as exc:
            raise CompactionConflict(
                f"another compactor committed to {table.name()} after this run planned from "
                f"snapshot {state.snapshot_id}; re-planning from the new snapshot ({exc})"
            ) from exc
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise AssertionError("a committed table has a snapshot")
    return snapshot


def _vanished(table: Table, state: TableState, exc: FileNotFoundError) -> CompactionError:
    """Why a new data file of a run is gone before its commit: the error to raise.

    Nothing references a run's new files before its commit, and a sweep deletes such a
    file only once the table's sequence number reaches the file's, i.e. after another
    commit since the run planned - which dooms this run's commit anyway. So a missing
    file on a moved table is a lost race (re-plan); on an unmoved one it is a real loss.
    """
    table.refresh()
    head = table.metadata.current_snapshot_id
    if head != state.snapshot_id:
        return CompactionConflict(
            f"another compactor committed snapshot {head} to {table.name()} after this run "
            f"planned from snapshot {state.snapshot_id}, and its sweep deleted this run's "
            f"unpublishable new files ({exc}); re-planning from the new snapshot")
    return CompactionError(
        f"a new data file of {table.name()} vanished before its commit while the table "
        f"stayed at snapshot {head}: {exc}; something outside onepipe deletes files in the "
        "clean lake - stop it, then run the compaction again")


def _replaced_at(table: Table) -> dict[int, int]:
    """Snapshot id -> when (ms) it last stopped being the head, by the snapshot log."""
    log = table.metadata.snapshot_log
    # Later entries overwrite earlier ones: a snapshot rolled back to counts from its last
    # replacement.
    return {entry.snapshot_id: following.timestamp_ms for entry, following in pairwise(log)}


def expire(catalog: CleanCatalog, table: Table, retention_seconds: float,
           now: datetime | None = None) -> int:
    """Expire snapshots replaced longer than the retention ago (never the head); how many.

    The retention counts from a snapshot's replacement, not its creation: a head older than
    the retention is still being read (by readers, and by a compactor that planned from it)
    when a commit replaces it. A snapshot the log does not place counts from its creation.
    """
    moment = (now or datetime.now(tz=UTC)) - timedelta(seconds=retention_seconds)
    head = table.metadata.current_snapshot_id
    replaced = _replaced_at(table)
    old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != head
           and replaced.get(s.snapshot_id, s.timestamp_ms) < moment.timestamp() * 1000]
    if not old:
        return 0
    with catalog_errors(catalog.uri):
        try:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        except CommitFailedException:
            return 0  # another writer moved on meanwhile: the next run expires them
    return len(old)


def referenced_paths(catalog: CleanCatalog, table: Table) -> set[str]:
    """Lake paths of every data file referenced by any snapshot the table keeps."""
    with catalog_errors(catalog.uri):
        table.refresh()
        if not table.snapshots():
            return set()
        urls = table.inspect.all_files().column("file_path").to_pylist()
    return {catalog.lake_path(u) for u in urls}
