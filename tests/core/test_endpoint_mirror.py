"""Mirroring in the endpoint proxy, against real upstream servers (aiohttp) on loopback ports:
the caller gets the serving answer without waiting for the mirror, the mirror gets a marked
copy without the control plane's token, and a slow, dead or overloaded mirror only drops
copies, each counted by reason."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from bentoship.server.endpoint.interface import (
    ObservedRequest,
    RequestEnd,
    Role,
    Route,
    Scope,
)
from bentoship.server.endpoint.mirror import (
    KEPT_ANSWER_BYTES,
    Answer,
    AnswerCopy,
    DropReason,
    MirroredRequest,
    MirrorSender,
)
from bentoship.server.endpoint.server import EndpointServer
from bentoship.server.endpoint.tracing import Tracing

from .test_endpoint_proxy import BIG, TOKEN, Revision, echo, stream

Pair = tuple[MirroredRequest, Answer]


@dataclass
class Lease:
    def release(self, *, answered: bool) -> None:
        return None


@dataclass
class Mirrored:
    """Backends whose every request goes to ``serving`` with ``mirror`` as its mirror."""

    serving: Revision
    mirror: Revision
    token: str = TOKEN
    pairs: list[Pair] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    sender: MirrorSender | None = None
    tracing: Tracing = field(default_factory=lambda: Tracing(0.0))

    @property
    def observer(self) -> Mirrored:
        return self

    @property
    def mirrors(self) -> MirrorSender:
        assert self.sender is not None
        return self.sender

    def request_started(self, request: ObservedRequest) -> None:
        return None

    def request_ended(self, request: ObservedRequest, end: RequestEnd) -> None:
        return None

    def requires_auth(self, deployment: str, role: Role) -> bool:
        return False

    def route(self, deployment: str, role: Role, scope: Scope) -> Route | None:
        return Route(self.serving, Lease(), (self.mirror,))

    async def wait_route(self, deployment: str, role: Role) -> Route | None:
        return self.route(deployment, role, {})

    def mirror_answered(self, request: MirroredRequest, answer: Answer) -> None:
        self.pairs.append((request, answer))

    def mirror_dropped(self, deployment: str, reason: DropReason) -> None:
        self.dropped[str(reason)] += 1

    async def settled(self, expected: int, seconds: float = 10.0) -> None:
        """Wait until ``expected`` copies were answered or dropped."""
        for _ in range(int(seconds / 0.01)):
            if len(self.pairs) + sum(self.dropped.values()) >= expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{self.pairs} {self.dropped}")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1)
    return web.json_response({"late": True})


async def server(*routes: web.RouteDef) -> tuple[web.AppRunner, int]:
    app = web.Application(client_max_size=BIG * 2)
    app.add_routes(list(routes))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


Case = Callable[[httpx.AsyncClient, Mirrored], Awaitable[None]]


def run(case: Case, mirror: str = "echo", **sender: float) -> Mirrored:
    async def scenario() -> Mirrored:
        serving, serving_port = await server(web.post("/echo", echo), web.get("/stream", stream))
        handler = {"echo": echo, "slow": slow, "dead": echo}[mirror]
        copy, mirror_port = await server(web.post("/echo", handler), web.get("/stream", stream))
        if mirror == "dead":
            await copy.cleanup()
        book = Mirrored(Revision("uid-1", "r1", serving_port), Revision("uid-2", "r2", mirror_port))
        book.sender = MirrorSender(book, f"Bearer {TOKEN}".encode(), **sender)  # type: ignore[arg-type]
        endpoint = EndpointServer("dep", book)
        port = await endpoint.start("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
            ) as http:
                await case(http, book)
        finally:
            book.mirrors.stop("dep")
            await endpoint.stop()
            for revision in (book.serving, book.mirror):
                if revision.pool is not None:
                    revision.pool.close()
            await serving.cleanup()
            await copy.cleanup()
        return book

    return asyncio.run(scenario())


def test_a_copy_reaches_the_mirror_marked_and_without_the_token_and_both_answers_are_kept() -> None:
    async def case(http: httpx.AsyncClient, book: Mirrored) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Cookie": "bentoship_session=s; theirs=1"}
        live = await http.post("/echo?q=1", json={"x": 1}, headers=headers)
        assert live.status_code == 201 and live.headers["x-bentoship-revision"] == "r1"
        assert "x-bentoship-shadow" not in live.json()["headers"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"x": '
            yield b"2}"

        chunked = await http.post("/echo", content=chunks())
        assert chunked.status_code == 201
        await book.settled(2)
        assert live.json() == json.loads(book.pairs[0][0].served.body or b"")

    book = run(case)
    assert not book.dropped
    assert (book.mirror.copies_answered, book.serving.copies_answered) == (2, 0)
    (first, answer), (second, chunked_answer) = book.pairs
    assert first.target == b"/echo?q=1" and first.served_by == "uid-1"
    assert first.served.status == answer.status == 201
    seen = json.loads(answer.body or b"")["headers"]
    assert seen["x-bentoship-shadow"] == "1"
    assert "authorization" not in seen and seen["cookie"] == "theirs=1"
    assert first.digest != second.digest and len(first.digest) == 32
    assert json.loads(chunked_answer.body or b"")["size"] == len(b'{"x": 2}')
    assert (
        chunked_answer.digest
        == hashlib.blake2b(chunked_answer.body or b"", digest_size=16).hexdigest()
    )


def test_a_slow_mirror_only_drops_copies_and_callers_never_wait_for_it() -> None:
    async def case(http: httpx.AsyncClient, book: Mirrored) -> None:
        answers = [await http.post("/echo", json={"n": n}) for n in range(10)]
        assert [a.status_code for a in answers] == [201] * 10
        assert book.pairs == [], "the callers were answered before any mirror answered"
        assert book.dropped["queue_full"] == 10 - 1 - 2
        await book.settled(10, seconds=3)

    book = run(case, mirror="slow", capacity=2, concurrency=1, timeout=0.2)
    assert book.pairs == []
    assert book.dropped == Counter({"queue_full": 7, "timeout": 3})


def test_a_dead_mirror_drops_copies_as_no_answer_and_live_answers_go_on() -> None:
    async def case(http: httpx.AsyncClient, book: Mirrored) -> None:
        for n in range(3):
            assert (await http.post("/echo", json={"n": n})).status_code == 201
        await book.settled(3)

    book = run(case, mirror="dead")
    assert book.pairs == [] and book.dropped == Counter({"no_answer": 3})
    assert book.mirror.copies_answered == 0


def test_large_answers_are_kept_as_digests_and_large_requests_are_not_mirrored() -> None:
    async def case(http: httpx.AsyncClient, book: Mirrored) -> None:
        assert len((await http.get("/stream")).content) == BIG
        assert (await http.post("/echo", content=b"x" * (2 * 1024 * 1024))).status_code == 201
        await book.settled(2)

    book = run(case)
    [(request, answer)] = book.pairs
    whole = hashlib.blake2b(b"x" * BIG, digest_size=16).hexdigest()
    assert request.served.body is None and request.served.digest == whole
    assert answer.body is None and answer.digest == whole
    assert book.dropped == Counter({"too_large": 1})


def test_an_answer_copy_keeps_the_body_up_to_the_limit_then_only_its_digest() -> None:
    kept = AnswerCopy()
    kept.add(b"a" * KEPT_ANSWER_BYTES)
    assert kept.answer(200, 0.1).body == b"a" * KEPT_ANSWER_BYTES
    over = AnswerCopy()
    over.add(b"a" * KEPT_ANSWER_BYTES)
    over.add(b"b")
    answer = over.answer(200, 0.1)
    expected = hashlib.blake2b(b"a" * KEPT_ANSWER_BYTES + b"b", digest_size=16).hexdigest()
    assert answer.body is None and answer.digest == expected
