"""A revision's replicas: start them until ready, watch them, drain one that scales down.
Processes come from the context's launcher, waits from its clock; which replicas should run is
reconcile's to say."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...refs import revision_name
from ..deploy_config import min_replicas, process_envs
from ..gpu.allocator import GpuUnavailable
from ..span_tokens import span_token
from ..store import Revision
from .context import RolloutContext
from .launcher import ReplicaHandle
from .monitoring_env import config_options, monitoring_dir, tracing_envs
from .placement import Placement
from .replicas import ReplicaSet
from .runner import NotReadyError, PortTaken
from .runtime import DeploymentRuntime

__all__ = ["START_ERRORS", "ExitHandler", "Pools"]

log = logging.getLogger("bentoship.server")

PORT_ATTEMPTS = 3
START_ERRORS = (NotReadyError, OSError, GpuUnavailable)
"""What a replica's start raises when it cannot serve (anything else is a bug)."""
ExitHandler = Callable[[DeploymentRuntime, ReplicaHandle, int | None], None]
"""Told of a replica whose process ended on its own, with its exit code."""


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

    async def add_replica(
        self, rt: DeploymentRuntime, rev: Revision, index: int, port: int | None = None
    ) -> ReplicaHandle:
        """Start replica ``index`` of the revision until it is ready (on ``port``, if free);
        one that fails to, or whose start is cancelled, is stopped and forgotten."""
        try:
            return await self.start_replica(rt, rev, index, port)
        except BaseException:
            pool = rt.processes.get(rev.uid)
            replica = pool.replicas.get(index) if pool is not None else None
            if pool is not None and replica is not None and not replica.ready:
                pool.remove(index)
                await asyncio.shield(replica.process.stop())
            raise

    def watch(self, rt: DeploymentRuntime, proc: ReplicaHandle, on_exit: ExitHandler) -> None:
        """Call ``on_exit`` when the replica's process ends on its own (not stopped)."""
        if not proc.watched:
            proc.watched = True
            self.ctx.watch_over(lambda: self._watch(rt, proc, on_exit), deployment=rt.name)

    async def _watch(
        self, rt: DeploymentRuntime, proc: ReplicaHandle, on_exit: ExitHandler
    ) -> None:
        code = await proc.exited()
        if not proc.stopping:
            on_exit(rt, proc, code)

    async def drain(self, rt: DeploymentRuntime, pool: ReplicaSet, index: int) -> None:
        """Stop replica ``index`` once its outstanding requests are answered; free its GPUs."""
        await pool.drain(index)
        self.placement.gpus.release(pool.revision, index)
        rt.notify()
