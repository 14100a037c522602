"""``GET /healthz`` and ``GET /readyz``: what an orchestrator asks a worker.

- ``/healthz`` - liveness: 200 whenever the web server answers. It asks nothing of Kafka
  or the agents, so a broker outage never makes an orchestrator restart healthy workers
  (which would only add rebalances to the outage).
- ``/readyz`` - readiness: 200 when the broker answers, the worker has started (registry
  replayed), the batch agents have their partitions - an agent process's once, at the
  worker's start (onepipe.app.readiness) - and, with API tokens, the tokens file is in
  force (onepipe.app.auth); 503 otherwise, with a JSON body naming each failed check
  and why. Never waits on Kafka for more than the probe's bound.
- ``/health`` - figures for people and tests: the registry offset, the archive's
  counters and positions (stalled partitions with the reason), dedup's counters; every
  process's, with agent processes (onepipe.app.web.worker_view), and then whether each
  agent process reports (its last report's age) and how often it was started again.
"""

from __future__ import annotations

from aiohttp import web

from onepipe.app.auth.gate import GATE
from onepipe.app.readiness import tokens_check
from onepipe.app.web.http import CTX, json_response
from onepipe.app.web.worker_view import worker_archive, worker_counters


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[CTX].readiness
    if readiness is None:  # a bare web app (tests of single views) has no parts to check
        return json_response({"status": "ready", "failed": [], "checks": {}})
    checks = [*await readiness.checks()]
    store = request.app[GATE].store
    if store is not None:  # a worker with API tokens: is the tokens file in force?
        checks.append(tokens_check(store))
    failed = [check.name for check in checks if not check.ok]
    body = {"status": "not_ready" if failed else "ready", "failed": failed,
            "checks": {check.name: {"ok": check.ok, "detail": check.detail}
                       for check in checks}}
    return json_response(body, status=503 if failed else 200)


async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    state = ctx.registry.state
    body = {"status": "ok", "registry_offset": state.applied_offset,
            "topics": len(state.topics)}
    m = worker_archive(ctx)  # every process's
    if m is not None:
        body["archive"] = {
            "records_in": m.records_in, "records_archived": m.records_archived,
            "undecodable": m.undecodable, "files": m.files, "bytes_written": m.bytes_written,
            "positions": {f"{tp.topic}[{tp.partition}]": offset
                          for tp, offset in sorted(m.positions.items())},
            # Partitions not archived (their log was reset), with what to do.
            "stalled": {f"{tp.topic}[{tp.partition}]": reason
                        for tp, reason in sorted(m.stalled.items())},
        }
    if ctx.processes is not None:  # whether each reports: its figures above are its last
        body["agent_processes"] = ctx.processes.health()
    dedup = worker_counters(ctx, "dedup")
    if dedup:
        body["dedup"] = {name: dedup[name] for name in _DEDUP_HEALTH if name in dedup}
    return json_response(body)


#: The dedup agents' counters /health shows (exported by the runtime's CounterSource).
_DEDUP_HEALTH = ("consumed", "winners", "duplicates", "losers", "superseded", "undecodable",
                 "repartitioned", "recovered")


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
