"""The contract of a database a sink writes to, and the table logic every dialect shares.

A :class:`Database` is one connection (pool) to one database. It knows its dialect's
driver and error classes, and nothing of Kafka or Avro. What it guarantees:

- :meth:`Database.write` applies a batch of rows and the sink's new input positions in
  **one transaction**: after a crash either both are in the database or neither is, so
  a sink resumes from the position committed with its rows (exactly once into the
  database). Rows the database refuses as data (a value a column cannot hold) do not
  fail the batch: the batch is applied again row by row, each row in its own savepoint,
  and the refused rows come back as :class:`Rejected` with the database's reason; every
  other row and the positions are still committed together.
- Anything else - the database unreachable, a lost connection, a lock timeout - raises
  (nothing of the batch is committed) and the caller retries the batch later.

:class:`SinkTable` is one sink's table on a database: created from the columns when
missing, given new nullable columns when the schema adds fields, widened for the
promotions the database can hold (int -> long, float -> double); any other change of a
column's type raises :class:`SinkSchemaError`, which pauses that sink.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from onepipe.schemas.errors import OnepipeError
from onepipe.sinks.db import sql
from onepipe.sinks.db.columns import Column, Dialect

__all__ = ["BeforeCommit", "Database", "Rejected", "SinkRow", "SinkSchemaError", "SinkTable",
           "Target", "type_family"]


class SinkSchemaError(OnepipeError):
    """A sink table cannot follow the topic's schema without losing data; the sink pauses."""

    code = "sink_schema"
    status = 409


@dataclass(frozen=True, slots=True)
class SinkRow:
    """One row to upsert."""

    #: The key fields' values, as bound (rows of one batch are deduplicated on them).
    key: tuple[Any, ...]
    #: Every column's value in table order, then the rank bytes and the Kafka timestamp.
    params: tuple[Any, ...]
    #: The merge rule's rank as bytes (onepipe.schemas.merge.rank_bytes).
    rank: bytes
    #: Where the version came from in ``<topic>.unique``: (partition, offset).
    source: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row the database refused, and why (the database's own message)."""

    row: SinkRow
    reason: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where a batch goes: the table, its columns, and the one-row upsert statement."""

    table: str
    columns: tuple[Column, ...]
    #: Parameters: every column in order, then the rank bytes and the Kafka timestamp.
    upsert: str


#: Called with the refused rows inside the transaction, before it commits (a sink sends
#: them to its dead-letter topic there: if that fails, nothing of the batch commits).
BeforeCommit = Callable[[list[Rejected]], Awaitable[None]]


class Database(Protocol):
    """One database a sink writes to; an async context manager (see the module contract)."""

    #: ``sqlite``, ``postgres`` or ``mysql``.
    dialect: Dialect
    #: Where it is, without credentials (for logs, status and errors).
    where: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def columns(self, table: str) -> dict[str, str] | None:
        """The table's columns and their declared types; None when there is no table."""
        ...

    async def ddl(self, statements: Sequence[str]) -> None:
        """Run schema statements (each commits on its own where the database demands)."""
        ...

    async def fetch(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        ...

    async def write(self, target: Target, rows: Sequence[SinkRow],
                    positions: Sequence[tuple[str, str, int, int]],
                    before_commit: BeforeCommit | None = None) -> list[Rejected]:
        """Rows (one per key) and ``(sink, topic, partition, next_offset)`` positions, one
        transaction; ``before_commit`` hears of refused rows before it commits."""
        ...


def type_family(dialect: Dialect, declared: str) -> str:
    """What kind of values a declared column type holds, across each dialect's spellings
    (what we wrote, and what the catalog reports back)."""
    text = re.sub(r"\s+", " ", declared.lower().strip())
    if dialect == "sqlite":
        return text  # dynamic typing: INTEGER holds any int, REAL any float
    if text.startswith(("bool", "tinyint(1)")):
        return "bool"
    if "bigint" in text:
        return "int64"
    if text in ("integer", "int") or re.fullmatch(r"int\(\d+\)", text):
        return "int32"
    if "double" in text:
        return "float64"
    if text in ("real", "float"):
        return "float32"
    match = re.match(r"(numeric|decimal) ?\((\d+), ?(\d+)\)", text)
    if match:
        return f"decimal({match.group(2)},{match.group(3)})"
    if text.startswith(("varchar", "longtext", "text", "char")):
        return "string" if "char(36)" not in text else "uuid"
    if text.startswith(("varbinary", "longblob", "bytea")):
        return "binary"
    if text in ("json", "jsonb"):
        return "json" if dialect == "postgres" else "string"  # MariaDB: JSON is LONGTEXT
    return _ALIASES.get(text, text.split(" character set")[0])


#: PostgreSQL's catalog spelling of the types we write.
_ALIASES = {"timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
            "time": "time without time zone"}


#: (family in the table, family the schema now wants) the database can widen in place.
_PROMOTIONS = {("int32", "int64"), ("float32", "float64")}


class SinkTable:
    """One sink's table: its statements, created and evolved to follow the schema."""

    def __init__(self, db: Database, table: str, columns: Sequence[Column]) -> None:
        self.db, self.table = db, table
        self.columns: list[Column] = list(columns)
        self.target = Target(table, tuple(self.columns),
                             sql.upsert(db.dialect, table, self.columns))

    async def prepare(self) -> list[str]:
        """Create or evolve the table for :attr:`columns`; the changes made, in words."""
        dialect = self.db.dialect
        self._check_names()
        if await self.db.columns(sql.POSITIONS) is None:
            await self.db.ddl([sql.create_positions(dialect)])
        existing = await self.db.columns(self.table)
        if existing is None:
            await self.db.ddl([sql.create_table(dialect, self.table, self.columns)])
            return [f"created table {self.table}"]
        lowered = {name.lower(): declared for name, declared in existing.items()}
        changes: list[str] = []
        statements: list[str] = []
        for column in self.columns:
            wanted = column.sql_type(dialect)
            declared = lowered.get(column.name.lower())
            if declared is None:
                if column.key:
                    raise SinkSchemaError(
                        f"table {self.table} has no key column {column.name!r}; the topic's "
                        "key changed or the table belongs to something else: give the sink "
                        "another table")
                statements.append(sql.add_column(dialect, self.table, column))
                changes.append(f"added column {column.name} {wanted}")
                continue
            have, want = type_family(dialect, declared), type_family(dialect, wanted)
            if have == want:
                continue
            if (have, want) in _PROMOTIONS:
                statements.append(sql.alter_column(dialect, self.table, column))
                changes.append(f"widened column {column.name} {declared} -> {wanted}")
                continue
            raise SinkSchemaError(
                f"column {column.name!r} of table {self.table} holds {declared}, but the "
                f"topic's schema now needs {wanted}; only int -> long and float -> double "
                "widen in place. Migrate the column (or point the sink at a new table), "
                "then restart the sink")
        if statements:
            await self.db.ddl(statements)
        return changes

    def _owner(self, sink: str) -> str:
        # The table is part of whose position it is: a sink pointed at another table
        # starts that table from the beginning instead of where the old one stood.
        return f"{sink}/{self.table}"

    def _check_names(self) -> None:
        """Names the table cannot hold apart: ours, one another's (case), too long."""
        seen: dict[str, str] = {}
        for column in self.columns:
            folded = column.name.lower()
            if folded in (sql.RANK, sql.TIMESTAMP):
                raise SinkSchemaError(f"field {column.name!r} is a name the sink keeps for "
                                      f"itself in table {self.table}; rename the field")
            if folded in seen:
                raise SinkSchemaError(f"fields {seen[folded]!r} and {column.name!r} differ "
                                      f"only in case: one column in {self.db.dialect}; "
                                      "rename one")
            if len(column.name.encode()) > 63:
                raise SinkSchemaError(f"field {column.name[:20]!r}... is longer than the 63 "
                                      "bytes a column name may have; rename it")
            seen[folded] = column.name

    async def positions(self, sink: str, topic: str) -> dict[int, int]:
        rows = await self.db.fetch(sql.read_positions(self.db.dialect),
                                   (self._owner(sink), topic))
        return {int(partition): int(offset) for partition, offset in rows}

    async def write(self, rows: Sequence[SinkRow], sink: str, topic: str,
                    positions: Mapping[int, int], before_commit: BeforeCommit | None = None
                    ) -> list[Rejected]:
        """Upsert ``rows`` (the best rank per key) and the positions, one transaction."""
        best: dict[tuple[Any, ...], SinkRow] = {}
        for row in rows:
            held = best.get(row.key)
            if held is None or row.rank > held.rank:
                best[row.key] = row
        marks = [(self._owner(sink), topic, p, offset)
                 for p, offset in sorted(positions.items())]
        return await self.db.write(self.target, list(best.values()), marks, before_commit)

    async def read(self) -> list[tuple[Any, ...]]:
        """Every row: the columns in order, then the Kafka timestamp (for ``verify``)."""
        names = [c.name for c in self.columns] + [sql.TIMESTAMP]
        return await self.db.fetch(sql.select_rows(self.db.dialect, self.table, names))
