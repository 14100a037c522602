"""Every route of the worker's API has a right decided here, and a new one is closed.

The table in onepipe.app.auth.rights is keyed by the routes ``build_web_app`` registers;
a route added without an entry fails the first test (and needs an admin token until it
has one).
"""

from __future__ import annotations

from onepipe.app.auth import ROUTE_RIGHTS, Right, right_for
from onepipe.app.runtime import Runtime
from onepipe.app.web.server import build_web_app


def served_routes(runtime: Runtime) -> set[tuple[str, str]]:
    app = build_web_app(runtime.context)
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None}


def test_every_route_of_the_api_is_classified_explicitly(runtime: Runtime) -> None:
    routes = served_routes(runtime)
    assert len(routes) > 20  # the whole API, not an empty app
    missing = sorted(r for r in routes if r[0] != "HEAD" and r not in ROUTE_RIGHTS)
    assert not missing, (
        f"routes without a right in onepipe.app.auth.rights.ROUTE_RIGHTS: {missing}; "
        "add each (OPEN, READ, PUBLISH or ADMIN) - until then they need an admin token")
    for method, canonical in routes:
        if method == "HEAD":
            assert ("GET", canonical) in ROUTE_RIGHTS


def test_the_rules_of_the_issue_hold_for_every_served_route(runtime: Runtime) -> None:
    reads = {("POST", "/subjects/{subject}"),
             ("POST", "/compatibility/subjects/{subject}/versions"),
             ("POST", "/compatibility/subjects/{subject}/versions/{version}")}
    for method, canonical in served_routes(runtime):
        right = right_for(method, canonical)
        if canonical in ("/healthz", "/readyz"):
            assert right is Right.OPEN
        elif canonical.endswith("/records") and method == "POST":
            assert right is Right.PUBLISH and "{topic}" in canonical
        elif method not in ("GET", "HEAD") and (method, canonical) not in reads:
            assert right is Right.ADMIN, (method, canonical)
        else:
            assert right is Right.READ, (method, canonical)
    assert right_for("PUT", "/topics/{topic}/metadata") is Right.ADMIN


def test_a_route_unknown_to_the_table_needs_an_admin_token() -> None:
    assert right_for("GET", "/admin/everything") is Right.ADMIN
    assert right_for("PATCH", "/subjects") is Right.ADMIN
    assert right_for("HEAD", "/subjects") is Right.READ
