"""Reading the raw lake back as Arrow: ``raw/<topic>/`` files in partition and offset order.

:func:`read_raw` reads the files the inventory lists (onepipe.sinks.lake.inventory),
optionally only some days (of the Kafka timestamp, as the raw layout places files) and
partitions. Files written under different schemas differ in typed columns: they are
united by name, nulls where a file lacks a column. Results are Arrow tables in memory:
meant for previews, tests and bounded reads (use ``limit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from onepipe.schemas.errors import LakeObjectNotFound
from onepipe.sinks.lake.inventory import raw_inventory
from onepipe.sinks.lake.local_copy import fetch_local
from onepipe.sinks.lake.store import LakeStore

__all__ = ["read_raw"]


async def _read_file(lake: LakeStore, path: str, cache_dir: Path | None) -> pa.Table:
    local = await fetch_local(lake, path, cache_dir)
    if local is not None:
        try:
            return await asyncio.to_thread(pq.read_table, local)
        except FileNotFoundError as exc:  # deleted between the check and the open
            raise LakeObjectNotFound(f"{path!r} is not in the lake {lake.url}") from exc
    data = await lake.get(path)
    return await asyncio.to_thread(pq.read_table, pa.BufferReader(data))


async def read_raw(lake: LakeStore, topic: str, dates: Sequence[str] | None = None,
                   cache_dir: Path | None = None, *, partitions: Sequence[int] | None = None,
                   limit: int | None = None) -> pa.Table:
    """The raw rows of ``topic`` in partition/offset order (all, or some days/partitions)."""
    inventory = await raw_inventory(lake, topic)
    paths = [f.path for f in inventory.files
             if (dates is None or f.date in dates)
             and (partitions is None or f.partition in partitions)]
    tables: list[pa.Table] = []
    rows = 0
    for path in paths:
        if limit is not None and rows >= limit:
            break
        table = await _read_file(lake, path, cache_dir)
        tables.append(table)
        rows += table.num_rows
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="permissive")
    return table.slice(0, limit) if limit is not None else table
