"""A lean HTTP/1.1 keep-alive client for the produce bench's single-record phases.

Why not aiohttp's client: on this 2-core machine it cost the load generator ~300 µs of CPU
a request (52-62% of a core at ~2,000 req/s, bench/produce.py's phase 3), as much as the
worker spends serving one. The load generator then takes the core the endpoint would use,
and the bench measures the client as much as the server (wrk and h2load are C for this
reason). This one writes a request built once as bytes and reads the answer with two
``find`` calls; what it does not do, it refuses rather than guesses:

- one request in flight per connection (no pipelining), as a browser or aiohttp;
- answers must carry ``Content-Length`` (aiohttp's ``json_response`` does); chunked or
  close-delimited bodies raise :class:`ProtocolError`;
- a connection the server closes (or says it will, ``Connection: close``) fails the
  request in flight, if any, and leaves the pool; the next request opens a new one;
- a request unanswered for :data:`TIMEOUT` seconds raises ``TimeoutError``.

:class:`Pool` is what the phases use: ``await pool.send(pool.request_bytes(path, body))``
returns the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["TIMEOUT", "Pool", "ProtocolError"]

#: Seconds a request may wait for its answer (aiohttp's client default: 300).
TIMEOUT = 60.0


class ProtocolError(Exception):
    """An answer this client does not read (no Content-Length, not HTTP/1.1)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request written, its answer's status awaited."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle(ConnectionError(f"the server closed the connection: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0 or not head.startswith(b"http/1.1 "):
            self.close()
            self._settle(ProtocolError(f"unreadable answer: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:line_end if line_end >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            return
        del buffer[:end + 4 + length]
        if b"\r\nconnection: close" in head:
            self.close()  # answered, then closed by the server: not reused
        self._settle(int(head[9:12]))

    def _settle(self, outcome: int | Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = self._loop.create_future()
        self.transport.write(data)
        async with asyncio.timeout(TIMEOUT):
            return await waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Up to ``size`` keep-alive connections to one ``http://host:port``; a request waits
    for a free one (as aiohttp's ``TCPConnector(limit=size)``)."""

    def __init__(self, base_url: str, size: int, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"an http://host:port URL, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port
        self._extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        #: One slot per request in flight: a failed request frees its own on the way out.
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False

    def request_bytes(self, path: str, body: bytes) -> bytes:
        """A POST of ``body`` (JSON) to ``path``, as written on the wire."""
        return (f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                f"Content-Type: application/json\r\n{self._extra}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> int:
        """Write a request built by :meth:`request_bytes`; the answer's status."""
        async with self._slots:
            connection = await self._connection()
            try:
                status = await connection.request(request)
            except BaseException:
                self._drop(connection)
                raise
            if connection.closed:
                self._drop(connection)
            else:
                self._idle.append(connection)
            return status

    async def _connection(self) -> _Connection:
        if self._closed:
            raise ConnectionError("the pool is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._drop(connection)
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(loop), self._host, self._port)
        self._open.add(connection)
        return connection

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def close(self) -> None:
        self._closed = True
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
