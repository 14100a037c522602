"""Tokens and rights on a real worker's HTTP API (tansu broker, real Runtime).

One worker with a tokens file serves the module; variants of its settings (reads need a
token, a rate limit) are further web servers over the same worker's parts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from yarl import URL

from onepipe.app.auth import add_token, read_tokens
from onepipe.app.auth.cli import run_tokens
from onepipe.app.cli import _parser
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.status_cli import StatusUnavailable, fetch_document
from onepipe.app.web.server import WebServer
from tests.fixtures.services import unique, wait_for
from tests.fixtures.topics import create_topic

SCHEMA: dict[str, Any] = {"type": "record", "name": "Widget", "namespace": "test.auth",
                          "fields": [{"name": "id", "type": "string"},
                                     {"name": "n", "type": "long"}]}
#: Every topic of this module starts so; the publisher's prefix pattern covers them.
PREFIX = "authw-"


@dataclass
class Guarded:
    runtime: Runtime
    url: str
    tokens_file: Path
    admin: str
    publisher: str  # may publish to authw-* and to `exact`
    reader: str  # no right at all
    exact: str
    topic: str  # registered, under the prefix
    other: str  # registered, outside every pattern


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def guarded(make_settings: Callable[..., Settings],
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Guarded]:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    admin, _ = add_token(path, "admin", [], admin=True)
    exact = unique("exact")
    publisher, _ = add_token(path, "ci", [f"{PREFIX}*", exact], admin=False)
    reader, _ = add_token(path, "reader", [], admin=False)
    settings = make_settings(tokens_file=path, registry_topic=unique("_registry"))
    async with Runtime(settings) as runtime:
        url = f"http://127.0.0.1:{runtime.web.port}"
        topic, other = unique(PREFIX.rstrip("-")), unique("other")
        async with aiohttp.ClientSession(base_url=url, headers=bearer(admin)) as http:
            for name in (topic, other, exact):
                await create_topic(http, name, SCHEMA, partitions=1)
        yield Guarded(runtime, url, path, admin, publisher, reader, exact, topic, other)


async def call(url: str, method: str, path: str, *, headers: dict[str, str] | None = None,
               json: Any = None) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, URL(url + path, encoded=True), headers=headers, json=json) as resp:
        raw = await resp.read()
        body = orjson.loads(raw) if resp.content_type.endswith("json") else raw
        return resp.status, dict(resp.headers), body


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(user, password)}


def records(n: int = 1) -> dict[str, Any]:
    return {"records": [{"id": f"r{i}", "n": i} for i in range(n)]}


async def test_probes_are_open_and_reads_too_by_default(guarded: Guarded) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, _ = await call(guarded.url, "GET", path)
        assert status in (200, 503)  # never 401: an orchestrator holds no token
    for method, path, body in (("GET", "/subjects", None), ("GET", "/topics", None),
                               ("GET", f"/topics/{guarded.topic}/metadata", None),
                               ("POST", f"/subjects/{guarded.topic}-value",
                                {"schema": '"string"'}),
                               ("POST", f"/compatibility/subjects/{guarded.topic}-value/"
                                "versions/latest", {"schema": '"string"'})):
        status, _, reply = await call(guarded.url, method, path, json=body)
        assert status not in (401, 403), (path, reply)


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer onepipe_0123456789abcdef_notthesecret", "Token abc",
    "onepipe_0123456789abcdef_bare", "Basic !!!", "Basic " + "eDp5"[:3],
])
async def test_a_write_without_a_valid_token_is_a_401(guarded: Guarded,
                                                     header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    status, reply_headers, body = await call(
        guarded.url, "PUT", "/config", headers=headers, json={"compatibility": "NONE"})
    assert status == 401
    assert reply_headers["WWW-Authenticate"] == 'Bearer realm="onepipe"'
    assert body["error_code"] == 40101 and body["code"] == "unauthorized"
    assert "onepipe tokens add" in body["message"]
    credentials = header.rpartition(" ")[2] if header else ""
    if len(credentials) > 6:
        assert credentials not in body["message"]  # credentials never echoed


async def test_a_wrong_secret_of_a_real_key_id_is_a_401(guarded: Guarded) -> None:
    forged = guarded.admin[:-4] + ("AAAA" if not guarded.admin.endswith("AAAA") else "BBBB")
    status, _, body = await call(guarded.url, "PUT", "/config", headers=bearer(forged),
                                 json={"compatibility": "NONE"})
    assert status == 401 and forged not in body["message"]


async def test_registry_writes_need_an_admin_token(guarded: Guarded) -> None:
    subject = f"{guarded.topic}-value"
    for token in (guarded.publisher, guarded.reader):
        for method, path, body in (
                ("PUT", "/config", {"compatibility": "NONE"}),
                ("PUT", f"/config/{subject}", {"compatibility": "NONE"}),
                ("POST", f"/subjects/{unique('s')}/versions", {"schema": '"string"'}),
                ("PUT", f"/topics/{guarded.topic}/metadata", {"schema": SCHEMA})):
            status, _, reply = await call(guarded.url, method, path, headers=bearer(token),
                                          json=body)
            assert status == 403, (method, path, reply)
            assert reply["error_code"] == 40301 and reply["code"] == "forbidden"
            assert "--admin" in reply["message"]
    status, _, reply = await call(guarded.url, "PUT", f"/config/{subject}",
                                  headers=bearer(guarded.admin),
                                  json={"compatibility": "BACKWARD_TRANSITIVE"})
    assert status == 200, reply
    status, _, reply = await call(guarded.url, "POST", f"/subjects/{unique('s')}/versions",
                                  headers=bearer(guarded.admin), json={"schema": '"string"'})
    assert status == 200 and "id" in reply


async def test_publishing_needs_a_token_whose_patterns_match_the_topic(
        guarded: Guarded) -> None:
    produce = f"/topics/{guarded.topic}/records"
    status, _, reply = await call(guarded.url, "POST", produce, json=records())
    assert status == 401, reply
    status, _, reply = await call(guarded.url, "POST", produce,
                                  headers=bearer(guarded.publisher), json=records(3))
    assert status == 200, reply
    status, _, reply = await call(guarded.url, "POST", f"/topics/{guarded.exact}/records",
                                  headers=bearer(guarded.publisher), json=records())
    assert status == 200, reply  # the exact pattern
    for token, name in ((guarded.publisher, "ci"), (guarded.admin, "admin"),
                        (guarded.reader, "reader")):
        status, _, reply = await call(guarded.url, "POST", f"/topics/{guarded.other}/records",
                                      headers=bearer(token), json=records())
        assert status == 403, reply
        assert f"token {name!r} may not publish to {guarded.other!r}" in reply["message"]
    # A topic that merely contains the exact name is not it.
    status, _, _ = await call(guarded.url, "POST", f"/topics/{guarded.exact}x/records",
                              headers=bearer(guarded.publisher), json=records())
    assert status == 403


async def test_basic_auth_carries_the_token_as_its_password(guarded: Guarded) -> None:
    produce = f"/topics/{guarded.topic}/records"
    status, _, reply = await call(guarded.url, "POST", produce, json=records(),
                                  headers=basic("ci", guarded.publisher))
    assert status == 200, reply
    status, _, _ = await call(guarded.url, "POST", produce, json=records(),
                              headers=basic("ci", guarded.publisher + "x"))
    assert status == 401


@pytest.mark.parametrize("path", [
    "/topics/x/../../config", "/topics/%2E%2E/%2E%2E/config", "//config", "/config/",
    "/topics/authw-a%2F..%2F..%2Fconfig/metadata", "/CONFIG", "/subjects/a/versions/../",
])
async def test_paths_that_look_like_other_routes_never_get_past_the_gate(
        guarded: Guarded, path: str) -> None:
    for token in (None, guarded.publisher):
        headers = bearer(token) if token else {}
        status, _, reply = await call(guarded.url, "PUT", path, headers=headers,
                                      json={"compatibility": "NONE"})
        assert status in (401, 403, 404, 405), (path, status, reply)
    status, _, reply = await call(guarded.url, "GET", "/config")
    assert reply["compatibilityLevel"] != "NONE"


async def test_a_token_removed_by_the_cli_stops_working_within_seconds(
        guarded: Guarded) -> None:
    name = unique("gone")
    token, _ = add_token(guarded.tokens_file, name, [f"{PREFIX}*"], admin=False)
    produce = f"/topics/{guarded.topic}/records"

    async def accepted() -> bool:
        status, _, reply = await call(guarded.url, "POST", produce, headers=bearer(token),
                                      json=records())
        assert status in (200, 401), reply
        return status == 200

    await wait_for(accepted, timeout=5, what="the new token accepted")
    args = _parser().parse_args(["tokens", "rm", name, "--file", str(guarded.tokens_file)])
    assert run_tokens(guarded.runtime.settings, args) == 0
    assert name not in {e.name for e in read_tokens(guarded.tokens_file)}
    await wait_for(lambda: _not(accepted()), timeout=5, what="the removed token refused")


async def _not(condition: Any) -> bool:
    return not await condition


@pytest.fixture
async def variant(guarded: Guarded) -> AsyncIterator[Callable[..., Any]]:
    """Start a web server over the guarded worker's parts with other settings."""
    servers: list[WebServer] = []

    async def start(**changes: Any) -> str:
        settings = guarded.runtime.settings.model_copy(update=changes)
        server = WebServer(dataclasses.replace(guarded.runtime.context, settings=settings))
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        await server.stop()


async def test_reads_need_a_token_when_auth_reads_is_token(
        guarded: Guarded, variant: Callable[..., Any]) -> None:
    url = await variant(auth_reads="token")
    for path in ("/subjects", "/status.json", "/metrics", f"/topics/{guarded.topic}/metadata"):
        status, headers, _ = await call(url, "GET", path)
        assert status == 401 and "WWW-Authenticate" in headers
        status, _, _ = await call(url, "GET", path, headers=bearer(guarded.reader))
        assert status == 200, path
    status, _, _ = await call(url, "POST", f"/subjects/{guarded.topic}-value",
                              json={"schema": '"string"'})
    assert status == 401
    status, _, _ = await call(url, "GET", "/healthz")
    assert status == 200
    # `onepipe status` and `onepipe sinks` send ONEPIPE_TOKEN.
    with pytest.raises(StatusUnavailable, match="set ONEPIPE_TOKEN"):
        await asyncio.to_thread(fetch_document, url, "/status.json", "consumers")
    document = await asyncio.to_thread(fetch_document, url, "/status.json", "consumers",
                                       token=guarded.reader)
    assert "consumers" in document


async def test_a_token_over_its_rate_gets_429_with_retry_after(
        guarded: Guarded, variant: Callable[..., Any]) -> None:
    # 1 request per 1000 s after a burst of 2: the third is refused for ~1000 s, however
    # slow the machine (the bucket's refill is tested on a hand-moved clock).
    url = await variant(rate_limit_per_second=0.001, rate_limit_burst=2)
    path = f"/topics/{guarded.topic}/metadata"
    for _ in range(2):
        status, _, _ = await call(url, "GET", path, headers=bearer(guarded.reader))
        assert status == 200
    status, headers, body = await call(url, "GET", path, headers=bearer(guarded.reader))
    assert status == 429 and body["code"] == "rate_limited" and body["error_code"] == 42901
    assert headers["Retry-After"].isdigit() and 990 <= int(headers["Retry-After"]) <= 1000
    status, _, _ = await call(url, "GET", path, headers=bearer(guarded.publisher))
    assert status == 200  # another token has its own bucket
    status, _, _ = await call(url, "GET", path)
    assert status == 200  # open reads without a token are not any token's requests


async def test_a_tokens_file_that_cannot_be_used_fails_readiness(guarded: Guarded) -> None:
    """The old tokens keep working (never open, never a crash), but a token removed in
    the broken file might still work: the worker says so on /readyz until it is fixed."""
    good = guarded.tokens_file.read_bytes()
    try:
        guarded.tokens_file.write_bytes(b"[" * 5_000 + b"]" * 5_000)  # RecursionError
        status, _, body = await call(guarded.url, "GET", "/readyz")
        assert status == 503 and "tokens" in body["failed"], body
        assert "still work" in body["checks"]["tokens"]["detail"]
        status, _, _ = await call(guarded.url, "PUT", "/config", headers=bearer(guarded.admin),
                                  json={"compatibility": "BACKWARD_TRANSITIVE"})
        assert status == 200  # the tokens read before still apply
    finally:
        guarded.tokens_file.write_bytes(good)
    status, _, body = await call(guarded.url, "GET", "/readyz")
    assert body["checks"]["tokens"]["ok"], body
