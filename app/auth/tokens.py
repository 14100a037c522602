"""One API token: its format, how its secret is kept, and what it may do.

A token reads ``onepipe_<key id>_<secret>``: the key id (16 hex digits, random, stored in
clear) selects the token's entry in one dict lookup, and the secret (32 random bytes,
base64url) is checked against ``sha256(salt + secret)`` with :func:`hmac.compare_digest`.
A fast hash is right here: the secret is 256 random bits, so there is nothing to guess
that a slow KDF would protect, and a KDF's milliseconds would be paid on every request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from onepipe.schemas.errors import ConfigError

PREFIX = "onepipe"
KEY_ID_HEX = 16
SECRET_BYTES = 32
SALT_BYTES = 16
#: The longest string worth hashing: a real token is 68 characters.
MAX_TOKEN_CHARS = 256

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: A Kafka topic name (its charset and 249 characters), or a prefix of one ending in
#: ``*`` (``*`` alone: every topic).
PATTERN = re.compile(r"[A-Za-z0-9._-]{1,249}|[A-Za-z0-9._-]{0,248}\*")
_KEY_ID = re.compile(rf"[0-9a-f]{{{KEY_ID_HEX}}}")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """What the tokens file holds for one token: never the token itself."""

    #: Unique name, shown in 403 messages and ``onepipe tokens ls``.
    name: str
    #: The token's public part; selects this entry.
    key_id: str
    #: Random bytes hashed before the secret.
    salt: bytes
    #: ``sha256(salt + secret)``.
    digest: bytes
    #: Topics it may publish to: exact names, or prefixes ending in ``*``.
    publish: tuple[str, ...]
    #: Whether it may change the registry (register, delete, config, mode, catalog).
    admin: bool
    #: When ``onepipe tokens add`` made it (UTC).
    created: datetime

    def may_publish(self, topic: str) -> bool:
        return any(topic.startswith(p[:-1]) if p.endswith("*") else topic == p
                   for p in self.publish)


def new_token(name: str, publish: Iterable[str], admin: bool, created: datetime
              ) -> tuple[str, TokenEntry]:
    """A fresh token (returned once, to print) and the entry that verifies it."""
    name = check_name(name)
    patterns = tuple(dict.fromkeys(check_pattern(p) for p in publish))
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    entry = TokenEntry(name=name, key_id=key_id, salt=salt, digest=secret_digest(salt, secret),
                       publish=patterns, admin=admin, created=created)
    return f"{PREFIX}_{key_id}_{secret}", entry


def split_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token; None for anything else."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")  # the secret may hold "_" itself
    if prefix != PREFIX or not secret or not _KEY_ID.fullmatch(key_id):
        return None
    return key_id, secret


def secret_digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode("utf-8", "surrogateescape")).digest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ConfigError(f"token name {name!r} is not allowed: use 1 to 64 letters, digits, "
                          "'.', '_' or '-'")
    return name


def check_pattern(pattern: str) -> str:
    if not PATTERN.fullmatch(pattern):
        raise ConfigError(
            f"publish pattern {pattern!r} is not a topic name or a prefix ending in '*': "
            "topic names hold letters, digits, '.', '_' and '-' (249 at most), e.g. "
            "'widgets' or 'widgets*'")
    return pattern
