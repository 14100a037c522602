"""The parts one worker runs besides Faust's own: producer, registry, web server, agents.

Start order matters: the producer first (the registry appends with it), then the registry
replays its log to the end and the developers' agents are checked against it
(onepipe.app.developer_agents), then the web server opens, so no request is ever answered
from a half-replayed registry; then the agent processes start (onepipe.app.agent_processes)
and the batch agents join their groups, the developers' agents last. ``ready`` is set
last. Stop runs in reverse, so the archive flushes while the registry resolves schemas.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaConnectionError, KafkaError

from onepipe.agents.archive import ArchiveAgent, ArchiveMetrics
from onepipe.agents.checksum import ChecksumAgent, ChecksumMetrics
from onepipe.agents.compact import (
    CompactionConfig,
    CompactionScheduler,
    DayExecutor,
    DayTaskWorker,
    KafkaDayDispatcher,
)
from onepipe.agents.dedup import DedupAgent, DedupMetrics
from onepipe.agents.sink import SinkRunner
from onepipe.app.agent_processes import AgentProcesses, shared_budgets
from onepipe.app.context import WorkerContext
from onepipe.app.developer_agents import DeveloperAgents
from onepipe.app.lag_monitor import worker_monitor
from onepipe.app.readiness import BrokerProbe, Readiness, Waiting
from onepipe.app.settings import Settings
from onepipe.app.web.metrics import CHECKSUM_EXPORTED, DEDUP_EXPORTED, CounterSource
from onepipe.app.web.server import WebServer
from onepipe.app.web.sinks import SinkCollector
from onepipe.schemas.errors import BrokerError, ConfigError
from onepipe.schemas.topic_names import archive_group, checksums_group, dedup_group
from onepipe.sinks.lake import LakeStore
from onepipe.sinks.publish.publisher import Publisher
from onepipe.tables.kafka.clients import Producer
from onepipe.tables.registry_journal import RegistryJournal
from onepipe.tables.registry_store import RegistryStore
from onepipe.tables.state_memory import set_budget

log = logging.getLogger(__name__)

#: gc.set_threshold for the worker process: generation 0 collected every 100k allocations.
GC_THRESHOLDS = (100_000, 50, 100)


def make_producer(settings: Settings, client_id: str = "onepipe") -> Producer:
    """The produce endpoint's producer: the factory's, batching as the settings say, on
    the client ONEPIPE_KAFKA_CLIENT names."""
    return settings.kafka.batching_producer(
        client_id, settings.kafka_client, linger_ms=settings.linger_ms,
        max_request_bytes=max(settings.max_request_bytes, 1024 * 1024))


class Runtime:
    """Producer + registry + HTTP API of one worker; an async context manager.

    ``agents_only``: an agent process's (onepipe.app.agent_processes): the batch agents
    without the HTTP API or the registry journal, which stay in the worker's process.
    """

    def __init__(self, settings: Settings, *, agents_only: bool = False) -> None:
        self.settings = settings = shared_budgets(settings)
        self.agents_only = agents_only
        #: The batch agents this process runs: those turned on, unless it is the worker's
        #: own with ONEPIPE_AGENT_PROCESSES_ONLY (its agent processes run them then).
        here = agents_only or not settings.agent_processes_only
        self._runs = {name: here and getattr(settings, f"{name}_enabled")
                      for name in ("archive", "sinks", "dedup", "checksums")}
        # Kafka clients bind to the running event loop: the producer is made in start().
        self.producer: Producer | None = None
        self.registry = RegistryStore(
            settings.kafka,
            settings.registry_topic,
            replication_factor=settings.replication_factor,
            write_timeout=settings.produce_timeout,
            fetch_wait_ms=settings.registry_fetch_wait_ms,
            journal=None if agents_only else RegistryJournal(settings.registry_journal_path),
        )
        self.processes = (AgentProcesses(settings) if settings.agent_processes > 1
                          and not agents_only else None)
        self.registry.on_lost_log = self._registry_lost
        self.publisher = Publisher(self.registry.state, None, settings.produce_timeout,
                                   max_record_bytes=settings.max_record_bytes)
        # Consumer-group lag for /status and /metrics; None when monitor_interval_seconds=0.
        self.lag_monitor = worker_monitor(settings, self.registry)
        self.sinks = (SinkRunner(kafka=settings.kafka, app_id=settings.app_id,
                                 registry=self.registry,
                                 replication_factor=settings.replication_factor)
                      if self._runs["sinks"] else None)
        #: GET /readyz: the broker probe asks the producer's client, cached and bounded.
        self.broker_probe = BrokerProbe(lambda: self.producer, settings.broker)
        self.readiness = Readiness(started=lambda: self.ready.is_set(), registry=self.registry,
                                   broker=self.broker_probe, agents=self._batch_agents)
        self.context = WorkerContext(settings, self.registry, self.publisher,
                                     (lambda: self.archive.metrics if self.archive
                                      else ArchiveMetrics()) if self._runs["archive"] else None,
                                     lag_monitor=self.lag_monitor,
                                     sinks=self.sinks.statuses if self.sinks else None,
                                     readiness=self.readiness, processes=self.processes)
        self.web = WebServer(self.context)
        self.lake: LakeStore | None = None
        self.archive: ArchiveAgent | None = None
        self.dedup: DedupAgent | None = None
        self.checksums: ChecksumAgent | None = None
        self.compact_worker: DayTaskWorker | None = None
        self.compact_dispatcher: KafkaDayDispatcher | None = None
        self.compact_scheduler: CompactionScheduler | None = None
        if self._runs["dedup"]:
            # onepipe_dedup_*_total in /metrics, and the dedup block of /health.
            self.context.metric_sources.append(
                CounterSource("dedup", lambda: self.dedup.metrics if self.dedup
                              else DedupMetrics(), DEDUP_EXPORTED))
        if self.sinks is not None:
            self.context.metric_sources.append(SinkCollector(self.context))
        if self.processes is not None:
            self.context.metric_sources.append(self.processes)
        if self._runs["checksums"]:
            self.context.metric_sources.append(
                CounterSource("checksums", lambda: self.checksums.metrics if self.checksums
                              else ChecksumMetrics(), CHECKSUM_EXPORTED))
        #: The developers' agents (their modules are imported now: one that does not
        #: import stops the worker before anything connects).
        self.agents = DeveloperAgents(settings, self.registry, self.lag_monitor, self.context,
                                      enabled=not agents_only)
        #: Why the last start failed, when it was the settings' or the agents' fault.
        self.start_error: ConfigError | None = None
        self.ready = asyncio.Event()
        self._started = False
        self._agents_stopping: asyncio.Future[None] | None = None
        self._abort_start = False
        self._start_done = asyncio.Event()  # set while no start is in progress
        self._start_done.set()
        self._lost_task: asyncio.Task[None] | None = None
        #: Parts whose stop has begun and not ended (what a cut-short stop left undone).
        self.stopping: set[str] = set()

    async def start(self) -> None:
        set_budget(self.settings.state_memory_bytes)  # before any store opens
        self._agents_stopping, self._abort_start = None, False
        self._start_done.clear()
        self.producer = make_producer(self.settings)
        try:
            await self._start_producer()
        except KafkaConnectionError as exc:
            raise BrokerError(
                f"cannot reach Kafka at {self.settings.broker} (ONEPIPE_BROKER): {exc!r}"
            ) from exc
        except KafkaError as exc:
            hint = ""
            if self.settings.idempotent_producer:
                # tansu answers InitProducerId with an error (DESIGN.md).
                hint = ("; if this broker has no idempotent producers (tansu), set "
                        "ONEPIPE_IDEMPOTENT_PRODUCER=false")
            raise BrokerError(
                f"Kafka at {self.settings.broker} refused the producer: {exc!r}{hint}"
            ) from exc
        self._started = True
        self.publisher.bind(self.producer)
        steps: list[Callable[[], Awaitable[None]]] = [
            lambda: self.registry.start(self.producer), self.agents.check,
            self._start_loop_lag if self.agents_only else self.web.start]
        if self.processes is not None:
            steps.append(self.processes.start)
        steps += [start for name, start in (("archive", self._start_archive), ("dedup",
                  self._start_dedup), ("checksums", self._start_checksums)) if self._runs[name]]
        if self.settings.compact_workers_enabled or self.settings.compact_interval_seconds:
            steps.append(self._start_compaction)
        if self.sinks is not None:
            steps.append(self.sinks.start)
        if self.lag_monitor is not None:
            steps.append(self.lag_monitor.start)
        steps.append(self.agents.start)
        try:
            for step in steps:
                # A stop that arrives while starting (Ctrl-C right after launch) ends the
                # start at the next step: nothing is started that the stop would miss.
                if self._abort_start:
                    log.info("stop requested while starting: the remaining parts stay off")
                    break
                await step()
        except BaseException as exc:
            self.start_error = exc if isinstance(exc, ConfigError) else None
            self._start_done.set()
            await self.stop()
            raise
        self._start_done.set()
        if self._abort_start:
            return
        # Everything built at start-up (modules, schemas, clients) lives as long as the
        # worker: moved out of the collector's generations, full collections no longer
        # walk it on the request path (measured 10-30% of worker CPU, and 50-85 ms pauses).
        gc.freeze()
        # The hot paths allocate hundreds of thousands of short-lived objects a second
        # (Kafka records held in archive buffers until a flush): with CPython's default
        # threshold of 700 the collector rescans them constantly. Measured on the archive
        # agent (bench/archive.py): 131k -> 171k records/s.
        gc.set_threshold(*GC_THRESHOLDS)
        loop = type(asyncio.get_running_loop())
        log.info("ready; event loop: %s.%s", loop.__module__, loop.__qualname__)
        self.ready.set()

    async def _start_loop_lag(self) -> None:
        self.web.loop_lag.start()  # the web server's: an agent process's /metrics has it

    def _batch_agents(self) -> list[Waiting]:
        """The batch agents this worker runs now (readiness asks them for partitions), its
        agent processes' among them."""
        agents: list[Waiting] = [a for a in (self.archive, self.dedup, self.checksums,
                                             self.processes) if a]
        if self.sinks is not None:
            agents.extend(self.sinks.agents.values())
        agents.extend(self.agents.runners)
        return agents

    async def _start_checksums(self) -> None:
        settings = self.settings
        self.checksums = ChecksumAgent(
            kafka=settings.kafka,
            group_id=checksums_group(settings.app_id),
            registry=self.registry,
            data_dir=settings.data_dir,
            retention_days=settings.checksum_retention_days,
            replication_factor=settings.replication_factor,
        )
        await self.checksums.start()

    async def _start_archive(self) -> None:
        settings = self.settings
        self.lake = settings.open_lake()
        self.archive = ArchiveAgent(
            kafka=settings.kafka,
            group_id=archive_group(settings.app_id),
            registry=self.registry,
            lake=self.lake,
            max_buffer_bytes=settings.archive_buffer_bytes,
        )
        await self.archive.start()

    async def _start_dedup(self) -> None:
        settings = self.settings
        self.dedup = DedupAgent(
            kafka=settings.kafka,
            group_id=dedup_group(settings.app_id),
            registry=self.registry,
            data_dir=settings.data_dir,
            replication_factor=settings.replication_factor,
        )
        await self.dedup.start()

    def _compaction_config(self, folder: str) -> CompactionConfig:
        settings = self.settings
        return CompactionConfig(
            work_dir=settings.data_dir / folder, catalog_uri=settings.resolved_catalog_uri,
            memory_limit=settings.compact_memory_limit, threads=settings.compact_threads,
            retention_seconds=settings.compact_retention_seconds)

    async def _start_compaction(self) -> None:
        """The day-task worker (pool side) and the periodic scheduler (coordinator side)."""
        settings = self.settings
        if self.lake is None:
            self.lake = settings.open_lake()
        if settings.compact_workers_enabled:
            # Its own work dir: its cache forgets inputs after each task.
            self.compact_worker = DayTaskWorker(
                kafka=settings.kafka, app_id=settings.app_id,
                executor=DayExecutor(self.lake, self._compaction_config("compact-worker")),
                replication_factor=settings.replication_factor)
            await self.compact_worker.start()
        if settings.compact_interval_seconds > 0:
            # `onepipe compact`'s work dir; the dispatcher shares it (cache of staged inputs).
            config = self._compaction_config("compact")
            if settings.compact_workers_enabled:
                self.compact_dispatcher = KafkaDayDispatcher(
                    kafka=settings.kafka, app_id=settings.app_id,
                    executor=DayExecutor(self.lake, config),
                    timeout=settings.compact_task_timeout_seconds,
                    replication_factor=settings.replication_factor)
                await self.compact_dispatcher.start()
            self.compact_scheduler = CompactionScheduler(
                registry=self.registry, lake=self.lake, config=config,
                interval=settings.compact_interval_seconds,
                dispatcher=self.compact_dispatcher,
                worker_id=self.compact_worker.worker_id if self.compact_worker else "")
            await self.compact_scheduler.start()

    async def _start_producer(self) -> None:
        producer = self.producer
        assert producer is not None  # noqa: S101 - made just before
        try:
            await producer.start()
        except BaseException:
            self._start_done.set()  # the start ends here: a stop waiting for it goes on
            await producer.stop()  # a half-started client still holds connections
            raise

    def _registry_lost(self, reason: str) -> None:
        """The broker lost its log under this worker: stop every agent now, so nothing of
        the new log is archived, deduplicated or sunk as if it continued the old one. The
        web server stays up to say why (503 on produce, /readyz, /status); a restart
        restores or refuses the registry log and reports each partition the lake is
        ahead of."""
        log.critical("stopping every agent: %s", reason)
        self._lost_task = asyncio.get_running_loop().create_task(self.stop_agents())

    @property
    def agents_stopped(self) -> bool:
        """Whether the agents were stopped (a stop, or a lost broker log)."""
        return self._agents_stopping is not None and self._agents_stopping.done()

    async def stop_agents(self) -> None:
        """Stop every agent at once; the registry, producer and web server stay up.

        Called as soon as a stop signal arrives (before Faust stops its own services), so
        the parts with durable positions flush and commit first, in parallel: the stop
        has a bound (onepipe.app.stopping) and they should not queue behind each other.
        Harmless to call twice; a second caller waits for the first stop.
        """
        if self._agents_stopping is None:
            self._agents_stopping = asyncio.ensure_future(self._stop_agents())
        await asyncio.shield(self._agents_stopping)

    async def _stop_agents(self) -> None:
        self.ready.clear()
        parts: dict[str, Callable[[], Awaitable[None]]] = {}
        if self.lag_monitor is not None:
            parts["lag monitor"] = self.lag_monitor.stop
        if self.sinks is not None:
            parts["sinks"] = self.sinks.stop
        if self.processes is not None:
            parts["agent processes"] = self.processes.stop
        if self.compact_scheduler or self.compact_dispatcher or self.compact_worker:
            parts["compaction"] = self._stop_compaction
        for name, agent in (("checksum agent", self.checksums), ("dedup agent", self.dedup),
                            ("archive agent (flushing its buffers)", self.archive)):
            if agent is not None:
                parts[name] = agent.stop
        if self.agents.runners:
            parts["developer agents"] = self.agents.stop

        async def stop_one(name: str, stop: Callable[[], Awaitable[None]]) -> None:
            self.stopping.add(name)
            try:
                await stop()
            except Exception:
                log.exception("%s failed to stop cleanly", name)
            finally:
                self.stopping.discard(name)

        await asyncio.gather(*(stop_one(name, stop) for name, stop in parts.items()))

    async def _stop_compaction(self) -> None:
        # The scheduler sends to the dispatcher: stop the sender first.
        for part in (self.compact_scheduler, self.compact_dispatcher, self.compact_worker):
            if part is not None:
                await part.stop()

    async def stop(self) -> None:
        """Stop the agents, then the shared parts in reverse order; harmless to call twice."""
        if not self._start_done.is_set():  # still starting: end the start first (one
            self._abort_start = True          # before its producer is up ends after it)
            await self._start_done.wait()
        if not self._started:
            return
        await self.stop_agents()
        self._started = False
        for name, stop in (("lake", self.lake.close if self.lake else None),
                           ("web server", self.web.stop),
                           ("registry", self.registry.stop)):
            if stop is not None:
                self.stopping.add(name)
                await stop()
                self.stopping.discard(name)
        self.publisher.bind(None)
        await self.broker_probe.close()  # before the client it asks goes away
        if self.producer is not None:
            self.stopping.add("producer (flushing)")
            await self.producer.stop()
            self.stopping.discard("producer (flushing)")

    @property
    def running(self) -> bool:
        """Started and not yet (entirely) stopped."""
        return self._started

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
