"""Reading a warehouse table back: its columns, its days, one day's rows in chunks.

These take an open asyncpg connection (the caller owns it); rows come back as tuples in
the order of the names asked for. ``verify`` turns them into Arrow with the online
sinks' conversions (onepipe.sinks.db.Column.from_db).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from onepipe.sinks.db.sql import quote
from onepipe.sinks.warehouse import sql
from onepipe.sinks.warehouse.names import LOADS_TABLE

__all__ = ["day_rows", "loaded_days", "table_columns", "warehouse_days"]


async def table_columns(conn: asyncpg.Connection, table: str) -> dict[str, str] | None:
    """Column -> declared type, in table order; None when there is no such table."""
    rows = await conn.fetch(sql.table_columns(), quote("postgres", table))
    return {r[0]: r[1] for r in rows} or None


async def loaded_days(conn: asyncpg.Connection, topic: str, table: str) -> dict[str, int]:
    """``YYYY-MM-DD`` -> the snapshot id each recorded day was loaded from."""
    if await table_columns(conn, LOADS_TABLE) is None:
        return {}
    rows = await conn.fetch(sql.read_loads(), topic, table)
    return {r[0].isoformat(): int(r[1]) for r in rows}


async def warehouse_days(conn: asyncpg.Connection, table: str) -> list[str]:
    """The days the table holds rows of (its data, not the bookkeeping)."""
    return [r[0].isoformat() for r in await conn.fetch(sql.select_days(table))]


async def day_rows(conn: asyncpg.Connection, table: str, names: Sequence[str], day: str,
                   chunk: int = 50_000) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The rows of ``day`` (only ``names``), ``chunk`` rows at a time, from one snapshot
    of the table (a repeatable-read transaction: a load committing meanwhile is not
    half seen)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(sql.select_day(table, names), dt.date.fromisoformat(day))
        while rows := await cursor.fetch(chunk):
            yield [tuple(r) for r in rows]
