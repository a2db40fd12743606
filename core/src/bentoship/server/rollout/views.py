"""The read side of the rollout: what the API, the console and the metrics sampler show of a
deployment and its revisions. Nothing here changes state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...refs import find_revision, revision_name
from ...statuses import DeploymentStatus
from ...tags import shown
from ..endpoint.interface import Role
from ..errors import Conflict, NotFound
from ..gpu.allocator import GpuAllocator
from ..store import Deployment, Revision
from .autoscale import scaling_policy
from .context import HELD_PHASES, RolloutContext
from .phases import Health, Lifecycle, RevisionPhase, derive_status
from .replicas import ReplicaView
from .runner import tail_lines

__all__ = ["RolloutViews"]

ROLE_ORDER = ("serving", "candidate", "starting", "warm")


class RolloutViews:
    def __init__(self, ctx: RolloutContext, gpus: GpuAllocator) -> None:
        self.ctx = ctx
        self.gpus = gpus

    def revisions(self, name: str) -> list[Revision]:
        self.ctx.get(name)
        return self.ctx.store.list_revisions(name)

    def revision(self, name: str, ref: str) -> Revision:
        """The revision ``ref`` (a uid, ``r2`` or ``2``) of deployment ``name``."""
        found = find_revision(self.revisions(name), ref)
        if found is None:
            raise NotFound(
                f"deployment {name} has no revision {shown(ref)} (record not found); "
                "list them with `bentoship revisions`"
            )
        return found

    def rollback_target(self, dep: Deployment, ref: str | None, force: bool = False) -> Revision:
        """The revision a rollback to ``ref`` (or, without one, to the last good) goes to: one
        that served (a candidate that was discarded, or failed before it was promoted, is
        refused unless ``force``)."""
        if ref:
            rev = self.revision(dep.name, ref)
            name = revision_name(rev.seq)
            if rev.ready_at is None:
                raise Conflict(
                    f"revision {name} of {dep.name} never became ready; "
                    "roll back to a revision that served"
                )
            if rev.activated_at is None and not force:
                raise Conflict(
                    f"revision {name} of {dep.name} never served: it was {rev.phase} without "
                    "being promoted (it failed or was discarded before it took live traffic); "
                    "roll back to a revision that served, or pass force=true"
                )
            return rev
        if dep.serving_revision and dep.serving_revision != dep.target_revision:
            serving = self.ctx.store.get_revision(dep.serving_revision)
            if serving is not None:
                return serving
        revisions = self.ctx.store.list_revisions(dep.name)
        earlier = [r for r in revisions if r.activated_at and r.uid != dep.serving_revision]
        if not earlier:
            raise Conflict(f"deployment {dep.name} has no earlier good revision to roll back to")
        return max(earlier, key=lambda r: (r.activated_at or "", r.seq))

    def status(self, dep: Deployment) -> DeploymentStatus:
        rt = self.ctx.runtimes.get(dep.name)
        target = self.ctx.target_of(dep)
        return derive_status(
            Lifecycle(dep.state),
            RevisionPhase(target.phase) if target else None,
            rt.health if rt else Health.HEALTHY,
            serving_process=rt is not None and rt.serving is not None,
        )

    def reason(self, dep: Deployment) -> str:
        target = self.ctx.target_of(dep)
        return target.reason if target is not None and target.reason else dep.reason

    def endpoint_url(self, dep: Deployment, role: Role = Role.STABLE) -> str:
        host = self.ctx.settings.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        rt = self.ctx.runtimes.get(dep.name)
        if role is Role.CANDIDATE:
            endpoint = rt.candidate_endpoint if rt else None
            port = endpoint.port if endpoint else dep.candidate_port
        else:
            port = rt.endpoint.port if rt and rt.endpoint else dep.endpoint_port
        return f"http://{host}:{port}"

    def candidate_of(self, dep: Deployment) -> Revision | None:
        """The target revision while it is held for verification (starting or a candidate)."""
        target = self.ctx.target_of(dep)
        if target is None or not target.verify or target.phase not in HELD_PHASES:
            return None
        return target

    def requests(self, name: str) -> int:
        """Answers the endpoints gave for the deployment: the sum of its revisions' counts."""
        traffic = self.ctx.traffic
        return sum(traffic.of(rev.uid).requests for rev in self.ctx.store.list_revisions(name))

    def log_path(self, rev: Revision) -> Path:
        """The file the revision's stderr (and bentoship's own lines about it) is written to."""
        return self.ctx.log_path(rev)

    def logs(self, rev: Revision, tail: int) -> list[str]:
        return tail_lines(self.ctx.log_path(rev), tail)

    def revision_extensions(self, rev: Revision, dep: Deployment) -> dict[str, Any]:
        rt = self.ctx.runtimes.get(dep.name)
        pool = rt.processes.get(rev.uid) if rt else None
        proc = pool.first if pool is not None else None
        traffic = self.ctx.traffic.of(rev.uid)
        return {
            "number": rev.seq,
            "name": revision_name(rev.seq),
            "phase": rev.phase,
            "reason": rev.reason,
            "bento": rev.bento,
            "serving": dep.serving_revision == rev.uid,
            "warm": proc is not None,
            "port": proc.port if proc is not None else None,
            "pid": proc.pid if proc is not None else None,
            "ready_at": rev.ready_at,
            "activated_at": rev.activated_at,
            "candidate": rev.verify,
            "requests": traffic.requests,
            "errors": traffic.errors,
            "gpus": list(self.gpus.held_by(rev.uid)) if proc is not None else [],
            "replicas": pool.describe() if pool is not None else [],
        }

    def replica_views(self, dep: Deployment) -> list[ReplicaView]:
        """Every running replica of the deployment's revisions: the serving revision's first,
        then a candidate's or a starting one's, then warm ones, newest first."""
        rt = self.ctx.runtimes.get(dep.name)
        if rt is None:
            return []
        views: list[ReplicaView] = []
        for rev in self.ctx.store.list_revisions(dep.name):
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
        return sorted(views, key=lambda v: (ROLE_ORDER.index(v.role), -v.revision.seq))

    def replica_count(self, dep: Deployment) -> dict[str, int]:
        """The serving revision's replicas: ready (taking requests) and desired (not draining),
        beside its scaling bounds; all 0 while none serves (scaled to zero, stopped)."""
        rt = self.ctx.runtimes.get(dep.name)
        rev = self.ctx.serving_of(dep)
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
        rt = self.ctx.runtimes.get(dep.name)
        return rt.recreate.get(dep.target_revision or "", "") if rt else ""

    async def wait_for_change(
        self, name: str, known_status: str, timeout: float, known_phase: str | None = None
    ) -> None:
        """Return once the status (or the target's phase) differs, or after ``timeout`` s."""
        clock = self.ctx.clock
        deadline = clock.monotonic() + timeout
        rt = self.ctx.runtime(name)
        while True:
            dep = self.ctx.store.get_deployment(name)
            if dep is None or self.status(dep) != known_status:
                return
            target = self.ctx.target_of(dep)
            if known_phase is not None and (target.phase if target else "") != known_phase:
                return
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return
            await rt.changed(remaining)
