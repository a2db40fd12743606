"""Kept-alive HTTP/1.1 connections from the endpoint proxy to one revision's process.

An :class:`UpstreamPool` holds a revision's idle connections. An :class:`UpstreamConnection`
carries one exchange at a time: it parses the answer's head with ``httptools`` and hands the
head, then the body as it arrives, to the exchange (a :class:`ResponseSink`), which writes them
to the caller.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol, cast

import httptools

__all__ = ["ResponseSink", "Upstream", "UpstreamConnection", "UpstreamPool"]

CONNECT_TIMEOUT = 5.0


class ResponseSink(Protocol):
    """The exchange an upstream connection answers."""

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """The answer's head; ``status`` below 200 is an interim answer, a final one follows."""

    def response_body(self, chunk: bytes) -> None: ...

    def response_end(self, reusable: bool) -> None: ...

    def flush(self) -> None:
        """What the last read of the upstream socket produced can go to the caller now."""

    def upstream_lost(self, exc: BaseException) -> None: ...

    def pause_request(self) -> None:
        """The upstream's write buffer is full: stop reading the request's body."""

    def resume_request(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One connection to the revision, parsing the answers that come back on it."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.received = False
        """Bytes of the current exchange's answer arrived."""
        self.head_only = False
        """The request was HEAD: its answer ends with its head."""
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.upstream_lost(exc or ConnectionResetError("the revision closed the connection"))

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            self.abort()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.abort()
            if self.sink is not None:
                self.sink.upstream_lost(exc)
                self.sink = None
            return
        if self.sink is not None:
            self.sink.flush()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.pause_request()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.resume_request()

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.sink is not None:
            self.sink.response_head(status, self._reason, self._headers)
        if self.head_only and status >= 200:
            self._end(reusable=False)

    def on_body(self, chunk: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(chunk)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() >= 200 or self.parser.get_status_code() == 101:
            self._end(reusable=self.parser.should_keep_alive())

    def _end(self, reusable: bool) -> None:
        sink, self.sink = self.sink, None
        if sink is None:
            return
        sink.flush()
        sink.response_end(reusable)

    def start(self, sink: ResponseSink, head_only: bool) -> None:
        self.sink = sink
        self.received = False
        self.head_only = head_only

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        """Close at once: the connection is in the middle of an exchange."""
        if self.transport is not None:
            self.transport.abort()

    def paused(self, paused: bool) -> None:
        """Stop or go on reading the answer (the caller's write buffer is full, or not)."""
        if self.transport is None or self.transport.is_closing():
            return
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class UpstreamPool:
    """A revision's connections, reused most recent first, opened when none is idle."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.idle: list[UpstreamConnection] = []
        self.open: set[UpstreamConnection] = set()
        self.closed = False

    def take(self) -> UpstreamConnection | None:
        """The most recently used idle connection, if any."""
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
        return None

    async def connect(self) -> UpstreamConnection:
        """A new connection (none is idle)."""
        if self.closed:
            raise ConnectionRefusedError("the revision is stopping")
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: UpstreamConnection(self),
                self.host,
                self.port,
                ssl=self.ssl_context,
                server_hostname=self.host if self.ssl_context else None,
            ),
            CONNECT_TIMEOUT,
        )
        self.open.add(connection)
        return connection

    def release(self, connection: UpstreamConnection, reusable: bool) -> None:
        if reusable and not self.closed and connection.usable:
            self.idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def forget(self, connection: UpstreamConnection) -> None:
        self.open.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    def close(self) -> None:
        self.closed = True
        self.idle.clear()
        for connection in list(self.open):
            connection.abort()


class Upstream(Protocol):
    """A revision's process as the proxy sees it: which revision, and its pooled connections."""

    @property
    def revision(self) -> str: ...

    @property
    def name(self) -> str: ...

    def connections(self) -> UpstreamPool: ...
