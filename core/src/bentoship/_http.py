"""Requests as data, the retry policy, and error mapping: what the sync and async clients share.

A client operation is written once, as a *plan*: a generator that yields the requests
(:class:`Call`) and pauses (:class:`Sleep`) it needs and returns the result. The sync client
runs plans with blocking I/O, the async client with ``await``; neither holds any logic.
"""

from __future__ import annotations

import functools
import random
import ssl
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .connection import Connection, mask_token
from .errors import (
    AuthenticationError,
    BentoshipError,
    InvalidRequestError,
    NotFoundError,
    ResponseLost,
    ServerUnavailableError,
)

__all__ = ["RetryPolicy", "tls_context"]

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "bentoship"
T = TypeVar("T")


@functools.cache
def tls_context(trust_env: bool = False) -> ssl.SSLContext:
    """The TLS context this process's clients share, as httpx makes it for each client:
    certifi's CAs, or with ``trust_env`` ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set. Making
    one reads the whole CA bundle, about 50 ms of CPU that each new client would pay again."""
    return httpx.create_ssl_context(trust_env=trust_env)


@dataclass(frozen=True)
class Call:
    """One API request; ``idempotent`` calls may be repeated after a fault."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    content: bytes | None = None
    """A raw body (sent with ``content_type``) instead of ``json``."""
    content_type: str = "application/octet-stream"
    idempotent: bool = True
    timeout: float | None = None
    not_found: str = ""


@dataclass(frozen=True)
class Sleep:
    """Pause a plan for ``seconds``."""

    seconds: float


Step = Call | Sleep
Plan = Generator[Step, Any, T]
"""A client operation: yields requests and pauses, receives responses, returns its result."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delays(self) -> Iterator[float]:
        for attempt in range(self.attempts - 1):
            yield self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Plan[T]],
    should_retry: Callable[[BentoshipError], bool],
) -> Plan[T]:
    """Run ``attempt`` until it succeeds, its error is final, or the policy's attempts run out."""
    delays = policy.delays()
    while True:
        try:
            return (yield from attempt())
        except BentoshipError as exc:
            delay = next(delays, None) if should_retry(exc) else None
            if delay is None:
                raise
        yield Sleep(delay)


def retry_call(
    policy: RetryPolicy, fn: Callable[[], T], should_retry: Callable[[BentoshipError], bool]
) -> T:
    """Call ``fn`` with :func:`retrying`'s rules, for work that is not an API request."""

    def attempt() -> Plan[T]:
        return fn()
        yield  # pragma: no cover - makes this function a plan

    def no_requests(call: Call) -> Any:
        raise AssertionError(f"retry_call got a request: {call}")

    return run_blocking(retrying(policy, attempt, should_retry), no_requests)


def run_blocking(plan: Plan[T], send: Callable[[Call], Any]) -> T:
    """Drive ``plan`` with blocking calls: ``send`` answers each Call, ``time.sleep`` each Sleep."""
    import time

    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(value)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, error = None, None
        try:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
            else:
                value = send(step)
        except Exception as exc:
            error = exc


def retryable(exc: BentoshipError, call: Call) -> bool:
    """Connect failures never reached the server; other faults retry idempotent calls only."""
    if isinstance(exc, ResponseLost):
        return False
    if not isinstance(exc, ServerUnavailableError):
        return False
    if exc.status_code is not None:
        return exc.status_code in RETRY_STATUSES and (call.idempotent or exc.status_code == 429)
    return True


def server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return " ".join(str(body[key]).split())
    text = " ".join(response.text.split())
    return text[:300] or response.reason_phrase


def raise_for_response(response: httpx.Response, call: Call, connection: Connection) -> None:
    status = response.status_code
    if status == 200:
        return
    message = server_message(response)
    if status in (401, 403):
        raise AuthenticationError(
            f"{connection.endpoint} rejected the API token {mask_token(connection.token)} "
            f"({message}); the token came from {connection.source}"
        )
    if status == 404 or (status == 400 and "record not found" in message):
        raise NotFoundError(call.not_found or message)
    if status == 429:
        raise ServerUnavailableError(
            f"{call.method} {call.path} was rate-limited (HTTP 429) after retries: {message}",
            status_code=status,
        )
    if 400 <= status < 500:
        raise InvalidRequestError(message)
    raise ServerUnavailableError(
        f"{call.method} {call.path} failed with HTTP {status} after retries: {message}",
        status_code=status,
    )


def transport_error(endpoint: str, call: Call, exc: httpx.HTTPError) -> ServerUnavailableError:
    """The error for a request that got no answer; ResponseLost when a write may have landed."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        message = f"{endpoint} did not answer in time ({kind}); retry, or raise the client timeout"
    else:
        message = (
            f"cannot reach {endpoint} ({kind}: {exc}); "
            "start `bentoship server` or check the endpoint"
        )
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if never_sent or call.idempotent:
        return ServerUnavailableError(message)
    return ResponseLost(f"{call.method} {call.path}: {message}")


def trace_headers() -> dict[str, str]:
    """The W3C ``traceparent`` of the current OpenTelemetry span (a step's span, say), so the
    API call joins its trace; nothing when no span is current. OpenTelemetry is looked up only
    where it is imported already: a client never imports it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    flags = int(context.trace_flags) & 0xFF
    return {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"}


def client_headers(token: str) -> dict[str, str]:
    return {"X-YATAI-API-TOKEN": token, "User-Agent": USER_AGENT}


def deployment_body(name: str | None, bento: str, config: dict[str, Any]) -> dict[str, Any]:
    body = {"bento": bento, **config}
    if name is not None:
        body["name"] = name
    return body
