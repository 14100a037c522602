"""Compactor ("Copydog"): ``raw/<topic>/`` into the topic's Iceberg table, one row per key.

Contract:
- In: raw files of one topic (onepipe.sinks.lake.raw_layout). Out: one snapshot of the
  table ``("onepipe", "<topic>")`` (onepipe.sinks.lake.iceberg) per run. Per day, one row
  per unique key - the key's *global* winner under the topic's merge rule, over every
  version ever archived - placed in the day of the winner's ``partition_time`` (the day
  column, the table's partition) and sorted by the key columns. A key whose new winner
  falls in another day than its previous winner is removed from the old day (which is
  replaced too). A topic without key keeps every decodable record once (by partition
  and offset), sorted by (partition time, partition, offset).
- Rows keep every raw column (the ``_kafka_*`` bytes and provenance, for re-merging and
  exact replay) plus the typed columns; a column a newer schema added becomes a new
  Iceberg column (union by name, field ids kept), null in rows merged before. Rows that
  did not decode, or lack a key field or their partition time, are left out and counted
  in the :class:`CompactionReport`.
- **One run, one snapshot.** Day files go under names no snapshot references yet; the
  run then commits one ``overwrite`` snapshot replacing exactly the changed days, whose
  summary records the raw watermark consumed (``onepipe.raw-watermark``, per partition the
  next offset). The commit asserts that the head is still the snapshot the run planned
  from: two compactors racing end with one commit and one ``CompactionConflict`` (also
  when the winner's sweep deleted the loser's new files before the loser's commit); the
  loser deletes what is left of what it wrote, re-plans from the new snapshot and runs
  again (``max_retries`` times). No day is lost: a day is only replaced by a merge of its
  current files.
- **Crash safety.** A crash before the commit leaves only unreferenced files; a rerun
  reads the same watermark, plans from the same snapshot and writes the same content
  under a new run id. An unreferenced data file whose ``seq`` is at most the table's
  sequence number can never be referenced (only a commit right after ``seq - 1`` could
  have published it), so each run deletes those (no clock needed). Snapshots replaced
  more than ``retention_seconds`` ago are expired (never the head): readers pinned to an
  older snapshot finish reading, then the files only expired snapshots referenced are
  deleted. The merge is idempotent: re-merging raw rows the table already holds changes
  nothing. A rerun on an up-to-date table commits nothing (``seq`` None).
- **Memory.** DuckDB does the merge with ``memory_limit`` and spills to a temp directory
  under ``work_dir``; no day is ever loaded into Python objects. Raw and data files of an
  S3 lake are downloaded once into ``work_dir/cache`` (DuckDB's httpfs is not available
  offline; lake paths are immutable, so the cache never goes stale).

Cost: finding where the *current* winners of the new keys live reads the key columns of
every current data file of the table (and, on S3, caches them locally), so it grows with
the clean lake, not with the new data. A key -> day index is the future fix.

Plan -> day tasks -> execute -> commit: the planning merge writes the new global winners
to one local Parquet file; the table is created or its schema evolved to hold them; each
:class:`~onepipe.agents.compact.plan.DayTask` is plain data (the day, its input files, the
field ids). Tasks run here (onepipe.agents.compact.day), or - given a
:class:`DayTaskDispatcher` (onepipe.agents.compact.pool) - on other workers: their inputs
are staged under ``clean/<topic>/_runs/v<seq>/<run id>/`` first, and that prefix is
deleted when the run ends (committed or not). A crashed run's staging is deleted by the
sweep of a later run, by the rule of the data files above. The snapshot references
exactly the files of the results the dispatcher returns; files of any other execution of
a task are orphans of the same kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.day import DayExecutor, stage_inputs
from onepipe.agents.compact.plan import (
    DAY_COLUMN,
    DayTask,
    DayVersion,
    PartitionSelection,
    Shape,
    literal,
    scan,
    select_raw,
    shape_for,
    trim_filter,
)
from onepipe.agents.compact.run import CompactionReport, DayTaskDispatcher, OnDayWritten
from onepipe.agents.compact.workdir import (
    claim_run_dir,
    connect,
    release_run_dir,
    remove_stale_runs,
)
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.errors import (
    CompactionConflict,
    CompactionError,
    LakeError,
    LakeObjectNotFound,
)
from onepipe.schemas.metadata import TopicMetadata
from onepipe.sinks.lake.iceberg import (
    CleanCatalog,
    TableState,
    ensure_table,
    expire,
    field_ids,
    open_catalog,
    read_state,
    referenced_paths,
    replace_days,
    table_seq,
)
from onepipe.sinks.lake.iceberg.layout import (
    data_prefix,
    parse_data_path,
    parse_staging_path,
    staging_topic_prefix,
)
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.store import LakeStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Merge:
    """Outcome of the planning merge of one attempt."""

    tasks: list[DayTask] = field(default_factory=list)
    undecodable: int = 0
    incomplete: int = 0


class Compactor:
    """Compacts one topic's raw lake into its Iceberg table; see the module contract."""

    def __init__(self, lake: LakeStore, meta: TopicMetadata, schema: AvroSchema | None,
                 config: CompactionConfig, *, on_day_written: OnDayWritten | None = None,
                 clock: Callable[[], float] = time.time,
                 dispatcher: DayTaskDispatcher | None = None) -> None:
        if config.jobs < 1 or config.threads < 1 or config.max_retries < 0:
            raise CompactionError(f"jobs and threads must be >= 1 and max_retries >= 0; got "
                                  f"{config}")
        self.lake = lake
        self.meta = meta
        self.topic = meta.topic
        self.shape: Shape = shape_for(meta, schema)
        self.config = config
        self._on_day_written = on_day_written
        self._clock = clock
        self._dispatcher = dispatcher
        self._days = DayExecutor(lake, config)

    async def run(self) -> CompactionReport:
        """Merge what is new in raw into the table in one snapshot; retry lost commits."""
        started = time.monotonic()
        stale = await asyncio.to_thread(remove_stale_runs, self.config.work_dir / "runs")
        if stale:
            log.info("removed %d run folder(s) of crashed compactions from %s", stale,
                     self.config.work_dir)
        catalog = await asyncio.to_thread(open_catalog, self.config.catalog_uri, self.lake)
        try:
            for attempt in range(1, self.config.max_retries + 2):
                try:
                    report = await self._attempt(catalog)
                except CompactionConflict:
                    if attempt > self.config.max_retries:
                        raise
                    log.info("compaction of %s lost its commit to another compactor; "
                             "re-planning (attempt %d)", self.topic, attempt + 1)
                    continue
                return replace(report, attempts=attempt,
                               duration_seconds=time.monotonic() - started)
        finally:
            await asyncio.to_thread(catalog.close)
        raise AssertionError("unreachable")  # the loop returns or raises

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, catalog: CleanCatalog) -> CompactionReport:
        state = await asyncio.to_thread(read_state, catalog, self.topic)
        inventory = await raw_inventory(self.lake, self.topic)
        selection = select_raw(inventory.files, state.watermark)
        if not selection:
            deleted = await self._maintain(catalog, state)
            return CompactionReport(self.topic, None, files_deleted=deleted)
        run_id = uuid.uuid4().hex
        seq = state.seq + 1
        run_dir = self.config.work_dir / "runs" / run_id
        lock = await asyncio.to_thread(claim_run_dir, run_dir)
        written: list[str] = []
        try:
            state, merge = await self._plan(catalog, state, selection, run_id, seq, run_dir)
            versions = await self._execute(merge.tasks, run_dir, written)
            committed = time.monotonic()
            snapshot = await asyncio.to_thread(
                replace_days, catalog, state,
                {t.date: v.files for t, v in zip(merge.tasks, versions, strict=True)},
                {**state.watermark, **{p: s.end for p, s in selection.items()}}, run_id)
            commit_seconds = time.monotonic() - committed
        except CompactionConflict:
            await self._delete(written)
            raise
        finally:
            await asyncio.to_thread(release_run_dir, run_dir, lock)
        log.info("compacted %s into snapshot %d (seq %d) in %.3fs of commit: %d day(s), %d raw "
                 "record(s)", self.topic, snapshot.snapshot_id, snapshot.sequence_number,
                 commit_seconds, len(merge.tasks), sum(s.records for s in selection.values()))
        deleted = await self._maintain(catalog, state)
        await self._days.forget([f.path for s in selection.values() for f in s.files])
        return CompactionReport(
            topic=self.topic, seq=snapshot.sequence_number, snapshot_id=snapshot.snapshot_id,
            days_written=tuple(t.date for t in merge.tasks),
            rows_in=sum(s.records for s in selection.values()),
            rows_out=sum(v.rows for v in versions),
            undecodable=merge.undecodable, incomplete=merge.incomplete,
            raw_files=sum(len(s.files) for s in selection.values()), files_deleted=deleted,
            commit_seconds=commit_seconds)

    # ------------------------------------------------------------------ planning

    async def _plan(self, catalog: CleanCatalog, state: TableState,
                    selection: dict[int, PartitionSelection], run_id: str, seq: int,
                    run_dir: Path) -> tuple[TableState, _Merge]:
        """Merge the new raw rows with the current winners of their keys; make the table
        hold their columns; make day tasks. The state returned has the evolved table."""
        raw_paths = [f.path for s in selection.values() for f in s.files]
        raw_local = await self._days.local(raw_paths)
        clean_local: list[str] = []
        if self.shape.keyed:
            # Only keyed topics can have a new version of something already in clean; the
            # watermark keeps new offsets of a keyless topic out of clean.
            clean_local = await self._days.local(
                [p for day in state.days.values() for p in day.paths])
        duplicates = any(s.duplicates for s in selection.values())
        merge, old_days, new_days = await asyncio.to_thread(
            self._plan_sync, raw_local, trim_filter(selection), duplicates, clean_local,
            run_dir)
        winners = run_dir / "winners.parquet"
        columns = await asyncio.to_thread(pq.read_schema, winners)
        table = await asyncio.to_thread(ensure_table, catalog, self.topic, columns,
                                         DAY_COLUMN, self.shape.sort_columns)
        head = table.metadata.current_snapshot_id
        if head != state.snapshot_id:
            raise CompactionConflict(f"{table.name()} moved to snapshot {head} while this run "
                                     f"planned from {state.snapshot_id}; re-planning")
        ids = field_ids(table.schema())
        keys_file = str(run_dir / "keys.parquet") if clean_local else None
        for date in sorted(old_days | new_days):
            current = state.days.get(date)
            merge.tasks.append(DayTask(
                topic=self.topic, date=date, seq=seq, run_id=run_id,
                old_files=current.paths if current else (), winners_file=str(winners),
                keys_file=keys_file, key=self.shape.key, sort=self.shape.sort, field_ids=ids))
        return replace(state, table=table), merge

    def _plan_sync(self, raw: list[str], trim: str, duplicates: bool, clean: list[str],
                   run_dir: Path) -> tuple[_Merge, set[str], set[str]]:
        shape = self.shape
        con = connect(self.config, run_dir, str(run_dir / "plan.duckdb"))
        try:
            con.execute(f"CREATE VIEW new_rows AS SELECT * FROM {scan(raw)} WHERE {trim}")
            counts = con.execute(
                f"SELECT count(*) FILTER (WHERE _kafka_decode_error IS NOT NULL), "
                f"count(*) FILTER (WHERE {shape.incomplete}) FROM new_rows").fetchone()
            merge = _Merge(undecodable=int(counts[0]) if counts else 0,
                           incomplete=int(counts[1]) if counts else 0)
            con.execute(f"CREATE VIEW new_valid AS SELECT *, {shape.day} AS {DAY_COLUMN} "
                        f"FROM new_rows WHERE {shape.valid}")
            candidates = "SELECT * FROM new_valid"
            old_days: set[str] = set()
            if clean:
                keys = shape.key_list
                con.execute(f"CREATE TABLE new_keys AS SELECT DISTINCT {keys} FROM new_valid")
                con.execute(f"COPY new_keys TO {literal(str(run_dir / 'keys.parquet'))} "
                            "(FORMAT PARQUET)")
                # Key columns only (Parquet projection), to find the files holding them.
                hits = [str(row[0]) for row in con.execute(
                    f"SELECT DISTINCT c._kafka_file FROM {scan(clean, filename='_kafka_file')} c "
                    f"SEMI JOIN new_keys k USING ({keys})").fetchall()]
                if hits:
                    # Data files hold the day column already (the table's partition).
                    con.execute(
                        f"CREATE TABLE old_winners AS SELECT c.* FROM {scan(hits)} c "
                        f"SEMI JOIN new_keys k USING ({keys})")
                    old_days = {str(r[0]) for r in con.execute(
                        f"SELECT DISTINCT {DAY_COLUMN} FROM old_winners").fetchall()}
                    candidates += " UNION ALL BY NAME SELECT * FROM old_winners"
            if shape.keyed or duplicates:
                candidates = (f"SELECT * FROM ({candidates}) QUALIFY row_number() OVER "
                              f"(PARTITION BY {shape.key_list} ORDER BY {shape.order}) = 1")
            winners_path = str(run_dir / "winners.parquet")
            winners = literal(winners_path)
            con.execute(f"COPY ({candidates} ORDER BY {DAY_COLUMN}, {shape.sort}) TO {winners} "
                        f"(FORMAT PARQUET, COMPRESSION LZ4, "
                        f"ROW_GROUP_SIZE {self.config.row_group_rows})")
            new_days = {str(r[0]) for r in con.execute(
                f"SELECT DISTINCT {DAY_COLUMN} FROM {scan([winners_path])}").fetchall()}
            return merge, old_days, new_days
        except duckdb.Error as exc:
            raise CompactionError(
                f"merging the raw files of {self.topic!r} failed in DuckDB: {exc}; check "
                f"free space under {self.config.work_dir} and the memory_limit") from exc
        finally:
            con.close()

    # ------------------------------------------------------------------ day tasks

    async def _execute(self, tasks: list[DayTask], run_dir: Path,
                       written: list[str]) -> list[DayVersion]:
        """Run the day tasks here, or through the dispatcher with staged inputs."""
        if self._dispatcher is None or not tasks:
            return await self._run_days(tasks, run_dir, written)
        staged_paths: list[str] = []
        try:
            staged = await stage_inputs(self._days, tasks, run_dir, staged_paths)
            try:
                versions = await self._dispatcher.run(staged)
            except LakeObjectNotFound as exc:
                # Another compactor committed this seq and its sweep removed our staged
                # inputs (they can never be committed): re-plan, as after a lost commit.
                raise CompactionConflict(
                    f"the staged inputs of {self.topic!r} seq {tasks[0].seq} vanished while "
                    f"its day tasks ran (another compactor committed); re-planning") from exc
        finally:
            # Finished, failed or conflicting: nobody needs this run's inputs any more
            # (a worker still on one of its tasks fails, and its result is ignored).
            await self._delete(staged_paths)
            await self._days.forget(staged_paths)
        if len(versions) != len(tasks):
            raise CompactionError(f"the dispatcher returned {len(versions)} result(s) for "
                                  f"{len(tasks)} day task(s) of {self.topic!r}")
        for task, version in zip(tasks, versions, strict=True):
            written.extend(version.files)
            if self._on_day_written is not None:
                await self._on_day_written(task, version.files)
        return versions

    async def _run_days(self, tasks: list[DayTask], run_dir: Path,
                        written: list[str]) -> list[DayVersion]:
        """Run the day tasks, ``jobs`` at a time; the first failure cancels the rest."""
        if self.config.jobs == 1:
            return [await self._run_day(task, run_dir, written) for task in tasks]
        limit = asyncio.Semaphore(self.config.jobs)

        async def one(task: DayTask) -> DayVersion:
            async with limit:
                return await self._run_day(task, run_dir, written)

        async with asyncio.TaskGroup() as group:
            running = [group.create_task(one(task)) for task in tasks]
        return [r.result() for r in running]

    async def _run_day(self, task: DayTask, run_dir: Path, written: list[str]) -> DayVersion:
        """Write one day's new files to the lake (not yet referenced by any snapshot)."""
        version = await self._days.run(task, scratch=run_dir, written=written)
        if self._on_day_written is not None:
            await self._on_day_written(task, version.files)
        return version

    # ------------------------------------------------------------------ upkeep

    async def _delete(self, paths: Sequence[str]) -> int:
        """Delete lake objects (best effort: what fails is swept by a later run)."""
        deleted = 0
        for path in paths:
            try:
                await self.lake.delete(path)
                deleted += 1
            except LakeError as exc:
                log.warning("could not delete %s from %s: %s; a later run retries",
                            path, self.lake.url, exc.message)
        return deleted

    async def _maintain(self, catalog: CleanCatalog, state: TableState) -> int:
        """Expire old snapshots; delete data files no kept snapshot references and no
        future one can (seq <= the table's), and staged inputs of runs that cannot commit.
        """
        table = state.table or await asyncio.to_thread(catalog.load, self.topic)
        if table is None:
            return 0
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        await asyncio.to_thread(expire, catalog, table, self.config.retention_seconds, now)
        referenced = await asyncio.to_thread(referenced_paths, catalog, table)
        seq = table_seq(table)
        orphans = [o.path for o in await self.lake.list(data_prefix(self.topic))
                   if (parsed := parse_data_path(o.path)) is not None and parsed.seq <= seq
                   and o.path not in referenced]
        stale = [o.path for o in await self.lake.list(staging_topic_prefix(self.topic))
                 if (staged := parse_staging_path(o.path)) is not None and staged[0] <= seq]
        if orphans or stale:
            log.info("deleting %d unreferenced data file(s) and %d stale staged input(s) of %s",
                     len(orphans), len(stale), self.topic)
        deleted = await self._delete(orphans) + await self._delete(stale)
        await self._days.forget(orphans)
        return deleted
