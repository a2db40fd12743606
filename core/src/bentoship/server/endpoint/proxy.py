"""A deployment's endpoints: reverse proxies on their own loopback ports.

The stable endpoint sends each request to the serving revision, or to the canary for the
canary's share; the candidate endpoint sends every request to the candidate. Every answer
names the revision that gave it in the ``X-Bentoship-Revision`` header, and is counted for
that revision.

The proxy is an asyncio protocol: ``httptools`` parses the request's head, the proxy rewrites
the head and passes the body on as it arrives; the answer comes back the same way through a
kept-alive connection to the revision (``endpoint.upstream``). A request whose revision is up
and has an idle connection is forwarded within the callbacks of the event loop, without a task.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, cast

import httptools

from .heads import HOP_BY_HOP, forwarded_head
from .interface import Backends, Outcome, RequestEnd, Role, Route, Scope, Upstream
from .mirror import MIRRORED_BODY_BYTES, AnswerCopy, DropReason, MirroredRequest
from .tracing import RequestSpan
from .try_tickets import (
    TICKET_SECONDS,
    cookie_name,
    redeem_query,
    ticket_in_cookies,
    valid_ticket,
)
from .upstream import UpstreamConnection, UpstreamPool

REPLAYED_BODY_BYTES = 1024 * 1024
"""A request body up to this size is kept until the answer starts, to resend it once when a
kept-alive connection turns out to be closed."""
HIGH_WATER = 256 * 1024
KEEP_ALIVE_SECONDS = 30.0
REVISION_HEADER = b"x-bentoship-revision"
NO_BODY_STATUSES = frozenset({204, 304})


def _error_answer(status: int, message: str, revision: bytes | None, close: bool) -> bytes:
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

    def __init__(self, proxy: EndpointProxy) -> None:
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
            self.transport.write(_error_answer(status, message, None, close=True))
        self.close()


class EndpointProxy:
    """Forwards every request to the revision its role and the split choose."""

    def __init__(self, deployment: str, backends: Backends, role: Role = Role.STABLE) -> None:
        self.deployment = deployment
        self.backends = backends
        self.role = role
        self.connections: set[ClientConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def _authorized(self, exchange: Exchange) -> bool:
        for key, value in exchange.headers:
            if key == b"authorization":
                return hmac.compare_digest(value, exchange.client.bearer)
        return False

    def _admitted_by_ticket(self, exchange: Exchange) -> bool:
        """A browser with the console's ticket for this deployment (its cookie) goes on; a
        ticket in the link is traded for that cookie (a redirect); anything else gets a 401."""
        token = self.backends.token
        held = ticket_in_cookies(exchange.headers, self.deployment)
        if held is not None and valid_ticket(token, self.deployment, held):
            return True
        offered = redeem_query(exchange.target)
        if offered is not None and valid_ticket(token, self.deployment, offered[0]):
            ticket, target = offered
            cookie = f"{cookie_name(self.deployment)}={ticket}; Path=/; HttpOnly; SameSite=Lax"
            head = b"HTTP/1.1 303 See Other\r\nlocation: %b\r\nset-cookie: %b\r\n" % (
                target,
                f"{cookie}; Max-Age={TICKET_SECONDS}".encode(),
            )
            exchange.keep_alive = exchange.keep_alive and exchange.body_done
            exchange.status = 303
            close = b"" if exchange.keep_alive else b"connection: close\r\n"
            exchange.emit([head + close + b"content-length: 0\r\n\r\n"])
            self._end(exchange, Outcome.REFUSED, answered=False)
            exchange.client.answered(exchange)
            return False
        message = "this deployment requires 'Authorization: Bearer <token>'"
        self.refuse(exchange, 401, message, outcome=Outcome.REFUSED)
        return False

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def start(self, exchange: Exchange) -> None:
        """Refuse the request, or send it on its way to a revision."""
        exchange.begun = True
        backends = self.backends
        backends.observer.request_started(exchange)
        if (
            backends.requires_auth(self.deployment, self.role)
            and not self._authorized(exchange)
            and not self._admitted_by_ticket(exchange)
        ):
            return
        route = backends.route(self.deployment, self.role, exchange.scope())
        if route is None:
            self._spawn(self._wait(exchange))
        else:
            self._dispatch(exchange, route)

    async def _wait(self, exchange: Exchange) -> None:
        route = await self.backends.wait_route(self.deployment, self.role)
        if exchange.finished:
            if route is not None:
                route.lease.release(answered=False)
            return
        if route is None:
            missing = "candidate" if self.role is Role.CANDIDATE else "serving revision"
            message = f"deployment {self.deployment} has no {missing}"
            self.refuse(exchange, 503, message, outcome=Outcome.UNAVAILABLE)
        else:
            self._dispatch(exchange, route)

    def _dispatch(self, exchange: Exchange, route: Route) -> None:
        if exchange.route is None:
            if route.mirrors:
                exchange.keep_for_mirrors()
            always = self.role is Role.CANDIDATE or bool(route.mirrors)
            exchange.span = self.backends.tracing.begin(
                exchange.headers, always=always, revision=route.primary.revision
            )
        exchange.route = route
        exchange.revision_name = route.primary.name.encode()
        exchange.started = time.perf_counter()
        self.connect(exchange)

    def connect(self, exchange: Exchange) -> None:
        """Send the request on an idle connection to its revision, else on a new one."""
        assert exchange.route is not None
        pool = exchange.route.primary.connections()
        connection = pool.take()
        if connection is not None:
            exchange.send(connection, reused=True)
        else:
            self._spawn(self._connect(exchange, pool))

    async def _connect(self, exchange: Exchange, pool: UpstreamPool) -> None:
        try:
            connection = await pool.connect()
        except (OSError, TimeoutError) as exc:
            if not exchange.finished and not self._redispatch(exchange):
                self.failed(exchange, exc)
            return
        if exchange.finished:
            pool.release(connection, True)
        else:
            exchange.send(connection, reused=False)

    def _redispatch(self, exchange: Exchange) -> bool:
        """The request never reached its replica (no connection): send it to another replica
        of the revisions the role serves, once. False when there is no other."""
        failed = exchange.route
        if exchange.redispatched or failed is None:
            return False
        other = self.backends.route(self.deployment, self.role, exchange.scope())
        if other is None:
            return False
        if other.primary.connections() is failed.primary.connections():
            other.lease.release(answered=False)
            return False
        exchange.redispatched = True
        failed.lease.release(answered=False)
        self._dispatch(exchange, other)
        return True

    def failed(self, exchange: Exchange, exc: BaseException) -> None:
        """The revision did not answer: a 502 that names it."""
        assert exchange.route is not None
        name = exchange.route.primary.name
        reason = type(exc).__name__
        message = f"revision {name} of {self.deployment} did not answer: {reason}"
        outcome = Outcome.TIMEOUT if isinstance(exc, TimeoutError) else Outcome.UPSTREAM_ERROR
        self.refuse(exchange, 502, message, exchange.revision_name, outcome=outcome)

    def refuse(
        self,
        exchange: Exchange,
        status: int,
        message: str,
        revision: bytes | None = None,
        *,
        outcome: Outcome,
    ) -> None:
        if not exchange.body_done:
            exchange.keep_alive = False
        exchange.status = status
        exchange.body.clear()
        exchange.emit([_error_answer(status, message, revision, not exchange.keep_alive)])
        self._end(exchange, outcome, answered=False)
        exchange.client.answered(exchange)

    def answered(self, exchange: Exchange) -> None:
        """The answer is complete: report it, then let the caller's connection go on; then
        a copy goes to the route's mirror, if it has one."""
        self._end(exchange, Outcome.ANSWERED, answered=True)
        exchange.client.answered(exchange)
        if exchange.mirror_body is not None:
            copy = exchange.mirrored_copy()
            exchange.mirror_body = exchange.answer_copy = None
            if isinstance(copy, MirroredRequest):
                self.backends.mirrors.offer(copy)
            else:
                self.backends.mirrors.drop(self.deployment, copy)

    def abandon(self, exchange: Exchange, outcome: Outcome = Outcome.CLIENT_GONE) -> None:
        """The caller went away, or the answer broke off: drop the exchange."""
        if exchange.finished:
            return
        if not exchange.begun:
            exchange.finished = True
            return
        upstream, exchange.upstream_connection = exchange.upstream_connection, None
        if upstream is not None:
            upstream.sink = None
            upstream.abort()
        self._end(exchange, outcome, answered=False)

    def _traced(self, exchange: Exchange, end: RequestEnd) -> None:
        span, route = exchange.span, exchange.route
        sink = self.backends.tracing.sink
        if span is None or sink is None:
            return
        path = exchange.target.partition(b"?")[0].decode("latin-1")
        attributes: dict[str, object] = {
            "http.request.method": exchange.method.decode("latin-1"),
            "url.path": path,
            "http.response.status_code": end.status,
            "bentoship.outcome": str(end.outcome),
            "bentoship.role": str(self.role),
            "bentoship.mirrored": bool(route is not None and route.mirrors),
        }
        revision = route.primary.name if route is not None else None
        if route is not None:
            attributes["bentoship.replica"] = getattr(route.primary, "index", None)
        error = end.status >= 500 or end.outcome in (Outcome.UPSTREAM_ERROR, Outcome.TIMEOUT)
        name = f"{attributes['http.request.method']} {path}"
        sink.request_span(
            span, name, self.deployment, revision, attributes, end.seconds * 1000, error
        )

    def _end(self, exchange: Exchange, outcome: Outcome, *, answered: bool) -> None:
        """Release the request's lease and tell the observer how it ended (once)."""
        exchange.finished = True
        exchange.resume_request()
        if exchange.route is not None:
            exchange.route.lease.release(answered=answered)
        seconds = time.perf_counter() - exchange.started
        status = exchange.status if outcome is not Outcome.CLIENT_GONE else 0
        end = RequestEnd(outcome, status, exchange.sent, seconds)
        self.backends.observer.request_ended(exchange, end)
        if exchange.span is not None:
            self._traced(exchange, end)
        if outcome is not Outcome.ANSWERED and exchange.mirror_body is not None:
            exchange.mirror_body = exchange.answer_copy = None
            self.backends.mirrors.drop(self.deployment, DropReason.UNANSWERED)
