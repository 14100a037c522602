"""Migration: a manifest-format clean lake (onepipe's first layout) into the Iceberg table.

Contract (``onepipe lake migrate <topic>|--all``):
- In: the latest manifest ``clean/<topic>/_manifest/<seq>.json`` of the old layout - per
  day its Parquet files, and the raw watermark ``raw_merged`` - read by the few lines
  below (the old manifest code is gone; this reader only knows what migration needs).
  Out: the topic's Iceberg table (onepipe.sinks.lake.iceberg) with **one snapshot**
  holding every day's rows, converted file by file by DuckDB (the day column added, sorted
  by the key, field ids written), whose summary carries the old watermark - so the next
  compaction continues exactly where the manifest lake stopped, neither skipping nor
  repeating raw files - and ``onepipe.migrated-from`` (the manifest seq).
- **Proof**: per day, the figures (rows, distinct keys, sums, order-independent row
  checksum: onepipe.schemas.figures, the functions ``verify`` uses) of the old files and
  of the new snapshot must be equal. Only then are the old layout's objects
  (``date=*/`` files and ``_manifest/``) deleted. On a mismatch the new table is dropped,
  its files deleted and the old lake left as it was (:attr:`MigrationReport.ok` False).
- Idempotent: a topic whose table already carries ``onepipe.migrated-from`` only has its
  old objects deleted; a topic whose table holds other snapshots is refused (compacting
  raw into it already happened: delete the old ``date=``/``_manifest`` objects by hand).
- Memory: DuckDB converts within ``memory_limit``; figures are folded batch by batch.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table

from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.day import DayExecutor
from onepipe.agents.compact.plan import literal, scan, shape_for
from onepipe.agents.compact.workdir import connect
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import CompactionError
from onepipe.schemas.figures import DayFigures, figures
from onepipe.schemas.metadata import TopicMetadata
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.sinks.lake.iceberg import (
    DAY_COLUMN,
    NAMESPACE,
    CleanCatalog,
    TableState,
    day_files,
    ensure_table,
    field_ids,
    field_ids_sql,
    open_catalog,
    read_state,
    replace_days,
    scan_days,
)
from onepipe.sinks.lake.iceberg.layout import CLEAN, data_file_path, table_prefix
from onepipe.sinks.lake.store import LakeStore

__all__ = ["MIGRATED_KEY", "MigrationReport", "manifest_topics", "migrate_topic"]

#: Snapshot summary key of a migrated table: the manifest seq it was converted from.
MIGRATED_KEY = "onepipe.migrated-from"
_MANIFEST = re.compile(r"^clean/(?P<topic>[^/]+)/_manifest/(?P<seq>\d{20})\.json$")
_OLD_OBJECT = re.compile(r"^clean/[^/]+/(date=\d{4}-\d{2}-\d{2}/|_manifest/)")
_BATCH_ROWS = 64 * 1024


@dataclass(frozen=True, slots=True)
class _OldLake:
    """What migration needs of a manifest: per day its files; the raw watermark."""

    seq: int
    days: Mapping[str, tuple[str, ...]]
    raw_merged: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate_topic` did."""

    topic: str
    #: The manifest seq converted (0: there was no manifest-format lake).
    manifest_seq: int = 0
    #: Days and rows converted.
    days: int = 0
    rows: int = 0
    #: Whether the figures of every day agreed (and the old objects were deleted).
    ok: bool = True
    #: Days whose figures differed (nothing was changed then).
    differing: tuple[str, ...] = ()
    #: Old-layout objects deleted.
    deleted: int = 0
    #: The snapshot committed (None: none).
    snapshot_id: int | None = None
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        if not self.manifest_seq:
            return f"{self.topic}: no manifest-format clean lake; nothing to migrate"
        if not self.ok:
            return (f"{self.topic}: NOT migrated - figures differ on {', '.join(self.differing)};"
                    " the manifest lake is untouched")
        return (f"{self.topic}: manifest {self.manifest_seq} -> Iceberg snapshot "
                f"{self.snapshot_id}: {self.days} day(s), {self.rows} row(s), row checksum "
                f"equal on every day; {self.deleted} old object(s) deleted"
                + "".join(f"; {n}" for n in self.notes))


async def manifest_topics(lake: LakeStore) -> set[str]:
    """Topics with a manifest-format clean lake."""
    return {m["topic"] for o in await lake.list(f"{CLEAN}/")
            if (m := _MANIFEST.match(o.path)) is not None}


async def _load_old(lake: LakeStore, topic: str) -> _OldLake | None:
    seqs = [int(m["seq"]) for o in await lake.list(f"{CLEAN}/{topic}/_manifest/")
            if (m := _MANIFEST.match(o.path)) is not None]
    if not seqs:
        return None
    seq = max(seqs)
    path = f"{CLEAN}/{topic}/_manifest/{seq:020d}.json"
    try:
        doc = orjson.loads(await lake.get(path))
        days = {str(d): tuple(str(f) for f in v["files"]) for d, v in doc["days"].items()}
        merged = {int(p): int(o) for p, o in doc["raw_merged"].items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CompactionError(f"{lake.url}/{path} is not a manifest of the old clean lake "
                              f"({exc!r}); restore it, or delete clean/{topic}/ and compact "
                              "the raw lake again") from exc
    return _OldLake(seq, days, merged)


async def migrate_topic(lake: LakeStore, meta: TopicMetadata, schema: AvroSchema,
                        config: CompactionConfig) -> MigrationReport:
    """Convert ``meta.topic``'s manifest-format clean lake; see the module contract."""
    topic = meta.topic
    old = await _load_old(lake, topic)
    if old is None:
        return MigrationReport(topic)
    catalog = await asyncio.to_thread(open_catalog, config.catalog_uri, lake)
    try:
        state = await asyncio.to_thread(read_state, catalog, topic)
        head = state.table.current_snapshot() if state.table is not None else None
        if head is not None:
            summary = head.summary.additional_properties if head.summary is not None else {}
            if summary.get(MIGRATED_KEY) == str(old.seq):
                deleted = await _delete_old(lake, topic)
                return MigrationReport(topic, old.seq, len(state.days), state.rows,
                                       deleted=deleted, snapshot_id=head.snapshot_id,
                                       notes=("migrated before",))
            raise CompactionError(
                f"{NAMESPACE}.{topic} already has snapshots not converted from manifest "
                f"{old.seq}; the raw lake was compacted into Iceberg already - delete the old "
                f"clean/{topic}/date=*/ and clean/{topic}/_manifest/ objects by hand")
        return await _convert(lake, catalog, state, meta, schema, config, old)
    finally:
        await asyncio.to_thread(catalog.close)


async def _convert(lake: LakeStore, catalog: CleanCatalog, state: TableState,
                   meta: TopicMetadata, schema: AvroSchema, config: CompactionConfig,
                   old: _OldLake) -> MigrationReport:
    topic, shape, view = meta.topic, shape_for(meta, schema), TopicView.build(meta, schema)
    executor = DayExecutor(lake, config)
    run_id = uuid.uuid4().hex
    run_dir = config.work_dir / "runs" / f"migrate-{run_id}"
    local = {day: await executor.local(files) for day, files in old.days.items() if files}
    before = {day: await asyncio.to_thread(_file_figures, paths, view)
              for day, paths in local.items()}
    try:
        columns = await asyncio.to_thread(_columns, config, run_dir, local)
        table = await asyncio.to_thread(ensure_table, catalog, topic, columns, DAY_COLUMN,
                                        shape.sort_columns)
        ids = field_ids(table.schema())
        new: dict[str, list[str]] = {}
        seq = state.seq + 1
        for day, paths in sorted(local.items()):
            out = run_dir / day
            parts = await asyncio.to_thread(_convert_day, config, run_dir, paths, day,
                                            shape.sort, ids, out)
            new[day] = []
            for i, part in enumerate(parts):
                path = data_file_path(topic, day, seq, run_id, i)
                new[day].append(path)
                await lake.put(path, await asyncio.to_thread(part.read_bytes))
        state = TableState(table, state.snapshot_id, state.seq)
        snapshot = await asyncio.to_thread(
            replace_days, catalog, state, new, old.raw_merged, run_id,
            {MIGRATED_KEY: str(old.seq)})
    finally:
        await asyncio.to_thread(shutil.rmtree, run_dir, True)
    after = await asyncio.to_thread(_table_figures, table, view)
    differing = tuple(sorted(d for d in before.keys() | after.keys()
                             if before.get(d) != after.get(d)))
    if differing:
        # Undo: the table did not exist (or had no snapshot) before; nothing else wrote it.
        await asyncio.to_thread(catalog.catalog.drop_table, (NAMESPACE, topic))
        for prefix in (f"{table_prefix(topic)}data/", f"{table_prefix(topic)}metadata/"):
            for obj in await lake.list(prefix):
                await lake.delete(obj.path)
        return MigrationReport(topic, old.seq, ok=False, differing=differing)
    deleted = await _delete_old(lake, topic)
    await executor.forget([p for files in old.days.values() for p in files])
    return MigrationReport(topic, old.seq, len(before), sum(f.rows for f in before.values()),
                           deleted=deleted, snapshot_id=snapshot.snapshot_id)


def _columns(config: CompactionConfig, run_dir: Path, local: Mapping[str, list[str]]
             ) -> pa.Schema:
    run_dir.mkdir(parents=True, exist_ok=True)
    files = [p for paths in local.values() for p in paths]
    con = connect(config, run_dir, ":memory:")
    try:
        if not files:
            return pa.schema([pa.field(DAY_COLUMN, pa.date32())])
        return con.sql(f"SELECT *, DATE '1970-01-01' AS {DAY_COLUMN} FROM {scan(files)} "
                       "LIMIT 0").to_arrow_table().schema
    finally:
        con.close()


def _convert_day(config: CompactionConfig, run_dir: Path, paths: list[str], day: str,
                 sort: str, ids: Mapping[str, object], out: Path) -> list[Path]:
    con = connect(config, run_dir, ":memory:")
    try:
        # The manifest's day is the day rule's: the same partition the compactor would pick.
        sql = f"SELECT *, DATE {literal(day)} AS {DAY_COLUMN} FROM {scan(paths)} ORDER BY {sort}"
        columns = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
        con.execute(f"COPY ({sql}) TO {literal(str(out))} (FORMAT PARQUET, COMPRESSION ZSTD, "
                    f"ROW_GROUP_SIZE {config.row_group_rows}, FILE_SIZE_BYTES "
                    f"{config.max_file_bytes}, FIELD_IDS {field_ids_sql(ids, columns)})")
    except duckdb.Error as exc:
        raise CompactionError(f"converting day {day} failed in DuckDB: {exc}; check free "
                              f"space under {config.work_dir} and the memory_limit") from exc
    finally:
        con.close()
    return sorted(out.glob("data_*.parquet"), key=lambda p: int(p.stem[5:]))


def _complete(batch: pa.RecordBatch, view: TopicView) -> pa.RecordBatch:
    present = set(batch.schema.names)
    arrays = [batch.column(n) if n in present else pa.nulls(batch.num_rows, view.column_type(n))
              for n in view.columns]
    return pa.RecordBatch.from_arrays(arrays, names=list(view.columns))


def _fold(batches: Iterator[pa.RecordBatch], view: TopicView) -> DayFigures:
    total = DayFigures.zero(view.spec)
    for batch in batches:
        total = total + figures(_complete(batch, view), view.spec)
    return total


def _file_figures(paths: list[str], view: TopicView) -> DayFigures:
    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            handle = pq.ParquetFile(path)
            names = [n for n in view.columns if n in set(handle.schema_arrow.names)]
            yield from handle.iter_batches(batch_size=_BATCH_ROWS, columns=names)

    return _fold(batches(), view)


def _table_figures(table: Table, view: TopicView) -> dict[str, DayFigures]:
    table.refresh()
    days = day_files(table, table.current_snapshot())
    return {day: _fold(scan_days(table, [day]), view) for day in days}


async def _delete_old(lake: LakeStore, topic: str) -> int:
    old = [o.path for o in await lake.list(f"{CLEAN}/{topic}/") if _OLD_OBJECT.match(o.path)]
    # Day files first, the manifests last: a crash in between leaves a migratable lake.
    old.sort(key=lambda p: "/_manifest/" in p)
    for path in old:
        await lake.delete(path)
    return len(old)
