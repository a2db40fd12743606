"""The endpoint's view of the rollout (``endpoint.interface.Backends``): the route a request
takes (a replica, held by a lease), whether it needs a token, and the request book that
observes every request (the counts per revision)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ..endpoint.balancing import Replica
from ..endpoint.interface import (
    Mirrors,
    ObservedRequest,
    Outcome,
    RequestEnd,
    RequestObserver,
    Role,
    Route,
    Scope,
)
from ..endpoint.split import TrafficSplit
from ..endpoint.tracing import Tracing
from ..endpoint.traffic import TrafficBook
from ..store import Store
from .context import RolloutContext
from .launcher import ReplicaHandle
from .phases import Health, Lifecycle
from .replicas import ReplicaSet
from .runtime import DeploymentRuntime
from .shadow import Shadows

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["BACKEND_WAIT_SECONDS", "EndpointBackends", "ReplicaLease", "RequestBook"]

BACKEND_WAIT_SECONDS = 60.0
"""The longest a request waits for the serving revision to have a ready replica."""


class PerChange(Generic[K, V]):
    """Values read from the store, each read again only once the store has changed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[K, tuple[int, V]] = {}

    def get(self, key: K, read: Callable[[], V]) -> V:
        changes = self.store.changes
        known = self._known.get(key)
        if known is not None and known[0] == changes:
            return known[1]
        value = read()
        self._known[key] = (changes, value)
        return value


class EndpointBackends:
    def __init__(
        self, ctx: RolloutContext, wake: Callable[[DeploymentRuntime], None], shadows: Shadows
    ) -> None:
        self.ctx = ctx
        self.wake = wake
        self.shadows = shadows
        self.observer: RequestObserver = RequestBook(ctx)
        self.mirrors: Mirrors = shadows.sender
        self.tracing = Tracing(ctx.settings.trace_sample)
        """Its sink is the control plane's span store, set once the store is open."""
        self.token = ctx.settings.token
        """The control plane's own token, which the endpoint accepts beside the revision's."""
        self._requires_auth: PerChange[tuple[str, Role], bool] = PerChange(ctx.store)
        self._splits: PerChange[str, TrafficSplit | None] = PerChange(ctx.store)

    def requires_auth(self, deployment: str, role: Role) -> bool:
        """Read from the store once per change of the store, not once per request."""

        def read() -> bool:
            store = self.ctx.store
            dep = store.get_deployment(deployment)
            if dep is None:
                return False
            uid = dep.target_revision if role is Role.CANDIDATE else dep.serving_revision
            rev = store.get_revision(uid) if uid else None
            return bool(rev and rev.config.get("access_authorization"))

        return self._requires_auth.get((deployment, role), read)

    def split(self, deployment: str) -> TrafficSplit | None:
        """The held candidate's share of the stable endpoint's traffic, as the store says
        (``canary``); read once per change of the store, not once per request."""

        def read() -> TrafficSplit | None:
            dep = self.ctx.store.get_deployment(deployment)
            return TrafficSplit.from_dict(dep.canary) if dep is not None and dep.canary else None

        return self._splits.get(deployment, read)

    def route(self, deployment: str, role: Role, scope: Scope) -> Route | None:
        """The route to a ready replica (the one with the fewest outstanding requests) of the
        revision that the role and the canary split choose, with the candidate as its mirror
        when the shadow picks it; None while there is none."""
        rt = self.ctx.runtime(deployment)
        if role is Role.CANDIDATE:
            return self._lease(rt.candidate)
        split = self.split(deployment) if rt.candidate is not None else None
        if split is not None and split.to_canary(scope):
            route = self._lease(rt.candidate)
            if route is not None:
                return route
        route = self._lease(rt.serving)
        if route is not None and self.shadows.state(deployment) is not None:
            mirror = self.shadows.mirror_for(rt, scope)
            if mirror is not None:
                return Route(route.primary, route.lease, (mirror,))
        return route

    def _lease(self, pool: ReplicaSet | None) -> Route | None:
        replica = pool.choose() if pool is not None else None
        if replica is None:
            return None
        traffic = self.ctx.traffic if self.ctx.settings.metrics else None
        return Route(replica, ReplicaLease(replica, traffic))

    async def wait_route(self, deployment: str, role: Role) -> Route | None:
        """A route to a ready replica of the serving revision (or the candidate), waiting while
        the serving revision has none (waking from zero, a replica restarting)."""
        rt = self.ctx.runtime(deployment)
        if role is Role.CANDIDATE:
            return self._lease(rt.candidate)
        chosen = self._lease(rt.serving)
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
            chosen = self._lease(rt.serving)
        return chosen


class ReplicaLease:
    """A request's hold on a replica: counted outstanding there and in flight for its revision
    until released."""

    __slots__ = ("released", "replica", "traffic")

    def __init__(self, replica: Replica[ReplicaHandle], traffic: TrafficBook | None) -> None:
        self.replica = replica
        self.traffic = traffic
        self.released = False
        replica.started()
        if traffic is not None:
            traffic.started(replica.revision)

    def release(self, *, answered: bool) -> None:
        if self.released:
            return
        self.released = True
        self.replica.finished(answered=answered)
        if self.traffic is not None:
            self.traffic.ended(self.replica.revision)


class RequestBook:
    """The endpoints' observer: a request's start keeps its deployment awake (scale to zero
    counts idle time from the last one); its end is counted for the revision that answered."""

    def __init__(self, ctx: RolloutContext) -> None:
        self.ctx = ctx

    def request_started(self, request: ObservedRequest) -> None:
        self.ctx.runtime(request.deployment).last_request = self.ctx.clock.monotonic()

    def request_ended(self, request: ObservedRequest, end: RequestEnd) -> None:
        upstream = request.upstream
        if upstream is None or end.outcome is Outcome.CLIENT_GONE or not self.ctx.settings.metrics:
            return
        self.ctx.traffic.record(upstream.revision, end.status, end.seconds)
