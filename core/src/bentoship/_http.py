"""What the sync and async clients share: requests, retry policy and error mapping."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .connection import mask_token
from .errors import (
    AuthenticationError,
    BentoshipError,
    InvalidRequestError,
    NotFoundError,
    ServerUnavailableError,
)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "bentoship"


@dataclass(frozen=True)
class Call:
    """One API request; ``idempotent`` calls may be repeated after a fault."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    idempotent: bool = True
    timeout: float | None = None
    not_found: str = ""


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


def retryable_error(exc: httpx.HTTPError, call: Call) -> bool:
    """Connect failures never reached the server; other faults retry idempotent calls only."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return call.idempotent and isinstance(exc, httpx.TransportError)


def retryable_status(response: httpx.Response, call: Call) -> bool:
    if response.status_code not in RETRY_STATUSES:
        return False
    return call.idempotent or response.status_code == 429


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


def raise_for_response(response: httpx.Response, call: Call, endpoint: str, token: str) -> None:
    status = response.status_code
    if status == 200:
        return
    message = server_message(response)
    if status in (401, 403):
        raise AuthenticationError(
            f"{endpoint} rejected the API token {mask_token(token)} ({message}); "
            "check BENTO_CLOUD_API_KEY or the connection's token"
        )
    if status == 404 or (status == 400 and "record not found" in message):
        raise NotFoundError(call.not_found or message)
    if 400 <= status < 500:
        raise InvalidRequestError(message)
    raise ServerUnavailableError(
        f"{call.method} {call.path} failed with HTTP {status} after retries: {message}"
    )


def unreachable(endpoint: str, exc: httpx.HTTPError) -> BentoshipError:
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ServerUnavailableError(
            f"{endpoint} did not answer in time ({kind}); retry, or raise the client timeout"
        )
    return ServerUnavailableError(
        f"cannot reach {endpoint} ({kind}: {exc}); start `bentoship server` or check the endpoint"
    )


def client_headers(token: str) -> dict[str, str]:
    return {"X-YATAI-API-TOKEN": token, "User-Agent": USER_AGENT}


def deployment_body(name: str | None, bento: str, config: dict[str, Any]) -> dict[str, Any]:
    body = {"bento": bento, **config}
    if name is not None:
        body["name"] = name
    return body
