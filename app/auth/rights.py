"""What each route of the HTTP API needs, decided from the matched route.

The table is keyed by (method, the route's canonical path, e.g.
``/subjects/{subject}/versions``) as aiohttp matched it, never by the raw request path,
so ``..`` segments, doubled slashes or percent-encoding cannot reach a route under
another route's rule. ``HEAD`` is a ``GET``. A route missing from the table needs an
admin token: a new route is closed until someone decides otherwise here, and
tests/app/auth/test_rights.py fails for every route of ``build_web_app`` missing here.
"""

from __future__ import annotations

from enum import Enum


class Right(Enum):
    """What a request needs, from least to most."""

    #: Orchestrator probes: never a token.
    OPEN = "open"
    #: Reads: no token, or any valid token (ONEPIPE_AUTH_READS).
    READ = "read"
    #: Publishing to ``{topic}``: a token whose publish patterns match the topic.
    PUBLISH = "publish"
    #: Changing the registry or the catalog: an admin token.
    ADMIN = "admin"


_S = "/subjects/{subject}"
_COMPAT = "/compatibility/subjects/{subject}/versions"

ROUTE_RIGHTS: dict[tuple[str, str], Right] = {
    # Probes: an orchestrator holds no token.
    ("GET", "/healthz"): Right.OPEN,
    ("GET", "/readyz"): Right.OPEN,
    # The worker's views.
    ("GET", "/health"): Right.READ,
    ("GET", "/metrics"): Right.READ,
    ("GET", "/status"): Right.READ,
    ("GET", "/status.json"): Right.READ,
    ("GET", "/sinks"): Right.READ,
    ("GET", "/verify/{topic}"): Right.READ,
    ("GET", "/openapi.json"): Right.READ,
    # The Confluent-compatible registry: reads, and the two POSTs that only read.
    ("GET", "/subjects"): Right.READ,
    ("GET", f"{_S}/versions"): Right.READ,
    ("GET", f"{_S}/versions/{{version}}"): Right.READ,
    ("GET", f"{_S}/versions/{{version}}/schema"): Right.READ,
    ("GET", f"{_S}/versions/{{version}}/referencedby"): Right.READ,
    ("POST", _S): Right.READ,  # "is this schema registered under the subject?"
    ("POST", _COMPAT): Right.READ,  # "would this schema be compatible?"
    ("POST", f"{_COMPAT}/{{version}}"): Right.READ,
    ("GET", "/schemas"): Right.READ,
    ("GET", "/schemas/types"): Right.READ,
    ("GET", "/schemas/ids/{id}"): Right.READ,
    ("GET", "/schemas/ids/{id}/schema"): Right.READ,
    ("GET", "/schemas/ids/{id}/versions"): Right.READ,
    ("GET", "/schemas/ids/{id}/subjects"): Right.READ,
    ("GET", "/config"): Right.READ,
    ("GET", "/config/{subject}"): Right.READ,
    ("GET", "/mode"): Right.READ,
    ("GET", "/mode/{subject}"): Right.READ,
    # Registry writes.
    ("POST", f"{_S}/versions"): Right.ADMIN,
    ("DELETE", _S): Right.ADMIN,
    ("DELETE", f"{_S}/versions/{{version}}"): Right.ADMIN,
    ("PUT", "/config"): Right.ADMIN,
    ("PUT", "/config/{subject}"): Right.ADMIN,
    ("DELETE", "/config"): Right.ADMIN,
    ("DELETE", "/config/{subject}"): Right.ADMIN,
    ("PUT", "/mode"): Right.ADMIN,
    ("PUT", "/mode/{subject}"): Right.ADMIN,
    ("DELETE", "/mode"): Right.ADMIN,
    ("DELETE", "/mode/{subject}"): Right.ADMIN,
    # The catalog.
    ("GET", "/topics"): Right.READ,
    ("GET", "/topics/{topic}/metadata"): Right.READ,
    ("PUT", "/topics/{topic}/metadata"): Right.ADMIN,
    # REST Proxy v3: what a Kafka REST client reads before it produces.
    ("GET", "/v3/clusters"): Right.READ,
    ("GET", "/v3/clusters/{cluster_id}"): Right.READ,
    ("GET", "/v3/clusters/{cluster_id}/topics/{topic}"): Right.READ,
    # Publishing: onepipe's produce endpoint and the REST Proxy v3 one.
    ("POST", "/topics/{topic}/records"): Right.PUBLISH,
    ("POST", "/v3/clusters/{cluster_id}/topics/{topic}/records"): Right.PUBLISH,
}


def right_for(method: str, canonical: str) -> Right:
    """The right a request to this route needs; ADMIN for a route not in the table."""
    return ROUTE_RIGHTS.get(("GET" if method == "HEAD" else method, canonical), Right.ADMIN)
