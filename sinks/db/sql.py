"""The statements a sink runs, per dialect: pure text, no connection.

Every sink table has the topic's columns plus ``_onepipe_rank`` (the merge rule's rank as
bytes, onepipe.schemas.merge.rank_bytes) and ``_onepipe_timestamp`` (the winning
version's Kafka timestamp, epoch ms: what places a row in its day when the topic's
``partition_time`` is ``kafka``). One table per database holds every sink's input
position, ``_onepipe_sink_positions (sink, topic, partition, next_offset)`` (``sink`` is
``<sink name>/<table>``), written in
the same transaction as the rows.

The upsert applies the merge rule in the database: a row is replaced only by a version
whose rank is greater, so re-reading ``<topic>.unique`` from the beginning, or applying a
batch twice, never puts an older version back. PostgreSQL and SQLite say so with
``ON CONFLICT ... DO UPDATE ... WHERE``; MySQL evaluates ``ON DUPLICATE KEY UPDATE``
assignments left to right, so every column is set with ``IF(new rank > rank, new, old)``
and the rank itself is assigned last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from onepipe.sinks.db.columns import Column, Dialect

__all__ = ["POSITIONS", "RANK", "TIMESTAMP", "add_column", "alter_column", "create_positions",
           "create_stage", "create_table", "merge_stage", "placeholders", "quote",
           "read_positions", "select_rows", "stage_name", "upsert", "upsert_position"]

RANK = "_onepipe_rank"
TIMESTAMP = "_onepipe_timestamp"
POSITIONS = "_onepipe_sink_positions"


def quote(dialect: Dialect, name: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def placeholders(dialect: Dialect, count: int, start: int = 1) -> list[str]:
    if dialect == "postgres":
        return [f"${i}" for i in range(start, start + count)]
    return ["%s" if dialect == "mysql" else "?"] * count


def _rank_type(dialect: Dialect) -> str:
    return {"postgres": "BYTEA", "mysql": "LONGBLOB", "sqlite": "BLOB"}[dialect]


def create_table(dialect: Dialect, table: str, columns: Sequence[Column]) -> str:
    q = lambda name: quote(dialect, name)  # noqa: E731 - local shorthand
    parts = [f"{q(c.name)} {c.sql_type(dialect)}{' NOT NULL' if c.key else ''}"
             for c in columns]
    parts.append(f"{q(RANK)} {_rank_type(dialect)} NOT NULL")
    parts.append(f"{q(TIMESTAMP)} BIGINT")
    keys = ", ".join(q(c.name) for c in columns if c.key)
    parts.append(f"PRIMARY KEY ({keys})")
    tail = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4" if dialect == "mysql" else ""
    return f"CREATE TABLE IF NOT EXISTS {q(table)} ({', '.join(parts)}){tail}"


def create_positions(dialect: Dialect) -> str:
    text = "VARCHAR(255)" if dialect == "mysql" else "TEXT"
    return (f"CREATE TABLE IF NOT EXISTS {quote(dialect, POSITIONS)} (sink {text} NOT NULL, "
            f"topic {text} NOT NULL, {quote(dialect, 'partition')} INTEGER NOT NULL, "
            f"next_offset BIGINT NOT NULL, PRIMARY KEY (sink, topic, "
            f"{quote(dialect, 'partition')}))")


def read_positions(dialect: Dialect) -> str:
    p = placeholders(dialect, 2)
    return (f"SELECT {quote(dialect, 'partition')}, next_offset FROM "
            f"{quote(dialect, POSITIONS)} WHERE sink = {p[0]} AND topic = {p[1]}")


def upsert_position(dialect: Dialect) -> str:
    p = placeholders(dialect, 4)
    part = quote(dialect, "partition")
    head = (f"INSERT INTO {quote(dialect, POSITIONS)} (sink, topic, {part}, next_offset) "
            f"VALUES ({', '.join(p)})")
    # Never backwards: a member that lost its partition (a zombie) cannot move the
    # position behind what the new owner committed. A person resets it by deleting rows.
    if dialect == "mysql":
        return head + (" ON DUPLICATE KEY UPDATE next_offset = "
                       "GREATEST(next_offset, VALUES(next_offset))")
    larger = "greatest" if dialect == "postgres" else "max"
    return head + (f" ON CONFLICT (sink, topic, {part}) DO UPDATE SET next_offset = "
                   f"{larger}({quote(dialect, POSITIONS)}.next_offset, excluded.next_offset)")


def upsert(dialect: Dialect, table: str, columns: Sequence[Column]) -> str:
    """One row's upsert; parameters: every column in order, then rank, then timestamp."""
    q = lambda name: quote(dialect, name)  # noqa: E731 - local shorthand
    names = [c.name for c in columns] + [RANK, TIMESTAMP]
    values = ", ".join(placeholders(dialect, len(names)))
    head = f"INSERT INTO {q(table)} ({', '.join(q(n) for n in names)}) VALUES ({values})"
    updated = [n for n in names if n != RANK and not any(c.key and c.name == n
                                                         for c in columns)]
    if dialect == "mysql":
        sets = [f"{q(n)} = IF(VALUES({q(RANK)}) > {q(RANK)}, VALUES({q(n)}), {q(n)})"
                for n in updated]
        sets.append(f"{q(RANK)} = IF(VALUES({q(RANK)}) > {q(RANK)}, VALUES({q(RANK)}), "
                    f"{q(RANK)})")
        return f"{head} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
    keys = ", ".join(q(c.name) for c in columns if c.key)
    sets = [f"{q(n)} = excluded.{q(n)}" for n in [*updated, RANK]]
    return (f"{head} ON CONFLICT ({keys}) DO UPDATE SET {', '.join(sets)} "
            f"WHERE excluded.{q(RANK)} > {q(table)}.{q(RANK)}")


def stage_name(table: str, columns: Sequence[Column]) -> str:
    """A per-connection staging table for ``table``'s current columns (PostgreSQL COPY):
    named after them, so a table that gained a column gets a new one."""
    digest = hashlib.sha1(  # noqa: S324 - a name, not a secret
        "|".join([table, *(f"{c.name}:{c.sql_type('postgres')}" for c in columns)]).encode()
    ).hexdigest()[:16]
    return f"_onepipe_stage_{digest}"


def create_stage(table: str, stage: str) -> str:
    """PostgreSQL: the staging table, emptied at every commit."""
    return (f"CREATE TEMP TABLE IF NOT EXISTS {quote('postgres', stage)} "
            f"(LIKE {quote('postgres', table)}) ON COMMIT DELETE ROWS")


def merge_stage(table: str, stage: str, columns: Sequence[Column]) -> str:
    """PostgreSQL: the staged rows (one per key) upserted by the merge rule."""
    q = lambda name: quote("postgres", name)  # noqa: E731 - local shorthand
    names = [c.name for c in columns] + [RANK, TIMESTAMP]
    listed = ", ".join(q(n) for n in names)
    keys = ", ".join(q(c.name) for c in columns if c.key)
    sets = ", ".join(f"{q(n)} = excluded.{q(n)}" for n in names
                     if not any(c.key and c.name == n for c in columns))
    return (f"INSERT INTO {q(table)} ({listed}) SELECT {listed} FROM {q(stage)} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {sets} "
            f"WHERE excluded.{q(RANK)} > {q(table)}.{q(RANK)}")


def add_column(dialect: Dialect, table: str, column: Column) -> str:
    """The new column, defaulting to the field's Avro default: what a reader of the new
    schema sees for records written before the field existed (and what verify's other
    systems compute for those rows)."""
    default = column.default_sql(dialect)
    if default is not None and dialect == "mysql":
        default = f"({default})"  # TEXT columns take only expression defaults
    tail = f" DEFAULT {default}" if default is not None else ""
    return (f"ALTER TABLE {quote(dialect, table)} ADD COLUMN {quote(dialect, column.name)} "
            f"{column.sql_type(dialect)}{tail}")


def alter_column(dialect: Dialect, table: str, column: Column) -> str:
    q = lambda name: quote(dialect, name)  # noqa: E731 - local shorthand
    if dialect == "mysql":
        return f"ALTER TABLE {q(table)} MODIFY COLUMN {q(column.name)} " \
               f"{column.sql_type(dialect)}"
    return (f"ALTER TABLE {q(table)} ALTER COLUMN {q(column.name)} TYPE "
            f"{column.sql_type(dialect)}")


def select_rows(dialect: Dialect, table: str, names: Sequence[str]) -> str:
    return (f"SELECT {', '.join(quote(dialect, n) for n in names)} FROM "
            f"{quote(dialect, table)}")
