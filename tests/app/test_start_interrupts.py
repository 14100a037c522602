"""Ctrl-C during start-up is never lost: the embedded broker's start
(onepipe.app.embedded) and the steps before Faust's own handlers (onepipe.app.stopping)."""

from __future__ import annotations

import signal
import subprocess
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onepipe.app.embedded import EmbeddedBroker, free_port
from onepipe.app.stopping import interrupts_kept


@pytest.fixture(autouse=True)
def _ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises here as in an interactive ``onepipe dev``: a suite started in the
    background of a non-interactive shell (``nohup ... &``) inherits SIGINT ignored, and
    then no Ctrl-C reaches these steps at all (interrupts_kept leaves an ignored one be)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _blocked_signals(pid: int) -> int:
    """The process's blocked-signal mask, from /proc (bit n-1 is signal n)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigBlk in /proc/{pid}/status")


def test_a_ctrl_c_during_the_broker_start_is_not_lost_and_the_broker_obeys_sigterm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port(), log_path=tmp_path / "tansu.log")
    popen = subprocess.Popen

    def popen_under_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        # The Ctrl-C arrives while the child is being forked. Sent to the main thread: a
        # process-directed signal would go to any other thread a test left running (at
        # the broker's start, `onepipe dev` has no other thread).
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        return popen(*args, **kwargs)

    monkeypatch.setattr("onepipe.app.embedded.subprocess.Popen", popen_under_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):  # delivered once the block ends
            broker.start()
        process = broker._process  # noqa: SLF001 - the child this test is about
        assert process is not None
        stop = 1 << (signal.SIGINT - 1) | 1 << (signal.SIGTERM - 1)
        assert _blocked_signals(process.pid) & stop == 0  # the mask was not inherited
    finally:
        broker.stop()
    assert process.poll() is not None


class _Thing:
    pass


def _interrupt_inside_a_callback(_: object) -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
    for _ in range(1000):  # backward jumps: the interrupt is raised here, and dropped
        pass


# The dropped KeyboardInterrupt ("Exception ignored") is the stimulus, not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_dropped_inside_a_callback_during_start_up_is_raised_after_it() -> None:
    thing = _Thing()
    ref = weakref.ref(thing, _interrupt_inside_a_callback)
    with pytest.raises(KeyboardInterrupt), interrupts_kept():
        del thing  # the weakref callback runs now; Python prints "Exception ignored"
    assert ref() is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
