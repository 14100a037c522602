"""The parts one worker runs besides Faust's own: producer, registry, web server, agents.

Start order matters: the producer first (the registry appends with it), then the registry
replays its log to the end, then the web server opens, so no request is ever answered
from a half-replayed registry; then the batch agents (archive) join their groups.
``ready`` is set last; developer agents wait for it. Stop runs in reverse, so the
archive agent flushes its buffers while the registry can still resolve schemas.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from agents.archive import ArchiveAgent, ArchiveMetrics
from agents.publisher import Publisher
from app.context import WorkerContext
from app.settings import Settings
from app.web import WebServer
from schemas.errors import BrokerError
from sinks.lake_store import LakeStore, S3Options, open_lake
from tables.registry_store import RegistryStore

log = logging.getLogger(__name__)


#: gc.set_threshold for the worker process: generation 0 collected every 100k allocations.
GC_THRESHOLDS = (100_000, 50, 100)


def make_producer(settings: Settings, client_id: str = "onepipe") -> AIOKafkaProducer:
    """The producer every onepipe write uses: acks=all, idempotent where the broker can."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.broker,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.idempotent_producer,
        linger_ms=settings.linger_ms,
        max_batch_size=1024 * 1024,
        max_request_size=max(settings.max_request_bytes, 1024 * 1024),
        request_timeout_ms=int(settings.produce_timeout * 1000),
    )


class Runtime:
    """Producer + registry + HTTP API of one worker; an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Kafka clients bind to the running event loop: the producer is made in start().
        self.producer: AIOKafkaProducer | None = None
        self.registry = RegistryStore(
            settings.broker,
            settings.registry_topic,
            replication_factor=settings.replication_factor,
            write_timeout=settings.produce_timeout,
            fetch_wait_ms=settings.registry_fetch_wait_ms,
        )
        self.publisher = Publisher(self.registry.state, None, settings.produce_timeout)
        self.context = WorkerContext(settings, self.registry, self.publisher,
                                     self._archive_metrics if settings.archive_enabled
                                     else None)
        self.web = WebServer(self.context)
        self.lake: LakeStore | None = None
        self.archive: ArchiveAgent | None = None
        self.ready = asyncio.Event()
        self._started = False

    async def start(self) -> None:
        self.producer = make_producer(self.settings)
        try:
            await self._start_producer(self.producer)
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
        try:
            await self.registry.start(self.producer)
            await self.web.start()
            if self.settings.archive_enabled:
                await self._start_archive()
        except BaseException:
            await self.stop()
            raise
        # Everything built at start-up (modules, schemas, clients) lives as long as the
        # worker: moved out of the collector's generations, full collections no longer
        # walk it on the request path (measured 10-30% of worker CPU, and 50-85 ms pauses).
        gc.freeze()
        # The hot paths allocate hundreds of thousands of short-lived objects a second
        # (Kafka records held in archive buffers until a flush): with CPython's default
        # threshold of 700 the collector rescans them constantly. Measured on the archive
        # agent (bench/archive.py): 131k -> 171k records/s.
        gc.set_threshold(*GC_THRESHOLDS)
        self.ready.set()

    def _archive_metrics(self) -> ArchiveMetrics:
        return self.archive.metrics if self.archive is not None else ArchiveMetrics()

    async def _start_archive(self) -> None:
        settings = self.settings
        self.lake = open_lake(settings.resolved_lake_url, lake_s3_options(settings))
        self.archive = ArchiveAgent(
            bootstrap=settings.broker,
            group_id=f"{settings.app_id}-archive",
            registry=self.registry,
            lake=self.lake,
            max_buffer_bytes=settings.archive_buffer_bytes,
            session_timeout=settings.session_timeout,
            rebalance_timeout=settings.rebalance_timeout,
        )
        await self.archive.start()

    @staticmethod
    async def _start_producer(producer: AIOKafkaProducer) -> None:
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a half-started client still holds connections
            raise

    async def stop(self) -> None:
        """Stop in reverse order; harmless to call twice."""
        if not self._started:
            return
        self._started = False
        self.ready.clear()
        if self.archive is not None:
            await self.archive.stop()
        if self.lake is not None:
            await self.lake.close()
        await self.web.stop()
        await self.registry.stop()
        self.publisher.bind(None)
        if self.producer is not None:
            await self.producer.stop()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def lake_s3_options(settings: Settings) -> S3Options:
    """S3 options from settings; credentials come from the usual AWS variables."""
    return S3Options(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
