"""What the endpoint proxy needs from the rollout: a request's route (the upstream that
answers it, its mirrors, and a lease), and the one observer every request is reported to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from .upstream import Upstream

if TYPE_CHECKING:
    from .mirror import DropReason, MirroredRequest, MirrorTarget
    from .tracing import Tracing

__all__ = [
    "Backends",
    "Lease",
    "Mirrors",
    "ObservedRequest",
    "Outcome",
    "RequestEnd",
    "RequestObserver",
    "Role",
    "Route",
    "Scope",
    "Upstream",
]

Scope = dict[str, Any]


class Role(StrEnum):
    STABLE = "stable"
    """The deployment's URL: the serving revision, and a canary for its share."""
    CANDIDATE = "candidate"
    """The candidate URL: the revision held for verification, before it takes live traffic."""


class Lease(Protocol):
    """A request's hold on the upstream it was routed to, released once when it ends."""

    def release(self, *, answered: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: the ``primary`` upstream that answers it, ``mirrors`` that get a
    copy (their answers are not the caller's), and the ``lease`` its routing took."""

    primary: Upstream
    lease: Lease
    mirrors: tuple[MirrorTarget, ...] = ()


class Outcome(StrEnum):
    """How a request ended."""

    ANSWERED = "answered"
    """The upstream's answer reached the caller (whatever its status)."""
    UPSTREAM_ERROR = "upstream_error"
    """The upstream did not answer, or its answer broke off: a 502, or a cut answer."""
    TIMEOUT = "timeout"
    """No connection to the upstream within its deadline (a 502)."""
    CLIENT_GONE = "client_gone"
    """The caller went away before the answer was complete."""
    UNAVAILABLE = "unavailable"
    """No upstream could take it: a 503."""
    REFUSED = "refused"
    """The endpoint refused it before routing it (a 401 without the token it needs)."""


class ObservedRequest(Protocol):
    """A request as observers see it, from its start to its end."""

    @property
    def deployment(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def method(self) -> bytes: ...

    @property
    def target(self) -> bytes: ...

    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...

    @property
    def upstream(self) -> Upstream | None:
        """The upstream it was routed to (the last one, if it was routed again); None before."""

    @property
    def mirrored(self) -> bool:
        """A copy of it went to a mirror."""


@dataclass(frozen=True, slots=True)
class RequestEnd:
    outcome: Outcome
    status: int
    """The status the caller got (0 when it went away before an answer started)."""
    bytes_sent: int
    """Bytes of the answer written to the caller."""
    seconds: float
    """From the request's routing to its end (from its start, if it was never routed)."""


class RequestObserver(Protocol):
    """Told of every request twice: once as it starts, once as it ends, however it ends."""

    def request_started(self, request: ObservedRequest) -> None: ...

    def request_ended(self, request: ObservedRequest, end: RequestEnd) -> None: ...


class Mirrors(Protocol):
    """Where the copies of mirrored requests go (``endpoint.mirror.MirrorSender``)."""

    def offer(self, request: MirroredRequest) -> None: ...

    def drop(self, deployment: str, reason: DropReason) -> None: ...


class Backends(Protocol):
    """What the proxy needs from the rollout."""

    token: str

    @property
    def observer(self) -> RequestObserver: ...

    @property
    def mirrors(self) -> Mirrors:
        """Where copies of the requests a route mirrors go."""

    @property
    def tracing(self) -> Tracing:
        """Which requests are traced, and where their spans go."""

    def requires_auth(self, deployment: str, role: Role) -> bool: ...

    def route(self, deployment: str, role: Role, scope: Scope) -> Route | None:
        """Where this request goes, or None when nothing serves right now."""

    async def wait_route(self, deployment: str, role: Role) -> Route | None:
        """A route once something serves (a scaled-to-zero deployment wakes), or None."""
