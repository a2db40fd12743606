"""One revision's replicas: its ``bentoml serve`` processes, by replica index."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..endpoint.balancing import Replica, choose
from ..store import Revision
from .launcher import ReplicaHandle

__all__ = ["ReplicaSet", "ReplicaView"]

DRAIN_SECONDS = 60.0
"""The longest a replica that scales down waits for its outstanding requests."""


@dataclass(frozen=True)
class ReplicaView:
    """One running replica as the API shows it."""

    revision: Revision
    role: str
    """``serving``, ``candidate`` (held for verification), ``starting`` or ``warm``."""
    replica: dict[str, Any]
    """Its :meth:`ReplicaSet.describe` entry: index, port, pid, ready, draining, counts."""
    gpus: tuple[int, ...] = ()


class ReplicaSet:
    """The replicas of revision ``revision``: started, ready, or draining before they stop."""

    def __init__(self, revision: str, name: str) -> None:
        self.revision = revision
        self.name = name
        self.replicas: dict[int, Replica[ReplicaHandle]] = {}

    def add(self, proc: ReplicaHandle) -> Replica[ReplicaHandle]:
        """Hold ``proc`` as replica ``proc.replica`` (not ready yet: it gets no request)."""
        replica = Replica(proc.replica, proc)
        self.replicas[proc.replica] = replica
        return replica

    def mark_ready(self, proc: ReplicaHandle) -> None:
        replica = self.replicas.get(proc.replica)
        if replica is not None and replica.process is proc:
            replica.ready = True

    def discard(self, proc: ReplicaHandle) -> bool:
        """Forget ``proc`` if it is still one of the replicas (True)."""
        replica = self.replicas.get(proc.replica)
        if replica is None or replica.process is not proc:
            return False
        del self.replicas[proc.replica]
        return True

    def remove(self, index: int) -> ReplicaHandle | None:
        replica = self.replicas.pop(index, None)
        return replica.process if replica is not None else None

    def choose(self) -> Replica[ReplicaHandle] | None:
        """The replica for the next request: the ready one with the fewest outstanding."""
        return choose(self.replicas.values())

    def processes(self) -> list[ReplicaHandle]:
        return [r.process for r in self.replicas.values()]

    def serving(self) -> list[Replica[ReplicaHandle]]:
        """Ready replicas that take requests (not draining), by index."""
        return [r for _, r in sorted(self.replicas.items()) if r.eligible]

    def next_index(self) -> int:
        return next(i for i in range(len(self.replicas) + 1) if i not in self.replicas)

    @property
    def alive(self) -> bool:
        return any(p.alive for p in self.processes())

    @property
    def ready(self) -> bool:
        """Every replica started, alive and ready (what a rollout waits for)."""
        return bool(self.replicas) and all(
            r.ready and r.process.alive for r in self.replicas.values()
        )

    @property
    def first(self) -> ReplicaHandle | None:
        """The live replica with the lowest index (the one a single-process view shows)."""
        live = [r.process for _, r in sorted(self.replicas.items()) if r.process.alive]
        return live[0] if live else None

    async def drain(self, index: int, timeout: float = DRAIN_SECONDS) -> None:
        """Stop replica ``index`` once its outstanding requests are answered."""
        replica = self.replicas.get(index)
        if replica is None:
            return
        replica.draining = True
        await replica.drained(timeout)
        if self.replicas.get(index) is replica:
            del self.replicas[index]
        await replica.process.stop()

    async def stop(self) -> None:
        """Stop every replica now."""
        procs = self.processes()
        self.replicas.clear()
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "index": index,
                "port": r.process.port,
                "pid": r.process.pid,
                "ready": r.ready,
                "draining": r.draining,
                "outstanding": r.outstanding,
                "requests": r.answered,
            }
            for index, r in sorted(self.replicas.items())
            if r.process.alive
        ]
