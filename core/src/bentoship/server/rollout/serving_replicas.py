"""The serving revision's replicas, as reconcile wants them: start those a pass adds (a lost
one, or a scale-up's), drain those it drops, and tell reconcile of one whose process exits.

Each start is a task of its own, so a start that hangs holds up no pass. It starts once, then
asks for a pass; a change of the serving set cancels it (``DeploymentRuntime.serving``), so it
never asks whether it has gone stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..gpu.allocator import GpuUnavailable
from .context import RolloutContext, problem_line
from .events import Crashed, ReplicaAdded, Restarted
from .launcher import ReplicaHandle
from .pools import START_ERRORS, Pools
from .replicas import ReplicaSet
from .runtime import DeploymentRuntime

__all__ = ["ServingReplicas"]

log = logging.getLogger("bentoship.server")


class ServingReplicas:
    def __init__(
        self, ctx: RolloutContext, pools: Pools, reconcile: Callable[[DeploymentRuntime], None]
    ) -> None:
        self.ctx = ctx
        self.pools = pools
        self.reconcile = reconcile
        """Asks for a pass of the deployment's reconcile."""

    def scale(
        self,
        rt: DeploymentRuntime,
        pool: ReplicaSet,
        add: tuple[int, ...],
        drain: tuple[int, ...],
    ) -> None:
        """Start the serving ``pool``'s replicas ``add``; drain its replicas ``drain`` (a start
        underway is cancelled instead). A lost replica no longer wanted is no longer lost."""
        rt.lost = {i: port for i, port in rt.lost.items() if i in rt.adding or i in add}
        for index in add:
            rt.adding[index] = self.ctx.spawn(self._add(rt, pool, index), deployment=rt.name)
        for index in drain:
            adding = rt.adding.pop(index, None)
            replica = pool.replicas.get(index)
            if adding is not None:
                adding.cancel()
            elif replica is not None:
                replica.draining = True
                self.ctx.spawn(self.pools.drain(rt, pool, index), deployment=rt.name)

    def exited(self, rt: DeploymentRuntime, proc: ReplicaHandle, code: int | None) -> None:
        """A replica's process ended on its own: a serving one is started again by a pass
        (unless it was draining: it was on its way out)."""
        pool = rt.processes.get(proc.revision)
        replica = pool.replicas.get(proc.replica) if pool is not None else None
        draining = replica is not None and replica.draining
        if pool is None or not pool.discard(proc):
            return
        if rt.serving is not pool:
            if not pool.replicas:
                del rt.processes[pool.revision]
            return
        if draining:
            rt.notify()
            return
        log.warning("%s replica %s of %s exited; replacing it", proc.name, proc.replica, rt.name)
        self.ctx.publish(rt.name, Crashed(proc.name, proc.replica, code))
        rt.lost[proc.replica] = proc.port
        rt.notify()
        self.reconcile(rt)

    async def _add(self, rt: DeploymentRuntime, pool: ReplicaSet, index: int) -> None:
        """Start replica ``index`` of the serving ``pool`` once, then ask for a pass. A
        scale-up that finds no free GPU is given up (the count falls back to what runs); a
        start that fails otherwise waits a backoff first. A change of the serving set cancels
        it (see ``DeploymentRuntime.serving``)."""
        lost = index in rt.lost
        try:
            rev = self.ctx.store.get_revision(pool.revision)
            assert rev is not None, f"the serving revision {pool.revision} is stored"
            proc = await self.pools.add_replica(rt, rev, index, rt.lost.get(index))
        except GpuUnavailable as exc:
            if lost:
                await self._retry_later(rt, index, exc)
                return
            log.info("scale-up replica %s of %s not started: %s", index, rt.name, exc)
            rt.replicas_wanted = len([r for r in pool.replicas.values() if not r.draining])
            self._done(rt, index)
            return
        except Exception as exc:
            if not isinstance(exc, START_ERRORS):
                log.error("a replica start of %s failed on a bug", rt.name, exc_info=exc)
                self.ctx.internal_error(rt.name, problem_line(exc))
            await self._retry_later(rt, index, exc)
            return
        self.pools.watch(rt, proc, self.exited)
        rt.lost.pop(index, None)
        rt.replica_delay = 1.0
        event = Restarted(pool.name, index) if lost else ReplicaAdded(pool.name, index)
        self.ctx.publish(rt.name, event)
        self._done(rt, index)

    async def _retry_later(self, rt: DeploymentRuntime, index: int, error: Exception) -> None:
        """Wait the backoff before a pass may start the replica again (on another port)."""
        if index in rt.lost:
            rt.lost[index] = None
        delay = rt.replica_delay
        log.warning(
            "replica %s of %s failed to start (%s); again in %.0f s", index, rt.name, error, delay
        )
        rt.notify()
        await self.ctx.clock.sleep(delay)
        rt.replica_delay = min(delay * 2, self.ctx.settings.restart_backoff_max)
        self._done(rt, index)

    def _done(self, rt: DeploymentRuntime, index: int) -> None:
        """A start of a serving replica is over: a pass reads what it left."""
        if rt.adding.get(index) is asyncio.current_task():
            del rt.adding[index]
        rt.notify()
        self.reconcile(rt)
