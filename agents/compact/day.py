"""Running one day task wherever it runs (the compactor, a pool worker), and staging its inputs.

Contract:
- :meth:`DayExecutor.run` writes the new data files of ``task.date`` to the lake, named
  with the task's ``seq``, run id and the given ``attempt`` id
  (onepipe.sinks.lake.iceberg.layout), with the table's field ids, sorted by the key, and
  returns their :class:`~onepipe.agents.compact.plan.DayVersion` (no file for a day left
  empty). It publishes nothing: only the planning run's snapshot commit can reference the
  files. Two executions of one task with different attempt ids write disjoint files; the
  one the snapshot does not reference is an orphan the compactor's sweep deletes once the
  table's sequence number reaches ``task.seq``.
- Inputs: ``task.old_files`` (data files, lake paths) and the winners/keys files - local
  files of the planning run, or (``task.staged``) lake paths. Lake paths are read in place
  on a local lake and downloaded once into ``<work_dir>/cache`` on S3.
- Each execution works in a run folder of ``work_dir`` (onepipe.agents.compact.workdir): the
  planning run's, or its own, so a killed worker's spill files are removed by the next
  run sharing the work dir.
- Failures raise :class:`~onepipe.schemas.errors.CompactionError` (DuckDB) or
  :class:`~onepipe.schemas.errors.LakeError` (a missing or unreadable input, a refused put); the
  paths already put are in ``written`` (the caller deletes them or leaves them to the
  sweep - nothing references them).
- :func:`stage_inputs` makes a plan's tasks runnable elsewhere: the winners are sliced
  per day (a worker downloads only its day's rows, and no upload holds more than one
  day in memory) and put under ``clean/<topic>/_runs/v<seq>/<run id>/`` with the keys file.
  The local files are also linked into the cache, so a coordinator running a task itself
  does not download what it just uploaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import duckdb

from onepipe.agents.compact.config import CompactionConfig
from onepipe.agents.compact.plan import DAY_COLUMN, DayTask, DayVersion, literal, quote, scan
from onepipe.agents.compact.workdir import claim_run_dir, connect, release_run_dir
from onepipe.schemas.errors import CompactionError
from onepipe.sinks.lake.iceberg import field_ids_sql
from onepipe.sinks.lake.iceberg.layout import data_file_path, staging_prefix
from onepipe.sinks.lake.local_copy import fetch_local
from onepipe.sinks.lake.store import LakeStore

_FETCH_CONCURRENCY = 8


class DayExecutor:
    """Executes :class:`DayTask` s against one lake with one work dir; see the contract."""

    def __init__(self, lake: LakeStore, config: CompactionConfig) -> None:
        self.lake = lake
        self.config = config
        #: Download cache of a remote lake (None: a local lake is read in place).
        self.cache = None if lake.local_root is not None else config.work_dir / "cache"

    async def run(self, task: DayTask, *, attempt: str = "", scratch: Path | None = None,
                  written: list[str] | None = None) -> DayVersion:
        """Write ``task``'s day version to the lake (unreferenced); see the contract.

        ``scratch`` is the run folder to work in (the planning run's); without it the
        execution claims a folder of its own under ``<work_dir>/runs``.
        """
        written = written if written is not None else []
        if scratch is not None:
            return await self._run(task, attempt, scratch, written)
        run_dir = self.config.work_dir / "runs" / f"{task.run_id}-{attempt or uuid.uuid4().hex}"
        lock = await asyncio.to_thread(claim_run_dir, run_dir)
        try:
            return await self._run(task, attempt, run_dir, written)
        finally:
            await asyncio.to_thread(release_run_dir, run_dir, lock)

    async def _run(self, task: DayTask, attempt: str, run_dir: Path,
                   written: list[str]) -> DayVersion:
        old_local = await self.local(list(task.old_files))
        winners_local = keys_local = None
        if task.staged:
            (winners_local,) = await self.local([task.winners_file])
            if task.keys_file is not None:
                (keys_local,) = await self.local([task.keys_file])
        sql = task.sql(old_local, winners_local, keys_local)
        out_dir = run_dir / "days" / (f"{task.date}-{attempt}" if attempt else task.date)
        rows, parts = await asyncio.to_thread(self._day_sync, task, sql, out_dir, run_dir)
        paths: list[str] = []
        size = 0
        for index, part in enumerate(parts if rows else ()):
            path = data_file_path(task.topic, task.date, task.seq, task.run_id, index, attempt)
            data = await asyncio.to_thread(part.read_bytes)
            written.append(path)  # before the put: a failed put may still leave the object
            await self.lake.put(path, data)
            paths.append(path)
            size += len(data)
            del data
        await asyncio.to_thread(shutil.rmtree, out_dir, True)
        return DayVersion(seq=task.seq, files=tuple(paths), rows=rows, bytes=size)

    def _day_sync(self, task: DayTask, sql: str, out_dir: Path,
                  run_dir: Path) -> tuple[int, list[Path]]:
        config = self.config
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        con = connect(config, run_dir, ":memory:")
        try:
            # Ids for the columns this day has (older days may lack newer columns).
            columns = con.sql(f"SELECT * FROM ({sql}) LIMIT 0").to_arrow_table().schema
            ids = field_ids_sql(task.field_ids, columns)
            result = con.execute(
                f"COPY ({sql}) TO {literal(str(out_dir))} (FORMAT PARQUET, "
                f"COMPRESSION ZSTD, ROW_GROUP_SIZE {config.row_group_rows}, "
                f"FILE_SIZE_BYTES {config.max_file_bytes}, FIELD_IDS {ids})").fetchone()
        except KeyError as exc:
            raise CompactionError(
                f"day {task.date} of {task.topic!r} has a column its table lacks ({exc}); the "
                "task was planned against another schema - re-plan") from exc
        except duckdb.Error as exc:
            raise CompactionError(
                f"writing day {task.date} of {task.topic!r} failed in DuckDB: {exc}; check "
                f"free space under {config.work_dir} and the memory_limit") from exc
        finally:
            con.close()
        # DuckDB names the parts data_0, data_1, ... in row order.
        parts = sorted(out_dir.glob("data_*.parquet"), key=lambda p: int(p.stem[5:]))
        return (int(result[0]) if result else 0), parts

    # ------------------------------------------------------------------ local copies

    async def local(self, paths: Sequence[str]) -> list[str]:
        """Local files for lake paths (downloads into the cache for a remote lake)."""
        limit = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def one(path: str) -> str:
            async with limit:
                local = await fetch_local(self.lake, path, self.cache)
            if local is None:  # only without a cache, which an executor always has
                raise CompactionError(f"no local copy of {path!r}")
            return str(local)

        return list(await asyncio.gather(*(one(p) for p in paths)))

    async def seed(self, path: str, local: Path) -> None:
        """Make ``local`` the cached copy of lake object ``path`` (nothing on a local lake)."""
        if self.cache is not None:
            await asyncio.to_thread(_link_atomically, local, self.cache / path)

    async def forget(self, paths: Sequence[str]) -> None:
        """Drop cached copies no later run needs (merged raw files, deleted clean files)."""
        if self.cache is None:
            return
        cache = self.cache
        for path in paths:
            await asyncio.to_thread((cache / path).unlink, True)


def _link_atomically(source: Path, target: Path) -> None:
    # The cache trusts any file under its name: publish a whole copy by rename.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or no hard links: copy instead
        shutil.copyfile(source, tmp)
    tmp.replace(target)


# ------------------------------------------------------------------ staging


async def stage_inputs(executor: DayExecutor, tasks: Sequence[DayTask], run_dir: Path,
                       staged_paths: list[str]) -> list[DayTask]:
    """Put the inputs of ``tasks`` (one planning run's) in the lake; the staged tasks.

    Every path is appended to ``staged_paths`` before its put, so the caller can delete
    all of them (:func:`~onepipe.sinks.lake.iceberg.layout.staging_prefix`) whatever happens.
    """
    if not tasks:
        return []
    first = tasks[0]
    if any(t.run_id != first.run_id or t.staged for t in tasks):
        raise CompactionError("stage_inputs takes the unstaged tasks of one planning run")
    prefix = staging_prefix(first.topic, first.seq, first.run_id)
    slices = await asyncio.to_thread(_slice_sync, executor.config, run_dir, first.winners_file,
                                     [t.date for t in tasks])
    keys_path = None
    if first.keys_file is not None:
        keys_path = prefix + "keys.parquet"
        await _upload(executor, keys_path, Path(first.keys_file), staged_paths)
    staged: list[DayTask] = []
    for task in tasks:
        path = f"{prefix}winners-{task.date}.parquet"
        await _upload(executor, path, slices[task.date], staged_paths)
        staged.append(replace(task, winners_file=path, keys_file=keys_path, staged=True))
    return staged


async def _upload(executor: DayExecutor, path: str, local: Path, staged_paths: list[str]
                  ) -> None:
    data = await asyncio.to_thread(local.read_bytes)
    staged_paths.append(path)
    await executor.lake.put(path, data)
    del data
    await executor.seed(path, local)


def _slice_sync(config: CompactionConfig, run_dir: Path, winners: str,
                dates: Sequence[str]) -> dict[str, Path]:
    out = run_dir / "stage"
    out.mkdir(parents=True, exist_ok=True)
    slices: dict[str, Path] = {}
    con = connect(config, run_dir, ":memory:")
    try:
        for date in dates:
            target = out / f"winners-{date}.parquet"
            # The winners are sorted by (day, sort); a filtered scan keeps that order.
            con.execute(
                f"COPY (SELECT * FROM {scan([winners])} WHERE {quote(DAY_COLUMN)} = "
                f"{literal(date)}) TO {literal(str(target))} (FORMAT PARQUET, "
                f"COMPRESSION LZ4, ROW_GROUP_SIZE {config.row_group_rows})")
            slices[date] = target
    except duckdb.Error as exc:
        raise CompactionError(
            f"slicing the winners of {winners!r} per day failed in DuckDB: {exc}; check free "
            f"space under {config.work_dir}") from exc
    finally:
        con.close()
    return slices
