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
- a connection the server closes fails the request in flight and leaves the pool; the
  next request opens a new one.

:class:`Pool` is what the phases use: ``await pool.post(path, body)`` returns the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["Pool", "ProtocolError"]


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
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        waiter = self._waiter
        if at < 0 or not head.startswith(b"http/1.1 "):
            self._waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_exception(ProtocolError(f"unreadable answer: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:line_end if line_end >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del buffer[:end + 4 + length]
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = self._loop.create_future()
        self.transport.write(data)
        return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Up to ``size`` keep-alive connections to one ``http://host:port``; a request waits
    for an idle one (as aiohttp's ``TCPConnector(limit=size)``)."""

    def __init__(self, base_url: str, size: int, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"an http://host:port URL, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port
        self._extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._size = size
        self._opened = 0
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all: list[_Connection] = []

    def request_bytes(self, path: str, body: bytes) -> bytes:
        """A POST of ``body`` (JSON) to ``path``, as written on the wire."""
        return (f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                f"Content-Type: application/json\r\n{self._extra}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def send(self, request: bytes) -> int:
        """Write a request built by :meth:`request_bytes`; the answer's status."""
        connection = await self._acquire()
        try:
            status = await connection.request(request)
        except BaseException:
            self._all.remove(connection)
            self._opened -= 1
            connection.close()
            raise
        self._idle.put_nowait(connection)
        return status

    async def _acquire(self) -> _Connection:
        while not self._idle.empty() or self._opened >= self._size:
            connection = await self._idle.get()
            if not connection.closed:
                return connection
            self._all.remove(connection)
            self._opened -= 1
        self._opened += 1
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(loop), self._host, self._port)
        except BaseException:
            self._opened -= 1
            raise
        self._all.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self._all:
            connection.close()
        self._all.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks
