"""The endpoint proxy against a real upstream server (aiohttp) on a loopback port."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from bentoship.server.endpoint.interface import (
    ObservedRequest,
    Outcome,
    RequestEnd,
    Role,
    Route,
    Scope,
)
from bentoship.server.endpoint.mirror import MirrorSender
from bentoship.server.endpoint.server import EndpointServer
from bentoship.server.endpoint.tracing import RequestSpan, Tracing
from bentoship.server.endpoint.upstream import UpstreamPool

TOKEN = "the-control-plane-token"
BIG = 8 * 1024 * 1024


@dataclass
class Revision:
    revision: str
    name: str
    port: int
    pool: UpstreamPool | None = None
    copies_answered: int = 0

    def connections(self) -> UpstreamPool:
        if self.pool is None:
            self.pool = UpstreamPool("127.0.0.1", self.port)
        return self.pool

    def answered_copy(self) -> None:
        self.copies_answered += 1


@dataclass
class Hold:
    """A lease on the one revision: released exactly once."""

    book: Book
    revision: str
    released: bool = False

    def release(self, *, answered: bool) -> None:
        assert not self.released, "a lease is released once"
        self.released = True
        self.book.in_flight -= 1
        if not answered:
            self.book.abandoned.append(self.revision)


@dataclass
class Book:
    """A Backends with one revision (or none): it routes to it, and observes every request."""

    serving: Revision | None
    auth: bool = False
    token: str = TOKEN
    responses: list[tuple[str, int]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    in_flight: int = 0
    started: list[ObservedRequest] = field(default_factory=list)
    ended: list[tuple[ObservedRequest, RequestEnd]] = field(default_factory=list)
    pick: Callable[[], Revision | None] | None = None
    tracing: Tracing = field(default_factory=lambda: Tracing(0.0))

    @property
    def observer(self) -> Book:
        return self

    @property
    def mirrors(self) -> MirrorSender:
        raise AssertionError("no route of these tests has mirrors")

    def request_started(self, request: ObservedRequest) -> None:
        self.started.append(request)

    def request_ended(self, request: ObservedRequest, end: RequestEnd) -> None:
        self.ended.append((request, end))
        if request.upstream is not None and end.outcome is not Outcome.CLIENT_GONE:
            self.responses.append((request.upstream.revision, end.status))

    def requires_auth(self, deployment: str, role: Role) -> bool:
        return self.auth

    def route(self, deployment: str, role: Role, scope: Scope) -> Route | None:
        chosen = self.pick() if self.pick is not None else self.serving
        if chosen is None:
            return None
        self.in_flight += 1
        return Route(chosen, Hold(self, chosen.revision))

    async def wait_route(self, deployment: str, role: Role) -> Route | None:
        return self.route(deployment, role, {})

    def outcomes(self) -> list[tuple[str, int]]:
        """How each request ended, with its status; checks one start and one end each."""
        assert [id(r) for r in self.started] == [id(r) for r, _ in self.ended], (
            "exactly one start and one end for each request, in order"
        )
        return [(str(end.outcome), end.status) for _, end in self.ended]


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return web.json_response({"size": len(body), "headers": headers}, status=201)


async def upload(request: web.Request) -> web.Response:
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": digest.hexdigest()})


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"X-Bentoship-Revision": "spoofed"})
    await response.prepare(request)
    for _ in range(BIG // 65536):
        await response.write(b"x" * 65536)
    await response.write_eof()
    return response


async def hang_up(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.abort()
    return web.Response()


Case = Callable[[httpx.AsyncClient, Book], Awaitable[None]]


async def _run(case: Case, auth: bool = False, upstream: bool = True) -> Book:
    app = web.Application(client_max_size=BIG * 2)
    app.add_routes(
        [
            web.post("/echo", echo),
            web.get("/echo", echo),
            web.post("/upload", upload),
            web.get("/stream", stream),
            web.post("/hang-up", hang_up),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if not upstream:
        await runner.cleanup()
    book = Book(Revision("uid-1", "r1", port), auth=auth)
    endpoint = EndpointServer("dep", book)
    proxy_port = await endpoint.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{proxy_port}", timeout=30, trust_env=False
        ) as http:
            await case(http, book)
    finally:
        await endpoint.stop()
        if book.serving is not None and book.serving.pool is not None:
            book.serving.pool.close()
        await runner.cleanup()
    return book


def run(case: Case, **options: bool) -> Book:
    return asyncio.run(_run(case, **options))


def test_answers_name_the_revision_and_are_counted_on_kept_alive_connections() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        for _ in range(20):
            response = await http.post("/echo?x=1", json={"text": "hi"})
            assert response.status_code == 201
            assert response.headers["x-bentoship-revision"] == "r1"
        head = await http.head("/echo")
        assert head.status_code == 201 and head.headers["x-bentoship-revision"] == "r1"
        assert (await http.get("/echo")).status_code == 201
        assert book.serving is not None and book.serving.pool is not None
        assert len(book.serving.pool.open) == 1

    book = run(case)
    assert book.responses == [("uid-1", 201)] * 22
    assert book.in_flight == 0


def test_the_token_and_own_cookies_never_reach_the_service_and_auth_is_enforced() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        assert (await http.post("/echo", json={})).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.post("/echo", json={}, headers=wrong)).status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}", "Cookie": "bentoship_session=s; theirs=1"}
        seen = (await http.post("/echo", json={}, headers=headers)).json()["headers"]
        assert "authorization" not in seen and seen["cookie"] == "theirs=1"
        assert seen["host"] == f"127.0.0.1:{book.serving.port}"  # type: ignore[union-attr]

    book = run(case, auth=True)
    assert book.responses == [("uid-1", 201)]


def test_large_bodies_stream_both_ways() -> None:
    payload = b"y" * BIG

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, BIG, 1 << 20):
            yield payload[start : start + (1 << 20)]

    async def case(http: httpx.AsyncClient, book: Book) -> None:
        sized = (await http.post("/upload", content=payload)).json()
        chunked = (await http.post("/upload", content=chunks())).json()
        expected = {"size": BIG, "sha256": hashlib.sha256(payload).hexdigest()}
        assert sized == expected and chunked == expected
        async with http.stream("GET", "/stream") as response:
            assert response.headers.get_list("x-bentoship-revision") == ["r1"]
            assert response.headers["transfer-encoding"] == "chunked"
            received = sum([len(chunk) async for chunk in response.aiter_raw()])
        assert received == BIG

    run(case)


def test_an_upstream_that_fails_gives_a_502_naming_the_revision() -> None:
    async def hang_up(http: httpx.AsyncClient, book: Book) -> None:
        response = await http.post("/hang-up", json={})
        assert response.status_code == 502
        assert response.headers["x-bentoship-revision"] == "r1"
        assert "revision r1 of dep did not answer" in response.json()["error"]
        assert (await http.post("/echo", json={})).status_code == 201

    assert run(hang_up).responses == [("uid-1", 502), ("uid-1", 201)]

    async def refused(http: httpx.AsyncClient, book: Book) -> None:
        response = await http.post("/echo", json={})
        assert response.status_code == 502 and "ConnectionRefusedError" in response.text

    run(refused, upstream=False)


def test_a_request_no_replica_connection_took_goes_to_another_replica() -> None:
    """A replica that refuses connections (its process died): the request that never reached
    it is answered by another replica, and counted there, not as a failure."""

    async def case(http: httpx.AsyncClient, book: Book) -> None:
        live = book.serving
        assert live is not None
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = Revision("uid-1", "r1", closed.getsockname()[1])
        replicas = iter([dead, live, live])
        book.pick = lambda: next(replicas)
        assert (await http.post("/echo", json={})).status_code == 201
        assert (await http.post("/echo", json={})).status_code == 201
        dead.connections().close()

    book = run(case)
    assert book.responses == [("uid-1", 201), ("uid-1", 201)]
    assert book.abandoned == ["uid-1"] and book.in_flight == 0


def test_no_serving_revision_is_a_503() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        book.serving = None
        response = await http.get("/echo")
        assert response.status_code == 503 and "no serving revision" in response.text

    run(case)


def test_a_kept_alive_connection_the_revision_closed_is_replaced_without_an_error() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        assert (await http.post("/echo", json={})).status_code == 201
        assert book.serving is not None and book.serving.pool is not None
        for connection in list(book.serving.pool.idle):
            assert connection.transport is not None
            connection.transport.pause_reading()
            # the upstream side closes; the pool learns only when it tries the connection
            sock = connection.transport.get_extra_info("socket")
            sock.shutdown(2)
        assert (await http.post("/echo", json={})).status_code == 201

    run(case)


def test_a_caller_that_goes_away_is_counted_as_abandoned() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.base_url.port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        await reader.read(1000)
        writer.close()
        for _ in range(100):
            if book.abandoned:
                break
            await asyncio.sleep(0.05)

    book = run(case)
    assert book.abandoned == ["uid-1"] and book.in_flight == 0


class TimingOut(UpstreamPool):
    """An upstream whose connections never open in time (a fault injected: a real one takes
    the connect deadline to show)."""

    async def connect(self) -> Any:
        raise TimeoutError


def test_the_observer_sees_one_start_and_one_end_of_every_request_however_it_ends() -> None:
    async def case(http: httpx.AsyncClient, book: Book) -> None:
        live = book.serving
        assert live is not None
        assert (await http.post("/echo", json={"text": "hi"})).status_code == 201
        assert (await http.post("/hang-up", json={})).status_code == 502
        reader, writer = await asyncio.open_connection("127.0.0.1", http.base_url.port)
        writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        await writer.drain()
        await reader.read(1000)
        writer.close()
        for _ in range(100):
            if len(book.ended) == 3:
                break
            await asyncio.sleep(0.05)
        slow = Revision("uid-1", "r1", live.port, TimingOut("127.0.0.1", live.port))
        book.pick = lambda: slow
        timed_out = await http.post("/echo", json={})
        assert timed_out.status_code == 502 and "TimeoutError" in timed_out.text
        book.pick = lambda: None
        assert (await http.get("/echo")).status_code == 503
        book.pick = None
        book.auth = True
        assert (await http.get("/echo")).status_code == 401

    book = run(case)
    assert book.outcomes() == [
        ("answered", 201),
        ("upstream_error", 502),
        ("client_gone", 0),
        ("timeout", 502),
        ("unavailable", 503),
        ("refused", 401),
    ]
    answered, _ = book.ended[0]
    assert (answered.deployment, answered.role, answered.method) == ("dep", "stable", b"POST")
    assert answered.upstream is not None and answered.upstream.name == "r1"
    assert not answered.mirrored
    end = book.ended[0][1]
    assert end.bytes_sent > 100 and end.seconds > 0
    # every lease is released once: unanswered for the 502s and the caller gone, and for the
    # route the timed-out request was offered again (the same replica, so not taken)
    assert book.in_flight == 0 and book.abandoned == ["uid-1"] * 4


@dataclass
class Spans:
    """A span sink that keeps what it is given."""

    ended: list[tuple[RequestSpan, str, str | None, dict[str, object], bool]] = field(
        default_factory=list
    )

    def request_span(
        self,
        span: RequestSpan,
        name: str,
        deployment: str,
        revision: str | None,
        attributes: dict[str, object],
        duration_ms: float,
        error: bool,
    ) -> None:
        assert duration_ms >= 0 and deployment == "dep"
        self.ended.append((span, name, revision, attributes, error))


def test_a_traced_request_continues_the_callers_trace_and_passes_the_proxy_span_on() -> None:
    spans = Spans()
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    unsampled = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"

    async def case(http: httpx.AsyncClient, book: Book) -> None:
        book.tracing = Tracing(0.0, spans)
        seen = (await http.post("/echo?x=1", json={}, headers={"traceparent": caller})).json()
        forwarded = seen["headers"]["traceparent"]
        assert forwarded.startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert forwarded.endswith("-01") and "b7ad6b7169203331" not in forwarded
        quiet = await http.post("/echo", json={}, headers={"traceparent": unsampled})
        assert quiet.json()["headers"]["traceparent"] == unsampled, "not sampled: passed as is"
        book.tracing = Tracing(1.0, spans)
        fresh = (await http.post("/echo", json={})).json()["headers"]["traceparent"]
        assert fresh.endswith("-01") and not fresh.startswith("00-0af76519")
        book.serving = None
        assert (await http.post("/echo", json={})).status_code == 503

    run(case)
    assert len(spans.ended) == 2, "the unsampled request and the unrouted one left no span"
    (first, name, revision, attributes, error), (second, *_) = spans.ended
    assert first.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert first.parent_id == "b7ad6b7169203331" and second.parent_id is None
    assert name == "POST /echo" and revision == "r1" and not error
    assert attributes["http.response.status_code"] == 201 and attributes["url.path"] == "/echo"
