"""The warehouse load's statements (PostgreSQL): pure text, no connection.

The table is partitioned by the day column, one partition per day (named
``<table>_<yyyymmdd>_<8 hex>``): a day is replaced by building a new partition and
swapping it in (detach and drop the old one, attach the new one), so the cost does not
grow with the rows replaced and no dead rows pile up. Identifiers are always quoted
(onepipe.sinks.db.sql.quote); values are parameters (days, checked ``YYYY-MM-DD``, are
the only literals).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from onepipe.sinks.db.columns import Column
from onepipe.sinks.db.sql import quote
from onepipe.sinks.lake.iceberg import DAY_COLUMN
from onepipe.sinks.warehouse.names import LOADS_TABLE

__all__ = ["add_column", "attach", "bound_partition", "create_loads", "create_partition",
           "create_table", "day_partitions", "delete_load", "detach_drop", "is_partitioned",
           "lock_table", "partition_prefix", "read_loads", "select_day", "select_days",
           "table_columns", "upsert_load", "widen_column"]


def _q(name: str) -> str:
    return quote("postgres", name)


def create_loads() -> str:
    return (f"CREATE TABLE IF NOT EXISTS {_q(LOADS_TABLE)} (topic TEXT NOT NULL, "
            "table_name TEXT NOT NULL, day DATE NOT NULL, snapshot_id BIGINT NOT NULL, "
            "rows BIGINT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
            "PRIMARY KEY (topic, table_name, day))")


def create_table(table: str, columns: Sequence[Column]) -> list[str]:
    """The table (every column nullable, as in Iceberg), partitioned by the day column:
    one partition per day, replaced whole by a swap."""
    listed = ", ".join(f"{_q(c.name)} {c.sql_type('postgres')}" for c in columns)
    return [f"CREATE TABLE IF NOT EXISTS {_q(table)} ({listed}) "
            f"PARTITION BY RANGE ({_q(DAY_COLUMN)})"]


def partition_prefix(table: str, day: str) -> str:
    """The name every partition of ``day`` starts with (within 63 bytes: a long table
    name is cut and told apart by a hash)."""
    base = table if len(table) <= 40 else \
        f"{table[:28]}_{hashlib.sha1(table.encode()).hexdigest()[:11]}"  # noqa: S324 - a name
    return f"{base}_{day.replace('-', '')}_"


def is_partitioned() -> str:
    """$1: the quoted table name -> whether it is partitioned (None: no such table)."""
    return "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)"


def day_partitions() -> str:
    """$1: the quoted parent, $2: a partition prefix -> the partitions of that day."""
    return ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass($1) AND starts_with(c.relname, $2)")


def create_partition(table: str, partition: str) -> str:
    """A new, detached partition shaped like the table (columns and CHECKs)."""
    return (f"CREATE TABLE {_q(partition)} (LIKE {_q(table)} INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS)")


def bound_partition(partition: str, day: str) -> str:
    """The day's bound as a CHECK, so ATTACH need not scan the rows to prove it."""
    nxt = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    return (f"ALTER TABLE {_q(partition)} ADD CONSTRAINT {_q(partition[:50] + '_day')} "
            f"CHECK ({_q(DAY_COLUMN)} IS NOT NULL AND {_q(DAY_COLUMN)} >= DATE '{day}' "
            f"AND {_q(DAY_COLUMN)} < DATE '{nxt}')")


def detach_drop(table: str, partition: str) -> list[str]:
    return [f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(partition)}",
            f"DROP TABLE {_q(partition)}"]


def attach(table: str, partition: str, day: str) -> str:
    nxt = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    return (f"ALTER TABLE {_q(table)} ATTACH PARTITION {_q(partition)} "
            f"FOR VALUES FROM ('{day}') TO ('{nxt}')")


def table_columns() -> str:
    """$1: the quoted table name -> (column, declared type)."""
    return ("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum")


def add_column(table: str, column: Column) -> str:
    return (f"ALTER TABLE {_q(table)} ADD COLUMN IF NOT EXISTS {_q(column.name)} "
            f"{column.sql_type('postgres')}")


def widen_column(table: str, column: Column) -> str:
    return (f"ALTER TABLE {_q(table)} ALTER COLUMN {_q(column.name)} TYPE "
            f"{column.sql_type('postgres')}")


def lock_table() -> str:
    """$1: the table; held to the end of the transaction (loads of one table queue)."""
    return "SELECT pg_advisory_xact_lock(hashtextextended('onepipe-warehouse:' || $1, 0))"


def upsert_load() -> str:
    """$1 topic, $2 table, $3 day, $4 snapshot id, $5 rows."""
    return (f"INSERT INTO {_q(LOADS_TABLE)} (topic, table_name, day, snapshot_id, rows, "
            "loaded_at) VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (topic, table_name, "
            "day) DO UPDATE SET snapshot_id = excluded.snapshot_id, rows = excluded.rows, "
            "loaded_at = excluded.loaded_at")


def delete_load() -> str:
    return (f"DELETE FROM {_q(LOADS_TABLE)} WHERE topic = $1 AND table_name = $2 "
            "AND day = $3")


def read_loads() -> str:
    """$1 topic, $2 table -> (day, snapshot_id)."""
    return (f"SELECT day, snapshot_id FROM {_q(LOADS_TABLE)} WHERE topic = $1 AND "
            "table_name = $2 ORDER BY day")


def select_days(table: str) -> str:
    return (f"SELECT DISTINCT {_q(DAY_COLUMN)} FROM {_q(table)} WHERE {_q(DAY_COLUMN)} "
            "IS NOT NULL ORDER BY 1")


def select_day(table: str, names: Sequence[str]) -> str:
    return (f"SELECT {', '.join(_q(n) for n in names)} FROM {_q(table)} WHERE "
            f"{_q(DAY_COLUMN)} = $1")
