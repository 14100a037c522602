"""Compactor ("Copydog"): ``raw/<topic>/`` into the clean lake, one unique row per key.

Contract:
- In: raw files of one topic (onepipe.sinks.lake.raw_layout). Out:
  ``clean/<topic>/date=<D>/v<N>/`` files and manifest ``N``
  (onepipe.sinks.lake.clean_manifest). Per day, one row per unique key - the key's
  *global* winner under the topic's merge rule, over every version ever archived - placed
  in the day of the winner's ``partition_time`` and sorted by the key columns. A key whose
  new winner falls in another day than its previous winner is removed from the old day
  (which gets a new version too). A topic without key keeps every decodable record once
  (by partition and offset), sorted by (partition time, partition, offset).
- Clean rows keep every raw column (the ``_kafka_*`` bytes and provenance, for re-merging
  and exact replay) plus the typed columns; columns a newer schema added are null in rows
  merged before (union by name). Rows that did not decode, or lack a key field or their
  partition time, are left out and counted in the :class:`CompactionReport`.
- **Atomic publication.** Day files go under names no manifest references yet; the
  manifest is committed last with ``put_if_absent``. Two compactors racing on a topic:
  exactly one commits each ``seq``; the other gets ``CompactionConflict``, deletes what it
  wrote, re-plans from the new manifest and runs again (``max_retries`` times).
- **Crash safety.** A crash before the commit leaves only unreferenced files; a rerun
  plans from the same manifest and writes the same content under a new run id. Files not
  referenced by the latest manifest whose ``v<N>`` is at most its ``seq`` can never become
  referenced (a later manifest only adds ``v<its seq>`` files), so each run deletes them
  (no clock needed). Superseded files stay listed as ``retired`` for
  ``retention_seconds`` (readers pinned to an older manifest finish reading), then the
  next committing run drops and deletes them. The merge is idempotent: re-merging raw
  rows a manifest already holds changes nothing. A rerun on an up-to-date lake commits
  nothing (``seq`` None).
- **Memory.** DuckDB does the merge with ``memory_limit`` and spills to a temp directory
  under ``work_dir``; no day is ever loaded into Python objects. Raw and clean files of an
  S3 lake are downloaded once into ``work_dir/cache`` (DuckDB's httpfs is not available
  offline; lake paths are immutable, so the cache never goes stale).

Cost: finding where the *current* winners of the new keys live reads the key columns of
every current clean file of the topic (and, on S3, caches them locally), so it grows with
the clean lake, not with the new data. A key -> day index is the future fix.

Plan -> day tasks -> execute -> commit: the planning merge writes the new global winners
to one local Parquet file; each :class:`~onepipe.agents.compact.plan.DayTask` is plain data (the
day, its input files, its output names). Tasks run here (onepipe.agents.compact.day), or - given
a :class:`DayTaskDispatcher` (onepipe.agents.compact.pool) - on other workers: their inputs are
staged under ``clean/<topic>/_runs/v<seq>/<run id>/`` first, and that prefix is deleted
when the run ends (committed or not). A crashed run's staging is deleted by the sweep of
a later run once a manifest ``>= seq`` exists, by the rule of the data files above. The
manifest references exactly the files of the results the dispatcher returns; files of
any other execution of a task are orphans of the same kind.
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

from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.day import DayExecutor, stage_inputs
from onepipe.agents.compact.plan import (
    DAY_COLUMN,
    DayTask,
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
from onepipe.sinks.lake.clean_layout import (
    clean_topic_prefix,
    parse_clean_path,
    parse_staging_path,
)
from onepipe.sinks.lake.clean_manifest import (
    DayVersion,
    Manifest,
    RetiredFile,
    commit,
    latest_seq,
    load_latest,
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
    """Compacts one topic's raw lake into its clean lake; see the module contract."""

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
        """Merge what is new in raw into clean and publish it; retry lost commits."""
        started = time.monotonic()
        stale = await asyncio.to_thread(remove_stale_runs, self.config.work_dir / "runs")
        if stale:
            log.info("removed %d run folder(s) of crashed compactions from %s", stale,
                     self.config.work_dir)
        for attempt in range(1, self.config.max_retries + 2):
            try:
                report = await self._attempt()
            except CompactionConflict:
                if attempt > self.config.max_retries:
                    raise
                log.info("compaction of %s lost its commit to another compactor; re-planning "
                         "(attempt %d)", self.topic, attempt + 1)
                continue
            return replace(report, attempts=attempt,
                           duration_seconds=time.monotonic() - started)
        raise AssertionError("unreachable")  # the loop returns or raises

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self) -> CompactionReport:
        manifest = await load_latest(self.lake, self.topic)
        inventory = await raw_inventory(self.lake, self.topic)
        selection = select_raw(inventory.files, manifest.raw_merged)
        now = self._clock()
        expired = [r for r in manifest.retired
                   if now - r.retired_at.timestamp() >= self.config.retention_seconds]
        if not selection and not expired:
            deleted = await self._sweep(manifest)
            return CompactionReport(self.topic, None, files_deleted=deleted)
        run_id = uuid.uuid4().hex
        seq = manifest.seq + 1
        run_dir = self.config.work_dir / "runs" / run_id
        lock = await asyncio.to_thread(claim_run_dir, run_dir)
        written: list[str] = []
        try:
            merge = await self._plan(manifest, selection, run_id, seq, run_dir) \
                if selection else _Merge()
            days = dict(manifest.days)
            retiring: list[str] = []
            for task, version in zip(merge.tasks,
                                     await self._execute(merge.tasks, run_dir, written),
                                     strict=True):
                retiring.extend(task.old_files)
                days[task.date] = version
            # Retention counts from the commit, not from the (maybe long) plan's start.
            moment = datetime.fromtimestamp(max(now, self._clock()), tz=UTC)
            kept = [r for r in manifest.retired if r not in expired]
            new = Manifest(
                topic=self.topic, seq=seq, created_at=moment, run_id=run_id, days=days,
                raw_merged={**manifest.raw_merged,
                            **{p: s.end for p, s in selection.items()}},
                retired=(*kept, *(RetiredFile(path, moment) for path in retiring)),
            )
            try:
                await commit(self.lake, new)
            except CompactionConflict:
                await self._delete(written)
                raise
        finally:
            await asyncio.to_thread(release_run_dir, run_dir, lock)
        log.info("compacted %s into manifest %d: %d day(s), %d raw record(s)", self.topic,
                 seq, len(merge.tasks), sum(s.records for s in selection.values()))
        deleted = await self._delete([r.path for r in expired])
        deleted += await self._sweep(new)
        await self._days.forget([f.path for s in selection.values() for f in s.files]
                                + [r.path for r in expired])
        return CompactionReport(
            topic=self.topic, seq=seq, days_written=tuple(t.date for t in merge.tasks),
            rows_in=sum(s.records for s in selection.values()),
            rows_out=sum(days[t.date].rows for t in merge.tasks),
            undecodable=merge.undecodable, incomplete=merge.incomplete,
            raw_files=sum(len(s.files) for s in selection.values()), files_deleted=deleted)

    # ------------------------------------------------------------------ planning

    async def _plan(self, manifest: Manifest, selection: dict[int, PartitionSelection],
                    run_id: str, seq: int, run_dir: Path) -> _Merge:
        """Merge the new raw rows with the current winners of their keys; make day tasks."""
        raw_paths = [f.path for s in selection.values() for f in s.files]
        raw_local = await self._days.local(raw_paths)
        clean_local: list[str] = []
        if self.shape.keyed:
            # Only keyed topics can have a new version of something already in clean; the
            # watermark keeps new offsets of a keyless topic out of clean.
            clean_local = await self._days.local(
                [p for day in manifest.days.values() for p in day.files])
        duplicates = any(s.duplicates for s in selection.values())
        merge, old_days, new_days = await asyncio.to_thread(
            self._plan_sync, raw_local, trim_filter(selection), duplicates, clean_local,
            run_dir)
        keys_file = str(run_dir / "keys.parquet") if clean_local else None
        for date in sorted(old_days | new_days):
            current = manifest.days.get(date)
            merge.tasks.append(DayTask(
                topic=self.topic, date=date, version=seq, run_id=run_id,
                old_files=current.files if current else (),
                winners_file=str(run_dir / "winners.parquet"), keys_file=keys_file,
                key=self.shape.key, sort=self.shape.sort))
        return merge

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
                    con.execute(
                        f"CREATE TABLE old_winners AS SELECT c.*, {shape.day} AS {DAY_COLUMN} "
                        f"FROM {scan(hits)} c "
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
                # Another compactor published this seq and its sweep removed our staged
                # inputs (they can never be committed): re-plan, as after a lost commit.
                if await latest_seq(self.lake, self.topic) >= tasks[0].version:
                    raise CompactionConflict(
                        f"another compactor published version {tasks[0].version} of "
                        f"{self.topic!r} while its day tasks ran; re-planning") from exc
                raise
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
        """Write one day's new version to the lake (not yet referenced by any manifest)."""
        version = await self._days.run(task, scratch=run_dir, written=written)
        if self._on_day_written is not None:
            await self._on_day_written(task, version.files)
        return version

    # ------------------------------------------------------------------ helpers

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

    async def _sweep(self, manifest: Manifest) -> int:
        """Delete clean files that ``manifest`` and its successors can never reference,
        and inputs staged by runs that can no longer commit (both: version <= seq)."""
        referenced = manifest.files()
        orphans: list[str] = []
        stale: list[str] = []
        for obj in await self.lake.list(clean_topic_prefix(self.topic)):
            parsed = parse_clean_path(obj.path)
            if parsed is not None and parsed.version <= manifest.seq \
                    and obj.path not in referenced:
                orphans.append(obj.path)
            staged = parse_staging_path(obj.path)
            if staged is not None and staged[0] <= manifest.seq:
                stale.append(obj.path)
        if orphans or stale:
            log.info("deleting %d orphaned clean file(s) and %d stale staged input(s) of %s",
                     len(orphans), len(stale), self.topic)
        return await self._delete(orphans) + await self._delete(stale)
