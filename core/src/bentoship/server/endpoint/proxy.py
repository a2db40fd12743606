"""A deployment's endpoints: reverse proxies on their own loopback ports.

The stable endpoint sends each request to the serving revision, or to the canary for the
canary's share; the candidate endpoint sends every request to the candidate. Every answer
names the revision that gave it in the ``X-Bentoship-Revision`` header, and is counted for
that revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
import uvicorn

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}
BUFFERED_BODY_BYTES = 1024 * 1024
REVISION_HEADER = b"x-bentoship-revision"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Role(StrEnum):
    STABLE = "stable"
    """The deployment's URL: the serving revision, and a canary for its share."""
    CANDIDATE = "candidate"
    """The candidate URL: the revision held for verification, before it takes live traffic."""


class Upstream(Protocol):
    """A revision's process as the proxy sees it: which revision, where, pooled connections."""

    @property
    def revision(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def url(self) -> str: ...

    def session(self) -> aiohttp.ClientSession: ...


class Backends(Protocol):
    """What the proxy needs from the controller."""

    token: str

    def requires_auth(self, deployment: str, role: Role) -> bool: ...

    def record_request(self, deployment: str) -> None: ...

    def record_start(self, revision: str) -> None: ...

    def record_abandoned(self, revision: str) -> None: ...

    async def backend(self, deployment: str, role: Role, scope: Scope) -> Upstream | None: ...

    def record_response(
        self, deployment: str, revision: str, status: int, seconds: float
    ) -> None: ...


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the control plane."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _respond(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = ('{"error": "' + message.replace('"', "'") + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


OWN_COOKIE_PREFIX = b"bentoship_"


def _without_own_cookies(header: bytes) -> bytes:
    """A ``Cookie`` header without the control plane's own cookies (``bentoship_*``)."""
    parts = [part.strip() for part in header.split(b";")]
    return b"; ".join(p for p in parts if p and not p.startswith(OWN_COOKIE_PREFIX))


class EndpointProxy:
    """ASGI app that forwards every request to the revision its role and the split choose."""

    def __init__(self, deployment: str, backends: Backends, role: Role = Role.STABLE) -> None:
        self.deployment = deployment
        self.backends = backends
        self.role = role

    def _forwarded(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The request's headers for the service: never the control plane's API token, never
        a bentoship session cookie, no hop-by-hop header."""
        token = f"Bearer {self.backends.token}".encode()
        kept: list[tuple[bytes, bytes]] = []
        for key, value in headers:
            if key in NOT_FORWARDED:
                continue
            if key == b"authorization" and hmac.compare_digest(value.strip(), token):
                continue
            if key == b"cookie":
                value = _without_own_cookies(value)
                if not value:
                    continue
            kept.append((key, value))
        return kept

    def _authorized(self, scope: Scope) -> bool:
        expected = f"Bearer {self.backends.token}".encode()
        for key, value in scope["headers"]:
            if key == b"authorization":
                return hmac.compare_digest(value, expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if self.backends.requires_auth(self.deployment, self.role) and not self._authorized(scope):
            await _respond(send, 401, "this deployment requires 'Authorization: Bearer <token>'")
            return
        self.backends.record_request(self.deployment)
        backend = await self.backends.backend(self.deployment, self.role, scope)
        if backend is None:
            missing = "candidate" if self.role is Role.CANDIDATE else "serving revision"
            await _respond(send, 503, f"deployment {self.deployment} has no {missing}")
            return
        started = time.perf_counter()
        self.backends.record_start(backend.revision)
        try:
            status = await self._forward(scope, receive, send, backend)
        except BaseException:
            self.backends.record_abandoned(backend.revision)
            raise
        self.backends.record_response(
            self.deployment, backend.revision, status, time.perf_counter() - started
        )

    async def _forward(self, scope: Scope, receive: Receive, send: Send, backend: Upstream) -> int:
        """Forward the request; return the status the client got."""

        async def rest(first: bytes) -> Any:
            yield first
            while True:
                message = await receive()
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    break

        headers = self._forwarded(scope["headers"])
        message = await receive()
        content: bytes | Any = message.get("body", b"")
        while message.get("more_body", False) and len(content) < BUFFERED_BODY_BYTES:
            message = await receive()
            content += message.get("body", b"")
        if message.get("more_body", False):
            content = rest(content)
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = b"%s?%s" % (path, query) if query else path
        url = f"{backend.url}{target.decode('latin-1')}"
        session = backend.session()
        try:
            response = await session.request(
                scope["method"],
                url,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=content,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            await _respond(
                send,
                502,
                f"revision {backend.name} of {self.deployment} did not answer: "
                f"{type(exc).__name__}",
                [(REVISION_HEADER, backend.name.encode())],
            )
            return 502
        try:
            headers = [
                (k, v)
                for k, v in response.raw_headers
                if k.lower() not in HOP_BY_HOP and k.lower() != REVISION_HEADER
            ]
            headers.append((REVISION_HEADER, backend.name.encode()))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.release()
        return response.status


class EndpointServer:
    """One deployment's listening socket and the uvicorn server behind it."""

    def __init__(self, deployment: str, backends: Backends, role: Role = Role.STABLE) -> None:
        self.app = EndpointProxy(deployment, backends, role)
        self.server: EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        try:
            sock = bind_socket(host, port)
        except OSError:
            sock = bind_socket(host, 0)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, timeout_keep_alive=30
        )
        self.server = EmbeddedServer(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError(f"endpoint on port {self.port} stopped while starting")
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            self.server.force_exit = True
            with contextlib.suppress(Exception):
                await self.task
        self.server = None
        self.task = None
