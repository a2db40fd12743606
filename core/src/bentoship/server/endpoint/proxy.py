"""A deployment's endpoints: reverse proxies on their own loopback ports.

The stable endpoint sends each request to the serving revision, or to the canary for the
canary's share; the candidate endpoint sends every request to the candidate. Every answer
names the revision that gave it in the ``X-Bentoship-Revision`` header, and is counted for
that revision.

The proxy is an asyncio protocol: ``httptools`` parses the request's head, the proxy rewrites
the head and passes the body on as it arrives; the answer comes back the same way through a
kept-alive connection to the revision (``endpoint.upstream``). A request whose revision is up
and has an idle connection is forwarded within the callbacks of the event loop, without a task.
The caller's connection and each request on it are ``endpoint.exchange``'s; this module admits,
routes and ends the requests.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Coroutine
from typing import Any

from .exchange import ClientConnection, Exchange, error_answer
from .interface import Backends, Outcome, RequestEnd, Role, Route
from .mirror import DropReason, MirroredRequest
from .try_tickets import holds_ticket, ticket_redirect
from .upstream import UpstreamPool

__all__ = ["EndpointProxy"]


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
        if holds_ticket(token, self.deployment, exchange.headers):
            return True
        head = ticket_redirect(token, self.deployment, exchange.target)
        if head is not None:
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
        exchange.emit([error_answer(status, message, revision, not exchange.keep_alive)])
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
