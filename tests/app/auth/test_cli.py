"""``onepipe tokens add|ls|rm``: the token alone on stdout, never a hash in a listing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onepipe.app.auth import read_tokens
from onepipe.app.auth.tokens import split_token

ONEPIPE = str(Path(sys.executable).with_name("onepipe"))


def test_add_prints_the_token_alone_on_stdout_for_a_shell(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONEPIPE_")}
    env["ONEPIPE_TOKENS_FILE"] = str(path)
    # What `TOKEN=$(onepipe tokens add ci --publish 'widgets*')` captures.
    done = subprocess.run(["/bin/sh", "-c", f"TOKEN=$({ONEPIPE} tokens add ci --publish "
                           "'widgets*'); printf '%s' \"$TOKEN\""],
                          env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    token = done.stdout
    assert split_token(token) is not None and "\n" not in token
    assert "token 'ci' added" in done.stderr and "widgets*" in done.stderr
    assert token not in done.stderr
    (entry,) = read_tokens(path)
    assert entry.publish == ("widgets*",) and not entry.admin


def test_ls_and_rm(tmp_path: Path, cli: Callable[..., int],
                   capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("ONEPIPE_TOKENS_FILE", str(path))
    assert cli("tokens", "ls") == 0
    assert capsys.readouterr().out == ""  # nothing yet: the note goes to stderr
    assert cli("tokens", "add", "admin", "--admin") == 0
    admin = capsys.readouterr().out.strip()
    assert cli("tokens", "add", "ci", "--publish", "widgets*", "--publish", "orders") == 0
    ci = capsys.readouterr().out.strip()
    assert cli("tokens", "ls") == 0
    listing = capsys.readouterr().out
    lines = listing.splitlines()
    assert lines[0].split() == ["NAME", "ADMIN", "CREATED", "(UTC)", "PUBLISH"]
    assert lines[1].split()[:2] == ["admin", "yes"] and lines[1].split()[-1] == "-"
    assert lines[2].split()[:2] == ["ci", "no"] and lines[2].split()[-2:] == ["widgets*",
                                                                             "orders"]
    for secret in (admin, ci, *(e.digest.hex() for e in read_tokens(path)),
                   *(e.salt.hex() for e in read_tokens(path))):
        assert secret not in listing
    assert cli("tokens", "rm", "nobody") == 1
    assert "no token named 'nobody'" in capsys.readouterr().err
    assert cli("tokens", "rm", "ci") == 0
    assert [e.name for e in read_tokens(path)] == ["admin"]
    assert cli("tokens", "add", "admin") == 2  # taken
    assert "exists already" in capsys.readouterr().err
    assert cli("tokens", "add", "x", "--publish", "bad pattern") == 2


def test_a_tokens_file_is_required(cli: Callable[..., int], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEPIPE_TOKENS_FILE", raising=False)
    assert cli("tokens", "add", "ci") == 2
    assert "set ONEPIPE_TOKENS_FILE" in capsys.readouterr().err
    assert cli("tokens", "add", "ci", "--file", str(tmp_path / "t.json")) == 0
    assert read_tokens(tmp_path / "t.json")[0].name == "ci"
