"""The Faust worker application that hosts every onepipe part.

One app per process; ops scale out by starting more processes with the same settings.
Faust carries the worker lifecycle, timers and the CLI (developers' agents run in
onepipe's own runners, onepipe.agents.framework); onepipe's
:class:`~onepipe.app.runtime.Runtime` (registry, producer, HTTP API, every agent) runs as
the app's web-server service, which Faust starts after table recovery.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import faust
import mode

from onepipe.app.log_format import worker_logging_config
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.stopping import StopWatchdog
from onepipe.tables.kafka.security import KafkaSecurity


class RuntimeService(mode.Service):
    """Adapts :class:`Runtime` to Faust's service lifecycle."""

    def __init__(self, runtime: Runtime, **kwargs: Any) -> None:
        self.runtime = runtime
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        await self.runtime.start()

    async def on_stop(self) -> None:
        await self.runtime.stop()

    @property
    def web_url(self) -> str:
        return f"http://{self.runtime.settings.web_host}:{self.runtime.web.port}"


def faust_credentials(security: KafkaSecurity) -> faust.types.auth.CredentialsT | None:
    """Faust's form of the TLS/SASL settings the client factory applies to every client."""
    context = security.ssl_context()
    if security.uses_sasl:
        return faust.SASLCredentials(username=security.sasl_username,
                                     password=security.sasl_password,
                                     ssl_context=context,  # None: SASL_PLAINTEXT
                                     mechanism=security.sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings) -> tuple[faust.App, Runtime]:
    """Build the worker app; nothing connects until the worker starts (the developers'
    agents' modules are imported: AgentLoadError)."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.servers],
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=settings.session_timeout,
        broker_rebalance_timeout=settings.rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        producer_acks=-1,
        topic_replication_factor=settings.replication_factor,
        topic_partitions=1,
        store="memory://",
        autodiscover=False,
        # Faust's own consumer and producer connect as onepipe's clients do.
        broker_credentials=faust_credentials(settings.kafka_security),
        # ONEPIPE_LOG_FORMAT=json: the worker's log setup uses onepipe's JSON lines.
        logging_config=worker_logging_config(settings.log_level, settings.log_format),
        # A stop does not wait for agents to drain what they have buffered (a backlog
        # took minutes): what they did not commit is read again after the restart.
        stream_wait_empty=False,
    )
    runtime = Runtime(settings)
    app.web_server(RuntimeService(runtime))
    return app, runtime


class Worker(faust.Worker):
    """Faust's worker with a bounded stop (onepipe.app.stopping).

    On the first SIGTERM or SIGINT the watchdog starts the clock and onepipe's agents
    begin to flush and commit at once, while Faust stops its own services as usual.
    """

    def __init__(self, app: faust.App, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.runtime = runtime
        self.watchdog = StopWatchdog(runtime.settings.stop_timeout_seconds, self._pending)
        self._agents_stop: asyncio.Task[None] | None = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        self.watchdog.arm(signal.name)
        if self.runtime.ready.is_set():  # a runtime still starting stops in Faust's order
            self._agents_stop = self.loop.create_task(self.runtime.stop_agents())
        super()._schedule_shutdown(signal)

    def _pending(self) -> list[str]:
        parts = sorted(self.runtime.stopping)
        if not parts and self.runtime.running:
            parts = ["Faust's consumer and agents (onepipe's web server, registry and "
                     "producer come after them)"]
        return parts
