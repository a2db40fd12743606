"""The serving revision's replica count over time: the autoscaler's decision (held at the free
GPUs), which reconcile carries out, and scale to zero after an idle spell."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ...refs import revision_name
from ..deploy_config import min_replicas
from .autoscale import Autoscaler, declared_concurrency, scaling_policy
from .context import RolloutContext
from .events import Scaled, ScaledToZero, ScaleUpHeld
from .phases import Lifecycle
from .placement import Placement
from .runtime import DeploymentRuntime

__all__ = ["Scaling"]

log = logging.getLogger("bentoship.server")

TICK_SECONDS = 1.0


class Scaling:
    def __init__(
        self,
        ctx: RolloutContext,
        placement: Placement,
        reconcile: Callable[[DeploymentRuntime], None],
    ) -> None:
        self.ctx = ctx
        self.placement = placement
        self.reconcile = reconcile
        """Asks for a pass of the deployment's reconcile (which starts or drains replicas)."""

    async def loop(self) -> None:
        """Every second, autoscale each serving deployment, and stop idle ones that may."""
        while True:
            await self.ctx.clock.sleep(TICK_SECONDS)
            await self.tick()

    async def tick(self) -> None:
        for rt in list(self.ctx.runtimes.values()):
            if rt.serving is not None and not rt.lock.locked():
                self.autoscale(rt)
            busy = rt.reconciling is not None and not rt.reconciling.done()
            if rt.serving is not None and not rt.lock.locked() and not busy:
                await self.scale_to_zero_if_idle(rt)

    def autoscale(self, rt: DeploymentRuntime) -> None:
        """Set the serving revision's replica count as its autoscaler settles, and ask
        reconcile to reach it."""
        pool = rt.serving
        dep = self.ctx.store.get_deployment(rt.name)
        if pool is None or dep is None or dep.state != Lifecycle.ACTIVE:
            return
        rev = self.ctx.store.get_revision(pool.revision)
        if rev is None or dep.serving_revision != rev.uid:
            return
        if rt.autoscaler is None or rt.autoscaler[0] != rev.uid:
            concurrency = declared_concurrency(self.ctx.manifest(rev.bento))
            rt.autoscaler = (rev.uid, Autoscaler(scaling_policy(rev.config, concurrency)))
        scaler = rt.autoscaler[1]
        active = sorted(i for i, r in pool.replicas.items() if not r.draining)
        coming = sorted((set(rt.adding) | set(rt.lost)) - set(active))
        current = len(active) + len(coming)
        outstanding = sum(r.outstanding for r in pool.replicas.values())
        wanted = scaler.desired(self.ctx.clock.monotonic(), outstanding, current)
        desired = self.placement.capped(rev, coming, current, wanted)
        if desired != current:
            concurrency = scaler.policy.concurrency
            scaled = Scaled(pool.name, current, desired, outstanding, concurrency)
            self.ctx.publish(rt.name, scaled)
            log.info("deployment %s: %s", rt.name, scaled.describe())
        held = (wanted, desired) if desired < wanted else None
        if held is not None and held != rt.scale_held:
            why = self.placement.held_reason(rev, coming, desired - current)
            short = ScaleUpHeld(pool.name, wanted, desired, why)
            self.ctx.publish(rt.name, short)
            log.info("deployment %s: %s", rt.name, short.describe())
        rt.scale_held = held
        rt.replicas_wanted = desired
        if desired != current:
            self.reconcile(rt)

    async def scale_to_zero_if_idle(self, rt: DeploymentRuntime) -> None:
        serving = rt.serving
        dep = self.ctx.store.get_deployment(rt.name)
        if serving is None or dep is None or dep.serving_revision is None:
            return
        rev = self.ctx.store.get_revision(dep.serving_revision)
        if rev is None or dep.state != Lifecycle.ACTIVE or min_replicas(rev.config) > 0:
            return
        idle = self.ctx.clock.monotonic() - rt.last_request
        if idle < self.ctx.settings.scale_to_zero_after:
            return
        rt.processes.pop(dep.serving_revision, None)
        rt.serving = None
        rt.scaled_to_zero = True
        await serving.stop()
        log.info("deployment %s scaled to zero after %.0f s idle", rt.name, idle)
        self.ctx.publish(rt.name, ScaledToZero(revision_name(rev.seq), idle))
        rt.notify()
