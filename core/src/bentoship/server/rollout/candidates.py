"""Candidates: a ready revision held for verification, its canary weight, and its release.

The split a candidate serves under is stored with the deployment (``canary``), and only there:
set when its weight changes, cleared when it leaves the candidate phase (a listener of every
phase change); the endpoint reads it from the store (``backends``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..endpoint.split import TrafficSplit
from ..store import Revision, now
from .context import RolloutContext
from .launcher import ReplicaHandle
from .phases import RevisionPhase
from .replicas import ReplicaSet
from .runtime import DeploymentRuntime

__all__ = ["Candidates"]

log = logging.getLogger("bentoship.server")


class Candidates:
    def __init__(self, ctx: RolloutContext) -> None:
        self.ctx = ctx
        ctx.phase_listeners.append(self._moved)

    def hold(self, rt: DeploymentRuntime, uid: str) -> None:
        """Hold a ready revision as the candidate, with the canary split asked for, if any."""
        pool = rt.processes[uid]
        dep = self.ctx.get(rt.name)
        self.ctx.move(uid, RevisionPhase.CANDIDATE, reason="", ready_at=now())
        rt.candidate = pool
        for proc in pool.processes():
            self.ctx.watch_over(self._watcher(rt, pool, proc), deployment=rt.name)
        port = rt.candidate_endpoint.port if rt.candidate_endpoint else dep.candidate_port
        log.info("deployment %s holds candidate %s on port %s", rt.name, pool.name, port)
        rt.notify()

    def set_split(self, rt: DeploymentRuntime, split: TrafficSplit) -> None:
        self.ctx.store.update_deployment(rt.name, canary=split.to_dict())
        rt.notify()

    def _moved(self, rev: Revision, phase: RevisionPhase) -> None:
        """A candidate that leaves its phase gets no more traffic; its process stops unless
        it was promoted."""
        if rev.phase != RevisionPhase.CANDIDATE:
            return
        rt = self.ctx.runtime(rev.deployment)
        pool = rt.candidate
        if pool is None or pool.revision != rev.uid:
            return
        rt.candidate = None
        self.ctx.store.update_deployment(rt.name, canary=None)
        if phase != RevisionPhase.SERVING and rt.processes.get(rev.uid) is pool:
            self.ctx.spawn(self.ctx.stop_unless_serving(rt, rev.uid), deployment=rt.name)

    def _watcher(
        self, rt: DeploymentRuntime, pool: ReplicaSet, proc: ReplicaHandle
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        return lambda: self._watch(rt, pool, proc)

    async def _watch(self, rt: DeploymentRuntime, pool: ReplicaSet, proc: ReplicaHandle) -> None:
        """A candidate one of whose processes exits has failed: it is not restarted."""
        code = await proc.exited()
        if proc.stopping or rt.candidate is not pool:
            return
        async with rt.lock:
            rev = self.ctx.store.get_revision(proc.revision)
            if rt.candidate is not pool or rev is None or rev.phase != RevisionPhase.CANDIDATE:
                return
            problem = f"its process exited with code {code} while a candidate"
            await self.ctx.fail(rt, proc.revision, problem, RevisionPhase.CANDIDATE)
