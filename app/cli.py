"""``onepipe``: the command line.

    onepipe worker            run a worker against ONEPIPE_BROKER (Apache Kafka in production)
    onepipe dev [--catalog D] embedded broker + catalog + one worker, all stopped by Ctrl-C
    onepipe apply DIR         apply a catalog folder idempotently and print what changed

Errors a user can fix print as ``error: <message>`` with exit status 2 (settings,
catalog) or 1 (anything else onepipe refused), never a stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app.catalog import ApplyResult, apply_catalog
from app.embedded import EmbeddedBroker
from app.settings import Settings, load_settings
from schemas.errors import ConfigError, OnepipeError
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        # A one-shot command prints its result; library chatter would bury it.
        level = settings.log_level if args.command != "apply" else "WARNING"
        logging.basicConfig(level=level,
                            format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
        if args.command == "apply":
            results = asyncio.run(_apply(settings, args.folder))
            _print_results(results)
            return 0
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
                             replication_factor=settings.replication_factor) as store:
        return await apply_catalog(store, folder,
                                   replication_factor=settings.replication_factor)


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
                                               "catalog_dir": catalog})
    print(f"onepipe dev: embedded broker on {broker.bootstrap}, HTTP API on "
          f"{settings.web_url}, data in {data_dir}/ (Ctrl-C stops everything)", flush=True)
    with broker:
        try:
            return _worker(dev_settings)
        except SystemExit as exc:
            return int(exc.code or 0)
