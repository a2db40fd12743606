"""What the control plane holds in memory for one deployment while it runs."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..endpoint.server import EndpointServer
from .autoscale import Autoscaler
from .launcher import TimerHandle
from .phases import Health
from .replicas import ReplicaSet

__all__ = ["DeploymentRuntime"]


@dataclass
class DeploymentRuntime:
    """One deployment's processes, endpoint, health and waiters; the store holds the rest."""

    name: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by every command on this deployment, and by a rollout while it changes state."""
    endpoint: EndpointServer | None = None
    candidate_endpoint: EndpointServer | None = None
    processes: dict[str, ReplicaSet] = field(default_factory=dict)
    """Running replicas by revision uid: the serving revision's, warm ones, one that starts."""
    _serving: ReplicaSet | None = None
    candidate: ReplicaSet | None = None
    """The replicas of the revision held for verification, which the candidate URL reaches."""
    scaled_to_zero: bool = False
    """Its serving revision was stopped for want of requests (until a request wakes it)."""
    restarting: bool = False
    """Reconcile is starting the serving revision again (after a restart of the control plane,
    a wake from zero, or a failed Recreate), retrying with backoff."""
    restart_failures: int = 0
    """Starts of the serving revision that failed since it last served."""
    restart_delay: float = 1.0
    """How long reconcile waits after the next failed start of the serving revision."""
    commanded_at: float = float("-inf")
    """When the last command that created a revision came (the clock's monotonic seconds)."""
    last_request: float = 0.0
    """When the endpoint last got a request (the clock's monotonic seconds)."""
    reconciling: asyncio.Task[None] | None = None
    """The deployment's reconcile loop, while it has something to do."""
    retire_timers: dict[str, TimerHandle] = field(default_factory=dict)
    recreate: dict[str, str] = field(default_factory=dict)
    """Why a revision's rollout is a Recreate (stop, then start), by revision uid."""
    replicas_wanted: int | None = None
    """The serving revision's replica count, as the autoscaler settled it (None: its minimum,
    at least one); reconcile starts or drains replicas to reach it."""
    lost: dict[int, int | None] = field(default_factory=dict)
    """Serving replicas whose process ended on its own, until one serves again: index -> the
    port to start it on again (None once a start on it failed)."""
    adding: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    """Starts of serving replicas underway, by index; cancelled when the serving set changes."""
    replica_delay: float = 1.0
    """How long reconcile waits after the next failed start of a lost replica."""
    autoscaler: tuple[str, Autoscaler] | None = None
    """The serving revision's uid and its autoscaler."""
    scale_held: tuple[int, int] | None = None
    """A scale-up held for want of free GPUs: (wanted, reached), so its event is said once."""
    recreated: str | None = None
    """The serving revision a Recreate stopped, started again if the new one fails."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def serving(self) -> ReplicaSet | None:
        """The replicas the endpoint forwards to; None while there are none (scaled,
        restarting). Another set in its place starts afresh: the starts of the old one's
        replicas are cancelled, its replica count, lost replicas and backoff forgotten."""
        return self._serving

    @serving.setter
    def serving(self, pool: ReplicaSet | None) -> None:
        if pool is self._serving:
            return
        adding, self.adding = self.adding, {}
        for task in adding.values():
            task.cancel()
        self.replicas_wanted = None
        self.lost = {}
        self.replica_delay = 1.0
        self._serving = pool

    @property
    def health(self) -> Health:
        """Derived from what runs: the serving replicas, a restart underway and its failures,
        and whether the deployment was scaled to zero."""
        if self.serving is not None:
            return Health.HEALTHY if self.serving.serving() else Health.UNHEALTHY
        if self.restarting:
            return Health.UNHEALTHY if self.restart_failures else Health.RESTARTING
        return Health.SCALED_TO_ZERO if self.scaled_to_zero else Health.HEALTHY

    def notify(self) -> None:
        """Wake everyone waiting for a change of this deployment."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed(self, timeout: float) -> None:
        """Return on the next change, or after ``timeout`` seconds."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return

    def cancel_reconcile(self) -> None:
        task, self.reconciling = self.reconciling, None
        if task is not None and not task.done():
            task.cancel()

    def cancel_retire(self, uid: str) -> None:
        handle = self.retire_timers.pop(uid, None)
        if handle is not None:
            handle.cancel()

    def endpoints(self) -> list[EndpointServer]:
        return [e for e in (self.endpoint, self.candidate_endpoint) if e is not None]
