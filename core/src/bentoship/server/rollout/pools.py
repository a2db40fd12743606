"""A revision's replicas: start them until ready, replace a lost one with backoff, drain one
that scales down. Processes come from the context's launcher, waits from its clock."""

from __future__ import annotations

import asyncio
import logging

from ...refs import revision_name
from ..deploy_config import min_replicas, process_envs
from ..gpu.allocator import GpuUnavailable
from ..span_tokens import span_token
from ..store import Revision
from .context import RolloutContext
from .events import Crashed, ReplicaAdded, Restarted
from .launcher import ReplicaHandle
from .monitoring_env import config_options, monitoring_dir, tracing_envs
from .phases import Lifecycle
from .placement import Placement
from .replicas import ReplicaSet
from .runner import NotReadyError, PortTaken
from .runtime import DeploymentRuntime

__all__ = ["START_ERRORS", "Pools"]

log = logging.getLogger("bentoship.server")

PORT_ATTEMPTS = 3
START_ERRORS = (NotReadyError, OSError, GpuUnavailable)
"""What a replica's start raises when it cannot serve (anything else is a bug)."""


class Pools:
    """Starts, replaces and drains the replicas of each deployment's revisions."""

    def __init__(self, ctx: RolloutContext, placement: Placement) -> None:
        self.ctx = ctx
        self.placement = placement

    def envs(self, rev: Revision) -> dict[str, str]:
        """The revision's envs, and bentoml's config sending its monitors to a folder of its
        own (after the user's own ``BENTOML_CONFIG_OPTIONS``, if any)."""
        settings = self.ctx.settings
        envs = process_envs(rev.config)
        folder = monitoring_dir(settings.data_dir, rev.deployment, rev.uid)
        given = envs.get("BENTOML_CONFIG_OPTIONS", "")
        options = config_options(folder, settings.monitoring_rotate_bytes)
        if self.ctx.plane_url is not None:
            traced, otel = tracing_envs(self.ctx.plane_url, span_token(settings.token, rev.uid))
            options = f"{options} {traced}"
            envs = {**otel, **envs}
        envs["BENTOML_CONFIG_OPTIONS"] = f"{given} {options}".strip()
        return envs

    async def launch(
        self, rt: DeploymentRuntime, rev: Revision, index: int = 0, port: int | None = None
    ) -> ReplicaHandle:
        """Start replica ``index`` of the revision (in place of one with that index); a
        cancelled launch stops what it started."""
        pool = rt.processes.get(rev.uid)
        if pool is None:
            pool = rt.processes[rev.uid] = ReplicaSet(rev.uid, revision_name(rev.seq))
        old = pool.remove(index)
        if old is not None:
            await old.stop()
        launching = self.placement.launching
        launching[rev.uid] += 1
        try:
            envs = {**self.envs(rev), **self.placement.envs(rev, index)}
            proc = await self.ctx.launcher.launch(rev, index, port, envs)
        finally:
            launching[rev.uid] -= 1
            if launching[rev.uid] <= 0:
                del launching[rev.uid]
        if rt.processes.get(rev.uid) is not pool:
            await proc.stop()
            raise NotReadyError(f"{proc.name} stopped while replica {index} started")
        pool.add(proc)
        return proc

    async def start_replica(
        self, rt: DeploymentRuntime, rev: Revision, index: int, port: int | None = None
    ) -> ReplicaHandle:
        """Launch replica ``index`` and wait until it is ready; a port taken meanwhile: another."""
        settings = self.ctx.settings
        for attempt in range(PORT_ATTEMPTS):
            proc = await self.launch(rt, rev, index, port)
            try:
                await proc.wait_ready(settings.readiness_timeout, settings.crash_loop_after)
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

    async def start_ready(self, rt: DeploymentRuntime, rev: Revision) -> ReplicaSet:
        """Start the revision's minimum count of replicas (at least one) and wait until every
        one is ready; the first that fails stops the others' starts."""
        old = rt.processes.pop(rev.uid, None)
        if old is not None and old is not rt.serving:
            await old.stop()
        pool = rt.processes[rev.uid] = ReplicaSet(rev.uid, revision_name(rev.seq))
        starts = [
            asyncio.ensure_future(self.start_replica(rt, rev, index))
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

    def watch(self, rt: DeploymentRuntime, proc: ReplicaHandle) -> None:
        """Replace the replica (a serving revision's) when its process ends on its own."""
        if not proc.watched:
            proc.watched = True
            self.ctx.watch_over(lambda: self._watch(rt, proc), deployment=rt.name)

    async def _watch(self, rt: DeploymentRuntime, proc: ReplicaHandle) -> None:
        code = await proc.exited()
        if proc.stopping:
            return
        pool = rt.processes.get(proc.revision)
        if pool is not None:
            pool.discard(proc)
        dep = self.ctx.store.get_deployment(rt.name)
        serving = dep is not None and dep.serving_revision == proc.revision
        if not serving or dep is None or dep.state != Lifecycle.ACTIVE or rt.serving is not pool:
            if pool is not None and not pool.replicas and rt.processes.get(pool.revision) is pool:
                del rt.processes[pool.revision]
            return
        assert pool is not None
        which = f"{proc.name} replica {proc.replica}"
        log.warning("%s of %s exited; replacing it", which, rt.name)
        self.ctx.publish(rt.name, Crashed(proc.name, proc.replica, code))
        rt.notify()
        self.replace(rt, pool, proc.replica, proc.port)

    def replace(
        self,
        rt: DeploymentRuntime,
        pool: ReplicaSet,
        index: int,
        port: int | None = None,
        *,
        scale_up: bool = False,
    ) -> None:
        """Start replica ``index`` of the serving ``pool`` in the background, unless underway."""
        running = rt.replacing.get(index)
        if running is None or running.done():
            replace = self._replace(rt, pool, index, port, scale_up=scale_up)
            rt.replacing[index] = self.ctx.spawn(replace, deployment=rt.name)

    def _still_serves(self, rt: DeploymentRuntime, pool: ReplicaSet) -> bool:
        dep = self.ctx.store.get_deployment(rt.name)
        return (
            dep is not None
            and dep.serving_revision == pool.revision
            and dep.state == Lifecycle.ACTIVE
            and rt.serving is pool
        )

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
            rev = self.ctx.store.get_revision(pool.revision)
            if rev is None or not self._still_serves(rt, pool):
                return
            try:
                proc = await self.start_replica(rt, rev, index, port)
            except START_ERRORS as exc:
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
                rt.notify()
                await self.ctx.clock.sleep(delay)
                delay = min(delay * 2, self.ctx.settings.restart_backoff_max)
                port = None
                continue
            async with rt.lock:
                if not self._still_serves(rt, pool):
                    if pool.discard(proc):
                        await proc.stop()
                    return
                self.watch(rt, proc)
                added = ReplicaAdded(pool.name, index) if scale_up else None
                self.ctx.publish(rt.name, added or Restarted(pool.name, index))
                rt.notify()
            return

    async def drain(self, rt: DeploymentRuntime, pool: ReplicaSet, index: int) -> None:
        """Stop replica ``index`` once its outstanding requests are answered; free its GPUs."""
        await pool.drain(index)
        self.placement.gpus.release(pool.revision, index)
        rt.notify()
