"""The lake store contract: one interface over a local folder and an S3 bucket.

Everything that reads or writes the lake (the archive agent, the compactor, ``verify``)
talks to a :class:`LakeStore`, so the same code runs on a laptop (``file:///...``) and in
production (``s3://bucket/prefix``). What every store guarantees:

- **Whole objects or nothing.** A reader sees either the previous object or the complete
  new one, never a partial file, including after a crash of the writer mid-``put``.
- **One creator wins.** ``put_if_absent`` from any number of concurrent callers (tasks,
  processes, machines on the same bucket) returns ``True`` for exactly one of them, and
  the stored bytes are that caller's. A manifest commit builds on this.
- **Listing shows finished objects only.** ``list`` never returns a writer's temporary
  file; results are sorted by path, so two stores with the same objects list the same.
- **Paths are relative and '/'-separated.** ``raw/widgets/partition=3/0-99.parquet``; no
  leading ``/``, no empty segment, no segment starting with ``.`` (that rules out ``..``
  escapes and is reserved for temporary files). A bad path raises :class:`LakeError`
  naming it, before any I/O.
- **Errors are onepipe errors.** A missing object raises ``LakeObjectNotFound``; anything
  else the folder or the bucket refuses raises ``LakeError`` (retriable) whose message
  names the object and what to check. A store is an async context manager; closing twice
  is harmless, using it after ``close`` raises ``LakeError``.

Not guaranteed: ordering or atomicity across several objects (write the data files
first, then commit a manifest with ``put_if_absent``/``put``), and ``list`` is not a
snapshot taken at one instant while writers are active.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from onepipe.schemas.errors import LakeError


@dataclass(frozen=True, slots=True)
class LakeObject:
    """One finished object in the lake, as ``list`` reports it."""

    #: Relative to the lake root, '/'-separated, no leading '/'.
    path: str
    #: Size in bytes.
    size: int


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach S3 (or an S3-compatible server); ``None`` means botocore's default."""

    #: e.g. ``http://127.0.0.1:5000`` for moto or MinIO; ``None`` is AWS itself.
    endpoint_url: str | None = None
    #: e.g. ``eu-west-1``; ``None`` reads ``AWS_DEFAULT_REGION`` / the profile.
    region: str | None = None
    #: Both keys or neither: ``None`` uses the usual AWS chain (env vars, profile, role).
    access_key_id: str | None = None
    #: Kept out of ``repr`` so settings can be logged.
    secret_access_key: str | None = field(default=None, repr=False)


@runtime_checkable
class LakeStore(Protocol):
    """A folder or bucket of immutable-by-convention objects; see the module contract."""

    #: The URL the store was opened with, e.g. ``s3://bucket/lake`` (for logs and errors).
    url: str
    #: The folder holding the objects as files on this machine (readers open them in
    #: place instead of copying), or None for a remote store.
    local_root: Path | None

    async def put(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path``, replacing any object there.

        Readers see the whole old object or the whole new one, never a partial file.
        """
        ...

    async def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` only if nothing is there; ``False`` (nothing written) if it was.

        Of any number of concurrent callers for one path exactly one gets ``True``, and the
        stored object is that caller's ``data``.
        """
        ...

    async def get(self, path: str) -> bytes:
        """The whole object; ``LakeObjectNotFound`` when missing."""
        ...

    async def get_range(self, path: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from byte ``start`` (fewer at the end of the object,
        ``b""`` past it), e.g. a Parquet footer; ``LakeObjectNotFound`` when missing."""
        ...

    async def exists(self, path: str) -> bool:
        """Whether a finished object is at ``path``."""
        ...

    async def list(self, prefix: str) -> builtins.list[LakeObject]:
        """Every object whose path starts with ``prefix`` (recursive), sorted by path.

        ``prefix`` normally ends with '/' (``raw/widgets/partition=3/``); ``""`` is the
        whole lake. Temporary files of writers are never listed.
        """
        ...

    async def list_dirs(self, prefix: str) -> builtins.list[str]:
        """Names of the immediate child 'directories' of ``prefix``, sorted.

        ``list_dirs("raw/widgets/partition=3/")`` -> ``["date=2026-11-26", ...]``. A
        directory is listed only while it holds at least one object (as on S3).
        """
        ...

    async def delete(self, path: str) -> None:
        """Remove the object at ``path``; a missing object is not an error."""
        ...

    async def remove_stale_temp_files(self, prefix: str) -> int:
        """Delete writers' leftover temporary files under ``prefix``; how many were removed.

        For start-up or partition assignment after a crash; a store whose writes leave no
        temporary objects (S3: a PUT is atomic) removes nothing.
        """
        ...

    async def close(self) -> None:
        """Release connections; harmless twice; any later call raises ``LakeError``."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --- helpers shared by the implementations -------------------------------------------


def check_path(path: str) -> str:
    """``path`` if it names an object inside the lake, else ``LakeError`` naming it."""
    if not isinstance(path, str) or not path or path.endswith("/"):
        raise LakeError(
            f"lake path must be a non-empty relative file path like 'raw/t/x.parquet'; "
            f"got {path!r}"
        )
    _check_segments(path, path.split("/"))
    return path


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is ``""`` or a relative path prefix, else ``LakeError``."""
    if not isinstance(prefix, str):
        raise LakeError(f"lake prefix must be a string like 'raw/widgets/'; got {prefix!r}")
    if prefix:
        segments = prefix.split("/")
        if segments[-1] == "":
            segments.pop()  # the usual trailing '/'
        _check_segments(prefix, segments)
    return prefix


def dir_prefix(prefix: str) -> str:
    """``prefix`` checked and ending with '/' (or ``""``), for ``list_dirs``."""
    check_prefix(prefix)
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def is_visible(path: str) -> bool:
    """Whether ``path`` can be an object of the lake (no segment is hidden or empty)."""
    return all(seg and not seg.startswith(".") for seg in path.split("/"))


def _check_segments(original: str, segments: builtins.list[str]) -> None:
    if original.startswith("/"):
        raise LakeError(f"lake path must be relative to the lake root (no leading '/'); "
                        f"got {original!r}")
    for seg in segments:
        if seg in ("..", "."):
            raise LakeError(f"lake path must not contain '{seg}' segments; got {original!r}")
        if not seg or seg.startswith(".") or "\x00" in seg or "\\" in seg:
            raise LakeError(
                f"lake path segments must be non-empty, must not start with '.' (reserved "
                f"for temporary files) and must not contain '\\' or NUL; got {original!r}"
            )
