"""MySQL and MariaDB through aiomysql: strict SQL mode, UTC, multi-row upserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.db import sql
from onepipe.sinks.db.base import BeforeCommit, Rejected, SinkRow, Target
from onepipe.sinks.db.columns import Dialect

__all__ = ["MysqlDatabase"]

#: Errors about one value (strict mode refuses what it would otherwise truncate):
#: incorrect datetime/string value, JSON or CHECK constraint refused.
_VALUE_ERRORS = {1292, 1366, 1367, 3140, 4025}


def _rejects(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.DataError):
        return True
    if isinstance(exc, pymysql.err.ProgrammingError) and "can not be used with MySQL" in str(exc):
        return True  # a NaN or infinite float: refused by the driver before it is sent
    return (isinstance(exc, pymysql.err.OperationalError | pymysql.err.IntegrityError)
            and bool(exc.args) and exc.args[0] in _VALUE_ERRORS)


class MysqlDatabase:
    """One MySQL/MariaDB database (``mysql://user:pw@host:port/db``); see base.py."""

    dialect: Dialect = "mysql"

    def __init__(self, dsn: str, where: str) -> None:
        parts = urlsplit(dsn)
        database = parts.path.lstrip("/")
        if not parts.hostname or not database:
            raise ConfigError(f"a MySQL DSN is mysql://user:password@host:port/database; "
                              f"got {where}")
        self._options: dict[str, Any] = {
            "host": parts.hostname, "port": parts.port or 3306,
            "user": unquote(parts.username or "root"), "password": unquote(parts.password or ""),
            "db": database, "charset": "utf8mb4", "autocommit": False,
            # Strict: a value a column cannot hold is an error (to the DLQ), never silently
            # truncated. UTC: DATETIME columns hold UTC wall-clock values.
            "init_command": "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION',"
                            " time_zone = '+00:00'",
        }
        self.where = where
        self._pool: aiomysql.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await aiomysql.create_pool(minsize=1, maxsize=2, pool_recycle=3600,
                                                    **self._options)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    def _ready(self) -> aiomysql.Pool:
        if self._pool is None:
            raise ConfigError(f"the database {self.where} is not open; start() it first")
        return self._pool

    async def columns(self, table: str) -> dict[str, str] | None:
        rows = await self.fetch(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", (table,))
        return {str(r[0]): str(r[1]) for r in rows} or None

    async def ddl(self, statements: Sequence[str]) -> None:
        async with self._ready().acquire() as conn, conn.cursor() as cur:
            for statement in statements:
                try:
                    await cur.execute(statement)
                except pymysql.err.Warning:
                    pass  # a note (e.g. another worker created it first) raised as an error
            await conn.commit()

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._ready().acquire() as conn, conn.cursor() as cur:
            await cur.execute(statement, tuple(params))
            rows = await cur.fetchall()
            await conn.commit()  # end the read's transaction: the next read sees new rows
            return [tuple(r) for r in rows]

    async def write(self, target: Target, rows: Sequence[SinkRow],
                    positions: Sequence[tuple[str, str, int, int]],
                    before_commit: BeforeCommit | None = None) -> list[Rejected]:
        mark = sql.upsert_position("mysql")
        statement = target.upsert
        async with self._ready().acquire() as conn, conn.cursor() as cur:
            try:
                await conn.begin()
                if rows:
                    await cur.executemany(statement, [r.params for r in rows])
                await cur.executemany(mark, positions)
                await conn.commit()
                return []
            except pymysql.err.MySQLError as exc:
                await conn.rollback()
                if not _rejects(exc):
                    raise
            rejected: list[Rejected] = []
            await conn.begin()
            try:
                for row in rows:
                    await cur.execute("SAVEPOINT onepipe_row")
                    try:
                        await cur.execute(statement, row.params)
                    except pymysql.err.MySQLError as exc:
                        if not _rejects(exc):
                            raise
                        await cur.execute("ROLLBACK TO SAVEPOINT onepipe_row")
                        rejected.append(Rejected(row, f"{type(exc).__name__}: {exc}"))
                await cur.executemany(mark, positions)
                if rejected and before_commit is not None:
                    await before_commit(rejected)
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
            return rejected
