"""Running the worker: ``onepipe worker`` and ``onepipe dev`` (embedded broker + worker).

Why apart from the CLI's parsing: this is the process lifecycle - the catalog applied
before the worker subscribes, the bounded stop (onepipe.app.stopping), and the
embedded broker that starts first and stops last, whose death stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from onepipe.app.auth import check_exposure
from onepipe.app.catalog import ApplyResult, apply_catalog
from onepipe.app.dev_restore import restore_dev_state
from onepipe.app.embedded import EmbeddedBroker
from onepipe.app.settings import Settings
from onepipe.app.stopping import STOP_SIGNALS, interrupts_kept, signals_restored
from onepipe.schemas.errors import ConfigError
from onepipe.tables.registry_journal import RegistryJournal
from onepipe.tables.registry_store import RegistryStore

log = logging.getLogger("onepipe")

__all__ = ["DEV_SQLITE_DSN_ENV", "apply_folder", "event_loop_factory", "print_results",
           "run_dev", "run_worker"]


def event_loop_factory(settings: Settings) -> tuple[Callable[[], asyncio.AbstractEventLoop],
                                                      str]:
    """What makes the worker's event loop (``ONEPIPE_EVENT_LOOP``), and its name.

    Why uvloop by default: a full worker (endpoint and agents on one loop, handing
    librdkafka's fetches and reports over from its threads) used ~22% less CPU at a
    fixed request rate, with a lower p99, and took ~41% more one-record requests a
    second (means of three runs, BENCHMARKS.md, "Event loop"); an endpoint-only worker
    and the agents' batch paths alone moved within noise. The default falls back to
    asyncio where uvloop is not installed; asking for it by name there is a
    configuration error.

    Why a factory and not an event loop policy: a policy is process-wide (a command run
    inside another program would switch that program's loops too), and policies are
    deprecated from Python 3.14; the worker sets the loop it makes as the current one.
    """
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            if "event_loop" in settings.model_fields_set:
                raise ConfigError(
                    "ONEPIPE_EVENT_LOOP=uvloop, but uvloop is not installed here (it is not "
                    "built for Windows): install it, or set ONEPIPE_EVENT_LOOP=asyncio"
                ) from exc
            log.info("uvloop is not installed; the worker runs on asyncio's event loop")
        else:
            return uvloop.new_event_loop, "uvloop"
    return asyncio.new_event_loop, "asyncio"


async def apply_folder(settings: Settings, folder: Path, *, journal: bool = False
                       ) -> list[ApplyResult]:
    """Apply a catalog folder; ``journal``: as the worker, which keeps the registry journal
    (its start restores an empty registry log before anything is registered anew)."""
    async with RegistryStore(settings.kafka, settings.registry_topic,
                             replication_factor=settings.replication_factor,
                             fetch_wait_ms=settings.registry_fetch_wait_ms,
                             journal=RegistryJournal(settings.registry_journal_path)
                             if journal else None) as store:
        return await apply_catalog(store, folder,
                                   replication_factor=settings.replication_factor)


def print_results(results: list[ApplyResult], say: Callable[[str], object] = print) -> None:
    for result in results:
        head = f"{result.topic} (schema id {result.schema_id}, version {result.version})"
        if not result.changes:
            say(f"{head}: unchanged")
        for change in result.changes:
            say(f"{head}: {change}")


def run_worker(settings: Settings) -> int:
    """``onepipe worker``: apply the catalog, then run the Faust worker until it stops."""
    # faust is heavy: import it only to run a worker
    from onepipe.app.worker import Worker, create_app

    # Before anything starts: an open API beyond loopback, or a tokens file that does not
    # parse, is a usage error (exit 2), not a crash inside Faust's start (the web server
    # checks again, for workers started otherwise).
    check_exposure(settings)
    new_loop, _ = event_loop_factory(settings)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        with interrupts_kept():  # until Faust's own handlers are installed
            if settings.catalog_dir is not None:
                # Before the worker subscribes: a topic created after the subscription
                # would only be noticed at the next metadata refresh (minutes).
                say = log.info if settings.log_format == "json" else print  # JSON: no bare
                print_results(asyncio.run(apply_folder(settings, settings.catalog_dir,
                                                       journal=True)), say)
            (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
            # The current loop before the app exists: Faust's services, and a developer's
            # module that asks asyncio for the loop at import, get this one.
            loop = new_loop()
            asyncio.set_event_loop(loop)
            app, runtime = create_app(settings)
        worker = Worker(app, runtime, loglevel=settings.log_level, quiet=True, loop=loop)
        try:
            with signals_restored(*STOP_SIGNALS):
                worker.execute_from_commandline()  # returns only by SystemExit when it stops
        except SystemExit:
            if runtime.start_error is not None:  # an agent that does not fit the registry:
                raise runtime.start_error from None  # `error: <message>`, not a crash log
            raise
    finally:
        if loop is not None:  # Faust closed it after its run; not when the start failed
            asyncio.set_event_loop(None)
            if not loop.is_closed():
                loop.close()
    return 0


#: The variable the example catalog names for its SQLite sink (catalog/widgets.yaml).
DEV_SQLITE_DSN_ENV = "ONEPIPE_DEV_SQLITE_DSN"


def run_dev(settings: Settings, catalog: Path | None) -> int:
    """``onepipe dev``: the embedded broker and one worker, stopped together."""
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
                                               "example_agents": True,
                                               # dev compacts the lake on its own too
                                               "compact_interval_seconds":
                                                   settings.compact_interval_seconds or 60.0})
    # The example catalog's SQLite sink writes into the data dir unless told otherwise.
    sqlite = data_dir.resolve() / "widgets.db"
    os.environ.setdefault(DEV_SQLITE_DSN_ENV, f"sqlite:///{sqlite}")
    print(f"onepipe dev: embedded broker on {broker.bootstrap}, HTTP API on "
          f"{settings.web_url}, data in {data_dir}/, widgets also in SQLite "
          f"{os.environ[DEV_SQLITE_DSN_ENV]} (Ctrl-C stops everything)", flush=True)
    died: list[int] = []

    def broker_exited(code: int) -> None:
        # The broker's memory was its log: the worker cannot go on against it. Stop the
        # worker the way Ctrl-C does (bounded, flushing what it can into the lake).
        died.append(code)
        log.error("the embedded broker exited with %s (log: %s); stopping the worker",
                  code, broker.log_path)
        os.kill(os.getpid(), signal.SIGTERM)

    with broker:
        broker.on_exit(broker_exited)
        with interrupts_kept():
            restored = asyncio.run(restore_dev_state(dev_settings))
        if restored.records:
            print(f"onepipe dev: restored from {data_dir}/: the registry ({restored.topics} "
                  f"topic(s)) and " + ", ".join(f"{topic} ({count} records)" for topic, count
                                                in restored.records.items()), flush=True)
        try:
            code = run_worker(dev_settings)
        except SystemExit as exc:
            code = int(exc.code or 0)
    if died:
        print(f"error: the embedded broker exited with {died[0]} while the worker ran "
              f"(its log: {broker.log_path}); run `make dev` again", file=sys.stderr)
        return 1
    return code
