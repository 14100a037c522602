"""The tokens file: read, and written atomically by ``onepipe tokens``.

JSON, one entry per token: its name, key id, salt, ``sha256(salt + secret)``, publish
patterns, admin flag and creation time, never the token. Written to a temporary file
beside it (mode 0600) and moved over it with :meth:`Path.replace`, so a worker reading
it sees the old file or the new one, never half of one. Changes hold an ``flock`` on
``<file>.lock``, so two ``onepipe tokens add`` at once both land.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onepipe.app.auth.tokens import KEY_ID_HEX, TokenEntry, check_name, check_pattern, new_token
from onepipe.schemas.errors import ConfigError

FORMAT_VERSION = 1


def read_tokens(path: Path) -> list[TokenEntry]:
    """The file's entries; ``[]`` when it does not exist; ConfigError saying what is
    wrong (and where) when it does not parse."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from exc
    return parse_tokens(raw, path)


def parse_tokens(raw: bytes, path: Path) -> list[TokenEntry]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"tokens file {path} is not JSON ({exc}); restore it from a "
                          "backup, or remove it and add the tokens again") from exc
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION \
            or not isinstance(document.get("tokens"), list):
        raise ConfigError(f"tokens file {path} is not a onepipe tokens file (expected "
                          f'{{"version": {FORMAT_VERSION}, "tokens": [...]}})')
    entries: list[TokenEntry] = []
    names: set[str] = set()
    key_ids: set[str] = set()
    for index, item in enumerate(document["tokens"]):
        try:
            entry = _entry(item)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            detail = exc.message if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"tokens file {path}: entry {index} is wrong: {detail}") from exc
        if entry.name in names or entry.key_id in key_ids:
            raise ConfigError(f"tokens file {path}: entry {index} repeats the name "
                              f"{entry.name!r} or its key id")
        names.add(entry.name)
        key_ids.add(entry.key_id)
        entries.append(entry)
    return entries


def _entry(item: dict[str, Any]) -> TokenEntry:
    key_id = str(item["key_id"])
    salt, digest = bytes.fromhex(item["salt"]), bytes.fromhex(item["sha256"])
    if len(key_id) != KEY_ID_HEX or len(digest) != 32 or not salt:
        raise ValueError("key_id, salt or sha256 has the wrong length")
    if not isinstance(item["admin"], bool) or not isinstance(item["publish"], list):
        raise TypeError("admin must be true/false and publish a list")
    created = datetime.fromisoformat(item["created"])
    return TokenEntry(name=check_name(item["name"]), key_id=key_id, salt=salt, digest=digest,
                      publish=tuple(check_pattern(p) for p in item["publish"]),
                      admin=item["admin"], created=created)


def render_tokens(entries: list[TokenEntry]) -> bytes:
    document = {"version": FORMAT_VERSION, "tokens": [
        {"name": e.name, "key_id": e.key_id, "salt": e.salt.hex(), "sha256": e.digest.hex(),
         "publish": list(e.publish), "admin": e.admin, "created": e.created.isoformat()}
        for e in entries]}
    return json.dumps(document, indent=2).encode() + b"\n"


def write_tokens(path: Path, entries: list[TokenEntry]) -> None:
    """Replace the file atomically; the new file has mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)  # mkstemp creates it 0600, readable by this user only
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(render_tokens(entries))
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def add_token(path: Path, name: str, publish: list[str], admin: bool,
              now: datetime | None = None) -> tuple[str, TokenEntry]:
    """Create a token named ``name``; return it (shown once) and its entry."""
    token, entry = new_token(name, publish, admin, now or datetime.now(UTC))
    with _locked(path):
        entries = read_tokens(path)
        if any(e.name == entry.name for e in entries):
            raise ConfigError(f"a token named {name!r} exists already in {path}; pick another "
                              f"name, or `onepipe tokens rm {name}` first")
        write_tokens(path, [*entries, entry])
    return token, entry


def remove_token(path: Path, name: str) -> TokenEntry | None:
    """Remove the token named ``name`` and return its entry; None if there is none."""
    with _locked(path):
        entries = read_tokens(path)
        removed = next((e for e in entries if e.name == name), None)
        if removed is not None:
            write_tokens(path, [e for e in entries if e is not removed])
    return removed
