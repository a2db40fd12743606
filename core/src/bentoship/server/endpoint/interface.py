"""What the endpoint proxy needs from the rollout: the request's role, the upstream that
answers it, and where each request is reported."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from .upstream import UpstreamPool

__all__ = ["Backends", "Role", "Scope", "Upstream"]

Scope = dict[str, Any]


class Role(StrEnum):
    STABLE = "stable"
    """The deployment's URL: the serving revision, and a canary for its share."""
    CANDIDATE = "candidate"
    """The candidate URL: the revision held for verification, before it takes live traffic."""


class Upstream(Protocol):
    """A revision's process as the proxy sees it: which revision, and its pooled connections."""

    @property
    def revision(self) -> str: ...

    @property
    def name(self) -> str: ...

    def connections(self) -> UpstreamPool: ...


class Backends(Protocol):
    """What the proxy needs from the controller."""

    token: str

    def requires_auth(self, deployment: str, role: Role) -> bool: ...

    def record_request(self, deployment: str) -> None: ...

    def record_start(self, revision: str) -> None: ...

    def record_abandoned(self, revision: str) -> None: ...

    def backend(self, deployment: str, role: Role, scope: Scope) -> Upstream | None:
        """The revision for this request, or None when none serves right now."""

    async def wait_backend(self, deployment: str, role: Role) -> Upstream | None:
        """The revision once one serves (a scaled-to-zero deployment wakes), or None."""

    def record_response(
        self, deployment: str, revision: str, status: int, seconds: float
    ) -> None: ...
