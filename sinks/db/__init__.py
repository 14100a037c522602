"""Online databases a topic's winners are written to: SQLite, PostgreSQL, MySQL/MariaDB.

Contract (what a sink agent, onepipe.agents.sink, builds on):

- :func:`open_database` opens the database of a catalog sink (``kind`` and the DSN read
  from the environment variable the catalog names); nothing connects until ``start()``.
  The DSN never appears in logs or errors: :attr:`Database.where` is it without the
  password.
- :class:`SinkTable` creates the table from the topic's columns (primary key = the unique
  key; types in columns.py), and follows the schema: new fields become nullable columns,
  int -> long and float -> double widen in place, anything else raises
  :class:`SinkSchemaError`.
- A write upserts rows by the merge rule **in SQL** (a row is only replaced by a higher
  rank: an older version never overwrites a newer one, and applying a batch twice changes
  nothing) and stores the sink's input positions in the same transaction (exactly once
  into the database). Rows the database refuses as data come back as :class:`Rejected`;
  every other failure raises and commits nothing.
- Reading a table back (:meth:`SinkTable.read`) gives each row's values in the lake's
  Arrow shapes (Column.from_db), which is how ``verify`` computes a sink's figures with
  the same functions as every other system.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from onepipe.schemas.errors import ConfigError
from onepipe.sinks.db.base import Database, Rejected, SinkRow, SinkSchemaError, SinkTable
from onepipe.sinks.db.columns import Column, Dialect, columns_of
from onepipe.sinks.db.mysql import MysqlDatabase
from onepipe.sinks.db.postgres import PostgresDatabase
from onepipe.sinks.db.sqlite import SqliteDatabase

__all__ = ["Column", "Database", "Dialect", "Rejected", "SinkRow", "SinkSchemaError",
           "SinkTable", "columns_of", "open_database", "redact"]


def redact(dsn: str) -> str:
    """The DSN without its password (in the authority or a ``password=`` parameter)."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def open_database(kind: Dialect, dsn: str) -> Database:
    """The database of a sink: ``kind`` is the catalog's, ``dsn`` its variable's value."""
    where = redact(dsn)
    scheme = urlsplit(dsn).scheme.lower()
    if kind == "postgres" and scheme in ("postgres", "postgresql"):
        return PostgresDatabase(dsn, where)
    if kind == "mysql" and scheme in ("mysql", "mariadb"):
        return MysqlDatabase(dsn, where)
    if kind == "sqlite" and scheme == "sqlite":
        return SqliteDatabase(dsn, where)
    expected = {"postgres": "postgresql://user:password@host:port/database",
                "mysql": "mysql://user:password@host:port/database",
                "sqlite": "sqlite:///relative/file.db or sqlite:////absolute/file.db"}
    raise ConfigError(f"a {kind} sink needs a DSN like {expected.get(kind, '?')}; got {where}")
