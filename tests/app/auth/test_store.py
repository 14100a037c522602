"""The tokens file and the live store: only hashes on disk, reloads, broken files.

Time is the test's own clock (``Clock``), so "at most once a second" is checked without
sleeping.
"""

from __future__ import annotations

import hashlib
import logging
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onepipe.app.auth import TokenStore, add_token, read_tokens, remove_token
from onepipe.app.auth.token_file import render_tokens
from onepipe.app.auth.tokens import new_token, split_token
from onepipe.schemas.errors import ConfigError

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_file_holds_a_salted_hash_never_the_token(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "tokens.json"  # a missing folder is created
    token, entry = add_token(path, "ci", ["widgets*", "orders"], admin=False, now=NOW)
    text = path.read_text()
    key_id, secret = split_token(token) or ("", "")
    assert token.startswith(f"onepipe_{entry.key_id}_") and len(secret) == 43
    assert secret not in text and token not in text
    assert hashlib.sha256(secret.encode()).hexdigest() not in text  # salted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (read,) = read_tokens(path)
    assert read == entry and read.key_id == key_id
    assert read.publish == ("widgets*", "orders") and not read.admin and read.created == NOW
    # No temporary file left behind by the atomic write.
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]


def test_names_are_unique_and_patterns_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "ci", [], admin=True)
    with pytest.raises(ConfigError, match="exists already"):
        add_token(path, "ci", [], admin=False)
    for name in ("", "a b", "x" * 65, "é"):
        with pytest.raises(ConfigError, match="token name"):
            add_token(path, name, [], admin=False)
    for pattern in ("a*b", "a b", "**", "x" * 250, ""):
        with pytest.raises(ConfigError, match="publish pattern"):
            add_token(path, "p", [pattern], admin=False)
    assert [e.name for e in read_tokens(path)] == ["ci"]
    assert remove_token(path, "nope") is None
    assert remove_token(path, "ci") is not None and read_tokens(path) == []


def test_publish_patterns_match_exact_names_and_prefixes() -> None:
    _, entry = new_token("p", ["orders", "widgets-*"], False, NOW)
    assert entry.may_publish("orders") and not entry.may_publish("orders2")
    assert entry.may_publish("widgets-eu") and entry.may_publish("widgets-")
    assert not entry.may_publish("widgets") and not entry.may_publish("gadgets-eu")
    _, everything = new_token("all", ["*"], False, NOW)
    assert everything.may_publish("anything.at_all")
    _, nothing = new_token("none", [], True, NOW)
    assert not nothing.may_publish("orders")


def test_verify_accepts_the_token_and_nothing_near_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token, entry = add_token(path, "ci", ["*"], admin=False)
    store = TokenStore(path, clock=Clock())
    assert store.verify(token) == entry
    assert store.verify(token) == entry  # the cached path
    key_id, secret = split_token(token) or ("", "")
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (f"onepipe_{key_id}_{wrong_secret}", f"onepipe_{'0' * 16}_{secret}",
                token[:-1], token + "x", "", "onepipe", key_id, secret, "x" * 10_000,
                token.upper(), f"onepipe_{key_id}_"):
        assert store.verify(bad) is None, bad


def test_a_change_is_seen_at_the_next_check_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first, _ = add_token(path, "first", [], admin=False)
    clock = Clock()
    store = TokenStore(path, clock=clock)
    assert store.verify(first) is not None
    second, _ = add_token(path, "second", [], admin=False)
    remove_token(path, "first")
    clock.now += 0.5  # within the second: the file is not looked at
    assert store.verify(first) is not None and store.verify(second) is None
    clock.now += 0.6
    assert store.verify(first) is None  # removed: the cache was dropped too
    assert store.verify(second) is not None


def test_a_broken_file_keeps_the_tokens_read_before(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    token, entry = add_token(path, "ci", [], admin=False)
    clock = Clock()
    store = TokenStore(path, clock=clock)
    caplog.set_level(logging.INFO, logger="onepipe.app.auth.store")
    path.write_text('{"version": 1, "tokens": [{"name": "ci"')  # cut short
    clock.now += 1
    assert store.verify(token) == entry
    clock.now += 1
    assert store.verify(token) == entry
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per version of the file, not once a second
    assert "is not JSON" in errors[0].getMessage() and "keeps the 1 token" in \
        errors[0].getMessage()
    # A well-formed file with a wrong entry names the entry.
    bad = render_tokens([entry]).replace(b'"admin": false', b'"admin": "yes"')
    path.write_bytes(bad)
    clock.now += 1
    assert store.verify(token) == entry
    assert "entry 0 is wrong" in caplog.records[-1].getMessage()
    # Fixed: read again; and a file that goes away leaves no token at all.
    path.write_bytes(render_tokens([entry]))
    clock.now += 1
    assert store.verify(token) == entry
    path.unlink()
    clock.now += 1
    assert store.verify(token) is None and store.tokens == []
    assert token not in caplog.text


def test_a_worker_does_not_start_on_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("[]")
    with pytest.raises(ConfigError, match="not a onepipe tokens file"):
        TokenStore(path)
    assert TokenStore(tmp_path / "missing.json").tokens == []  # no file: no token

