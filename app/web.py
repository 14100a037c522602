"""The worker's HTTP server: registry, topic catalog, produce API, status and metrics.

The server runs inside the Faust worker (a service the app hosts) rather than through
Faust's own web driver, so onepipe controls the body-size limit, the error middleware and
access logging on the produce hot path.
"""

from __future__ import annotations

import logging

from aiohttp import web

from onepipe.app.context import WorkerContext
from onepipe.app.health_views import add_health_routes
from onepipe.app.http import error_middleware, json_response
from onepipe.app.metrics_view import add_metrics_routes
from onepipe.app.produce_views import add_produce_routes
from onepipe.app.registry_views import CTX, add_registry_routes
from onepipe.app.sink_views import add_sink_routes
from onepipe.app.status_view import add_status_routes
from onepipe.app.topic_views import add_topic_routes
from onepipe.app.verify_views import add_verify_routes

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    state = ctx.registry.state
    body = {"status": "ok", "registry_offset": state.applied_offset,
            "topics": len(state.topics)}
    if ctx.archive_metrics is not None:
        m = ctx.archive_metrics()
        body["archive"] = {
            "records_in": m.records_in, "records_archived": m.records_archived,
            "undecodable": m.undecodable, "files": m.files, "bytes_written": m.bytes_written,
            "positions": {f"{tp.topic}[{tp.partition}]": offset
                          for tp, offset in sorted(m.positions.items())},
            # Partitions not archived (their log was reset), with what to do.
            "stalled": {f"{tp.topic}[{tp.partition}]": reason
                        for tp, reason in sorted(m.stalled.items())},
        }
    dedup = _exported_counters(ctx, "dedup")
    if dedup:
        body["dedup"] = {name: dedup[name] for name in _DEDUP_HEALTH if name in dedup}
    return json_response(body)


#: The dedup agent's counters /health shows (exported by the runtime's CounterSource).
_DEDUP_HEALTH = ("consumed", "winners", "duplicates", "losers", "superseded", "undecodable",
                 "repartitioned", "recovered")


def _exported_counters(ctx: WorkerContext, prefix: str) -> dict[str, int]:
    """``onepipe_<prefix>_<name>_total`` of the context's metric sources, by name.

    Read through the sources' public ``collect`` (what ``/metrics`` exports), so /health
    and /metrics cannot disagree.
    """
    head = f"onepipe_{prefix}_"
    found: dict[str, int] = {}
    for source in ctx.metric_sources:
        for family in source.collect():
            if family.type == "counter" and family.name.startswith(head) and family.samples:
                found[family.name.removeprefix(head)] = int(family.samples[0].value)
    return found


def build_web_app(ctx: WorkerContext) -> web.Application:
    # Leave aiohttp's own limit above ours so read_json can answer 413 with our message.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=ctx.settings.max_request_bytes + 1)
    app[CTX] = ctx
    app.router.add_get("/health", health)
    add_health_routes(app)
    add_registry_routes(app)
    add_topic_routes(app)
    add_produce_routes(app)
    add_metrics_routes(app)
    add_status_routes(app)
    add_verify_routes(app)
    add_sink_routes(app)
    return app


class WebServer:
    """Start/stop of the aiohttp server; stopping twice is harmless."""

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._runner: web.AppRunner | None = None
        self.port: int = ctx.settings.web_port

    async def start(self) -> None:
        self._runner = web.AppRunner(build_web_app(self._ctx), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._ctx.settings.web_host, self._ctx.settings.web_port,
                           reuse_address=True)
        await site.start()
        # With port 0 the OS picks one; read it back from the runner's listening socket.
        for address in self._runner.addresses:
            self.port = int(address[1])
            break
        log.info("HTTP API on http://%s:%d", self._ctx.settings.web_host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
