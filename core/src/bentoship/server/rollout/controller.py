"""Deployments, revisions and their ``bentoml serve`` processes: blue/green rollouts, candidates.

A rollout that asks for verification holds its revision as a candidate once it is ready: the
candidate URL reaches it, the stable endpoint only for its canary share, until it is promoted
(the endpoint switches at once) or discarded (its process stops). Every command takes the
deployment's lock. Every change of a revision's phase goes through
:meth:`Controller.move`, which checks it against the state machine's table, persists it and
wakes the waiters; the deployment's status is derived, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ...logtail import last_error_line
from ...refs import find_revision, revision_name
from ...statuses import DeploymentStatus
from ...tags import shown
from ..deploy_config import min_replicas, process_envs
from ..endpoint.balancing import replica_of
from ..endpoint.proxy import EndpointServer, Role, Scope, Upstream
from ..endpoint.split import TrafficSplit
from ..endpoint.traffic import TrafficBook
from ..errors import Conflict, NotFound
from ..gpu.allocator import (
    GpuAllocator,
    GpuPlan,
    GpuRequest,
    GpuUnavailable,
    Holder,
    PlanKind,
    gpu_request,
)
from ..gpu.inventory import Inventory
from ..settings import ServerSettings
from ..store import Deployment, Revision, Store, new_uid, now
from .autoscale import Autoscaler, declared_concurrency, scaling_policy
from .events import EventKind, EventLog
from .home import prepare_revision_home
from .monitoring_env import config_options, monitoring_dir
from .phases import Health, Lifecycle, RevisionPhase, check_transition, derive_status
from .replicas import ReplicaSet, ReplicaView
from .runner import (
    PLANE_MARKER,
    NotReadyError,
    PortTaken,
    ServeProcess,
    kill_marked,
    start_serve,
    tail_lines,
)
from .runtime import DeploymentRuntime
from .secrets import RevisionSecrets
from .tls import RevisionTLS

__all__ = ["Controller"]

log = logging.getLogger("bentoship.server")

BACKEND_WAIT_SECONDS = 60.0
PORT_ATTEMPTS = 3
SETTLE_SECONDS = 0.2
"""A rollout waits this long before it starts a process, so a burst of updates starts one."""
SUPERSEDED = "superseded by a newer request"
DISCARDED = "discarded: it was not promoted"
HELD_PHASES = (RevisionPhase.STARTING, RevisionPhase.CANDIDATE)
"""Phases of a target that has not taken the endpoint yet: what discard and supersede cancel."""


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"deployment {shown(name)} not found (record not found); "
        "list deployments with `bentoship status` or create it first"
    )


class Controller:
    """Owns every deployment's processes and endpoint; the store is the durable truth."""

    def __init__(
        self, settings: ServerSettings, store: Store, gpus: Inventory | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.token = settings.token
        self.runtimes: dict[str, DeploymentRuntime] = {}
        self.traffic = TrafficBook()
        self.events = EventLog(store)
        self.deleted_hooks: list[Callable[[str], None]] = []
        """Called with a deployment's name once it is deleted."""
        self.gpus = GpuAllocator(gpus or Inventory())
        self._launching: Counter[str] = Counter()
        self._tls: RevisionTLS | None = None
        self._requires_auth: dict[tuple[str, Role], tuple[int, bool]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.secrets = RevisionSecrets(settings, store)

    # lifecycle of the control plane

    async def start(self) -> None:
        for dep in self.store.list_deployments():
            rt = self.runtime(dep.name)
            await self._open_endpoint(rt, dep)
            self._recover(rt, dep)
        self._spawn(self._idle_loop())

    async def close(self) -> None:
        for rt in self.runtimes.values():
            for task in rt.tasks():
                task.cancel()
            for uid in list(rt.retire_timers):
                rt.cancel_retire(uid)
        for task in list(self._tasks):
            task.cancel()
        procs = [p for rt in self.runtimes.values() for p in rt.processes.values()]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for rt in self.runtimes.values():
            rt.processes.clear()
            rt.serving = None
        leftover = kill_marked(PLANE_MARKER)
        if leftover:
            log.warning("killed %d process(es) of replicas that outlived them", len(leftover))
        endpoints = [e for rt in self.runtimes.values() for e in rt.endpoints()]
        await asyncio.gather(*(e.stop() for e in endpoints), return_exceptions=True)
        self.secrets.close()

    @property
    def tls(self) -> RevisionTLS:
        """The certificates of mutual TLS with revisions that require access authorization."""
        if self._tls is None:
            self._tls = RevisionTLS.ensure(self.settings.data_dir / "tls")
        return self._tls

    def runtime(self, name: str) -> DeploymentRuntime:
        rt = self.runtimes.get(name)
        if rt is None:
            rt = self.runtimes[name] = DeploymentRuntime(name)
        return rt

    # queries

    def get(self, name: str) -> Deployment:
        dep = self.store.get_deployment(name)
        if dep is None:
            raise _not_found(name)
        return dep

    def revisions(self, name: str) -> list[Revision]:
        self.get(name)
        return self.store.list_revisions(name)

    def revision(self, name: str, ref: str) -> Revision:
        """The revision ``ref`` (a uid, ``r2`` or ``2``) of deployment ``name``."""
        found = find_revision(self.revisions(name), ref)
        if found is None:
            raise NotFound(
                f"deployment {name} has no revision {shown(ref)} (record not found); "
                "list them with `bentoship revisions`"
            )
        return found

    def target_of(self, dep: Deployment) -> Revision | None:
        return self.store.get_revision(dep.target_revision) if dep.target_revision else None

    def status(self, dep: Deployment) -> DeploymentStatus:
        rt = self.runtimes.get(dep.name)
        target = self.target_of(dep)
        return derive_status(
            Lifecycle(dep.state),
            RevisionPhase(target.phase) if target else None,
            rt.health if rt else Health.HEALTHY,
            serving_process=rt is not None and rt.serving is not None,
        )

    def reason(self, dep: Deployment) -> str:
        target = self.target_of(dep)
        return target.reason if target is not None and target.reason else dep.reason

    def endpoint_url(self, dep: Deployment, role: Role = Role.STABLE) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        rt = self.runtimes.get(dep.name)
        if role is Role.CANDIDATE:
            endpoint = rt.candidate_endpoint if rt else None
            port = endpoint.port if endpoint else dep.candidate_port
        else:
            port = rt.endpoint.port if rt and rt.endpoint else dep.endpoint_port
        return f"http://{host}:{port}"

    def serving_of(self, dep: Deployment) -> Revision | None:
        return self.store.get_revision(dep.serving_revision) if dep.serving_revision else None

    def name_of(self, uid: str | None) -> str | None:
        """A revision's short name (``r3``) from its uid."""
        rev = self.store.get_revision(uid) if uid else None
        return revision_name(rev.seq) if rev else None

    def candidate_of(self, dep: Deployment) -> Revision | None:
        """The target revision while it is held for verification (starting or a candidate)."""
        target = self.target_of(dep)
        if target is None or not target.verify or target.phase not in HELD_PHASES:
            return None
        return target

    def requests(self, name: str) -> int:
        """Answers the endpoints gave for the deployment: the sum of its revisions' counts."""
        return sum(self.traffic.of(rev.uid).requests for rev in self.store.list_revisions(name))

    def log_path(self, rev: Revision) -> Path:
        return self.settings.logs_dir / rev.deployment / f"r{rev.seq}-{rev.uid[:8]}.log"

    def logs(self, rev: Revision, tail: int) -> list[str]:
        return tail_lines(self.log_path(rev), tail)

    def revision_extensions(self, rev: Revision, dep: Deployment) -> dict[str, Any]:
        rt = self.runtimes.get(dep.name)
        pool = rt.processes.get(rev.uid) if rt else None
        proc = pool.first if pool is not None else None
        alive = proc is not None
        traffic = self.traffic.of(rev.uid)
        return {
            "number": rev.seq,
            "name": revision_name(rev.seq),
            "phase": rev.phase,
            "reason": rev.reason,
            "bento": rev.bento,
            "serving": dep.serving_revision == rev.uid,
            "warm": alive,
            "port": proc.port if proc is not None and alive else None,
            "pid": proc.process.pid if proc is not None and alive else None,
            "ready_at": rev.ready_at,
            "activated_at": rev.activated_at,
            "candidate": rev.verify,
            "requests": traffic.requests,
            "errors": traffic.errors,
            "gpus": list(self.gpus.held_by(rev.uid)) if alive else [],
            "replicas": pool.describe() if pool is not None else [],
        }

    def replica_views(self, dep: Deployment) -> list[ReplicaView]:
        """Every running replica of the deployment's revisions: the serving revision's first,
        then a candidate's or a starting one's, then warm ones, newest first."""
        rt = self.runtimes.get(dep.name)
        if rt is None:
            return []
        views: list[ReplicaView] = []
        for rev in self.store.list_revisions(dep.name):
            pool = rt.processes.get(rev.uid)
            if pool is None:
                continue
            if rev.uid == dep.serving_revision:
                role = "serving"
            elif pool is rt.candidate:
                role = "candidate"
            elif rev.uid == dep.target_revision:
                role = "starting"
            else:
                role = "warm"
            for replica in pool.describe():
                held = self.gpus.holdings.get((rev.uid, replica["index"]))
                views.append(ReplicaView(rev, role, replica, held.indices if held else ()))
        order = ("serving", "candidate", "starting", "warm")
        return sorted(views, key=lambda v: (order.index(v.role), -v.revision.seq))

    def replica_count(self, dep: Deployment) -> dict[str, int]:
        """The serving revision's replicas: ready (taking requests) and desired (not draining),
        beside its scaling bounds; all 0 while none serves (scaled to zero, stopped)."""
        rt = self.runtimes.get(dep.name)
        rev = self.serving_of(dep)
        pool = rt.processes.get(rev.uid) if rt is not None and rev is not None else None
        policy = scaling_policy(rev.config, None) if rev is not None else None
        listed = pool.describe() if pool is not None else []
        return {
            "ready": sum(1 for r in listed if r["ready"] and not r["draining"]),
            "desired": sum(1 for r in listed if not r["draining"]),
            "min": policy.min_replicas if policy else 0,
            "max": policy.max_replicas if policy else 0,
        }

    def recreate_reason(self, dep: Deployment) -> str:
        """Why the target revision's rollout stops the serving one first, when it does."""
        rt = self.runtimes.get(dep.name)
        return rt.recreate.get(dep.target_revision or "", "") if rt else ""

    def gpu_request(self, bento: str, config: dict[str, Any]) -> GpuRequest | None:
        """The GPUs one replica of ``bento`` with ``config`` asks for (see gpu.allocator)."""
        return gpu_request(config, self._manifest(bento))

    def _manifest(self, bento: str) -> dict[str, Any] | None:
        """The pushed bento's manifest (its services' resources and traffic), if known."""
        name, _, version = bento.partition(":")
        item = self.store.get_artifact("bento", name, version)
        return item.manifest if item else None

    async def wait_for_change(
        self, name: str, known_status: str, timeout: float, known_phase: str | None = None
    ) -> None:
        """Return once the status (or the target's phase) differs, or after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        rt = self.runtime(name)
        while True:
            dep = self.store.get_deployment(name)
            if dep is None or self.status(dep) != known_status:
                return
            target = self.target_of(dep)
            if known_phase is not None and (target.phase if target else "") != known_phase:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await rt.changed(remaining)

    # the endpoint's view (endpoint.proxy.Backends)

    def requires_auth(self, deployment: str, role: Role) -> bool:
        """Read from the store once per change of the store, not once per request."""
        changes = self.store.changes
        known = self._requires_auth.get((deployment, role))
        if known is not None and known[0] == changes:
            return known[1]
        dep = self.store.get_deployment(deployment)
        uid = (
            None
            if dep is None
            else (dep.target_revision if role is Role.CANDIDATE else dep.serving_revision)
        )
        rev = self.store.get_revision(uid) if uid else None
        required = bool(rev and rev.config.get("access_authorization"))
        self._requires_auth[(deployment, role)] = (changes, required)
        return required

    def record_request(self, deployment: str) -> None:
        self.runtime(deployment).last_request = time.monotonic()

    def record_start(self, revision: str) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.started()
        if self.settings.metrics:
            self.traffic.started(str(revision))

    def record_abandoned(self, revision: str) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.finished(answered=False)
        if self.settings.metrics:
            self.traffic.abandoned(str(revision))

    def record_response(self, deployment: str, revision: str, status: int, seconds: float) -> None:
        replica = replica_of(revision)
        if replica is not None:
            replica.finished(answered=True)
        if self.settings.metrics:
            self.traffic.record(str(revision), status, seconds, started=True)

    def backend(self, deployment: str, role: Role, scope: Scope) -> Upstream | None:
        """A ready replica (the one with the fewest outstanding requests) of the revision that
        the role and the canary split choose; None while there is none."""
        rt = self.runtime(deployment)
        if role is Role.CANDIDATE:
            return rt.candidate.choose() if rt.candidate is not None else None
        if rt.candidate is not None and rt.split is not None and rt.split.to_canary(scope):
            chosen = rt.candidate.choose()
            if chosen is not None:
                return chosen
        return rt.serving.choose() if rt.serving is not None else None

    async def wait_backend(self, deployment: str, role: Role) -> Upstream | None:
        """A ready replica of the serving revision (or the candidate), waiting while the serving
        revision has none (waking from zero, a replica restarting)."""
        rt = self.runtime(deployment)
        if role is Role.CANDIDATE:
            return rt.candidate.choose() if rt.candidate is not None else None
        chosen = rt.serving.choose() if rt.serving is not None else None
        if chosen is not None:
            return chosen
        dep = self.store.get_deployment(deployment)
        if dep is None or dep.state != Lifecycle.ACTIVE or dep.serving_revision is None:
            return None
        if rt.health is Health.SCALED_TO_ZERO:
            self._wake(rt)
        deadline = time.monotonic() + BACKEND_WAIT_SECONDS
        while chosen is None and time.monotonic() < deadline:
            await rt.changed(1.0)
            chosen = rt.serving.choose() if rt.serving is not None else None
        return chosen

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
            self._new_revision(rt, dep, bento, config, verify=verify)
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
                    self._set_split(rt, split)
                return dep
            request = self.gpu_request(bento, config)
            replicas = min_replicas(config)
            self.gpus.check(request, replicas)
            if verify and self._gpu_plan(dep, request, replicas).kind is PlanKind.RECREATE:
                raise Conflict(
                    f"a candidate of {name} cannot run beside the revision it serves: only that "
                    "revision's GPUs fit it; deploy without manual promotion (a Recreate "
                    "rollout), or free GPUs first"
                )
            self.store.update_deployment(
                name, state=Lifecycle.ACTIVE, canary=split.to_dict() if split else None
            )
            rev = self._new_revision(rt, self.get(name), bento, config, verify=verify)
            self._announce_recreate(rt, rev, request)
            return self.get(name)

    async def promote(self, name: str, ref: str | None = None) -> Deployment:
        """Switch the endpoint to the candidate at once; promoting twice changes nothing."""
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.target_of(dep)
            if ref is not None and (target is None or self.revision(name, ref).uid != target.uid):
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
            self._event(target, EventKind.PROMOTED, f"candidate {label} promoted")
            self._activate(rt, target.uid)
            return self.get(name)

    async def discard(self, name: str) -> Deployment:
        """Stop the candidate (or a rollout still starting); the endpoint keeps what it serves."""
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self.target_of(dep)
            if target is None or target.phase not in HELD_PHASES:
                return dep
            self._event(target, EventKind.DISCARDED, f"{revision_name(target.seq)} discarded")
            self._supersede(rt, dep, DISCARDED)
            if dep.serving_revision is not None:
                self.store.update_deployment(name, target_revision=dep.serving_revision)
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
            self._set_split(rt, split)
            self._event(
                target,
                EventKind.CANARY,
                f"{revision_name(target.seq)} takes {split.weight}% of the endpoint's requests",
            )
            return self.get(name)

    async def rollback(self, name: str, ref: str | None) -> Deployment:
        rt = self.runtime(name)
        async with rt.lock:
            dep = self.get(name)
            target = self._rollback_target(dep, ref)
            active = dep.state == Lifecycle.ACTIVE
            underway = target.phase == RevisionPhase.STARTING or dep.serving_revision == target.uid
            if active and dep.target_revision == target.uid and underway:
                return dep
            self._supersede(rt, dep, SUPERSEDED)
            self.store.update_deployment(name, target_revision=target.uid, state=Lifecycle.ACTIVE)
            serving = self.name_of(dep.serving_revision) or "nothing"
            self._event(
                target,
                EventKind.ROLLED_BACK,
                f"rollback to {revision_name(target.seq)} (was serving {serving})",
            )
            proc = rt.processes.get(target.uid)
            if target.uid == dep.serving_revision and active:
                rt.notify()
            elif proc is not None and proc.alive and target.phase == RevisionPhase.WARM:
                self._activate(rt, target.uid)
            else:
                self._start_rollout(rt, target.uid)
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
            for hook in self.deleted_hooks:
                hook(name)
            shutil.rmtree(self.settings.logs_dir / name, ignore_errors=True)
            shutil.rmtree(self.settings.data_dir / "monitoring" / name, ignore_errors=True)
            for rev in revisions:
                shutil.rmtree(self.settings.data_dir / "runtime" / rev.uid, ignore_errors=True)
            rt.notify()
            self.runtimes.pop(name, None)
            return dep

    # the state machine

    def move(
        self, uid: str, phase: RevisionPhase, *, reason: str | None = None, **fields: Any
    ) -> Revision:
        """Move revision ``uid`` to ``phase`` (checked against the table), persist, wake waiters."""
        rev = self.store.get_revision(uid)
        if rev is None:
            raise NotFound(f"revision {uid} not found (record not found)")
        check_transition(RevisionPhase(rev.phase), phase)
        changes: dict[str, Any] = {"phase": phase, **fields}
        if reason is not None:
            changes["reason"] = reason
        self.store.update_revision(uid, **changes)
        if rev.phase != phase:
            log.info("%s %s: %s -> %s", rev.deployment, revision_name(rev.seq), rev.phase, phase)
            self._phase_event(rev, phase, reason)
        if rev.phase == RevisionPhase.CANDIDATE and phase != RevisionPhase.CANDIDATE:
            self._release_candidate(
                self.runtime(rev.deployment), uid, stop=phase != RevisionPhase.SERVING
            )
        self.runtime(rev.deployment).notify()
        moved = self.store.get_revision(uid)
        assert moved is not None
        return moved

    # internals

    def _event(self, rev: Revision, kind: EventKind, message: str) -> None:
        self.events.record(rev.deployment, kind, message, revision_name(rev.seq))

    def _phase_event(self, rev: Revision, phase: RevisionPhase, reason: str | None) -> None:
        name = revision_name(rev.seq)
        because = f": {reason}" if reason else ""
        if phase == RevisionPhase.STARTING:
            self._event(rev, EventKind.STARTING, f"{name} ({rev.bento}) is starting")
        elif phase == RevisionPhase.CANDIDATE:
            self._event(rev, EventKind.READY, f"{name} is ready")
            self._event(rev, EventKind.HELD, f"{name} is held as a candidate, without live traffic")
        elif phase == RevisionPhase.SERVING and rev.phase != RevisionPhase.WARM:
            self._event(rev, EventKind.READY, f"{name} is ready")
        elif phase == RevisionPhase.FAILED:
            self._event(rev, EventKind.FAILED, f"{name} failed{because}")
        elif phase == RevisionPhase.CANCELLED:
            self._event(rev, EventKind.CANCELLED, f"{name} was cancelled{because}")
        elif phase == RevisionPhase.WARM:
            self._event(rev, EventKind.WARM, f"{name} is kept warm for a rollback")
        elif phase == RevisionPhase.RETIRED:
            self._event(rev, EventKind.RETIRED, f"{name} is retired (stopped)")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _rollback_target(self, dep: Deployment, ref: str | None) -> Revision:
        if ref:
            rev = self.revision(dep.name, ref)
            if rev.ready_at is None:
                raise Conflict(
                    f"revision {revision_name(rev.seq)} of {dep.name} never became ready; "
                    "roll back to a revision that served"
                )
            return rev
        if dep.serving_revision and dep.serving_revision != dep.target_revision:
            serving = self.store.get_revision(dep.serving_revision)
            if serving is not None:
                return serving
        revisions = self.store.list_revisions(dep.name)
        earlier = [r for r in revisions if r.ready_at and r.uid != dep.serving_revision]
        if not earlier:
            raise Conflict(f"deployment {dep.name} has no earlier good revision to roll back to")
        return max(earlier, key=lambda r: (r.activated_at or "", r.seq))

    async def _open_endpoint(self, rt: DeploymentRuntime, dep: Deployment) -> None:
        endpoint = EndpointServer(dep.name, self)
        port = await endpoint.start(self.settings.host, dep.endpoint_port or 0)
        rt.endpoint = endpoint
        candidate = EndpointServer(dep.name, self, Role.CANDIDATE)
        candidate_port = await candidate.start(self.settings.host, dep.candidate_port or 0)
        rt.candidate_endpoint = candidate
        if port != dep.endpoint_port or candidate_port != dep.candidate_port:
            self.store.update_deployment(
                dep.name, endpoint_port=port, candidate_port=candidate_port
            )

    def _supersede(self, rt: DeploymentRuntime, dep: Deployment, reason: str) -> None:
        """Cancel the rollout underway or the candidate now; its process stops in the background."""
        rt.cancel_rollout()
        target = self.target_of(dep)
        if target is not None and target.phase in HELD_PHASES:
            self.move(target.uid, RevisionPhase.CANCELLED, reason=reason)

    def _set_split(self, rt: DeploymentRuntime, split: TrafficSplit) -> None:
        rt.split = split
        self.store.update_deployment(rt.name, canary=split.to_dict())
        rt.notify()

    def _hold(self, rt: DeploymentRuntime, uid: str) -> None:
        """Hold a ready revision as the candidate, with the canary split asked for, if any."""
        pool = rt.processes[uid]
        dep = self.get(rt.name)
        self.move(uid, RevisionPhase.CANDIDATE, reason="", ready_at=now())
        rt.candidate = pool
        rt.split = TrafficSplit.from_dict(dep.canary) if dep.canary else None
        for proc in pool.processes():
            self._spawn(self._watch_candidate(rt, pool, proc))
        log.info(
            "deployment %s holds candidate %s on %s",
            rt.name,
            pool.name,
            self.endpoint_url(dep, Role.CANDIDATE),
        )
        rt.notify()

    def _release_candidate(self, rt: DeploymentRuntime, uid: str, *, stop: bool) -> None:
        """The candidate left its phase: no more traffic to it; ``stop`` its process."""
        pool = rt.candidate
        if pool is None or pool.revision != uid:
            return
        rt.candidate = None
        rt.split = None
        self.store.update_deployment(rt.name, canary=None)
        if stop and rt.processes.get(uid) is pool:
            self._spawn(self._stop_unless_serving(rt, uid))

    async def _watch_candidate(
        self, rt: DeploymentRuntime, pool: ReplicaSet, proc: ServeProcess
    ) -> None:
        """A candidate one of whose processes exits has failed: it is not restarted."""
        await proc.process.wait()
        if proc.stopping or rt.candidate is not pool:
            return
        async with rt.lock:
            rev = self.store.get_revision(proc.revision)
            if rt.candidate is not pool or rev is None or rev.phase != RevisionPhase.CANDIDATE:
                return
            problem = f"its process exited with code {proc.process.returncode} while a candidate"
            await self._fail(rt, proc.revision, problem, RevisionPhase.CANDIDATE)

    def _new_revision(
        self,
        rt: DeploymentRuntime,
        dep: Deployment,
        bento: str,
        config: dict[str, Any],
        *,
        verify: bool = False,
    ) -> Revision:
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
        self._event(rev, EventKind.CREATED, f"{name} created: {bento}")
        self._event(rev, EventKind.STARTING, f"{name} ({bento}) is starting")
        rt.notify()
        rt.rollout = asyncio.create_task(self._rollout(rt, rev.uid))
        return rev

    def _start_rollout(self, rt: DeploymentRuntime, uid: str) -> None:
        """Start an existing revision again (a rollback to it, or a rollout cut by a restart)."""
        rt.cancel_rollout()
        self.move(uid, RevisionPhase.STARTING, reason="")
        rt.rollout = asyncio.create_task(self._rollout(rt, uid))

    async def _launch(
        self, rt: DeploymentRuntime, rev: Revision, index: int = 0, port: int | None = None
    ) -> ServeProcess:
        """Start replica ``index`` of the revision (in place of one with that index); a
        cancelled launch stops what it started."""
        pool = rt.processes.get(rev.uid)
        if pool is None:
            pool = rt.processes[rev.uid] = ReplicaSet(rev.uid, revision_name(rev.seq))
        old = pool.remove(index)
        if old is not None:
            await old.stop()
        self._launching[rev.uid] += 1
        try:
            proc = await self._launch_with_gpus(rt, rev, index, port)
        finally:
            self._launching[rev.uid] -= 1
            if self._launching[rev.uid] <= 0:
                del self._launching[rev.uid]
        if rt.processes.get(rev.uid) is not pool:
            await proc.stop()
            raise NotReadyError(f"{proc.name} stopped while replica {index} started")
        pool.add(proc)
        return proc

    async def _launch_with_gpus(
        self, rt: DeploymentRuntime, rev: Revision, index: int, port: int | None
    ) -> ServeProcess:
        envs = {**self._envs(rev), **self._gpu_envs(rev, index)}
        home = prepare_revision_home(
            self.settings.data_dir / "runtime" / rev.uid,
            rev.bento,
            self.settings.store_dir("bento"),
            self.settings.store_dir("model"),
        )
        given = self.secrets.deliver(rev)
        starting = asyncio.ensure_future(
            start_serve(
                revision=rev.uid,
                name=revision_name(rev.seq),
                replica=index,
                bento_tag=rev.bento,
                bentoml_home=home,
                log_path=self.log_path(rev),
                envs={**envs, **given.envs},
                port=port,
                tls=self.tls if rev.config.get("access_authorization") else None,
                log_pipe=given.log_pipe,
                on_stop=given.remove,
            )
        )
        try:
            proc = await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await starting).stop()
            given.remove()
            raise
        except Exception:
            given.remove()
            raise
        return proc

    def _envs(self, rev: Revision) -> dict[str, str]:
        """The revision's envs, and bentoml's config sending its monitors to a folder of its
        own (after the user's own ``BENTOML_CONFIG_OPTIONS``, if any)."""
        envs = process_envs(rev.config)
        folder = monitoring_dir(self.settings.data_dir, rev.deployment, rev.uid)
        given = envs.get("BENTOML_CONFIG_OPTIONS", "")
        options = config_options(folder, self.settings.monitoring_rotate_bytes)
        envs["BENTOML_CONFIG_OPTIONS"] = f"{given} {options}".strip()
        return envs

    def _gpu_envs(self, rev: Revision, index: int = 0) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` of the GPUs replica ``index`` of the revision gets (none:
        hide every GPU)."""
        if not self.gpus.inventory:
            return {}
        request = self.gpu_request(rev.bento, rev.config)
        if request is None:
            return {"CUDA_VISIBLE_DEVICES": ""}
        self._prune_gpus()
        before = self.gpus.holdings.get((rev.uid, index))
        label = revision_name(rev.seq)
        held = self.gpus.acquire(Holder(rev.deployment, rev.uid, label, index), request)
        devices = ",".join(map(str, held))
        if before is None or held != before.indices:
            which = f" replica {index}" if index else ""
            self._event(
                rev, EventKind.GPUS, f"{label}{which} gets GPU {devices} ({request.describe()})"
            )
        return {"CUDA_VISIBLE_DEVICES": devices, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def _prune_gpus(self) -> None:
        """Forget the GPUs of revisions with no process (nor one starting or restarting)."""
        live = set(self._launching)
        for rt in self.runtimes.values():
            live.update(rt.processes)
            if rt.health in (Health.UNHEALTHY, Health.RESTARTING) and rt.recreated is None:
                dep = self.store.get_deployment(rt.name)
                if dep is not None and dep.serving_revision:
                    live.add(dep.serving_revision)
        self.gpus.keep_only(live)

    def _gpu_plan(
        self, dep: Deployment, request: GpuRequest | None, replicas: int, label: str = ""
    ) -> GpuPlan:
        """The plan for ``replicas`` (``min_replicas``) replicas of ``request`` at once."""
        self._prune_gpus()
        return self.gpus.plan(request, dep.name, dep.serving_revision, label, replicas)

    def _announce_recreate(
        self, rt: DeploymentRuntime, rev: Revision, request: GpuRequest | None
    ) -> None:
        """Say in the events, and in the deployment's answer, that this rollout recreates."""
        replicas = min_replicas(rev.config)
        plan = self._gpu_plan(self.get(rt.name), request, replicas, revision_name(rev.seq))
        if plan.kind is PlanKind.RECREATE and rev.uid not in rt.recreate:
            rt.recreate[rev.uid] = plan.reason
            self._event(rev, EventKind.RECREATE, plan.reason)
            log.warning("deployment %s: %s", rt.name, plan.reason)

    async def _make_room(self, rt: DeploymentRuntime, rev: Revision) -> None:
        """Stop what must stop for the revision's GPUs: warm revisions, or (Recreate) the
        serving one; GpuUnavailable when other deployments hold them."""
        request = self.gpu_request(rev.bento, rev.config)
        if request is None or not self.gpus.inventory:
            return
        self.gpus.release(rev.uid)
        dep = self.get(rt.name)
        plan = self._gpu_plan(dep, request, min_replicas(rev.config), revision_name(rev.seq))
        if plan.kind is PlanKind.BUSY:
            raise GpuUnavailable(plan.reason)
        if plan.kind is PlanKind.RECREATE:
            self._announce_recreate(rt, rev, request)
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
            old = self.store.get_revision(uid)
            if old is not None and old.phase == RevisionPhase.WARM:
                rt.cancel_retire(uid)
                self.move(uid, RevisionPhase.RETIRED, reason="stopped to free its GPUs")

    def _restart_recreated(self, rt: DeploymentRuntime) -> None:
        """A rollout that stopped the serving revision failed: that revision starts again."""
        uid, rt.recreated = rt.recreated, None
        dep = self.store.get_deployment(rt.name)
        rev = self.store.get_revision(uid) if uid else None
        if dep is None or rev is None or dep.serving_revision != uid or rt.serving is not None:
            return
        self._event(rev, EventKind.RESTARTED, f"{revision_name(rev.seq)} starts again on its GPUs")
        rt.health = Health.RESTARTING
        rt.wakeup = self._spawn(self._restart_serving(rt, rev.uid))

    async def _start_ready(self, rt: DeploymentRuntime, rev: Revision) -> ReplicaSet:
        """Start the revision's minimum count of replicas (at least one) and wait until every
        one is ready; the first that fails stops the others' starts."""
        old = rt.processes.pop(rev.uid, None)
        if old is not None and old is not rt.serving:
            await old.stop()
        pool = rt.processes[rev.uid] = ReplicaSet(rev.uid, revision_name(rev.seq))
        starts = [
            asyncio.ensure_future(self._start_replica(rt, rev, index))
            for index in range(max(1, min_replicas(rev.config)))
        ]
        try:
            done, _ = await asyncio.wait(starts, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for start in starts:
                start.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
        for start in done:
            error = None if start.cancelled() else start.exception()
            if error is not None:
                raise error
        return pool

    async def _start_replica(
        self, rt: DeploymentRuntime, rev: Revision, index: int, port: int | None = None
    ) -> ServeProcess:
        """Launch replica ``index`` and wait until it is ready; a port taken meanwhile: another."""
        for attempt in range(PORT_ATTEMPTS):
            proc = await self._launch(rt, rev, index, port)
            try:
                await proc.wait_ready(
                    self.settings.readiness_timeout, self.settings.crash_loop_after
                )
            except PortTaken:
                if attempt == PORT_ATTEMPTS - 1:
                    raise
                log.info("%s %s: port %s was taken; another port", rt.name, proc.name, proc.port)
                port = None
                continue
            pool = rt.processes.get(rev.uid)
            if pool is not None:
                pool.mark_ready(proc)
            return proc
        raise AssertionError("unreachable")

    async def _stop_unless_serving(self, rt: DeploymentRuntime, uid: str) -> None:
        pool = rt.processes.get(uid)
        if pool is not None and pool is not rt.serving:
            del rt.processes[uid]
            await pool.stop()

    async def _rollout(self, rt: DeploymentRuntime, uid: str) -> None:
        try:
            rev = self.store.get_revision(uid)
            if rev is None:
                return
            await asyncio.sleep(SETTLE_SECONDS)
            try:
                async with rt.lock:
                    await self._make_room(rt, rev)
                await self._start_ready(rt, rev)
            except (NotReadyError, OSError, GpuUnavailable) as exc:
                async with rt.lock:
                    await self._fail(rt, uid, str(exc))
                    if rt.recreated is not None:
                        self._restart_recreated(rt)
                return
            async with rt.lock:
                dep = self.store.get_deployment(rt.name)
                current = self.store.get_revision(uid)
                wanted = dep is not None and dep.target_revision == uid
                if not wanted or dep is None or dep.state != Lifecycle.ACTIVE:
                    await self._stop_unless_serving(rt, uid)
                    if current is not None and current.phase == RevisionPhase.STARTING:
                        self.move(uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)
                    return
                if rt.rollout is asyncio.current_task():
                    rt.rollout = None
                if current is not None and current.verify:
                    self._hold(rt, uid)
                else:
                    self._activate(rt, uid)
        except asyncio.CancelledError:
            await asyncio.shield(self._stop_unless_serving(rt, uid))
            raise

    async def _fail(
        self,
        rt: DeploymentRuntime,
        uid: str,
        problem: str,
        phase: RevisionPhase = RevisionPhase.STARTING,
    ) -> None:
        await self._stop_unless_serving(rt, uid)
        rev = self.store.get_revision(uid)
        if rev is None or rev.phase != phase:
            return
        reason = f"revision {revision_name(rev.seq)} ({rev.bento}) failed: {problem}"
        cause = last_error_line(self.logs(rev, 400))
        if cause and cause not in reason:
            reason += f"; last error in its logs: {cause}"
        log.warning("%s", reason)
        self.move(uid, RevisionPhase.FAILED, reason=reason)

    def _activate(self, rt: DeploymentRuntime, uid: str) -> None:
        dep = self.get(rt.name)
        pool = rt.processes[uid]
        rev = self.store.get_revision(uid)
        stamp = now()
        ready_at = (rev.ready_at if rev else None) or stamp
        self.move(uid, RevisionPhase.SERVING, reason="", ready_at=ready_at, activated_at=stamp)
        self.store.update_deployment(rt.name, serving_revision=uid, reason="")
        rt.serving = pool
        rt.recreated = None
        rt.health = Health.HEALTHY
        rt.last_request = time.monotonic()
        rt.cancel_retire(uid)
        previous = dep.serving_revision
        if rev is not None:
            if previous == uid:
                self._event(rev, EventKind.RESTARTED, f"{pool.name} serves again")
            else:
                before = f" (was {self.name_of(previous)})" if previous else ""
                count = len(pool.replicas)
                on = f" on {count} replicas" if count > 1 else ""
                self._event(
                    rev, EventKind.SWITCHED, f"the endpoint now serves {pool.name}{on}{before}"
                )
        if previous and previous != uid:
            old = self.store.get_revision(previous)
            if old is not None and old.phase == RevisionPhase.SERVING:
                if previous in rt.processes:
                    self.move(previous, RevisionPhase.WARM)
                    self._schedule_retire(rt, previous)
                else:
                    self.move(previous, RevisionPhase.RETIRED)
        for proc in pool.processes():
            self._watch_replica(rt, proc)
        ports = ", ".join(str(p.port) for p in pool.processes())
        log.info("deployment %s now serves revision %s on port(s) %s", rt.name, pool.name, ports)
        rt.notify()

    def _watch_replica(self, rt: DeploymentRuntime, proc: ServeProcess) -> None:
        if not proc.watched:
            proc.watched = True
            self._spawn(self._watch(rt, proc))

    def _schedule_retire(self, rt: DeploymentRuntime, uid: str) -> None:
        rt.cancel_retire(uid)
        rt.retire_timers[uid] = asyncio.get_running_loop().call_later(
            self.settings.rollback_window, lambda: self._spawn(self._retire(rt, uid))
        )

    async def _retire(self, rt: DeploymentRuntime, uid: str) -> None:
        async with rt.lock:
            rt.retire_timers.pop(uid, None)
            rev = self.store.get_revision(uid)
            if rev is None or rev.phase != RevisionPhase.WARM:
                return
            await self._stop_unless_serving(rt, uid)
            self.move(uid, RevisionPhase.RETIRED)

    async def _watch(self, rt: DeploymentRuntime, proc: ServeProcess) -> None:
        """Replace a replica of the serving revision whose process dies, with backoff."""
        await proc.process.wait()
        if proc.stopping:
            return
        pool = rt.processes.get(proc.revision)
        if pool is not None:
            pool.discard(proc)
        proc.sweep()
        await proc.close_session()
        proc.release()
        dep = self.store.get_deployment(rt.name)
        serving = dep is not None and dep.serving_revision == proc.revision
        if not serving or dep is None or dep.state != Lifecycle.ACTIVE or rt.serving is not pool:
            if pool is not None and not pool.replicas and rt.processes.get(pool.revision) is pool:
                del rt.processes[pool.revision]
            return
        assert pool is not None
        which = f"{proc.name} replica {proc.replica}"
        log.warning("%s of %s exited; replacing it", which, rt.name)
        crashed = self.store.get_revision(proc.revision)
        if crashed is not None:
            code = proc.process.returncode
            self._event(crashed, EventKind.CRASHED, f"{which} exited (code {code}); restarting")
        if not pool.serving():
            rt.health = Health.UNHEALTHY
        rt.notify()
        self._spawn_replace(rt, pool, proc.replica, proc.port)

    def _spawn_replace(
        self,
        rt: DeploymentRuntime,
        pool: ReplicaSet,
        index: int,
        port: int | None = None,
        *,
        scale_up: bool = False,
    ) -> None:
        running = rt.replacing.get(index)
        if running is None or running.done():
            replace = self._replace(rt, pool, index, port, scale_up=scale_up)
            rt.replacing[index] = self._spawn(replace)

    async def _replace(
        self,
        rt: DeploymentRuntime,
        pool: ReplicaSet,
        index: int,
        port: int | None,
        *,
        scale_up: bool = False,
    ) -> None:
        """Start replica ``index`` of the serving ``pool`` (again) until it is ready; a
        ``scale_up`` replica gives up when other replicas took the GPUs it would get."""
        delay = 1.0
        while True:
            dep = self.store.get_deployment(rt.name)
            rev = self.store.get_revision(pool.revision)
            if dep is None or rev is None or dep.serving_revision != pool.revision:
                return
            if dep.state != Lifecycle.ACTIVE or rt.serving is not pool:
                return
            try:
                proc = await self._start_replica(rt, rev, index, port)
            except (NotReadyError, OSError, GpuUnavailable) as exc:
                stale = pool.remove(index)
                if stale is not None:
                    await stale.stop()
                if isinstance(exc, GpuUnavailable) and scale_up:
                    log.info("scale-up replica %s of %s not started: %s", index, rt.name, exc)
                    rt.notify()
                    return
                log.warning(
                    "replica %s of %s failed to start (%s); retrying in %.0f s",
                    index,
                    rt.name,
                    exc,
                    delay,
                )
                if not pool.serving():
                    rt.health = Health.UNHEALTHY
                rt.notify()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.restart_backoff_max)
                port = None
                continue
            async with rt.lock:
                dep = self.store.get_deployment(rt.name)
                current = dep is not None and dep.serving_revision == pool.revision
                active = dep is not None and dep.state == Lifecycle.ACTIVE
                if not current or not active or rt.serving is not pool:
                    if pool.discard(proc):
                        await proc.stop()
                    return
                self._watch_replica(rt, proc)
                rt.health = Health.HEALTHY
                kind = EventKind.SCALED if scale_up else EventKind.RESTARTED
                done = "started (scale-up)" if scale_up else "serves again"
                self._event(rev, kind, f"{pool.name} replica {index} {done}")
                rt.notify()
            return

    async def _restart_serving(self, rt: DeploymentRuntime, uid: str) -> None:
        """Start the serving revision's replicas again (after a restart, a wake-up or a failed
        Recreate), with backoff, then serve them."""
        delay = 1.0
        while True:
            dep = self.store.get_deployment(rt.name)
            rev = self.store.get_revision(uid)
            if dep is None or rev is None or dep.serving_revision != uid:
                return
            if dep.state != Lifecycle.ACTIVE:
                return
            try:
                await self._start_ready(rt, rev)
            except (NotReadyError, OSError, GpuUnavailable) as exc:
                log.warning("restart of %s failed (%s); retrying in %.0f s", rt.name, exc, delay)
                rt.health = Health.UNHEALTHY
                stale = rt.processes.pop(uid, None)
                if stale is not None:
                    await stale.stop()
                rt.notify()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.restart_backoff_max)
                continue
            async with rt.lock:
                dep = self.store.get_deployment(rt.name)
                if dep is None or dep.serving_revision != uid or dep.state != Lifecycle.ACTIVE:
                    await self._stop_unless_serving(rt, uid)
                    return
                self._activate(rt, uid)
            return

    def _recover(self, rt: DeploymentRuntime, dep: Deployment) -> None:
        """After a restart: nothing runs, so warm revisions are retired and rollouts restart."""
        for rev in self.store.list_revisions(dep.name):
            if rev.phase == RevisionPhase.WARM or (
                rev.phase == RevisionPhase.SERVING and rev.uid != dep.serving_revision
            ):
                self.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES and rev.uid != dep.target_revision:
                self.move(rev.uid, RevisionPhase.CANCELLED, reason=SUPERSEDED)
            elif rev.phase == RevisionPhase.CANDIDATE:
                self.move(rev.uid, RevisionPhase.STARTING)
        if dep.state == Lifecycle.TERMINATING:
            self._retire_all(dep.name)
            self.store.update_deployment(dep.name, state=Lifecycle.TERMINATED)
            return
        if dep.state != Lifecycle.ACTIVE:
            return
        if dep.serving_revision:
            rt.health = Health.RESTARTING
            rt.wakeup = self._spawn(self._restart_serving(rt, dep.serving_revision))
        target = self.target_of(dep)
        starting = target is not None and target.phase == RevisionPhase.STARTING
        if target is not None and starting and target.uid != dep.serving_revision:
            rt.rollout = asyncio.create_task(self._rollout(rt, target.uid))

    def _wake(self, rt: DeploymentRuntime) -> None:
        if rt.wakeup is not None and not rt.wakeup.done():
            return
        dep = self.store.get_deployment(rt.name)
        if dep is None or dep.serving_revision is None:
            return
        rt.health = Health.RESTARTING
        rt.notify()
        woken = self.store.get_revision(dep.serving_revision)
        if woken is not None:
            self._event(woken, EventKind.WOKEN, "a request arrived: starting again")
        rt.wakeup = asyncio.create_task(self._restart_serving(rt, dep.serving_revision))

    def _retire_all(self, name: str) -> None:
        for rev in self.store.list_revisions(name):
            if rev.phase in (RevisionPhase.SERVING, RevisionPhase.WARM):
                self.move(rev.uid, RevisionPhase.RETIRED)
            elif rev.phase in HELD_PHASES:
                self.move(rev.uid, RevisionPhase.CANCELLED, reason="the deployment was terminated")

    async def _terminate(self, rt: DeploymentRuntime) -> Deployment:
        dep = self.get(rt.name)
        if dep.state == Lifecycle.TERMINATED:
            return dep
        self.store.update_deployment(rt.name, state=Lifecycle.TERMINATING)
        rt.notify()
        rt.cancel_rollout()
        if rt.wakeup is not None:
            rt.wakeup.cancel()
        rt.cancel_replacements()
        rt.serving = None
        rt.candidate = None
        rt.split = None
        rt.health = Health.HEALTHY
        for uid in list(rt.retire_timers):
            rt.cancel_retire(uid)
        procs = list(rt.processes.values())
        rt.processes.clear()
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        self._retire_all(rt.name)
        self.store.update_deployment(rt.name, state=Lifecycle.TERMINATED)
        self.events.record(rt.name, EventKind.TERMINATED, f"deployment {rt.name} terminated")
        rt.notify()
        return self.get(rt.name)

    async def _idle_loop(self) -> None:
        """Scale idle deployments whose config allows zero replicas down to zero."""
        while True:
            await asyncio.sleep(1.0)
            for rt in list(self.runtimes.values()):
                if rt.serving is not None and not rt.lock.locked():
                    self._autoscale(rt)
                if rt.serving is not None and not rt.lock.locked():
                    await self._scale_to_zero_if_idle(rt)

    def _autoscale(self, rt: DeploymentRuntime) -> None:
        """Start or drain replicas of the serving revision as its autoscaler settles."""
        pool = rt.serving
        dep = self.store.get_deployment(rt.name)
        if pool is None or dep is None or dep.state != Lifecycle.ACTIVE:
            return
        rev = self.store.get_revision(pool.revision)
        if rev is None or dep.serving_revision != rev.uid:
            return
        if rt.autoscaler is None or rt.autoscaler[0] != rev.uid:
            concurrency = declared_concurrency(self._manifest(rev.bento))
            rt.autoscaler = (rev.uid, Autoscaler(scaling_policy(rev.config, concurrency)))
        scaler = rt.autoscaler[1]
        active = sorted(i for i, r in pool.replicas.items() if not r.draining)
        coming = [i for i, t in rt.replacing.items() if not t.done() and i not in active]
        current = len(active) + len(coming)
        outstanding = sum(r.outstanding for r in pool.replicas.values())
        wanted = scaler.desired(time.monotonic(), outstanding, current)
        desired = self._gpu_capped(rev, coming, current, wanted)
        if desired != current:
            because = f"{outstanding} requests outstanding, concurrency {scaler.policy.concurrency}"
            message = f"{pool.name} scales from {current} to {desired} replicas ({because})"
            self._event(rev, EventKind.SCALED, message)
            log.info("deployment %s: %s", rt.name, message)
        held = (wanted, desired) if desired < wanted else None
        if held is not None and held != rt.scale_held:
            request = self.gpu_request(rev.bento, rev.config)
            unplaced = [i for i in coming if (rev.uid, i) not in self.gpus.holdings]
            starting = len(unplaced) + desired - current
            why = self.gpus.full_reason(request, starting) if request else "no free GPU"
            message = f"{pool.name} scale-up to {wanted} held at {desired}: {why}"
            self._event(rev, EventKind.SCALED, message)
            log.info("deployment %s: %s", rt.name, message)
        rt.scale_held = held
        if desired == current:
            return
        if desired > current:
            taken = set(coming) | set(pool.replicas)
            free = (i for i in range(len(taken) + desired) if i not in taken)
            for _, index in zip(range(desired - current), free, strict=False):
                self._spawn_replace(rt, pool, index, scale_up=True)
            return
        for index in active[desired - current :]:
            self._spawn(self._drain(rt, pool, index))

    def _gpu_capped(self, rev: Revision, coming: list[int], current: int, desired: int) -> int:
        """The count a scale-up from ``current`` to ``desired`` reaches on free GPUs, no
        replica on another's GPU (``coming``: replicas started but maybe not placed yet)."""
        if desired <= current or not self.gpus.inventory:
            return desired
        request = self.gpu_request(rev.bento, rev.config)
        if request is None:
            return desired
        self._prune_gpus()
        unplaced = sum(1 for i in coming if (rev.uid, i) not in self.gpus.holdings)
        room = self.gpus.room(request, unplaced + desired - current) - unplaced
        return min(desired, current + max(0, room))

    async def _drain(self, rt: DeploymentRuntime, pool: ReplicaSet, index: int) -> None:
        """Stop replica ``index`` once its outstanding requests are answered; free its GPUs."""
        await pool.drain(index)
        self.gpus.release(pool.revision, index)
        rt.notify()

    async def _scale_to_zero_if_idle(self, rt: DeploymentRuntime) -> None:
        serving = rt.serving
        dep = self.store.get_deployment(rt.name)
        if serving is None or dep is None or dep.serving_revision is None:
            return
        rev = self.store.get_revision(dep.serving_revision)
        if rev is None or dep.state != Lifecycle.ACTIVE or min_replicas(rev.config) > 0:
            return
        idle = time.monotonic() - rt.last_request
        if idle < self.settings.scale_to_zero_after:
            return
        rt.processes.pop(dep.serving_revision, None)
        rt.cancel_replacements()
        rt.serving = None
        rt.health = Health.SCALED_TO_ZERO
        await serving.stop()
        log.info("deployment %s scaled to zero after %.0f s idle", rt.name, idle)
        self._event(rev, EventKind.SCALED_TO_ZERO, f"scaled to zero after {idle:.0f} s idle")
        rt.notify()
