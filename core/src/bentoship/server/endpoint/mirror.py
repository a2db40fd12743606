"""Mirroring: a copy of a live request goes to a mirror (a held candidate) once the caller has
its answer, and what the mirror answers is reported beside what the caller got.

The caller never waits for a mirror. Copies wait in a bounded queue per deployment, and only a
few of them are in flight at once: when the mirror is slow or dead the queue fills, and further
copies are dropped and counted (:class:`DropReason`), never queued without bound. A copy carries
``X-Bentoship-Shadow: 1`` so the service can skip side effects, and loses the control plane's
token and cookies as a live request does.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .heads import forwarded_head
from .upstream import Upstream, UpstreamConnection, UpstreamPool

__all__ = [
    "KEPT_ANSWER_BYTES",
    "MIRRORED_BODY_BYTES",
    "MIRROR_HEADER",
    "Answer",
    "AnswerCopy",
    "DropReason",
    "MirrorObserver",
    "MirrorSender",
    "MirrorTarget",
    "MirroredRequest",
]

MIRROR_HEADER = b"x-bentoship-shadow"
KEPT_ANSWER_BYTES = 64 * 1024
"""An answer's body up to this size is kept whole; a larger one only as its digest."""
MIRRORED_BODY_BYTES = 1024 * 1024
"""A request whose body is larger is not mirrored (dropped as ``too_large``)."""
QUEUE_CAPACITY = 64
"""Copies waiting for a mirror, per deployment, before further ones are dropped."""
CONCURRENCY = 4
"""Copies in flight to a mirror at once, per deployment."""
MIRROR_TIMEOUT = 30.0
"""Seconds a mirror has to answer a copy before it is dropped as ``timeout``."""


class DropReason(StrEnum):
    """Why a mirrored request has no pair."""

    QUEUE_FULL = "queue_full"
    """The mirror's queue was full: it is slower than the traffic."""
    TOO_LARGE = "too_large"
    """The request's body was larger than MIRRORED_BODY_BYTES."""
    UNANSWERED = "unanswered"
    """The live request got no answer from the serving revision (or its caller went away)."""
    NO_ANSWER = "no_answer"
    """The mirror refused the connection or closed it without an answer."""
    TIMEOUT = "timeout"
    """The mirror did not answer within MIRROR_TIMEOUT."""


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class AnswerCopy:
    """An answer's body as it streams by: kept whole up to KEPT_ANSWER_BYTES, digested always."""

    __slots__ = ("chunks", "hasher", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.hasher: hashlib.blake2b | None = None

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.hasher is not None:
            self.hasher.update(chunk)
        elif self.size <= KEPT_ANSWER_BYTES:
            self.chunks.append(chunk)
        else:
            hasher = self.hasher = hashlib.blake2b(digest_size=16)
            for kept in self.chunks:
                hasher.update(kept)
            hasher.update(chunk)
            self.chunks = []

    def answer(self, status: int, seconds: float) -> Answer:
        if self.hasher is not None:
            return Answer(status, seconds, None, self.hasher.hexdigest())
        body = b"".join(self.chunks)
        return Answer(status, seconds, body, _digest(body))


@dataclass(frozen=True, slots=True)
class Answer:
    """One side's answer: its status, seconds, body (None when larger than kept) and digest."""

    status: int
    seconds: float
    body: bytes | None
    digest: str


class MirrorTarget(Upstream, Protocol):
    """An upstream that gets copies of live requests: told of each copy it answered."""

    def answered_copy(self) -> None: ...


@dataclass(frozen=True, slots=True)
class MirroredRequest:
    """A live request that was answered, with its answer, on its way to the mirror."""

    deployment: str
    mirror: MirrorTarget
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    """The body as the caller framed it (chunked, when ``chunked``)."""
    chunked: bool
    time: float
    """When the live request came, in seconds since the epoch."""
    served_by: str
    """The uid of the revision that answered the caller."""
    served: Answer
    traceparent: bytes | None = None
    """The live request's span, when it is traced: the copy joins its trace."""

    @property
    def digest(self) -> str:
        """The request's digest: its method, target and body."""
        return _digest(b"%b %b\n%b" % (self.method, self.target, self.body))


class MirrorObserver(Protocol):
    """Told how every mirrored request ended: answered by the mirror, or dropped."""

    def mirror_answered(self, request: MirroredRequest, answer: Answer) -> None: ...

    def mirror_dropped(self, deployment: str, reason: DropReason) -> None: ...


class MirrorSender:
    """Sends copies to their mirrors: a bounded queue and a few in flight per deployment."""

    def __init__(
        self,
        observer: MirrorObserver,
        bearer: bytes,
        *,
        capacity: int = QUEUE_CAPACITY,
        concurrency: int = CONCURRENCY,
        timeout: float = MIRROR_TIMEOUT,
    ) -> None:
        self.observer = observer
        self.bearer = bearer
        self.capacity = capacity
        self.concurrency = concurrency
        self.timeout = timeout
        self._waiting: dict[str, deque[MirroredRequest]] = {}
        self._in_flight: dict[str, set[_MirrorExchange]] = {}

    def offer(self, request: MirroredRequest) -> None:
        """Send ``request`` to its mirror now, or queue it, or drop it when the queue is full."""
        in_flight = self._in_flight.setdefault(request.deployment, set())
        if len(in_flight) < self.concurrency:
            self._send(request, in_flight)
            return
        waiting = self._waiting.setdefault(request.deployment, deque())
        if len(waiting) < self.capacity:
            waiting.append(request)
        else:
            self.observer.mirror_dropped(request.deployment, DropReason.QUEUE_FULL)

    def drop(self, deployment: str, reason: DropReason) -> None:
        """A request that was to be mirrored cannot be."""
        self.observer.mirror_dropped(deployment, reason)

    def pending(self, deployment: str) -> int:
        """Copies of ``deployment``'s requests waiting or in flight."""
        waiting = self._waiting.get(deployment)
        return len(self._in_flight.get(deployment, ())) + (len(waiting) if waiting else 0)

    def stop(self, deployment: str) -> None:
        """Forget ``deployment``'s waiting copies and abort those in flight (not reported)."""
        self._waiting.pop(deployment, None)
        for exchange in list(self._in_flight.pop(deployment, ())):
            exchange.cancel()

    def _send(self, request: MirroredRequest, in_flight: set[_MirrorExchange]) -> None:
        exchange = _MirrorExchange(self, request)
        in_flight.add(exchange)
        exchange.begin()

    def _ended(self, exchange: _MirrorExchange, answer: Answer | None, reason: DropReason) -> None:
        request = exchange.request
        in_flight = self._in_flight.get(request.deployment)
        if in_flight is None or exchange not in in_flight:
            return
        in_flight.discard(exchange)
        if answer is not None:
            request.mirror.answered_copy()
            self.observer.mirror_answered(request, answer)
        else:
            self.observer.mirror_dropped(request.deployment, reason)
        waiting = self._waiting.get(request.deployment)
        if waiting:
            self._send(waiting.popleft(), in_flight)


class _MirrorExchange:
    """One copy on its way to the mirror, and the mirror's answer as it comes back."""

    def __init__(self, sender: MirrorSender, request: MirroredRequest) -> None:
        self.sender = sender
        self.request = request
        self.pool: UpstreamPool = request.mirror.connections()
        self.connection: UpstreamConnection | None = None
        self.copy = AnswerCopy()
        self.status = 0
        self.started = time.perf_counter()
        self.retried = False
        self.over = False
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None

    def begin(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.sender.timeout, self._timed_out)
        self._go(self.pool.take())

    def _go(self, connection: UpstreamConnection | None) -> None:
        if connection is not None:
            self._write(connection, reused=True)
        else:
            self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        try:
            connection = await self.pool.connect()
        except (OSError, TimeoutError):
            self._end(None, DropReason.NO_ANSWER)
            return
        if self.over:
            self.pool.release(connection, True)
        else:
            self._write(connection, reused=False)

    def _write(self, connection: UpstreamConnection, *, reused: bool) -> None:
        request = self.request
        self.connection = connection
        self.retried = self.retried or not reused
        connection.start(self, head_only=request.method == b"HEAD")
        head = forwarded_head(
            request.method,
            request.target,
            request.headers,
            host=b"%s:%d" % (self.pool.host.encode(), self.pool.port),
            bearer=self.sender.bearer,
            chunked=request.chunked,
            extra=MIRROR_HEADER + b": 1\r\n",
            traceparent=request.traceparent,
        )
        connection.write(head + request.body)

    def _timed_out(self) -> None:
        self._abort()
        self._end(None, DropReason.TIMEOUT)

    def cancel(self) -> None:
        self.over = True
        self._abort()
        if self.timer is not None:
            self.timer.cancel()

    def _abort(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.sink = None
            connection.abort()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()

    def _end(self, answer: Answer | None, reason: DropReason) -> None:
        if self.over:
            return
        self.over = True
        if self.timer is not None:
            self.timer.cancel()
        self.sender._ended(self, answer, reason)

    # the mirror's answer (endpoint.upstream.ResponseSink)

    def response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if status >= 200:
            self.status = status

    def response_body(self, chunk: bytes) -> None:
        self.copy.add(chunk)

    def flush(self) -> None:
        return None

    def response_end(self, reusable: bool) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            self.pool.release(connection, reusable)
        seconds = time.perf_counter() - self.started
        self._end(self.copy.answer(self.status, seconds), DropReason.NO_ANSWER)

    def upstream_lost(self, exc: BaseException) -> None:
        connection, self.connection = self.connection, None
        if self.over:
            return
        if connection is not None and not connection.received and not self.retried:
            self.retried = True
            self._go(None)
            return
        self._end(None, DropReason.NO_ANSWER)

    def pause_request(self) -> None:
        return None

    def resume_request(self) -> None:
        return None
