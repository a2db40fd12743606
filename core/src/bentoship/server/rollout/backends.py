"""The endpoint's view of the rollout (``endpoint.proxy.Backends``): which replica a request
goes to, whether it needs a token, and the request book (counts per revision and replica)."""

from __future__ import annotations

from collections.abc import Callable

from ..endpoint.balancing import replica_of
from ..endpoint.interface import Role, Scope, Upstream
from .context import RolloutContext
from .phases import Health, Lifecycle
from .runtime import DeploymentRuntime

__all__ = ["BACKEND_WAIT_SECONDS", "EndpointBackends"]

BACKEND_WAIT_SECONDS = 60.0
"""The longest a request waits for the serving revision to have a ready replica."""


class EndpointBackends:
    def __init__(self, ctx: RolloutContext, wake: Callable[[DeploymentRuntime], None]) -> None:
        self.ctx = ctx
        self.wake = wake
        self.token = ctx.settings.token
        """The control plane's own token, which the endpoint accepts beside the revision's."""
        self._requires_auth: dict[tuple[str, Role], tuple[int, bool]] = {}

    def requires_auth(self, deployment: str, role: Role) -> bool:
        """Read from the store once per change of the store, not once per request."""
        store = self.ctx.store
        changes = store.changes
        known = self._requires_auth.get((deployment, role))
        if known is not None and known[0] == changes:
            return known[1]
        dep = store.get_deployment(deployment)
        uid = (
            None
            if dep is None
            else (dep.target_revision if role is Role.CANDIDATE else dep.serving_revision)
        )
        rev = store.get_revision(uid) if uid else None
        required = bool(rev and rev.config.get("access_authorization"))
        self._requires_auth[(deployment, role)] = (changes, required)
        return required

    def record_request(self, deployment: str) -> None:
        self.ctx.runtime(deployment).last_request = self.ctx.clock.monotonic()

    def record_start(self, revision: str) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.started()
        if self.ctx.settings.metrics:
            self.ctx.traffic.started(str(revision))

    def record_abandoned(self, revision: str) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.finished(answered=False)
        if self.ctx.settings.metrics:
            self.ctx.traffic.abandoned(str(revision))

    def record_response(self, deployment: str, revision: str, status: int, seconds: float) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.finished(answered=True)
        if self.ctx.settings.metrics:
            self.ctx.traffic.record(str(revision), status, seconds, started=True)

    def backend(self, deployment: str, role: Role, scope: Scope) -> Upstream | None:
        """A ready replica (the one with the fewest outstanding requests) of the revision that
        the role and the canary split choose; None while there is none."""
        rt = self.ctx.runtime(deployment)
        if role is Role.CANDIDATE:
            return rt.candidate.choose() if rt.candidate is not None else None
        if rt.candidate is not None and rt.split is not None and rt.split.to_canary(scope):
            chosen = rt.candidate.choose()
            if chosen is not None:
                return chosen
        return rt.serving.choose() if rt.serving is not None else None

    async def wait_backend(self, deployment: str, role: Role) -> Upstream | None:
        """A ready replica of the serving revision (or the candidate), waiting while the serving
        revision has none (waking from zero, a replica restarting)."""
        rt = self.ctx.runtime(deployment)
        if role is Role.CANDIDATE:
            return rt.candidate.choose() if rt.candidate is not None else None
        chosen = rt.serving.choose() if rt.serving is not None else None
        if chosen is not None:
            return chosen
        dep = self.ctx.store.get_deployment(deployment)
        if dep is None or dep.state != Lifecycle.ACTIVE or dep.serving_revision is None:
            return None
        if rt.health is Health.SCALED_TO_ZERO:
            self.wake(rt)
        clock = self.ctx.clock
        deadline = clock.monotonic() + BACKEND_WAIT_SECONDS
        while chosen is None and clock.monotonic() < deadline:
            await rt.changed(1.0)
            chosen = rt.serving.choose() if rt.serving is not None else None
        return chosen
