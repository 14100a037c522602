"""A local file for a lake object: what DuckDB and pyarrow readers open.

:func:`fetch_local` gives a local lake's own file, or an S3 object downloaded once into
``cache_dir/<lake path>`` (lake paths name immutable content - raw files, clean data
files, staged inputs - so a cached copy never goes stale). Without ``cache_dir`` an S3
object gets None (the caller reads it into memory instead). A missing object raises
``LakeObjectNotFound``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from onepipe.schemas.errors import LakeObjectNotFound
from onepipe.sinks.lake.store import LakeStore

__all__ = ["fetch_local"]


async def fetch_local(lake: LakeStore, path: str, cache_dir: Path | None) -> Path | None:
    """A local file holding the lake object ``path``, or None (no cache for a remote lake)."""
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
