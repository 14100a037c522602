"""Reading the lake: the clean lake through its manifest, the raw lake through its names.

Contract:
- :func:`read_clean` loads the latest manifest once and reads only the files it lists,
  so the result is one published version of every day asked for, never a mix of two
  versions (even while compactors publish). The manifest ``seq`` read is in the table's
  schema metadata (:data:`SEQ_KEY`). A file of that manifest can disappear only once it
  is retired and past the compactor's retention; then the read starts over from the new
  latest manifest (a few times, then :class:`~onepipe.schemas.errors.CompactionError`).
- Days are concatenated in date order; within a day rows keep the version's order
  (sorted by the unique key). Days written under older schemas lack newer columns: those
  come back as nulls (union by name).
- :func:`read_raw` reads ``raw/<topic>/`` files in partition and offset order, optionally
  only some days (of the Kafka timestamp, as the raw layout places files) and partitions.
- :func:`fetch_local` is how the compactor and the readers get a local file to hand to
  pyarrow or DuckDB: a local lake's own file, or an S3 object downloaded once into
  ``cache_dir/<lake path>`` (lake paths name immutable content, so a cached copy never goes
  stale). Without ``cache_dir`` an S3 object is read into memory instead.

Results are Arrow tables in memory: meant for previews, tests and bounded reads (use
``limit``); bulk consumers should read the files the manifest lists with DuckDB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from onepipe.schemas.errors import CompactionError, LakeObjectNotFound
from onepipe.sinks.lake.clean_manifest import load_latest
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.store import LakeStore

#: Arrow schema metadata key holding the manifest ``seq`` a clean read was pinned to.
SEQ_KEY = b"onepipe.manifest_seq"
_READ_ATTEMPTS = 3


async def fetch_local(lake: LakeStore, path: str, cache_dir: Path | None) -> Path | None:
    """A local file holding the lake object ``path``, or None (no cache for a remote lake).

    ``LakeObjectNotFound`` when the object is missing.
    """
    if lake.local_root is not None:
        local = lake.local_root / path
        if not await asyncio.to_thread(local.is_file):
            raise LakeObjectNotFound(f"{path!r} is not in the lake {lake.url}")
        return local
    if cache_dir is None:
        return None
    target = cache_dir / path
    if await asyncio.to_thread(target.is_file):
        return target
    data = await lake.get(path)
    await asyncio.to_thread(_write_atomically, target, data)
    return target


def _write_atomically(target: Path, data: bytes) -> None:
    # A crash mid-write must not leave a truncated file that later runs trust.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


async def _read_file(lake: LakeStore, path: str, cache_dir: Path | None) -> pa.Table:
    local = await fetch_local(lake, path, cache_dir)
    if local is not None:
        try:
            return await asyncio.to_thread(pq.read_table, local)
        except FileNotFoundError as exc:  # deleted between the check and the open
            raise LakeObjectNotFound(f"{path!r} is not in the lake {lake.url}") from exc
    data = await lake.get(path)
    return await asyncio.to_thread(pq.read_table, pa.BufferReader(data))


async def _read_files(lake: LakeStore, paths: Sequence[str], cache_dir: Path | None,
                      limit: int | None) -> pa.Table | None:
    tables: list[pa.Table] = []
    rows = 0
    for path in paths:
        if limit is not None and rows >= limit:
            break
        table = await _read_file(lake, path, cache_dir)
        tables.append(table)
        rows += table.num_rows
    if not tables:
        return None
    # Files of different ages differ in typed columns: union by name, nulls where missing.
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.slice(0, limit) if limit is not None else table


async def read_clean(lake: LakeStore, topic: str, dates: Sequence[str] | None = None,
                     cache_dir: Path | None = None, *, limit: int | None = None) -> pa.Table:
    """The clean rows of ``topic`` (all days, or ``dates``), pinned to one manifest."""
    wanted = set(dates) if dates is not None else None
    for _ in range(_READ_ATTEMPTS):
        manifest = await load_latest(lake, topic)
        paths = [path for day, version in sorted(manifest.days.items())
                 if wanted is None or day in wanted for path in version.files]
        try:
            table = await _read_files(lake, paths, cache_dir, limit)
        except LakeObjectNotFound:
            continue  # retired and expired while we read: start over from the latest
        if table is None:
            table = pa.table({})
        meta = dict(table.schema.metadata or {})
        meta[SEQ_KEY] = str(manifest.seq).encode()
        return table.replace_schema_metadata(meta)
    raise CompactionError(
        f"the clean files of {topic!r} kept disappearing while being read from {lake.url} "
        f"({_READ_ATTEMPTS} attempts); compactions replace them faster than the retention "
        "allows reading: raise ONEPIPE_COMPACT_RETENTION_SECONDS")


async def read_raw(lake: LakeStore, topic: str, dates: Sequence[str] | None = None,
                   cache_dir: Path | None = None, *, partitions: Sequence[int] | None = None,
                   limit: int | None = None) -> pa.Table:
    """The raw rows of ``topic`` in partition/offset order (all, or some days/partitions)."""
    inventory = await raw_inventory(lake, topic)
    paths = [f.path for f in inventory.files
             if (dates is None or f.date in dates)
             and (partitions is None or f.partition in partitions)]
    table = await _read_files(lake, paths, cache_dir, limit)
    return table if table is not None else pa.table({})
