"""``onepipe``: the command line.

    onepipe worker            run a worker against ONEPIPE_BROKER (Apache Kafka in production)
    onepipe dev [--catalog D] embedded broker + catalog + one worker, all stopped by Ctrl-C
    onepipe apply DIR         apply a catalog folder idempotently and print what changed
    onepipe replay TOPIC      produce archived records back to Kafka (see --help)
    onepipe lake ls TOPIC     what the raw lake holds per partition and day

Errors a user can fix print as ``error: <message>`` with exit status 2 (settings,
catalog) or 1 (anything else onepipe refused), never a stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.catalog import ApplyResult, apply_catalog
from app.embedded import EmbeddedBroker
from app.settings import Settings, load_settings
from schemas.errors import ConfigError, OnepipeError
from sinks.lake_store import open_lake
from tables.registry_store import RegistryStore

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
    return parser


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
        logging.basicConfig(level=level,
                            format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
        if args.command == "apply":
            results = asyncio.run(_apply(settings, args.folder))
            _print_results(results)
            return 0
        if args.command == "replay":
            return asyncio.run(_replay(settings, args))
        if args.command == "lake":
            return asyncio.run(_lake_ls(settings, args.topic))
        if args.command == "dev":
            return _dev(settings, args.catalog)
        return _worker(settings)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except OnepipeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _apply(settings: Settings, folder: Path) -> list[ApplyResult]:
    async with RegistryStore(settings.broker, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms) as store:
        return await apply_catalog(store, folder,
                                   replication_factor=settings.replication_factor)


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from agents.replay import replay
    from app.runtime import lake_s3_options, make_producer

    target = args.to_topic or (args.topic if args.into_source else None)
    if target is None:
        raise ConfigError("name the target with --to-topic NAME (or --into-source to replay "
                          "into the source topic itself)")
    producer = make_producer(settings, client_id="onepipe-replay")
    await producer.start()
    try:
        async with open_lake(settings.resolved_lake_url, lake_s3_options(settings)) as lake:
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

    from app.runtime import lake_s3_options
    from sinks.lake_inventory import raw_inventory

    async with open_lake(settings.resolved_lake_url, lake_s3_options(settings)) as lake:
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


def _print_results(results: list[ApplyResult]) -> None:
    for result in results:
        head = f"{result.topic} (schema id {result.schema_id}, version {result.version})"
        if not result.changes:
            print(f"{head}: unchanged")
        for change in result.changes:
            print(f"{head}: {change}")


def _worker(settings: Settings) -> int:
    from app.worker import create_app  # faust is heavy: import it only to run a worker

    if settings.catalog_dir is not None:
        # Before the worker subscribes: a topic created after the subscription would only
        # be noticed at the next metadata refresh (minutes).
        _print_results(asyncio.run(_apply(settings, settings.catalog_dir)))
    import faust

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app, _runtime, _streams = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()  # returns only by SystemExit when the worker stops
    return 0


def _dev(settings: Settings, catalog: Path | None) -> int:
    host, _, port = settings.broker.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise ConfigError(f"ONEPIPE_BROKER={settings.broker!r}: `onepipe dev` runs its own "
                          "broker on this machine; use 127.0.0.1:<port>, or `onepipe worker`")
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(host, int(port), log_path=data_dir / "tansu.log")
    catalog = catalog if catalog is not None else settings.catalog_dir
    # tansu answers InitProducerId with an error: the idempotent producer cannot run on it.
    dev_settings = settings.model_copy(update={"idempotent_producer": False,
                                               "catalog_dir": catalog,
                                               "example_agents": True})
    print(f"onepipe dev: embedded broker on {broker.bootstrap}, HTTP API on "
          f"{settings.web_url}, data in {data_dir}/ (Ctrl-C stops everything)", flush=True)
    with broker:
        try:
            return _worker(dev_settings)
        except SystemExit as exc:
            return int(exc.code or 0)
