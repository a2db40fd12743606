"""Deployments, revisions and their ``bentoml serve`` processes: blue/green rollouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..logtail import last_error_line
from ..statuses import DeploymentStatus
from .deploy_config import min_replicas, process_envs
from .proxy import EndpointServer
from .runner import NotReadyError, ServeProcess, start_serve, tail_lines
from .runtime import prepare_revision_home
from .settings import ServerSettings
from .store import Deployment, Revision, Store, new_uid, now

log = logging.getLogger("bentoship.server")

BACKEND_WAIT_SECONDS = 60.0


class Conflict(Exception):
    """The request cannot be applied to the deployment's current state."""


class Controller:
    """Owns every deployment's processes and endpoint; the store is the durable truth."""

    def __init__(self, settings: ServerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.token = settings.token
        self.processes: dict[str, ServeProcess] = {}
        self.endpoints: dict[str, EndpointServer] = {}
        self.backends: dict[str, ServeProcess] = {}
        self.health: dict[str, str] = {}
        self.request_counts: dict[str, int] = defaultdict(int)
        self.last_request: dict[str, float] = {}
        self._rollouts: dict[str, asyncio.Task[None]] = {}
        self._retire: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._wakeups: dict[str, asyncio.Task[None]] = {}

    # lifecycle

    async def start(self) -> None:
        for dep in self.store.list_deployments():
            await self._open_endpoint(dep)
            self._recover(dep)
        self._spawn(self._idle_loop())

    async def close(self) -> None:
        for task in (
            list(self._rollouts.values()) + list(self._wakeups.values()) + list(self._tasks)
        ):
            task.cancel()
        for handle in self._retire.values():
            handle.cancel()
        await asyncio.gather(*(p.stop() for p in self.processes.values()), return_exceptions=True)
        self.processes.clear()
        await asyncio.gather(*(e.stop() for e in self.endpoints.values()), return_exceptions=True)

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks[name]

    # queries

    def status(self, dep: Deployment) -> str:
        if dep.state in (DeploymentStatus.TERMINATED, DeploymentStatus.TERMINATING):
            return dep.state
        target = self.store.get_revision(dep.target_revision) if dep.target_revision else None
        if target is None:
            return DeploymentStatus.DEPLOYING
        if target.phase in ("pending", "starting"):
            return DeploymentStatus.DEPLOYING
        if target.phase in ("failed", "cancelled"):
            return DeploymentStatus.FAILED
        health = self.health.get(dep.name, "ok")
        if health == "scaled":
            return DeploymentStatus.SCALED_TO_ZERO
        if health == "unhealthy":
            return DeploymentStatus.UNHEALTHY
        if health == "recovering" or dep.serving_revision not in self.processes:
            return DeploymentStatus.DEPLOYING
        return DeploymentStatus.RUNNING

    def reason(self, dep: Deployment) -> str:
        target = self.store.get_revision(dep.target_revision) if dep.target_revision else None
        if target is not None and target.reason:
            return target.reason
        return dep.reason

    def endpoint_url(self, dep: Deployment) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        port = self.endpoints[dep.name].port if dep.name in self.endpoints else dep.endpoint_port
        return f"http://{host}:{port}"

    def log_path(self, rev: Revision) -> Path:
        return self.settings.logs_dir / rev.deployment / f"r{rev.seq}-{rev.uid[:8]}.log"

    def logs(self, rev: Revision, tail: int) -> list[str]:
        return tail_lines(self.log_path(rev), tail)

    def revision_extensions(self, rev: Revision, dep: Deployment) -> dict[str, Any]:
        proc = self.processes.get(rev.uid)
        return {
            "number": rev.seq,
            "phase": rev.phase,
            "reason": rev.reason,
            "bento": rev.bento,
            "serving": dep.serving_revision == rev.uid,
            "warm": bool(proc and proc.alive),
            "port": proc.port if proc and proc.alive else None,
            "pid": proc.process.pid if proc and proc.alive else None,
            "ready_at": rev.ready_at,
            "activated_at": rev.activated_at,
        }

    # the proxy's view (proxy.Backends)

    def requires_auth(self, deployment: str) -> bool:
        dep = self.store.get_deployment(deployment)
        if dep is None or dep.serving_revision is None:
            return False
        rev = self.store.get_revision(dep.serving_revision)
        return bool(rev and rev.config.get("access_authorization"))

    def record_request(self, deployment: str) -> None:
        self.request_counts[deployment] += 1
        self.last_request[deployment] = time.monotonic()

    async def backend(self, deployment: str) -> ServeProcess | None:
        serving = self.backends.get(deployment)
        if serving is not None:
            return serving
        dep = self.store.get_deployment(deployment)
        if dep is None or dep.state != "active" or dep.serving_revision is None:
            return None
        if self.health.get(deployment) == "scaled":
            self._wake(deployment)
        deadline = time.monotonic() + BACKEND_WAIT_SECONDS
        while deployment not in self.backends and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed[deployment].wait(), 1.0)
        return self.backends.get(deployment)

    # change notification and the long-poll wait

    def notify(self, name: str) -> None:
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    async def wait_for_change(self, name: str, known_status: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            event = self._changed[name]
            dep = self.store.get_deployment(name)
            if dep is None or self.status(dep) != known_status:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # commands (callers hold self.lock(name))

    async def create(self, name: str, bento: str, config: dict[str, Any]) -> Deployment:
        dep = Deployment(
            name=name,
            uid=new_uid(),
            cluster="local",
            created_at=now(),
            updated_at=None,
            state="active",
            target_revision=None,
            serving_revision=None,
            endpoint_port=None,
            reason="",
        )
        self.store.insert_deployment(dep)
        await self._open_endpoint(dep)
        self._new_revision(name, bento, config)
        return self._get(name)

    async def update(self, name: str, bento: str, config: dict[str, Any]) -> Deployment:
        dep = self._get(name)
        target = self.store.get_revision(dep.target_revision) if dep.target_revision else None
        same = target is not None and target.bento == bento and target.config == config
        if target is not None and same and target.phase in ("pending", "starting", "ready"):
            if dep.state == "active":
                return dep
            self.store.update_deployment(name, state="active")
            self._start_rollout(name, target.uid)
        else:
            self.store.update_deployment(name, state="active")
            self._new_revision(name, bento, config)
        return self._get(name)

    async def rollback(self, name: str, ref: str | None) -> Deployment:
        dep = self._get(name)
        target = self._rollback_target(dep, ref)
        if dep.state == "active" and dep.serving_revision == target.uid == dep.target_revision:
            return dep
        self._cancel_rollout(name)
        self.store.update_deployment(name, target_revision=target.uid, state="active")
        proc = self.processes.get(target.uid)
        if proc is not None and proc.alive and self.health.get(name) != "scaled":
            self._activate(name, target.uid)
        else:
            self._start_rollout(name, target.uid)
        return self._get(name)

    async def terminate(self, name: str) -> Deployment:
        dep = self._get(name)
        if dep.state == DeploymentStatus.TERMINATED:
            return dep
        self.store.update_deployment(name, state=DeploymentStatus.TERMINATING)
        self.notify(name)
        await self._stop_all(name)
        self.store.update_deployment(name, state=DeploymentStatus.TERMINATED)
        self.notify(name)
        return self._get(name)

    async def delete(self, name: str) -> Deployment:
        dep = await self.terminate(name)
        revisions = self.store.list_revisions(name)
        endpoint = self.endpoints.pop(name, None)
        if endpoint is not None:
            await endpoint.stop()
        self.store.delete_deployment(name)
        shutil.rmtree(self.settings.logs_dir / name, ignore_errors=True)
        for rev in revisions:
            shutil.rmtree(self.settings.data_dir / "runtime" / rev.uid, ignore_errors=True)
        self.notify(name)
        return dep

    # internals

    def _get(self, name: str) -> Deployment:
        dep = self.store.get_deployment(name)
        if dep is None:
            raise KeyError(name)
        return dep

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _rollback_target(self, dep: Deployment, ref: str | None) -> Revision:
        revisions = self.store.list_revisions(dep.name)
        if ref:
            for rev in revisions:
                if ref in (rev.uid, f"r{rev.seq}", str(rev.seq)):
                    if rev.ready_at is None:
                        raise Conflict(
                            f"revision r{rev.seq} of {dep.name} never became ready; "
                            "roll back to a revision that served"
                        )
                    return rev
            raise LookupError(
                f"deployment {dep.name} has no revision {ref!r}; "
                "list them with `bentoship revisions`"
            )
        if dep.serving_revision and dep.serving_revision != dep.target_revision:
            serving = self.store.get_revision(dep.serving_revision)
            if serving is not None:
                return serving
        candidates = [r for r in revisions if r.ready_at and r.uid != dep.serving_revision]
        if not candidates:
            raise Conflict(f"deployment {dep.name} has no earlier good revision to roll back to")
        return max(candidates, key=lambda r: (r.activated_at or "", r.seq))

    async def _open_endpoint(self, dep: Deployment) -> None:
        endpoint = EndpointServer(dep.name, self)
        port = await endpoint.start(self.settings.host, dep.endpoint_port or 0)
        self.endpoints[dep.name] = endpoint
        if port != dep.endpoint_port:
            self.store.update_deployment(dep.name, endpoint_port=port)

    def _new_revision(self, name: str, bento: str, config: dict[str, Any]) -> Revision:
        rev = Revision(
            uid=new_uid(),
            deployment=name,
            seq=self.store.next_seq(name),
            bento=bento,
            config=config,
            created_at=now(),
            phase="pending",
        )
        self.store.insert_revision(rev)
        self._cancel_rollout(name)
        self.store.update_deployment(name, target_revision=rev.uid)
        self._start_rollout(name, rev.uid)
        return rev

    def _cancel_rollout(self, name: str) -> None:
        task = self._rollouts.pop(name, None)
        if task is not None and not task.done():
            task.cancel()

    def _start_rollout(self, name: str, uid: str) -> None:
        self._cancel_rollout(name)
        self.store.update_revision(uid, phase="starting", reason="")
        self._rollouts[name] = asyncio.create_task(self._rollout(name, uid))
        self.notify(name)

    async def _launch(self, rev: Revision, port: int | None = None) -> ServeProcess:
        old = self.processes.pop(rev.uid, None)
        if old is not None:
            await old.stop()
        home = prepare_revision_home(
            self.settings.data_dir / "runtime" / rev.uid,
            rev.bento,
            self.settings.store_dir("bento"),
            self.settings.store_dir("model"),
        )
        proc = await start_serve(
            revision=rev.uid,
            bento_tag=rev.bento,
            bentoml_home=home,
            log_path=self.log_path(rev),
            envs=process_envs(rev.config),
            port=port,
        )
        self.processes[rev.uid] = proc
        return proc

    async def _rollout(self, name: str, uid: str) -> None:
        rev = self.store.get_revision(uid)
        assert rev is not None
        try:
            proc = await self._launch(rev)
            await proc.wait_ready(self.settings.readiness_timeout)
        except NotReadyError as exc:
            await self._fail(rev, str(exc))
            return
        except asyncio.CancelledError:
            await self._discard(uid, phase="cancelled", reason="superseded by a newer request")
            raise
        dep = self.store.get_deployment(name)
        if dep is None or dep.target_revision != uid or dep.state != "active":
            await self._discard(uid, phase="cancelled", reason="superseded by a newer request")
            return
        self._activate(name, uid)

    async def _discard(self, uid: str, *, phase: str, reason: str) -> None:
        proc = self.processes.pop(uid, None)
        if proc is not None:
            await asyncio.shield(proc.stop())
        rev = self.store.get_revision(uid)
        if rev is not None and rev.phase in ("pending", "starting"):
            self.store.update_revision(uid, phase=phase, reason=reason)
            self.notify(rev.deployment)

    async def _fail(self, rev: Revision, problem: str) -> None:
        proc = self.processes.pop(rev.uid, None)
        if proc is not None:
            await proc.stop()
        cause = last_error_line(self.logs(rev, 400))
        reason = f"revision r{rev.seq} ({rev.bento}) failed: {problem}"
        if cause:
            reason += f"; last error in its logs: {cause}"
        self.store.update_revision(rev.uid, phase="failed", reason=reason)
        log.warning("%s", reason)
        self.notify(rev.deployment)

    def _activate(self, name: str, uid: str) -> None:
        dep = self._get(name)
        proc = self.processes[uid]
        self.backends[name] = proc
        previous = dep.serving_revision
        stamp = now()
        rev = self.store.get_revision(uid)
        self.store.update_revision(
            uid,
            phase="ready",
            reason="",
            ready_at=(rev.ready_at if rev else None) or stamp,
            activated_at=stamp,
        )
        self.store.update_deployment(name, serving_revision=uid, reason="")
        self.health[name] = "ok"
        self.last_request[name] = time.monotonic()
        handle = self._retire.pop(uid, None)
        if handle is not None:
            handle.cancel()
        if previous and previous != uid:
            self._schedule_retire(previous)
        if not proc.watched:
            proc.watched = True
            self._spawn(self._watch(name, proc))
        log.info("deployment %s now serves revision %s on port %s", name, uid[:8], proc.port)
        self.notify(name)

    def _schedule_retire(self, uid: str) -> None:
        loop = asyncio.get_running_loop()
        old = self._retire.pop(uid, None)
        if old is not None:
            old.cancel()
        self._retire[uid] = loop.call_later(
            self.settings.rollback_window, lambda: self._spawn(self._retire_now(uid))
        )

    async def _retire_now(self, uid: str) -> None:
        self._retire.pop(uid, None)
        rev = self.store.get_revision(uid)
        if rev is None:
            return
        dep = self.store.get_deployment(rev.deployment)
        if dep is not None and dep.serving_revision == uid:
            return
        proc = self.processes.pop(uid, None)
        if proc is not None:
            await proc.stop()
        if rev.phase == "ready":
            self.store.update_revision(uid, phase="retired")

    async def _watch(self, name: str, proc: ServeProcess) -> None:
        """Restart the serving revision with backoff when its process dies."""
        await proc.process.wait()
        if proc.stopping:
            return
        proc.kill_workers()
        await proc.close_session()
        if self.processes.get(proc.revision) is proc:
            del self.processes[proc.revision]
        dep = self.store.get_deployment(name)
        if dep is None or dep.serving_revision != proc.revision or dep.state != "active":
            return
        log.warning("revision %s of %s exited; restarting", proc.revision[:8], name)
        self.backends.pop(name, None)
        self.health[name] = "unhealthy"
        self.notify(name)
        await self._restart_serving(name, proc.revision, port=proc.port)

    async def _restart_serving(self, name: str, uid: str, port: int | None = None) -> None:
        delay = 1.0
        while True:
            dep = self.store.get_deployment(name)
            rev = self.store.get_revision(uid)
            if dep is None or rev is None or dep.serving_revision != uid or dep.state != "active":
                return
            try:
                proc = await self._launch(rev, port=port)
                await proc.wait_ready(self.settings.readiness_timeout)
            except (NotReadyError, OSError) as exc:
                log.warning("restart of %s failed (%s); retrying in %.0f s", name, exc, delay)
                self.health[name] = "unhealthy"
                stale = self.processes.pop(uid, None)
                if stale is not None:
                    await stale.stop()
                self.notify(name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.restart_backoff_max)
                port = None
                continue
            dep = self.store.get_deployment(name)
            if dep is None or dep.serving_revision != uid or dep.state != "active":
                self.processes.pop(uid, None)
                await proc.stop()
                return
            self._activate(name, uid)
            return

    def _recover(self, dep: Deployment) -> None:
        for rev in self.store.list_revisions(dep.name):
            if rev.phase == "ready" and rev.uid != dep.serving_revision:
                self.store.update_revision(rev.uid, phase="retired")
        if dep.state == DeploymentStatus.TERMINATING:
            self.store.update_deployment(dep.name, state=DeploymentStatus.TERMINATED)
            return
        if dep.state != "active":
            return
        if dep.serving_revision:
            self.health[dep.name] = "recovering"
            self._spawn(self._restart_serving(dep.name, dep.serving_revision))
        target = self.store.get_revision(dep.target_revision) if dep.target_revision else None
        pending = target is not None and target.phase in ("pending", "starting")
        if target is not None and pending and target.uid != dep.serving_revision:
            self._start_rollout(dep.name, target.uid)

    def _wake(self, name: str) -> None:
        if name in self._wakeups and not self._wakeups[name].done():
            return
        dep = self.store.get_deployment(name)
        if dep is None or dep.serving_revision is None:
            return
        self.health[name] = "recovering"
        self.notify(name)
        self._wakeups[name] = asyncio.create_task(self._restart_serving(name, dep.serving_revision))

    async def _stop_all(self, name: str) -> None:
        self._cancel_rollout(name)
        self.backends.pop(name, None)
        self.health.pop(name, None)
        uids = {r.uid for r in self.store.list_revisions(name)}
        for uid in uids:
            handle = self._retire.pop(uid, None)
            if handle is not None:
                handle.cancel()
        procs = [self.processes.pop(uid) for uid in uids if uid in self.processes]
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        for rev in self.store.list_revisions(name):
            if rev.phase in ("ready", "starting", "pending"):
                self.store.update_revision(
                    rev.uid, phase="retired" if rev.phase == "ready" else "cancelled"
                )

    async def _idle_loop(self) -> None:
        """Scale idle deployments whose config allows zero replicas down to zero."""
        while True:
            await asyncio.sleep(1.0)
            for running in list(self.processes.values()):
                running.refresh_workers()
            for name, serving in list(self.backends.items()):
                dep = self.store.get_deployment(name)
                if dep is None or dep.serving_revision is None or dep.state != "active":
                    continue
                rev = self.store.get_revision(dep.serving_revision)
                if rev is None or min_replicas(rev.config) > 0:
                    continue
                idle = time.monotonic() - self.last_request.get(name, time.monotonic())
                if (
                    idle < self.settings.scale_to_zero_after
                    or self.backends.get(name) is not serving
                ):
                    continue
                proc = self.processes.pop(dep.serving_revision, None)
                self.backends.pop(name, None)
                self.health[name] = "scaled"
                if proc is not None:
                    await proc.stop()
                log.info("deployment %s scaled to zero after %.0f s idle", name, idle)
                self.notify(name)
