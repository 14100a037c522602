"""Reading the clean lake through Iceberg: one snapshot, some days, as Arrow.

Contract:
- :func:`resolve_snapshot` names the snapshot a read is pinned to: the head (None), a
  snapshot id, or the snapshot current at a time (``--as-of``); an unknown id or a time
  before the first snapshot raises :class:`~onepipe.schemas.errors.CatalogError` saying what exists.
- :func:`day_files` lists the data files of each day of that snapshot, in day order and
  within a day in file order (rows are sorted by the key across them).
- :func:`scan_days` reads days of a snapshot as a stream of record batches in that order
  (pyiceberg's reader: field ids, type promotion, columns added later read as nulls),
  one data file in memory at a time; ``columns`` projects. :func:`read_days` collects it
  into one table (bounded reads: previews, tests; pass ``limit``).
A snapshot pinned here stays readable for ``ONEPIPE_COMPACT_RETENTION_SECONDS`` after it
stops being the head (its files are deleted only once it is expired).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, parser
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import FileScanTask, Table
from pyiceberg.table.snapshots import Snapshot

from onepipe.schemas.errors import CatalogError
from onepipe.sinks.lake.iceberg.schema import DAY_COLUMN
from onepipe.sinks.lake.iceberg.snapshots import day_of_partition

__all__ = ["day_files", "read_days", "resolve_snapshot", "scan_days"]


def resolve_snapshot(table: Table, as_of: int | str | datetime | None = None
                     ) -> Snapshot | None:
    """The snapshot a read uses: the head, snapshot id ``as_of``, or the one current at
    time ``as_of`` (an aware datetime, or ISO text); None for a table without snapshots."""
    if as_of is None:
        return table.current_snapshot()
    if isinstance(as_of, str):
        as_of = int(as_of) if as_of.strip().isdigit() else _parse_time(as_of)
    if isinstance(as_of, int):
        snapshot = table.snapshot_by_id(as_of)
        if snapshot is None:
            raise CatalogError(f"{table.name()} has no snapshot {as_of}; it has "
                               f"{[s.snapshot_id for s in table.snapshots()]}")
        return snapshot
    millis = int(as_of.timestamp() * 1000)
    found = table.snapshot_as_of_timestamp(millis)
    if found is None:
        first = min((s.timestamp_ms for s in table.snapshots()), default=None)
        raise CatalogError(f"{table.name()} had no snapshot at {as_of.isoformat()}; its "
                           f"oldest kept snapshot is from epoch ms {first}")
    return found


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CatalogError(f"--as-of takes a snapshot id or an ISO time such as "
                           f"2026-11-20T12:00:00Z; got {text!r}") from exc
    if moment.tzinfo is None:
        raise CatalogError(f"--as-of time {text!r} has no zone; add Z or +00:00")
    return moment


def _filter(days: Sequence[str] | None, day_column: str) -> BooleanExpression:
    if days is None:
        return AlwaysTrue()
    for day in days:
        date.fromisoformat(day)  # only YYYY-MM-DD reaches the filter text
    quoted = ", ".join(f"'{day}'" for day in sorted(set(days)))
    return parser.parse(f'"{day_column}" IN ({quoted})')


def day_files(table: Table, snapshot: Snapshot | None, days: Sequence[str] | None = None,
              day_column: str = DAY_COLUMN) -> dict[str, list[FileScanTask]]:
    """Per day (in order) the scan tasks of ``snapshot`` (file order within a day)."""
    if snapshot is None or (days is not None and not days):
        return {}
    scan = table.scan(row_filter=_filter(days, day_column), snapshot_id=snapshot.snapshot_id)
    out: dict[str, list[FileScanTask]] = {}
    for task in scan.plan_files():
        out.setdefault(day_of_partition(task.file.partition[0]), []).append(task)
    return {d: sorted(out[d], key=lambda t: t.file.file_path) for d in sorted(out)}


def scan_days(table: Table, days: Sequence[str] | None = None,
              snapshot: Snapshot | None = None, *, columns: Sequence[str] | None = None,
              day_column: str = DAY_COLUMN) -> Iterator[pa.RecordBatch]:
    """Record batches of ``days`` (None: all) of ``snapshot`` (None: the head), in day and
    key order; see the module contract."""
    if snapshot is None:
        snapshot = table.current_snapshot()
    if snapshot is None:
        return
    scan = table.scan(row_filter=_filter(days, day_column), snapshot_id=snapshot.snapshot_id,
                      selected_fields=tuple(columns) if columns is not None else ("*",))
    reader = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter)
    for tasks in day_files(table, snapshot, days, day_column).values():
        for task in tasks:  # one file at a time: pyiceberg reads a file's batches at once
            yield from reader.to_record_batches([task])


def read_days(table: Table, days: Sequence[str] | None = None,
              snapshot: Snapshot | None = None, *, columns: Sequence[str] | None = None,
              limit: int | None = None) -> pa.Table:
    """:func:`scan_days` collected into one table (at most ``limit`` rows)."""
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in scan_days(table, days, snapshot, columns=columns):
        if limit is not None and rows + batch.num_rows >= limit:
            batches.append(batch.slice(0, limit - rows))
            break
        batches.append(batch)
        rows += batch.num_rows
    if not batches:
        if snapshot is None:
            snapshot = table.current_snapshot()
        schema = table.schema() if snapshot is None or snapshot.schema_id is None \
            else table.schemas()[snapshot.schema_id]
        arrow = schema.as_arrow()
        if columns is not None:
            arrow = pa.schema([arrow.field(c) for c in columns])
        return arrow.empty_table()
    return pa.Table.from_batches(batches)
