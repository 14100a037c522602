"""A warehouse table (``onepipe warehouse load``) as a ``verify`` system.

:class:`WarehouseSource` (a :class:`~onepipe.agents.verify.sources.VerifySource`, shown as
``warehouse`` unless named) reads the table day by day - its days are the
``_kafka_clean_day`` values it holds, each read in chunks from one snapshot of the table
- turns every value back into the lake's Arrow value for its column with the online
sinks' conversions (onepipe.sinks.db.Column.from_db), and answers figures and the
drill-down with the same functions as every other system. A row changed, lost or added
in the warehouse changes that day's figures, and the drill-down names its key. Columns
the table lacks (a field added after the last load) read as nulls, as in the lake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pyarrow as pa

from onepipe.agents.verify.sources import A, ArrowDays
from onepipe.sinks.db import Column
from onepipe.sinks.formats.topic_view import TopicView
from onepipe.sinks.warehouse import day_rows, table_columns, warehouse_days
from onepipe.sinks.warehouse.load import connect

__all__ = ["WarehouseSource"]


class WarehouseSource(ArrowDays):
    """One warehouse table of a topic; see the module contract."""

    def __init__(self, view: TopicView, dsn: str, table: str, name: str = "warehouse"
                 ) -> None:
        super().__init__(view)
        self.dsn, self.table, self.name = dsn, table, name
        self._days: list[str] | None = None
        self._present: set[str] = set()

    async def _connect(self) -> asyncpg.Connection:
        return await connect(self.dsn)

    async def _day_names(self) -> list[str]:
        if self._days is None:
            conn = await self._connect()
            try:
                columns = await table_columns(conn, self.table)
                self._present = set(columns or ())
                self._days = [] if columns is None else await warehouse_days(conn, self.table)
            finally:
                await conn.close()
        return self._days

    async def _scan(self, day: str, start: Callable[[], A]) -> A:
        into = start()
        names = [n for n in self.view.columns if n in self._present]
        conn = await self._connect()
        try:
            async for rows in day_rows(conn, self.table, names, day):
                batch = await asyncio.to_thread(self._batch, names, rows)
                await asyncio.to_thread(into.add, batch)
        finally:
            await conn.close()
        return into

    def _batch(self, names: list[str], rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
        arrays = []
        for name in self.view.columns:
            kind = self.view.column_type(name)
            if name not in names:
                arrays.append(pa.nulls(len(rows), kind))
                continue
            i = names.index(name)
            back = Column(name, kind, key=False).from_db("postgres")
            arrays.append(pa.array([back(r[i]) for r in rows], type=kind))
        return pa.RecordBatch.from_arrays(arrays, names=list(self.view.columns))
