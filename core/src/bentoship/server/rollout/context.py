"""What every part of the rollout shares: the store, the runtimes, the clock and launcher, the
event log, supervised background tasks, and the one function that moves a revision's phase."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ...logtail import last_error_line
from ...refs import revision_name
from ...tags import shown
from ..endpoint.traffic import TrafficBook
from ..errors import NotFound
from ..settings import ServerSettings
from ..store import Deployment, Revision, Store
from .events import (
    Cancelled,
    DeploymentEvent,
    EventLog,
    Failed,
    Held,
    InternalError,
    Ready,
    Retired,
    Starting,
    Warm,
)
from .launcher import Clock, Launcher
from .phases import RevisionPhase, check_transition
from .runner import tail_lines
from .runtime import DeploymentRuntime

__all__ = ["HELD_PHASES", "PhaseListener", "RolloutContext", "not_found", "problem_line"]

log = logging.getLogger("bentoship.server")

HELD_PHASES = (RevisionPhase.STARTING, RevisionPhase.CANDIDATE)
"""Phases of a target that has not taken the endpoint yet: what discard and supersede cancel."""

WATCHER_BACKOFF_SECONDS = 1.0
WATCHER_BACKOFF_MAX_SECONDS = 30.0

PhaseListener = Callable[[Revision, RevisionPhase], None]
"""Called with a revision (as it was) and the phase it has just moved to."""


def problem_line(error: BaseException) -> str:
    """An unexpected error as one line of an event: its type and its message's first line."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def not_found(name: str) -> NotFound:
    return NotFound(
        f"deployment {shown(name)} not found (record not found); "
        "list deployments with `bentoship status` or create it first"
    )


class RolloutContext:
    """The store (the durable truth), each deployment's runtime, and how time passes."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        launcher: Launcher,
        clock: Clock,
        log_path: Callable[[Revision], Path],
    ) -> None:
        self.settings = settings
        self.store = store
        self.launcher = launcher
        self.clock = clock
        self.log_path = log_path
        self.runtimes: dict[str, DeploymentRuntime] = {}
        self.traffic = TrafficBook()
        self.events = EventLog(store)
        self.phase_listeners: list[PhaseListener] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.plane_url: str | None = None
        """The control plane's own address, once it listens (revisions send it their spans)."""

    def runtime(self, name: str) -> DeploymentRuntime:
        rt = self.runtimes.get(name)
        if rt is None:
            rt = self.runtimes[name] = DeploymentRuntime(name, last_request=self.clock.monotonic())
        return rt

    def get(self, name: str) -> Deployment:
        dep = self.store.get_deployment(name)
        if dep is None:
            raise not_found(name)
        return dep

    def target_of(self, dep: Deployment) -> Revision | None:
        return self.store.get_revision(dep.target_revision) if dep.target_revision else None

    def serving_of(self, dep: Deployment) -> Revision | None:
        return self.store.get_revision(dep.serving_revision) if dep.serving_revision else None

    def name_of(self, uid: str | None) -> str | None:
        """A revision's short name (``r3``) from its uid."""
        rev = self.store.get_revision(uid) if uid else None
        return revision_name(rev.seq) if rev else None

    def manifest(self, bento: str) -> dict[str, Any] | None:
        """The pushed bento's manifest (its services' resources and traffic), if known."""
        name, _, version = bento.partition(":")
        item = self.store.get_artifact("bento", name, version)
        return item.manifest if item else None

    def publish(self, deployment: str, event: DeploymentEvent) -> None:
        """Publish a typed event of ``deployment`` (once the change it tells of is stored)."""
        self.events.publish(deployment, event)

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        deployment: str | None = None,
        revision: str | None = None,
    ) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, supervised: an exception it ends with is logged with
        its traceback and recorded as an ``internal_error`` event of ``deployment``; the
        ``revision`` it worked on, if still starting or a candidate, is failed with it."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, deployment, revision))
        return task

    def watch_over(
        self, start: Callable[[], Coroutine[Any, Any, Any]], *, deployment: str
    ) -> asyncio.Task[Any]:
        """Run the watcher ``start()`` makes, supervised: when it fails, the failure is logged
        with its traceback and recorded as an ``internal_error`` event, and the watcher runs
        again after a backoff (1 s, doubling up to 30 s) rather than leaving nothing watching."""

        async def watching() -> Any:
            delay = WATCHER_BACKOFF_SECONDS
            while True:
                try:
                    return await start()
                except Exception as exc:
                    log.error(
                        "a watcher of %s failed; it runs again in %g s",
                        deployment,
                        delay,
                        exc_info=exc,
                    )
                    again = f"{problem_line(exc)}; the watcher runs again in {delay:g} s"
                    if not self.internal_error(deployment, again):
                        return None
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, WATCHER_BACKOFF_MAX_SECONDS)

        return self.spawn(watching(), deployment=deployment)

    def internal_error(self, deployment: str, problem: str) -> bool:
        """Record ``problem`` as an ``internal_error`` event of ``deployment``; whether the
        deployment (still) exists."""
        if self.store.get_deployment(deployment) is None:
            return False
        self.publish(deployment, InternalError(None, problem))
        return True

    def _finished(
        self, task: asyncio.Task[Any], deployment: str | None, revision: str | None
    ) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error(
            "a background task of %s failed", deployment or "the control plane", exc_info=error
        )
        if deployment is None or error is None:
            return
        problem = problem_line(error)
        recorded = self.internal_error(deployment, problem)
        if recorded and revision is not None and self.fail_on_a_bug(revision, problem):
            self.spawn(self.stop_unless_serving(self.runtime(deployment), revision))

    def fail_on_a_bug(self, uid: str, problem: str) -> bool:
        """Fail revision ``uid``, if still starting or a candidate, with an internal error
        (``problem``); whether it was failed (its replicas are the caller's to stop)."""
        rev = self.store.get_revision(uid)
        if rev is None or rev.phase not in HELD_PHASES:
            return False
        reason = (
            f"revision {revision_name(rev.seq)} ({rev.bento}) failed: internal error in its "
            f"rollout ({problem}); the server's log has the traceback"
        )
        self.move(rev.uid, RevisionPhase.FAILED, reason=reason)
        return True

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
            for event in self._phase_events(rev, phase, reason):
                self.publish(rev.deployment, event)
            for listener in self.phase_listeners:
                listener(rev, phase)
        self.runtime(rev.deployment).notify()
        moved = self.store.get_revision(uid)
        assert moved is not None
        return moved

    def _phase_events(
        self, rev: Revision, phase: RevisionPhase, reason: str | None
    ) -> list[DeploymentEvent]:
        """The typed events a move of ``rev`` (as it was) to ``phase`` publishes."""
        name = revision_name(rev.seq)
        if phase == RevisionPhase.STARTING:
            return [Starting(name, rev.bento)]
        if phase == RevisionPhase.CANDIDATE:
            return [Ready(name), Held(name)]
        if phase == RevisionPhase.SERVING:
            return [] if rev.phase == RevisionPhase.WARM else [Ready(name)]
        if phase == RevisionPhase.FAILED:
            return [Failed(name, reason or "")]
        if phase == RevisionPhase.CANCELLED:
            return [Cancelled(name, reason or "")]
        if phase == RevisionPhase.WARM:
            return [Warm(name)]
        return [Retired(name)]

    async def stop_unless_serving(self, rt: DeploymentRuntime, uid: str) -> None:
        """Stop the revision's replicas, unless the endpoint forwards to them."""
        pool = rt.processes.get(uid)
        if pool is not None and pool is not rt.serving:
            del rt.processes[uid]
            await pool.stop()

    async def fail(
        self,
        rt: DeploymentRuntime,
        uid: str,
        problem: str,
        phase: RevisionPhase = RevisionPhase.STARTING,
    ) -> None:
        """Stop the revision and move it from ``phase`` to failed, with the last error it logged."""
        await self.stop_unless_serving(rt, uid)
        rev = self.store.get_revision(uid)
        if rev is None or rev.phase != phase:
            return
        reason = f"revision {revision_name(rev.seq)} ({rev.bento}) failed: {problem}"
        cause = last_error_line(tail_lines(self.log_path(rev), 400))
        if cause and cause not in reason:
            reason += f"; last error in its logs: {cause}"
        log.warning("%s", reason)
        self.move(uid, RevisionPhase.FAILED, reason=reason)
