"""Moving what runs toward what is wanted: a revision's rollout (start, then switch the endpoint
or hold a candidate), the switch itself, retiring warm revisions, restarting the serving one
(after a restart of the control plane, a wake from zero, or a failed Recreate), and recovery.

The commands (``controller``) record what is wanted in the store; these tasks act on it. A
task re-reads the store under the deployment's lock before it changes anything.
"""

from __future__ import annotations

import asyncio
import logging

from ...refs import revision_name
from ..deploy_config import min_replicas
from ..store import Deployment, now
from .candidates import Candidates
from .context import HELD_PHASES, RolloutContext
from .events import Restarted, Switched, Woken
from .phases import Lifecycle, RevisionPhase
from .placement import Placement
from .pools import START_ERRORS, Pools
from .runtime import DeploymentRuntime

__all__ = ["GATHER_SECONDS", "SETTLE_SECONDS", "SUPERSEDED", "Reconciler"]

log = logging.getLogger("bentoship.server")

GATHER_SECONDS = 0.05
"""An update waits this long before it starts a process: the other updates of a burst, already
sent, reach the deployment's lock first and cancel it before it starts anything. A create
starts at once (there is no burst of creates)."""
SETTLE_SECONDS = 0.2
"""An update that follows another this closely waits this long, so a burst starts one process."""
SUPERSEDED = "superseded by a newer request"


class Reconciler:
    def __init__(
        self, ctx: RolloutContext, pools: Pools, placement: Placement, candidates: Candidates
    ) -> None:
        self.ctx = ctx
        self.pools = pools
        self.placement = placement
        self.candidates = candidates

    def start_rollout(self, rt: DeploymentRuntime, uid: str, *, after: float = 0.0) -> None:
        """Start revision ``uid``'s rollout, in place of any underway; its process starts
        ``after`` seconds from now, unless a newer command cancels it first."""
        rt.cancel_rollout()
        rt.rollout = self.ctx.spawn(self._rollout(rt, uid, after), deployment=rt.name, revision=uid)

    async def _rollout(self, rt: DeploymentRuntime, uid: str, after: float) -> None:
        try:
            rev = self.ctx.store.get_revision(uid)
            if rev is None:
                return
            if after > 0:
                await self.ctx.clock.sleep(after)
            try:
                async with rt.lock:
                    await self.placement.make_room(rt, rev, min_replicas(rev.config))
                await self.pools.start_ready(rt, rev)
            except START_ERRORS as exc:
                async with rt.lock:
                    await self.ctx.fail(rt, uid, str(exc))
                    if rt.recreated is not None:
                        self._restart_recreated(rt)
                return
            async with rt.lock:
                dep = self.ctx.store.get_deployment(rt.name)
                current = self.ctx.store.get_revision(uid)
                wanted = dep is not None and dep.target_revision == uid
                if not wanted or dep is None or dep.state != Lifecycle.ACTIVE:
                    await self.ctx.stop_unless_serving(rt, uid)
                    if current is not None and current.phase == RevisionPhase.STARTING:
                        self.ctx.move(uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)
                    return
                if rt.rollout is asyncio.current_task():
                    rt.rollout = None
                if current is not None and current.verify:
                    self.candidates.hold(rt, uid)
                else:
                    self.activate(rt, uid)
        except asyncio.CancelledError:
            await asyncio.shield(self.ctx.stop_unless_serving(rt, uid))
            raise

    def activate(self, rt: DeploymentRuntime, uid: str) -> None:
        """Switch the endpoint to revision ``uid``; the one it served before is kept warm."""
        ctx = self.ctx
        dep = ctx.get(rt.name)
        pool = rt.processes[uid]
        rev = ctx.store.get_revision(uid)
        stamp = now()
        ready_at = (rev.ready_at if rev else None) or stamp
        ctx.move(uid, RevisionPhase.SERVING, reason="", ready_at=ready_at, activated_at=stamp)
        ctx.store.update_deployment(rt.name, reason="")
        rt.serving = pool
        rt.recreated = None
        rt.scaled_to_zero = False
        rt.restart_failures = 0
        rt.last_request = ctx.clock.monotonic()
        rt.cancel_retire(uid)
        previous = dep.serving_revision
        if rev is not None:
            if previous == uid:
                ctx.publish(rt.name, Restarted(pool.name))
            else:
                switched = Switched(pool.name, len(pool.replicas), ctx.name_of(previous))
                ctx.publish(rt.name, switched)
        if previous and previous != uid:
            old = ctx.store.get_revision(previous)
            if old is not None and old.phase == RevisionPhase.SERVING:
                if previous in rt.processes:
                    ctx.move(previous, RevisionPhase.WARM)
                    self._schedule_retire(rt, previous)
                else:
                    ctx.move(previous, RevisionPhase.RETIRED)
        for proc in pool.processes():
            self.pools.watch(rt, proc)
        ports = ", ".join(str(p.port) for p in pool.processes())
        log.info("deployment %s now serves revision %s on port(s) %s", rt.name, pool.name, ports)
        rt.notify()

    def _schedule_retire(self, rt: DeploymentRuntime, uid: str) -> None:
        rt.cancel_retire(uid)
        rt.retire_timers[uid] = self.ctx.clock.call_later(
            self.ctx.settings.rollback_window,
            lambda: self.ctx.spawn(self._retire(rt, uid), deployment=rt.name),
        )

    async def _retire(self, rt: DeploymentRuntime, uid: str) -> None:
        async with rt.lock:
            rt.retire_timers.pop(uid, None)
            rev = self.ctx.store.get_revision(uid)
            if rev is None or rev.phase != RevisionPhase.WARM:
                return
            await self.ctx.stop_unless_serving(rt, uid)
            self.ctx.move(uid, RevisionPhase.RETIRED)

    def _restart_recreated(self, rt: DeploymentRuntime) -> None:
        """A rollout that stopped the serving revision failed: that revision starts again."""
        uid, rt.recreated = rt.recreated, None
        dep = self.ctx.store.get_deployment(rt.name)
        rev = self.ctx.store.get_revision(uid) if uid else None
        if dep is None or rev is None or dep.serving_revision != uid or rt.serving is not None:
            return
        self.ctx.publish(rt.name, Restarted(revision_name(rev.seq), on_gpus=True))
        rt.restart_failures = 0
        rt.wakeup = self.ctx.spawn(self._restart_serving(rt, rev.uid), deployment=rt.name)

    async def _restart_serving(self, rt: DeploymentRuntime, uid: str) -> None:
        """Start the serving revision's replicas again, with backoff, then serve them."""
        delay = 1.0
        while True:
            dep = self.ctx.store.get_deployment(rt.name)
            rev = self.ctx.store.get_revision(uid)
            if dep is None or rev is None or dep.serving_revision != uid:
                return
            if dep.state != Lifecycle.ACTIVE:
                return
            try:
                await self.pools.start_ready(rt, rev)
            except START_ERRORS as exc:
                log.warning("restart of %s failed (%s); retrying in %.0f s", rt.name, exc, delay)
                rt.restart_failures += 1
                stale = rt.processes.pop(uid, None)
                if stale is not None:
                    await stale.stop()
                rt.notify()
                await self.ctx.clock.sleep(delay)
                delay = min(delay * 2, self.ctx.settings.restart_backoff_max)
                continue
            async with rt.lock:
                dep = self.ctx.store.get_deployment(rt.name)
                if dep is None or dep.serving_revision != uid or dep.state != Lifecycle.ACTIVE:
                    await self.ctx.stop_unless_serving(rt, uid)
                    return
                self.activate(rt, uid)
            return

    def recover(self, rt: DeploymentRuntime, dep: Deployment) -> None:
        """After a restart: nothing runs, so warm revisions are retired and rollouts restart."""
        ctx = self.ctx
        for rev in ctx.store.list_revisions(dep.name):
            if rev.phase == RevisionPhase.WARM or (
                rev.phase == RevisionPhase.SERVING and rev.uid != dep.serving_revision
            ):
                ctx.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES and rev.uid != dep.target_revision:
                ctx.move(rev.uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)
            elif rev.phase == RevisionPhase.CANDIDATE:
                ctx.move(rev.uid, RevisionPhase.STARTING)
        if dep.state == Lifecycle.TERMINATING:
            self.retire_all(dep.name)
            ctx.store.update_deployment(dep.name, state=Lifecycle.TERMINATED)
            return
        if dep.state != Lifecycle.ACTIVE:
            return
        if dep.serving_revision:
            rt.restart_failures = 0
            rt.wakeup = ctx.spawn(
                self._restart_serving(rt, dep.serving_revision), deployment=rt.name
            )
        target = ctx.target_of(dep)
        starting = target is not None and target.phase == RevisionPhase.STARTING
        if target is not None and starting and target.uid != dep.serving_revision:
            self.start_rollout(rt, target.uid)

    def wake(self, rt: DeploymentRuntime) -> None:
        """A request reached a deployment scaled to zero: start its serving revision."""
        if rt.wakeup is not None and not rt.wakeup.done():
            return
        dep = self.ctx.store.get_deployment(rt.name)
        if dep is None or dep.serving_revision is None:
            return
        woken = self.ctx.store.get_revision(dep.serving_revision)
        if woken is not None:
            self.ctx.publish(rt.name, Woken(revision_name(woken.seq)))
        rt.restart_failures = 0
        rt.wakeup = self.ctx.spawn(
            self._restart_serving(rt, dep.serving_revision), deployment=rt.name
        )
        rt.notify()

    def retire_all(self, name: str) -> None:
        for rev in self.ctx.store.list_revisions(name):
            if rev.phase in (RevisionPhase.SERVING, RevisionPhase.WARM):
                self.ctx.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES:
                reason = "the deployment was terminated"
                self.ctx.move(rev.uid, RevisionPhase.CANCELLED, reason=reason)

    async def stop_all(self, rt: DeploymentRuntime) -> None:
        """Stop everything the deployment runs, and every task working on it."""
        rt.cancel_rollout()
        if rt.wakeup is not None:
            rt.wakeup.cancel()
        rt.cancel_replacements()
        rt.serving = None
        rt.candidate = None
        rt.scaled_to_zero = False
        rt.restart_failures = 0
        for uid in list(rt.retire_timers):
            rt.cancel_retire(uid)
        procs = list(rt.processes.values())
        rt.processes.clear()
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
