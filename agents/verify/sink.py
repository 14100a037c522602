"""An online sink as a ``verify`` system: its table read back into the lake's Arrow shapes.

:class:`SinkSource` (a :class:`~onepipe.agents.verify.sources.VerifySource` named after
the sink) reads the whole table once (onepipe.sinks.db.SinkTable.read), turns every value
back into the lake's Arrow value for its column (Column.from_db: what the sink wrote is
exactly what comes back), places rows in days by the topic's ``partition_time`` (the
column, or the stored Kafka timestamp for ``kafka``), and answers figures and the
drill-down with the same functions as every other system. A row changed or deleted by hand
in the database therefore changes that day's figures, and the drill-down names its key.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from onepipe.agents.verify.sources import DaysInMemory, split_days
from onepipe.schemas.avro_schema import AvroSchema
from onepipe.schemas.metadata import SinkSpec
from onepipe.sinks.db import Column, Database, SinkTable, columns_of
from onepipe.sinks.formats.raw import TIMESTAMP_COLUMN, typed_schema
from onepipe.sinks.formats.topic_view import TopicView

__all__ = ["SinkSource"]


class SinkSource(DaysInMemory):
    """One online sink's table; see the module contract."""

    def __init__(self, view: TopicView, spec: SinkSpec, database: Database,
                 reader: AvroSchema) -> None:
        super().__init__(view)
        self.name, self.spec, self.database = spec.name, spec, database
        self._columns = columns_of(typed_schema(reader), reader.json["fields"], view.meta.key)

    async def _read_days(self) -> dict[str, pa.Table]:
        await self.database.start()
        rows = await SinkTable(self.database, self.spec.table, self._columns).read()
        return await asyncio.to_thread(self._by_day, rows)

    def _by_day(self, rows: list[tuple[Any, ...]]) -> dict[str, pa.Table]:
        data = {c.name: _column(c, self.database, [r[i] for r in rows])
                for i, c in enumerate(self._columns)}
        stamps = pa.array([r[len(self._columns)] for r in rows], pa.int64())
        data[TIMESTAMP_COLUMN] = stamps.cast(pa.timestamp("ms", tz="UTC"))
        table = pa.table(data)
        return split_days(table.select([n for n in self.view.columns
                                        if n in table.column_names]), self.view)


def _column(column: Column, database: Database, values: list[Any]) -> pa.Array:
    back = column.from_db(database.dialect)
    return pa.array([back(v) for v in values], type=column.type)
