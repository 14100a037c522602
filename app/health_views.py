"""``GET /healthz`` and ``GET /readyz``: what an orchestrator asks a worker.

- ``/healthz`` - liveness: 200 whenever the web server answers. It asks nothing of Kafka
  or the agents, so a broker outage never makes an orchestrator restart healthy workers
  (which would only add rebalances to the outage).
- ``/readyz`` - readiness: 200 when the broker answers, the worker has started (registry
  replayed) and the batch agents have their partitions (onepipe.app.readiness); 503
  otherwise, with a JSON body naming each failed check and why. Never waits on Kafka for
  more than the probe's bound.

``/health`` (figures for people and tests) stays as it was.
"""

from __future__ import annotations

from aiohttp import web

from onepipe.app.http import json_response
from onepipe.app.registry_views import CTX


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[CTX].readiness
    if readiness is None:  # a bare web app (tests of single views) has no parts to check
        return json_response({"status": "ready", "failed": [], "checks": {}})
    checks = await readiness.checks()
    failed = [check.name for check in checks if not check.ok]
    body = {"status": "not_ready" if failed else "ready", "failed": failed,
            "checks": {check.name: {"ok": check.ok, "detail": check.detail}
                       for check in checks}}
    return json_response(body, status=503 if failed else 200)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
