"""Whether a worker may start with the API it is about to open, and what it says then.

A worker without ONEPIPE_TOKENS_FILE answers anyone: fine on loopback (``onepipe dev``,
a laptop, a sidecar), dangerous on any other interface, where whoever reaches the port
could set compatibility to NONE, register schemas and publish to every topic. Such a
worker refuses to start unless ONEPIPE_ALLOW_OPEN_NETWORK=true says that is intended.
"""

from __future__ import annotations

import ipaddress
import logging

from onepipe.app.auth.token_file import read_tokens
from onepipe.app.settings import Settings
from onepipe.schemas.errors import ConfigError

log = logging.getLogger("onepipe")

_HOW = ("To require tokens, set ONEPIPE_TOKENS_FILE to a file path (e.g. "
        "/etc/onepipe/tokens.json; every worker reads the same file) and create tokens with "
        "`onepipe tokens add NAME --publish 'TOPIC*'` (publishers) and `onepipe tokens add "
        "NAME --admin` (registry and catalog changes).")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``; every other name or address is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def check_exposure(settings: Settings) -> None:
    """Raise ConfigError when the worker would serve an open API beyond this machine, or
    its tokens file does not parse (a worker does not start on a broken file)."""
    if settings.tokens_file is not None:
        read_tokens(settings.tokens_file)
        return
    if settings.allow_open_network or is_loopback(settings.web_host):
        return
    raise ConfigError(
        f"ONEPIPE_WEB_HOST={settings.web_host!r} would open the HTTP API to the network with "
        "no tokens: anyone who reaches it could change the schema registry and publish to "
        f"every topic. {_HOW} Or set ONEPIPE_WEB_HOST=127.0.0.1, or "
        "ONEPIPE_ALLOW_OPEN_NETWORK=true if an outer layer (a proxy, a network policy) "
        "guards the port.")


def announce(settings: Settings, tokens: int | None) -> None:
    """Log, at start, how the API is guarded; ``tokens``: how many the file holds (None:
    no tokens file)."""
    where = f"{settings.web_host}:{settings.web_port}"
    if tokens is None:
        log.warning(
            "The HTTP API on %s is OPEN: no ONEPIPE_TOKENS_FILE is set, so anyone who can "
            "reach it can change the schema registry (even set compatibility to NONE), "
            "apply catalog entries and publish to every topic. %s", where, _HOW)
    elif tokens == 0:
        log.warning(
            "The tokens file %s holds no token yet: every publish and registry change on "
            "%s is refused until `onepipe tokens add NAME ...` creates one (the worker "
            "reads the file again within a second).", settings.tokens_file, where)
    else:
        log.info("HTTP API tokens: %d in %s; reads %s; rate limit %s", tokens,
                 settings.tokens_file,
                 "open" if settings.auth_reads == "open" else "need a token",
                 f"{settings.rate_limit_per_second:g}/s per token"
                 if settings.rate_limit_per_second else "off")
