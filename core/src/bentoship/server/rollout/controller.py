"""The rollout's commands: create, update, promote, discard, canary weights, rollback,
terminate and delete. Each takes the deployment's lock, records what is wanted in the store,
and leaves the acting to the reconciler (``reconcile``), which starts and stops processes.

The parts: ``context`` (store, runtimes, clock, launcher, the phase moves and events),
``pools`` (a revision's replicas), ``serving_replicas`` (the serving revision's, as reconcile
wants them), ``placement`` (GPUs), ``scaling`` (autoscaler and scale to zero), ``candidates``
(held revisions and canary weights), ``backends`` (the endpoint's view and request book) and
``views`` (the read side).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from typing import Any

from ...refs import revision_name
from ...tags import shown
from ..deploy_config import min_replicas
from ..endpoint.interface import Role
from ..endpoint.server import EndpointServer
from ..endpoint.split import TrafficSplit
from ..endpoint.traffic import TrafficBook
from ..errors import Conflict
from ..gpu.allocator import GpuAllocator, GpuRequest, PlanKind
from ..gpu.inventory import Inventory
from ..settings import ServerSettings
from ..store import Deployment, Revision, Store, new_uid, now
from ..webhooks import WebhookBook
from .analyses import Analyses
from .approvals import Approvals
from .backends import EndpointBackends
from .candidates import Candidates
from .context import HELD_PHASES, RolloutContext
from .events import (
    CanaryWeight,
    Created,
    Discarded,
    EventLog,
    Promoted,
    RolledBack,
    Starting,
    Terminated,
)
from .launcher import BentomlLauncher, Clock, Launcher, LoopClock
from .phases import Lifecycle, RevisionPhase
from .placement import Placement
from .pools import Pools
from .reconcile import GATHER_SECONDS, SETTLE_SECONDS, SUPERSEDED, Reconciler
from .runner import PLANE_MARKER, kill_marked
from .runtime import DeploymentRuntime
from .scaling import Scaling
from .secrets import RevisionSecrets
from .shadow import Shadows
from .tls import RevisionTLS
from .views import RolloutViews

__all__ = ["Controller"]

log = logging.getLogger("bentoship.server")

DISCARDED = "discarded: it was not promoted"


class Controller:
    """Owns every deployment's processes and endpoint; the store is the durable truth."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        gpus: Inventory | None = None,
        *,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.secrets = RevisionSecrets(settings, store)
        self._tls: RevisionTLS | None = None
        bentoml = BentomlLauncher(settings, self.secrets, lambda: self.tls)
        self.ctx = RolloutContext(
            settings, store, launcher or bentoml, clock or LoopClock(), bentoml.log_path
        )
        self.gpus = GpuAllocator(gpus or Inventory())
        self.placement = Placement(self.ctx, self.gpus)
        self.pools = Pools(self.ctx, self.placement)
        self.candidates = Candidates(self.ctx)
        self.shadows = Shadows(self.ctx)
        self.analyses = Analyses(self.ctx, self, self.shadows)
        self.approvals = Approvals(self.ctx, self)
        self.webhooks = WebhookBook(store)
        self.reconciler = Reconciler(self.ctx, self.pools, self.placement, self.candidates)
        self.scaling = Scaling(self.ctx, self.placement, self.reconciler.nudge)
        self.backends = EndpointBackends(self.ctx, self.reconciler.wake, self.shadows)
        self.views = RolloutViews(self.ctx, self.gpus)
        self.deleted_hooks: list[Callable[[str], None]] = []
        """Called with a deployment's name once it is deleted."""

    @property
    def runtimes(self) -> dict[str, DeploymentRuntime]:
        return self.ctx.runtimes

    @property
    def traffic(self) -> TrafficBook:
        return self.ctx.traffic

    @property
    def events(self) -> EventLog:
        return self.ctx.events

    @property
    def tls(self) -> RevisionTLS:
        """The certificates of mutual TLS with revisions that require access authorization."""
        if self._tls is None:
            self._tls = RevisionTLS.ensure(self.settings.data_dir / "tls")
        return self._tls

    # lifecycle of the control plane

    async def start(self) -> None:
        for dep in self.store.list_deployments():
            rt = self.runtime(dep.name)
            await self._open_endpoint(rt, dep)
            self.reconciler.recover(rt, dep)
        self.analyses.resume()
        self.approvals.resume()
        self.ctx.spawn(self.scaling.loop())

    async def close(self) -> None:
        for task in list(self.ctx.tasks):
            task.cancel()
        for rt in self.runtimes.values():
            await self.reconciler.stop_all(rt)
        leftover = kill_marked(PLANE_MARKER)
        if leftover:
            log.warning("killed %d process(es) of replicas that outlived them", len(leftover))
        endpoints = [e for rt in self.runtimes.values() for e in rt.endpoints()]
        await asyncio.gather(*(e.stop() for e in endpoints), return_exceptions=True)
        self.secrets.close()

    def runtime(self, name: str) -> DeploymentRuntime:
        return self.ctx.runtime(name)

    # queries the commands share with the API

    def get(self, name: str) -> Deployment:
        return self.ctx.get(name)

    def target_of(self, dep: Deployment) -> Revision | None:
        return self.ctx.target_of(dep)

    def serving_of(self, dep: Deployment) -> Revision | None:
        return self.ctx.serving_of(dep)

    def name_of(self, uid: str | None) -> str | None:
        """A revision's short name (``r3``) from its uid."""
        return self.ctx.name_of(uid)

    def gpu_request(self, bento: str, config: dict[str, Any]) -> GpuRequest | None:
        """The GPUs one replica of ``bento`` with ``config`` asks for (see gpu.allocator)."""
        return self.placement.request(bento, config)

    def move(
        self, uid: str, phase: RevisionPhase, *, reason: str | None = None, **fields: Any
    ) -> Revision:
        """Move revision ``uid`` to ``phase`` (checked against the table), persist, wake waiters."""
        return self.ctx.move(uid, phase, reason=reason, **fields)

    # commands

    async def create(
        self, name: str, bento: str, config: dict[str, Any], *, verify: bool = False
    ) -> Deployment:
        config = self.secrets.pin(config)
        rt = self.runtime(name)
        async with rt.lock:
            if self.store.get_deployment(name) is not None:
                raise Conflict(
                    f"deployment {shown(name)} already exists; update it instead of creating it"
                )
            self.gpus.check(self.gpu_request(bento, config), min_replicas(config))
            dep = Deployment(
                name=name,
                uid=new_uid(),
                cluster="local",
                created_at=now(),
                updated_at=None,
                state=Lifecycle.ACTIVE,
                target_revision=None,
                serving_revision=None,
                endpoint_port=None,
                reason="",
            )
            self.store.insert_deployment(dep)
            await self._open_endpoint(rt, dep)
            self._new_revision(rt, dep, bento, config, verify=verify, first=True)
            return self.get(name)

    async def update(
        self,
        name: str,
        bento: str,
        config: dict[str, Any],
        *,
        verify: bool = False,
        split: TrafficSplit | None = None,
    ) -> Deployment:
        """A new revision of ``name``; with ``verify`` (or a canary ``split``) a candidate."""
        config = self.secrets.pin(config)
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            verify = verify or split is not None
            target = self.target_of(dep)
            same = target is not None and target.bento == bento and target.config == config
            phase = RevisionPhase(target.phase) if target is not None else None
            live = phase is RevisionPhase.SERVING or (
                phase in HELD_PHASES and target is not None and target.verify == verify
            )
            if same and live and dep.state == Lifecycle.ACTIVE:
                if split is not None and phase is RevisionPhase.CANDIDATE:
                    self.candidates.set_split(rt, split)
                return dep
            request = self.gpu_request(bento, config)
            replicas = min_replicas(config)
            self.gpus.check(request, replicas)
            if verify and self.placement.plan(dep, request, replicas).kind is PlanKind.RECREATE:
                raise Conflict(
                    f"a candidate of {name} cannot run beside the revision it serves: only that "
                    "revision's GPUs fit it; deploy without manual promotion (a Recreate "
                    "rollout), or free GPUs first"
                )
            self.store.update_deployment(
                name, state=Lifecycle.ACTIVE, canary=split.to_dict() if split else None
            )
            rev = self._new_revision(rt, self.get(name), bento, config, verify=verify)
            self.placement.announce_recreate(rt, rev, request, replicas)
            return self.get(name)

    async def promote(self, name: str, ref: str | None = None) -> Deployment:
        """Switch the endpoint to the candidate at once; promoting twice changes nothing."""
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.target_of(dep)
            if ref is not None and (
                target is None or self.views.revision(name, ref).uid != target.uid
            ):
                raise Conflict(
                    f"revision {ref} is not the candidate of {name}; promote its current "
                    "candidate, or deploy that revision as a candidate first"
                )
            serving = target is not None and target.phase == RevisionPhase.SERVING
            if target is None or (serving and dep.state == Lifecycle.ACTIVE):
                return dep
            label = revision_name(target.seq)
            if target.phase == RevisionPhase.STARTING and target.verify:
                raise Conflict(
                    f"candidate {label} of {name} is not ready yet; wait for it "
                    f"(`bentoship wait {name}`), then promote"
                )
            if target.phase != RevisionPhase.CANDIDATE or dep.state != Lifecycle.ACTIVE:
                raise Conflict(
                    f"deployment {name} has no candidate to promote (revision {label} is "
                    f"{target.phase}); deploy the bento again as a candidate"
                )
            self.ctx.publish(name, Promoted(label))
            self.reconciler.activate(rt, target.uid)
            return self.get(name)

    async def discard(self, name: str) -> Deployment:
        """Stop the candidate (or a rollout still starting); the endpoint keeps what it serves."""
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.target_of(dep)
            if target is None or target.phase not in HELD_PHASES:
                return dep
            self.ctx.publish(name, Discarded(revision_name(target.seq)))
            self._supersede(rt, dep, DISCARDED)
            if dep.serving_revision is not None:
                self.store.update_deployment(name, target_revision=dep.serving_revision)
            self.reconciler.reconcile(rt)
            rt.notify()
            return self.get(name)

    async def set_split(self, name: str, split: TrafficSplit) -> Deployment:
        """Give the candidate ``split.weight`` percent of the endpoint's traffic, at once."""
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.target_of(dep)
            if target is None or target.phase != RevisionPhase.CANDIDATE:
                state = f"revision {revision_name(target.seq)} is {target.phase}" if target else ""
                raise Conflict(
                    f"deployment {name} has no ready candidate ({state or 'no revision'}); "
                    "deploy with manual promotion and wait until it is ready"
                )
            self.candidates.set_split(rt, split)
            self.ctx.publish(name, CanaryWeight(revision_name(target.seq), split.weight))
            return self.get(name)

    async def rollback(
        self, name: str, ref: str | None, *, reason: str = "", force: bool = False
    ) -> Deployment:
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.views.rollback_target(dep, ref, force)
            active = dep.state == Lifecycle.ACTIVE
            underway = target.phase == RevisionPhase.STARTING or dep.serving_revision == target.uid
            if active and dep.target_revision == target.uid and underway:
                return dep
            self._supersede(rt, dep, SUPERSEDED)
            self.store.update_deployment(name, target_revision=target.uid, state=Lifecycle.ACTIVE)
            serving = self.name_of(dep.serving_revision)
            self.ctx.publish(name, RolledBack(revision_name(target.seq), serving, reason))
            proc = rt.processes.get(target.uid)
            if target.uid == dep.serving_revision and active:
                rt.notify()
            elif proc is not None and proc.alive and target.phase == RevisionPhase.WARM:
                self.reconciler.activate(rt, target.uid)
            else:
                self.move(target.uid, RevisionPhase.STARTING, reason="")
            self.reconciler.reconcile(rt)
            return self.get(name)

    async def terminate(self, name: str) -> Deployment:
        rt = self.runtime(name)
        async with rt.lock:
            return await self._terminate(rt)

    async def delete(self, name: str) -> Deployment:
        rt = self.runtime(name)
        async with rt.lock:
            dep = await self._terminate(rt)
            revisions = self.store.list_revisions(name)
            for endpoint in rt.endpoints():
                await endpoint.stop()
            rt.endpoint = rt.candidate_endpoint = None
            self.traffic.forget([rev.uid for rev in revisions])
            self.store.delete_deployment(name)
            self.analyses.forget(name)
            self.shadows.forget(name)
            self.approvals.forget(name)
            for hook in self.deleted_hooks:
                hook(name)
            shutil.rmtree(self.settings.logs_dir / name, ignore_errors=True)
            shutil.rmtree(self.settings.data_dir / "monitoring" / name, ignore_errors=True)
            for rev in revisions:
                shutil.rmtree(self.settings.data_dir / "runtime" / rev.uid, ignore_errors=True)
            rt.notify()
            self.runtimes.pop(name, None)
            return dep

    # internals

    async def _open_endpoint(self, rt: DeploymentRuntime, dep: Deployment) -> None:
        endpoint = EndpointServer(dep.name, self.backends)
        port = await endpoint.start(self.settings.host, dep.endpoint_port or 0)
        rt.endpoint = endpoint
        candidate = EndpointServer(dep.name, self.backends, Role.CANDIDATE)
        candidate_port = await candidate.start(self.settings.host, dep.candidate_port or 0)
        rt.candidate_endpoint = candidate
        if port != dep.endpoint_port or candidate_port != dep.candidate_port:
            self.store.update_deployment(
                dep.name, endpoint_port=port, candidate_port=candidate_port
            )

    def _supersede(self, rt: DeploymentRuntime, dep: Deployment, reason: str) -> None:
        """Cancel the pass of reconcile underway and the target not serving yet; what it started
        stops."""
        rt.cancel_reconcile()
        target = self.target_of(dep)
        if target is not None and target.phase in HELD_PHASES:
            self.move(target.uid, RevisionPhase.CANCELLED, reason=reason)

    def _new_revision(
        self,
        rt: DeploymentRuntime,
        dep: Deployment,
        bento: str,
        config: dict[str, Any],
        *,
        verify: bool = False,
        first: bool = False,
    ) -> Revision:
        """A new revision, started at once when ``first`` (a create), else after a short wait
        that lets the rest of a burst of updates supersede it before it starts a process."""
        self._supersede(rt, dep, SUPERSEDED)
        rev = Revision(
            uid=new_uid(),
            deployment=dep.name,
            seq=self.store.next_seq(dep.name),
            bento=bento,
            config=config,
            created_at=now(),
            phase=RevisionPhase.STARTING,
            verify=verify,
        )
        self.store.insert_revision(rev)
        self.store.update_deployment(dep.name, target_revision=rev.uid)
        name = revision_name(rev.seq)
        self.ctx.publish(dep.name, Created(name, bento))
        self.ctx.publish(dep.name, Starting(name, bento))
        rt.notify()
        stamp = self.ctx.clock.monotonic()
        if first:
            after = 0.0
        elif stamp - rt.commanded_at < SETTLE_SECONDS:
            after = SETTLE_SECONDS
        else:
            after = GATHER_SECONDS
        rt.commanded_at = stamp
        self.reconciler.reconcile(rt, after=after)
        return rev

    async def _terminate(self, rt: DeploymentRuntime) -> Deployment:
        dep = self.get(rt.name)
        if dep.state == Lifecycle.TERMINATED:
            return dep
        self.store.update_deployment(rt.name, state=Lifecycle.TERMINATING)
        rt.notify()
        await self.reconciler.stop_all(rt)
        self.reconciler.retire_all(rt.name)
        self.store.update_deployment(rt.name, state=Lifecycle.TERMINATED)
        self.ctx.publish(rt.name, Terminated(None, rt.name))
        rt.notify()
        return self.get(rt.name)
