"""``onepipe``: the command line.

    onepipe worker            run a worker against ONEPIPE_BROKER (Apache Kafka in production)
    onepipe dev [--catalog D] embedded broker + catalog + one worker, all stopped by Ctrl-C
    onepipe apply DIR         apply a catalog folder idempotently and print what changed
    onepipe replay TOPIC      produce archived records back to Kafka (see --help)
    onepipe lake ls TOPIC     what the raw lake holds per partition and day
    onepipe compact TOPIC     merge the raw lake of TOPIC into its clean lake (see --help)
    onepipe lake read TOPIC   preview clean rows (or --raw rows) of TOPIC, --as-of a snapshot
    onepipe lake migrate TOPIC|--all   convert a manifest-format clean lake to Iceberg
    onepipe sql "QUERY"       DuckDB over the lake: views "<topic>" (clean, --as-of) and
                              "raw_<topic>"; --format table|csv|json|parquet
    onepipe warehouse load TOPIC --dsn DSN   clean days into PostgreSQL (--incremental)
    onepipe status            consumer lag per partition from a running worker (exit 1: stuck)
    onepipe verify TOPIC      compare a topic's figures across systems per day (exit 1: differ;
                              --warehouse DSN adds a loaded warehouse table)
    onepipe tokens add NAME   create an API token (--publish PATTERN, --admin); also ls, rm
    onepipe codegen TOPIC     typed record classes for TOPIC's schema (--version N, --output F)
    onepipe agents            the developers' agents a worker would run (ONEPIPE_AGENTS)

Errors a user can fix print as ``error: <message>`` with exit status 2 (settings,
catalog) or 1 (anything else onepipe refused), never a stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from onepipe.app.auth.cli import add_tokens_command, run_tokens
from onepipe.app.codegen_cli import add_codegen_command, run_codegen
from onepipe.app.log_format import configure_logging
from onepipe.app.serve import apply_folder, print_results, run_dev, run_worker
from onepipe.app.settings import Settings, load_settings
from onepipe.app.sinks_cli import add_sink_commands, run_dlq, run_sinks
from onepipe.app.sql_cli import add_sql_command
from onepipe.app.status_cli import add_status_command, run_status
from onepipe.app.warehouse_cli import add_warehouse_command
from onepipe.schemas.errors import ConfigError, OnepipeError
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger("onepipe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onepipe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a worker against the broker in ONEPIPE_BROKER")
    dev = sub.add_parser("dev", help="embedded broker + catalog + one worker")
    dev.add_argument("--catalog", type=Path, default=None,
                     help="catalog folder to apply first (default: ONEPIPE_CATALOG_DIR)")
    apply = sub.add_parser("apply", help="apply a catalog folder and print what changed")
    apply.add_argument("folder", type=Path)
    replay = sub.add_parser("replay", help="produce archived records back to Kafka")
    replay.add_argument("topic")
    replay.add_argument("--partition", type=int, action="append", dest="partitions",
                        help="only this partition (repeatable)")
    replay.add_argument("--from", dest="start", type=_moment, default=None,
                        help="first Kafka timestamp to replay, ISO-8601 (UTC if no zone)")
    replay.add_argument("--to", dest="end", type=_moment, default=None,
                        help="replay records before this Kafka timestamp, ISO-8601")
    replay.add_argument("--to-topic", default=None, help="target topic")
    replay.add_argument("--into-source", action="store_true",
                        help="allow replaying into the source topic itself")
    lake = sub.add_parser("lake", help="inspect the lake")
    lake_sub = lake.add_subparsers(dest="lake_command", required=True)
    lake_ls = lake_sub.add_parser("ls", help="files, records, offsets and bytes per day")
    lake_ls.add_argument("topic")
    lake_read = lake_sub.add_parser("read", help="preview the clean (or raw) rows of a topic")
    lake_read.add_argument("topic")
    lake_read.add_argument("--date", action="append", dest="dates", type=_day,
                           help="only this UTC day, YYYY-MM-DD (repeatable)")
    lake_read.add_argument("--raw", action="store_true", help="read raw/ instead of clean/")
    lake_read.add_argument("--as-of", dest="as_of", default=None,
                           help="time travel: a snapshot id, or an ISO time (2026-11-20T12:00Z)"
                           " - the snapshot current then")
    lake_read.add_argument("--limit", type=int, default=20,
                           help="rows to show (default 20; 0 for all)")
    lake_read.add_argument("--json", action="store_true",
                           help="one JSON object per row instead of a table")
    migrate = lake_sub.add_parser(
        "migrate", help="convert a manifest-format clean lake (onepipe <= 0.1) to Iceberg")
    migrate.add_argument("topic", nargs="?", default=None)
    migrate.add_argument("--all", action="store_true", dest="all_topics",
                         help="every registered topic with a manifest-format clean lake")
    compact = sub.add_parser("compact", help="merge a topic's raw lake into its clean lake")
    compact.add_argument("topic")
    compact.add_argument("--jobs", type=int, default=1,
                         help="days written at once (each with its own DuckDB memory limit)")
    add_status_command(sub)
    add_sink_commands(sub)
    add_tokens_command(sub)
    add_sql_command(sub)
    add_warehouse_command(sub)
    add_codegen_command(sub)
    sub.add_parser("agents", help="list the developers' agents a worker would run")
    verify = sub.add_parser("verify", help="compare a topic's figures in every system per day")
    verify.add_argument("topic")
    verify.add_argument("--date", default=None, help="only this UTC day, YYYY-MM-DD")
    verify.add_argument("--from", dest="first", default=None, help="first UTC day")
    verify.add_argument("--to", dest="last", default=None, help="last UTC day")
    verify.add_argument("--limit", type=int, default=20,
                        help="differing keys listed per day (default 20)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--as-of", dest="as_of", default=None,
                        help="verify the clean lake's snapshot with this id, or the one "
                        "current at this ISO time (default: the current snapshot)")
    verify.add_argument("--warehouse", default=None, metavar="DSN",
                        help="also compare the table `onepipe warehouse load` filled there")
    verify.add_argument("--warehouse-table", dest="warehouse_table", default=None,
                        help="that table's name (default: the topic with . and - as _)")
    return parser


def _day(text: str) -> str:
    try:
        datetime.strptime(text, "%Y-%m-%d")  # noqa: DTZ007 - a calendar day, no instant
    except ValueError:
        msg = f"expected a UTC day like 2026-11-26, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return text


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"expected an ISO-8601 time like 2026-11-26T10:00:00Z, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        # A one-shot command prints its result; library chatter would bury it.
        level = settings.log_level if args.command in ("worker", "dev") else "WARNING"
        configure_logging(level, settings.log_format)
        if args.command == "apply":
            results = asyncio.run(apply_folder(settings, args.folder))
            print_results(results)
            return 0
        if args.command == "replay":
            return asyncio.run(_replay(settings, args))
        if args.command == "lake" and args.lake_command in ("read", "migrate"):
            from onepipe.app.lake_cli import run_lake_migrate, run_lake_read

            run = run_lake_read if args.lake_command == "read" else run_lake_migrate
            return asyncio.run(run(settings, args))
        if args.command == "lake":
            return asyncio.run(_lake_ls(settings, args.topic))
        if args.command == "compact":
            return asyncio.run(_compact(settings, args))
        if args.command == "status":
            return run_status(args)
        if args.command == "sinks":
            return run_sinks(args)
        if args.command == "dlq":
            return run_dlq(settings, args.topic)
        if args.command == "verify":
            return asyncio.run(_verify(settings, args))
        if args.command == "tokens":
            return run_tokens(settings, args)
        if args.command == "sql":
            from onepipe.app.sql_cli import run_sql

            return asyncio.run(run_sql(settings, args))
        if args.command == "agents":
            from onepipe.app.agents_cli import run_agents  # imports the agents' modules

            return run_agents(settings)
        if args.command == "codegen":
            return asyncio.run(run_codegen(settings, args))
        if args.command == "warehouse":
            from onepipe.app.warehouse_cli import run_warehouse

            return asyncio.run(run_warehouse(settings, args))
        if args.command == "dev":
            return run_dev(settings, args.catalog)
        return run_worker(settings)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OnepipeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from onepipe.agents.replay import replay
    from onepipe.app.runtime import GC_THRESHOLDS, make_producer

    # The worker's collector thresholds (onepipe.app.runtime): a replay with headers builds
    # a list and tuples per record, and at the default threshold (700) the collector
    # rescanned everything alive every few hundred records: 7.6-8.6 -> 4.5-6.7 µs of CPU a
    # record (bench/replay.py --headers, 300k records of 200 B).
    gc.set_threshold(*GC_THRESHOLDS)

    target = args.to_topic or (args.topic if args.into_source else None)
    if target is None:
        raise ConfigError("name the target with --to-topic NAME (or --into-source to replay "
                          "into the source topic itself)")
    producer = make_producer(settings, client_id="onepipe-replay")
    await producer.start()
    try:
        async with settings.open_lake() as lake:
            with Progress(transient=True) as progress:
                task = progress.add_task(f"replay {args.topic} -> {target}", total=None)
                summary = await replay(
                    lake, producer, args.topic, to_topic=target, into_source=args.into_source,
                    partitions=set(args.partitions) if args.partitions else None,
                    start=args.start, end=args.end,
                    on_progress=lambda sent, total: progress.update(task, completed=sent,
                                                                    total=total))
    finally:
        await producer.stop()
    parts = ", ".join(f"p{p}: {n}" for p, n in sorted(summary.per_partition.items()))
    print(f"replayed {summary.records} record(s) from {summary.files} file(s) of "
          f"{summary.source} into {summary.target}" + (f" ({parts})" if parts else ""))
    return 0


async def _lake_ls(settings: Settings, topic: str) -> int:
    from rich.console import Console
    from rich.table import Table

    from onepipe.sinks.lake.inventory import raw_inventory

    async with settings.open_lake() as lake:
        inventory = await raw_inventory(lake, topic)
    table = Table(title=f"raw/{topic} in {settings.resolved_lake_url}")
    for column in ("partition", "date", "files", "records", "offsets", "bytes"):
        table.add_column(column, justify="right" if column != "date" else "left")
    for row in inventory.rows:
        table.add_row(str(row.partition), row.date, str(row.files), str(row.records),
                      f"{row.first_offset}-{row.last_offset}", f"{row.bytes:,}")
    console = Console()
    console.print(table)
    print(f"{inventory.records} record(s) in {len(inventory.files)} file(s)")
    for partition, gaps in sorted(inventory.gaps.items()):
        print(f"partition {partition}: offsets missing or doubled: {gaps}")
    return 0 if not inventory.gaps else 1


async def _compact(settings: Settings, args: argparse.Namespace) -> int:
    from onepipe.agents.compact import CompactionConfig, Compactor
    from onepipe.schemas.errors import NotFoundError

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms) as store:
        try:
            meta = store.state.topic_metadata(args.topic)
        except NotFoundError as exc:
            raise ConfigError(exc.message) from exc
        try:
            schema = store.state.reader_schema(args.topic)
        except NotFoundError:
            schema = None  # no typed columns; partition_time must then be `kafka`
    config = CompactionConfig(
        work_dir=settings.data_dir / "compact", catalog_uri=settings.resolved_catalog_uri,
        memory_limit=settings.compact_memory_limit, threads=settings.compact_threads,
        retention_seconds=settings.compact_retention_seconds, jobs=args.jobs)
    async with settings.open_lake() as lake:
        report = await Compactor(lake, meta, schema, config).run()
    if report.seq is None:
        print(f"{args.topic}: clean lake is up to date, no snapshot committed"
              + (f" ({report.files_deleted} stale file(s) deleted)"
                 if report.files_deleted else ""))
        return 0
    days = ", ".join(report.days_written) or "none"
    print(f"{args.topic}: committed snapshot {report.snapshot_id} (sequence number "
          f"{report.seq}) in {report.duration_seconds:.1f}s, commit "
          f"{report.commit_seconds * 1000:.0f} ms (attempts {report.attempts})")
    print(f"  raw: {report.rows_in} record(s) from {report.raw_files} file(s); "
          f"{report.undecodable} undecodable and {report.incomplete} without key or "
          "partition time left out")
    print(f"  clean: {len(report.days_written)} day(s) written ({days}), "
          f"{report.rows_out} row(s); {report.files_deleted} unreferenced file(s) deleted")
    return 0


async def _verify(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when every system agrees, 1 when not, 2 for usage errors."""
    import orjson

    from onepipe.agents.verify import day_range, verify_registered
    from onepipe.app.warehouse_cli import warehouse_sources
    from onepipe.app.web.verify import cache_dir, print_report

    try:
        days = day_range(args.date, args.first, args.last)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms) as store:
        if args.topic not in store.state.topics:
            raise ConfigError(f"topic {args.topic!r} is not registered; `onepipe apply` "
                              "registers a catalog folder")
        extra = warehouse_sources(store.state, args.topic, args.warehouse,
                                  args.warehouse_table)
        async with settings.open_lake() as lake:
            report = await verify_registered(
                args.topic, store.state, lake=lake, kafka=settings.kafka, days=days,
                cache_dir=cache_dir(settings.data_dir), limit=args.limit,
                catalog_uri=settings.resolved_catalog_uri, as_of=args.as_of, extra=extra)
    if args.json:
        print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(report)
    return 0 if report.ok else 1
