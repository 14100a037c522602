"""ONEPIPE_EVENT_LOOP: which event loop every later ``asyncio`` loop of a process is."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
import uvloop

from onepipe.app.serve import use_event_loop
from onepipe.app.settings import load_settings
from onepipe.schemas.errors import ConfigError


@pytest.fixture(autouse=True)
def policy_kept() -> Iterator[None]:
    """Put back the policy pytest runs with (use_event_loop changes it process-wide)."""
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def _loop_type() -> type[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_is_the_default_and_asyncio_can_be_chosen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEPIPE_EVENT_LOOP", raising=False)
    assert use_event_loop(load_settings()) == "uvloop"
    assert issubclass(_loop_type(), uvloop.Loop)
    monkeypatch.setenv("ONEPIPE_EVENT_LOOP", "asyncio")
    assert use_event_loop(load_settings()) == "asyncio"
    assert not issubclass(_loop_type(), uvloop.Loop)


def test_without_uvloop_the_default_falls_back_and_asking_for_it_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    monkeypatch.delenv("ONEPIPE_EVENT_LOOP", raising=False)
    assert use_event_loop(load_settings()) == "asyncio"
    assert not issubclass(_loop_type(), uvloop.Loop)
    monkeypatch.setenv("ONEPIPE_EVENT_LOOP", "uvloop")
    with pytest.raises(ConfigError, match="ONEPIPE_EVENT_LOOP=asyncio"):
        use_event_loop(load_settings())
