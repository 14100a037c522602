"""PostgreSQL through asyncpg: a small pool; a batch is a COPY into a per-connection
staging table plus one merge statement, and only a batch the database refuses is written
again row by row, each row in its own savepoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.db import sql
from onepipe.sinks.db.base import BeforeCommit, Rejected, SinkRow, Target
from onepipe.sinks.db.columns import Dialect

__all__ = ["PostgresDatabase"]


class PostgresDatabase:
    """One PostgreSQL database (``postgresql://user:pw@host:port/db``); see base.py."""

    dialect: Dialect = "postgres"

    def __init__(self, dsn: str, where: str) -> None:
        self._dsn, self.where = dsn, where
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is None:
            # Named, so a DBA sees whose connections these are in pg_stat_activity.
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=2, command_timeout=60,
                server_settings={"application_name": "onepipe-sink"})

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _ready(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConfigError(f"the database {self.where} is not open; start() it first")
        return self._pool

    async def columns(self, table: str) -> dict[str, str] | None:
        rows = await self._ready().fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            sql.quote("postgres", table))
        return {r[0]: r[1] for r in rows} or None

    async def ddl(self, statements: Sequence[str]) -> None:
        async with self._ready().acquire() as conn, conn.transaction():
            for statement in statements:
                await conn.execute(statement)

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self._ready().fetch(statement, *params)]

    async def write(self, target: Target, rows: Sequence[SinkRow],
                    positions: Sequence[tuple[str, str, int, int]],
                    before_commit: BeforeCommit | None = None) -> list[Rejected]:
        mark = sql.upsert_position("postgres")
        stage = sql.stage_name(target.table, target.columns)
        names = [c.name for c in target.columns] + [sql.RANK, sql.TIMESTAMP]
        async with self._ready().acquire() as conn:
            try:
                async with conn.transaction():
                    if rows:
                        # COPY into a staging table, then one merge: ~4x the rows/s of
                        # one upsert per row (bench/sink.py).
                        await conn.execute(sql.create_stage(target.table, stage))
                        await conn.copy_records_to_table(
                            stage, records=[r.params for r in rows], columns=names)
                        await conn.execute(sql.merge_stage(target.table, stage,
                                                           target.columns))
                    await conn.executemany(mark, positions)
                return []
            except asyncpg.DataError:
                pass  # some value this database cannot hold: find it row by row
            rejected: list[Rejected] = []
            async with conn.transaction():
                for row in rows:
                    try:
                        async with conn.transaction():  # a savepoint per row
                            await conn.execute(target.upsert, *row.params)
                    except asyncpg.DataError as exc:
                        rejected.append(Rejected(row, f"{type(exc).__name__}: {exc}"))
                await conn.executemany(mark, positions)
                if rejected and before_commit is not None:
                    await before_commit(rejected)
            return rejected
