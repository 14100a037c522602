"""The load itself: plan which days to copy, then one transaction (a partition swap) per day.

See the package contract (onepipe.sinks.warehouse). The Iceberg side (planning, reading
files) blocks and runs in threads; while one batch is COPYed the next is read and
converted, so the database and the lake work at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from onepipe.schemas.errors import ConfigError, WarehouseError
from onepipe.sinks.db import Column, redact
from onepipe.sinks.db.base import type_family
from onepipe.sinks.db.sql import quote
from onepipe.sinks.lake.iceberg import (
    DAY_COLUMN,
    day_files,
    day_versions,
    open_catalog,
    scan_days,
)
from onepipe.sinks.lake.store import LakeStore
from onepipe.sinks.warehouse import sql
from onepipe.sinks.warehouse.codecs import fast_column, install_codecs
from onepipe.sinks.warehouse.names import check_table, warehouse_table
from onepipe.sinks.warehouse.read import loaded_days, table_columns

__all__ = ["DayPlan", "LoadReport", "connect", "copy_records", "load_topic", "plan_days"]

#: Rows converted and COPYed at a time (pyiceberg yields a file's batches; they are
#: re-cut to this size to bound memory and keep the progress bar moving).
BATCH_ROWS = 64 * 1024
_PROMOTIONS = {("int32", "int64"), ("float32", "float64")}
#: Called with ``(rows done, rows to do)`` as a load proceeds.
OnProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One day a load replaces."""

    #: ``YYYY-MM-DD``.
    day: str
    #: The snapshot that last wrote the day; None: the snapshot no longer holds it (the
    #: warehouse's rows of the day are removed).
    snapshot_id: int | None
    #: Rows the snapshot holds for the day.
    rows: int


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What one load did."""

    topic: str
    #: The warehouse table.
    table: str
    #: The snapshot loaded from (None: the topic has no snapshot yet).
    snapshot_id: int | None
    #: Days replaced (and emptied), in order.
    loaded: tuple[DayPlan, ...]
    #: Days skipped by ``--incremental``: already loaded from the same version.
    unchanged: tuple[str, ...]
    #: Rows copied.
    rows: int
    #: Wall time, seconds.
    seconds: float


def plan_days(versions: Mapping[str, int], rows: Mapping[str, int], loaded: Mapping[str, int],
              *, first: str | None = None, last: str | None = None,
              incremental: bool = False) -> tuple[list[DayPlan], list[str]]:
    """The days to replace and the days skipped as unchanged (see the package contract)."""
    def within(day: str) -> bool:
        return (first is None or day >= first) and (last is None or day <= last)

    plans: list[DayPlan] = []
    unchanged: list[str] = []
    for day in sorted(set(versions) | set(loaded)):
        if not within(day):
            continue
        version = versions.get(day)
        if version is not None and incremental and loaded.get(day) == version:
            unchanged.append(day)
        elif version is not None or day in loaded:
            plans.append(DayPlan(day, version, rows.get(day, 0)))
    return plans, unchanged


# ------------------------------------------------------------------ the lake side


@dataclass(frozen=True, slots=True)
class _Source:
    table: Table
    snapshot: Snapshot | None
    versions: dict[str, int]
    rows: dict[str, int]
    schema: pa.Schema


def _open_source(lake: LakeStore, catalog_uri: str, topic: str) -> _Source | None:
    catalog = open_catalog(catalog_uri, lake)
    try:
        table = catalog.load(topic)
        if table is None:
            return None
        snapshot = table.current_snapshot()
        rows = {day: sum(t.file.record_count for t in tasks)
                for day, tasks in day_files(table, snapshot).items()}
        schema = table.schema() if snapshot is None or snapshot.schema_id is None \
            else table.schemas()[snapshot.schema_id]
        return _Source(table, snapshot, day_versions(table, snapshot), rows, schema.as_arrow())
    finally:
        catalog.close()


_IDENTITY = Column("_", pa.int64(), key=False).to_db("postgres")


def copy_records(batches: Iterator[pa.RecordBatch], columns: Sequence[Column]
             ) -> list[tuple[Any, ...]] | None:
    """The next batch as COPY records (None at the end); in a worker thread."""
    batch = next(batches, None)
    if batch is None:
        return None
    values = []
    for column in columns:
        array = batch.column(column.name)
        fast = fast_column(array)
        if fast is not None:
            values.append(fast)
            continue
        convert = column.to_db("postgres")  # nested values as JSON text, ns as integers
        if convert is _IDENTITY:
            values.append(array.to_pylist())
            continue
        if _is_list(array.type):
            # Most lists (headers) are empty: a constant for those, and Python objects
            # (then JSON) only for the others.
            lengths = pc.fill_null(pc.list_value_length(array), -1)
            full = iter([convert(v) for v in
                         array.filter(pc.greater(lengths, 0)).to_pylist()])
            values.append([None if n < 0 else "[]" if n == 0 else next(full)
                           for n in lengths.to_pylist()])
            continue
        values.append([convert(v) for v in array.to_pylist()])
    return list(zip(*values, strict=True))


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def _rebatched(table: Table, day: str, snapshot: Snapshot) -> Iterator[pa.RecordBatch]:
    for batch in scan_days(table, [day], snapshot):
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


# ------------------------------------------------------------------ the database side


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection to the warehouse (``postgresql://...``), named for ``pg_stat_activity``."""
    if not dsn.lower().startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--dsn must be a PostgreSQL DSN like postgresql://user@host:5432/db;"
                          f" got {redact(dsn)}")
    try:
        return await asyncpg.connect(dsn, server_settings={
            "application_name": "onepipe-warehouse"})
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        error = WarehouseError(f"cannot connect to the warehouse {redact(dsn)}: {exc}; check "
                               "that it is up and the DSN's user, password and database")
        error.retriable = not isinstance(exc, asyncpg.PostgresError)
        raise error from exc


async def _prepare(conn: asyncpg.Connection, table: str, columns: Sequence[Column]) -> None:
    """Create or evolve the table (and the bookkeeping table) for ``columns``."""
    statements = [sql.create_loads()]
    existing = await table_columns(conn, table)
    if existing is None:
        statements += sql.create_table(table, columns)
    elif not await conn.fetchval(sql.is_partitioned(), quote("postgres", table)):
        raise WarehouseError(
            f"table {table} exists but is not partitioned by {DAY_COLUMN}, so it was not "
            "made by `onepipe warehouse load`, which swaps whole day partitions; give "
            "--table another name")
    else:
        for column in columns:
            declared = existing.get(column.name)
            if declared is None:
                statements.append(sql.add_column(table, column))
                continue
            have = type_family("postgres", declared)
            want = type_family("postgres", column.sql_type("postgres"))
            if have == want:
                continue
            if (have, want) not in _PROMOTIONS:
                raise WarehouseError(
                    f"column {column.name!r} of warehouse table {table} holds {declared}, but "
                    f"the clean table now has {column.sql_type('postgres')}; only int -> "
                    "bigint and real -> double widen in place. Migrate the column, or load "
                    "into a new table with --table")
            statements.append(sql.widen_column(table, column))
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)


async def load_topic(lake: LakeStore, catalog_uri: str, topic: str, dsn: str, *,
                     table: str | None = None, first: str | None = None,
                     last: str | None = None, incremental: bool = False,
                     on_progress: OnProgress | None = None) -> LoadReport:
    """Copy ``topic``'s clean days (``first``..``last``, inclusive; None: unbounded) into
    the warehouse at ``dsn``; see the package contract."""
    started = time.monotonic()
    name = check_table(table) if table else warehouse_table(topic)
    source = await asyncio.to_thread(_open_source, lake, catalog_uri, topic)
    if source is None:
        raise WarehouseError(f"{topic!r} has no clean table in {lake.url}; run `onepipe "
                             f"compact {topic}` first")
    columns = [Column(f.name, f.type, key=False) for f in source.schema]
    conn = await connect(dsn)
    try:
        await install_codecs(conn)
        await _guard(_prepare(conn, name, columns), dsn, f"preparing table {name}")
        loaded = await loaded_days(conn, topic, name)
        plans, unchanged = plan_days(source.versions, source.rows, loaded, first=first,
                                     last=last, incremental=incremental)
        total, done = sum(p.rows for p in plans), 0
        if on_progress is not None:
            on_progress(0, total)
        committed: list[DayPlan] = []
        for plan in plans:
            def progress(rows: int, base: int = done) -> None:
                if on_progress is not None:
                    on_progress(base + rows, total)

            copied = await _guard(
                _replace_day(conn, source, topic, name, columns, plan, progress),
                dsn, f"loading {topic} day {plan.day} into table {name}",
                f"; that day keeps its previous rows. Days committed before it: "
                f"{', '.join(p.day for p in committed) or 'none'}")
            committed.append(plan)
            done += copied
    finally:
        await conn.close()
    return LoadReport(topic, name, source.snapshot.snapshot_id if source.snapshot else None,
                      tuple(committed), tuple(unchanged), done, time.monotonic() - started)


async def _guard(work: Awaitable[Any], dsn: str, doing: str, tail: str = "") -> Any:
    """``work``, with the database's failures as a WarehouseError saying what failed."""
    try:
        return await work
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # PostgreSQL's message without its DETAIL: that quotes the whole failing row.
        reason = getattr(exc, "message", None) or str(exc)
        error = WarehouseError(f"{doing} ({redact(dsn)}) failed: {type(exc).__name__}: "
                               f"{reason}{tail}")
        error.retriable = not isinstance(exc, asyncpg.PostgresError)
        raise error from exc


async def _replace_day(conn: asyncpg.Connection, source: _Source, topic: str, table: str,
                       columns: Sequence[Column], plan: DayPlan,
                       progress: Callable[[int], None]) -> int:
    """One day in one transaction: a new partition COPYed, the load recorded, the old
    partition swapped for it; the rows copied."""
    day = dt.date.fromisoformat(plan.day)
    prefix = sql.partition_prefix(table, plan.day)
    fresh = f"{prefix}{uuid.uuid4().hex[:8]}"
    loading = plan.snapshot_id is not None and source.snapshot is not None
    copied = 0
    async with conn.transaction():
        if loading:
            assert source.snapshot is not None  # noqa: S101 - `loading` says so
            await conn.execute(sql.create_partition(table, fresh))
            await conn.execute(sql.bound_partition(fresh, plan.day))
            copied = await _copy(conn, source.table, source.snapshot, plan.day, fresh,
                                 columns, progress)
        # Loads of one table queue here. The bookkeeping comes before the swap, so the
        # table's exclusive lock (DETACH/ATTACH) is held for the swap alone.
        await conn.execute(sql.lock_table(), table)
        if loading:
            await conn.execute(sql.upsert_load(), topic, table, day, plan.snapshot_id, copied)
        else:
            await conn.execute(sql.delete_load(), topic, table, day)
        for row in await conn.fetch(sql.day_partitions(), quote("postgres", table), prefix):
            for statement in sql.detach_drop(table, row[0]):
                await conn.execute(statement)
        if loading:
            await conn.execute(sql.attach(table, fresh, plan.day))
    return copied


async def _copy(conn: asyncpg.Connection, table: Table, snapshot: Snapshot, day: str,
                target: str, columns: Sequence[Column], progress: Callable[[int], None]
                ) -> int:
    """COPY the snapshot's rows of ``day`` into ``target``; how many."""
    names = [c.name for c in columns]
    batches = _rebatched(table, day, snapshot)
    copied = 0
    ahead = asyncio.ensure_future(asyncio.to_thread(copy_records, batches, columns))
    try:
        while (records := await ahead) is not None:
            # Read and convert the next batch while this one is COPYed.
            ahead = asyncio.ensure_future(asyncio.to_thread(copy_records, batches, columns))
            await conn.copy_records_to_table(target, records=records, columns=names)
            copied += len(records)
            progress(copied)
    finally:
        if not ahead.done():
            ahead.cancel()
    return copied
