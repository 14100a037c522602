"""SQLite through the standard library: one connection on one thread, WAL, savepoints."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.db import sql
from onepipe.sinks.db.base import BeforeCommit, Rejected, SinkRow, Target
from onepipe.sinks.db.columns import Dialect

__all__ = ["SqliteDatabase", "sqlite_path"]

T = TypeVar("T")


def sqlite_path(dsn: str) -> Path:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (SQLAlchemy's)."""
    prefix = "sqlite:///"
    if not dsn.startswith(prefix) or len(dsn) == len(prefix):
        raise ConfigError(f"a SQLite DSN is sqlite:///relative/file.db or "
                          f"sqlite:////absolute/file.db; got {dsn!r}")
    return Path(dsn[len(prefix):])


class SqliteDatabase:
    """One SQLite file; see base.py. Every call runs on the database's own thread."""

    dialect: Dialect = "sqlite"

    def __init__(self, dsn: str, where: str) -> None:
        self.path = sqlite_path(dsn)
        self.where = where
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._conn is None:
            raise ConfigError(f"the database {self.where} is not open; start() it first")
        conn = self._conn
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, conn)

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite")

        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the sink
            conn.execute("PRAGMA synchronous=FULL")  # a committed batch survives power loss
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._thread,
                                                                          connect)
        except BaseException:
            thread, self._thread = self._thread, None
            thread.shutdown(wait=False)
            raise

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        conn, self._conn = self._conn, None
        if thread is not None:
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(thread, conn.close)
            thread.shutdown(wait=True)

    async def columns(self, table: str) -> dict[str, str] | None:
        rows = await self.fetch(f"PRAGMA table_info({sql.quote('sqlite', table)})")
        return {str(r[1]): str(r[2]) for r in rows} or None

    async def ddl(self, statements: Sequence[str]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(run)

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(lambda conn: [tuple(r) for r in
                                             conn.execute(statement, tuple(params))])

    async def write(self, target: Target, rows: Sequence[SinkRow],
                    positions: Sequence[tuple[str, str, int, int]],
                    before_commit: BeforeCommit | None = None) -> list[Rejected]:
        mark = sql.upsert_position("sqlite")
        statement = target.upsert

        def whole(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(statement, [r.params for r in rows])
                conn.executemany(mark, positions)
                conn.execute("COMMIT")
                return True
            except (sqlite3.DataError, sqlite3.IntegrityError):
                conn.execute("ROLLBACK")
                return False
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        def each(conn: sqlite3.Connection) -> list[Rejected]:
            """Row by row in savepoints; the transaction stays open for the caller."""
            rejected: list[Rejected] = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    conn.execute("SAVEPOINT onepipe_row")
                    try:
                        conn.execute(statement, row.params)
                        conn.execute("RELEASE onepipe_row")
                    except (sqlite3.DataError, sqlite3.IntegrityError) as exc:
                        conn.execute("ROLLBACK TO onepipe_row")
                        conn.execute("RELEASE onepipe_row")
                        rejected.append(Rejected(row, f"{type(exc).__name__}: {exc}"))
                conn.executemany(mark, positions)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return rejected

        if await self._run(whole):
            return []
        rejected = await self._run(each)
        try:
            if rejected and before_commit is not None:
                await before_commit(rejected)
        except BaseException:
            await self._run(lambda conn: conn.execute("ROLLBACK"))
            raise
        await self._run(lambda conn: conn.execute("COMMIT"))
        return rejected
