"""A topic's columns in a SQL table: the SQL type per dialect, and values both ways.

The columns are the lake's Arrow types of the reader schema
(onepipe.sinks.formats.raw.typed_schema), so a sink holds exactly what the lake holds and
``verify`` reads it back into the same Arrow types to compute the same figures:

=========================  ==================  ======================  ==================
Arrow (from Avro)          PostgreSQL          MySQL / MariaDB         SQLite
=========================  ==================  ======================  ==================
bool                       BOOLEAN             BOOLEAN                 INTEGER
int32 / int64              INTEGER / BIGINT    INT / BIGINT            INTEGER
float32 / float64          REAL / DOUBLE ...   FLOAT / DOUBLE          REAL
string, enum               TEXT                LONGTEXT (key VARCHAR)  TEXT
uuid (string)              UUID                CHAR(36)                TEXT
binary, fixed              BYTEA               LONGBLOB (key VARBIN.)  BLOB
date32                     DATE                DATE                    TEXT (ISO)
time32[ms] / time64[us]    TIME                TIME(6)                 TEXT (ISO)
timestamp[ms|us, UTC]      TIMESTAMPTZ         DATETIME(6), UTC        TEXT (ISO, UTC)
timestamp[ms|us] (local)   TIMESTAMP           DATETIME(6)             TEXT (ISO)
timestamp[ns]              BIGINT (epoch ns)   BIGINT                  INTEGER
decimal(p, s)              NUMERIC(p, s)       DECIMAL(p, s) (p <= 65) TEXT (exact)
struct, list, map          JSONB               JSON                    TEXT (JSON)
=========================  ==================  ======================  ==================

Key columns are NOT NULL (the primary key); every other column is nullable, so a field a
later schema version drops, or adds, never makes a row unwritable. MySQL keys are
``VARCHAR(768)``/``VARBINARY(3072)`` with a binary collation (InnoDB's 3,072-byte key
limit; Avro string equality is exact, so ``'a' <> 'A'``). Nested values are JSON whose
shape follows the Arrow type: bytes as hex, decimals as text, dates and times as ISO
text, non-finite floats as ``"NaN"``/``"Infinity"``/``"-Infinity"``, maps as objects; the
reverse conversion is guided by the same type, so reading a row back gives the exact
value that was written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import orjson
import pyarrow as pa

from onepipe.schemas.errors import SchemaError

__all__ = ["Column", "Dialect", "columns_of", "from_json_value", "to_json_value"]

Dialect = Literal["sqlite", "postgres", "mysql"]
_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a sink table."""

    #: The field name (also the column name, quoted in every statement).
    name: str
    #: The lake's Arrow type of the field.
    type: pa.DataType
    #: Whether the field is part of the topic's unique key (NOT NULL, primary key).
    key: bool
    #: The field's Avro logical type on a string (``uuid``), if any.
    logical: str | None = None

    def sql_type(self, dialect: Dialect) -> str:
        return _sql_type(self.type, dialect, key=self.key, logical=self.logical)

    def to_db(self, dialect: Dialect) -> Callable[[Any], Any]:
        """The function turning an Arrow ``to_pylist`` value into a statement parameter."""
        return _to_db(self.type, dialect, self.logical)

    def from_db(self, dialect: Dialect) -> Callable[[Any], Any]:
        """The function turning a fetched value back into the Arrow ``to_pylist`` value."""
        return _from_db(self.type, dialect, self.logical)


def columns_of(schema: pa.Schema, avro_fields: list[dict[str, Any]], key: tuple[str, ...]
               ) -> list[Column]:
    """The table's columns for a reader schema's Arrow types and its Avro fields."""
    logical = {f["name"]: _logical(f["type"]) for f in avro_fields}
    return [Column(field.name, field.type, field.name in key, logical.get(field.name))
            for field in schema]


def _logical(avro_type: Any) -> str | None:
    if isinstance(avro_type, dict) and avro_type.get("type") == "string":
        found = avro_type.get("logicalType")
        return found if isinstance(found, str) else None
    return None


# --------------------------------------------------------------------- SQL types


def _sql_type(t: pa.DataType, dialect: Dialect, *, key: bool, logical: str | None) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if dialect == "sqlite":
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or (
                pa.types.is_timestamp(t) and t.unit == "ns"):
            return "INTEGER"
        if pa.types.is_floating(t):
            return "REAL"
        if _is_binary(t):
            return "BLOB"
        return "TEXT"
    pg = dialect == "postgres"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_int64(t) or (pa.types.is_timestamp(t) and t.unit == "ns"):
        return "BIGINT"
    if pa.types.is_integer(t):
        return "INTEGER" if pg else "INT"
    if pa.types.is_float32(t):
        return "REAL" if pg else "FLOAT"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION" if pg else "DOUBLE"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if logical == "uuid":
            return "UUID" if pg else "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin"
        if pg:
            return "TEXT"
        return ("VARCHAR(768) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if key
                else "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    if _is_binary(t):
        return "BYTEA" if pg else ("VARBINARY(3072)" if key else "LONGBLOB")
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME" if pg else "TIME(6)"
    if pa.types.is_timestamp(t):
        if pg:
            return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
        return "DATETIME(6)"
    if pa.types.is_decimal(t):
        if pg or t.precision <= 65:
            return f"{'NUMERIC' if pg else 'DECIMAL'}({t.precision}, {t.scale})"
        return "LONGTEXT"
    if pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_map(t) \
            or pa.types.is_large_list(t):
        return "JSONB" if pg else "JSON"
    if pa.types.is_null(t):
        return "TEXT" if pg else "LONGTEXT"
    raise SchemaError(f"a sink column cannot hold Arrow type {t}")


def _is_binary(t: pa.DataType) -> bool:
    return (pa.types.is_binary(t) or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t))


# ------------------------------------------------------------ values to the store


def _identity(value: Any) -> Any:
    return value


def _to_db(t: pa.DataType, dialect: Dialect, logical: str | None) -> Callable[[Any], Any]:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return _ns_of
    if _is_nested(t):
        return lambda v: None if v is None else orjson.dumps(to_json_value(v, t)).decode()
    if dialect == "sqlite":
        if pa.types.is_boolean(t):
            return lambda v: None if v is None else int(v)
        if pa.types.is_decimal(t) or pa.types.is_date(t) or pa.types.is_time(t):
            return lambda v: None if v is None else str(v) if isinstance(v, Decimal) \
                else v.isoformat()
        if pa.types.is_timestamp(t):
            return lambda v: None if v is None else v.isoformat()
        return _identity
    if dialect == "mysql":
        if pa.types.is_timestamp(t) and t.tz is not None:
            # DATETIME has no zone: UTC, naive.
            return lambda v: None if v is None else v.astimezone(_UTC).replace(tzinfo=None)
        if pa.types.is_decimal(t) and t.precision > 65:
            return lambda v: None if v is None else str(v)
        return _identity
    return _identity


def _ns_of(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, int):
        return v
    return int(v.value) if hasattr(v, "value") else None  # pandas-style Timestamp


def _is_nested(t: pa.DataType) -> bool:
    return (pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t)
            or pa.types.is_map(t))


# ---------------------------------------------------------- values from the store


def _from_db(t: pa.DataType, dialect: Dialect, logical: str | None) -> Callable[[Any], Any]:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return _identity
    if _is_nested(t):
        return lambda v: None if v is None else from_json_value(
            orjson.loads(v) if isinstance(v, str | bytes) else v, t)
    if pa.types.is_boolean(t):
        return lambda v: None if v is None else bool(v)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda v: None if v is None else str(v)  # a PostgreSQL UUID comes back typed
    if pa.types.is_decimal(t):
        return lambda v: None if v is None else Decimal(v) if not isinstance(v, Decimal) else v
    if pa.types.is_date(t):
        return lambda v: None if v is None else dt.date.fromisoformat(v) if isinstance(v, str) \
            else v
    if pa.types.is_time(t):
        return _time_from
    if pa.types.is_timestamp(t):
        return _aware_from if t.tz is not None else _naive_from
    if _is_binary(t):
        return lambda v: None if v is None else bytes(v)
    return _identity


def _time_from(v: Any) -> dt.time | None:
    if v is None or isinstance(v, dt.time):
        return v
    if isinstance(v, str):
        return dt.time.fromisoformat(v)
    if isinstance(v, dt.timedelta):  # MySQL TIME
        micros = v // dt.timedelta(microseconds=1)
        return (dt.datetime.min.replace(tzinfo=_UTC) + dt.timedelta(microseconds=micros)).time()
    raise TypeError(f"not a time of day: {v!r}")


def _aware_from(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    moment = dt.datetime.fromisoformat(v) if isinstance(v, str) else v
    return moment.replace(tzinfo=_UTC) if moment.tzinfo is None else moment.astimezone(_UTC)


def _naive_from(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    return dt.datetime.fromisoformat(v) if isinstance(v, str) else v


# ------------------------------------------------------------------ nested JSON


def to_json_value(value: Any, t: pa.DataType) -> Any:
    """A nested Arrow ``to_pylist`` value as JSON data (see the module docstring)."""
    if value is None:
        return None
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_struct(t):
        return {t.field(i).name: to_json_value(value.get(t.field(i).name), t.field(i).type)
                for i in range(t.num_fields)}
    if pa.types.is_map(t):
        return {str(k): to_json_value(v, t.item_type) for k, v in value}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [to_json_value(v, t.value_type) for v in value]
    if _is_binary(t):
        return bytes(value).hex()
    if pa.types.is_floating(t):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if pa.types.is_decimal(t):
        return str(value)
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return _ns_of(value)
    if pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_timestamp(t):
        return value.isoformat()
    return value


def from_json_value(value: Any, t: pa.DataType) -> Any:
    """The inverse of :func:`to_json_value` for the same type."""
    if value is None:
        return None
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_struct(t):
        return {t.field(i).name: from_json_value(value.get(t.field(i).name), t.field(i).type)
                for i in range(t.num_fields)}
    if pa.types.is_map(t):
        return [(k, from_json_value(v, t.item_type)) for k, v in value.items()]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [from_json_value(v, t.value_type) for v in value]
    if _is_binary(t):
        return bytes.fromhex(value)
    if pa.types.is_floating(t):
        return _NON_FINITE.get(value, value) if isinstance(value, str) else float(value)
    if pa.types.is_decimal(t):
        return Decimal(value)
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return value
    if pa.types.is_date(t):
        return dt.date.fromisoformat(value)
    if pa.types.is_time(t):
        return dt.time.fromisoformat(value)
    if pa.types.is_timestamp(t):
        moment = dt.datetime.fromisoformat(value)
        return moment.astimezone(_UTC) if t.tz is not None and moment.tzinfo else moment
    return value
