"""A topic's columns in a SQL table: the SQL type per dialect, and values both ways.

The columns are the lake's Arrow types of the reader schema
(onepipe.sinks.formats.raw.typed_schema), so a sink holds exactly what the lake holds and
``verify`` reads it back into the same Arrow types to compute the same figures:

=========================  ==================  ======================  ==================
Arrow (from Avro)          PostgreSQL          MySQL / MariaDB         SQLite
=========================  ==================  ======================  ==================
bool                       BOOLEAN             BOOLEAN                 INTEGER
int32 / int64              INTEGER / BIGINT    INT / BIGINT            INTEGER
float32 / float64          REAL / DOUBLE ...   DOUBLE                  REAL
string, enum               TEXT                LONGTEXT (key VARBIN.)  TEXT
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
later schema version drops, or adds, never makes a row unwritable; a column added later
takes the field's Avro default (a plain value) for the rows written before it. MySQL keys
are ``VARBINARY`` (a string key as its UTF-8 bytes: exact, where a PAD SPACE collation
would make ``'a'`` and ``'a '`` one key), sharing InnoDB's 3,072-byte index among the
key's variable-length columns; a longer key is refused by the database (to the DLQ).
Floats on MySQL are DOUBLE (FLOAT reads back rounded); non-finite floats cannot be sent
to MySQL at all (the row goes to the DLQ) and are stored as text in SQLite (which would
make NaN a NULL). Nested values are JSON whose
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
    #: MySQL: the bytes of InnoDB's 3,072-byte key index this column may take.
    key_bytes: int = 3072
    #: The field's Avro default, for rows written before the column existed (a plain
    #: null, boolean, number or string; anything else is left NULL).
    default: Any = None

    def sql_type(self, dialect: Dialect) -> str:
        return _sql_type(self.type, dialect, key=self.key, logical=self.logical,
                         key_bytes=self.key_bytes)

    def default_sql(self, dialect: Dialect) -> str | None:
        """The Avro default as a SQL literal for ``ADD COLUMN ... DEFAULT``, if plain."""
        return _literal(self.default, self.type, dialect)

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
    defaults = {f["name"]: f.get("default") for f in avro_fields}
    variable = sum(1 for f in schema if f.name in key and _variable(f.type))
    fixed = len(key) - variable
    # Fixed-size key columns take at most 40 bytes each (a uuid's CHAR(36) the most).
    budget = (3072 - 40 * fixed) // max(1, variable)
    return [Column(field.name, field.type, field.name in key, logical.get(field.name),
                   budget, defaults.get(field.name)) for field in schema]


def _variable(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or _is_binary(t)


def _literal(value: Any, t: pa.DataType, dialect: Dialect) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return ("1" if value else "0") if dialect != "postgres" else str(value).upper()
    if isinstance(value, int | float) and not isinstance(value, bool) and (
            pa.types.is_integer(t) or pa.types.is_floating(t)):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str) and (pa.types.is_string(t) or pa.types.is_dictionary(t)):
        text = value.replace("'", "''")
        if dialect == "mysql":
            text = text.replace("\\", "\\\\")  # MySQL reads backslash escapes in literals
        return f"'{text}'"
    return None


def _logical(avro_type: Any) -> str | None:
    if isinstance(avro_type, dict) and avro_type.get("type") == "string":
        found = avro_type.get("logicalType")
        return found if isinstance(found, str) else None
    return None


# --------------------------------------------------------------------- SQL types


def _sql_type(t: pa.DataType, dialect: Dialect, *, key: bool, logical: str | None,
              key_bytes: int = 3072) -> str:
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
        # MySQL returns FLOAT rounded to ~6 digits; DOUBLE holds every float32 exactly.
        return "REAL" if pg else "DOUBLE"
    if pa.types.is_floating(t):
        return "DOUBLE PRECISION" if pg else "DOUBLE"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if logical == "uuid":
            return "UUID" if pg else "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin"
        if pg:
            return "TEXT"
        # A key as its UTF-8 bytes: exact equality (a PAD SPACE collation would make 'a'
        # and 'a ' one key), within InnoDB's 3,072-byte index shared by the key columns.
        return (f"VARBINARY({key_bytes})" if key
                else "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    if _is_binary(t):
        return "BYTEA" if pg else (f"VARBINARY({key_bytes})" if key else "LONGBLOB")
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME" if pg else "TIME(6)"
    if pa.types.is_timestamp(t):
        if pg:
            return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
        return "DATETIME(6)"
    if pa.types.is_decimal(t):
        if pg or (t.precision <= 65 and t.scale <= 30):
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
        if pa.types.is_floating(t):
            # SQLite stores NaN as NULL: non-finite floats go in as text (REAL takes it).
            return lambda v: v if v is None or math.isfinite(v) else to_json_value(v, t)
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
        if pa.types.is_decimal(t) and (t.precision > 65 or t.scale > 30):
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
        # A PostgreSQL UUID comes back typed; a MySQL key comes back as its UTF-8 bytes.
        return lambda v: None if v is None else v.decode() if isinstance(v, bytes | bytearray) \
            else str(v)
    if pa.types.is_floating(t):
        return lambda v: None if v is None else _NON_FINITE.get(v, v) if isinstance(v, str) \
            else float(v)
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
