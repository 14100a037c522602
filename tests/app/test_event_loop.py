"""ONEPIPE_EVENT_LOOP: the event loop a worker runs on, and the stop signals after it."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from types import FrameType

import pytest
import uvloop

from onepipe.app.serve import event_loop_factory
from onepipe.app.settings import load_settings
from onepipe.app.stopping import signals_restored
from onepipe.schemas.errors import ConfigError


def _made_by(factory: object) -> type[asyncio.AbstractEventLoop]:
    assert callable(factory)
    loop = factory()
    try:
        return type(loop)
    finally:
        loop.close()


def test_uvloop_is_the_default_asyncio_can_be_chosen_and_no_policy_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    policy = asyncio.get_event_loop_policy()
    monkeypatch.delenv("ONEPIPE_EVENT_LOOP", raising=False)
    factory, kind = event_loop_factory(load_settings())
    assert kind == "uvloop" and issubclass(_made_by(factory), uvloop.Loop)
    monkeypatch.setenv("ONEPIPE_EVENT_LOOP", "asyncio")
    factory, kind = event_loop_factory(load_settings())
    assert kind == "asyncio" and not issubclass(_made_by(factory), uvloop.Loop)
    # The choice is the worker's loop only: this process's other loops stay as they were.
    assert asyncio.get_event_loop_policy() is policy


def test_without_uvloop_the_default_falls_back_and_asking_for_it_is_a_config_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    monkeypatch.delenv("ONEPIPE_EVENT_LOOP", raising=False)
    factory, kind = event_loop_factory(load_settings())
    assert kind == "asyncio" and factory is asyncio.new_event_loop
    monkeypatch.setenv("ONEPIPE_EVENT_LOOP", "uvloop")
    with pytest.raises(ConfigError, match="ONEPIPE_EVENT_LOOP=asyncio"):
        event_loop_factory(load_settings())


async def _nothing() -> None:
    """A coroutine that ends at once: enough to run a loop."""


def test_a_closed_worker_loop_leaves_the_stop_signals_as_they_were() -> None:
    """The loop's own handlers and wakeup fd do not outlive it (uvloop's handlers stayed,
    bound to the closed loop, and swallowed a later Ctrl-C or SIGTERM); an ignored signal
    (a background job's SIGINT) stays ignored."""
    def before(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("not called")

    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, before)
    wakeup = signal.set_wakeup_fd(-1)
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        with signals_restored(signal.SIGUSR1, signal.SIGUSR2):
            loop = uvloop.new_event_loop()
            got: list[int] = []
            loop.add_signal_handler(signal.SIGUSR1, got.append, 1)
            loop.add_signal_handler(signal.SIGUSR2, got.append, 2)
            loop.run_until_complete(_nothing())  # the loop runs, its handlers installed
            loop.close()
            signal.set_wakeup_fd(left.fileno())  # as a loop that left its own behind
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGUSR2) is before
        assert signal.set_wakeup_fd(-1) == -1  # the fd before the block, not the loop's
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        signal.set_wakeup_fd(wakeup)
        left.close()
        right.close()
