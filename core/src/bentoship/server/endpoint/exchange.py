"""A caller's connection to an endpoint, and each request on it with its answer (an exchange).

``httptools`` parses the request's head; the exchange rewrites it for the revision, passes the
body on as it arrives, and writes the revision's answer back to the caller, framed for the
caller's connection. Where a request goes, and how it ends, the proxy behind the connection
decides (``endpoint.proxy``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from http import HTTPStatus
from typing import Protocol, cast

import httptools

from .heads import HOP_BY_HOP, forwarded_head
from .interface import Backends, Outcome, Role, Route, Scope, Upstream
from .mirror import MIRRORED_BODY_BYTES, AnswerCopy, DropReason, MirroredRequest
from .tracing import RequestSpan
from .upstream import UpstreamConnection

__all__ = ["ClientConnection", "Dispatcher", "Exchange", "error_answer"]

REPLAYED_BODY_BYTES = 1024 * 1024
"""A request body up to this size is kept until the answer starts, to resend it once when a
kept-alive connection turns out to be closed."""
HIGH_WATER = 256 * 1024
KEEP_ALIVE_SECONDS = 30.0
REVISION_HEADER = b"x-bentoship-revision"
NO_BODY_STATUSES = frozenset({204, 304})


def error_answer(status: int, message: str, revision: bytes | None, close: bool) -> bytes:
    body = ('{"error": "' + message.replace('"', "'") + '"}').encode()
    head = b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        HTTPStatus(status).phrase.encode(),
        len(body),
    )
    if revision is not None:
        head += REVISION_HEADER + b": " + revision + b"\r\n"
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


class Dispatcher(Protocol):
    """What a caller's connection and its exchanges need from the proxy behind them."""

    deployment: str
    role: Role
    backends: Backends
    connections: set[ClientConnection]

    def start(self, exchange: Exchange) -> None: ...

    def connect(self, exchange: Exchange) -> None: ...

    def failed(self, exchange: Exchange, exc: BaseException) -> None: ...

    def answered(self, exchange: Exchange) -> None: ...

    def abandon(self, exchange: Exchange, outcome: Outcome = Outcome.CLIENT_GONE) -> None: ...


class Exchange:
    """One request and its answer: from the caller to a revision and back."""

    def __init__(
        self,
        client: ClientConnection,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        http10: bool,
        chunked: bool,
        body_done: bool,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.http10 = http10
        self.chunked = chunked
        self.body: list[bytes] = []
        """Framed body bytes not sent yet, or all of them while they can be replayed."""
        self.body_size = 0
        self.replayable = True
        self.body_done = body_done
        self.begun = False
        self.route: Route | None = None
        self.started = time.perf_counter()
        """When it started; then, once routed, when it was routed (its latency's start)."""
        self.sent = 0
        self.upstream_connection: UpstreamConnection | None = None
        self.reused = False
        self.redispatched = False
        """The request was sent to another replica once, its first one refusing it."""
        self.revision_name = b""
        self.out: list[bytes] = []
        self.answer_chunked = False
        self.answer_until_eof = False
        self.answered = False
        """The answer's head went to the caller."""
        self.finished = False
        self.status = 0
        self.paused_request = False
        self.mirror_body: list[bytes] | None = None
        """The request's body so far, kept for its mirrors (None when it has none)."""
        self.mirror_size = 0
        self.answer_copy: AnswerCopy | None = None
        self.time = 0.0
        self.span: RequestSpan | None = None
        """The request's span, when it is traced."""

    # what observers read (interface.ObservedRequest)

    @property
    def deployment(self) -> str:
        return self.client.proxy.deployment

    @property
    def role(self) -> Role:
        return self.client.proxy.role

    @property
    def upstream(self) -> Upstream | None:
        return self.route.primary if self.route is not None else None

    @property
    def mirrored(self) -> bool:
        return bool(self.route is not None and self.route.mirrors)

    def emit(self, data: list[bytes]) -> None:
        """Write ``data`` to the caller, counted as this answer's bytes."""
        self.sent += sum(map(len, data))
        self.client.write(data)

    # the request, as the caller sends it

    def scope(self) -> Scope:
        path, _, query = self.target.partition(b"?")
        return {
            "type": "http",
            "method": self.method.decode("latin-1"),
            "raw_path": path,
            "path": path.decode("latin-1"),
            "query_string": query,
            "headers": self.headers,
        }

    def request_body(self, chunk: bytes) -> None:
        if self.finished:
            return
        self.forward(b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk)

    def request_end(self) -> None:
        self.body_done = True
        if self.chunked and not self.finished:
            self.forward(b"0\r\n\r\n")

    def forward(self, data: bytes) -> None:
        self.body_size += len(data)
        if self.mirror_body is not None:
            self.mirror_size += len(data)
            if self.mirror_size <= MIRRORED_BODY_BYTES:
                self.mirror_body.append(data)
            else:
                self.mirror_body.clear()
        if self.replayable and self.body_size > REPLAYED_BODY_BYTES:
            self.replayable = False
            if self.upstream_connection is not None:
                self.body.clear()
        if self.upstream_connection is not None:
            self.upstream_connection.write(data)
            if self.replayable:
                self.body.append(data)
        else:
            self.body.append(data)
            if self.body_size > HIGH_WATER:
                self.pause_request()

    def pause_request(self) -> None:
        if not self.paused_request:
            self.paused_request = True
            self.client.reading(False)

    def resume_request(self) -> None:
        if self.paused_request:
            self.paused_request = False
            self.client.reading(True)

    def upstream_head(self, host: bytes) -> bytes:
        return forwarded_head(
            self.method,
            self.target,
            self.headers,
            host=host,
            bearer=self.client.bearer,
            chunked=self.chunked,
            traceparent=self.span.traceparent if self.span is not None else None,
        )

    def keep_for_mirrors(self) -> None:
        """Keep a copy of the body and of the answer, for the route's mirrors."""
        self.time = time.time()
        self.mirror_body = list(self.body)
        self.mirror_size = sum(map(len, self.body))
        self.answer_copy = AnswerCopy()

    def mirrored_copy(self) -> MirroredRequest | DropReason:
        """The answered request, ready for its mirror; or why it cannot be mirrored."""
        route, body = self.route, self.mirror_body
        assert route is not None and body is not None and self.answer_copy is not None
        if self.mirror_size > MIRRORED_BODY_BYTES:
            return DropReason.TOO_LARGE
        if not self.body_done:
            return DropReason.UNANSWERED
        return MirroredRequest(
            deployment=self.deployment,
            mirror=route.mirrors[0],
            method=self.method,
            target=self.target,
            headers=self.headers,
            body=b"".join(body),
            chunked=self.chunked,
            time=self.time,
            served_by=route.primary.revision,
            served=self.answer_copy.answer(self.status, time.perf_counter() - self.started),
            traceparent=self.span.traceparent if self.span is not None else None,
        )

    def send(self, connection: UpstreamConnection, reused: bool) -> None:
        """Send the head and the body so far on ``connection``; the rest follows as it comes."""
        pool = connection.pool
        self.upstream_connection = connection
        self.reused = reused
        connection.start(self, head_only=self.method == b"HEAD")
        head = self.upstream_head(b"%s:%d" % (pool.host.encode(), pool.port))
        connection.write(b"".join([head, *self.body]) if self.body else head)
        if not self.replayable:
            self.body.clear()
        self.resume_request()

    # the answer, as the revision sends it (endpoint.upstream.ResponseSink)

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if status < 200 and status != 101:
            if not self.http10:
                self.out.append(b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason))
            return
        self.status = status
        self.answered = True
        self.body.clear()
        lines = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
        framed = self.method == b"HEAD" or status in NO_BODY_STATUSES
        for key, value in headers:
            lower = key.lower()
            if lower == b"content-length":
                framed = True
            elif lower == b"transfer-encoding":
                if self.method != b"HEAD":
                    self.answer_chunked = True
                    framed = True
                continue
            elif lower in HOP_BY_HOP or lower == REVISION_HEADER:
                continue
            lines += (key, b": ", value, b"\r\n")
        if not framed:
            self.answer_until_eof = True
            self.answer_chunked = not self.http10
            if self.http10:
                self.keep_alive = False
        if self.answer_chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines += (REVISION_HEADER, b": ", self.revision_name, b"\r\n")
        if not self.keep_alive:
            lines.append(b"connection: close\r\n")
        elif self.http10:
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self.out.append(b"".join(lines))

    def response_body(self, chunk: bytes) -> None:
        if self.answer_copy is not None:
            self.answer_copy.add(chunk)
        if self.answer_chunked:
            self.out += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        else:
            self.out.append(chunk)

    def flush(self) -> None:
        if self.out:
            self.emit(self.out)
            self.out = []

    def response_end(self, reusable: bool) -> None:
        if self.answer_chunked:
            self.emit([b"0\r\n\r\n"])
        upstream, self.upstream_connection = self.upstream_connection, None
        if upstream is not None:
            upstream.paused(False)
            upstream.pool.release(upstream, reusable and self.body_done)
        self.client.proxy.answered(self)

    def upstream_lost(self, exc: BaseException) -> None:
        self.upstream_connection = None
        if self.finished:
            return
        if self.answered and self.answer_until_eof:
            self.flush()
            self.response_end(False)
        elif self.answered:
            self.client.proxy.abandon(self, Outcome.UPSTREAM_ERROR)
            self.client.close()
        elif self.reused and self.replayable:
            self.client.proxy.connect(self)
        else:
            self.client.proxy.failed(self, exc)

    def answer_paused(self, paused: bool) -> None:
        if self.upstream_connection is not None:
            self.upstream_connection.paused(paused)


class ClientConnection(asyncio.Protocol):
    """One caller's connection to the endpoint: requests one after the other (kept alive)."""

    def __init__(self, proxy: Dispatcher) -> None:
        self.proxy = proxy
        self.bearer = b"Bearer " + proxy.backends.token.encode()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.length: bytes | None = None
        self.receiving: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.last_active = 0.0
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(HIGH_WATER)
        self.proxy.connections.add(self)
        self.last_active = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.proxy.connections.discard(self)
        for exchange in self.queue:
            self.proxy.abandon(exchange)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(501, "the endpoint does not upgrade connections")
        except httptools.HttpParserError:
            self._refuse(400, "malformed HTTP request")
        if self.queue and not self.queue[0].begun and not self.closing:
            self.proxy.start(self.queue[0])

    def pause_writing(self) -> None:
        if self.queue:
            self.queue[0].answer_paused(True)

    def resume_writing(self) -> None:
        if self.queue:
            self.queue[0].answer_paused(False)

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.chunked = False
        self.length = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif name == b"content-length":
            self.length = value
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        exchange = Exchange(
            self,
            parser.get_method(),
            self.url,
            self.headers,
            parser.should_keep_alive(),
            parser.get_http_version() == "1.0",
            self.chunked,
            not self.chunked and (self.length is None or self.length.strip() == b"0"),
        )
        self.receiving = exchange
        self.queue.append(exchange)

    def on_body(self, chunk: bytes) -> None:
        if self.receiving is not None:
            self.receiving.request_body(chunk)

    def on_message_complete(self) -> None:
        if self.receiving is not None:
            self.receiving.request_end()
            self.receiving = None

    def write(self, data: list[bytes]) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(b"".join(data) if len(data) > 1 else data[0])

    def reading(self, on: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def answered(self, exchange: Exchange) -> None:
        """``exchange``'s answer is complete: close, or go on with the next request."""
        if self.closing:
            return
        self.queue.popleft()
        if not exchange.keep_alive or not exchange.body_done:
            self.close()
        elif self.queue:
            self.proxy.start(self.queue[0])
        else:
            self.last_active = time.monotonic()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        if self.transport is not None and not self.queue:
            self.transport.write(error_answer(status, message, None, close=True))
        self.close()
