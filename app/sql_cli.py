"""``onepipe sql "<query>"``: DuckDB over the lake, printed as a table, CSV, JSON or Parquet.

Views (onepipe.sinks.lake.sql): ``"<topic>"`` is the topic's clean Iceberg table (the
head, or ``--as-of`` a snapshot id or a time), ``"raw_<topic>"`` its raw files with the
``partition``, ``date`` and ``hour`` path columns. Names holding ``.`` or ``-`` need the
double quotes. Output goes to stdout (``--format parquet`` to ``--output FILE``); a
progress bar goes to stderr, and only when stderr is a terminal, so pipes stay clean.
Results stream in record batches: CSV, JSON and Parquet never hold the whole result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError, QueryError

__all__ = ["add_sql_command", "run_sql"]

FORMATS = ("table", "csv", "json", "parquet")
#: Rows per record batch pulled from DuckDB (bounds memory for CSV, JSON, Parquet).
BATCH_ROWS = 64 * 1024
#: Rows a terminal table shows; more is a job for --format csv/json/parquet.
TABLE_ROWS = 1000
_POLL_SECONDS = 0.1


def add_sql_command(sub: Any) -> None:
    sql = sub.add_parser("sql", help="run a DuckDB query over the clean and raw lake")
    sql.add_argument("query", help='SQL; views: "<topic>" (clean), "raw_<topic>" (raw); '
                     "quote names holding . or -")
    sql.add_argument("--format", choices=FORMATS, default="table",
                     help="table (default), csv, json (one object per line), parquet")
    sql.add_argument("--output", type=Path, default=None,
                     help="write here instead of stdout (required for parquet)")
    sql.add_argument("--as-of", dest="as_of", default=None,
                     help="time travel: a snapshot id, or an ISO time (2026-11-20T12:00Z)")


async def run_sql(settings: Settings, args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output is None:
        raise ConfigError("--format parquet writes a file: add --output FILE.parquet")
    # pyiceberg loads slowly: only the commands that read Iceberg import it.
    from onepipe.sinks.lake.sql import open_views

    async with settings.open_lake() as lake:
        views = await open_views(lake, settings.resolved_catalog_uri, args.query, args.as_of)
    try:
        names = [v.name for v in views.views]
        return await asyncio.to_thread(_run, views.connection, names, args)
    finally:
        views.close()


def _run(con: duckdb.DuckDBPyConnection, names: list[str], args: argparse.Namespace) -> int:
    reader = _execute(con, args.query, names)
    if reader is None:
        return 0  # a statement without rows (SET, CREATE ...)
    if args.format == "parquet":
        _write_parquet(reader, args.output)
        return 0
    with _open_output(args.output) as out:
        if args.format == "csv":
            _write_csv(reader, out)
        elif args.format == "json":
            _write_json(reader, out)
        else:
            _write_table(reader, out, args.query)
    return 0


@contextlib.contextmanager
def _open_output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", newline="", encoding="utf-8") as handle:
        yield handle


def _execute(con: duckdb.DuckDBPyConnection, query: str, names: list[str]
             ) -> pa.RecordBatchReader | None:
    """The query's result as a stream of batches, the first one already computed while a
    progress bar shows DuckDB's progress (stderr, a terminal only)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            relation = con.sql(query)
            if relation is None:
                box["reader"] = None
                return
            reader = relation.to_arrow_reader(BATCH_ROWS)
            box["first"] = _first(reader)
            box["reader"] = reader
        except duckdb.Error as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name="onepipe-sql", daemon=True)
    thread.start()
    if sys.stderr.isatty():
        _show_progress(con, thread)
    thread.join()
    if "error" in box:
        error = box["error"]
        raise QueryError(f"the query failed: {error}{_hint(error, query, names)}") from error
    reader = box["reader"]
    if reader is None:
        return None
    first = box["first"]
    batches = ([first] if first is not None else [])
    return pa.RecordBatchReader.from_batches(reader.schema, _chain(batches, reader))


def _hint(error: duckdb.Error, query: str, names: list[str]) -> str:
    """What to do about a name DuckDB did not find or could not parse."""
    unquoted = [n for n in names if any(c in n for c in ".-") and n in query
                and f'"{n}"' not in query]
    if unquoted and isinstance(error, duckdb.ParserException | duckdb.CatalogException):
        return f"\nWrite {unquoted[0]} as \"{unquoted[0]}\": a view name holding . or - " \
               "must be double-quoted."
    if isinstance(error, duckdb.CatalogException):
        shown = ", ".join(f'"{n}"' for n in names[:20]) or "none (this lake holds no topic)"
        return f"\nThe views here: {shown}{' ...' if len(names) > 20 else ''}."
    return ""


def _first(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _chain(first: list[pa.RecordBatch], rest: pa.RecordBatchReader
           ) -> Iterator[pa.RecordBatch]:
    yield from first
    yield from rest


def _show_progress(con: duckdb.DuckDBPyConnection, thread: threading.Thread) -> None:
    console = Console(stderr=True)
    columns = (TextColumn("query"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        # No total until DuckDB estimates one: a pulsing bar (it never does for scans of
        # pyarrow datasets - an S3 lake - which then pulse to the end).
        task = progress.add_task("query", total=None)
        while thread.is_alive():
            thread.join(_POLL_SECONDS)
            done = con.query_progress()
            if done >= 0:
                progress.update(task, total=100, completed=done)


# ------------------------------------------------------------------ formats


def _text(value: Any) -> Any:
    """A value as CSV and terminals show it (JSON shapes for nested values)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_json_default).decode()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Decimal):
        return str(value)  # exact: a float would round it
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _write_csv(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(reader.schema.names)
    for batch in reader:
        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            writer.writerow([_text(v) for v in row])


def _write_json(reader: pa.RecordBatchReader, out: IO[str]) -> None:
    option = orjson.OPT_NON_STR_KEYS
    for batch in reader:
        for row in batch.to_pylist():
            out.write(orjson.dumps(row, default=_json_default, option=option).decode())
            out.write("\n")


def _write_parquet(reader: pa.RecordBatchReader, path: Path) -> None:
    with pq.ParquetWriter(path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _write_table(reader: pa.RecordBatchReader, out: IO[str], query: str) -> None:
    view = Table(title=None)
    for name in reader.schema.names:
        view.add_column(name, overflow="fold")
    shown = more = 0
    for batch in reader:
        for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            if shown < TABLE_ROWS:
                view.add_row(*(str(_text(v)) for v in row))
                shown += 1
            else:
                more += 1
    view.caption = f"{shown} row(s)" + (f"; {more} more not shown (use --format csv, json "
                                        "or parquet)" if more else "")
    Console(file=out).print(view)
