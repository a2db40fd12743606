"""Where a revision's replicas run on the machine's GPUs: the plan for a rollout, the devices
each replica gets, the room a scale-up has, and what a rollout must stop to fit."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ...refs import revision_name
from ..gpu.allocator import (
    GpuAllocator,
    GpuPlan,
    GpuRequest,
    GpuUnavailable,
    Holder,
    PlanKind,
    gpu_request,
)
from ..store import Deployment, Revision
from .context import RolloutContext
from .events import GpusGiven, Recreating
from .phases import Health, RevisionPhase
from .runtime import DeploymentRuntime

__all__ = ["Placement"]

log = logging.getLogger("bentoship.server")


class Placement:
    """The GPU allocator, as the rollout consults it."""

    def __init__(self, ctx: RolloutContext, gpus: GpuAllocator) -> None:
        self.ctx = ctx
        self.gpus = gpus
        self.launching: Counter[str] = Counter()
        """Revisions with a replica being launched (their GPUs are held meanwhile)."""

    def request(self, bento: str, config: dict[str, Any]) -> GpuRequest | None:
        """The GPUs one replica of ``bento`` with ``config`` asks for (see gpu.allocator)."""
        return gpu_request(config, self.ctx.manifest(bento))

    def envs(self, rev: Revision, index: int = 0) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` of the GPUs replica ``index`` of the revision gets (none:
        hide every GPU)."""
        if not self.gpus.inventory:
            return {}
        request = self.request(rev.bento, rev.config)
        if request is None:
            return {"CUDA_VISIBLE_DEVICES": ""}
        self.prune()
        before = self.gpus.holdings.get((rev.uid, index))
        label = revision_name(rev.seq)
        held = self.gpus.acquire(Holder(rev.deployment, rev.uid, label, index), request)
        devices = ",".join(map(str, held))
        if before is None or held != before.indices:
            given = GpusGiven(label, index, devices, request.describe())
            self.ctx.publish(rev.deployment, given)
        return {"CUDA_VISIBLE_DEVICES": devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def prune(self) -> None:
        """Forget the GPUs of revisions with no process (nor one starting or restarting)."""
        live = set(self.launching)
        for rt in self.ctx.runtimes.values():
            live.update(rt.processes)
            if rt.health in (Health.UNHEALTHY, Health.RESTARTING) and rt.recreated is None:
                dep = self.ctx.store.get_deployment(rt.name)
                if dep is not None and dep.serving_revision:
                    live.add(dep.serving_revision)
        self.gpus.keep_only(live)

    def plan(
        self, dep: Deployment, request: GpuRequest | None, replicas: int, label: str = ""
    ) -> GpuPlan:
        """The plan for ``replicas`` (``min_replicas``) replicas of ``request`` at once."""
        self.prune()
        return self.gpus.plan(request, dep.name, dep.serving_revision, label, replicas)

    def announce_recreate(
        self, rt: DeploymentRuntime, rev: Revision, request: GpuRequest | None, replicas: int
    ) -> None:
        """Say in the events, and in the deployment's answer, that this rollout recreates."""
        plan = self.plan(self.ctx.get(rt.name), request, replicas, revision_name(rev.seq))
        if plan.kind is PlanKind.RECREATE and rev.uid not in rt.recreate:
            rt.recreate[rev.uid] = plan.reason
            self.ctx.publish(rt.name, Recreating(revision_name(rev.seq), plan.reason))
            log.warning("deployment %s: %s", rt.name, plan.reason)

    async def make_room(self, rt: DeploymentRuntime, rev: Revision, replicas: int) -> None:
        """Stop what must stop for the revision's GPUs: warm revisions, or (Recreate) the
        serving one; GpuUnavailable when other deployments hold them."""
        request = self.request(rev.bento, rev.config)
        if request is None or not self.gpus.inventory:
            return
        self.gpus.release(rev.uid)
        dep = self.ctx.get(rt.name)
        plan = self.plan(dep, request, replicas, revision_name(rev.seq))
        if plan.kind is PlanKind.BUSY:
            raise GpuUnavailable(plan.reason)
        if plan.kind is PlanKind.RECREATE:
            self.announce_recreate(rt, rev, request, replicas)
        for uid in plan.stop:
            if uid == rev.uid:
                continue
            proc = rt.processes.pop(uid, None)
            if uid == dep.serving_revision:
                rt.recreated = uid
                rt.serving = None
                rt.notify()
            if proc is not None:
                await proc.stop()
            self.gpus.release(uid)
            old = self.ctx.store.get_revision(uid)
            if old is not None and old.phase == RevisionPhase.WARM:
                rt.cancel_retire(uid)
                self.ctx.move(uid, RevisionPhase.RETIRED, reason="stopped to free its GPUs")

    def capped(self, rev: Revision, coming: list[int], current: int, desired: int) -> int:
        """The count a scale-up from ``current`` to ``desired`` reaches on free GPUs, no
        replica on another's GPU (``coming``: replicas started but maybe not placed yet)."""
        if desired <= current or not self.gpus.inventory:
            return desired
        request = self.request(rev.bento, rev.config)
        if request is None:
            return desired
        self.prune()
        unplaced = sum(1 for i in coming if (rev.uid, i) not in self.gpus.holdings)
        room = self.gpus.room(request, unplaced + desired - current) - unplaced
        return min(desired, current + max(0, room))

    def held_reason(self, rev: Revision, coming: list[int], starting: int) -> str:
        """Why a scale-up stops short: who holds the GPUs it would take."""
        request = self.request(rev.bento, rev.config)
        unplaced = [i for i in coming if (rev.uid, i) not in self.gpus.holdings]
        return (
            self.gpus.full_reason(request, len(unplaced) + starting) if request else "no free GPU"
        )
