"""The worker's HTTP server: registry, topic catalog, produce API, status and metrics.

The server runs inside the Faust worker (a service the app hosts) rather than through
Faust's own web driver, so onepipe controls the body-size limit, the error middleware and
access logging on the produce hot path.
"""

from __future__ import annotations

import logging

from aiohttp import web

from onepipe.app.auth import GATE, AuthGate, announce, auth_middleware, check_exposure
from onepipe.app.context import WorkerContext
from onepipe.app.web.health import add_health_routes
from onepipe.app.web.http import CTX, error_middleware
from onepipe.app.web.loop_lag import LoopLag
from onepipe.app.web.metrics import add_metrics_routes
from onepipe.app.web.openapi import add_openapi_routes
from onepipe.app.web.produce import add_produce_routes
from onepipe.app.web.produce_v3 import add_produce_v3_routes
from onepipe.app.web.registry import add_registry_routes
from onepipe.app.web.sinks import add_sink_routes
from onepipe.app.web.status import add_status_routes
from onepipe.app.web.topics import add_topic_routes
from onepipe.app.web.verify import add_verify_routes

log = logging.getLogger(__name__)


def build_web_app(ctx: WorkerContext, gate: AuthGate | None = None) -> web.Application:
    """The API; ``gate`` (default: the settings' tokens) decides who may call what. It
    runs inside ``error_middleware``, which turns a bug in it into a logged 500."""
    gate = gate if gate is not None else AuthGate.from_settings(ctx.settings)
    # Leave aiohttp's own limit above ours so read_json can answer 413 with our message.
    app = web.Application(middlewares=[error_middleware, auth_middleware(gate)],
                          client_max_size=ctx.settings.max_request_bytes + 1)
    app[CTX] = ctx
    app[GATE] = gate
    add_health_routes(app)
    add_registry_routes(app)
    add_topic_routes(app)
    add_produce_routes(app)
    add_produce_v3_routes(app)
    add_metrics_routes(app)
    add_status_routes(app)
    add_verify_routes(app)
    add_sink_routes(app)
    add_openapi_routes(app)
    return app


class WebServer:
    """Start/stop of the aiohttp server; stopping twice is harmless."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._runner: web.AppRunner | None = None
        self.port: int = ctx.settings.web_port
        #: onepipe_event_loop_lag_* in /metrics: how long the worker's loop was held.
        self.loop_lag = LoopLag()
        ctx.metric_sources.append(self.loop_lag)

    async def start(self) -> None:
        settings = self._ctx.settings
        check_exposure(settings)  # no open API beyond loopback unless allowed (ConfigError)
        gate = AuthGate.from_settings(settings)
        announce(settings, None if gate.store is None else len(gate.store.tokens))
        # keepalive_timeout also closes a connection still sending its headers after that
        # long (aiohttp arms it at connect), so slow clients cannot pile up.
        self._runner = web.AppRunner(build_web_app(self._ctx, gate), access_log=None,
                                     handle_signals=False,
                                     keepalive_timeout=settings.idle_connection_seconds)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._ctx.settings.web_host, self._ctx.settings.web_port,
                           reuse_address=True)
        await site.start()
        # With port 0 the OS picks one; read it back from the runner's listening socket.
        for address in self._runner.addresses:
            self.port = int(address[1])
            break
        log.info("HTTP API on http://%s:%d", self._ctx.settings.web_host, self.port)
        self.loop_lag.start()

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
