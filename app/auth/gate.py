"""The aiohttp middleware that asks every request for its token and rights.

What clients send: ``Authorization: Bearer <token>``, or HTTP Basic with the token as the
password (the user name is not checked; the token's name reads well there).
confluent_kafka's ``SchemaRegistryClient`` sends Basic preemptively, through httpx, with
``{"basic.auth.user.info": "<name>:<token>"}``; or Bearer with
``{"bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": "<token>",
"bearer.auth.logical.cluster": "<any>"}`` (its extra ``target-sr-cluster`` header is
ignored). Java clients: ``basic.auth.credentials.source=USER_INFO`` and
``basic.auth.user.info=<name>:<token>``.

Rules, from the matched route (onepipe.app.auth.rights):
- ``/healthz`` and ``/readyz`` are always open; so is everything when the worker has no
  tokens file.
- Otherwise a request without a valid token is refused with 401 and
  ``WWW-Authenticate: Bearer realm="onepipe"``, except reads when ONEPIPE_AUTH_READS is
  ``open``; a read that carries credentials anyway has them checked (a wrong token is a
  401 there too, so a misconfigured client learns it at once) and counted.
- Publishing needs a token whose patterns match the topic; registry and catalog writes
  need an admin token; else 403 naming the token and what it lacks.
- A token over its rate gets 429 with ``Retry-After``.
Errors are JSON ``{"error_code", "message", "code"}`` bodies; no token ever appears in a
message or a log line.
"""

from __future__ import annotations

import binascii
import logging
import time
from base64 import b64decode
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from onepipe.app.auth.ratelimit import TokenBuckets
from onepipe.app.auth.rights import Right, right_for
from onepipe.app.auth.store import TokenStore
from onepipe.app.auth.tokens import TokenEntry
from onepipe.app.settings import Settings
from onepipe.app.web.http import Handler, error_response
from onepipe.schemas.errors import (
    AuthenticationError,
    ForbiddenError,
    OnepipeError,
    RateLimitedError,
)

log = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="onepipe"'
_HOW = "send Authorization: Bearer <token> (`onepipe tokens add NAME` creates one)"


class AuthGate:
    """Decides one request; ``store`` None: no tokens file, everything is open."""

    def __init__(self, store: TokenStore | None, *, reads_open: bool = True,
                 limiter: TokenBuckets | None = None) -> None:
        self.store = store
        self.reads_open = reads_open
        self.limiter = limiter

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.monotonic
                      ) -> AuthGate:
        """The gate the settings describe; ConfigError if the tokens file does not parse."""
        if settings.tokens_file is None:
            return cls(None)
        limiter = (TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst,
                                clock) if settings.rate_limit_per_second > 0 else None)
        return cls(TokenStore(settings.tokens_file, clock=clock),
                   reads_open=settings.auth_reads == "open", limiter=limiter)

    def check(self, request: web.Request) -> TokenEntry | None:
        """The request's token (None: none needed); raises the 401/403/429 error."""
        store = self.store
        if store is None:
            return None
        resource = request.match_info.route.resource
        if resource is None:
            return None  # no route matched: the handler answers 404/405, nothing runs
        right = right_for(request.method, resource.canonical)
        if right is Right.OPEN:
            return None
        header = request.headers.get("Authorization")
        if header is None and right is Right.READ and self.reads_open:
            return None
        token = self._authenticate(store, header)
        if self.limiter is not None:
            wait = self.limiter.take(token.name)
            if wait:
                raise RateLimitedError(
                    f"token {token.name!r} sent more than {self.limiter.rate:g} request(s) "
                    f"a second (burst {self.limiter.burst}); retry after {wait}s "
                    "(ONEPIPE_RATE_LIMIT_PER_SECOND)", retry_after=wait)
        if right is Right.PUBLISH:
            topic = request.match_info["topic"]
            if not token.may_publish(topic):
                allowed = ", ".join(token.publish) or "no topic"
                raise ForbiddenError(
                    f"token {token.name!r} may not publish to {topic!r} (it may publish "
                    f"to: {allowed}); ask an admin for a token with --publish {topic!r}")
        elif right is Right.ADMIN and not token.admin:
            raise ForbiddenError(
                f"token {token.name!r} may not change the registry or the catalog "
                f"({request.method} {resource.canonical}); that needs a token made with "
                "`onepipe tokens add NAME --admin`")
        return token

    @staticmethod
    def _authenticate(store: TokenStore, header: str | None) -> TokenEntry:
        if header is None:
            raise AuthenticationError(f"this request needs an API token: {_HOW}")
        token = credential(header)
        entry = store.verify(token)
        if entry is None:
            raise AuthenticationError("the API token is not valid (mistyped, or removed "
                                      f"with `onepipe tokens rm`); {_HOW}")
        return entry


def credential(header: str) -> str:
    """The token in an ``Authorization`` header: Bearer, or Basic's password."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        _user, colon, password = decoded.partition(":")
        if colon and password:
            return password
        raise AuthenticationError("the Authorization header's Basic credentials are not "
                                  "base64 of <name>:<token>; " + _HOW)
    # The header is not echoed: a bare token without its scheme would end up in the reply.
    raise AuthenticationError(f"the Authorization header is neither Bearer <token> nor "
                              f"Basic; {_HOW}")


def auth_middleware(gate: AuthGate) -> Middleware:
    """The middleware enforcing ``gate``; its refusals are JSON error bodies."""

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            gate.check(request)
        except (AuthenticationError, ForbiddenError, RateLimitedError) as exc:
            return refusal(request, exc)
        return await handler(request)

    return authorize


def refusal(request: web.Request, exc: OnepipeError) -> web.Response:
    response = error_response(exc)
    if isinstance(exc, AuthenticationError):
        response.headers["WWW-Authenticate"] = CHALLENGE
    if not isinstance(exc, RateLimitedError):  # a client over its rate would flood the log
        log.info("refused %s %s from %s: %s", request.method, request.path, request.remote,
                 exc.message)
    return response


#: The web app's gate, for views that report on it (``/readyz``: is the tokens file in force?).
GATE = web.AppKey("onepipe-auth-gate", AuthGate)
