"""A worker without tokens never opens the API beyond loopback unless told to."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from onepipe.app.auth import is_loopback
from onepipe.app.runtime import Runtime
from onepipe.app.settings import Settings
from onepipe.app.web.server import WebServer
from onepipe.schemas.errors import ConfigError


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "example.com", "localhost.evil.net"):  # noqa: S104
        assert not is_loopback(host), host


def test_onepipe_worker_refuses_an_open_api_on_the_network(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cli: Callable[..., int]) -> None:
    monkeypatch.setenv("ONEPIPE_WEB_HOST", "0.0.0.0")  # noqa: S104
    monkeypatch.delenv("ONEPIPE_TOKENS_FILE", raising=False)
    monkeypatch.delenv("ONEPIPE_ALLOW_OPEN_NETWORK", raising=False)
    assert cli("worker") == 2  # before anything starts: no broker is needed
    message = capsys.readouterr().err
    for name in ("ONEPIPE_WEB_HOST='0.0.0.0'", "ONEPIPE_TOKENS_FILE", "onepipe tokens add",
                 "ONEPIPE_ALLOW_OPEN_NETWORK=true"):
        assert name in message


async def test_the_web_server_refuses_too_unless_allowed(
        runtime: Runtime, make_settings: Callable[..., Settings], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    def server(**changes: object) -> WebServer:
        settings = runtime.settings.model_copy(update={"web_host": "0.0.0.0", **changes})  # noqa: S104
        return WebServer(dataclasses.replace(runtime.context, settings=settings))

    with pytest.raises(ConfigError, match="ONEPIPE_ALLOW_OPEN_NETWORK"):
        await server().start()
    caplog.set_level(logging.INFO, logger="onepipe")
    for changes in ({"allow_open_network": True}, {"tokens_file": tmp_path / "tokens.json"}):
        started = server(web_port=0, **changes)
        await started.start()
        await started.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("is OPEN" in w and "ONEPIPE_TOKENS_FILE" in w for w in warnings)
    assert any("holds no token yet" in w for w in warnings)


def test_reads_that_need_tokens_need_a_tokens_file(make_settings: Callable[..., Settings]
                                                   ) -> None:
    with pytest.raises(ConfigError, match="ONEPIPE_AUTH_READS=token needs ONEPIPE_TOKENS_FILE"):
        make_settings(auth_reads="token")
