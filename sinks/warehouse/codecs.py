"""Fast COPY values: times as integers, converted by Arrow for whole columns at once.

Turning a column of time-zone-aware Arrow timestamps into Python ``datetime`` objects
costs ~7 µs a value (a zone lookup per value) - most of a load's time, measured. So the
load's own connection takes dates and timestamps in PostgreSQL's binary form (asyncpg's
``tuple`` codec format: days, or microseconds, since 2000-01-01), computed by Arrow for a
whole column, and Python objects are never made for them. The codecs still take and give
``date``/``datetime`` objects (parameters such as the day to replace, rows read back).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["fast_column", "install_codecs"]

_EPOCH_DAY = dt.date(2000, 1, 1)
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(2000, 1, 1)  # noqa: DTZ001 - PostgreSQL's TIMESTAMP epoch
#: Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
_DAYS = (_EPOCH_DAY - dt.date(1970, 1, 1)).days
_MICROS = _DAYS * 86_400_000_000


def _date_in(value: Any) -> tuple[int]:
    return (value if isinstance(value, int) else (value - _EPOCH_DAY).days,)


def _date_out(value: tuple[int]) -> dt.date:
    return _EPOCH_DAY + dt.timedelta(days=value[0])


def _stamp_in(epoch: dt.datetime) -> Callable[[Any], tuple[int]]:
    def encode(value: Any) -> tuple[int]:
        if isinstance(value, int):
            return (value,)
        return ((value - epoch) // dt.timedelta(microseconds=1),)
    return encode


def _stamp_out(epoch: dt.datetime) -> Callable[[tuple[int]], dt.datetime]:
    return lambda value: epoch + dt.timedelta(microseconds=value[0])


async def install_codecs(conn: asyncpg.Connection) -> None:
    """Let ``conn`` take integers (PostgreSQL's binary form) for dates and timestamps."""
    await conn.set_type_codec("date", schema="pg_catalog", encoder=_date_in,
                              decoder=_date_out, format="tuple")
    for name, epoch in (("timestamptz", _EPOCH), ("timestamp", _EPOCH_NAIVE)):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_stamp_in(epoch),
                                  decoder=_stamp_out(epoch), format="tuple")


def fast_column(array: pa.Array | pa.ChunkedArray) -> list[Any] | None:
    """The column's COPY values computed by Arrow (dates, µs and ms timestamps as
    integers for :func:`install_codecs`), or None when it has no fast form."""
    kind = array.type
    if pa.types.is_date32(kind):
        return pc.subtract(array.cast(pa.int32()), pa.scalar(_DAYS, pa.int32())).to_pylist()
    if pa.types.is_timestamp(kind) and kind.unit in ("s", "ms", "us"):
        micros = array.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
        return pc.subtract(micros, pa.scalar(_MICROS, pa.int64())).to_pylist()
    return None
