"""``onepipe warehouse load TOPIC --dsn postgresql://...``: clean days into a warehouse table.

The load (onepipe.sinks.warehouse) replaces each day it copies in one transaction, so
readers never see a day half old and half new; ``--incremental`` copies only days whose
Iceberg snapshot changed since they were last loaded (``onepipe_loads`` in the
warehouse). A progress bar goes to stderr when it is a terminal. ``onepipe verify TOPIC
--warehouse DSN`` then compares the table with every other system (:func:`warehouse_sources`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError
from onepipe.schemas.registry_state import RegistryState

__all__ = ["add_warehouse_command", "run_warehouse", "warehouse_sources"]

#: The environment variable ``--dsn`` defaults to (keeps a password off the command line).
DSN_ENV = "ONEPIPE_WAREHOUSE_DSN"


def add_warehouse_command(sub: Any) -> None:
    warehouse = sub.add_parser("warehouse", help="copy clean days into a warehouse")
    warehouse_sub = warehouse.add_subparsers(dest="warehouse_command", required=True)
    load = warehouse_sub.add_parser(
        "load", help="copy a topic's clean days into a PostgreSQL table, a day per transaction")
    load.add_argument("topic")
    load.add_argument("--dsn", default=None,
                      help=f"postgresql://user@host:5432/db (default: ${DSN_ENV})")
    load.add_argument("--table", default=None,
                      help="table name (default: the topic with . and - as _)")
    load.add_argument("--from", dest="first", default=None, help="first UTC day, YYYY-MM-DD")
    load.add_argument("--to", dest="last", default=None, help="last UTC day, YYYY-MM-DD")
    load.add_argument("--incremental", action="store_true",
                      help="only days whose Iceberg snapshot changed since their last load")


def _dsn(value: str | None) -> str:
    dsn = value or os.environ.get(DSN_ENV, "")
    if not dsn:
        raise ConfigError(f"name the warehouse with --dsn postgresql://... or set {DSN_ENV}")
    return dsn


async def run_warehouse(settings: Settings, args: argparse.Namespace) -> int:
    # pyiceberg loads slowly: only the commands that read Iceberg import it.
    from onepipe.agents.verify import day_range
    from onepipe.sinks.warehouse import load_topic

    try:
        day_range(None, args.first, args.last)  # the same day checks as verify
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    dsn = _dsn(args.dsn)
    console = Console(stderr=True)
    columns = (TextColumn(f"load {args.topic}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("rows"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True,
                  disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task("load", total=None)
        async with settings.open_lake() as lake:
            report = await load_topic(
                lake, settings.resolved_catalog_uri, args.topic, dsn, table=args.table,
                first=args.first, last=args.last, incremental=args.incremental,
                on_progress=lambda done, total: progress.update(task, completed=done,
                                                                total=total))
    loaded = [p for p in report.loaded if p.snapshot_id is not None]
    emptied = [p.day for p in report.loaded if p.snapshot_id is None]
    rate = report.rows / report.seconds if report.seconds > 0 else 0.0
    print(f"{args.topic} -> {report.table}: {len(loaded)} day(s) loaded, {report.rows} row(s) "
          f"from snapshot {report.snapshot_id} in {report.seconds:.1f}s ({rate:,.0f} rows/s)")
    if loaded:
        print(f"  loaded: {', '.join(p.day for p in loaded)}")
    if emptied:
        print(f"  emptied (no longer in the clean lake): {', '.join(emptied)}")
    if report.unchanged:
        print(f"  unchanged since their last load: {len(report.unchanged)} day(s)")
    return 0


def warehouse_sources(state: RegistryState, topic: str, dsn: str | None,
                      table: str | None) -> list[Any]:
    """``verify``'s extra systems: the warehouse table at ``dsn`` (none without one)."""
    if dsn is None and table is None:
        return []
    from onepipe.agents.verify.warehouse import WarehouseSource
    from onepipe.sinks.formats.topic_view import TopicView
    from onepipe.sinks.warehouse import check_table, warehouse_table

    view = TopicView.build(state.topic_metadata(topic),
                           state.reader_schema(topic))
    name = check_table(table) if table else warehouse_table(topic)
    return [WarehouseSource(view, _dsn(dsn), name)]
