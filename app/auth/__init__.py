"""API tokens and rights: who may do what through the worker's HTTP API.

Contract:
- Tokens live in the file ONEPIPE_TOKENS_FILE names, written by ``onepipe tokens add|rm``
  (``cli``, ``token_file``): a salted SHA-256 of each token's secret, its name, the topics
  it may publish to (exact names or prefixes ending in ``*``), whether it is admin, when
  it was created. Never the token: it is printed once, when made.
- Every request passes :func:`~onepipe.app.auth.gate.auth_middleware` (``gate``), which
  decides from the matched route (``rights``): ``/healthz`` and ``/readyz`` are always
  open; publishing needs a token matching the topic; registry and catalog writes need
  an admin token; reads need any token when ONEPIPE_AUTH_READS=token. A route missing
  from the table needs an admin token (fail closed). Refusals are 401 (with
  ``WWW-Authenticate: Bearer realm="onepipe"``), 403 or 429 JSON error bodies.
- Per request the cost is one SHA-256 and one dict lookup (``store``); a running worker
  sees a changed file within a second, and a file that does not parse keeps the tokens
  read before (ERROR logged). A missing file means no valid token, never an open API.
- Without a tokens file the API is open (the embedded default), and a worker refuses to
  start on a non-loopback ONEPIPE_WEB_HOST unless ONEPIPE_ALLOW_OPEN_NETWORK=true
  (``exposure``).
- Per token, an optional rate limit (ONEPIPE_RATE_LIMIT_PER_SECOND, ``ratelimit``).
- Tokens are never logged nor echoed in a message, and secrets are compared in
  constant time.
"""

from onepipe.app.auth.exposure import announce, check_exposure, is_loopback
from onepipe.app.auth.gate import GATE, AuthGate, auth_middleware, credential
from onepipe.app.auth.ratelimit import TokenBuckets
from onepipe.app.auth.rights import ROUTE_RIGHTS, Right, right_for
from onepipe.app.auth.store import TokenStore
from onepipe.app.auth.token_file import add_token, read_tokens, remove_token, write_tokens
from onepipe.app.auth.tokens import TokenEntry, new_token

__all__ = [
    "GATE",
    "ROUTE_RIGHTS",
    "AuthGate",
    "Right",
    "TokenBuckets",
    "TokenEntry",
    "TokenStore",
    "add_token",
    "announce",
    "auth_middleware",
    "check_exposure",
    "credential",
    "is_loopback",
    "new_token",
    "read_tokens",
    "remove_token",
    "right_for",
    "write_tokens",
]
