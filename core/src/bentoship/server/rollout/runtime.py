"""What the control plane holds in memory for one deployment while it runs."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..endpoint.proxy import EndpointServer
from ..endpoint.split import TrafficSplit
from .phases import Health
from .runner import ServeProcess

__all__ = ["DeploymentRuntime"]


@dataclass
class DeploymentRuntime:
    """One deployment's processes, endpoint, health and waiters; the store holds the rest."""

    name: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held by every command on this deployment, and by a rollout while it changes state."""
    endpoint: EndpointServer | None = None
    candidate_endpoint: EndpointServer | None = None
    processes: dict[str, ServeProcess] = field(default_factory=dict)
    """Running processes by revision uid: the serving one, warm ones, one that starts."""
    serving: ServeProcess | None = None
    """The process the endpoint forwards to; None while there is none (scaled, restarting)."""
    candidate: ServeProcess | None = None
    """The process of the revision held for verification, which the candidate URL reaches."""
    split: TrafficSplit | None = None
    """The candidate's share of the stable endpoint's traffic (a canary), if it has one."""
    health: Health = Health.HEALTHY
    last_request: float = field(default_factory=time.monotonic)
    rollout: asyncio.Task[None] | None = None
    wakeup: asyncio.Task[None] | None = None
    retire_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    recreate: dict[str, str] = field(default_factory=dict)
    """Why a revision's rollout is a Recreate (stop, then start), by revision uid."""
    recreated: str | None = None
    """The serving revision a Recreate stopped, started again if the new one fails."""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

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

    def cancel_rollout(self) -> None:
        task, self.rollout = self.rollout, None
        if task is not None and not task.done():
            task.cancel()

    def cancel_retire(self, uid: str) -> None:
        handle = self.retire_timers.pop(uid, None)
        if handle is not None:
            handle.cancel()

    def endpoints(self) -> list[EndpointServer]:
        return [e for e in (self.endpoint, self.candidate_endpoint) if e is not None]

    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self.rollout, self.wakeup) if t is not None and not t.done()]
