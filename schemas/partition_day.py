"""The UTC day of a row, column-wise: the one Python/Arrow twin of the compactor's SQL.

``verify`` places the rows of every system into days itself (the ``.unique`` stream, the
raw lake), and its figures only compare with the clean lake's if it places them exactly
as the compactor did (onepipe.agents.compact.plan ``Shape.day``, DuckDB). This module is that
rule for Arrow columns; tests hold it to the compactor's SQL on the edge cases.

Contract (:func:`partition_days`), by the Arrow type of the ``partition_time`` column:

- ``date32`` (Avro ``int`` ``date``): the date itself;
- ``timestamp[s|ms|us|ns]`` (any zone: the instant is UTC): the UTC day of the instant,
  taken from its epoch milliseconds, sub-millisecond parts **rounded half up** as
  DuckDB's ``epoch_ms`` does (so ``23:59:59.999500`` µs falls on the next day: a quirk
  of the compactor's SQL, matched here so the figures line up; fix both together);
- ``int64`` (a plain Avro ``long``): epoch milliseconds;

and in every case clamped into 1970-01-01 .. 9999-12-31 (instants before the epoch,
Kafka's ``-1`` "no timestamp" and years past 9999 land on the first / last day), as the
raw layout buckets Kafka timestamps (onepipe.sinks.lake.raw_layout.hour_bucket). Nulls stay null.
The result is a ``date32`` array; :func:`day_name` spells a day ``YYYY-MM-DD``, the
name of a lake folder. No Python object is made per row.

:func:`partition_hours` is the same rule one level finer (the streaming checksum
table's hour windows): the clamped, half-up-rounded epoch milliseconds divided by an
hour, as ``int32`` hours since 1970-01-01T00 (a ``date32`` value is hour 0 of its day).
So ``partition_hours(v) // 24 == partition_days(v)`` for every value, and an hour never
straddles two days. :func:`hour_name` spells an hour ``YYYY-MM-DDTHH``.
"""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from onepipe.schemas.errors import SchemaError

__all__ = ["FIRST_DAY", "LAST_DAY", "day_name", "day_number", "hour_name", "hour_number",
           "partition_days", "partition_hours"]

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
#: 9999-12-31T23:59:59.999Z, the last instant a day name can hold (as
#: onepipe.sinks.lake.raw_layout).
_LAST_MS = 253_402_300_799_999
_EPOCH = date(1970, 1, 1)
_INT64_MAX = 2**63 - 1
#: The first and last day a row can be placed in.
FIRST_DAY = "1970-01-01"
LAST_DAY = "9999-12-31"
_MS_PER_UNIT = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def partition_days(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The clamped UTC day (``date32``) of each value of a ``partition_time`` column."""
    days, millis = _placed(values)
    if days is not None:
        return days.cast(pa.date32())
    return pc.divide(millis, _DAY_MS).cast(pa.int32()).cast(pa.date32())


def partition_hours(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The clamped UTC hour (``int32`` hours since the epoch) of each value, as days."""
    days, millis = _placed(values)
    if days is not None:
        return pc.multiply(days, pa.scalar(24, pa.int32()))
    return pc.divide(millis, _HOUR_MS).cast(pa.int32())


def _placed(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array | None, pa.Array]:
    """(clamped int32 days, None-ish) for a date column, else (None, clamped epoch ms)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if pa.types.is_date32(t):
        days = values.cast(pa.int32())
        days = _clamp(days, pa.scalar(0, pa.int32()),
                      pa.scalar(day_number(LAST_DAY), pa.int32()))
        return days, days
    if pa.types.is_timestamp(t):
        multiply, divide = _MS_PER_UNIT[t.unit]
        raw = values.cast(pa.int64())
        # Clamp in the column's own unit first, so the conversion to ms cannot overflow.
        high = (_LAST_MS // multiply if multiply > 1
                else min(_LAST_MS * divide + divide - 1, _INT64_MAX - divide))
        raw = _clamp(raw, 0, high)
        # Rounded to the nearest millisecond, halves up: what DuckDB's epoch_ms does (so
        # 23:59:59.9995 belongs to the next day, in the clean lake and here alike).
        millis = (pc.multiply(raw, multiply) if multiply > 1
                  else pc.divide(pc.add(raw, divide // 2), divide))
    elif pa.types.is_int64(t) or pa.types.is_int32(t):
        millis = values.cast(pa.int64())
    else:
        raise SchemaError(
            f"partition_time column has Arrow type {t}; expected a timestamp, a long "
            "(epoch millis) or a date (see onepipe.schemas.metadata for the allowed fields)")
    return None, _clamp(millis, 0, _LAST_MS)


def _clamp(values: pa.Array, low: object, high: object) -> pa.Array:
    """``values`` limited to ``low``..``high``; nulls stay null."""
    return pc.min_element_wise(pc.max_element_wise(values, low, skip_nulls=False), high,
                               skip_nulls=False)


def day_number(day: str) -> int:
    """Days since 1970-01-01 of ``YYYY-MM-DD`` (the ``date32`` storage value)."""
    return (date.fromisoformat(day) - _EPOCH).days


def day_name(number: int) -> str:
    """``YYYY-MM-DD`` of a ``date32`` storage value."""
    return (_EPOCH + timedelta(days=number)).isoformat()


def hour_number(hour: str) -> int:
    """Hours since 1970-01-01T00 of ``YYYY-MM-DDTHH``."""
    day, _, hh = hour.partition("T")
    return day_number(day) * 24 + int(hh)


def hour_name(number: int) -> str:
    """``YYYY-MM-DDTHH`` of an hour number (:func:`partition_hours`)."""
    day, hh = divmod(number, 24)
    return f"{day_name(day)}T{hh:02d}"
