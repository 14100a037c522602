"""The lake in a local folder (``file:///abs/path``): dev mode, tests, a mounted volume.

Guarantees (on a local POSIX file system), beyond the contract in ``onepipe.sinks.lake.store``:

- **Crash-safe writes.** After ``put``/``put_if_absent`` returns, the object survives a
  power loss; a crash mid-write leaves the old state or the complete new file at the
  final name, never a partial one. A crash can leave a hidden ``.<name>.tmp-<hex>`` file
  behind: it is invisible to ``list``/``exists`` and ``remove_stale_temp_files`` deletes it.
- **Exactly one creator** across tasks and processes sharing the folder (a hard link
  cannot replace an existing name). Not guaranteed on file systems without hard links or
  with weak ``link`` semantics (some network shares).
- **The event loop keeps serving.** Blocking file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import unquote, urlsplit

from onepipe.schemas.errors import ConfigError, LakeError, LakeObjectNotFound
from onepipe.sinks.lake.store import LakeObject, check_path, check_prefix, dir_prefix, is_visible

_TMP_MARK = ".tmp-"
T = TypeVar("T")


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and _TMP_MARK in name


class LocalLake:
    """A lake rooted at a local folder; create it with ``open_lake("file:///...")``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or parts.query:
            raise ConfigError(
                f"a local lake URL is file:///absolute/path (three slashes); got {url!r}"
            )
        root = Path(unquote(parts.path))
        if not root.is_absolute() or ".." in root.parts:
            raise ConfigError(f"a local lake URL needs an absolute path without '..'; got {url!r}")
        self.url = url
        self.root = root
        self.local_root: Path | None = root
        self._closed = False
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LakeError(
                f"cannot create the lake folder {root} for {url}: {exc}; "
                "check that the parent folder exists and is writable"
            ) from exc

    def __repr__(self) -> str:
        return f"LocalLake({self.url!r})"

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LakeError(f"the lake {self.url} is closed; open a new store with open_lake()")

    # --- the contract ---------------------------------------------------------------

    async def put(self, path: str, data: bytes) -> None:
        target = self._target(path)
        await self._run(path, self._put_sync, target, data)

    async def put_if_absent(self, path: str, data: bytes) -> bool:
        target = self._target(path)
        return await self._run(path, self._put_if_absent_sync, target, data)

    async def get(self, path: str) -> bytes:
        target = self._target(path)
        return await self._run(path, target.read_bytes, reading=True)

    async def get_range(self, path: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise LakeError(f"get_range needs start >= 0 and length >= 0; got start={start}, "
                            f"length={length} for {path!r}")
        target = self._target(path)
        return await self._run(path, _read_range, target, start, length, reading=True)

    async def exists(self, path: str) -> bool:
        target = self._target(path)
        return await self._run(path, target.is_file)

    async def list(self, prefix: str) -> builtins.list[LakeObject]:
        check_prefix(prefix)
        self._check_open()
        return await self._run(prefix, self._list_sync, prefix)

    async def list_dirs(self, prefix: str) -> builtins.list[str]:
        prefix = dir_prefix(prefix)
        self._check_open()
        return await self._run(prefix, self._list_dirs_sync, prefix)

    async def delete(self, path: str) -> None:
        target = self._target(path)
        await self._run(path, self._delete_sync, target)

    async def remove_stale_temp_files(self, prefix: str) -> int:
        """Delete writers' leftover temporary files under ``prefix``; how many were removed.

        Meant for start-up or partition assignment, after a crash. A temporary file of a
        write still in flight elsewhere is removed too: that write then fails with a
        (retriable) ``LakeError`` instead of completing, and nothing partial is ever seen.
        """
        check_prefix(prefix)
        self._check_open()
        return await self._run(prefix, self._remove_temps_sync, prefix)

    # --- blocking parts, run in threads ---------------------------------------------

    def _target(self, path: str) -> Path:
        check_path(path)
        self._check_open()
        return self.root / path

    async def _run(self, what: str, func: Callable[..., T], *args: object,
                   reading: bool = False) -> T:
        try:
            return await asyncio.to_thread(func, *args)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            if not reading:
                raise self._refused(what, exc) from exc
            raise LakeObjectNotFound(f"{what!r} is not in the lake {self.url}") from exc
        except OSError as exc:
            raise self._refused(what, exc) from exc

    def _refused(self, what: str, exc: OSError) -> LakeError:
        return LakeError(
            f"the lake folder {self.root} refused {what!r}: {exc}; "
            "check permissions and free space"
        )


    def _put_sync(self, target: Path, data: bytes) -> None:
        self._ensure_dir(target.parent)
        tmp = self._write_temp(target, data)
        try:
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def _put_if_absent_sync(self, target: Path, data: bytes) -> bool:
        self._ensure_dir(target.parent)
        tmp = self._write_temp(target, data)
        try:
            # link() never replaces an existing name, so exactly one caller creates it,
            # and the name appears only once the content is complete and synced.
            target.hardlink_to(tmp)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return True

    def _write_temp(self, target: Path, data: bytes) -> Path:
        tmp = target.with_name(f".{target.name}{_TMP_MARK}{uuid.uuid4().hex}")
        try:
            with tmp.open("xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _ensure_dir(self, directory: Path) -> None:
        """Create ``directory`` and sync each new entry, so a new object's folder survives
        a power loss as well as the object itself."""
        if directory.is_dir():
            return
        missing: builtins.list[Path] = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for new in reversed(missing):
            # A FileExistsError for a file in the way surfaces as a LakeError via _run.
            with contextlib.suppress(FileExistsError):
                new.mkdir()
            if not new.is_dir():
                raise NotADirectoryError(f"{new} exists and is not a folder")
            _fsync_dir(new.parent)

    def _delete_sync(self, target: Path) -> None:
        try:
            target.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        _fsync_dir(target.parent)

    def _walk(self, prefix: str) -> builtins.list[tuple[str, os.DirEntry[str]]]:
        """Every file under the folder that contains ``prefix``, whose path starts with it,
        as (relative path, entry), hidden files included; unsorted."""
        base_rel = prefix.rpartition("/")[0]
        base = self.root / base_rel if base_rel else self.root
        found: builtins.list[tuple[str, os.DirEntry[str]]] = []
        stack = [(base, base_rel)]
        while stack:
            folder, rel = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed meanwhile, or the prefix names no folder
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                if not (child.startswith(prefix) or prefix.startswith(child + "/")):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        stack.append((Path(entry.path), child))
                elif entry.is_file():
                    found.append((child, entry))
        return found

    def _list_sync(self, prefix: str) -> builtins.list[LakeObject]:
        objects = []
        for rel, entry in self._walk(prefix):
            if not is_visible(rel):
                continue
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue  # deleted since the folder was read
            objects.append(LakeObject(rel, size))
        objects.sort(key=lambda o: o.path)
        return objects

    def _list_dirs_sync(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix if prefix else self.root
        try:
            entries = list(os.scandir(base))
        except (FileNotFoundError, NotADirectoryError):
            return []
        names = [
            e.name
            for e in entries
            if not e.name.startswith(".")
            and e.is_dir(follow_symlinks=False)
            and _holds_a_file(Path(e.path))
        ]
        return sorted(names)

    def _remove_temps_sync(self, prefix: str) -> int:
        removed = 0
        for _rel, entry in self._walk(prefix):
            if _is_temp_name(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()
                    removed += 1
        return removed


def _holds_a_file(folder: Path) -> bool:
    """Whether ``folder`` holds a visible file at any depth (an S3 'directory' exists only
    while an object is under it); stops at the first one found."""
    for _dirpath, dirnames, filenames in os.walk(folder):
        if any(not name.startswith(".") for name in filenames):
            return True
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return False


def _read_range(target: Path, start: int, length: int) -> bytes:
    with target.open("rb") as fh:
        fh.seek(start)
        return fh.read(length)


def _fsync_dir(directory: Path) -> None:
    """Make the folder's entries (a new or replaced name) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
